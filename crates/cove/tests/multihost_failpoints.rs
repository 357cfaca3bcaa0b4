//! A crash at any step of an overlay network's lifecycle leaves nothing behind, in etcd or
//! on any host (issue 13: "kill -9 at any step leaves no leaked key, link, forwarding entry
//! or address").
//!
//! Two fake hosts and etcd. h1 runs the lifecycle (an overlay network created, a container
//! run on it, another connected to it and disconnected, both removed, the network removed)
//! once with `--failpoints trace`, which names every step: each etcd transaction, local
//! store transaction, kernel batch (and its middle), firewall transaction and runtime call.
//! Then, for every step, h1's daemon dies there (`<step>=abort`), and after its restart:
//! - its log says it died at that step;
//! - etcd, h1 and h2 agree: the network exists on both hosts exactly when etcd has it;
//!   etcd holds one endpoint and one address key per endpoint h1 lists; h2 forwards to
//!   exactly h1's endpoints;
//! - everything can be removed, after which etcd holds only the nodes and both hosts are
//!   exactly as before (leak audit of the whole netlab).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::failpoints::{last_lines, traced_steps};
use common::multihost::{eventually, FLAGS};

use cove_testkit::{require_etcd, require_root, Etcd, FakeHost, Netlab};

const LIFECYCLE: &[&[&str]] = &[
    &["network", "create", "-d", "overlay", "--attachable", "--subnet", "10.0.30.0/24", "ovf"],
    &["run", "-d", "--name", "w1", "--network", "ovf", "bb", "sleep", "600"],
    &["run", "-d", "--name", "w2", "bb", "sleep", "600"],
    &["network", "connect", "ovf", "w2"],
    &["network", "disconnect", "ovf", "w2"],
    &["rm", "-f", "w1"],
    &["rm", "-f", "w2"],
    &["network", "rm", "ovf"],
];

/// Field order: etcd goes before the lab.
struct Lab {
    etcd: Etcd,
    lab: Netlab,
}

impl Lab {
    /// etcd's keys under `prefix` (relative to `/cove/v1/`).
    fn keys(&self, prefix: &str) -> Vec<String> {
        let out =
            self.etcd.etcdctl(&["get", "--prefix", &format!("/cove/v1/{prefix}"), "--keys-only"]);
        out.ok();
        out.stdout.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    fn start_h1(&mut self, failpoints: Option<&str>) {
        let mut flags: Vec<&str> = FLAGS.to_vec();
        if let Some(f) = failpoints {
            flags.extend(["--failpoints", f]);
        }
        self.lab.start_daemons(&["h1"], &flags);
    }

    fn h1(&self) -> &FakeHost {
        self.lab.host("h1")
    }
}

/// The overlay network's id on `h`, if it lists it.
fn network_id(h: &FakeHost) -> Option<String> {
    let out = h.cove(&["network", "inspect", "-f", "{{.Id}}", "ovf"]);
    (out.status == 0).then(|| out.stdout.trim().to_string())
}

/// MACs of `h`'s endpoints on ovf (running containers only have endpoints).
fn endpoint_macs(h: &FakeHost) -> BTreeSet<String> {
    let out = h.cove(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.MacAddress}} {{end}}",
        "ovf",
    ]);
    out.stdout.split_whitespace().map(str::to_string).collect()
}

/// The MACs h2's VXLAN device of network `id` forwards to another host.
fn forwarded_macs(h: &FakeHost, id: &str) -> BTreeSet<String> {
    let out = h.sh(&format!("bridge fdb show dev vx-{}", &id[..12]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(" dst "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// etcd, h1 and h2 agree on the network and h1's endpoints.
fn assert_agree(lab: &Lab, step: &str) {
    let (h1, h2) = (lab.h1(), lab.lab.host("h2"));
    let in_etcd = lab.keys("network-names/ovf").len() == 1;
    assert_eq!(
        network_id(h1).is_some(),
        in_etcd,
        "after a crash at {step}: h1 and etcd differ on ovf"
    );
    let settled = eventually(10, || network_id(h2).is_some() == in_etcd);
    assert!(settled, "after a crash at {step}: h2 and etcd differ on ovf");
    let Some(id) = network_id(h1) else { return };
    let macs = endpoint_macs(h1);
    let endpoints = || lab.keys("endpoints/").len();
    let addresses = || lab.keys(&format!("ipam/{id}/")).len();
    assert!(
        eventually(10, || endpoints() == macs.len() && addresses() == macs.len()),
        "after a crash at {step}: h1 has endpoints {macs:?}, etcd {} endpoints and {} addresses",
        endpoints(),
        addresses()
    );
    assert!(
        eventually(10, || forwarded_macs(h2, &id) == macs),
        "after a crash at {step}: h2 forwards to {:?}, h1 has {macs:?}",
        forwarded_macs(h2, &id)
    );
}

/// Remove whatever of the lifecycle is left, then check etcd keeps only the nodes.
fn clean(lab: &Lab) {
    let h1 = lab.h1();
    for c in ["w1", "w2"] {
        if h1.cove(&["inspect", c]).status == 0 {
            h1.cove(&["rm", "-f", c]).ok();
        }
    }
    if network_id(h1).is_some() {
        h1.cove(&["network", "rm", "ovf"]).ok();
    }
    let left = || {
        let mut keys = lab.keys("");
        keys.retain(|k| !common::multihost::membership_key(k));
        keys
    };
    assert!(eventually(10, || left().is_empty()), "etcd keeps {:?}", left());
    let h2 = lab.lab.host("h2");
    assert!(eventually(10, || network_id(h2).is_none()), "h2 keeps ovf");
}

/// Run the lifecycle on h1 until its daemon dies at `step`; the command that died.
fn run_until_abort(lab: &mut Lab, step: &str) -> Option<&'static [&'static str]> {
    let mut died = None;
    for cmd in LIFECYCLE {
        if lab.h1().cove(cmd).status != 0 {
            died = Some(*cmd);
            break;
        }
    }
    let marker = format!("failpoint: {step}: abort");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lab.h1().daemon_log().contains(&marker) {
        assert!(
            Instant::now() < deadline,
            "the lifecycle never reached {step} (failed first: {died:?})\n{}",
            last_lines(&lab.h1().daemon_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    lab.lab.host_mut("h1").kill_daemon();
    died
}

#[test]
fn multihost_a_crash_at_any_overlay_step_leaves_nothing_behind() {
    require_root();
    require_etcd!();
    let test = "multihost_failpoints";
    let mut lab = Netlab::with_hosts(test, Path::new(env!("CARGO_BIN_EXE_cove")), 2);
    let etcd = Etcd::start_in(test, &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    lab.start_daemons(&["h2"], &FLAGS);
    let mut lab = Lab { etcd, lab };
    lab.start_h1(Some("trace"));
    for h in ["h1", "h2"] {
        lab.lab.host(h).import_busybox("bb");
    }
    // Each host lets the other's VXLAN in before the baseline.
    let guard = |h: &str| lab.lab.host(h).sh_ok("nft list chain inet cove raw_prerouting");
    assert!(eventually(10, || guard("h2").contains("203.0.113.11")), "{}", guard("h2"));
    let baseline = lab.lab.snapshot();

    // Discovery.
    let before = lab.h1().daemon_log().len();
    for cmd in LIFECYCLE {
        lab.h1().cove(cmd).ok();
    }
    let steps = traced_steps(&lab.h1().daemon_log()[before..]);
    lab.lab.host_mut("h1").stop_daemon();
    assert!(
        steps.iter().any(|s| s.contains("cluster.commit")),
        "no etcd transaction traced: {steps:?}"
    );
    eprintln!("{} steps: {steps:?}", steps.len());

    let t0 = Instant::now();
    for step in &steps {
        lab.start_h1(Some(&format!("{step}=abort")));
        let died = run_until_abort(&mut lab, step);
        lab.start_h1(None);
        assert_agree(&lab, step);
        clean(&lab);
        lab.lab.assert_no_leaks(&baseline);
        lab.lab.host_mut("h1").stop_daemon();
        eprintln!("{step}: died in {died:?}, recovered");
    }
    eprintln!("{} crashes in {:?}", steps.len(), t0.elapsed());
}
