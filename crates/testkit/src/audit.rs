//! Leak audits and proof of delivery on a fake host.

use std::time::{Duration, Instant};

use crate::host::{tail, FakeHost};
use crate::procs;
use crate::run::{run_with_timeout, show_argv, CmdResult};
use crate::snapshot::{self, Snapshot};

impl FakeHost {
    /// Add a named counter `name` to the harness's own probe table (`table inet
    /// netlab_probe`, prerouting hook at priority -400, never touched by the daemon)
    /// counting packets that match the nft expression `matches` (e.g. `iifname "eth-lan" ip
    /// daddr 127.0.0.1`): proof that a probe arrived.
    #[track_caller]
    pub fn add_probe_counter(&self, name: &str, matches: &str) {
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "netlab: counter names are [A-Za-z0-9_]: {name:?}"
        );
        let script = format!(
            "add table inet netlab_probe\n\
             add chain inet netlab_probe pre {{ type filter hook prerouting priority -400; policy accept; }}\n\
             add counter inet netlab_probe {name}\n\
             add rule inet netlab_probe pre {matches} counter name \"{name}\"\n"
        );
        let out = run_with_timeout(
            self.command(&["nft", "-f", "-"]),
            Some(script.as_bytes()),
            self.timeout,
            "nft -f -",
        );
        CmdResult::from_output(format!("nft -f - <<{script}"), &out).ok();
    }

    /// Packets counted so far by the probe counter `name` (see [`FakeHost::add_probe_counter`]).
    #[track_caller]
    pub fn probe_counter(&self, name: &str) -> u64 {
        let out = self.exec(&["nft", "list", "counter", "inet", "netlab_probe", name]);
        let r = CmdResult::from_output(format!("nft list counter {name}"), &out);
        r.ok();
        let mut words = r.stdout.split_whitespace();
        while let Some(w) = words.next() {
            if w == "packets" {
                if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
                    return n;
                }
            }
        }
        panic!("netlab: no packet count in\n{r}")
    }

    fn text(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        let r = CmdResult::from_output(show_argv(argv), &out);
        r.ok();
        r.stdout
    }

    /// A snapshot for leak audits (see [`Snapshot`]).
    #[track_caller]
    pub fn snapshot(&self) -> Snapshot {
        let fail = |e: String| -> ! { panic!("netlab: snapshot of {}: {e}", self.tag) };
        let addr_json = self.text(&["ip", "-j", "-d", "addr", "show"]);
        let (links, addrs) = snapshot::links_and_addrs(&addr_json).unwrap_or_else(|e| fail(e));
        let vxlan = snapshot::vxlan(&addr_json).unwrap_or_else(|e| fail(e));
        let routes = snapshot::routes(&self.text(&["ip", "-j", "route", "show", "table", "all"]))
            .unwrap_or_else(|e| fail(e));
        let mut rules = snapshot::rules(&self.text(&["ip", "-j", "rule", "show"]), "inet")
            .unwrap_or_else(|e| fail(e));
        rules.extend(
            snapshot::rules(&self.text(&["ip", "-j", "-6", "rule", "show"]), "inet6")
                .unwrap_or_else(|e| fail(e)),
        );
        let neigh = snapshot::neigh(&self.text(&["ip", "-j", "neigh", "show", "nud", "permanent"]))
            .unwrap_or_else(|e| fail(e));
        let fdb =
            snapshot::fdb(&self.text(&["bridge", "-j", "fdb", "show"])).unwrap_or_else(|e| fail(e));
        let nft = snapshot::nft_items(&self.text(&["nft", "list", "ruleset"]));
        let mounts = procs::mountinfo(&self.holder.id().to_string())
            .unwrap_or_else(|| fail("cannot read the holder's mountinfo".into()));
        let (mounts, netns) =
            snapshot::mount_items(&mounts, &self.dir.display().to_string(), &self.tag);
        let all = procs::scan();
        // The daemon and its own helper processes (`nft monitor`, the `nft -i` session)
        // are the daemon, not something a test leaked; a new daemon run has new pids.
        let daemon = self.daemon_pid().map(|p| p as i32);
        let spare: Vec<i32> = [Some(self.holder.id() as i32), daemon]
            .into_iter()
            .flatten()
            .chain(all.iter().filter(|p| Some(p.ppid) == daemon && p.comm == "nft").map(|p| p.pid))
            .collect();
        let procs = snapshot::sorted(
            self.scope(false)
                .members(&all)
                .into_iter()
                .filter(|p| !spare.contains(&p.pid))
                .map(|p| {
                    // Run state (R/S) is not part of it: it flickers and is no leak.
                    format!("{} pid={}: {}", p.comm, p.pid, procs::cmdline(p.pid))
                })
                .collect(),
        );
        Snapshot {
            links,
            vxlan,
            addrs,
            routes,
            rules: snapshot::sorted(rules),
            neigh,
            fdb,
            nft,
            mounts,
            netns,
            procs,
        }
    }

    /// Panic with a readable diff unless the fake host returns to `baseline` within 5 s
    /// (the kernel reaps links of deleted namespaces asynchronously).
    #[track_caller]
    pub fn assert_no_leaks(&self, baseline: &Snapshot) {
        self.assert_no_leaks_within(baseline, Duration::from_secs(5));
    }

    /// [`FakeHost::assert_no_leaks`] with another settling time.
    #[track_caller]
    pub fn assert_no_leaks_within(&self, baseline: &Snapshot, settle: Duration) {
        if let Err(now) = settles_to(baseline, settle, || self.snapshot()) {
            panic!(
                "netlab: leak audit of {} failed (+ added, - removed since the baseline):\n  {}\n\
                 --- daemon log (tail) ---\n{}",
                self.tag,
                baseline.diff(&now).join("\n  "),
                tail(&self.daemon_log(), 60)
            );
        }
    }
}

/// Take `snapshot` every 50 ms until it equals `baseline` (Ok) or `settle` has passed (the
/// last snapshot taken, for the report): the kernel reaps what deleted namespaces held
/// asynchronously.
pub(crate) fn settles_to<T: PartialEq>(
    baseline: &T,
    settle: Duration,
    mut snapshot: impl FnMut() -> T,
) -> Result<(), T> {
    let deadline = Instant::now() + settle;
    loop {
        let now = snapshot();
        if &now == baseline {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(now);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
