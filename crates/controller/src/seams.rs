//! The controller's seams: the kernel and the container runtime behind traits, so the
//! controller's every transition can be tested without root against recording fakes
//! (`fake`, with the `fake` feature or in tests), and the daemon runs the real ones
//! (`real`).
//!
//! The store's seam is `cove_store`'s own (`Store`, behind `Records`).

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;

use async_trait::async_trait;
use ipnet::IpNet;

use cove_drivers::plan::Op;
use cove_firewall::{ElementDelta, NamedCounter};
use cove_kernel::{KernelError, LinkInfo, LinkStats};
use cove_model::{PortBinding, Result};
use cove_runtime::{BundleSpec, ExecSpec, ImageInfo, LogEntry, RunState};

/// Everything the controller asks of the kernel: the one executor of [`Op`]s, sandbox
/// namespaces, a few questions, and the sockets it holds (port reservations, the embedded
/// resolver's).
#[async_trait]
pub trait Kernel: Send + Sync + fmt::Debug {
    /// Apply `ops` in order; on the first failure roll back what was applied and fail.
    async fn apply(&self, ops: &[Op]) -> std::result::Result<(), KernelError>;
    /// Run every op, past failures; "already gone" is done. Every real error.
    async fn teardown(&self, ops: &[Op]) -> Vec<KernelError>;
    /// A new sandbox namespace mounted at `path`, with `lo` up.
    async fn create_netns(&self, path: &Path) -> std::result::Result<(), KernelError>;
    /// Unmount and remove the sandbox namespace at `path`; missing is fine.
    async fn remove_netns(&self, path: &Path) -> std::result::Result<(), KernelError>;
    /// Whether a link of this name exists in the daemon's namespace.
    async fn link_exists(&self, name: &str) -> std::result::Result<bool, KernelError>;
    /// Links of the daemon's namespace.
    async fn links(&self) -> std::result::Result<Vec<LinkInfo>, KernelError>;
    /// Traffic counters of the daemon's namespace's links (for the metrics).
    async fn link_stats(&self) -> std::result::Result<Vec<LinkStats>, KernelError>;
    /// The host namespace's objects as the kernel has them (Cove's links' addresses,
    /// neighbours and routes; the sysctls in `sysctl_keys`), for the diff.
    async fn observe_host(
        &self,
        sysctl_keys: &[String],
    ) -> std::result::Result<cove_plan::HostState, KernelError>;
    /// Destination prefixes of the daemon's namespace's routes (for IPAM).
    async fn route_prefixes(&self) -> std::result::Result<Vec<IpNet>, KernelError>;
    /// Delete the condemned links now.
    async fn reap_condemned(&self) -> std::result::Result<(), KernelError>;
    /// Forget the host's tracked flows whose replies come from `ip` (a service backend
    /// that left), so their next packets pick a live backend; how many went.
    async fn forget_flows_to(
        &self,
        ip: std::net::IpAddr,
    ) -> std::result::Result<usize, KernelError>;
    /// A signal whenever a link of Cove's group vanishes without Cove deleting it (an
    /// admin's `ip link del`, a sandbox namespace torn down): the host may differ from the
    /// records.
    fn owned_link_removals(
        &self,
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<()>, KernelError>;
    /// A sysctl of the daemon's namespace (`net/ipv4/ip_forward` style key).
    fn read_sysctl(&self, key: &str) -> std::result::Result<String, KernelError>;
    /// A UDP socket and a TCP listener on `addr` inside the sandbox at `netns`.
    async fn bind_in_netns(
        &self,
        netns: &Path,
        addr: SocketAddr,
    ) -> std::io::Result<(UdpSocket, TcpListener)>;
    /// Hold the host ports of `owner`'s bindings (all or none); the bindings as bound.
    fn reserve_ports(
        &self,
        owner: &str,
        bindings: &[PortBinding],
        has_v6: bool,
    ) -> Result<Vec<PortBinding>>;
    /// Release `owner`'s host ports.
    fn release_ports(&self, owner: &str);
}

/// Cove's nftables tables: written whole, or by element deltas on the hot path.
#[async_trait]
pub trait Firewall: Send + Sync + fmt::Debug {
    /// Replace Cove's tables with `ruleset` (nft text) in one transaction.
    async fn apply_ruleset(&self, ruleset: &str) -> std::result::Result<(), KernelError>;
    /// Apply element changes on top of what the kernel holds, in one transaction.
    async fn apply_delta(&self, delta: &ElementDelta) -> std::result::Result<(), KernelError>;
    /// The named counters of `table` (`family name`), for the metrics.
    async fn counters(&self, table: &str) -> std::result::Result<Vec<NamedCounter>, KernelError>;
    /// A message each time another process changes one of `tables` (`family name`).
    fn watch_foreign_changes(
        &self,
        tables: &[&str],
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<()>, KernelError>;
}

/// This node's encrypted tunnel (`cvwg0`, `cove_tunnel`): one per daemon, started once.
pub trait Tunnels: Send + Sync + fmt::Debug {
    /// Create the device and the socket and start the datapath, with no peers yet. The
    /// error says why not (`/dev/net/tun` missing, the port taken, ...).
    fn start(&self, config: cove_tunnel::TunnelConfig) -> std::result::Result<(), String>;
    /// Replace the peer set.
    fn set_peers(&self, peers: &[cove_tunnel::Peer]) -> std::result::Result<(), String>;
    /// Replace the node's static key.
    fn set_key(&self, key: &cove_tunnel::PrivateKey);
    /// The tunnel's counters, while it runs.
    fn stats(&self) -> Option<cove_tunnel::TunnelStats>;
}

/// A container's log, read as it grows.
pub trait LogSource: Send + fmt::Debug {
    /// Entries written since the last call.
    fn read_new(&mut self) -> Vec<LogEntry>;
}

/// Everything the controller asks of the container runtime.
#[async_trait]
pub trait Runtime: Send + Sync + fmt::Debug {
    /// An image by reference (`name[:tag]`, id, id prefix).
    fn find_image(&self, reference: &str) -> Result<ImageInfo>;
    /// Import a root filesystem tarball as `reference`.
    fn import_image(&self, tar: Vec<u8>, reference: &str) -> Result<ImageInfo>;
    /// Load a `docker save` archive.
    fn load_images(&self, tar: Vec<u8>) -> Result<Vec<ImageInfo>>;
    /// Every image.
    fn list_images(&self) -> Result<Vec<ImageInfo>>;
    /// Remove an image tag.
    fn remove_image(&self, reference: &str) -> Result<ImageInfo>;
    /// Write a container's bundle.
    fn create_bundle(&self, spec: &BundleSpec) -> Result<()>;
    /// Rewrite one of a container's generated files (`hosts`, `resolv.conf`, `hostname`).
    fn write_etc_file(&self, id: &str, name: &str, content: &str) -> Result<()>;
    /// Start a container's process in the sandbox at `netns` (None: the host's); its pid.
    fn start(&self, id: &str, netns: Option<&Path>) -> Result<u32>;
    /// Whether a container's process runs.
    fn state(&self, id: &str) -> RunState;
    /// Until the container's process exits; its exit code.
    async fn wait(&self, id: &str) -> i32;
    /// Send a signal to a container's process.
    fn kill(&self, id: &str, signal: i32) -> Result<()>;
    /// Forget a stopped run (runc state, shim files).
    fn cleanup(&self, id: &str) -> Result<()>;
    /// Remove a container's files.
    fn remove(&self, id: &str) -> Result<()>;
    /// A container's log entries, followed when `follow`.
    fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<tokio::sync::mpsc::Receiver<LogEntry>>;
    /// A container's log from its current end on.
    fn log_follower(&self, id: &str) -> Result<Box<dyn LogSource>>;
    /// Run a command in a running container.
    fn exec(&self, id: &str, spec: &ExecSpec) -> Result<tokio::process::Child>;
}

/// The seams a controller runs on.
#[derive(Debug, Clone)]
pub struct Seams {
    /// The kernel.
    pub kernel: std::sync::Arc<dyn Kernel>,
    /// The container runtime.
    pub runtime: std::sync::Arc<dyn Runtime>,
    /// The firewall.
    pub firewall: std::sync::Arc<dyn Firewall>,
    /// The state store.
    pub store: cove_store::Records,
    /// The cluster this host is in, if any.
    pub cluster: Option<crate::cluster::ClusterSeam>,
}
