//! Shared set-up for the end-to-end tests: a fake host with the daemon started and the
//! busybox test image imported.
#![allow(dead_code)]

use cove_testkit::{FakeHost, Snapshot};
use std::path::Path;
use std::time::{Duration, Instant};

/// A fake host running the daemon, with the `busybox` image imported.
pub fn host(test: &str) -> FakeHost {
    let mut h = FakeHost::new(test, Path::new(env!("CARGO_BIN_EXE_cove")));
    h.start_daemon(&[]);
    h.import_busybox("busybox");
    h
}

/// JSON of `cove inspect` / `network inspect` for one object.
pub fn inspect(h: &FakeHost, args: &[&str]) -> serde_json::Value {
    let r = h.cove(args);
    r.ok();
    let v = r.json();
    v.as_array().and_then(|a| a.first()).cloned().unwrap_or(v)
}

/// A container's address on a network, from `cove inspect`.
pub fn ip_of(h: &FakeHost, container: &str, network: &str) -> String {
    let v = inspect(h, &["inspect", container]);
    v["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("{container} has no address on {network}: {v}"))
        .to_string()
}

/// Start a TCP server container that answers every connection with `reply`.
pub fn tcp_server(h: &FakeHost, name: &str, extra: &[&str], reply: &str) {
    let script = format!("while true; do echo {reply} | nc -l -p 8080; done");
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    h.cove(&args).ok();
}

/// Connect from a new container (`--rm`) with `extra` run flags to `ip:8080`; its output.
pub fn tcp_probe(h: &FakeHost, extra: &[&str], ip: &str) -> cove_testkit::CmdResult {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(extra);
    let cmd = format!("nc -w 3 {ip} 8080");
    args.extend_from_slice(&["busybox", "sh", "-c", &cmd]);
    h.cove(&args)
}

/// Start `busybox sleep 600` detached as `name`, with `extra` run flags.
#[track_caller]
pub fn sleeper(h: &FakeHost, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sleep", "600"]);
    h.cove(&args).ok();
}

/// `cove exec <container> <argv...>`, which must succeed; its stdout.
#[track_caller]
pub fn exec_ok(h: &FakeHost, container: &str, argv: &[&str]) -> String {
    let mut args = vec!["exec", container];
    args.extend_from_slice(argv);
    let r = h.cove(&args);
    r.ok();
    r.stdout
}

/// Poll `f` every 50 ms until it holds; panic naming `what` after `secs` seconds.
#[track_caller]
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until something in `container`'s network namespace listens on TCP `port`
/// (read from `/proc/net/tcp{,6}` inside it), so that probes do not race the server.
#[track_caller]
pub fn wait_listening(h: &FakeHost, container: &str, port: u16) {
    let needle = format!(":{port:04X} ");
    wait_until(&format!("{container} to listen on {port}"), 10, || {
        let r = h.cove(&["exec", container, "cat", "/proc/net/tcp", "/proc/net/tcp6"]);
        r.stdout.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && format!("{} ", f[1]).ends_with(&needle) && f[3] == "0A"
        })
    });
}

/// Connect from the running container `from` to `ip:8080` with `nc` (via `exec`).
pub fn exec_probe(h: &FakeHost, from: &str, ip: &str) -> cove_testkit::CmdResult {
    h.cove(&["exec", from, "nc", "-w", "2", ip, "8080"])
}

/// Add a counter `name` in a table of the `bridge` family (`table bridge cove_test_probe`,
/// prerouting), counting frames that enter any bridge port and match one of `matches`
/// (e.g. `arp daddr ip 10.0.0.5`): proof that a probe reached the host's bridge even when
/// it never became an IP packet. Add it before the baseline snapshot.
#[track_caller]
pub fn add_bridge_counter(h: &FakeHost, name: &str, matches: &[&str]) {
    let mut script = format!(
        "add table bridge cove_test_probe\n\
         add chain bridge cove_test_probe pre {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add counter bridge cove_test_probe {name}\n"
    );
    for m in matches {
        script.push_str(&format!(
            "add rule bridge cove_test_probe pre {m} counter name \"{name}\"\n"
        ));
    }
    let path = h.dir().join(format!("bridge-counter-{name}.nft"));
    std::fs::write(&path, &script).expect("writing the nft script");
    h.sh_ok(&format!("nft -f {}", path.display()));
}

/// Packets counted so far by the bridge counter `name` (see [`add_bridge_counter`]).
#[track_caller]
pub fn bridge_counter(h: &FakeHost, name: &str) -> u64 {
    let out = h.sh_ok(&format!("nft list counter bridge cove_test_probe {name}"));
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "packets" {
            if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
                return n;
            }
        }
    }
    panic!("no packet count in {out}")
}

/// `s` without the `nc -l` that a [`tcp_server`] starts again after each connection
/// (a new pid each time, not a leak).
pub fn steady(s: &Snapshot) -> Snapshot {
    let mut s = s.clone();
    s.procs = s.procs.iter().filter(|p| !p.contains(": nc -l")).cloned().collect();
    s
}

/// [`FakeHost::assert_no_leaks`] comparing [`steady`] snapshots: the fake host's links,
/// addresses, routes, nft, mounts and container processes are (within 5 s) what they were
/// in `before`; `when` names the moment in the panic message.
#[track_caller]
pub fn assert_same_as(h: &FakeHost, before: &Snapshot, when: &str) {
    let want = steady(before);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = steady(&h.snapshot());
        if now == want {
            return;
        }
        if Instant::now() > deadline {
            panic!("{when}: the fake host changed:\n  {}", want.diff(&now).join("\n  "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
