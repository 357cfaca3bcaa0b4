//! The cgroups a fake host's containers live in: each fake host's daemon gets its own
//! `--cgroup-parent` (`/<tag>`), so its teardown (or the stray sweep after a crashed run)
//! can remove exactly that subtree from every hierarchy. cgroup v1 hierarchies are shared by
//! all mount namespaces, so what a test leaves there is seen by the real host.

use std::path::{Path, PathBuf};

/// The `--cgroup-parent` of the daemon in the fake host tagged `tag`.
pub(crate) fn parent_for(tag: &str) -> String {
    format!("/{tag}")
}

/// Mount points of cgroup file systems seen by this process.
fn hierarchies() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    info.lines()
        .filter(|l| {
            let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            matches!(fstype, Some("cgroup" | "cgroup2"))
        })
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .collect()
}

/// Remove cgroup directory `dir` and the cgroups below it, deepest first. A cgroup that
/// still has processes stays (rmdir fails); returns how many could not be removed.
fn remove_tree(dir: &Path) -> usize {
    let mut left = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                left += remove_tree(&e.path());
            }
        }
    }
    if std::fs::remove_dir(dir).is_err() {
        left += 1;
    }
    left
}

/// Remove the cgroup subtree `parent` (as given to `--cgroup-parent`) from every hierarchy;
/// returns how many cgroups stayed (still populated).
pub(crate) fn remove_parent(parent: &str) -> usize {
    let rel = parent.trim_start_matches('/');
    if rel.is_empty() || rel.contains("..") {
        return 0;
    }
    // Processes just killed may take a moment to leave their cgroups.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let left: usize = hierarchies()
            .iter()
            .map(|h| h.join(rel))
            .filter(|d| d.is_dir())
            .map(|d| remove_tree(&d))
            .sum();
        if left == 0 || std::time::Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Remove the cgroup subtrees `/<name>` and `/<name>.<...>` (a netlab's hosts) from every
/// hierarchy: what a dead test process's fake hosts or netlab left.
pub(crate) fn remove_parents_of(name: &str) {
    let below = format!("{name}.");
    for h in hierarchies() {
        let Ok(rd) = std::fs::read_dir(&h) else { continue };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n == name || n.starts_with(&below) {
                remove_parent(&parent_for(&n));
            }
        }
    }
}

/// Remove the cgroup subtrees of fake hosts whose test process is gone (named
/// `/<PREFIX><pid>-...`): what a crashed or raced teardown left in the shared hierarchies.
pub(crate) fn remove_stray_parents() {
    for h in hierarchies() {
        let Ok(rd) = std::fs::read_dir(&h) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(pid) = crate::strays::owner_pid(&name) else { continue };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                remove_tree(&e.path());
            }
        }
    }
}
