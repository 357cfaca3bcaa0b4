// SPDX-License-Identifier: Apache-2.0
//! wireguard-go as a peer in tests.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually;

/// A wireguard-go process, killed (by its pid) when dropped.
#[derive(Debug)]
pub struct WireguardGo {
    child: Child,
    pub ifname: String,
}

impl WireguardGo {
    /// Start `wireguard-go -f <ifname>` in the netns `ns`. Its UAPI socket lands in
    /// `/run/wireguard`, a tmpfs of the test's own mount namespace.
    pub fn start(ns: &Path, ifname: &str) -> WireguardGo {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", ns.display()))
            .args(["wireguard-go", "-f", ifname])
            .env("WG_PROCESS_FOREGROUND", "1")
            .env("LOG_LEVEL", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl between fork and exec, no allocation: the child dies with the test
        // thread that spawned it, even if the test process is killed.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn wireguard-go");
        let wg = WireguardGo { child, ifname: ifname.into() };
        let sock = format!("/run/wireguard/{ifname}.sock");
        assert!(
            eventually(Duration::from_secs(10), || Path::new(&sock).exists()),
            "wireguard-go made no UAPI socket {sock}"
        );
        wg
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for WireguardGo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why this test cannot run here, if it cannot.
pub fn missing_tools() -> Option<String> {
    let have = |c: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .any(|d| d.join(c).is_file())
    };
    let missing: Vec<&str> =
        ["wireguard-go", "wg", "nsenter"].into_iter().filter(|c| !have(c)).collect();
    (!missing.is_empty()).then(|| {
        format!(
            "{} not installed (scripts/setup.sh installs Debian's wireguard-go and \
             wireguard-tools)",
            missing.join(", ")
        )
    })
}

/// Read a process's CPU time (user + system) from `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    super::cpu_of_stat(&stat)
}
