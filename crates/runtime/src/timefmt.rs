//! RFC 3339 timestamps with nanoseconds, formatted like Go's `time.RFC3339Nano` (UTC,
//! trailing zeros of the fraction trimmed), which is what Docker's API and json-file logs use.

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time, RFC 3339 with nanoseconds.
pub(crate) fn now() -> String {
    format(SystemTime::now())
}

/// `t` as RFC 3339 with nanoseconds in UTC (`2024-05-01T12:34:56.789Z`).
pub(crate) fn format(t: SystemTime) -> String {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let mut s = -(d.as_secs() as i64);
            let mut n = d.subsec_nanos();
            if n > 0 {
                s -= 1;
                n = 1_000_000_000 - n;
            }
            (s, n)
        }
    };
    format_unix(secs, nanos)
}

/// Seconds and nanoseconds since the Unix epoch as RFC 3339 with nanoseconds in UTC.
pub(crate) fn format_unix(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let mut out = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}");
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_rfc3339nano() {
        assert_eq!(format_unix(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix(1_700_000_000, 123_000_000), "2023-11-14T22:13:20.123Z");
        assert_eq!(format_unix(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(format_unix(4_102_444_799, 999_999_999), "2099-12-31T23:59:59.999999999Z");
        assert_eq!(format_unix(-1, 0), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn now_is_plausible() {
        let n = now();
        assert!(n.starts_with("20") && n.ends_with('Z'), "{n}");
    }
}
