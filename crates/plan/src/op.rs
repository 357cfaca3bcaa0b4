//! Kernel operations: the contract between planners and the kernel executor.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use cove_model::MacAddr;

/// The link group (`IFLA_GROUP`) of every link Cove creates in the host's namespace: how
/// start-up reconciliation knows a link is Cove's (a property of the object, not a name
/// pattern). Any value but 0 (the kernel's default group) would do: this one spells
/// "cove" in ASCII, so `ip link show group 1668249189` lists them.
pub const OWNED_LINK_GROUP: u32 = 0x636f_7665;

/// The link group of host links taken out of service ([`Op::Condemn`]): the executor
/// deletes the whole group in one request (one RCU grace period for the batch) when the
/// kernel is idle. "covx".
pub const RETIRED_LINK_GROUP: u32 = 0x636f_7678;

/// The metric of [`Op::BlackholeRoute`]: the highest there is, so every other route to the
/// same prefix wins while it exists.
pub const BLACKHOLE_METRIC: u32 = u32::MAX;

/// The network namespace an operation runs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Netns {
    /// The daemon's own namespace (the host, or a fake host in tests).
    Host,
    /// A sandbox namespace, by the path of its bind mount.
    Path(PathBuf),
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Netns::Host => f.write_str("host"),
            Netns::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One kernel change. Create-type ops have an inverse ([`Op::inverse`]) used for rollback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create a bridge in the host namespace (left down; see [`Op::SetUp`]).
    CreateBridge {
        /// Device name.
        name: String,
        /// Link group: [`OWNED_LINK_GROUP`] for Cove's networks (how a restart knows its
        /// links); anything else for links Cove must not claim (the benches' floor).
        group: u32,
        /// MTU.
        mtu: u32,
        /// Fixed MAC: without one the kernel gives the bridge the lowest MAC of its ports,
        /// so it would change as containers come and go.
        mac: MacAddr,
    },
    /// Create a veth pair: `host_name` in the host namespace, enslaved to `bridge` and up;
    /// `peer_name` created directly inside `peer_netns` (not up: the kernel refuses that).
    CreateVeth {
        /// Host-side name (unique, never reused).
        host_name: String,
        /// Link group of the host end (see [`Op::CreateBridge`]).
        group: u32,
        /// Bridge to enslave the host side to.
        bridge: String,
        /// MTU of both ends.
        mtu: u32,
        /// Name inside the sandbox (`eth0`).
        peer_name: String,
        /// Sandbox namespace (bind-mount path).
        peer_netns: PathBuf,
        /// MAC of the sandbox end.
        peer_mac: MacAddr,
    },
    /// Add an address (with prefix length) to a link.
    AddAddress {
        /// Namespace.
        netns: Netns,
        /// Link name.
        link: String,
        /// Address and prefix length.
        addr: IpNet,
    },
    /// Bring a link up.
    SetUp {
        /// Namespace.
        netns: Netns,
        /// Link name.
        link: String,
    },
    /// Add a route out of `link`, via `gateway` if given.
    AddRoute {
        /// Namespace.
        netns: Netns,
        /// Destination (`0.0.0.0/0` for a default route).
        dst: IpNet,
        /// Next hop.
        gateway: Option<IpAddr>,
        /// Outgoing link.
        link: String,
    },
    /// Make `::1` a local destination for packets arriving on bridge `link` too (`local ::1
    /// dev <link> table local metric 1024`, in the host namespace): the reply of a
    /// connection the host made to `[::1]:<published port>` is un-NATed back to `::1` on
    /// the bridge, and IPv6 only delivers `::1` through a route of the receiving link. Only
    /// with the IPv6 firewall, whose raw rule drops every packet that *arrives* for `::1`
    /// on another link than `lo`, so nothing else can use the route. Goes with the link.
    LoopbackRoute6 {
        /// The bridge.
        link: String,
    },
    /// A `blackhole <dst> metric <metric>` route in the host namespace (`ip route replace`):
    /// the route guard of encrypted overlays. With the highest metric it loses to any
    /// other route to `dst` (the tunnel device's connected route while the tunnel is up),
    /// and when that route goes (the device vanished with a dead daemon) packets to `dst`
    /// are discarded instead of following the default route in clear. Independent of any
    /// link, so it outlives the daemon. Replaced, never refused when it exists.
    BlackholeRoute {
        /// The tunnel pool.
        dst: IpNet,
        /// The route's metric (priority): [`BLACKHOLE_METRIC`].
        metric: u32,
    },
    /// Write a sysctl (`net/ipv6/conf/cove0/disable_ipv6` style key, relative to /proc/sys).
    Sysctl {
        /// Namespace.
        netns: Netns,
        /// Key relative to `/proc/sys`, with `/` separators.
        key: String,
        /// Value to write.
        value: String,
    },
    /// Turn on hairpin mode on a bridge port in the host namespace, so a frame may leave
    /// through the port it came in on: a container reaching its own published port via a
    /// host address is DNAT'ed back to itself (Docker does the same without its proxy).
    Hairpin {
        /// Host-side port name.
        link: String,
    },
    /// Take a link out of service at once: set it down and rename it to `tombstone`, so
    /// its name is free again while a later [`Op::DeleteLink`] of the tombstone (which
    /// waits for an RCU grace period, ~30 ms) runs in the background.
    Retire {
        /// Namespace.
        netns: Netns,
        /// Link name.
        link: String,
        /// New, unique name (at most 15 bytes).
        tombstone: String,
    },
    /// Hand a host link to the background reaper: move it to [`RETIRED_LINK_GROUP`], one
    /// attribute and nothing else (setting it down, or renaming it, would run the kernel's
    /// notifier chains on the hot path: a link going down walks the whole neighbour table,
    /// O(containers) on a full host). The executor deletes that group in one request once
    /// it has been idle for a moment (within a second), so neither a detach nor a network
    /// rm waits for the RCU grace period of a link deletion, and neither does the next
    /// attach. Deleting one end of a veth pair deletes both. A missing link counts as done.
    Condemn {
        /// Host-side link name.
        link: String,
    },
    /// Enslave a host link to a bridge (a port whose bridge was re-created).
    SetMaster {
        /// The port.
        link: String,
        /// The bridge.
        master: String,
    },
    /// Set a link's MTU.
    SetMtu {
        /// Namespace.
        netns: Netns,
        /// Link name.
        link: String,
        /// MTU.
        mtu: u32,
    },
    /// A permanent neighbour (ARP / NDP) entry, replacing any entry for `addr` on `link`.
    /// Permanent entries do not count against the kernel's neighbour-table limits
    /// (`gc_thresh3`, 1,024 by default), which are global to the machine, not per netns.
    Neighbor {
        /// Namespace.
        netns: Netns,
        /// Link the neighbour is reached through.
        link: String,
        /// Its IPv4 or IPv6 address.
        addr: IpAddr,
        /// Its MAC.
        mac: MacAddr,
    },
    /// Delete the neighbour entry for `addr` on `link` (missing entry or link counts as done).
    DelNeighbor {
        /// Namespace.
        netns: Netns,
        /// Link.
        link: String,
        /// Address.
        addr: IpAddr,
    },
    /// Delete a link (missing counts as done).
    DeleteLink {
        /// Namespace.
        netns: Netns,
        /// Link name.
        name: String,
    },
    /// Remove an address (missing counts as done).
    DelAddress {
        /// Namespace.
        netns: Netns,
        /// Link name.
        link: String,
        /// Address and prefix length.
        addr: IpNet,
    },
    /// Create a VXLAN device in the host namespace for an overlay network, enslaved to
    /// `master` and left down (see [`Op::SetUp`]): `id <vni> local <local> dstport <port>
    /// nolearning proxy`, no `l2miss`/`l3miss`, no `group`/`remote` (so no default
    /// destination and no all-zeros flood entry: nothing unknown is sent to the wire).
    /// Remote endpoints are reached only through [`Op::VxlanFdb`] entries, and ARP / ND
    /// for them is answered locally from [`Op::Neighbor`] entries on this device.
    CreateVxlan {
        /// Device name (`vx-<network id12>`).
        name: String,
        /// Link group (see [`Op::CreateBridge`]).
        group: u32,
        /// VXLAN network identifier (24 bits).
        vni: u32,
        /// This host's underlay address (IPv4 or IPv6), the source of encapsulated packets.
        local: IpAddr,
        /// UDP destination port (4789 by default).
        port: u16,
        /// MTU (the network's: underlay MTU minus the encapsulation).
        mtu: u32,
        /// Bridge to enslave it to (created in the same request).
        master: String,
    },
    /// Create a macvlan device in bridge mode on `parent` (a bridge) in the host namespace,
    /// with a fixed MAC, left down: a host address with a MAC of its own on that bridge's
    /// L2 (a service network's node address, which other hosts reach over the overlay,
    /// while the bridge's own MAC is the anycast gateway's). Goes with its parent.
    CreateMacvlan {
        /// Device name.
        name: String,
        /// Link group (see [`Op::CreateBridge`]).
        group: u32,
        /// The bridge it sits on.
        parent: String,
        /// Its MAC.
        mac: MacAddr,
        /// MTU.
        mtu: u32,
    },
    /// Set the bridge-port flags of a host link that is a bridge port (`bridge link set`).
    /// The flags are the port's and go with it: a port enslaved again starts from the
    /// kernel's defaults (every flag on), so this follows every [`Op::SetMaster`].
    SetPortFlags {
        /// The port.
        link: String,
        /// Its flags.
        flags: PortFlags,
    },
    /// A VXLAN forwarding entry, replacing any entry for `mac` on `link`: frames for `mac`
    /// are encapsulated to the remote VTEP `dst` (`bridge fdb replace <mac> dev <link> dst
    /// <dst> self permanent`). Replace, never exclusive create: an entry that exists (a
    /// peer whose address changed, or one learned in a race) is overwritten, not refused
    /// with EEXIST (moby#53663).
    VxlanFdb {
        /// The VXLAN device.
        link: String,
        /// The remote endpoint's MAC.
        mac: MacAddr,
        /// The remote host's underlay address.
        dst: IpAddr,
    },
    /// Delete the VXLAN forwarding entry for `mac` on `link`, every destination of it
    /// (missing entry or link counts as done).
    DelVxlanFdb {
        /// The VXLAN device.
        link: String,
        /// The MAC.
        mac: MacAddr,
    },
    /// A static bridge forwarding entry: the bridge sends frames for `mac` out of its port
    /// `link` (`bridge fdb replace <mac> dev <link> master static`), without learning it
    /// and without flooding unknown unicast, both of which are off on the VXLAN port.
    BridgeFdb {
        /// The bridge port.
        link: String,
        /// The MAC.
        mac: MacAddr,
    },
    /// Delete the bridge forwarding entry for `mac` on port `link` (missing entry or link
    /// counts as done).
    DelBridgeFdb {
        /// The bridge port.
        link: String,
        /// The MAC.
        mac: MacAddr,
    },
}

/// The flags of a bridge port (`IFLA_BRPORT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortFlags {
    /// Learn source MACs of frames arriving on the port.
    pub learning: bool,
    /// Flood unknown unicast out of the port (`flood`).
    pub unicast_flood: bool,
    /// Flood multicast out of the port.
    pub mcast_flood: bool,
    /// Flood broadcast out of the port.
    pub bcast_flood: bool,
    /// Suppress ARP / ND on the port from the bridge's neighbour information.
    pub neigh_suppress: bool,
}

impl PortFlags {
    /// The kernel's defaults for a new port: everything on but neighbour suppression.
    pub const DEFAULT: PortFlags = PortFlags {
        learning: true,
        unicast_flood: true,
        mcast_flood: true,
        bcast_flood: true,
        neigh_suppress: false,
    };

    /// An overlay network's VXLAN port: no learning (learned entries race the permanent
    /// ones, moby#53663) and no unknown-unicast flooding (remote MACs have static
    /// entries), but broadcast and multicast still reach the VXLAN device, whose `proxy`
    /// answers ARP and ND locally (and with no all-zeros entry sends nothing else out).
    pub const OVERLAY_VXLAN: PortFlags = PortFlags {
        learning: false,
        unicast_flood: false,
        mcast_flood: true,
        bcast_flood: true,
        neigh_suppress: false,
    };
}

impl fmt::Display for PortFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        write!(
            f,
            "learning {} flood {} mcast_flood {} bcast_flood {} neigh_suppress {}",
            on(self.learning),
            on(self.unicast_flood),
            on(self.mcast_flood),
            on(self.bcast_flood),
            on(self.neigh_suppress)
        )
    }
}

impl Op {
    /// The host link this op creates, if it creates one.
    pub fn created_host_link(&self) -> Option<&str> {
        match self {
            Op::CreateBridge { name, .. } => Some(name),
            Op::CreateVeth { host_name, .. } => Some(host_name),
            Op::CreateVxlan { name, .. } => Some(name),
            Op::CreateMacvlan { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The op that undoes this one during rollback, if it needs undoing. Addresses and
    /// routes on a link that is itself rolled back go with the link, so they need none.
    pub fn inverse(&self) -> Option<Op> {
        match self {
            Op::CreateBridge { name, .. } => {
                Some(Op::DeleteLink { netns: Netns::Host, name: name.clone() })
            }
            Op::CreateVeth { host_name, .. } => {
                Some(Op::DeleteLink { netns: Netns::Host, name: host_name.clone() })
            }
            Op::AddAddress { netns, link, addr } => {
                Some(Op::DelAddress { netns: netns.clone(), link: link.clone(), addr: *addr })
            }
            Op::Neighbor { netns, link, addr, .. } => {
                Some(Op::DelNeighbor { netns: netns.clone(), link: link.clone(), addr: *addr })
            }
            Op::CreateVxlan { name, .. } | Op::CreateMacvlan { name, .. } => {
                Some(Op::DeleteLink { netns: Netns::Host, name: name.clone() })
            }
            Op::VxlanFdb { link, mac, .. } => {
                Some(Op::DelVxlanFdb { link: link.clone(), mac: *mac })
            }
            Op::BridgeFdb { link, mac } => Some(Op::DelBridgeFdb { link: link.clone(), mac: *mac }),
            _ => None,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::CreateBridge { name, mtu, mac, .. } => {
                write!(f, "create bridge {name} mtu {mtu} mac {mac}")
            }
            Op::CreateVeth { host_name, bridge, peer_name, peer_netns, peer_mac, mtu, .. } => write!(
                f,
                "create veth {host_name} (master {bridge}) peer {peer_name} in {} mac {peer_mac} mtu {mtu}",
                peer_netns.display()
            ),
            Op::AddAddress { netns, link, addr } => write!(f, "add address {addr} to {link} in {netns}"),
            Op::SetUp { netns, link } => write!(f, "set {link} up in {netns}"),
            Op::AddRoute { netns, dst, gateway, link } => match gateway {
                Some(gw) => write!(f, "add route {dst} via {gw} dev {link} in {netns}"),
                None => write!(f, "add route {dst} dev {link} in {netns}"),
            },
            Op::Sysctl { netns, key, value } => write!(f, "sysctl {key}={value} in {netns}"),
            Op::BlackholeRoute { dst, metric } => {
                write!(f, "replace route blackhole {dst} metric {metric}")
            }
            Op::LoopbackRoute6 { link } => {
                write!(f, "add route local ::1 dev {link} table local metric 1024")
            }
            Op::Hairpin { link } => write!(f, "hairpin on for bridge port {link}"),
            Op::Retire { netns, link, tombstone } => {
                write!(f, "retire {link} as {tombstone} in {netns}")
            }
            Op::Condemn { link } => write!(f, "condemn {link} (reaped in the background)"),
            Op::SetMaster { link, master } => write!(f, "set master of {link} to {master}"),
            Op::SetMtu { netns, link, mtu } => write!(f, "set mtu {mtu} on {link} in {netns}"),
            Op::Neighbor { netns, link, addr, mac } => {
                write!(f, "add permanent neighbour {addr} lladdr {mac} dev {link} in {netns}")
            }
            Op::DelNeighbor { netns, link, addr } => {
                write!(f, "delete neighbour {addr} dev {link} in {netns}")
            }
            Op::DeleteLink { netns, name } => write!(f, "delete link {name} in {netns}"),
            Op::DelAddress { netns, link, addr } => {
                write!(f, "delete address {addr} from {link} in {netns}")
            }
            Op::CreateVxlan { name, vni, local, port, mtu, master, .. } => write!(
                f,
                "create vxlan {name} id {vni} local {local} dstport {port} nolearning proxy \
                 mtu {mtu} master {master}"
            ),
            Op::CreateMacvlan { name, parent, mac, mtu, .. } => {
                write!(f, "create macvlan {name} link {parent} mode bridge mac {mac} mtu {mtu}")
            }
            Op::SetPortFlags { link, flags } => write!(f, "set bridge port {link} {flags}"),
            Op::VxlanFdb { link, mac, dst } => {
                write!(f, "replace fdb {mac} dev {link} dst {dst} self permanent")
            }
            Op::DelVxlanFdb { link, mac } => write!(f, "delete fdb {mac} dev {link} self"),
            Op::BridgeFdb { link, mac } => {
                write!(f, "replace fdb {mac} dev {link} master static")
            }
            Op::DelBridgeFdb { link, mac } => write!(f, "delete fdb {mac} dev {link} master"),
        }
    }
}
