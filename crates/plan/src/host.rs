//! The host namespace's objects as Cove wants them (desired, from the drivers' plans) or as
//! the kernel has them (observed). Their difference as ordered ops is [`crate::diff()`].
//!
//! Only host objects are diffed: a sandbox's objects live and die with the sandbox's
//! namespace. Ownership comes from the objects themselves: a link is Cove's when it is in
//! [`OWNED_LINK_GROUP`]; addresses, neighbours, forwarding entries and routes are Cove's
//! when they are on a link of Cove's (but for the kernel's own forwarding entries, see
//! [`kernel_fdb_mac`]). Nothing else is ever changed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use cove_model::MacAddr;

use crate::op::{Netns, Op, PortFlags, OWNED_LINK_GROUP};

/// What kind of link, with what its creation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// A bridge with a fixed MAC.
    Bridge {
        /// Its MAC.
        mac: MacAddr,
    },
    /// The host end of a veth pair; its peer lives in a sandbox, so a missing one is not
    /// re-created here (the sandbox's endpoint is re-joined instead).
    Veth,
    /// A VXLAN device (an overlay network's tunnel end point).
    Vxlan(Vxlan),
    /// A macvlan device on a bridge (a node address on a service network). Desired ones
    /// carry their parent and MAC; observed ones do not (an existing one is never
    /// re-created, and it goes with its parent).
    Macvlan(Option<(String, MacAddr)>),
    /// Anything else the kernel reports (`None`: a physical device or `lo`).
    Other(Option<String>),
}

/// The attributes of a VXLAN device that shape its datapath. The kernel refuses to change
/// most of them on a live device (`id`, `local`, `dstport`, `proxy`), so a device of Cove's
/// whose attributes differ from the wanted ones is deleted and created again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vxlan {
    /// VXLAN network identifier.
    pub vni: u32,
    /// Source address of encapsulated packets (`None`: the kernel picks one per packet).
    pub local: Option<IpAddr>,
    /// UDP destination port.
    pub port: u16,
    /// Learn remote MACs from received packets.
    pub learning: bool,
    /// Answer ARP / ND from the device's neighbour table.
    pub proxy: bool,
    /// Report unknown destination MACs to user space.
    pub l2miss: bool,
    /// Report unknown destination IPs to user space.
    pub l3miss: bool,
    /// Default destination (`remote` or `group`): with one, frames for unknown MACs are
    /// flooded to it.
    pub remote: Option<IpAddr>,
}

impl Vxlan {
    /// The device [`Op::CreateVxlan`] makes: no learning, proxy on, no miss
    /// notifications, no default destination.
    pub fn overlay(vni: u32, local: IpAddr, port: u16) -> Vxlan {
        Vxlan {
            vni,
            local: Some(local),
            port,
            learning: false,
            proxy: true,
            l2miss: false,
            l3miss: false,
            remote: None,
        }
    }
}

/// One link of the host namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Kind.
    pub kind: LinkKind,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// The bridge it is a port of.
    pub master: Option<String>,
    /// Link group: [`OWNED_LINK_GROUP`] for Cove's.
    pub group: u32,
    /// Hairpin mode on its bridge port (desired only; not observed).
    pub hairpin: bool,
}

/// The host namespace's objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// Links by name.
    pub links: BTreeMap<String, Link>,
    /// Addresses with their prefix length, by link.
    pub addresses: BTreeSet<(String, IpNet)>,
    /// Permanent neighbour entries by (link, address): a bridge's for its containers, a
    /// VXLAN device's for remote endpoints (answered by its `proxy`).
    pub neighbours: BTreeMap<(String, IpAddr), MacAddr>,
    /// Sysctls by key (`net/ipv6/conf/<link>/disable_ipv6`).
    pub sysctls: BTreeMap<String, String>,
    /// Links with the `local ::1` route of `[::1]` publishing.
    pub loopback6: BTreeSet<String>,
    /// Bridge-port flags by port. Desired: the ports whose flags Cove sets (VXLAN ports);
    /// observed: every port of Cove's. Only desired ports are compared.
    pub port_flags: BTreeMap<String, PortFlags>,
    /// The device's own forwarding entries (`self permanent`, `NTF_SELF`) by (VXLAN
    /// device, MAC): the remote VTEP frames for that MAC are sent to. Observed for Cove's
    /// VXLAN devices, with the kernel's default entry (all-zeros MAC) if there is one.
    pub fdb_self: BTreeMap<(String, MacAddr), IpAddr>,
    /// Static bridge forwarding entries (`master static`, `NTF_MASTER`) by (port, MAC).
    /// Observed for the ports of Cove's VXLAN devices; learned and local (permanent)
    /// entries are the kernel's and not reported.
    pub fdb_master: BTreeSet<(String, MacAddr)>,
}

/// Whether a forwarding entry for `mac` is one the kernel keeps for itself, never Cove's
/// whatever device it is on: the all-zeros default (flood) entry, which Cove never makes,
/// and multicast addresses (`33:33:…`, `01:00:5e:…`: a device's multicast list).
pub fn kernel_fdb_mac(mac: &MacAddr) -> bool {
    mac.0 == [0; 6] || mac.0[0] & 1 == 1
}

impl HostState {
    /// The host objects a list of create-type ops makes (ops in sandboxes and deletions
    /// are ignored): the desired state of a plan.
    pub fn from_ops<'a>(ops: impl IntoIterator<Item = &'a Op>) -> HostState {
        let mut s = HostState::default();
        for op in ops {
            s.add(op);
        }
        s
    }

    /// Fold one create-type op into the state.
    pub fn add(&mut self, op: &Op) {
        match op {
            Op::CreateBridge { name, mtu, mac, group } => {
                self.links.insert(
                    name.clone(),
                    Link {
                        kind: LinkKind::Bridge { mac: *mac },
                        mtu: *mtu,
                        up: false,
                        master: None,
                        group: *group,
                        hairpin: false,
                    },
                );
            }
            Op::CreateVeth { host_name, bridge, mtu, group, .. } => {
                self.links.insert(
                    host_name.clone(),
                    Link {
                        kind: LinkKind::Veth,
                        mtu: *mtu,
                        up: true,
                        master: Some(bridge.clone()),
                        group: *group,
                        hairpin: false,
                    },
                );
            }
            Op::CreateVxlan { name, group, vni, local, port, mtu, master } => {
                self.links.insert(
                    name.clone(),
                    Link {
                        kind: LinkKind::Vxlan(Vxlan::overlay(*vni, *local, *port)),
                        mtu: *mtu,
                        up: false,
                        master: Some(master.clone()),
                        group: *group,
                        hairpin: false,
                    },
                );
            }
            Op::CreateMacvlan { name, group, parent, mac, mtu } => {
                self.links.insert(
                    name.clone(),
                    Link {
                        kind: LinkKind::Macvlan(Some((parent.clone(), *mac))),
                        mtu: *mtu,
                        up: false,
                        master: None,
                        group: *group,
                        hairpin: false,
                    },
                );
            }
            Op::Hairpin { link } => {
                if let Some(l) = self.links.get_mut(link) {
                    l.hairpin = true;
                }
            }
            Op::SetUp { netns: Netns::Host, link } => {
                if let Some(l) = self.links.get_mut(link) {
                    l.up = true;
                }
            }
            Op::AddAddress { netns: Netns::Host, link, addr } => {
                self.addresses.insert((link.clone(), *addr));
            }
            Op::Neighbor { netns: Netns::Host, link, addr, mac } => {
                self.neighbours.insert((link.clone(), *addr), *mac);
            }
            Op::Sysctl { netns: Netns::Host, key, value } => {
                self.sysctls.insert(key.clone(), value.clone());
            }
            Op::LoopbackRoute6 { link } => {
                self.loopback6.insert(link.clone());
            }
            Op::SetPortFlags { link, flags } => {
                self.port_flags.insert(link.clone(), *flags);
            }
            Op::VxlanFdb { link, mac, dst } => {
                self.fdb_self.insert((link.clone(), *mac), *dst);
            }
            Op::BridgeFdb { link, mac } => {
                self.fdb_master.insert((link.clone(), *mac));
            }
            _ => {}
        }
    }

    /// Whether a link of this name is Cove's.
    pub fn owns(&self, link: &str) -> bool {
        self.links.get(link).is_some_and(|l| l.group == OWNED_LINK_GROUP)
    }
}
