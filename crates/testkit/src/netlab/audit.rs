//! Leak audits of a whole netlab: one [`Snapshot`] per fake host (links with the VXLAN
//! section, FDB, permanent neighbours, routes, rules, nft, mounts, processes).

use std::collections::BTreeMap;
use std::time::Duration;

use super::Netlab;
use crate::host::tail;
use crate::snapshot::Snapshot;

/// What every fake host of a netlab holds at one moment (see [`Netlab::snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetlabSnapshot {
    /// One snapshot per fake host, by name.
    pub hosts: BTreeMap<String, Snapshot>,
}

impl NetlabSnapshot {
    /// What changed from `self` to `later`, host by host: `h1: + link: ...`; a host only in
    /// one of them shows as `+ host h4` or `- host h4`.
    pub fn diff(&self, later: &NetlabSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (name, before) in &self.hosts {
            match later.hosts.get(name) {
                Some(after) => {
                    out.extend(before.diff(after).into_iter().map(|d| format!("{name}: {d}")))
                }
                None => out.push(format!("- host {name}")),
            }
        }
        for name in later.hosts.keys().filter(|n| !self.hosts.contains_key(*n)) {
            out.push(format!("+ host {name}"));
        }
        out
    }
}

impl Netlab {
    /// A leak-audit snapshot of every fake host (taken in parallel).
    #[track_caller]
    pub fn snapshot(&self) -> NetlabSnapshot {
        let hosts = std::thread::scope(|s| {
            let threads: Vec<_> = self
                .hosts
                .iter()
                .map(|(name, h)| (name.clone(), s.spawn(move || h.snapshot())))
                .collect();
            threads
                .into_iter()
                .map(|(name, t)| (name, t.join().unwrap_or_else(|e| std::panic::resume_unwind(e))))
                .collect()
        });
        NetlabSnapshot { hosts }
    }

    /// Panic with a readable diff unless every fake host returns to `baseline` within 5 s.
    #[track_caller]
    pub fn assert_no_leaks(&self, baseline: &NetlabSnapshot) {
        self.assert_no_leaks_within(baseline, Duration::from_secs(5));
    }

    /// [`Netlab::assert_no_leaks`] with another settling time.
    #[track_caller]
    pub fn assert_no_leaks_within(&self, baseline: &NetlabSnapshot, settle: Duration) {
        let Err(now) = crate::audit::settles_to(baseline, settle, || self.snapshot()) else {
            return;
        };
        let logs: Vec<String> = self
            .hosts
            .iter()
            .filter(|(n, _)| baseline.hosts.get(*n) != now.hosts.get(*n))
            .map(|(n, h)| {
                format!("--- daemon log of {n} (tail) ---\n{}", tail(&h.daemon_log(), 40))
            })
            .collect();
        panic!(
            "netlab: leak audit of {} failed (+ added, - removed since the baseline):\n  {}\n{}",
            self.tag,
            baseline.diff(&now).join("\n  "),
            logs.join("\n")
        );
    }
}
