//! Times as Docker shows them: RFC 3339 strings from records to unix seconds, and
//! `go-units`' `HumanDuration` for `docker ps`'s Status column.

use std::time::Duration;

use chrono::{DateTime, Utc};
use cove_model::{ContainerState, Status};

/// Parse an RFC 3339 time (None for garbage).
pub(crate) fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// Unix seconds of an RFC 3339 time; 0 when unparseable or before 1970 (Docker's zero time).
pub fn unix(s: &str) -> i64 {
    parse(s).map(|t| t.timestamp()).unwrap_or(0).max(0)
}

/// Unix seconds with fraction (0.0 when unparseable).
pub(crate) fn unix_f64(s: &str) -> f64 {
    parse(s)
        .map(|t| t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
        .unwrap_or(0.0)
}

/// Docker's time query values (`since`, `until`): unix seconds with an optional fraction,
/// or an RFC 3339 time.
pub(crate) fn parse_query_time(s: &str) -> Option<f64> {
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    parse(s).map(|t| t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9)
}

/// `go-units` `HumanDuration`.
pub fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", seconds / 3600 / 24 / 365)
}

fn since(t: &str, now: DateTime<Utc>) -> Duration {
    parse(t).and_then(|t| (now - t).to_std().ok()).unwrap_or_default()
}

fn is_zero(t: &str) -> bool {
    t.is_empty() || parse(t).is_none_or(|t| t.timestamp() <= 0)
}

/// `docker ps`'s Status: `Up 5 seconds`, `Exited (3) 2 minutes ago`, `Created`.
pub fn status_string(state: &ContainerState, now: DateTime<Utc>) -> String {
    match state.status {
        Status::Running => format!("Up {}", human_duration(since(&state.started_at, now))),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
        Status::Created => "Created".into(),
        _ if is_zero(&state.started_at) => "Created".into(),
        _ if is_zero(&state.finished_at) => String::new(),
        _ => format!(
            "Exited ({}) {} ago",
            state.exit_code,
            human_duration(since(&state.finished_at, now))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_match_go_units() {
        let s = Duration::from_secs;
        let cases = [
            (Duration::from_millis(300), "Less than a second"),
            (s(1), "1 second"),
            (s(5), "5 seconds"),
            (s(59), "59 seconds"),
            (s(60), "About a minute"),
            (s(119), "About a minute"),
            (s(120), "2 minutes"),
            (s(59 * 60), "59 minutes"),
            (s(60 * 60), "About an hour"),
            (s(89 * 60), "About an hour"),
            (s(91 * 60), "2 hours"),
            (s(47 * 3600), "47 hours"),
            (s(48 * 3600), "2 days"),
            (s(13 * 86400), "13 days"),
            (s(14 * 86400), "2 weeks"),
            (s(59 * 86400), "8 weeks"),
            (s(60 * 86400), "2 months"),
            (s(729 * 86400), "24 months"),
            (s(730 * 86400), "2 years"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn status_strings() {
        let now = parse("2024-01-01T00:10:00Z").unwrap();
        let mut st = ContainerState::default();
        assert_eq!(status_string(&st, now), "Created");
        st.status = Status::Running;
        st.started_at = "2024-01-01T00:09:55.123456789Z".into();
        assert_eq!(status_string(&st, now), "Up 4 seconds");
        st.status = Status::Exited;
        st.exit_code = 3;
        st.finished_at = "2024-01-01T00:08:00Z".into();
        assert_eq!(status_string(&st, now), "Exited (3) 2 minutes ago");
        st.status = Status::Dead;
        assert_eq!(status_string(&st, now), "Dead");
    }

    #[test]
    fn unix_times() {
        assert_eq!(unix("2024-01-01T00:00:00Z"), 1_704_067_200);
        assert_eq!(unix("2024-01-01T01:00:00+01:00"), 1_704_067_200);
        assert_eq!(unix(cove_model::ZERO_TIME), 0);
        assert_eq!(unix("garbage"), 0);
        assert_eq!(unix_f64("2024-01-01T00:00:00.5Z"), 1_704_067_200.5);
        assert_eq!(parse_query_time("1704067200.25"), Some(1_704_067_200.25));
        assert_eq!(parse_query_time("2024-01-01T00:00:00Z"), Some(1_704_067_200.0));
        assert_eq!(parse_query_time("x"), None);
    }
}
