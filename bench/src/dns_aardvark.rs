//! aardvark-dns (netavark's resolver, Debian's `aardvark-dns`) as a peer in the `dns`
//! bench, set up the way netavark runs it: a bridge in the (fake) host with the network's
//! gateway address, aardvark-dns listening there on port 53 with a config directory naming
//! the containers, and the client in a namespace of its own behind a veth on that bridge.
//! Its floor is the same do-nothing responder on the same path (gateway, port 5300), as
//! in the anchors' `dns_compare.py`. aardvark-dns forwards to the servers of the fake
//! host's `/etc/resolv.conf`, the same upstream Cove forwards to.

use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cove_kernel::Kernel;

use crate::dns::sh;

/// The network's gateway, where aardvark-dns listens.
pub(crate) const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 248, 0, 1);
/// The client namespace's address.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 248, 0, 11);
/// The address aardvark-dns gives [`TARGET`].
pub(crate) const TARGET_IP: Ipv4Addr = Ipv4Addr::new(10, 248, 0, 12);
/// A container name in aardvark-dns's config.
pub(crate) const TARGET: &str = "av-target";
/// aardvark-dns's address, and the floor's on the same path.
pub(crate) const SERVER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(GATEWAY), 53);
pub(crate) const FLOOR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(GATEWAY), 5300);
const BRIDGE: &str = "bdnsav0";
const VETH: &str = "bdnsav1";

/// Where Debian (and Fedora) install aardvark-dns, if it is installed.
pub(crate) fn binary() -> Option<PathBuf> {
    ["/usr/lib/podman/aardvark-dns", "/usr/libexec/podman/aardvark-dns"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// What was set up; [`Aardvark::remove`] undoes whatever of it exists.
#[derive(Default)]
pub(crate) struct Aardvark {
    config: Option<PathBuf>,
    client_ns: Option<PathBuf>,
    bridge: bool,
    pid: Option<i32>,
}

impl Aardvark {
    /// The client's network namespace.
    pub(crate) fn client_ns(&self) -> Option<&Path> {
        self.client_ns.as_deref()
    }

    /// Sets up the bridge, the client namespace and the config, and starts aardvark-dns.
    pub(crate) async fn start(&mut self, kernel: &Kernel, bin: &Path, dir: &Path) -> Result<()> {
        let config = dir.join("aardvark");
        std::fs::create_dir_all(&config)?;
        self.config = Some(config.clone());
        // netavark's format: listening addresses, then `id ipv4s ipv6s names` per container.
        std::fs::write(
            config.join("bench"),
            format!(
                "{GATEWAY}\n{:064x} {CLIENT_IP}  av-client\n{:064x} {TARGET_IP}  {TARGET}\n",
                1, 2
            ),
        )?;

        self.bridge = true;
        sh(&["ip", "link", "add", BRIDGE, "type", "bridge"])?;
        sh(&["ip", "addr", "add", &format!("{GATEWAY}/24"), "dev", BRIDGE])?;
        sh(&["ip", "link", "set", BRIDGE, "up"])?;
        let ns = dir.join("aardvark-client");
        kernel.create_netns(&ns).await?;
        self.client_ns = Some(ns.clone());
        let ns_path = ns.to_str().context("utf-8 path")?;
        sh(&["ip", "link", "add", VETH, "type", "veth", "peer", "name", "eth0", "netns", ns_path])?;
        sh(&["ip", "link", "set", VETH, "master", BRIDGE, "up"])?;
        let net = format!("--net={ns_path}");
        sh(&["nsenter", &net, "ip", "addr", "add", &format!("{CLIENT_IP}/24"), "dev", "eth0"])?;
        sh(&["nsenter", &net, "ip", "link", "set", "eth0", "up"])?;
        sh(&["nsenter", &net, "ip", "link", "set", "lo", "up"])?;

        // `run` daemonizes: the command returns and the server lives on.
        let out = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .args(["-p", "53", "run"])
            .output()
            .with_context(|| format!("run {}", bin.display()))?;
        if !out.status.success() {
            bail!("aardvark-dns: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        for _ in 0..50 {
            if let Some(pid) = find_pid(&config) {
                self.pid = Some(pid);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("aardvark-dns did not stay up (config {})", config.display())
    }

    /// Stops aardvark-dns and removes the links, the namespace and the config.
    pub(crate) async fn remove(&mut self, kernel: &Kernel) {
        if let Some(pid) = self.pid.take().or_else(|| self.config.as_deref().and_then(find_pid)) {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            // Not our child (it daemonized): wait for /proc to forget it.
            for _ in 0..100 {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.bridge {
            let _ = sh(&["ip", "link", "del", VETH]);
            let _ = sh(&["ip", "link", "del", BRIDGE]);
            self.bridge = false;
        }
        if let Some(ns) = self.client_ns.take() {
            let _ = kernel.remove_netns(&ns).await;
        }
        if let Some(c) = self.config.take() {
            let _ = std::fs::remove_dir_all(c);
        }
    }
}

/// The pid of the aardvark-dns serving `config`, found by its command line.
fn find_pid(config: &Path) -> Option<i32> {
    let want = config.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let mut args = cmdline.split(|&b| b == 0);
        let is_aardvark = args.next()?.ends_with(b"aardvark-dns");
        (is_aardvark && args.any(|a| a == want)).then_some(pid)
    })
}
