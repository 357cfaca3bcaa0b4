//! Real Docker clients against a fake host's daemon: the `docker` CLI, the Python `docker`
//! SDK (in the venv `scripts/setup.sh` makes) and Debian's `docker-compose`. Each runs from
//! the test process with `DOCKER_HOST` set to the fake host's socket, under `timeout`.

use std::path::{Path, PathBuf};
use std::process::Command;

use cove_testkit::{CmdResult, FakeHost};

/// Seconds any one client command may take.
const LIMIT: &str = "180";

/// The venv with the Python `docker` SDK (`$COVE_VENV` or `/opt/cove-venv`), if present.
pub fn venv_python() -> Option<PathBuf> {
    let dir = std::env::var_os("COVE_VENV")
        .map_or_else(|| PathBuf::from("/opt/cove-venv"), PathBuf::from);
    let py = dir.join("bin/python");
    let ok =
        Command::new(&py).args(["-c", "import docker"]).output().is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

fn client(h: &FakeHost, argv: &[&str], dir: Option<&Path>) -> CmdResult {
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "5", LIMIT]).args(argv);
    cmd.env("DOCKER_HOST", h.host_uri())
        .env("DOCKER_CONFIG", h.dir().join("docker-config"))
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("run {}: {e}", argv.join(" ")));
    CmdResult::from_output(argv.join(" "), &out)
}

/// `docker <args>` against the fake host.
pub fn docker(h: &FakeHost, args: &[&str]) -> CmdResult {
    let mut argv = vec!["docker"];
    argv.extend_from_slice(args);
    client(h, &argv, None)
}

/// `docker-compose <args>` in `dir` (which holds `docker-compose.yml`).
pub fn compose(h: &FakeHost, dir: &Path, args: &[&str]) -> CmdResult {
    let mut argv = vec!["docker-compose"];
    argv.extend_from_slice(args);
    client(h, &argv, Some(dir))
}

/// `python <script> <args>` with the SDK's venv.
pub fn python(h: &FakeHost, py: &Path, script: &Path, args: &[&str]) -> CmdResult {
    let (py, script) = (py.display().to_string(), script.display().to_string());
    let mut argv = vec![py.as_str(), script.as_str()];
    argv.extend_from_slice(args);
    client(h, &argv, None)
}

/// The first element of a JSON array (what `inspect` commands print), or the value.
pub fn first(v: serde_json::Value) -> serde_json::Value {
    v.as_array().and_then(|a| a.first()).cloned().unwrap_or(v)
}

/// `docker <args>` on `h` (which must succeed): its non-empty output lines.
pub fn docker_lines(h: &FakeHost, args: &[&str]) -> Vec<String> {
    let r = docker(h, args);
    r.ok();
    r.stdout.lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

/// The addresses in busybox `nslookup` output, sorted and deduplicated (empty when the
/// name did not resolve).
pub fn nslookup_addrs(output: &str) -> Vec<String> {
    let mut out: Vec<String> = output
        .split("Name:")
        .skip(1)
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("Address: ")))
        .map(|a| a.trim().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}
