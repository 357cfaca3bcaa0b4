//! The overlay driver: one network across the hosts of a cluster, over VXLAN.
//!
//! On every host an overlay network is a bridge (`ov-<id12>`) with the network's gateway
//! address and a MAC derived from the network's id, so both are the same on every host
//! (an anycast gateway: outbound traffic leaves through the local host), and a VXLAN
//! device (`vx-<id12>`) on that bridge. Nothing is learned or flooded: every endpoint on
//! another host is programmed ahead of time from the cluster store, with a forwarding
//! entry to its host and a permanent neighbour entry the VXLAN device's proxy answers ARP
//! and neighbour solicitations from (ADR 0013). Local endpoints join the bridge exactly as
//! they join a bridge network's, so the bridge driver's plans serve both.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use cove_firewall::{EndpointRules, NetworkRules};
use cove_model::{DriverConfig, EndpointRecord, Error, NetworkRecord, OverlayOptions, Result};

use crate::bridge::{self, BridgeDriver};
use crate::driver::{
    Capability, Claim, NetworkDriver, NetworkRequest, Peer, PlanContext, Scope, SegmentRequest,
};
use crate::plan::{Netns, Op, PortFlags, OWNED_LINK_GROUP};

/// The driver's name, as Docker's.
pub const NAME: &str = "overlay";

/// VXLAN network identifiers Cove allocates from: above flannel's 1 and Docker's low range
/// (256..), up to the 24-bit limit.
pub const VNI_RANGE: (u32, u32) = (4096, (1 << 24) - 1);

/// What VXLAN over IPv4 adds to every frame (outer IPv4 20, UDP 8, VXLAN 8, inner
/// Ethernet 14); over IPv6, 20 more.
const ENCAP_V4: u32 = 50;
const ENCAP_V6: u32 = 70;

/// What the WireGuard tunnel adds under an encrypted network's VXLAN (IPv6-safe: outer IP
/// 40, UDP 8, WireGuard 32), `cove_tunnel::OVERHEAD` (a controller test checks they are
/// equal; this crate stays free of the tunnel's I/O). An encrypted network's MTU is the
/// underlay's minus both: 1370 on 1500.
pub const TUNNEL_OVERHEAD: u32 = 80;

/// `-o` option keys the overlay driver understands (Docker's names).
pub mod keys {
    /// MTU of the network's interfaces.
    pub const MTU: &str = "com.docker.network.driver.mtu";
    /// The VXLAN network identifier to use (one; Docker takes a list, one per subnet).
    pub const VXLANID_LIST: &str = "com.docker.network.driver.overlay.vxlanid_list";
    /// Encryption between hosts (Docker's option: present, with no value, means on).
    pub const ENCRYPTED: &str = "encrypted";
}

/// The overlay driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct OverlayDriver;

fn overlay_of(net: &NetworkRecord) -> Result<&OverlayOptions> {
    match &net.config {
        DriverConfig::Overlay(o) => Ok(o),
        _ => Err(Error::internal(format!("network {} has no overlay options", net.name))),
    }
}

/// The largest MTU a network can have on an underlay of `mtu` reached from `advertise`,
/// with the tunnel's overhead too when it is `encrypted`.
fn max_mtu(underlay_mtu: u32, advertise: IpAddr, encrypted: bool) -> u32 {
    let encap = if advertise.is_ipv6() { ENCAP_V6 } else { ENCAP_V4 };
    let tunnel = if encrypted { TUNNEL_OVERHEAD } else { 0 };
    underlay_mtu.saturating_sub(encap + tunnel)
}

/// `--opt encrypted` as Docker takes it (present: on); `true`/`false` spelled out too.
fn parse_encrypted(value: &str) -> Result<bool> {
    match value {
        "" | "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Error::invalid(format!(
            "invalid value \"{value}\" for option {}: give it without a value (--opt encrypted), or true/false",
            keys::ENCRYPTED
        ))),
    }
}

/// Why this host cannot carry encrypted networks, as a refusal.
fn no_tunnel(what: &str) -> Error {
    Error::unavailable(format!(
        "{what} is encrypted, but this host's encrypted tunnel (cvwg0) is not running: \
         encryption cannot be enforced here"
    ))
}

fn parse_vni(value: &str) -> Result<u32> {
    let first = value.split(',').next().unwrap_or_default().trim();
    first.parse::<u32>().ok().filter(|v| (1..(1 << 24)).contains(v)).ok_or_else(|| {
        Error::invalid(format!(
            "invalid value \"{value}\" for option {}: expected a VXLAN id between 1 and 16777215",
            keys::VXLANID_LIST
        ))
    })
}

impl NetworkDriver for OverlayDriver {
    fn name(&self) -> &str {
        NAME
    }

    fn capability(&self) -> Capability {
        Capability { scope: Scope::Global, endpoints: true, builtin_only: false, ipam: true }
    }

    fn validate(&self, req: &NetworkRequest<'_>) -> Result<DriverConfig> {
        let Some(underlay) = req.underlay else {
            return Err(Error::unavailable(
                "overlay networks need a cluster: start the daemon with --cluster-store and --cluster-advertise",
            ));
        };
        let encrypted = match req.options.get(keys::ENCRYPTED) {
            Some(v) => parse_encrypted(v)?,
            None => false,
        };
        if encrypted && underlay.tunnel.is_none() {
            return Err(no_tunnel("the network"));
        }
        let limit = max_mtu(underlay.mtu, underlay.advertise, encrypted);
        let mut mtu = limit.min(req.default_mtu);
        let mut vni = 0;
        for (key, value) in req.options {
            match key.as_str() {
                keys::MTU => {
                    let m = bridge::parse_options(
                        &BTreeMap::from([(key.clone(), value.clone())]),
                        "ov-mtu",
                        mtu,
                    )?
                    .mtu;
                    if m > limit {
                        let what = if encrypted { "an encrypted" } else { "an" };
                        return Err(Error::invalid(format!(
                            "invalid value \"{value}\" for option {key}: the underlay's MTU is {} on {}, so {what} overlay network's MTU can be at most {limit}",
                            underlay.mtu, underlay.advertise
                        )));
                    }
                    mtu = m;
                }
                keys::VXLANID_LIST => vni = parse_vni(value)?,
                keys::ENCRYPTED => {}
                other => {
                    return Err(Error::invalid(format!(
                        "unknown option \"{other}\" for the overlay driver (supported: {}, {}, {})",
                        keys::MTU,
                        keys::VXLANID_LIST,
                        keys::ENCRYPTED
                    )))
                }
            }
        }
        let short = cove_model::short_id(req.id);
        Ok(DriverConfig::Overlay(OverlayOptions {
            bridge: cove_model::BridgeOptions {
                name: format!("ov-{short}"),
                enable_icc: true,
                enable_ip_masquerade: true,
                host_binding_ipv4: None,
                mtu,
            },
            vxlan: format!("vx-{short}"),
            vni,
            encrypted,
        }))
    }

    fn claims(&self, config: &DriverConfig) -> Vec<Claim> {
        match config {
            DriverConfig::Overlay(o) => vec![
                Claim { what: "bridge name", link: o.bridge.name.clone() },
                Claim { what: "VXLAN device name", link: o.vxlan.clone() },
            ],
            _ => vec![],
        }
    }

    fn network_ops(&self, net: &NetworkRecord, ctx: &PlanContext) -> Result<Vec<Op>> {
        let o = overlay_of(net)?;
        let Some(underlay) = ctx.underlay else {
            return Err(Error::unavailable(format!(
                "overlay network {} needs a cluster: start the daemon with --cluster-store and --cluster-advertise",
                net.name
            )));
        };
        let limit = max_mtu(underlay.mtu, underlay.advertise, o.encrypted);
        if o.bridge.mtu > limit {
            return Err(Error::unavailable(format!(
                "overlay network {} has MTU {}, but this host's underlay MTU is {} on {}: at most {limit} fits",
                net.name, o.bridge.mtu, underlay.mtu, underlay.advertise,
            )));
        }
        // An encrypted network's datagrams leave from the tunnel address, so the kernel
        // routes them into the tunnel device; without one it does not exist here at all.
        let local = match (o.encrypted, underlay.tunnel) {
            (false, _) => underlay.advertise,
            (true, Some(tunnel)) => tunnel,
            (true, None) => return Err(no_tunnel(&format!("overlay network {}", net.name))),
        };
        let mut ops = BridgeDriver.network_ops(net, ctx)?;
        ops.extend([
            Op::CreateVxlan {
                name: o.vxlan.clone(),
                group: OWNED_LINK_GROUP,
                vni: o.vni,
                local,
                port: underlay.port,
                mtu: o.bridge.mtu,
                master: o.bridge.name.clone(),
            },
            Op::SetPortFlags { link: o.vxlan.clone(), flags: PortFlags::OVERLAY_VXLAN },
            Op::SetUp { netns: Netns::Host, link: o.vxlan.clone() },
        ]);
        Ok(ops)
    }

    fn endpoint_host_ifname(&self, endpoint_id: &str) -> Option<String> {
        BridgeDriver.endpoint_host_ifname(endpoint_id)
    }

    fn join_ops(
        &self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        sandbox: &Path,
    ) -> Result<Vec<Op>> {
        BridgeDriver.join_ops(net, ep, sandbox)
    }

    fn gateway_ops(&self, net: &NetworkRecord, ep: &EndpointRecord, sandbox: &Path) -> Vec<Op> {
        BridgeDriver.gateway_ops(net, ep, sandbox)
    }

    fn leave_ops(
        &self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        sandbox: &Path,
    ) -> Result<Vec<Op>> {
        BridgeDriver.leave_ops(net, ep, sandbox)
    }

    fn release_ops(&self, net: &NetworkRecord, ep: &EndpointRecord) -> Result<Vec<Op>> {
        BridgeDriver.release_ops(net, ep)
    }

    fn firewall(&self, net: &NetworkRecord, v6: bool) -> Option<NetworkRules> {
        BridgeDriver.firewall(net, v6)
    }

    fn firewall_endpoint(
        &self,
        net: &NetworkRecord,
        ep: &EndpointRecord,
        v6: bool,
    ) -> Option<EndpointRules> {
        BridgeDriver.firewall_endpoint(net, ep, v6)
    }

    fn segment(&self, config: &DriverConfig) -> Option<SegmentRequest> {
        match config {
            DriverConfig::Overlay(o) => {
                Some(SegmentRequest { requested: (o.vni != 0).then_some(o.vni), range: VNI_RANGE })
            }
            _ => None,
        }
    }

    fn with_segment(&self, config: DriverConfig, segment: u32) -> DriverConfig {
        match config {
            DriverConfig::Overlay(o) => DriverConfig::Overlay(OverlayOptions { vni: segment, ..o }),
            other => other,
        }
    }

    fn segment_of(&self, net: &NetworkRecord) -> Option<u32> {
        overlay_of(net).ok().map(|o| o.vni).filter(|v| *v != 0)
    }

    fn encrypted(&self, config: &DriverConfig) -> bool {
        matches!(config, DriverConfig::Overlay(o) if o.encrypted)
    }

    fn peer_ops(&self, net: &NetworkRecord, peer: Peer<'_>) -> Result<Vec<Op>> {
        let o = overlay_of(net)?;
        let ep = peer.endpoint;
        // Structural guard: an encrypted network's forwarding entries name tunnel
        // addresses only. A peer whose host has no tunnel is not programmed at all: it is
        // unreachable rather than reached in clear.
        let dst = match (o.encrypted, peer.tunnel) {
            (false, _) => peer.host,
            (true, Some(tunnel)) => tunnel,
            (true, None) => return Ok(vec![]),
        };
        let link = o.vxlan.clone();
        let mut ops = vec![
            Op::VxlanFdb { link: link.clone(), mac: ep.mac, dst },
            Op::BridgeFdb { link: link.clone(), mac: ep.mac },
        ];
        let addrs = ep.ipv4.map(|a| IpAddr::V4(a.addr())).into_iter();
        let addrs = addrs.chain(ep.ipv6.map(|a| IpAddr::V6(a.addr())));
        for addr in addrs {
            ops.push(Op::Neighbor { netns: Netns::Host, link: link.clone(), addr, mac: ep.mac });
        }
        Ok(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Underlay;
    use cove_model::{IpamPool, MacAddr};

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn underlay(mtu: u32) -> Underlay {
        Underlay { advertise: "203.0.113.11".parse().unwrap(), mtu, port: 4789, tunnel: None }
    }

    /// The underlay of a host whose tunnel runs (tunnel address 10.255.0.1).
    fn tunnelled(mtu: u32) -> Underlay {
        Underlay { tunnel: Some("10.255.0.1".parse().unwrap()), ..underlay(mtu) }
    }

    fn req<'a>(opts: &'a BTreeMap<String, String>, u: Option<Underlay>) -> NetworkRequest<'a> {
        NetworkRequest { id: ID, options: opts, default_mtu: 1500, device: None, underlay: u }
    }

    fn net(vni: u32) -> NetworkRecord {
        let opts = BTreeMap::new();
        let config = OverlayDriver.validate(&req(&opts, Some(underlay(1500)))).unwrap();
        NetworkRecord {
            id: ID.parse().unwrap(),
            name: "ov1".into(),
            driver: NAME.into(),
            created: String::new(),
            enable_ipv6: false,
            internal: false,
            attachable: false,
            ipam_driver: "default".into(),
            ipam_options: BTreeMap::new(),
            ipam: vec![IpamPool {
                subnet: "10.0.9.0/24".parse().unwrap(),
                ip_range: None,
                gateway: Some("10.0.9.1".parse().unwrap()),
                aux_addresses: BTreeMap::new(),
            }],
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
            config: OverlayDriver.with_segment(config, vni),
            builtin: false,
        }
    }

    fn render(ops: &[Op]) -> String {
        ops.iter().map(|o| format!("{o}\n")).collect()
    }

    #[test]
    fn the_mtu_leaves_room_for_the_encapsulation() {
        let opts = BTreeMap::new();
        let DriverConfig::Overlay(o) =
            OverlayDriver.validate(&req(&opts, Some(underlay(1500)))).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.bridge.mtu, 1450);
        assert_eq!(
            (o.bridge.name.as_str(), o.vxlan.as_str()),
            ("ov-0123456789ab", "vx-0123456789ab")
        );
        let DriverConfig::Overlay(o) =
            OverlayDriver.validate(&req(&opts, Some(underlay(1400)))).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.bridge.mtu, 1350);
        let too_big = BTreeMap::from([(keys::MTU.to_string(), "1500".to_string())]);
        let e = OverlayDriver.validate(&req(&too_big, Some(underlay(1500)))).unwrap_err();
        assert_eq!(e.kind, cove_model::ErrorKind::InvalidInput);
        assert!(
            e.message.contains("underlay's MTU is 1500") && e.message.contains("at most 1450"),
            "{}",
            e.message
        );
    }

    #[test]
    fn options_are_typed_and_unknown_or_unavailable_ones_refused() {
        let vni = BTreeMap::from([(keys::VXLANID_LIST.to_string(), "5000".to_string())]);
        let c = OverlayDriver.validate(&req(&vni, Some(underlay(1500)))).unwrap();
        assert_eq!(OverlayDriver.segment(&c).unwrap().requested, Some(5000));
        for (k, v, want) in [
            (keys::VXLANID_LIST, "0", "between 1 and 16777215"),
            (keys::VXLANID_LIST, "x", "between 1 and 16777215"),
            (keys::ENCRYPTED, "", "cvwg0) is not running"),
            (keys::ENCRYPTED, "maybe", "without a value"),
            ("com.docker.network.bridge.name", "x", "unknown option"),
        ] {
            let o = BTreeMap::from([(k.to_string(), v.to_string())]);
            let e = OverlayDriver.validate(&req(&o, Some(underlay(1500)))).unwrap_err();
            assert!(e.message.contains(want), "{k}={v}: {}", e.message);
        }
        let e = OverlayDriver.validate(&req(&BTreeMap::new(), None)).unwrap_err();
        assert_eq!(e.kind, cove_model::ErrorKind::Unavailable);
        assert!(e.message.contains("--cluster-store"), "{}", e.message);
    }

    #[test]
    fn the_network_is_a_bridge_with_a_vxlan_port_that_neither_learns_nor_floods() {
        let ctx = PlanContext { firewall: true, firewall6: false, underlay: Some(underlay(1500)) };
        let got = render(&OverlayDriver.network_ops(&net(4097), &ctx).unwrap());
        assert!(
            got.starts_with("create bridge ov-0123456789ab mtu 1450 mac 02:42:01:23:45:67\n"),
            "{got}"
        );
        assert!(got.contains("add address 10.0.9.1/24 to ov-0123456789ab"), "{got}");
        let vx = got.lines().skip_while(|l| !l.contains("vx-0123456789ab")).collect::<Vec<_>>();
        assert!(vx[0].contains("4097") && vx[0].contains("203.0.113.11"), "{got}");
        assert!(vx.iter().any(|l| l.starts_with("set vx-0123456789ab up")), "{got}");
        // No cluster at plan time (a daemon restarted without one): a clear error.
        let alone = PlanContext { underlay: None, ..ctx };
        let e = OverlayDriver.network_ops(&net(4097), &alone).unwrap_err();
        assert!(
            e.message.contains("ov1") && e.message.contains("--cluster-advertise"),
            "{}",
            e.message
        );
        // A host whose underlay is too small for the network refuses it, naming both.
        let small = PlanContext { underlay: Some(underlay(1400)), ..ctx };
        let e = OverlayDriver.network_ops(&net(4097), &small).unwrap_err();
        assert!(e.message.contains("MTU 1450") && e.message.contains("1400"), "{}", e.message);
    }

    #[test]
    fn a_peer_is_a_forwarding_entry_to_its_host_and_a_neighbour_entry() {
        let ep = EndpointRecord {
            id: "e".repeat(64).parse().unwrap(),
            network_id: ID.parse().unwrap(),
            container_id: "c".repeat(64).parse().unwrap(),
            ifname: "eth0".into(),
            host_ifname: Some("cveeeeeeeeeeee".into()),
            mac: MacAddr([2, 0x42, 10, 0, 9, 2]),
            ipv4: Some("10.0.9.2/24".parse().unwrap()),
            ipv6: None,
            gateway4: Some("10.0.9.1".parse().unwrap()),
            gateway6: None,
            aliases: vec![],
        };
        let peer = Peer { endpoint: &ep, host: "203.0.113.12".parse().unwrap(), tunnel: None };
        let ops = OverlayDriver.peer_ops(&net(4097), peer).unwrap();
        assert_eq!(ops.len(), 3);
        assert!(
            matches!(&ops[0], Op::VxlanFdb { link, dst, .. } if link == "vx-0123456789ab" && dst.to_string() == "203.0.113.12")
        );
        assert!(matches!(&ops[1], Op::BridgeFdb { link, .. } if link == "vx-0123456789ab"));
        assert!(
            matches!(&ops[2], Op::Neighbor { link, addr, .. } if link == "vx-0123456789ab" && addr.to_string() == "10.0.9.2")
        );
    }

    fn encrypted_net(vni: u32) -> NetworkRecord {
        let opts = BTreeMap::from([(keys::ENCRYPTED.to_string(), String::new())]);
        let config = OverlayDriver.validate(&req(&opts, Some(tunnelled(1500)))).unwrap();
        NetworkRecord { config: OverlayDriver.with_segment(config, vni), options: opts, ..net(0) }
    }

    fn peer_ep() -> EndpointRecord {
        EndpointRecord {
            id: "e".repeat(64).parse().unwrap(),
            network_id: ID.parse().unwrap(),
            container_id: "c".repeat(64).parse().unwrap(),
            ifname: "eth0".into(),
            host_ifname: None,
            mac: MacAddr([2, 0x42, 10, 0, 9, 2]),
            ipv4: Some("10.0.9.2/24".parse().unwrap()),
            ipv6: None,
            gateway4: Some("10.0.9.1".parse().unwrap()),
            gateway6: None,
            aliases: vec![],
        }
    }

    #[test]
    fn an_encrypted_network_leaves_room_for_both_encapsulations() {
        let net = encrypted_net(4097);
        let DriverConfig::Overlay(o) = &net.config else { panic!() };
        assert!(o.encrypted && OverlayDriver.encrypted(&net.config));
        assert_eq!(o.bridge.mtu, 1370, "1500 - 50 (VXLAN) - 80 (WireGuard)");
        assert!(!OverlayDriver.encrypted(&self::net(4097).config));
        let off = BTreeMap::from([(keys::ENCRYPTED.to_string(), "false".to_string())]);
        let c = OverlayDriver.validate(&req(&off, Some(underlay(1500)))).unwrap();
        assert!(!OverlayDriver.encrypted(&c));
        let too_big = BTreeMap::from([
            (keys::ENCRYPTED.to_string(), String::new()),
            (keys::MTU.to_string(), "1450".to_string()),
        ]);
        let e = OverlayDriver.validate(&req(&too_big, Some(tunnelled(1500)))).unwrap_err();
        assert!(e.message.contains("encrypted overlay network's MTU can be at most 1370"), "{e}");
    }

    #[test]
    fn an_encrypted_network_sends_from_and_to_tunnel_addresses_only() {
        let ctx = PlanContext { firewall: true, firewall6: false, underlay: Some(tunnelled(1500)) };
        let net = encrypted_net(4097);
        let got = render(&OverlayDriver.network_ops(&net, &ctx).unwrap());
        let vx = got.lines().find(|l| l.starts_with("create vxlan")).unwrap();
        assert!(vx.contains("local 10.255.0.1") && vx.contains("mtu 1370"), "{vx}");
        assert!(!got.contains("203.0.113.11"), "no underlay address: {got}");

        // A peer with a tunnel: the entry names its tunnel address, never its host's.
        let ep = peer_ep();
        let peer = Peer {
            endpoint: &ep,
            host: "203.0.113.12".parse().unwrap(),
            tunnel: Some("10.255.0.2".parse().unwrap()),
        };
        let ops = OverlayDriver.peer_ops(&net, peer).unwrap();
        assert!(
            matches!(&ops[0], Op::VxlanFdb { dst, .. } if dst.to_string() == "10.255.0.2"),
            "{ops:?}"
        );
        // A peer without one is not programmed at all.
        let bare = Peer { tunnel: None, ..peer };
        assert_eq!(OverlayDriver.peer_ops(&net, bare).unwrap(), vec![]);
        // An unencrypted network still uses the host's underlay address.
        let ops = OverlayDriver.peer_ops(&self::net(4098), peer).unwrap();
        assert!(matches!(&ops[0], Op::VxlanFdb { dst, .. } if dst.to_string() == "203.0.113.12"));

        // A host without a tunnel cannot carry it: a refusal naming the device.
        let plain = PlanContext { underlay: Some(underlay(1500)), ..ctx };
        let e = OverlayDriver.network_ops(&net, &plain).unwrap_err();
        assert_eq!(e.kind, cove_model::ErrorKind::Unavailable);
        assert!(e.message.contains("ov1") && e.message.contains("cvwg0"), "{e}");
    }

    #[test]
    fn the_segment_is_the_vni() {
        assert_eq!(OverlayDriver.segment_of(&net(0)), None);
        assert_eq!(OverlayDriver.segment_of(&net(4097)), Some(4097));
        assert_eq!(OverlayDriver.segment(&net(0).config).unwrap().range, VNI_RANGE);
    }
}
