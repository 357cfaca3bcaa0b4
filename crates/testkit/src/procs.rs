//! Reading `/proc`: processes, their namespaces and mounts; finding and killing every
//! process that belongs to a fake host.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The inode of namespace `kind` (`net`, `mnt`, ...) of process `pid` (a number or `self`),
/// or `None` when the process is gone (or a zombie).
pub fn ns_inode(pid: &str, kind: &str) -> Option<u64> {
    fs::metadata(format!("/proc/{pid}/ns/{kind}")).ok().map(|m| m.ino())
}

/// One process as seen in `/proc`.
#[derive(Debug, Clone)]
pub(crate) struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    /// State letter from `/proc/<pid>/stat` (`R`, `S`, `Z`, ...).
    pub state: char,
    pub comm: String,
    pub netns: Option<u64>,
    pub mntns: Option<u64>,
}

/// `(ppid, state, comm, starttime)` from `/proc/<pid>/stat`.
pub(crate) fn stat(pid: i32) -> Option<(i32, char, String, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // rest[0] is field 3 (state); starttime is field 22.
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((ppid, state, comm, start))
}

/// The start time (clock ticks since boot) of `pid`, which tells a live process from a
/// later one that reused its pid.
pub(crate) fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|s| s.3)
}

/// Every process on the machine (thread-group leaders).
pub(crate) fn scan() -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Some((ppid, state, comm, _)) = stat(pid) else { continue };
        let p = pid.to_string();
        out.push(ProcInfo {
            pid,
            ppid,
            state,
            comm,
            netns: ns_inode(&p, "net"),
            mntns: ns_inode(&p, "mnt"),
        });
    }
    out
}

/// The command line of `pid`, arguments joined by spaces.
pub(crate) fn cmdline(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    parts.join(" ")
}

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// Path inside the filesystem that is mounted (`net:[4026532...]` for nsfs).
    pub root: String,
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
}

/// The mounts of the mount namespace `pid` is in.
pub(crate) fn mountinfo(pid: &str) -> Option<Vec<Mount>> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    Some(text.lines().filter_map(parse_mountinfo_line).collect())
}

fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let l: Vec<&str> = left.split(' ').collect();
    let r: Vec<&str> = right.split(' ').collect();
    Some(Mount {
        root: unescape(l.get(3)?),
        mount_point: unescape(l.get(4)?),
        fstype: r.first()?.to_string(),
        source: unescape(r.get(1)?),
        super_opts: r.get(2).map(|s| unescape(s)).unwrap_or_default(),
    })
}

/// Undo mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Namespaces (nsfs roots such as `net:[4026532999]`) bind-mounted in the test process's
/// own mount namespace, i.e. on the real host (`ip netns add` and the like). A fake host's
/// mount namespace starts as a copy of the real host's, so it lists these too; they are
/// never the fake host's, and nothing of them may be audited or killed.
pub(crate) fn real_host_nsfs() -> HashSet<String> {
    mountinfo("self")
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.fstype == "nsfs")
        .map(|m| m.root)
        .collect()
}

/// The inodes of network namespaces bind-mounted (nsfs) in a list of mounts, leaving out
/// those the real host has mounted itself.
pub(crate) fn nsfs_netns(mounts: &[Mount]) -> HashSet<u64> {
    let real = real_host_nsfs();
    mounts
        .iter()
        .filter(|m| m.fstype == "nsfs" && !real.contains(&m.root))
        .filter_map(|m| m.root.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok())
        .collect()
}

/// Which processes belong to a fake host (or a neighbour).
///
/// A process belongs when any of these holds: it descends from one of `roots`; its mount
/// namespace is one of `mntns`, or carries a mount tagged with one of `tags` or a tag
/// starting with `tag_prefix` (tmpfs/sysfs source name) or under `dir` (container roots bound from the state tmpfs); its network namespace
/// is one of `netns` or is bind-mounted (nsfs) in a tagged mount namespace.
#[derive(Debug, Default, Clone)]
pub(crate) struct Scope {
    /// Mount source tags (exact match).
    pub tags: Vec<String>,
    /// Mount source tags starting with this (a netlab's nodes: `<lab tag>.`); empty to
    /// disable.
    pub tag_prefix: String,
    /// Directory prefix with a trailing `/`; empty to disable.
    pub dir: String,
    pub netns: HashSet<u64>,
    pub mntns: HashSet<u64>,
    pub roots: Vec<i32>,
}

impl Scope {
    /// The members of this scope among `procs` (zombies included), never this process.
    pub fn members<'a>(&self, procs: &'a [ProcInfo]) -> Vec<&'a ProcInfo> {
        let me = std::process::id() as i32;
        let mut tagged: HashMap<u64, bool> = HashMap::new();
        let mut netns = self.netns.clone();
        // First pass: which mount namespaces are ours, and the netns they pin.
        for p in procs {
            let Some(m) = p.mntns else { continue };
            if tagged.contains_key(&m) {
                continue;
            }
            let mounts = mountinfo(&p.pid.to_string());
            if mounts.is_none() && !self.mntns.contains(&m) {
                continue; // gone meanwhile: decide on another process of that namespace
            }
            let mine =
                self.mntns.contains(&m) || mounts.as_deref().is_some_and(|ms| self.is_tagged(ms));
            if mine {
                netns.extend(nsfs_netns(mounts.as_deref().unwrap_or_default()));
            }
            tagged.insert(m, mine);
        }
        let parents: HashMap<i32, i32> = procs.iter().map(|p| (p.pid, p.ppid)).collect();
        procs
            .iter()
            .filter(|p| p.pid != me)
            .filter(|p| {
                p.mntns.is_some_and(|m| tagged.get(&m).copied().unwrap_or(false))
                    || p.netns.is_some_and(|n| netns.contains(&n))
                    || self.descends(p.pid, &parents)
            })
            .collect()
    }

    fn is_tagged(&self, mounts: &[Mount]) -> bool {
        mounts.iter().any(|m| {
            self.tags.contains(&m.source)
                || (!self.tag_prefix.is_empty() && m.source.starts_with(&self.tag_prefix))
                || (!self.dir.is_empty()
                    && (m.mount_point.starts_with(&self.dir) || m.super_opts.contains(&self.dir)))
        })
    }

    fn descends(&self, pid: i32, parents: &HashMap<i32, i32>) -> bool {
        if self.roots.is_empty() {
            return false;
        }
        let mut cur = pid;
        for _ in 0..64 {
            match parents.get(&cur) {
                Some(&pp) if self.roots.contains(&pp) => return true,
                Some(&pp) if pp > 1 => cur = pp,
                _ => return false,
            }
        }
        false
    }
}

/// SIGKILL every live member of `scope` (except pids in `spare`), again and again until none
/// is left or `limit` passed, then wait (within `limit`) until those killed have finished
/// dying. Returns how many were still alive at the end.
pub(crate) fn kill_scope(scope: &Scope, spare: &[i32], limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    // (pid, start time) of everything killed: a process leaves its namespaces early in its
    // exit, so it stops looking like a member before it is dead.
    let mut killed: HashSet<(i32, u64)> = HashSet::new();
    loop {
        let procs = scan();
        let alive: Vec<&ProcInfo> = scope
            .members(&procs)
            .into_iter()
            .filter(|p| p.state != 'Z' && p.state != 'X' && !spare.contains(&p.pid))
            .collect();
        let victims: Vec<i32> = alive.iter().map(|p| p.pid).collect();
        if victims.is_empty() || Instant::now() >= deadline {
            for p in &alive {
                eprintln!(
                    "netlab: pid {} ({}, state {}, parent {}) is still alive after SIGKILL: {}",
                    p.pid,
                    p.comm,
                    p.state,
                    p.ppid,
                    cmdline(p.pid)
                );
            }
            return victims.len() + wait_dead(&killed, deadline);
        }
        for pid in &victims {
            // SAFETY: kill(2) with a pid read from /proc; no memory is involved.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
            killed.extend(start_time(*pid).map(|t| (*pid, t)));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Wait until every process in `procs` (pid, start time) is a zombie or gone, or
/// `deadline`; how many are still alive.
fn wait_dead(procs: &HashSet<(i32, u64)>, deadline: Instant) -> usize {
    let alive = || {
        procs
            .iter()
            .filter(|(pid, t)| {
                stat(*pid).is_some_and(|(_, state, _, start)| start == *t && !"ZX".contains(state))
            })
            .count()
    };
    loop {
        let n = alive();
        if n == 0 || Instant::now() >= deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Whether any mount in this process's own mount namespace lies at or under `dir`.
pub(crate) fn host_mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let with_slash = format!("{prefix}/");
    mountinfo("self")
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.mount_point == prefix || m.mount_point.starts_with(&with_slash))
        .map(|m| m.mount_point)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let m = parse_mountinfo_line(
            "63 43 0:39 / /tmp/x\\040y/state rw,relatime - tmpfs cove-netlab-x rw,mode=755",
        )
        .unwrap();
        assert_eq!(m.mount_point, "/tmp/x y/state");
        assert_eq!(m.fstype, "tmpfs");
        assert_eq!(m.source, "cove-netlab-x");
        assert_eq!(m.super_opts, "rw,mode=755");
        let ns = parse_mountinfo_line(
            "90 63 0:4 net:[4026532999] /run/netns/a rw shared:5 - nsfs nsfs rw",
        )
        .unwrap();
        assert_eq!(nsfs_netns(&[ns]), HashSet::from([4026532999]));
    }

    #[test]
    fn reads_own_stat() {
        let (ppid, state, _comm, start) = stat(std::process::id() as i32).unwrap();
        assert!(ppid > 0);
        assert!(state == 'R' || state == 'S');
        assert!(start > 0);
        assert!(ns_inode("self", "net").is_some());
    }
}
