//! The firewall model: everything Cove's firewall must express, derived by the controller
//! from its network, endpoint and port-binding records.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cove_model::MacAddr;
pub use cove_model::Proto;

pub use crate::services::ServiceLb;
use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

/// Everything Cove's firewall must express, derived by the controller from its records.
///
/// The order of the vectors does not matter: [`crate::render`] sorts everything, so two
/// models with the same content render to the same text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallModel {
    /// Cove's bridge networks (every driver that owns a Linux bridge).
    pub networks: Vec<NetworkRules>,
    /// Container ports on those bridges.
    pub endpoints: Vec<EndpointRules>,
    /// Published ports. One entry per (protocol, host address or all, host port) and
    /// address family: `-p 8080:80` of a dual-stack container is two entries, one with an
    /// IPv4 `container_ip` and one with an IPv6 one.
    pub published: Vec<PublishedPort>,
    /// Legacy links opened through icc=false (the default bridge with `--icc=false`).
    #[serde(default)]
    pub links: Vec<LinkRule>,
    /// Cove turned IPv4/IPv6 forwarding on itself: drop forwarding between interfaces that
    /// are not Cove's bridges (Docker sets the FORWARD policy to DROP in that case; we never
    /// touch other tables, so we do it in ours).
    pub drop_foreign_forwarding: bool,
    /// The host is in a cluster: VXLAN datagrams are accepted from its nodes only.
    #[serde(default)]
    pub vxlan: Option<VxlanGuard>,
    /// Service load balancing is on: the VIP maps and sets, the `svc_input` /
    /// `svc_forward` / `svc_reject` chains, the rules that consult them and the counter
    /// `drop_vip_other` exist, with or without services. Off, the ruleset is exactly what
    /// it was before services existed, and `services` are left out (a problem). Like
    /// `drop_foreign_forwarding`, a flip is a rule change (a full render), so partial models
    /// given to [`crate::element_delta`] must carry the host's value.
    #[serde(default)]
    pub service_lb: bool,
    /// Services balanced by this host (one entry per service and network; see
    /// [`ServiceLb`]).
    #[serde(default)]
    pub services: Vec<ServiceLb>,
    /// The host has an encrypted tunnel: the guards of encrypted overlay networks
    /// ([`crate::encryption`]).
    #[serde(default)]
    pub encryption: Option<crate::EncryptionGuard>,
}

/// Who may send this host VXLAN datagrams: the nodes of its cluster, on the data-path
/// port. Anyone else on the underlay could otherwise inject frames into an overlay
/// network (Docker's VXLAN port was open to all: GHSA-vwm3-crmr-xfxw).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanGuard {
    /// The UDP port (`--data-path-port`).
    pub port: u16,
    /// The nodes' tunnel addresses.
    pub peers: Vec<std::net::IpAddr>,
}

/// One bridge network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRules {
    /// The bridge device (`cove0`, `br-<id12>`, ...).
    pub bridge: String,
    /// IPv4 subnets of the network (host bits are ignored).
    pub subnets4: Vec<Ipv4Net>,
    /// IPv6 subnets of the network (host bits are ignored).
    pub subnets6: Vec<Ipv6Net>,
    /// `--internal`: nothing is forwarded into or out of the bridge, no published ports.
    pub internal: bool,
    /// `com.docker.network.bridge.enable_icc` (default true). False: containers of this
    /// network cannot exchange frames with each other at all (L2).
    pub icc: bool,
    /// `com.docker.network.bridge.enable_ip_masquerade` (default true). Ignored for
    /// internal networks.
    pub masquerade: bool,
}

/// One container port on a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EndpointRules {
    /// The bridge the port is attached to.
    pub bridge: String,
    /// Host end of the veth pair (`cv<12 hex>`), the bridge port.
    pub host_ifname: String,
    /// The container interface's MAC address: the only source MAC the port may use.
    pub mac: MacAddr,
    /// The container's IPv4 address on this network, if any.
    pub ipv4: Option<Ipv4Addr>,
    /// The container's IPv6 address on this network, if any (its link-local addresses
    /// are always allowed).
    pub ipv6: Option<Ipv6Addr>,
}

/// A legacy link through icc=false, as Docker's link rules: the linker (`from`, its bridge
/// port) may reach `proto`/`port` of the linked container (`to`), and the replies come
/// back. Stateless, as Docker's iptables pair is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinkRule {
    /// The linking container's bridge port (host end of its veth).
    pub from: String,
    /// The linked container's bridge port.
    pub to: String,
    /// Protocol of the exposed port.
    pub proto: Proto,
    /// The linked container's exposed port.
    pub port: u16,
}

/// One published port: host (address, port) to container (address, port).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PublishedPort {
    /// Transport protocol.
    pub proto: Proto,
    /// `None`: every address of `container_ip`'s family. `Some(0.0.0.0)` and `Some(::)`
    /// mean the same and are normalised to `None`. A specific address must be of the same
    /// family as `container_ip` (there is no userland proxy to translate).
    pub host_ip: Option<IpAddr>,
    /// Host port (not 0: the controller picks ephemeral ports).
    pub host_port: u16,
    /// The container's address on `bridge`'s network.
    pub container_ip: IpAddr,
    /// Container port.
    pub container_port: u16,
    /// The bridge of the network `container_ip` belongs to.
    pub bridge: String,
}

impl PublishedPort {
    /// `host_ip` with the unspecified addresses (`0.0.0.0`, `::`) normalised to `None`.
    pub fn normalized_host_ip(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }
}

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// Whether `name` can be rendered as an nft string: 1 to 15 characters out of
/// `[A-Za-z0-9_.-]` (nft strings have no escapes, and `*` would be a wildcard).
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl FirewallModel {
    /// Everything in the model that [`crate::render`] cannot express and therefore leaves
    /// out, one readable sentence each; empty when everything is rendered. The controller
    /// should refuse such input before it gets here (a port bound to an address of the
    /// other family, a duplicate host port, a bridge name nft cannot quote).
    pub fn problems(&self) -> Vec<String> {
        crate::elements::Contents::build(self).problems
    }
}
