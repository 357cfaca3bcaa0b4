//! Names of every nftables object Cove creates: tables, chains, named sets and maps, named
//! counters. `docs/kernel-objects.md` lists them; the executor uses the lists at the bottom
//! to check that the whole ruleset is still in the kernel (a flush or a firewall reload by
//! another agent removes it, and it must then be restored in full).
//!
//! Cove owns exactly two tables, [`INET_TABLE`] in family `inet` and [`BRIDGE_TABLE`] in
//! family `bridge`, and never reads, edits or flushes any other.

/// The `inet` table (IPv4 and IPv6 at L3): loopback protection, NAT, forwarding filter.
pub const INET_TABLE: &str = "cove";
/// The `bridge` table (L2, on Cove's bridges): anti-spoofing, router advertisements, icc.
pub const BRIDGE_TABLE: &str = "cove";
/// The `netdev` table: one ingress chain per IPv6 bridge, for ports published on `[::1]`.
pub const NETDEV_TABLE: &str = "cove";

/// The mark bit the `inet` chain [`CHAIN_LO6_MARK`] sets on replies un-NATed to `::1`,
/// and the `netdev` chains look for. Marks never cross a veth from a container
/// (the namespace crossing scrubs them), so a container cannot forge one.
pub const MARK_LO6: u32 = 0x0010_0000;

/// Prefix of the `netdev` ingress chain of an IPv6 bridge: `lo6_<bridge>`.
pub const CHAIN_LO6_PREFIX: &str = "lo6_";

// ---- inet cove: chains ----

/// `inet` base chain, hook prerouting, priority raw (-300): drops loopback-addressed
/// packets that did not arrive on `lo`.
pub const CHAIN_RAW_PREROUTING: &str = "raw_prerouting";
/// `inet` base chain, nat hook prerouting, priority dstnat (-100): published ports.
pub const CHAIN_NAT_PREROUTING: &str = "nat_prerouting";
/// `inet` base chain, nat hook output, priority -100: published ports for the host itself.
pub const CHAIN_NAT_OUTPUT: &str = "nat_output";
/// `inet` base chain, filter hook forward, priority filter (0): isolation, internal
/// networks, direct-routing protection, foreign forwarding.
pub const CHAIN_FORWARD: &str = "forward";
/// `inet` base chain, nat hook postrouting, priority srcnat (100): masquerade.
pub const CHAIN_NAT_POSTROUTING: &str = "nat_postrouting";
/// `inet` base chain, filter hook prerouting, priority -90 (after DNAT): marks replies
/// un-NATed to `::1` at a bridge, which br_netfilter would otherwise leave to be dropped
/// (see the `netdev` table).
pub const CHAIN_LO6_MARK: &str = "lo6_mark";

// ---- inet cove: sets and maps ----

/// Set of `ifname`: every Cove bridge.
pub const SET_BRIDGES: &str = "bridges";
/// Set of `ifname . ifname`: `"br" . "br"` for every Cove bridge, so a static rule can
/// recognise traffic that stays on one bridge (`iifname . oifname @bridge_self`).
pub const SET_BRIDGE_SELF: &str = "bridge_self";
/// Set of `ifname`: bridges of `--internal` networks.
pub const SET_INTERNAL: &str = "internal";
/// Interval set of `ipv4_addr`: every IPv4 subnet of every Cove network.
pub const SET_SUBNETS4: &str = "subnets4";
/// Interval set of `ipv6_addr`: every IPv6 subnet of every Cove network.
pub const SET_SUBNETS6: &str = "subnets6";
/// Interval set of `ipv4_addr`: IPv4 subnets masqueraded on their way out.
pub const SET_MASQ4: &str = "masq4";
/// Interval set of `ipv6_addr`: IPv6 subnets masqueraded on their way out.
pub const SET_MASQ6: &str = "masq6";
/// Map `inet_proto . inet_service : ipv4_addr . inet_service`: ports published on every
/// IPv4 address of the host.
pub const MAP_DNAT4_ANY: &str = "dnat4_any";
/// Map `inet_proto . ipv4_addr . inet_service : ipv4_addr . inet_service`: ports published
/// on one IPv4 address of the host (`127.0.0.1:8080:80`, `192.0.2.10:8080:80`).
pub const MAP_DNAT4_ADDR: &str = "dnat4_addr";
/// Map `inet_proto . inet_service : ipv6_addr . inet_service`: ports published on every
/// IPv6 address of the host.
pub const MAP_DNAT6_ANY: &str = "dnat6_any";
/// Map `inet_proto . ipv6_addr . inet_service : ipv6_addr . inet_service`: ports published
/// on one IPv6 address of the host.
pub const MAP_DNAT6_ADDR: &str = "dnat6_addr";

// ---- inet cove: services (only with `FirewallModel::service_lb`; see `services`) ----

/// The mark bit a service backend chain sets when the client is the backend itself
/// (hairpin); `nat_postrouting` masquerades such packets, so the backend's reply comes back
/// through the host to be un-NATed. Cleared again there.
pub const MARK_SVC_MASQ: u32 = 0x0020_0000;
/// The mark bit an ingress (routing mesh) backend chain sets for a backend on another host;
/// `nat_postrouting` SNATs such packets to the service's `ingress_snat` address
/// ([`MAP_INGRESS_SNAT4`]), so the reply returns to the host that did the DNAT. Cleared
/// again there.
pub const MARK_SVC_SNAT: u32 = 0x0040_0000;

/// Map `ipv4_addr . inet_proto . inet_service : verdict`: a service's IPv4 VIP, protocol
/// and port to `goto` its chain (`svc-<id>`). Looked up in `nat_prerouting` and
/// `nat_output`. No intervals: nft 1.0.6's `monitor` crashes printing a range inside a
/// concatenation, and Cove's firewall watch is an `nft monitor`.
pub const MAP_SVC4: &str = "svc4";
/// The IPv6 twin of [`MAP_SVC4`] (`ipv6_addr . ...`, to `svc6-<id>`).
pub const MAP_SVC6: &str = "svc6";
/// Map `ipv4_addr . inet_proto : verdict`: a service without ports (every TCP and UDP
/// port, Docker's VIP semantics) to its chain; looked up after [`MAP_SVC4`].
pub const MAP_SVC4_ANY: &str = "svc4_any";
/// The IPv6 twin of [`MAP_SVC4_ANY`].
pub const MAP_SVC6_ANY: &str = "svc6_any";
/// Set of `ipv4_addr`: every IPv4 VIP. Anything to a VIP that is not a service port is
/// dropped ([`COUNTER_DROP_VIP_OTHER`]): the VIP is a local address of the host, and must
/// not expose the host's own services.
pub const SET_VIPS4: &str = "vips4";
/// Set of `ipv6_addr`: every IPv6 VIP.
pub const SET_VIPS6: &str = "vips6";
/// Set `ipv4_addr . inet_proto . inet_service`: the [`MAP_SVC4`] keys of services with no
/// backend; `svc_input`/`svc_forward` reject them (TCP reset, ICMP port unreachable)
/// rather than letting the client time out.
pub const SET_SVC_NOEP4: &str = "svc_noep4";
/// The IPv6 twin of [`SET_SVC_NOEP4`].
pub const SET_SVC_NOEP6: &str = "svc_noep6";
/// Set `ipv4_addr . inet_proto`: the [`MAP_SVC4_ANY`] keys of services with no backend.
pub const SET_SVC_NOEP4_ANY: &str = "svc_noep4_any";
/// The IPv6 twin of [`SET_SVC_NOEP4_ANY`].
pub const SET_SVC_NOEP6_ANY: &str = "svc_noep6_any";
/// Map `inet_proto . inet_service : verdict`: routing-mesh ports (published on every local
/// IPv4 address of the host) to `goto` the service's ingress chain (`ing-<id>`).
pub const MAP_INGRESS4: &str = "ingress4";
/// Set `inet_proto . inet_service`: routing-mesh ports with no backend to send to (none at
/// all, or none on this host with `local_only`); rejected in `svc_input`.
pub const SET_INGRESS_NOEP4: &str = "ingress_noep4";
/// Map `ipv4_addr : ipv4_addr`: a remote backend of routing-mesh traffic to the source
/// address it sees (the service's `ingress_snat`, this host's node address on the
/// service's network).
pub const MAP_INGRESS_SNAT4: &str = "ingress_snat4";

/// `inet` base chain, filter hook input, priority -10: rejects connections to a service
/// with no backend, drops everything else addressed to a VIP.
pub const CHAIN_SVC_INPUT: &str = "svc_input";
/// `inet` base chain, filter hook forward, priority -10: the same for VIP traffic that is
/// routed through the host, and VIP traffic between two bridges (isolation).
pub const CHAIN_SVC_FORWARD: &str = "svc_forward";
/// `inet` regular chain: `reject` (TCP reset for TCP, ICMP port unreachable otherwise).
pub const CHAIN_SVC_REJECT: &str = "svc_reject";
/// Prefix of a service's IPv4 chain (`svc-<id>`): `numgen random mod N` over its backends.
pub const CHAIN_SVC4_PREFIX: &str = "svc-";
/// Prefix of a service's IPv6 chain (`svc6-<id>`).
pub const CHAIN_SVC6_PREFIX: &str = "svc6-";
/// Prefix of a backend chain (`be-<id>-<backend address in hex>`): hairpin mark, DNAT.
pub const CHAIN_BACKEND_PREFIX: &str = "be-";
/// Prefix of a service's routing-mesh chain (`ing-<id>`).
pub const CHAIN_INGRESS_PREFIX: &str = "ing-";
/// Prefix of a routing-mesh backend chain (`ib-<id>-<backend address in hex>`): SNAT mark
/// for a remote backend, DNAT with the port translated.
pub const CHAIN_INGRESS_BACKEND_PREFIX: &str = "ib-";

// ---- inet cove: counters (one per kind of drop, so tests can prove where a probe died) ----

/// Packets to 127.0.0.0/8 or ::1 that arrived on an interface other than `lo`.
pub const COUNTER_DROP_REMOTE_LOOPBACK: &str = "drop_remote_loopback";
/// Packets forwarded into or out of an internal network's bridge.
pub const COUNTER_DROP_INTERNAL: &str = "drop_internal";
/// Packets forwarded from one Cove bridge to another (not DNAT'ed, not a reply).
pub const COUNTER_DROP_ISOLATION: &str = "drop_isolation";
/// Packets forwarded to a Cove bridge from a non-Cove interface (not DNAT'ed, not a reply):
/// direct routing to container addresses.
pub const COUNTER_DROP_DIRECT: &str = "drop_direct";
/// Packets forwarded between two non-Cove interfaces (only with `drop_foreign_forwarding`).
pub const COUNTER_DROP_FOREIGN: &str = "drop_foreign";
/// VXLAN datagrams from an address that is no node of the cluster.
pub const COUNTER_DROP_VXLAN_FOREIGN: &str = "drop_vxlan_foreign";

/// Packets to a VIP that are not for one of its service ports (dropped in `svc_input` and
/// `svc_forward`).
pub const COUNTER_DROP_VIP_OTHER: &str = "drop_vip_other";

// ---- bridge cove: chains ----

/// `bridge` base chain, hook prerouting, priority -350: anti-spoofing and router
/// advertisements, for every frame a container port sends.
pub const CHAIN_BRIDGE_PREROUTING: &str = "prerouting";
/// `bridge` base chain, hook forward, priority filter (-200): icc=false.
pub const CHAIN_BRIDGE_FORWARD: &str = "forward";

// ---- bridge cove: sets ----

/// Set of `ifname`: every container port (endpoint `host_ifname`) under anti-spoof guard.
pub const SET_GUARDED: &str = "guarded";
/// Set of `ifname . ether_addr`: the MAC each container port may send from.
pub const SET_PORT_MAC: &str = "port_mac";
/// Set of `ifname . ether_addr . ipv4_addr`: the IPv4 address each port may send from
/// (IPv4 source and ARP sender).
pub const SET_PORT_IP4: &str = "port_ip4";
/// Set of `ifname . ether_addr . ipv6_addr`: the IPv6 address each port may send from
/// (besides `::` and fe80::/64).
pub const SET_PORT_IP6: &str = "port_ip6";
/// Set `typeof iifname . ether saddr . @th,64,128`: the IPv6 address each port may claim
/// as the target of a neighbour advertisement. The same triples as [`SET_PORT_IP6`] with the
/// address as a 128-bit integer: nft 1.0.6 has no `icmpv6 taddr`, so the target is read as
/// raw payload, whose type is an integer.
pub const SET_PORT_ND6: &str = "port_nd6";
/// Set of `ifname`: container ports of networks with icc=false.
pub const SET_ICC_OFF: &str = "icc_off";
/// Set of `ifname . ifname`: linker's port and linked container's port of a legacy link;
/// the two may exchange ARP and neighbour discovery (either way) through icc=false.
pub const SET_LINK_PAIRS: &str = "link_pairs";
/// Set of `ifname . ifname . inet_proto . inet_service`: linker's port, linked container's
/// port, and an exposed port of the linked container the linker may reach through icc=false.
pub const SET_LINK_FWD: &str = "link_fwd";
/// The same with the ports swapped and the service as source port: the replies.
pub const SET_LINK_REV: &str = "link_rev";

// ---- bridge cove: counters ----

/// Frames from a container port with a foreign source MAC, or VLAN-tagged.
pub const COUNTER_DROP_SPOOF_MAC: &str = "drop_spoof_mac";
/// IPv4 packets or ARP from a container port with a source/sender IP that is not its own.
pub const COUNTER_DROP_SPOOF_IP4: &str = "drop_spoof_ip4";
/// IPv6 packets from a container port with a source that is not its own (nor `::`,
/// fe80::/64), or neighbour advertisements for an address that is not its own.
pub const COUNTER_DROP_SPOOF_IP6: &str = "drop_spoof_ip6";
/// Router advertisements and redirects (ICMPv6 134 and 137, ICMP 5) from container ports.
pub const COUNTER_DROP_ROUTER: &str = "drop_router";
/// Frames between two container ports of an icc=false network.
pub const COUNTER_DROP_ICC: &str = "drop_icc";

// ---- lists, for the executor's presence check ----

/// Every chain of `inet cove`.
pub const INET_CHAINS: &[&str] = &[
    CHAIN_RAW_PREROUTING,
    CHAIN_NAT_PREROUTING,
    CHAIN_NAT_OUTPUT,
    CHAIN_FORWARD,
    CHAIN_NAT_POSTROUTING,
    CHAIN_LO6_MARK,
];
/// Every named set of `inet cove`.
pub const INET_SETS: &[&str] =
    &[SET_BRIDGES, SET_BRIDGE_SELF, SET_INTERNAL, SET_SUBNETS4, SET_SUBNETS6, SET_MASQ4, SET_MASQ6];
/// Every named map of `inet cove`.
pub const INET_MAPS: &[&str] = &[MAP_DNAT4_ANY, MAP_DNAT4_ADDR, MAP_DNAT6_ANY, MAP_DNAT6_ADDR];
/// Every named counter of `inet cove`.
pub const INET_COUNTERS: &[&str] = &[
    COUNTER_DROP_REMOTE_LOOPBACK,
    COUNTER_DROP_INTERNAL,
    COUNTER_DROP_ISOLATION,
    COUNTER_DROP_DIRECT,
    COUNTER_DROP_FOREIGN,
    COUNTER_DROP_VXLAN_FOREIGN,
];
/// Every chain of `bridge cove`.
pub const BRIDGE_CHAINS: &[&str] = &[CHAIN_BRIDGE_PREROUTING, CHAIN_BRIDGE_FORWARD];
/// Every named set of `bridge cove`.
pub const BRIDGE_SETS: &[&str] = &[
    SET_GUARDED,
    SET_PORT_MAC,
    SET_PORT_IP4,
    SET_PORT_IP6,
    SET_PORT_ND6,
    SET_ICC_OFF,
    SET_LINK_PAIRS,
    SET_LINK_FWD,
    SET_LINK_REV,
];
/// Every named counter of `bridge cove`.
pub const BRIDGE_COUNTERS: &[&str] = &[
    COUNTER_DROP_SPOOF_MAC,
    COUNTER_DROP_SPOOF_IP4,
    COUNTER_DROP_SPOOF_IP6,
    COUNTER_DROP_ROUTER,
    COUNTER_DROP_ICC,
];
/// The static chains of `inet cove` that exist with `service_lb` (the per-service chains
/// come and go with the services: [`CHAIN_SVC4_PREFIX`] and the other prefixes).
pub const SERVICE_CHAINS: &[&str] = &[CHAIN_SVC_INPUT, CHAIN_SVC_FORWARD, CHAIN_SVC_REJECT];
/// The named sets of `inet cove` that exist with `service_lb`.
pub const SERVICE_SETS: &[&str] = &[
    SET_VIPS4,
    SET_VIPS6,
    SET_SVC_NOEP4,
    SET_SVC_NOEP6,
    SET_SVC_NOEP4_ANY,
    SET_SVC_NOEP6_ANY,
    SET_INGRESS_NOEP4,
];
/// The named maps of `inet cove` that exist with `service_lb`.
pub const SERVICE_MAPS: &[&str] =
    &[MAP_SVC4, MAP_SVC6, MAP_SVC4_ANY, MAP_SVC6_ANY, MAP_INGRESS4, MAP_INGRESS_SNAT4];
/// The named counters of `inet cove` that exist with `service_lb`.
pub const SERVICE_COUNTERS: &[&str] = &[COUNTER_DROP_VIP_OTHER];
