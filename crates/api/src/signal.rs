//! Signal names as Docker accepts them (`SIGKILL`, `KILL`, `kill`, `9`, `SIGRTMIN+3`).

use crate::ApiError;

const SIGNALS: &[(&str, i32)] = &[
    ("ABRT", 6),
    ("ALRM", 14),
    ("BUS", 7),
    ("CHLD", 17),
    ("CLD", 17),
    ("CONT", 18),
    ("FPE", 8),
    ("HUP", 1),
    ("ILL", 4),
    ("INT", 2),
    ("IO", 29),
    ("IOT", 6),
    ("KILL", 9),
    ("PIPE", 13),
    ("POLL", 29),
    ("PROF", 27),
    ("PWR", 30),
    ("QUIT", 3),
    ("SEGV", 11),
    ("STKFLT", 16),
    ("STOP", 19),
    ("SYS", 31),
    ("TERM", 15),
    ("TRAP", 5),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("USR1", 10),
    ("USR2", 12),
    ("VTALRM", 26),
    ("WINCH", 28),
    ("XCPU", 24),
    ("XFSZ", 25),
];

const RTMIN: i32 = 34;
const RTMAX: i32 = 64;

/// Parse a signal; empty means the default (`SIGKILL`).
pub(crate) fn parse_signal(raw: &str) -> Result<i32, ApiError> {
    let bad = || ApiError::bad_request(format!("invalid signal: {raw}"));
    let s = raw.trim();
    if s.is_empty() {
        return Ok(9);
    }
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=RTMAX).contains(&n) { Ok(n) } else { Err(bad()) };
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some((_, n)) = SIGNALS.iter().find(|(k, _)| *k == name) {
        return Ok(*n);
    }
    let rt = |base: i32, rest: &str, sign: i32| -> Result<i32, ApiError> {
        let off: i32 = if rest.is_empty() { 0 } else { rest.parse().map_err(|_| bad())? };
        let n = base + sign * off;
        if (RTMIN..=RTMAX).contains(&n) {
            Ok(n)
        } else {
            Err(bad())
        }
    };
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return rt(RTMIN, rest.strip_prefix('+').unwrap_or(rest), 1);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return match rest.strip_prefix('-') {
            Some(r) => rt(RTMAX, r, -1),
            None if rest.is_empty() => Ok(RTMAX),
            None => Err(bad()),
        };
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        for (s, n) in [
            ("", 9),
            ("SIGKILL", 9),
            ("KILL", 9),
            ("kill", 9),
            ("sigterm", 15),
            ("TERM", 15),
            ("9", 9),
            ("15", 15),
            ("SIGHUP", 1),
            ("USR1", 10),
            ("SIGWINCH", 28),
            ("SIGRTMIN", 34),
            ("RTMIN+3", 37),
            ("SIGRTMAX-2", 62),
            ("RTMAX", 64),
            ("64", 64),
        ] {
            assert_eq!(parse_signal(s).unwrap(), n, "{s}");
        }
    }

    #[test]
    fn bad_signals() {
        for s in ["0", "65", "-1", "SIGFOO", "RTMIN+40", "RTMAX-40", "RTMAXX", "KILL9"] {
            let e = parse_signal(s).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{s}");
            assert_eq!(e.message, format!("invalid signal: {s}"));
        }
    }
}
