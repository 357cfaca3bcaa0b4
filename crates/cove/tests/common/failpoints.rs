//! What the crash tests share: the steps a traced run passed, and a log's tail.

use std::collections::BTreeSet;

/// The steps of API operations in a daemon's `log` (not its start-up, not background work,
/// whose timing no request decides), in the order first passed.
pub fn traced_steps(log: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    log.lines()
        .filter_map(|l| l.strip_prefix("failpoint: "))
        .filter(|s| !s.ends_with(": abort"))
        .filter(|s| !s.starts_with("start:") && !s.starts_with("background:"))
        .filter(|s| seen.insert(s.to_string()))
        .map(str::to_string)
        .collect()
}

/// The last `n` lines of `text`.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
