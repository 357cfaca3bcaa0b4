//! Kernel effects: network namespaces, netlink, sysctl.
//!
//! The one place where Cove changes the kernel. Planners (`cove-drivers`) describe what
//! should exist as [`Op`]s; [`Kernel::apply`] creates it (stopping at the first failure and
//! rolling back), [`Kernel::teardown`] removes it (best effort, "already gone" is done).
//!
//! Netlink runs in-process over `rtnetlink`, one socket per network namespace. A socket for
//! a sandbox netns is opened on a throwaway OS thread that entered the netns; tokio workers
//! never change namespace. Network namespaces are created without `fork` (a throwaway
//! thread unshares and bind-mounts its own netns) and torn down by unmounting them, which
//! lets the kernel reap their links asynchronously.
#![warn(missing_docs)]

pub mod conntrack;
mod dumper;
mod entries;
mod error;
mod events;
mod handles;
mod netns;
pub mod nfnl;
pub mod nft;
mod nl;
mod observe;
mod ops;
pub mod ports;
mod reaper;
mod vxlan;

use std::path::Path;
use std::sync::Arc;

use cove_drivers::plan::Op;
use tracing::{debug, warn};

pub use error::{Cause, KernelError};
pub use ports::PortReservations;

use handles::Handles;
use ops::Outcome;

/// One link as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Link kind (`"bridge"`, `"veth"`, ...); `None` for physical devices and `lo`.
    pub kind: Option<String>,
    /// Index of the master device (the bridge a port is enslaved to).
    pub master: Option<u32>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Link group (`IFLA_GROUP`; 0 is the kernel's default).
    pub group: u32,
}

/// A link's traffic counters (`IFLA_STATS64`), as the link sees it: `rx` is what arrived on
/// it, `tx` what left through it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Packets dropped on the way out.
    pub tx_dropped: u64,
}

/// The kernel executor: rtnetlink connections of the daemon's netns and of sandbox netns.
/// Cheap to clone (shared inside).
#[derive(Clone, Debug)]
pub struct Kernel {
    inner: Arc<Handles>,
}

impl Kernel {
    /// Open the rtnetlink connection of the daemon's own netns (the calling thread's netns;
    /// called from the daemon's tokio runtime).
    pub async fn new() -> Result<Kernel, KernelError> {
        let inner = Handles::new().map_err(|c| KernelError::new("open netlink connection", c))?;
        Ok(Kernel { inner: Arc::new(inner) })
    }

    /// A signal per link of Cove's group that someone else deleted in the daemon's netns
    /// (see the `events` module); a reconciliation should follow.
    pub fn owned_link_removals(&self) -> Result<tokio::sync::mpsc::Receiver<()>, KernelError> {
        events::owned_link_removals(self.inner.runtime())
            .map_err(|c| KernelError::new("subscribe to link notifications", c))
    }

    /// Apply `ops` in order. On the first failure, roll back the ops already applied by
    /// running their [`Op::inverse`]s in reverse order (best effort, failures logged at
    /// warn), then return the error, with the failing op's Display as context.
    ///
    /// An address or route that already exists exactly as asked counts as applied (so a
    /// reconcile can re-apply a plan), but is not rolled back: Cove did not add it this time.
    ///
    /// Consecutive forwarding and host neighbour entries are sent in batches (see
    /// [`Kernel::teardown`]); when one of a batch fails, the others of that batch that
    /// succeeded are rolled back too.
    #[tracing::instrument(level = "debug", name = "kernel.apply", skip_all, fields(ops = ops.len()))]
    pub async fn apply(&self, ops: &[Op]) -> Result<(), KernelError> {
        let _busy = self.inner.reaper().busy();
        let mut undo: Vec<Op> = Vec::new();
        let mut failed = None;
        self.run(ops, |op, res| match res {
            Ok(Outcome::Changed) => {
                undo.extend(op.inverse());
                true
            }
            Ok(Outcome::Unchanged) => {
                debug!("already present: {op}");
                true
            }
            Err(cause) if failed.is_none() => {
                failed = Some(KernelError::new(op.to_string(), cause));
                false
            }
            Err(cause) => {
                debug!("also failed: {op}: {cause}");
                false
            }
        })
        .await;
        let Some(err) = failed else { return Ok(()) };
        debug!("failed: {err}; rolling back {} op(s)", undo.len());
        undo.reverse();
        self.run(&undo, |inv, res| {
            match res {
                Err(c) if !c.is_gone() => warn!("rollback failed: {inv}: {c}"),
                _ => debug!("rolled back: {inv}"),
            }
            true
        })
        .await;
        Err(err)
    }

    /// Best-effort removal: run every op, keep going past failures; "already gone" (ENODEV,
    /// ENOENT, ESRCH, EADDRNOTAVAIL, netns path missing) counts as success. Returns every
    /// real error, one per op that failed.
    ///
    /// Runs of forwarding entries and host neighbour entries ([`Op::VxlanFdb`],
    /// [`Op::BridgeFdb`], [`Op::Neighbor`] in the host, and their deletions) are pipelined
    /// on one socket, many requests to a system call, each still answered on its own: a
    /// reconcile of thousands of entries costs tens of system calls.
    pub async fn teardown(&self, ops: &[Op]) -> Vec<KernelError> {
        let _busy = self.inner.reaper().busy();
        let mut errors = Vec::new();
        self.run(ops, |op, res| {
            match res {
                Err(c) if c.is_gone() => debug!("already gone: {op}"),
                Err(c) => errors.push(KernelError::new(op.to_string(), c)),
                Ok(_) => {}
            }
            true
        })
        .await;
        errors
    }

    /// Execute `ops` in order, entry ops in batches, and hand each op's result to `each`;
    /// stop after the op (or batch) for which `each` returned false.
    async fn run(&self, ops: &[Op], mut each: impl FnMut(&Op, Result<Outcome, Cause>) -> bool) {
        let mut rest = ops;
        while let Some(first) = rest.first() {
            let batch = rest.iter().take_while(|op| entries::is_entry(op)).count();
            let mut go_on = true;
            if batch > 0 {
                let (now, later) = rest.split_at(batch);
                for op in now {
                    debug!("{op}");
                }
                let results = entries::exec(&self.inner, now).await;
                for (op, res) in now.iter().zip(results) {
                    go_on &= each(op, res.map(|()| Outcome::Changed));
                }
                rest = later;
            } else {
                debug!("{first}");
                go_on = each(first, ops::exec(&self.inner, first).await);
                rest = &rest[1..];
            }
            if !go_on {
                return;
            }
        }
    }

    /// Delete every condemned link now ([`Op::Condemn`] hands them to a background reaper
    /// that waits for a quiet moment): at start-up, and for tests that count links.
    pub async fn reap_condemned(&self) -> Result<(), KernelError> {
        reaper::reap(self.inner.host())
            .await
            .map_err(|c| KernelError::new("delete condemned links", c))
    }

    /// Prepare the directory sandboxes' namespaces are bind-mounted in: a private mount of
    /// its own (created if missing). Call once at start, before any sandbox is created.
    pub fn prepare_netns_dir(dir: &Path) -> Result<(), KernelError> {
        netns::prepare_dir(dir)
            .map_err(|c| KernelError::new(format!("prepare netns directory {}", dir.display()), c))
    }

    /// Create a new network namespace bind-mounted at `path` (parent directory created if
    /// missing), with `lo` up. No fork: a throwaway thread unshares its netns, bind-mounts
    /// `/proc/thread-self/ns/net` onto `path`, opens the netlink socket later ops in this
    /// netns use, and exits. An existing netns at `path` is a conflict (EEXIST); a stale
    /// plain file there (left by a crash) is reused.
    #[tracing::instrument(level = "debug", name = "kernel.create_netns", skip_all)]
    pub async fn create_netns(&self, path: &Path) -> Result<(), KernelError> {
        let ctx = || format!("create netns {}", path.display());
        debug!("{}", ctx());
        let (p, rt, dev) = (path.to_owned(), self.inner.runtime().clone(), self.inner.nsfs_dev());
        let (id, handle) = netns::on_thread(move || {
            let id = netns::create_here(&p, dev)?;
            match handles::connect(&rt) {
                Ok(h) => Ok((id, h)),
                Err(c) => {
                    let _ = netns::remove(&p);
                    Err(c)
                }
            }
        })
        .await
        .map_err(|c| KernelError::new(ctx(), c))?;
        if let Err(c) = ops::set_up(&handle, "lo").await {
            drop(handle);
            let _ = netns::remove(path);
            return Err(KernelError::new(ctx(), c));
        }
        self.inner.insert(path, id, handle);
        Ok(())
    }

    /// Remove the network namespace mounted at `path`: `umount2(MNT_DETACH)` and remove the
    /// file; a missing path is fine. The cached netlink handle for it is dropped. This is
    /// the fast teardown: the kernel reaps the namespace's links (and so the host ends of
    /// its veth pairs) asynchronously, once nothing else holds the namespace.
    #[tracing::instrument(level = "debug", name = "kernel.remove_netns", skip_all)]
    pub async fn remove_netns(&self, path: &Path) -> Result<(), KernelError> {
        debug!("remove netns {}", path.display());
        self.inner.forget(path);
        netns::remove(path)
            .map_err(|c| KernelError::new(format!("remove netns {}", path.display()), c))
    }

    /// Whether a link of this name exists in the daemon's netns: one lookup by name, not a
    /// dump (a host with 2,000 containers has 2,000 veth ends to list).
    pub async fn link_exists(&self, name: &str) -> Result<bool, KernelError> {
        match nl::link_index(self.inner.host(), name).await {
            Ok(_) => Ok(true),
            Err(Cause::NoSuchLink(_)) => Ok(false),
            Err(c) => Err(KernelError::new(format!("look up link {name}"), c)),
        }
    }

    /// The host namespace's objects as the kernel has them (links, with a VXLAN device's
    /// attributes; addresses, permanent neighbours, bridge-port flags and `local ::1`
    /// routes of Cove's links; the forwarding entries of Cove's VXLAN devices; the sysctls
    /// in `sysctl_keys`), for the diff against the desired state.
    #[tracing::instrument(level = "debug", name = "kernel.observe", skip_all)]
    pub async fn observe_host(
        &self,
        sysctl_keys: &[String],
    ) -> Result<cove_plan::HostState, KernelError> {
        observe::host_state(self.inner.dumper(), self.inner.entries(), sysctl_keys)
            .await
            .map_err(|c| KernelError::new("read the host's network objects", c))
    }

    /// Links in the daemon's netns.
    pub async fn links(&self) -> Result<Vec<LinkInfo>, KernelError> {
        self.inner
            .dumper()
            .link_dump(nl::link_info)
            .await
            .map_err(|c| KernelError::new("list links", c))
    }

    /// Traffic counters of every link in the daemon's netns (one link dump).
    pub async fn link_stats(&self) -> Result<Vec<LinkStats>, KernelError> {
        self.inner
            .dumper()
            .link_dump(nl::link_stats)
            .await
            .map_err(|c| KernelError::new("read link statistics", c))
    }

    /// Destination prefixes of the routes in the daemon's netns main table (IPv4 and IPv6),
    /// excluding default routes, link-local (fe80::/10) and multicast prefixes, and
    /// local/broadcast-type routes. Sorted, without duplicates. IPAM uses it to avoid
    /// subnets the host already routes.
    #[tracing::instrument(level = "debug", name = "kernel.route_prefixes", skip_all)]
    pub async fn route_prefixes(&self) -> Result<Vec<ipnet::IpNet>, KernelError> {
        nl::route_prefixes(self.inner.host()).await.map_err(|c| KernelError::new("list routes", c))
    }
}

/// Creates a UDP socket and a TCP listener on `addr` inside the network namespace mounted
/// at `netns`, on a throwaway thread (never `setns` on a runtime worker). The sockets keep
/// that namespace after the thread exits. Both are non-blocking.
pub async fn bind_in_netns(
    netns: &Path,
    addr: std::net::SocketAddr,
) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let netns = netns.to_owned();
    std::thread::Builder::new().name("cove-ns-bind".into()).spawn(move || {
        let r = (|| {
            let ns = std::fs::File::open(&netns)?;
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let udp = std::net::UdpSocket::bind(addr)?;
            let tcp = std::net::TcpListener::bind(addr)?;
            udp.set_nonblocking(true)?;
            tcp.set_nonblocking(true)?;
            Ok((udp, tcp))
        })();
        let _ = tx.send(r);
    })?;
    rx.await.map_err(|_| std::io::Error::other("the socket thread died"))?
}

/// Reads a sysctl of the daemon's own namespace (`net/ipv4/ip_forward` style key).
pub fn read_sysctl(key: &str) -> Result<String, KernelError> {
    std::fs::read_to_string(format!("/proc/sys/{key}"))
        .map(|v| v.trim().to_string())
        .map_err(|e| KernelError::new(format!("read sysctl {key}"), e))
}
