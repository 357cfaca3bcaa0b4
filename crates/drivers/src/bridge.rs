//! The bridge driver: a Linux bridge per network, a veth pair per endpoint.

use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use cove_firewall::{EndpointRules, NetworkRules};
use cove_model::{
    BridgeOptions, DriverConfig, EndpointRecord, Error, MacAddr, NetworkRecord, Result,
};

use crate::driver::{Capability, Claim, NetworkDriver, NetworkRequest, PlanContext, Scope};
use crate::plan::{Netns, Op, OWNED_LINK_GROUP};

/// The bridge driver (Docker's default): a Linux bridge per network, a veth pair per
/// endpoint with its peer created directly in the sandbox.
#[derive(Debug, Clone, Copy, Default)]
pub struct BridgeDriver;

impl NetworkDriver for BridgeDriver {
    fn name(&self) -> &str {
        crate::DEFAULT_DRIVER
    }

    fn capability(&self) -> Capability {
        Capability { scope: Scope::Local, endpoints: true, builtin_only: false, ipam: true }
    }

    fn validate(&self, req: &NetworkRequest<'_>) -> Result<DriverConfig> {
        let default_name = match req.device {
            Some(d) => d.to_string(),
            None => format!("br-{}", cove_model::short_id(req.id)),
        };
        parse_options(req.options, &default_name, req.default_mtu).map(DriverConfig::Bridge)
    }

    fn claims(&self, config: &DriverConfig) -> Vec<Claim> {
        match config {
            DriverConfig::Bridge(b) => vec![Claim { what: "bridge name", link: b.name.clone() }],
            _ => vec![],
        }
    }

    fn network_ops(&self, net: &NetworkRecord, ctx: &PlanContext) -> Result<Vec<Op>> {
        network_ops(net, ctx.firewall, ctx.firewall6)
    }

    fn endpoint_host_ifname(&self, endpoint_id: &str) -> Option<String> {
        Some(format!("cv{}", cove_model::short_id(endpoint_id)))
    }

    fn join_ops(
        &self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        sandbox: &Path,
    ) -> Result<Vec<Op>> {
        join_ops(net, ep, sandbox)
    }

    fn gateway_ops(&self, net: &NetworkRecord, ep: &EndpointRecord, sandbox: &Path) -> Vec<Op> {
        gateway_ops(net, ep, sandbox)
    }

    fn leave_ops(
        &self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        sandbox: &Path,
    ) -> Result<Vec<Op>> {
        leave_ops(net, ep, sandbox)
    }

    fn release_ops(&self, net: &NetworkRecord, ep: &EndpointRecord) -> Result<Vec<Op>> {
        release_ops(net, ep)
    }

    fn firewall(&self, net: &NetworkRecord, v6: bool) -> Option<NetworkRules> {
        let b = bridge_of(net).ok()?;
        let subnets4 = net.ipam.iter().filter_map(|p| match p.subnet {
            IpNet::V4(s) => Some(s),
            IpNet::V6(_) => None,
        });
        let subnets6 = net.ipam.iter().filter_map(|p| match p.subnet {
            IpNet::V6(s) if v6 && net.enable_ipv6 => Some(s),
            _ => None,
        });
        Some(NetworkRules {
            bridge: b.name.clone(),
            subnets4: subnets4.collect(),
            subnets6: subnets6.collect(),
            internal: net.internal,
            icc: b.enable_icc,
            masquerade: b.enable_ip_masquerade,
        })
    }

    fn firewall_endpoint(
        &self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        v6: bool,
    ) -> Option<EndpointRules> {
        let b = bridge_of(net).ok()?;
        Some(EndpointRules {
            bridge: b.name.clone(),
            host_ifname: ep.host_ifname.clone()?,
            mac: ep.mac,
            ipv4: ep.ipv4.map(|a| a.addr()),
            ipv6: if v6 { ep.ipv6.map(|a| a.addr()) } else { None },
        })
    }

    fn default_binding_ip(&self, net: &NetworkRecord) -> Option<IpAddr> {
        bridge_of(net).ok()?.host_binding_ipv4.filter(|ip| !ip.is_unspecified())
    }
}

/// `-o` option keys the bridge driver understands (Docker's names).
pub mod keys {
    /// Bridge device name.
    pub const NAME: &str = "com.docker.network.bridge.name";
    /// Inter-container communication.
    pub const ICC: &str = "com.docker.network.bridge.enable_icc";
    /// Outbound masquerade.
    pub const MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
    /// Default host address for published ports.
    pub const HOST_BINDING_IPV4: &str = "com.docker.network.bridge.host_binding_ipv4";
    /// MTU of the bridge and its veths.
    pub const MTU: &str = "com.docker.network.driver.mtu";
    /// Marks the default bridge (set by the daemon, accepted for compatibility).
    pub const DEFAULT_BRIDGE: &str = "com.docker.network.bridge.default_bridge";
}

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// Validate an interface name as the kernel would (`dev_valid_name`).
pub fn validate_ifname(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_IFNAME {
        return Err(Error::invalid(format!(
            "invalid bridge name \"{name}\": must be 1 to {MAX_IFNAME} bytes long"
        )));
    }
    if name == "."
        || name == ".."
        || name.bytes().any(|b| b == b'/' || b == b':' || !(0x21..=0x7e).contains(&b))
    {
        return Err(Error::invalid(format!(
            "invalid bridge name \"{name}\": must not contain '/', ':', whitespace or control characters"
        )));
    }
    Ok(())
}

fn parse_bool(key: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" | "True" | "TRUE" => Ok(true),
        "false" | "0" | "False" | "FALSE" => Ok(false),
        _ => Err(Error::invalid(format!(
            "invalid value \"{value}\" for option {key}: expected true or false"
        ))),
    }
}

/// Parse `-o` options into typed bridge options. Unknown keys are refused, so a typo never
/// silently changes nothing. `default_name` is used when no bridge name is given.
pub fn parse_options(
    options: &BTreeMap<String, String>,
    default_name: &str,
    default_mtu: u32,
) -> Result<BridgeOptions> {
    let mut o = BridgeOptions {
        name: default_name.to_string(),
        enable_icc: true,
        enable_ip_masquerade: true,
        host_binding_ipv4: None,
        mtu: default_mtu,
    };
    for (key, value) in options {
        match key.as_str() {
            keys::NAME => o.name = value.clone(),
            keys::ICC => o.enable_icc = parse_bool(key, value)?,
            keys::MASQUERADE => o.enable_ip_masquerade = parse_bool(key, value)?,
            keys::HOST_BINDING_IPV4 => {
                let ip: IpAddr = value.parse().map_err(|_| {
                    Error::invalid(format!(
                        "invalid value \"{value}\" for option {key}: expected an IP address"
                    ))
                })?;
                o.host_binding_ipv4 = Some(ip);
            }
            keys::MTU => {
                let mtu: u32 = value.parse().ok().filter(|m| (68..=65535).contains(m)).ok_or_else(|| {
                    Error::invalid(format!("invalid value \"{value}\" for option {key}: expected an MTU between 68 and 65535"))
                })?;
                o.mtu = mtu;
            }
            keys::DEFAULT_BRIDGE => {
                parse_bool(key, value)?;
            }
            other => {
                return Err(Error::invalid(format!(
                "unknown option \"{other}\" for the bridge driver (supported: {}, {}, {}, {}, {})",
                keys::NAME,
                keys::ICC,
                keys::MASQUERADE,
                keys::HOST_BINDING_IPV4,
                keys::MTU
            )))
            }
        }
    }
    validate_ifname(&o.name)?;
    Ok(o)
}

fn bridge_of(net: &NetworkRecord) -> Result<&BridgeOptions> {
    match &net.config {
        DriverConfig::Bridge(b) => Ok(b),
        // An overlay network's local side is a bridge like any other.
        DriverConfig::Overlay(o) => Ok(&o.bridge),
        _ => Err(Error::internal(format!("network {} has no bridge options", net.name))),
    }
}

/// The host end of an endpoint's veth pair.
fn host_end(ep: &EndpointRecord) -> Result<&str> {
    ep.host_ifname
        .as_deref()
        .ok_or_else(|| Error::internal(format!("endpoint {} has no host interface", ep.id)))
}

fn gateway_net(pool_subnet: IpNet, gw: IpAddr) -> IpNet {
    IpNet::new(gw, pool_subnet.prefix_len()).expect("prefix length comes from a valid subnet")
}

/// The bridge's MAC, derived from the network id so it is stable across restarts.
pub fn bridge_mac(network_id: &str) -> MacAddr {
    let mut b = [0x02, 0x42, 0, 0, 0, 0];
    for (i, pair) in network_id.as_bytes().chunks(2).take(4).enumerate() {
        b[2 + i] = std::str::from_utf8(pair)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .unwrap_or(0);
    }
    MacAddr(b)
}

/// Host-side objects that exist while the network exists: the bridge, its gateway
/// addresses, and IPv6 enabled on it only when the network has IPv6. With `firewall`,
/// `route_localnet` is set on the bridge so published ports answer on 127.0.0.1 without a
/// userland proxy; only with the firewall, whose raw rule drops 127.0.0.0/8 arriving from
/// anywhere but `lo` (the CVE-2020-8558 class).
///
/// With `firewall6` too, an IPv6 network's bridge gets [`Op::LoopbackRoute6`], so ports
/// published on `[::1]` work without a proxy.
fn network_ops(net: &NetworkRecord, firewall: bool, firewall6: bool) -> Result<Vec<Op>> {
    let b = bridge_of(net)?;
    let mut ops = vec![Op::CreateBridge {
        name: b.name.clone(),
        mtu: b.mtu,
        mac: bridge_mac(&net.id),
        group: OWNED_LINK_GROUP,
    }];
    ops.push(Op::Sysctl {
        netns: Netns::Host,
        key: format!("net/ipv6/conf/{}/disable_ipv6", b.name),
        value: if net.enable_ipv6 { "0" } else { "1" }.into(),
    });
    for pool in &net.ipam {
        if let Some(gw) = pool.gateway {
            ops.push(Op::AddAddress {
                netns: Netns::Host,
                link: b.name.clone(),
                addr: gateway_net(pool.subnet, gw),
            });
        }
    }
    if firewall {
        ops.push(Op::Sysctl {
            netns: Netns::Host,
            key: format!("net/ipv4/conf/{}/route_localnet", b.name),
            value: "1".into(),
        });
    }
    if net.enable_ipv6 {
        // Containers must not become the host's routers.
        ops.push(Op::Sysctl {
            netns: Netns::Host,
            key: format!("net/ipv6/conf/{}/accept_ra", b.name),
            value: "0".into(),
        });
    }
    ops.push(Op::SetUp { netns: Netns::Host, link: b.name.clone() });
    if net.enable_ipv6 && firewall && firewall6 {
        ops.push(Op::LoopbackRoute6 { link: b.name.clone() });
    }
    Ok(ops)
}

/// Objects of one endpoint inside sandbox `netns`: the veth pair (peer created directly in
/// the sandbox), IPv6 off on it unless the network has IPv6, its addresses, and link up.
/// The default route is added separately ([`gateway_ops`]) because only one endpoint of a
/// sandbox provides it.
fn join_ops(net: &NetworkRecord, ep: &EndpointRecord, netns: &Path) -> Result<Vec<Op>> {
    let b = bridge_of(net)?;
    let sb = Netns::Path(netns.to_path_buf());
    let host = host_end(ep)?;
    let mut ops = vec![
        Op::CreateVeth {
            host_name: host.to_string(),
            group: OWNED_LINK_GROUP,
            bridge: b.name.clone(),
            mtu: b.mtu,
            peer_name: ep.ifname.clone(),
            peer_netns: netns.to_path_buf(),
            peer_mac: ep.mac,
        },
        Op::Hairpin { link: host.to_string() },
        // A bridge port does no IPv6 of its own (the bridge carries the network's). Without
        // this, every host-side veth gets a link-local address, two routes in the host's
        // IPv6 table, DAD and MLD; and every link change on the host then walks that
        // table under the RTNL lock: a container start cost O(containers) (0.2 ms -> 0.6 ms
        // per veth pair brought up next to 1,000 others, measured). Written while the port
        // has no carrier yet (the peer is still down), so no address ever exists.
        Op::Sysctl {
            netns: Netns::Host,
            key: format!("net/ipv6/conf/{host}/disable_ipv6"),
            value: "1".into(),
        },
    ];
    if ep.ipv6.is_none() {
        ops.push(Op::Sysctl {
            netns: sb.clone(),
            key: format!("net/ipv6/conf/{}/disable_ipv6", ep.ifname),
            value: "1".into(),
        });
    }
    if let Some(v4) = ep.ipv4 {
        ops.push(Op::AddAddress {
            netns: sb.clone(),
            link: ep.ifname.clone(),
            addr: IpNet::V4(v4),
        });
    }
    if let Some(v6) = ep.ipv6 {
        ops.push(Op::AddAddress {
            netns: sb.clone(),
            link: ep.ifname.clone(),
            addr: IpNet::V6(v6),
        });
    }
    ops.push(Op::SetUp { netns: sb.clone(), link: ep.ifname.clone() });
    ops.extend(neighbor_ops(net, ep, &sb)?);
    Ok(ops)
}

/// Permanent neighbour entries for one endpoint: the gateway's in the sandbox (the bridge's
/// MAC is fixed, see [`bridge_mac`]) and the container's on the bridge in the host. The
/// kernel's neighbour table limits (`gc_thresh3`, 1,024 entries by default) are global to
/// the machine and cannot be raised from a network namespace; with learned entries, the
/// host and the sandboxes of ~1,000 containers fill the table and new connections time
/// out ("neighbour table overflow"). Permanent entries are exempt from those limits, and
/// no ARP/NDP exchange delays the first packet. Their removal is [`release_ops`].
fn neighbor_ops(net: &NetworkRecord, ep: &EndpointRecord, sb: &Netns) -> Result<Vec<Op>> {
    let b = bridge_of(net)?;
    let mut ops = vec![];
    let gateways =
        [ep.gateway4.map(IpAddr::V4), ep.gateway6.filter(|_| ep.ipv6.is_some()).map(IpAddr::V6)];
    for gw in gateways.into_iter().flatten() {
        ops.push(Op::Neighbor {
            netns: sb.clone(),
            link: ep.ifname.clone(),
            addr: gw,
            mac: bridge_mac(&net.id),
        });
    }
    for addr in endpoint_addrs(ep) {
        ops.push(Op::Neighbor { netns: Netns::Host, link: b.name.clone(), addr, mac: ep.mac });
    }
    Ok(ops)
}

fn endpoint_addrs(ep: &EndpointRecord) -> impl Iterator<Item = IpAddr> {
    ep.ipv4.map(|a| IpAddr::V4(a.addr())).into_iter().chain(ep.ipv6.map(|a| IpAddr::V6(a.addr())))
}

/// What must go from the host when an endpoint goes (its sandbox's side goes with the
/// sandbox): the container's neighbour entries on the bridge, which would otherwise keep
/// steering its address to a MAC that is no longer there.
fn release_ops(net: &NetworkRecord, ep: &EndpointRecord) -> Result<Vec<Op>> {
    let b = bridge_of(net)?;
    Ok(endpoint_addrs(ep)
        .map(|addr| Op::DelNeighbor { netns: Netns::Host, link: b.name.clone(), addr })
        .collect())
}

/// Default routes through `ep`'s gateways, for the endpoint chosen to be the sandbox's
/// gateway endpoint. Internal networks never provide one.
fn gateway_ops(net: &NetworkRecord, ep: &EndpointRecord, netns: &Path) -> Vec<Op> {
    if net.internal {
        return vec![];
    }
    let sb = Netns::Path(netns.to_path_buf());
    let mut ops = vec![];
    if let Some(gw) = ep.gateway4 {
        ops.push(Op::AddRoute {
            netns: sb.clone(),
            dst: "0.0.0.0/0".parse().expect("literal"),
            gateway: Some(IpAddr::V4(gw)),
            link: ep.ifname.clone(),
        });
    }
    if let Some(gw) = ep.gateway6 {
        ops.push(Op::AddRoute {
            netns: sb,
            dst: "::/0".parse().expect("literal"),
            gateway: Some(IpAddr::V6(gw)),
            link: ep.ifname.clone(),
        });
    }
    ops
}

/// Removing one endpoint from a running sandbox: take its interface out of service at once
/// (down, and renamed to a tombstone so its `ethN` name is free again), and condemn the
/// host end: the executor's reaper deletes the pair with the other condemned links in one
/// request once the kernel is idle. Deleting it here would hold the RTNL lock through an
/// RCU grace period (~30 ms), stalling every other link operation on the host; keeping it
/// until the container stops would leave a dead port on the bridge for every disconnect
/// (a bridge takes at most 1,024 ports).
fn leave_ops(net: &NetworkRecord, ep: &EndpointRecord, netns: &Path) -> Result<Vec<Op>> {
    // The host-side name is unique and never reused; it makes a unique tombstone too.
    let host = host_end(ep)?;
    let tombstone = format!("x{}", host.trim_start_matches("cv"));
    let mut ops = vec![
        Op::Retire { netns: Netns::Path(netns.to_path_buf()), link: ep.ifname.clone(), tombstone },
        Op::Condemn { link: host.to_string() },
    ];
    ops.extend(release_ops(net, ep)?);
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_model::IpamPool;

    fn net(ipv6: bool, internal: bool) -> NetworkRecord {
        let mut ipam = vec![IpamPool {
            subnet: "172.18.0.0/16".parse().unwrap(),
            ip_range: None,
            gateway: Some("172.18.0.1".parse().unwrap()),
            aux_addresses: BTreeMap::new(),
        }];
        if ipv6 {
            ipam.push(IpamPool {
                subnet: "2001:db8:1::/64".parse().unwrap(),
                ip_range: None,
                gateway: Some("2001:db8:1::1".parse().unwrap()),
                aux_addresses: BTreeMap::new(),
            });
        }
        NetworkRecord {
            id: "d".repeat(64).parse().unwrap(),
            name: "app".into(),
            driver: "bridge".into(),
            created: String::new(),
            enable_ipv6: ipv6,
            internal,
            attachable: false,
            ipam_driver: "default".into(),
            ipam_options: BTreeMap::new(),
            ipam,
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            config: DriverConfig::Bridge(
                parse_options(&BTreeMap::new(), "br-nnnnnnnnnnnn", 1500).unwrap(),
            ),
            builtin: false,
        }
    }

    fn ep() -> EndpointRecord {
        EndpointRecord {
            id: "e".repeat(64).parse().unwrap(),
            network_id: "d".repeat(64).parse().unwrap(),
            container_id: "c".repeat(64).parse().unwrap(),
            ifname: "eth0".into(),
            host_ifname: Some("cv0123456789ab".into()),
            mac: MacAddr::from_ipv4("172.18.0.2".parse().unwrap()),
            ipv4: Some("172.18.0.2/16".parse().unwrap()),
            ipv6: None,
            gateway4: Some("172.18.0.1".parse().unwrap()),
            gateway6: None,
            aliases: vec![],
        }
    }

    fn render(ops: &[Op]) -> String {
        ops.iter().map(|o| format!("{o}\n")).collect()
    }

    #[test]
    fn network_plan_v4() {
        let got = render(&network_ops(&net(false, false), false, false).unwrap());
        assert_eq!(
            got,
            "create bridge br-nnnnnnnnnnnn mtu 1500 mac 02:42:dd:dd:dd:dd\n\
             sysctl net/ipv6/conf/br-nnnnnnnnnnnn/disable_ipv6=1 in host\n\
             add address 172.18.0.1/16 to br-nnnnnnnnnnnn in host\n\
             set br-nnnnnnnnnnnn up in host\n"
        );
    }

    #[test]
    fn network_plan_dual_stack_enables_ipv6() {
        let got = render(&network_ops(&net(true, false), true, true).unwrap());
        assert!(got.contains("disable_ipv6=0"));
        assert!(got.contains("add address 2001:db8:1::1/64 to br-nnnnnnnnnnnn"));
        assert!(got.contains("route_localnet=1"), "the firewall's localnet access: {got}");
        assert!(got.ends_with("add route local ::1 dev br-nnnnnnnnnnnn table local metric 1024\n"));
        // Without the IPv6 firewall (whose raw rule guards it), no `::1` route.
        let got = render(&network_ops(&net(true, false), true, false).unwrap());
        assert!(!got.contains("route local ::1"), "{got}");
    }

    #[test]
    fn join_plan_creates_peer_in_sandbox_and_disables_v6() {
        let got =
            render(&join_ops(&net(false, false), &ep(), Path::new("/run/cove/netns/c")).unwrap());
        assert_eq!(
            got,
            "create veth cv0123456789ab (master br-nnnnnnnnnnnn) peer eth0 in /run/cove/netns/c mac 02:42:ac:12:00:02 mtu 1500\n\
             hairpin on for bridge port cv0123456789ab\n\
             sysctl net/ipv6/conf/cv0123456789ab/disable_ipv6=1 in host\n\
             sysctl net/ipv6/conf/eth0/disable_ipv6=1 in /run/cove/netns/c\n\
             add address 172.18.0.2/16 to eth0 in /run/cove/netns/c\n\
             set eth0 up in /run/cove/netns/c\n\
             add permanent neighbour 172.18.0.1 lladdr 02:42:dd:dd:dd:dd dev eth0 in /run/cove/netns/c\n\
             add permanent neighbour 172.18.0.2 lladdr 02:42:ac:12:00:02 dev br-nnnnnnnnnnnn in host\n"
        );
    }

    #[test]
    fn permanent_neighbours_follow_the_endpoint_both_ways() {
        let net = net(true, false);
        let mut e = ep();
        e.ipv6 = Some("2001:db8:1::2/64".parse().unwrap());
        e.gateway6 = Some("2001:db8:1::1".parse().unwrap());
        let got = render(&join_ops(&net, &e, Path::new("/s")).unwrap());
        for want in [
            "add permanent neighbour 2001:db8:1::1 lladdr 02:42:dd:dd:dd:dd dev eth0 in /s",
            "add permanent neighbour 2001:db8:1::2 lladdr 02:42:ac:12:00:02 dev br-nnnnnnnnnnnn in host",
        ] {
            assert!(got.contains(want), "{want} missing from\n{got}");
        }
        // Created, so undone on rollback.
        let ops = join_ops(&net, &e, Path::new("/s")).unwrap();
        let undo: Vec<Op> = ops.iter().filter_map(Op::inverse).collect();
        assert!(undo.contains(&Op::DelNeighbor {
            netns: Netns::Host,
            link: "br-nnnnnnnnnnnn".into(),
            addr: "2001:db8:1::2".parse().unwrap(),
        }));
        // Released with the endpoint: the host's entries (the sandbox's go with it).
        assert_eq!(
            render(&release_ops(&net, &e).unwrap()),
            "delete neighbour 172.18.0.2 dev br-nnnnnnnnnnnn in host\n\
             delete neighbour 2001:db8:1::2 dev br-nnnnnnnnnnnn in host\n"
        );
        // No IPv6 address: no IPv6 gateway entry in a sandbox whose IPv6 is off.
        e.ipv6 = None;
        let got = render(&join_ops(&net, &e, Path::new("/s")).unwrap());
        assert!(!got.contains("2001:db8:1::1"), "{got}");
    }

    #[test]
    fn internal_networks_give_no_default_route() {
        let p = Path::new("/x");
        assert!(gateway_ops(&net(false, true), &ep(), p).is_empty());
        let got = render(&gateway_ops(&net(false, false), &ep(), p));
        assert_eq!(got, "add route 0.0.0.0/0 via 172.18.0.1 dev eth0 in /x\n");
    }

    #[test]
    fn leave_retires_the_interface_and_forgets_the_neighbour() {
        let ops = leave_ops(&net(false, false), &ep(), Path::new("/s")).unwrap();
        assert_eq!(
            render(&ops),
            "retire eth0 as x0123456789ab in /s\n\
             condemn cv0123456789ab (reaped in the background)\n\
             delete neighbour 172.18.0.2 dev br-nnnnnnnnnnnn in host\n"
        );
    }

    #[test]
    fn bridge_mac_is_stable_and_local() {
        let m = bridge_mac("a1b2c3d4e5");
        assert_eq!(m.to_string(), "02:42:a1:b2:c3:d4");
        assert_eq!(m, bridge_mac("a1b2c3d4e5"));
    }

    #[test]
    fn options_are_typed_and_unknown_ones_refused() {
        let mut o = BTreeMap::new();
        o.insert(keys::ICC.to_string(), "false".to_string());
        o.insert(keys::MTU.to_string(), "1400".to_string());
        o.insert(keys::NAME.to_string(), "mybr".to_string());
        let b = parse_options(&o, "x", 1500).unwrap();
        assert!(!b.enable_icc && b.enable_ip_masquerade);
        assert_eq!((b.mtu, b.name.as_str()), (1400, "mybr"));

        o.insert("com.docker.network.bridge.nope".into(), "1".into());
        let e = parse_options(&o, "x", 1500).unwrap_err();
        assert!(
            e.message.contains("unknown option \"com.docker.network.bridge.nope\""),
            "{}",
            e.message
        );

        let mut o = BTreeMap::new();
        o.insert(keys::NAME.to_string(), "a-very-long-bridge-name".to_string());
        let e = parse_options(&o, "x", 1500).unwrap_err();
        assert!(e.message.contains("1 to 15 bytes"), "{}", e.message);

        for (k, v) in [(keys::ICC, "maybe"), (keys::MTU, "10"), (keys::HOST_BINDING_IPV4, "nope")] {
            let mut o = BTreeMap::new();
            o.insert(k.to_string(), v.to_string());
            assert!(parse_options(&o, "x", 1500).is_err(), "{k}={v}");
        }
    }

    #[test]
    fn ifname_rules() {
        assert!(validate_ifname("cove0").is_ok());
        for bad in ["", "a/b", "a b", "a:b", ".", "..", "0123456789abcdef"] {
            assert!(validate_ifname(bad).is_err(), "{bad:?}");
        }
    }
}
