//! What the multi-host tests share: the daemons' cluster flags and small waits.

use std::time::{Duration, Instant};

use cove_testkit::FakeHost;

/// The daemons' cluster flags (`{addr}`: each host's underlay address).
pub const FLAGS: [&str; 4] =
    ["--cluster-store", "etcd://203.0.113.2:2379", "--cluster-advertise", "{addr}"];

/// Whether an etcd key is one a cluster keeps while its nodes are up, whatever ran on
/// it: the nodes' records and liveness, the orchestrator's seat (on the leader's lease)
/// and the cluster's id. Anything else left after everything was removed is a leak.
pub fn membership_key(key: &str) -> bool {
    ["/cove/v1/nodes/", "/cove/v1/node-state/", "/cove/v1/leader/", "/cove/v1/cluster/"]
        .iter()
        .any(|p| key.starts_with(p))
}

/// Poll `f` every 50 ms for up to `secs`; whether it held.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `cove inspect -f <format> <name>` on `h`, trimmed.
pub fn inspect(h: &FakeHost, name: &str, format: &str) -> String {
    h.cove(&["inspect", "-f", format, name]).ok().stdout.trim().to_string()
}
