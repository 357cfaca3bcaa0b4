//! Shared set-up for the end-to-end tests: a fake host with the daemon started and the
//! busybox test image imported.
#![allow(dead_code)]

use cove_testkit::FakeHost;
use std::path::Path;

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
