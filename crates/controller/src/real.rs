//! The real seams: `cove-kernel` and `cove-runtime`.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use ipnet::IpNet;

use cove_drivers::plan::Op;
use cove_firewall::{ElementDelta, NamedCounter};
use cove_kernel::{KernelError, LinkInfo, LinkStats, PortReservations};
use cove_model::{PortBinding, Result};
use cove_runtime::{BundleSpec, ExecSpec, ImageInfo, LogEntry, LogFollower, RunState};

use crate::seams::{Firewall, Kernel, LogSource, Runtime};

/// nftables: whole rulesets through `nft -f -`, element deltas over netlink (hash sets, the
/// hot path) or through a long-lived `nft -i` session (interval sets).
#[derive(Debug, Default)]
pub(crate) struct RealFirewall {
    session: tokio::sync::Mutex<Option<cove_kernel::nft::NftSession>>,
    /// Element changes straight over netlink (see `cove_kernel::nfnl`).
    elements: tokio::sync::Mutex<Option<cove_kernel::nfnl::ElementWriter>>,
}

#[async_trait]
impl Firewall for RealFirewall {
    async fn apply_ruleset(&self, ruleset: &str) -> std::result::Result<(), KernelError> {
        cove_kernel::nft::apply(ruleset).await
    }

    async fn apply_delta(&self, delta: &ElementDelta) -> std::result::Result<(), KernelError> {
        // Sets the netlink encoder knows (every hash set a start or stop touches) skip the
        // `nft` process altogether; interval sets (network changes) still go through it.
        if let Some(batch) = delta.to_netlink() {
            let mut elements = self.elements.lock().await;
            if elements.is_none() {
                *elements = Some(cove_kernel::nfnl::ElementWriter::spawn()?);
            }
            let writer = elements.as_ref().expect("just ensured");
            return writer.apply(batch).await;
        }
        // The session is started on first use and again if it died.
        let mut session = self.session.lock().await;
        if !session.as_mut().is_some_and(|s| s.alive()) {
            *session = Some(cove_kernel::nft::NftSession::spawn()?);
        }
        let s = session.as_mut().expect("just ensured");
        let result = s.run(&delta.render_text()).await;
        if result.is_err() && !s.alive() {
            *session = None;
        }
        result
    }

    async fn counters(&self, table: &str) -> std::result::Result<Vec<NamedCounter>, KernelError> {
        let (family, name) = table.split_once(' ').unwrap_or(("inet", table));
        let text = cove_kernel::nft::list_counters(family, name).await?;
        Ok(cove_firewall::parse_counters(&text))
    }

    fn watch_foreign_changes(
        &self,
        tables: &[&str],
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<()>, KernelError> {
        cove_kernel::nft::watch_foreign_changes(tables)
    }
}

/// The kernel executor of the daemon's namespace, and the sockets it holds.
#[derive(Debug)]
pub(crate) struct RealKernel {
    kernel: cove_kernel::Kernel,
    ports: Mutex<PortReservations>,
}

impl RealKernel {
    /// The executor of the calling thread's namespace.
    pub(crate) async fn new() -> std::result::Result<Self, KernelError> {
        Ok(RealKernel { kernel: cove_kernel::Kernel::new().await?, ports: Mutex::default() })
    }
}

#[async_trait]
impl Kernel for RealKernel {
    async fn apply(&self, ops: &[Op]) -> std::result::Result<(), KernelError> {
        self.kernel.apply(ops).await
    }
    async fn teardown(&self, ops: &[Op]) -> Vec<KernelError> {
        self.kernel.teardown(ops).await
    }
    async fn create_netns(&self, path: &Path) -> std::result::Result<(), KernelError> {
        self.kernel.create_netns(path).await
    }
    async fn remove_netns(&self, path: &Path) -> std::result::Result<(), KernelError> {
        self.kernel.remove_netns(path).await
    }
    async fn link_exists(&self, name: &str) -> std::result::Result<bool, KernelError> {
        self.kernel.link_exists(name).await
    }
    async fn links(&self) -> std::result::Result<Vec<LinkInfo>, KernelError> {
        self.kernel.links().await
    }
    async fn link_stats(&self) -> std::result::Result<Vec<LinkStats>, KernelError> {
        self.kernel.link_stats().await
    }
    async fn observe_host(
        &self,
        sysctl_keys: &[String],
    ) -> std::result::Result<cove_plan::HostState, KernelError> {
        self.kernel.observe_host(sysctl_keys).await
    }
    async fn route_prefixes(&self) -> std::result::Result<Vec<IpNet>, KernelError> {
        self.kernel.route_prefixes().await
    }
    async fn reap_condemned(&self) -> std::result::Result<(), KernelError> {
        self.kernel.reap_condemned().await
    }
    async fn forget_flows_to(
        &self,
        ip: std::net::IpAddr,
    ) -> std::result::Result<usize, KernelError> {
        // A netlink dump and deletes: off the runtime's threads. The daemon's thread
        // pool runs in the host's namespace, where the flows are tracked.
        tokio::task::spawn_blocking(move || {
            cove_kernel::conntrack::delete_by_reply_source(ip, None)
        })
        .await
        .unwrap_or_else(|e| {
            Err(KernelError::new("forget flows", std::io::Error::other(e.to_string())))
        })
    }
    fn owned_link_removals(
        &self,
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<()>, KernelError> {
        self.kernel.owned_link_removals()
    }
    fn read_sysctl(&self, key: &str) -> std::result::Result<String, KernelError> {
        cove_kernel::read_sysctl(key)
    }
    async fn bind_in_netns(
        &self,
        netns: &Path,
        addr: SocketAddr,
    ) -> std::io::Result<(UdpSocket, TcpListener)> {
        cove_kernel::bind_in_netns(netns, addr).await
    }
    fn reserve_ports(
        &self,
        owner: &str,
        bindings: &[PortBinding],
        has_v6: bool,
    ) -> Result<Vec<PortBinding>> {
        self.ports.lock().unwrap_or_else(|p| p.into_inner()).reserve(owner, bindings, has_v6)
    }
    fn release_ports(&self, owner: &str) {
        self.ports.lock().unwrap_or_else(|p| p.into_inner()).release(owner);
    }
}

impl LogSource for LogFollower {
    fn read_new(&mut self) -> Vec<LogEntry> {
        LogFollower::read_new(self)
    }
}

#[async_trait]
impl Runtime for cove_runtime::Runtime {
    fn find_image(&self, reference: &str) -> Result<ImageInfo> {
        cove_runtime::Runtime::find_image(self, reference)
    }
    fn import_image(&self, tar: Vec<u8>, reference: &str) -> Result<ImageInfo> {
        cove_runtime::Runtime::import_image(self, std::io::Cursor::new(tar), reference)
    }
    fn load_images(&self, tar: Vec<u8>) -> Result<Vec<ImageInfo>> {
        cove_runtime::Runtime::load_images(self, std::io::Cursor::new(tar))
    }
    fn list_images(&self) -> Result<Vec<ImageInfo>> {
        cove_runtime::Runtime::list_images(self)
    }
    fn remove_image(&self, reference: &str) -> Result<ImageInfo> {
        cove_runtime::Runtime::remove_image(self, reference)
    }
    fn create_bundle(&self, spec: &BundleSpec) -> Result<()> {
        cove_runtime::Runtime::create_bundle(self, spec)
    }
    fn write_etc_file(&self, id: &str, name: &str, content: &str) -> Result<()> {
        cove_runtime::Runtime::write_etc_file(self, id, name, content)
    }
    fn start(&self, id: &str, netns: Option<&Path>) -> Result<u32> {
        cove_runtime::Runtime::start(self, id, netns)
    }
    fn state(&self, id: &str) -> RunState {
        cove_runtime::Runtime::state(self, id)
    }
    async fn wait(&self, id: &str) -> i32 {
        cove_runtime::Runtime::wait(self, id).await
    }
    fn kill(&self, id: &str, signal: i32) -> Result<()> {
        cove_runtime::Runtime::kill(self, id, signal)
    }
    fn cleanup(&self, id: &str) -> Result<()> {
        cove_runtime::Runtime::cleanup(self, id)
    }
    fn remove(&self, id: &str) -> Result<()> {
        cove_runtime::Runtime::remove(self, id)
    }
    fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<tokio::sync::mpsc::Receiver<LogEntry>> {
        cove_runtime::Runtime::logs(self, id, follow, tail)
    }
    fn log_follower(&self, id: &str) -> Result<Box<dyn LogSource>> {
        Ok(Box::new(cove_runtime::Runtime::log_follower(self, id)?))
    }
    fn exec(&self, id: &str, spec: &ExecSpec) -> Result<tokio::process::Child> {
        cove_runtime::Runtime::exec(self, id, spec)
    }
}

use crate::encryption::chain;

/// The daemon's tunnel: `cove_tunnel::Tunnel`, held until the daemon exits (its device goes
/// with it).
#[derive(Debug, Default)]
pub struct RealTunnels {
    tunnel: Mutex<Option<cove_tunnel::Tunnel>>,
}

impl crate::seams::Tunnels for RealTunnels {
    fn start(&self, config: cove_tunnel::TunnelConfig) -> std::result::Result<(), String> {
        let t = cove_tunnel::Tunnel::start(config).map_err(|e| chain(&e))?;
        *self.tunnel.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
        Ok(())
    }
    fn set_peers(&self, peers: &[cove_tunnel::Peer]) -> std::result::Result<(), String> {
        match self.tunnel.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(t) => t.set_peers(peers).map_err(|e| chain(&e)),
            None => Err("the tunnel is not running".into()),
        }
    }
    fn set_key(&self, key: &cove_tunnel::PrivateKey) {
        if let Some(t) = self.tunnel.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            t.set_key(key.clone());
        }
    }
    fn stats(&self) -> Option<cove_tunnel::TunnelStats> {
        self.tunnel.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|t| t.stats())
    }
}
