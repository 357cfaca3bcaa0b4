//! Recording fakes of the controller's seams, for tests without root: a kernel that keeps
//! a model of the host's links, namespaces, sysctls, neighbour and forwarding entries and
//! journals every operation it is given, a firewall that keeps the last ruleset and every delta, and a runtime whose
//! containers are entries in a map. Each can be told to fail an operation.
//!
//! [`FakeHost::start`] builds a controller on them (in-memory store, firewall on), so a
//! test drives the controller through its public methods and asserts on the journals, the
//! fakes' state and the store's records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use ipnet::IpNet;

use cove_drivers::plan::{Netns, Op, OWNED_LINK_GROUP, RETIRED_LINK_GROUP};
use cove_firewall::{ElementDelta, NamedCounter};
use cove_kernel::{Cause, KernelError, LinkInfo, LinkStats};
use cove_model::{Error, PortBinding, Result};
use cove_runtime::{BundleSpec, ExecSpec, ImageInfo, LogEntry, RunState};

use crate::seams::{Firewall, Kernel, LogSource, Runtime, Seams};
use crate::{Controller, ControllerConfig, SharedController};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The failure an injected fault gives: the kernel refused (EPERM).
fn refused() -> Cause {
    Cause::Os(std::io::Error::from_raw_os_error(libc::EPERM))
}

/// A host link in the fake kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLink {
    /// `bridge`, `veth` or `vxlan`.
    pub kind: &'static str,
    /// Link group.
    pub group: u32,
    /// Bridge it is a port of.
    pub master: Option<String>,
    /// The sandbox its peer is in (veth).
    pub peer_netns: Option<PathBuf>,
    /// Administratively up.
    pub up: bool,
}

/// What the fake kernel holds.
#[derive(Debug, Default)]
pub struct KernelModel {
    /// Every call, one line each: `apply <op>`, `teardown <op>`, `rollback <op>`,
    /// `create netns <path>`, `remove netns <path>`, `reap`, `bind <addr> in <path>` (the
    /// embedded resolver's sockets).
    pub journal: Vec<String>,
    /// Links of the host's namespace by name.
    pub links: BTreeMap<String, FakeLink>,
    /// Traffic counters of host links, by name (links not here count nothing).
    pub link_stats: BTreeMap<String, LinkStats>,
    /// Addresses of host links: `(link, address)`.
    pub addresses: BTreeSet<(String, IpNet)>,
    /// Permanent neighbours by `(netns, link, address)`; a sandbox's go with the sandbox
    /// and with the interface retired in it.
    pub neighbours: BTreeSet<(String, String, IpAddr)>,
    /// The MAC of each neighbour entry written (see `neighbours` for which exist).
    pub neighbour_macs: BTreeMap<(String, String, IpAddr), cove_model::MacAddr>,
    /// Host links with the `local ::1` route.
    pub loopback6: BTreeSet<String>,
    /// The attributes of VXLAN devices (links of kind `vxlan`), by name.
    pub vxlans: BTreeMap<String, cove_plan::Vxlan>,
    /// MTUs of the links the model tracks one for (VXLAN devices); others report 1500.
    pub mtus: BTreeMap<String, u32>,
    /// Bridge-port flags of the VXLAN devices (a new port has the kernel's defaults).
    pub port_flags: BTreeMap<String, cove_plan::PortFlags>,
    /// VXLAN forwarding entries (`self permanent`) by (device, MAC): the remote VTEP.
    pub fdb_self: BTreeMap<(String, cove_model::MacAddr), IpAddr>,
    /// Static bridge forwarding entries (`master static`) by (port, MAC).
    pub fdb_master: BTreeSet<(String, cove_model::MacAddr)>,
    /// Sandbox namespaces mounted.
    pub netns: BTreeSet<PathBuf>,
    /// Routes of the host (for IPAM).
    pub routes: Vec<IpNet>,
    /// Blackhole routes of the host (the encryption's route guard), with their metric.
    pub blackholes: BTreeMap<IpNet, u32>,
    /// Sysctls of the host by key.
    pub sysctls: BTreeMap<String, String>,
    /// Port reservations by owner.
    pub ports: BTreeMap<String, Vec<PortBinding>>,
    /// An op whose Display contains one of these fails (EPERM), as do `create netns` and
    /// `bind` when their journal line contains one of them.
    pub fail: Vec<String>,
    next_port: u16,
}

impl KernelModel {
    fn fails(&self, what: &str) -> bool {
        self.fail.iter().any(|f| what.contains(f.as_str()))
    }

    /// Host links in Cove's link group.
    pub fn owned_links(&self) -> Vec<String> {
        self.links
            .iter()
            .filter(|(_, l)| l.group == OWNED_LINK_GROUP)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Ports of a bridge.
    pub fn ports_of(&self, bridge: &str) -> Vec<String> {
        self.links
            .iter()
            .filter(|(_, l)| l.master.as_deref() == Some(bridge))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Lines of the journal that start with `prefix`.
    pub fn journal_of(&self, prefix: &str) -> Vec<String> {
        self.journal.iter().filter(|l| l.starts_with(prefix)).cloned().collect()
    }

    fn exec(&mut self, op: &Op) -> std::result::Result<(), Cause> {
        match op {
            Op::CreateBridge { name, group, .. } => {
                if self.links.contains_key(name) {
                    return Err(Cause::Os(std::io::Error::from_raw_os_error(libc::EEXIST)));
                }
                self.links.insert(
                    name.clone(),
                    FakeLink {
                        kind: "bridge",
                        group: *group,
                        master: None,
                        peer_netns: None,
                        up: false,
                    },
                );
            }
            Op::CreateVeth { host_name, bridge, peer_netns, group, .. } => {
                if !self.links.contains_key(bridge) {
                    return Err(Cause::NoSuchLink(bridge.clone()));
                }
                if !self.netns.contains(peer_netns) {
                    return Err(Cause::NoSuchNetns(peer_netns.clone()));
                }
                if self.links.contains_key(host_name) {
                    return Err(Cause::Os(std::io::Error::from_raw_os_error(libc::EEXIST)));
                }
                self.links.insert(
                    host_name.clone(),
                    FakeLink {
                        kind: "veth",
                        group: *group,
                        master: Some(bridge.clone()),
                        peer_netns: Some(peer_netns.clone()),
                        up: true,
                    },
                );
            }
            Op::AddAddress { netns: Netns::Host, link, addr } => {
                if !self.links.contains_key(link) {
                    return Err(Cause::NoSuchLink(link.clone()));
                }
                self.addresses.insert((link.clone(), *addr));
            }
            Op::DelAddress { netns: Netns::Host, link, addr }
                if !self.addresses.remove(&(link.clone(), *addr)) =>
            {
                return Err(Cause::Os(std::io::Error::from_raw_os_error(libc::EADDRNOTAVAIL)));
            }
            Op::SetUp { netns: Netns::Host, link } => {
                let l = self.links.get_mut(link).ok_or_else(|| Cause::NoSuchLink(link.clone()))?;
                l.up = true;
            }
            Op::Sysctl { netns: Netns::Host, key, value } => {
                self.sysctls.insert(key.clone(), value.clone());
            }
            Op::Neighbor { netns, link, addr, mac } => {
                self.neighbours.insert((netns.to_string(), link.clone(), *addr));
                self.neighbour_macs.insert((netns.to_string(), link.clone(), *addr), *mac);
            }
            Op::LoopbackRoute6 { link } => {
                self.loopback6.insert(link.clone());
            }
            Op::DelNeighbor { netns, link, addr }
                if !self.neighbours.remove(&(netns.to_string(), link.clone(), *addr)) =>
            {
                return Err(Cause::Os(std::io::Error::from_raw_os_error(libc::ENOENT)));
            }
            // The retired interface takes its neighbour entries with it.
            Op::Retire { netns: netns @ Netns::Path(_), link, .. } => {
                let ns = netns.to_string();
                self.neighbours.retain(|(n, l, _)| !(*n == ns && l == link));
            }
            Op::Condemn { link } => {
                let l = self.links.get_mut(link).ok_or_else(|| Cause::NoSuchLink(link.clone()))?;
                l.group = RETIRED_LINK_GROUP;
            }
            Op::SetMaster { link, master } => {
                if !self.links.contains_key(master) {
                    return Err(Cause::NoSuchLink(master.clone()));
                }
                let l = self.links.get_mut(link).ok_or_else(|| Cause::NoSuchLink(link.clone()))?;
                l.master = Some(master.clone());
                // A new port: the kernel's default flags, none of the old bridge's entries.
                if self.vxlans.contains_key(link) {
                    self.port_flags.insert(link.clone(), cove_plan::PortFlags::DEFAULT);
                }
                self.fdb_master.retain(|(l, _)| l != link);
            }
            Op::DeleteLink { netns: Netns::Host, name } => {
                if self.links.remove(name).is_none() {
                    return Err(Cause::NoSuchLink(name.clone()));
                }
                self.forget_link(name);
            }
            Op::CreateMacvlan { name, group, parent, mtu, .. } => {
                if !self.links.contains_key(parent) {
                    return Err(Cause::NoSuchLink(parent.clone()));
                }
                if self.links.contains_key(name) {
                    return Err(Cause::Os(std::io::Error::from_raw_os_error(libc::EEXIST)));
                }
                self.links.insert(
                    name.clone(),
                    FakeLink {
                        kind: "macvlan",
                        group: *group,
                        master: None,
                        peer_netns: None,
                        up: false,
                    },
                );
                self.mtus.insert(name.clone(), *mtu);
            }
            Op::CreateVxlan { name, group, vni, local, port, mtu, master } => {
                if !self.links.contains_key(master) {
                    return Err(Cause::NoSuchLink(master.clone()));
                }
                if self.links.contains_key(name) {
                    return Err(Cause::Os(std::io::Error::from_raw_os_error(libc::EEXIST)));
                }
                self.links.insert(
                    name.clone(),
                    FakeLink {
                        kind: "vxlan",
                        group: *group,
                        master: Some(master.clone()),
                        peer_netns: None,
                        up: false,
                    },
                );
                self.vxlans.insert(name.clone(), cove_plan::Vxlan::overlay(*vni, *local, *port));
                self.mtus.insert(name.clone(), *mtu);
                self.port_flags.insert(name.clone(), cove_plan::PortFlags::DEFAULT);
            }
            Op::SetPortFlags { link, flags } => {
                let l = self.links.get(link).ok_or_else(|| Cause::NoSuchLink(link.clone()))?;
                if l.master.is_none() {
                    return Err(Cause::Os(std::io::Error::from_raw_os_error(libc::EINVAL)));
                }
                self.port_flags.insert(link.clone(), *flags);
            }
            Op::VxlanFdb { link, mac, dst } => {
                if !self.vxlans.contains_key(link) {
                    return Err(Cause::NoSuchLink(link.clone()));
                }
                self.fdb_self.insert((link.clone(), *mac), *dst);
            }
            Op::DelVxlanFdb { link, mac }
                if self.fdb_self.remove(&(link.clone(), *mac)).is_none() =>
            {
                return Err(Cause::Os(std::io::Error::from_raw_os_error(libc::ENOENT)));
            }
            Op::BridgeFdb { link, mac } => {
                let l = self.links.get(link).ok_or_else(|| Cause::NoSuchLink(link.clone()))?;
                if l.master.is_none() {
                    return Err(Cause::Os(std::io::Error::from_raw_os_error(libc::EINVAL)));
                }
                self.fdb_master.insert((link.clone(), *mac));
            }
            Op::DelBridgeFdb { link, mac } if !self.fdb_master.remove(&(link.clone(), *mac)) => {
                return Err(Cause::Os(std::io::Error::from_raw_os_error(libc::ENOENT)));
            }
            Op::SetMtu { netns: Netns::Host, link, mtu } if self.mtus.contains_key(link) => {
                self.mtus.insert(link.clone(), *mtu);
            }
            Op::BlackholeRoute { dst, metric } => {
                self.blackholes.insert(*dst, *metric);
            }
            // Inside sandboxes and host details the model does not keep: journaled only.
            _ => {}
        }
        Ok(())
    }

    /// A link went: its addresses, its neighbours and forwarding entries, its ports'
    /// master (and their flags and static entries).
    fn forget_link(&mut self, name: &str) {
        self.addresses.retain(|(l, _)| l != name);
        self.neighbours.retain(|(ns, l, _)| !(ns == "host" && l == name));
        self.loopback6.remove(name);
        self.vxlans.remove(name);
        self.mtus.remove(name);
        self.port_flags.remove(name);
        self.fdb_self.retain(|(l, _), _| l != name);
        self.fdb_master.retain(|(l, _)| l != name);
        let mut ports = vec![];
        for (port, l) in self.links.iter_mut() {
            if l.master.as_deref() == Some(name) {
                l.master = None;
                ports.push(port.clone());
            }
        }
        for port in ports {
            self.port_flags.remove(&port);
            self.fdb_master.retain(|(l, _)| *l != port);
        }
    }

    fn reap(&mut self) {
        let gone: Vec<String> = self
            .links
            .iter()
            .filter(|(_, l)| l.group == RETIRED_LINK_GROUP)
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            self.links.remove(&n);
            self.forget_link(&n);
        }
    }
}

/// A kernel that keeps a model of the host and journals every operation.
#[derive(Debug, Default)]
pub struct FakeKernel {
    model: Mutex<KernelModel>,
    /// Runs (once) after the next observation, as if the world moved on meanwhile.
    after_observe: Mutex<Hook>,
    /// Subscribers to [`Kernel::owned_link_removals`].
    removals: Mutex<Vec<tokio::sync::mpsc::Sender<()>>>,
}

/// A test's callback.
#[derive(Default)]
struct Hook(Option<Box<dyn FnOnce() + Send>>);

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Hook(set)" } else { "Hook(none)" })
    }
}

impl FakeKernel {
    /// The model, to read or to change (routes, failures) in a test.
    pub fn model(&self) -> MutexGuard<'_, KernelModel> {
        lock(&self.model)
    }

    /// Make ops whose Display contains `what` fail, until [`FakeKernel::heal`].
    pub fn fail_on(&self, what: &str) {
        self.model().fail.push(what.to_string());
    }

    /// Stop failing.
    pub fn heal(&self) {
        self.model().fail.clear();
    }

    /// The model as `observe_host` reports it.
    fn observe(
        &self,
        sysctl_keys: &[String],
    ) -> std::result::Result<cove_plan::HostState, KernelError> {
        let m = self.model();
        let mut s = cove_plan::HostState::default();
        for (name, l) in &m.links {
            let kind = match (l.kind, m.vxlans.get(name)) {
                ("bridge", _) => cove_plan::LinkKind::Bridge { mac: cove_model::MacAddr([0; 6]) },
                ("veth", _) => cove_plan::LinkKind::Veth,
                ("vxlan", Some(v)) => cove_plan::LinkKind::Vxlan(*v),
                ("macvlan", _) => cove_plan::LinkKind::Macvlan(None),
                (other, _) => cove_plan::LinkKind::Other(Some(other.to_string())),
            };
            s.links.insert(
                name.clone(),
                cove_plan::Link {
                    kind,
                    mtu: m.mtus.get(name).copied().unwrap_or(1500),
                    up: l.up,
                    master: l.master.clone(),
                    group: l.group,
                    hairpin: false,
                },
            );
        }
        let ours = |link: &str| m.links.get(link).is_some_and(|l| l.group == OWNED_LINK_GROUP);
        s.addresses = m.addresses.iter().filter(|(l, _)| ours(l)).cloned().collect();
        for key @ (ns, link, addr) in &m.neighbours {
            if let (true, Some(mac)) = (ns == "host" && ours(link), m.neighbour_macs.get(key)) {
                s.neighbours.insert((link.clone(), *addr), *mac);
            }
        }
        for key in sysctl_keys {
            if let Some(v) = m.sysctls.get(key) {
                s.sysctls.insert(key.clone(), v.clone());
            }
        }
        s.loopback6 = m.loopback6.clone();
        // As the real observation: flags of Cove's ports, entries of Cove's VXLAN devices.
        s.port_flags =
            m.port_flags.iter().filter(|(l, _)| ours(l)).map(|(l, f)| (l.clone(), *f)).collect();
        let our_vxlan = |l: &str| ours(l) && m.vxlans.contains_key(l);
        s.fdb_self = m
            .fdb_self
            .iter()
            .filter(|((l, _), _)| our_vxlan(l))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        s.fdb_master = m.fdb_master.iter().filter(|(l, _)| our_vxlan(l)).cloned().collect();
        Ok(s)
    }

    /// Delete a link behind Cove's back, as `ip link del` would, and tell the subscribers
    /// of [`Kernel::owned_link_removals`] if it was in Cove's group.
    pub fn delete_by_hand(&self, name: &str) {
        let owned = {
            let mut m = self.model();
            let link = m.links.remove(name);
            m.forget_link(name);
            link.is_some_and(|l| l.group == OWNED_LINK_GROUP)
        };
        if owned {
            lock(&self.removals).retain(|tx| {
                !matches!(tx.try_send(()), Err(tokio::sync::mpsc::error::TrySendError::Closed(())))
            });
        }
    }

    /// Run `f` right after the next [`Kernel::observe_host`] returns its observation.
    pub fn after_next_observe(&self, f: impl FnOnce() + Send + 'static) {
        lock(&self.after_observe).0 = Some(Box::new(f));
    }
}

#[async_trait]
impl Kernel for FakeKernel {
    async fn apply(&self, ops: &[Op]) -> std::result::Result<(), KernelError> {
        let mut m = self.model();
        let mut undo: Vec<Op> = vec![];
        for op in ops {
            let line = op.to_string();
            m.journal.push(format!("apply {line}"));
            let result = if m.fails(&line) { Err(refused()) } else { m.exec(op) };
            match result {
                Ok(()) => undo.extend(op.inverse()),
                Err(cause) => {
                    for inv in undo.iter().rev() {
                        m.journal.push(format!("rollback {inv}"));
                        let _ = m.exec(inv);
                    }
                    return Err(KernelError::new(line, cause));
                }
            }
        }
        Ok(())
    }

    async fn teardown(&self, ops: &[Op]) -> Vec<KernelError> {
        let mut m = self.model();
        let mut errors = vec![];
        for op in ops {
            let line = op.to_string();
            m.journal.push(format!("teardown {line}"));
            let result = if m.fails(&line) { Err(refused()) } else { m.exec(op) };
            match result {
                Err(c) if !c.is_gone() => errors.push(KernelError::new(line, c)),
                _ => {}
            }
        }
        errors
    }

    async fn create_netns(&self, path: &Path) -> std::result::Result<(), KernelError> {
        let mut m = self.model();
        let line = format!("create netns {}", path.display());
        m.journal.push(line.clone());
        if m.fails(&line) {
            return Err(KernelError::new(line, refused()));
        }
        if !m.netns.insert(path.to_owned()) {
            return Err(KernelError::new(
                line,
                Cause::Os(std::io::Error::from_raw_os_error(libc::EEXIST)),
            ));
        }
        Ok(())
    }

    async fn remove_netns(&self, path: &Path) -> std::result::Result<(), KernelError> {
        let mut m = self.model();
        m.journal.push(format!("remove netns {}", path.display()));
        m.netns.remove(path);
        // Its neighbour entries go with it.
        let ns = Netns::Path(path.to_owned()).to_string();
        m.neighbours.retain(|(n, _, _)| *n != ns);
        // The kernel reaps the namespace's links, and so the host ends of its veth pairs.
        let gone: Vec<String> = m
            .links
            .iter()
            .filter(|(_, l)| l.peer_netns.as_deref() == Some(path))
            .map(|(n, _)| n.clone())
            .collect();
        for n in gone {
            m.links.remove(&n);
            m.forget_link(&n);
        }
        Ok(())
    }

    async fn link_exists(&self, name: &str) -> std::result::Result<bool, KernelError> {
        Ok(self.model().links.contains_key(name))
    }

    async fn links(&self) -> std::result::Result<Vec<LinkInfo>, KernelError> {
        let m = self.model();
        let index: HashMap<&str, u32> =
            m.links.keys().enumerate().map(|(i, n)| (n.as_str(), i as u32 + 2)).collect();
        Ok(m.links
            .iter()
            .map(|(name, l)| LinkInfo {
                index: index[name.as_str()],
                name: name.clone(),
                kind: Some(l.kind.to_string()),
                master: l.master.as_deref().and_then(|b| index.get(b).copied()),
                mtu: m.mtus.get(name).copied().unwrap_or(1500),
                up: l.up,
                group: l.group,
            })
            .collect())
    }

    async fn link_stats(&self) -> std::result::Result<Vec<LinkStats>, KernelError> {
        let m = self.model();
        Ok(m.links
            .keys()
            .map(|name| {
                m.link_stats
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| LinkStats { name: name.clone(), ..LinkStats::default() })
            })
            .collect())
    }

    async fn observe_host(
        &self,
        sysctl_keys: &[String],
    ) -> std::result::Result<cove_plan::HostState, KernelError> {
        let observed = self.observe(sysctl_keys);
        let hook = lock(&self.after_observe).0.take();
        if let Some(f) = hook {
            f();
        }
        observed
    }

    async fn route_prefixes(&self) -> std::result::Result<Vec<IpNet>, KernelError> {
        let m = self.model();
        // The connected routes of the bridges' addresses, as the kernel has them.
        let mut routes: Vec<IpNet> = m.routes.clone();
        routes.extend(m.addresses.iter().map(|(_, a)| a.trunc()));
        routes.sort();
        routes.dedup();
        Ok(routes)
    }

    fn owned_link_removals(
        &self,
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<()>, KernelError> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        lock(&self.removals).push(tx);
        Ok(rx)
    }

    async fn reap_condemned(&self) -> std::result::Result<(), KernelError> {
        let mut m = self.model();
        m.journal.push("reap".into());
        m.reap();
        Ok(())
    }

    async fn forget_flows_to(
        &self,
        ip: std::net::IpAddr,
    ) -> std::result::Result<usize, KernelError> {
        self.model().journal.push(format!("forget flows to {ip}"));
        Ok(0)
    }

    fn read_sysctl(&self, key: &str) -> std::result::Result<String, KernelError> {
        Ok(self.model().sysctls.get(key).cloned().unwrap_or_else(|| "0".into()))
    }

    async fn bind_in_netns(
        &self,
        netns: &Path,
        addr: SocketAddr,
    ) -> std::io::Result<(UdpSocket, TcpListener)> {
        let mut m = self.model();
        let line = format!("bind {addr} in {}", netns.display());
        m.journal.push(line.clone());
        if m.fails(&line) {
            return Err(std::io::Error::from_raw_os_error(libc::EPERM));
        }
        if !m.netns.contains(netns) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        }
        drop(m);
        // Loopback stands in for the sandbox's 127.0.0.11:53.
        let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let udp = UdpSocket::bind(any)?;
        let tcp = TcpListener::bind(any)?;
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        Ok((udp, tcp))
    }

    fn reserve_ports(
        &self,
        owner: &str,
        bindings: &[PortBinding],
        has_v6: bool,
    ) -> Result<Vec<PortBinding>> {
        let mut m = self.model();
        let taken = |m: &KernelModel, b: &PortBinding| {
            m.ports.values().flatten().any(|o| {
                o.protocol == b.protocol
                    && o.host_port == b.host_port
                    && (o.host_ip == b.host_ip
                        || o.host_ip.is_none_or(|i| i.is_unspecified())
                        || b.host_ip.is_none_or(|i| i.is_unspecified()))
            })
        };
        let mut out = vec![];
        for b in bindings {
            let ips: Vec<Option<IpAddr>> = match b.host_ip {
                Some(ip) => vec![Some(ip)],
                None if has_v6 => vec![
                    Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                    Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
                ],
                None => vec![Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED))],
            };
            let mut port = b.host_port;
            if port == 0 {
                m.next_port = m.next_port.max(32768) + 1;
                port = m.next_port;
            }
            for ip in ips {
                let bound = PortBinding { host_ip: ip, host_port: port, ..b.clone() };
                if taken(&m, &bound) || out.contains(&bound) {
                    return Err(Error::conflict(format!(
                        "Bind for {}:{port} failed: port is already allocated",
                        ip.map(|i| i.to_string()).unwrap_or_default()
                    )));
                }
                out.push(bound);
            }
        }
        m.ports.insert(owner.to_string(), out.clone());
        Ok(out)
    }

    fn release_ports(&self, owner: &str) {
        self.model().ports.remove(owner);
    }
}

/// What the fake firewall was given.
#[derive(Debug, Default)]
pub struct FirewallModelLog {
    /// Every whole ruleset written, in order.
    pub rulesets: Vec<String>,
    /// Every element delta written, as nft text, in order.
    pub deltas: Vec<String>,
    /// Fail every write while set.
    pub fail: bool,
    /// Named counters by (`family table`, name): (packets, bytes). Every counter of a
    /// written ruleset reads zero unless a test set it here.
    pub counters: BTreeMap<(String, String), (u64, u64)>,
}

/// A firewall that records what it is told to write.
#[derive(Debug, Default)]
pub struct FakeFirewall {
    log: Mutex<FirewallModelLog>,
}

impl FakeFirewall {
    /// What it was given.
    pub fn log(&self) -> MutexGuard<'_, FirewallModelLog> {
        lock(&self.log)
    }
}

#[async_trait]
impl Firewall for FakeFirewall {
    async fn apply_ruleset(&self, ruleset: &str) -> std::result::Result<(), KernelError> {
        let mut l = self.log();
        if l.fail {
            return Err(KernelError::new("nft -f -", refused()));
        }
        l.rulesets.push(ruleset.to_string());
        Ok(())
    }

    async fn apply_delta(&self, delta: &ElementDelta) -> std::result::Result<(), KernelError> {
        let mut l = self.log();
        if l.fail {
            return Err(KernelError::new("nft delta", refused()));
        }
        l.deltas.push(delta.render_text());
        Ok(())
    }

    async fn counters(&self, table: &str) -> std::result::Result<Vec<NamedCounter>, KernelError> {
        let l = self.log();
        let Some(last) = l.rulesets.last() else {
            return Err(KernelError::new("nft list counters", refused()));
        };
        let header = format!("table {table} {{");
        let mut out = Vec::new();
        let mut inside = false;
        for line in last.lines() {
            let t = line.trim();
            if t.starts_with("table ") {
                inside = t == header;
            } else if let (true, Some(name)) = (inside, t.strip_prefix("counter ")) {
                let name = name.trim_end_matches(" {}").trim_end_matches(" {").to_string();
                let key = (table.to_string(), name.clone());
                let (packets, bytes) = l.counters.get(&key).copied().unwrap_or_default();
                out.push(NamedCounter { name, packets, bytes });
            }
        }
        Ok(out)
    }

    fn watch_foreign_changes(
        &self,
        _tables: &[&str],
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<()>, KernelError> {
        // Nobody else changes a fake firewall: a channel that never sends.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        std::mem::forget(tx);
        Ok(rx)
    }
}

/// One container in the fake runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeProcess {
    /// Running with this pid, in this sandbox (None: the host's stack).
    Running {
        /// Pid.
        pid: u32,
        /// Sandbox namespace.
        netns: Option<PathBuf>,
    },
    /// Exited with this code.
    Exited(i32),
}

/// What the fake runtime holds.
#[derive(Debug, Default)]
pub struct RuntimeModel {
    /// Images by reference (`name:tag`).
    pub images: BTreeMap<String, ImageInfo>,
    /// Containers with a bundle.
    pub bundles: BTreeMap<String, BundleSpec>,
    /// Generated files by `(container, name)`.
    pub etc: BTreeMap<(String, String), String>,
    /// Processes by container.
    pub processes: BTreeMap<String, FakeProcess>,
    /// Every call: `start <id>`, `kill <id> <sig>`, `cleanup <id>`, `remove <id>`.
    pub journal: Vec<String>,
    /// Starts of these containers fail.
    pub fail_start: BTreeSet<String>,
    /// Every start waits here first (outside the model's lock), e.g. for a barrier that
    /// only opens once several starts run at the same time.
    pub start_gate: Option<Arc<std::sync::Barrier>>,
    next_pid: u32,
}

/// A runtime whose containers are map entries; `kill` with SIGTERM/SIGKILL ends them.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    model: Mutex<RuntimeModel>,
    exits: Mutex<HashMap<String, tokio::sync::watch::Sender<Option<i32>>>>,
}

/// The image the fakes have: `busybox:latest`, running `sh`.
pub fn busybox() -> ImageInfo {
    ImageInfo {
        id: format!("sha256:{}", "b".repeat(64)),
        tags: vec!["busybox:latest".into()],
        created: crate::now(),
        size: 1,
        entrypoint: vec![],
        cmd: vec!["sh".into()],
        env: vec!["PATH=/bin".into()],
        working_dir: String::new(),
        exposed_ports: vec![],
    }
}

impl FakeRuntime {
    /// A runtime with the busybox image.
    pub fn new() -> Self {
        let r = FakeRuntime::default();
        r.model().images.insert("busybox:latest".into(), busybox());
        r
    }

    /// The model, to read or change in a test.
    pub fn model(&self) -> MutexGuard<'_, RuntimeModel> {
        lock(&self.model)
    }

    /// The container's process exits with `code` (as if it ended by itself).
    pub fn exit(&self, id: &str, code: i32) {
        let mut m = self.model();
        if matches!(m.processes.get(id), Some(FakeProcess::Running { .. })) {
            m.processes.insert(id.to_string(), FakeProcess::Exited(code));
            drop(m);
            if let Some(tx) = lock(&self.exits).get(id) {
                // `send` would drop the value while nobody has subscribed yet (a monitor
                // that has not run): kept for whoever waits later.
                tx.send_replace(Some(code));
            }
        }
    }

    /// Whether the container's process runs.
    pub fn running(&self, id: &str) -> bool {
        matches!(self.model().processes.get(id), Some(FakeProcess::Running { .. }))
    }
}

#[derive(Debug)]
struct NoLog;

impl LogSource for NoLog {
    fn read_new(&mut self) -> Vec<LogEntry> {
        vec![]
    }
}

fn resolve<'a>(m: &'a RuntimeModel, reference: &str) -> Option<&'a ImageInfo> {
    let full =
        if reference.contains(':') { reference.to_string() } else { format!("{reference}:latest") };
    m.images.get(&full).or_else(|| m.images.values().find(|i| i.id == reference))
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn find_image(&self, reference: &str) -> Result<ImageInfo> {
        resolve(&self.model(), reference)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("No such image: {reference}")))
    }
    fn import_image(&self, tar: Vec<u8>, reference: &str) -> Result<ImageInfo> {
        let mut info = busybox();
        info.id = format!("sha256:{:064x}", tar.len());
        info.tags = vec![reference.to_string()];
        self.model().images.insert(reference.to_string(), info.clone());
        Ok(info)
    }
    fn load_images(&self, _tar: Vec<u8>) -> Result<Vec<ImageInfo>> {
        Err(Error::not_implemented("the fake runtime loads no archives"))
    }
    fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.model().images.values().cloned().collect())
    }
    fn remove_image(&self, reference: &str) -> Result<ImageInfo> {
        let mut m = self.model();
        let key = resolve(&m, reference)
            .and_then(|i| i.tags.first().cloned())
            .ok_or_else(|| Error::not_found(format!("No such image: {reference}")))?;
        Ok(m.images.remove(&key).expect("resolved"))
    }
    fn create_bundle(&self, spec: &BundleSpec) -> Result<()> {
        self.model().bundles.insert(spec.id.clone(), spec.clone());
        Ok(())
    }
    fn write_etc_file(&self, id: &str, name: &str, content: &str) -> Result<()> {
        self.model().etc.insert((id.to_string(), name.to_string()), content.to_string());
        Ok(())
    }
    fn start(&self, id: &str, netns: Option<&Path>) -> Result<u32> {
        let gate = self.model().start_gate.clone();
        if let Some(gate) = gate {
            gate.wait();
        }
        let mut m = self.model();
        m.journal.push(format!("start {id}"));
        if m.fail_start.contains(id) {
            return Err(Error::internal(format!("runc: container {id} failed to start")));
        }
        m.next_pid = m.next_pid.max(1000) + 1;
        let pid = m.next_pid;
        m.processes
            .insert(id.into(), FakeProcess::Running { pid, netns: netns.map(Path::to_owned) });
        drop(m);
        lock(&self.exits).insert(id.to_string(), tokio::sync::watch::channel(None).0);
        Ok(pid)
    }
    fn state(&self, id: &str) -> RunState {
        match self.model().processes.get(id) {
            Some(FakeProcess::Running { pid, .. }) => RunState::Running { pid: *pid },
            Some(FakeProcess::Exited(code)) => {
                RunState::Exited { code: *code, finished_at: crate::now() }
            }
            None => RunState::NotRunning,
        }
    }
    async fn wait(&self, id: &str) -> i32 {
        let rx = lock(&self.exits).get(id).map(|tx| tx.subscribe());
        let Some(mut rx) = rx else {
            return match self.model().processes.get(id) {
                Some(FakeProcess::Exited(code)) => *code,
                _ => 255,
            };
        };
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return code;
            }
            if rx.changed().await.is_err() {
                return 255;
            }
        }
    }
    fn kill(&self, id: &str, signal: i32) -> Result<()> {
        self.model().journal.push(format!("kill {id} {signal}"));
        if !self.running(id) {
            return Err(Error::conflict(format!("container {id} is not running")));
        }
        if matches!(signal, libc::SIGTERM | libc::SIGKILL | libc::SIGINT) {
            self.exit(id, 128 + signal);
        }
        Ok(())
    }
    fn cleanup(&self, id: &str) -> Result<()> {
        let mut m = self.model();
        m.journal.push(format!("cleanup {id}"));
        if !matches!(m.processes.get(id), Some(FakeProcess::Running { .. })) {
            m.processes.remove(id);
        }
        Ok(())
    }
    fn remove(&self, id: &str) -> Result<()> {
        let mut m = self.model();
        m.journal.push(format!("remove {id}"));
        m.bundles.remove(id);
        m.etc.retain(|(c, _), _| c != id);
        m.processes.remove(id);
        Ok(())
    }
    fn logs(
        &self,
        _id: &str,
        _follow: bool,
        _tail: Option<usize>,
    ) -> Result<tokio::sync::mpsc::Receiver<LogEntry>> {
        Ok(tokio::sync::mpsc::channel(1).1)
    }
    fn log_follower(&self, _id: &str) -> Result<Box<dyn LogSource>> {
        Ok(Box::new(NoLog))
    }
    fn exec(&self, id: &str, _spec: &ExecSpec) -> Result<tokio::process::Child> {
        Err(Error::not_implemented(format!("the fake runtime cannot exec in {id}")))
    }
}

/// A controller on fakes, with handles on them.
#[derive(Debug, Clone)]
pub struct FakeHost {
    /// The controller.
    pub ctl: SharedController,
    /// Its kernel.
    pub kernel: Arc<FakeKernel>,
    /// Its firewall.
    pub firewall: Arc<FakeFirewall>,
    /// Its runtime.
    pub runtime: Arc<FakeRuntime>,
    /// Its store.
    pub store: cove_store::Records,
    /// Its configuration.
    pub cfg: ControllerConfig,
}

/// A configuration for a fake host: firewall on, state under `dir`.
pub fn config(dir: &Path) -> ControllerConfig {
    ControllerConfig {
        data_root: dir.join("data"),
        exec_root: dir.join("exec"),
        bip: None,
        fixed_cidr: None,
        default_address_pools: vec![],
        mtu: 1500,
        firewall: true,
        firewall6: true,
        ip_forward: true,
        cgroup_parent: "/cove-test".into(),
        icc: true,
        reconcile_interval: std::time::Duration::ZERO,
        metrics: cove_metrics::Options::default(),
        node_down_grace: crate::NODE_DOWN_GRACE,
        task_drain: std::time::Duration::ZERO,
    }
}

impl FakeHost {
    /// A controller on new fakes, configured by `cfg`.
    pub async fn start(cfg: ControllerConfig) -> Result<FakeHost> {
        Self::start_on(
            cfg,
            Arc::new(FakeKernel::default()),
            Arc::new(FakeFirewall::default()),
            Arc::new(FakeRuntime::new()),
            cove_store::Records::in_memory(),
        )
        .await
    }

    /// A controller on new fakes, as a host of the cluster whose store is `cluster`
    /// (shared between fake hosts, as etcd is between real ones).
    pub async fn start_in_cluster(
        cfg: ControllerConfig,
        cluster: crate::ClusterSeam,
    ) -> Result<FakeHost> {
        let kernel = Arc::new(FakeKernel::default());
        let firewall = Arc::new(FakeFirewall::default());
        let runtime = Arc::new(FakeRuntime::new());
        let store = cove_store::Records::in_memory();
        let seams = Seams {
            kernel: kernel.clone(),
            runtime: runtime.clone(),
            firewall: firewall.clone(),
            store: store.clone(),
            cluster: Some(cluster),
        };
        let ctl = Controller::start_with(cfg.clone(), seams).await?;
        Ok(FakeHost { ctl, kernel, firewall, runtime, store, cfg })
    }

    /// A controller on the given fakes and store (a restart: the same fakes and store, a
    /// new controller).
    pub async fn start_on(
        cfg: ControllerConfig,
        kernel: Arc<FakeKernel>,
        firewall: Arc<FakeFirewall>,
        runtime: Arc<FakeRuntime>,
        store: cove_store::Records,
    ) -> Result<FakeHost> {
        let seams = Seams {
            kernel: kernel.clone(),
            runtime: runtime.clone(),
            firewall: firewall.clone(),
            store: store.clone(),
            cluster: None,
        };
        let ctl = Controller::start_with(cfg.clone(), seams).await?;
        Ok(FakeHost { ctl, kernel, firewall, runtime, store, cfg })
    }

    /// The same fakes and store under a new controller, as after a daemon restart: the
    /// port reservations die with the old daemon's sockets. (The old controller's container
    /// monitors keep running in the test; check the new controller's own view.)
    pub async fn restart(&self) -> Result<FakeHost> {
        self.restart_with(self.cfg.clone()).await
    }

    /// [`FakeHost::restart`] with the daemon's configuration changed (its flags).
    pub async fn restart_with(&self, cfg: ControllerConfig) -> Result<FakeHost> {
        self.kernel.model().ports.clear();
        Self::start_on(
            cfg,
            self.kernel.clone(),
            self.firewall.clone(),
            self.runtime.clone(),
            self.store.clone(),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_drivers::plan::PortFlags;
    use cove_model::MacAddr;

    /// The fake keeps an overlay's device and entries like the kernel: what it is given
    /// reads back, so the diff against it is empty, and the entries go with the device.
    #[tokio::test]
    async fn overlay_entries_read_back_and_go_with_their_device() {
        let k = FakeKernel::default();
        let mac = MacAddr([2, 0x42, 10, 0, 9, 3]);
        let ops = vec![
            Op::CreateBridge {
                name: "ov-a".into(),
                group: OWNED_LINK_GROUP,
                mtu: 1450,
                mac: MacAddr([2, 0x42, 0, 0, 0, 1]),
            },
            Op::SetUp { netns: Netns::Host, link: "ov-a".into() },
            Op::CreateVxlan {
                name: "vx-a".into(),
                group: OWNED_LINK_GROUP,
                vni: 4097,
                local: "203.0.113.11".parse().unwrap(),
                port: 4789,
                mtu: 1450,
                master: "ov-a".into(),
            },
            Op::SetPortFlags { link: "vx-a".into(), flags: PortFlags::OVERLAY_VXLAN },
            Op::SetUp { netns: Netns::Host, link: "vx-a".into() },
            Op::Neighbor {
                netns: Netns::Host,
                link: "vx-a".into(),
                addr: "10.0.9.3".parse().unwrap(),
                mac,
            },
            Op::VxlanFdb { link: "vx-a".into(), mac, dst: "203.0.113.12".parse().unwrap() },
            Op::BridgeFdb { link: "vx-a".into(), mac },
        ];
        k.apply(&ops).await.unwrap();
        let desired = cove_plan::HostState::from_ops(&ops);
        let mut observed = k.observe_host(&[]).await.unwrap();
        // Bridges' MTUs are not modelled (1500); the rest reads back as given.
        observed.links.get_mut("ov-a").unwrap().mtu = 1450;
        assert_eq!(cove_plan::diff(&desired, &observed), []);

        // A peer whose address changed: one replace.
        let mut moved = desired.clone();
        moved.fdb_self.insert(("vx-a".into(), mac), "203.0.113.22".parse().unwrap());
        let ops = cove_plan::diff(&moved, &observed);
        assert_eq!(ops.len(), 1, "{ops:?}");
        k.apply(&ops).await.unwrap();
        assert_eq!(k.model().fdb_self[&("vx-a".to_string(), mac)].to_string(), "203.0.113.22");

        // A failing entry rolls back the ones before it.
        k.fail_on("master static");
        let mac2 = MacAddr([2, 0x42, 10, 0, 9, 4]);
        let dst = "203.0.113.13".parse().unwrap();
        let e = k
            .apply(&[
                Op::VxlanFdb { link: "vx-a".into(), mac: mac2, dst },
                Op::BridgeFdb { link: "vx-a".into(), mac: mac2 },
            ])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("master static"), "{e}");
        assert!(!k.model().fdb_self.contains_key(&("vx-a".to_string(), mac2)));
        k.heal();

        k.apply(&[Op::DeleteLink { netns: Netns::Host, name: "vx-a".into() }]).await.unwrap();
        let m = k.model();
        assert!(m.fdb_self.is_empty() && m.fdb_master.is_empty() && m.port_flags.is_empty());
        assert!(!m.neighbours.iter().any(|(_, l, _)| l == "vx-a"));
    }
}

/// What the fake tunnel was told.
#[derive(Debug, Default)]
pub struct TunnelModel {
    /// The configuration it was started with (`None`: not running).
    pub started: Option<cove_tunnel::TunnelConfig>,
    /// Its peers, as last set.
    pub peers: Vec<cove_tunnel::Peer>,
    /// Its current public key.
    pub public_key: Option<cove_tunnel::PublicKey>,
    /// `start` fails with this, when set (e.g. `/dev/net/tun` missing).
    pub fail_start: Option<String>,
}

/// A tunnel that records what it is told.
#[derive(Debug, Default)]
pub struct FakeTunnels(Mutex<TunnelModel>);

impl FakeTunnels {
    /// What it holds.
    pub fn model(&self) -> MutexGuard<'_, TunnelModel> {
        lock(&self.0)
    }
}

impl crate::seams::Tunnels for FakeTunnels {
    fn start(&self, config: cove_tunnel::TunnelConfig) -> std::result::Result<(), String> {
        let mut m = lock(&self.0);
        if let Some(why) = &m.fail_start {
            return Err(why.clone());
        }
        m.public_key = Some(config.key.public_key());
        m.started = Some(config);
        Ok(())
    }
    fn set_peers(&self, peers: &[cove_tunnel::Peer]) -> std::result::Result<(), String> {
        lock(&self.0).peers = peers.to_vec();
        Ok(())
    }
    fn set_key(&self, key: &cove_tunnel::PrivateKey) {
        lock(&self.0).public_key = Some(key.public_key());
    }
    fn stats(&self) -> Option<cove_tunnel::TunnelStats> {
        let m = lock(&self.0);
        m.started.as_ref()?;
        Some(cove_tunnel::TunnelStats {
            public_key: m.public_key?,
            peers: vec![],
            drops: Default::default(),
            tun_writes: 0,
            tun_write_calls: 0,
            tun_reads: 0,
            tun_read_calls: 0,
        })
    }
}
