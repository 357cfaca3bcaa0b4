//! What this machine can do: root, namespaces, link kinds, tools; and reporting skips.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use nix::sched::CloneFlags;

use crate::run::{default_timeout, run_with_timeout, set_death_signal};

/// Tools the fake hosts need on `PATH`.
const REQUIRED_TOOLS: &[&str] = &["sh", "ip", "mount", "umount", "sleep", "nft"];

/// Panic with a clear message unless this process can run privileged netlab tests: euid 0,
/// able to create network and mount namespaces, and the tools in `REQUIRED_TOOLS` present.
/// Privileged tests call this first so that they fail, never silently pass, elsewhere.
#[track_caller]
pub fn require_root() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(msg) = CHECK.get_or_init(check_privileges) {
        panic!("{msg}");
    }
}

fn check_privileges() -> Result<(), String> {
    // SAFETY: geteuid(2) has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!(
            "netlab: privileged test needs root (euid is {euid}); run the tests as root \
             (e.g. `sudo -E cargo test`), or run only the unprivileged unit tests"
        ));
    }
    let missing: Vec<&str> = REQUIRED_TOOLS.iter().copied().filter(|t| !have_command(t)).collect();
    if !missing.is_empty() {
        return Err(format!(
            "netlab: missing tools on PATH: {} (install iproute2, nftables, util-linux, coreutils)",
            missing.join(", ")
        ));
    }
    let status = unshared_command(&["true"]).status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("netlab: a child in new net+mount namespaces exited with {s}")),
        Err(e) => Err(format!(
            "netlab: cannot create network and mount namespaces ({e}); the tests need \
             CAP_SYS_ADMIN and CAP_NET_ADMIN (a privileged container or a VM)"
        )),
    }
}

/// A command whose child first moves to fresh network and mount namespaces (mounts made
/// private), with a death signal.
pub(crate) fn unshared_command(argv: &[&str]) -> Command {
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    // SAFETY: the closure runs between fork and exec and makes only system calls
    // (unshare, mount with static strings); it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)?;
            let rc = libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            );
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    set_death_signal(&mut cmd);
    cmd
}

/// Whether `name` is an executable file on `PATH` (or an existing path when it has a `/`).
pub fn have_command(name: &str) -> bool {
    if name.contains('/') {
        return Path::new(name).is_file();
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).any(|d| is_executable(&d.join(name)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this kernel can create a link of `kind` (`macvlan`, `ipvlan`, `vxlan`, `dummy`,
/// `wireguard`, `vrf`, `vlan`, `geneve`, `bridge`, `veth`, ...). The probe runs once per
/// kind and process, in a throwaway network namespace (a veth serves as parent where the
/// kind needs one).
pub fn probe_link_kind(kind: &str) -> bool {
    static CACHE: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(kind) {
        return *v;
    }
    let ok = probe_uncached(kind);
    cache.lock().unwrap_or_else(|e| e.into_inner()).insert(kind.to_string(), ok);
    ok
}

fn probe_uncached(kind: &str) -> bool {
    if !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return false;
    }
    let args = match kind {
        "veth" => "type veth peer name probe1".to_string(),
        "macvlan" | "macvtap" | "ipvlan" | "ipvtap" => format!("link p0 type {kind}"),
        "vlan" => "link p0 type vlan id 10".to_string(),
        "vxlan" => "type vxlan id 42 dstport 4789 dev p0".to_string(),
        "geneve" => "type geneve id 42 remote 198.51.100.9".to_string(),
        "vrf" => "type vrf table 10".to_string(),
        other => format!("type {other}"),
    };
    let script = format!("ip link add p0 type veth peer name p1 && ip link add probe0 {args}");
    let mut cmd = unshared_command(&["sh", "-c", &script]);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let out =
        run_with_timeout(cmd, None, default_timeout(), &format!("probe for link kind {kind}"));
    out.status.success()
}

/// The name of the running test: the test thread's name (libtest names it after the test),
/// else `fallback`.
pub fn current_test_name(fallback: &str) -> String {
    match std::thread::current().name() {
        Some(n) if n != "main" => n.to_string(),
        _ => fallback.to_string(),
    }
}

/// Print `SKIPPED: <test>: <reason>` to stderr (used by [`skip!`](crate::skip)).
pub fn print_skip(test: &str, reason: &str) {
    eprintln!("SKIPPED: {test}: {reason}");
}
