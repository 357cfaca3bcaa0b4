//! End-to-end: a crash at any step of any mutating operation leaves nothing behind.
//!
//! The daemon runs a lifecycle (networks created, a container run with a published port,
//! connected, disconnected, stopped, started, removed, networks removed) once with
//! `--failpoints trace`, which names every step it passes: each store transaction, batch of
//! kernel ops (and its middle), namespace, firewall transaction and runtime call of each
//! API operation. Then, for every one of those steps, the daemon runs the lifecycle again
//! with `--failpoints <step>=abort` and dies there as `kill -9` would kill it. After a
//! restart:
//! - the daemon's log says it died at that step (the probe arrived);
//! - the API, the store, the kernel and the runtime agree: every network listed has its
//!   bridge and no bridge is left without one; a container listed as running runs, answers
//!   `exec` and holds the address the API gives it;
//! - everything can be removed, and then the fake host is exactly as before (leak audit);
//! - the next run's operations, up to its own failpoint, succeed.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::failpoints::{last_lines, traced_steps};
use common::host;
use cove_testkit::FakeHost;

/// The lifecycle, one CLI command per line.
const LIFECYCLE: &[&[&str]] = &[
    &["network", "create", "--subnet", "10.77.1.0/24", "fpnet"],
    &["network", "create", "--subnet", "10.77.2.0/24", "fpnet2"],
    &[
        "run",
        "-d",
        "--name",
        "fp1",
        "--network",
        "fpnet",
        "-p",
        "18080:80",
        "busybox",
        "sleep",
        "600",
    ],
    &["network", "connect", "fpnet2", "fp1"],
    &["network", "disconnect", "fpnet2", "fp1"],
    &["stop", "-t", "0", "fp1"],
    &["start", "fp1"],
    &["rm", "-f", "fp1"],
    &["network", "rm", "fpnet2"],
    &["network", "rm", "fpnet"],
];

/// Remove what the lifecycle may have left (each removal must succeed if the object is
/// there), then check nothing of it is listed.
fn clean(h: &FakeHost) {
    if h.cove(&["inspect", "fp1"]).status == 0 {
        h.cove(&["rm", "-f", "fp1"]).ok();
    }
    for net in ["fpnet2", "fpnet"] {
        if h.cove(&["network", "inspect", net]).status == 0 {
            h.cove(&["network", "rm", net]).ok();
        }
    }
    let ps = h.cove(&["ps", "-a", "--format", "{{.Names}}"]).ok().stdout.clone();
    assert!(!ps.contains("fp1"), "{ps}");
    let ls = h.cove(&["network", "ls", "--format", "{{.Name}}"]).ok().stdout.clone();
    assert!(!ls.lines().any(|l| l.starts_with("fpnet")), "{ls}");
}

/// The API, the kernel and the runtime agree on what exists.
fn assert_agree(h: &FakeHost, step: &str) {
    let ls = h.cove(&["network", "ls", "--no-trunc", "--format", "{{.ID}} {{.Name}}"]);
    ls.ok();
    let ids: Vec<String> = ls
        .stdout
        .lines()
        .filter(|l| l.contains(" fpnet"))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    let links = h.sh_ok("ip -o link show type bridge");
    let bridges: BTreeSet<String> = links
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .filter(|n| n.starts_with("br-"))
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = ids.iter().map(|id| format!("br-{}", &id[..12])).collect();
    assert_eq!(bridges, want, "after a crash at {step}: bridges and networks differ\n{links}");

    // A network lists fp1 as an endpoint exactly when fp1 lists the network.
    let listed = h.cove(&[
        "inspect",
        "-f",
        "{{range $n, $_ := .NetworkSettings.Networks}}{{$n}} {{end}}",
        "fp1",
    ]);
    let fp1_nets: BTreeSet<String> = if listed.status == 0 {
        listed.stdout.split_whitespace().map(str::to_string).collect()
    } else {
        BTreeSet::new()
    };
    for net in ["fpnet", "fpnet2"] {
        let eps =
            h.cove(&["network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", net]);
        if eps.status != 0 {
            assert!(
                !fp1_nets.contains(net),
                "after a crash at {step}: fp1 is on {net}, which is gone"
            );
            continue;
        }
        let has = eps.stdout.split_whitespace().any(|n| n == "fp1");
        let running =
            h.cove(&["inspect", "-f", "{{.State.Running}}", "fp1"]).stdout.trim() == "true";
        // Endpoints exist while the container runs.
        assert_eq!(
            has,
            running && fp1_nets.contains(net),
            "after a crash at {step}: {net}'s endpoints ({}) and fp1's networks ({fp1_nets:?}) differ",
            eps.stdout.trim()
        );
    }

    let running = h.cove(&["inspect", "-f", "{{.State.Running}}", "fp1"]);
    if running.status == 0 && running.stdout.trim() == "true" {
        let addrs = h.cove(&["exec", "fp1", "ip", "-o", "-4", "addr", "show"]);
        addrs.ok();
        let want = h
            .cove(&[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                "fp1",
            ])
            .ok()
            .stdout
            .clone();
        for ip in want.split_whitespace() {
            assert!(
                addrs.stdout.contains(&format!("inet {ip}/")),
                "after a crash at {step}: fp1 should hold {ip}: {}",
                addrs.stdout
            );
        }
    }
}

/// Run the lifecycle until the daemon dies at `step`; the index of the command that died.
fn run_until_abort(h: &mut FakeHost, step: &str) -> usize {
    let mut died = None;
    for (i, cmd) in LIFECYCLE.iter().enumerate() {
        let out = h.cove(cmd);
        if out.status != 0 {
            died = Some(i);
            break;
        }
    }
    let marker = format!("failpoint: {step}: abort");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h.daemon_log().contains(&marker) {
        assert!(
            Instant::now() < deadline,
            "the lifecycle never reached {step} (a command failed first: {:?})\n{}",
            died.map(|i| LIFECYCLE[i]),
            last_lines(&h.daemon_log(), 40)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    h.kill_daemon();
    died.unwrap_or(LIFECYCLE.len())
}

#[test]
fn a_crash_at_any_step_leaves_nothing_behind() {
    let mut h = host("a_crash_at_any_step_leaves_nothing_behind");
    h.stop_daemon();
    let baseline = h.snapshot();

    // Discovery: every step the lifecycle passes.
    h.start_daemon(&["--failpoints", "trace"]);
    let before = h.daemon_log().len();
    for cmd in LIFECYCLE {
        h.cove(cmd).ok();
    }
    let steps = traced_steps(&h.daemon_log()[before..]);
    h.stop_daemon();
    assert!(steps.len() > 20, "too few steps traced: {steps:?}");
    for op in ["post-networks-create", "post-containers-start", "post-networks-connect"] {
        assert!(steps.iter().any(|s| s.starts_with(op)), "no step of {op}: {steps:?}");
    }
    eprintln!("{} steps: {steps:?}", steps.len());

    let t0 = Instant::now();
    for step in &steps {
        h.start_daemon(&["--failpoints", &format!("{step}=abort")]);
        let died = run_until_abort(&mut h, step);
        h.start_daemon(&[]);
        assert_agree(&h, step);
        clean(&h);
        h.stop_daemon();
        h.assert_no_leaks(&baseline);
        eprintln!("{step}: died in {:?}, recovered", LIFECYCLE.get(died));
    }
    eprintln!("{} crashes in {:?}", steps.len(), t0.elapsed());

    // And the whole lifecycle runs clean afterwards.
    h.start_daemon(&[]);
    for cmd in LIFECYCLE {
        h.cove(cmd).ok();
    }
    h.stop_daemon();
    h.assert_no_leaks(&baseline);
}
