//! Removing what crashed test runs left behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::host::{PREFIX, TMP};
use crate::procs::{self, Scope};

/// Remove a fake host's dir unless something on the real host is mounted under it.
pub(crate) fn remove_dir_safely(dir: &Path) -> bool {
    let mounts = procs::host_mounts_under(dir);
    if !mounts.is_empty() {
        eprintln!("netlab: not removing {}: mounts under it: {mounts:?}", dir.display());
        return false;
    }
    fs::remove_dir_all(dir).is_ok()
}

/// Whether the process that made the fake host dir `dir` (`cove-netlab-<pid>-...`) still
/// runs: its pid is alive with the start time recorded in `<dir>/owner`.
fn owner_alive(dir: &Path, name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix(PREFIX)
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return false;
    };
    let Some(now) = procs::start_time(pid) else { return false };
    let recorded = fs::read_to_string(dir.join("owner"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|t| t.parse::<u64>().ok()));
    match recorded {
        Some(t) => t == now,
        // Being created right now, or very old debris of a reused pid.
        None => fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_none_or(|age| age < Duration::from_secs(600)),
    }
}

/// Remove what crashed test runs left: for every `/tmp/cove-netlab-*` dir whose owner
/// process is gone, kill the processes still tied to it (mount namespaces tagged with its
/// name or mounting under it, and the network namespaces those pin), then remove the dir.
/// Runs once per process before the first fake host is made; returns the dirs removed.
pub fn cleanup_strays() -> Vec<PathBuf> {
    crate::cgroups::remove_stray_parents();
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(TMP) else { return removed };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if !name.starts_with(PREFIX) || !path.is_dir() || owner_alive(&path, &name) {
            continue;
        }
        let scope = Scope {
            tags: vec![name.clone(), format!("{name}.nb")],
            dir: format!("{}/", path.display()),
            ..Scope::default()
        };
        let left = procs::kill_scope(&scope, &[], Duration::from_secs(5));
        if left > 0 {
            eprintln!("netlab: {left} stray process(es) of {name} survived SIGKILL");
        }
        crate::cgroups::remove_parent(&crate::cgroups::parent_for(&name));
        if remove_dir_safely(&path) {
            eprintln!("netlab: removed stray fake host {}", path.display());
            removed.push(path);
        }
    }
    removed
}
