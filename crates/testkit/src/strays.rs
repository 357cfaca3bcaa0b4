//! Removing what crashed test runs left behind, and nothing of a live test.
//!
//! Everything a test process makes outside its namespaces is named after it:
//! `/tmp/cove-netlab-<pid>-<seq>-<test>` (a fake host's or a netlab's directory, holding
//! `owner` = `<pid> <start time>`), mount source tags equal to that name or starting with
//! `<name>.` (a netlab's nodes and hosts), cgroups `/<name>` and `/<name>.<...>`. The sweep
//! touches such an object only when its owner is dead: no process with that pid, or one
//! with another start time (the pid was reused). Sweeps of parallel test processes take
//! turns (an `flock`), so two of them never tear down the same debris at once.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, SystemTime};

use crate::host::{PREFIX, TMP};
use crate::procs::{self, Scope};

/// Serialises the sweeps of all test processes on the machine.
const LOCK: &str = "/tmp/.cove-netlab-sweep.lock";

/// Remove a fake host's dir unless something on the real host is mounted under it.
pub(crate) fn remove_dir_safely(dir: &Path) -> bool {
    let mounts = procs::host_mounts_under(dir);
    if !mounts.is_empty() {
        eprintln!("netlab: not removing {}: mounts under it: {mounts:?}", dir.display());
        return false;
    }
    fs::remove_dir_all(dir).is_ok()
}

/// Run [`cleanup_strays`] once per test process, before its first fake host or netlab.
pub(crate) fn sweep_once() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        cleanup_strays();
    });
}

/// The pid in a name `cove-netlab-<pid>-...`.
pub(crate) fn owner_pid(name: &str) -> Option<i32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Whether the process that made the dir `dir` (`cove-netlab-<pid>-...`) still runs: its
/// pid is alive with the start time recorded in `<dir>/owner`.
fn owner_alive(dir: &Path, name: &str) -> bool {
    let Some(pid) = owner_pid(name) else { return false };
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

/// An exclusive lock held while sweeping (released when dropped).
fn lock() -> Option<fs::File> {
    let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(LOCK).ok()?;
    // SAFETY: flock(2) on a descriptor owned by `f`, which outlives the call.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    (rc == 0).then_some(f)
}

/// Remove what crashed test runs left: for every `/tmp/cove-netlab-*` dir whose owner
/// process is gone, kill the processes still tied to it (mount namespaces tagged with its
/// name or a name below it, or mounting under it, and the network namespaces those pin),
/// remove its cgroups, then the dir. Debris of live test processes is never touched.
/// Runs once per process before the first fake host or netlab is made; returns the dirs
/// removed by this call (another test process's sweep may have removed some first).
pub fn cleanup_strays() -> Vec<PathBuf> {
    let _lock = lock();
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
            tags: vec![name.clone()],
            tag_prefix: format!("{name}."),
            dir: format!("{}/", path.display()),
            ..Scope::default()
        };
        let left = procs::kill_scope(&scope, &[], Duration::from_secs(5));
        if left > 0 {
            eprintln!("netlab: {left} stray process(es) of {name} survived SIGKILL");
        }
        crate::cgroups::remove_parents_of(&name);
        if remove_dir_safely(&path) {
            eprintln!("netlab: removed stray fake host {}", path.display());
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_owner_pid() {
        assert_eq!(owner_pid("cove-netlab-123-4-test"), Some(123));
        assert_eq!(owner_pid("cove-netlab-123-4-lab.h1.0"), Some(123));
        assert_eq!(owner_pid("cove-netlab-x-4-test"), None);
        assert_eq!(owner_pid("other-123"), None);
    }

    #[test]
    fn own_dir_is_alive() {
        let me = std::process::id();
        let dir = std::env::temp_dir().join(format!("netlab-owner-test-{me}"));
        fs::create_dir_all(&dir).unwrap();
        crate::host::write_owner(&dir).unwrap();
        assert!(owner_alive(&dir, &format!("{PREFIX}{me}-0-x")));
        // Same pid, another start time: a reused pid, so the owner is dead.
        fs::write(dir.join("owner"), format!("{me} 1\n")).unwrap();
        assert!(!owner_alive(&dir, &format!("{PREFIX}{me}-0-x")));
        fs::remove_dir_all(&dir).unwrap();
    }
}
