//! Network and endpoint records: what the controller stores and drivers plan from.

use crate::{ContainerId, EndpointId, NetworkId};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Docker's name of the default network (a bridge network created by the daemon).
pub const DEFAULT_NETWORK: &str = "bridge";

/// A network driver's typed configuration, parsed once from the user's `-o` options by the
/// driver at network create. One variant per driver Cove hosts; what each means is the
/// driver's business (`cove-drivers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "options")]
pub enum DriverConfig {
    /// A Linux bridge with a veth pair per endpoint.
    Bridge(BridgeOptions),
    /// The host's own network stack.
    Host,
    /// A sandbox with only loopback.
    Null,
    /// A network spanning the hosts of a cluster: on each host a bridge with the same
    /// gateway address and MAC, and a VXLAN device to the other hosts.
    Overlay(OverlayOptions),
}

/// An overlay network's configuration, the same on every host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayOptions {
    /// The bridge side: its name (`ov-<id12>`), MTU, icc, masquerade.
    pub bridge: BridgeOptions,
    /// The VXLAN device's name (`vx-<id12>`).
    pub vxlan: String,
    /// The VXLAN network identifier, unique in the cluster; 0 until the cluster assigns
    /// one.
    pub vni: u32,
    /// `--opt encrypted`: between hosts the network's VXLAN rides the nodes' WireGuard
    /// tunnel (tunnel addresses only, never the underlay's), guarded by the firewall.
    /// Absent in records written before encryption existed: not encrypted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
}

/// One IPAM pool of a network, fully resolved (subnet and gateway are concrete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamPool {
    /// The subnet, host bits zero.
    pub subnet: IpNet,
    /// The sub-range dynamic addresses come from (`--ip-range`).
    pub ip_range: Option<IpNet>,
    /// The gateway address (on the bridge for the bridge driver).
    pub gateway: Option<IpAddr>,
    /// Addresses reserved by name (`--aux-address name=ip`).
    pub aux_addresses: BTreeMap<String, IpAddr>,
}

/// Typed bridge-driver options, parsed once from `-o` options at network create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeOptions {
    /// Bridge device name (at most 15 bytes).
    pub name: String,
    /// Inter-container communication on this network.
    pub enable_icc: bool,
    /// Masquerade outbound traffic.
    pub enable_ip_masquerade: bool,
    /// Default host address for published ports.
    pub host_binding_ipv4: Option<IpAddr>,
    /// MTU of the bridge and of every veth on it.
    pub mtu: u32,
}

/// A network, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "legacy::NetworkRecordWire")]
pub struct NetworkRecord {
    /// 64-hex id.
    pub id: NetworkId,
    /// Unique name.
    pub name: String,
    /// Driver name, as Docker spells it (`bridge`, `host`, `null`).
    pub driver: String,
    /// Creation time, RFC 3339 with nanoseconds (Docker's `Created`).
    pub created: String,
    /// Whether IPv6 is enabled.
    pub enable_ipv6: bool,
    /// No outside connectivity.
    pub internal: bool,
    /// Manual attachment allowed (meaningful for swarm networks; recorded for parity).
    pub attachable: bool,
    /// IPAM driver name (`default`).
    pub ipam_driver: String,
    /// IPAM driver options, as given.
    pub ipam_options: BTreeMap<String, String>,
    /// Resolved pools, IPv4 first.
    pub ipam: Vec<IpamPool>,
    /// Driver options as the user gave them (shown by inspect).
    pub options: BTreeMap<String, String>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// The driver's typed configuration.
    pub config: DriverConfig,
    /// Built-in networks (`bridge`, `host`, `none`) cannot be removed.
    pub builtin: bool,
}

impl NetworkRecord {
    /// The IPv4 pool, if any.
    pub fn pool_v4(&self) -> Option<&IpamPool> {
        self.ipam.iter().find(|p| matches!(p.subnet, IpNet::V4(_)))
    }
    /// The IPv6 pool, if any.
    pub fn pool_v6(&self) -> Option<&IpamPool> {
        self.ipam.iter().find(|p| matches!(p.subnet, IpNet::V6(_)))
    }
}

/// An endpoint: one network attachment of one container's sandbox, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// 64-hex id.
    pub id: EndpointId,
    /// Network this endpoint belongs to.
    pub network_id: NetworkId,
    /// Container whose sandbox joined it.
    pub container_id: ContainerId,
    /// Interface name inside the sandbox (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// The endpoint's interface on the host side (unique, never reused), for drivers that
    /// keep one (a veth end on a bridge).
    #[serde(deserialize_with = "legacy::empty_is_none", default)]
    pub host_ifname: Option<String>,
    /// MAC address of the sandbox interface.
    pub mac: MacAddr,
    /// IPv4 address with the subnet's prefix length.
    pub ipv4: Option<Ipv4Net>,
    /// IPv6 address with the subnet's prefix length.
    pub ipv6: Option<Ipv6Net>,
    /// IPv4 gateway.
    pub gateway4: Option<Ipv4Addr>,
    /// IPv6 gateway.
    pub gateway6: Option<Ipv6Addr>,
    /// DNS aliases on this network.
    pub aliases: Vec<String>,
}

/// A 48-bit MAC address, printed as `02:42:ac:11:00:02`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Docker's derived MAC: `02:42` followed by the four IPv4 octets.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        let o = ip.octets();
        Self([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }
    /// A random locally administered unicast MAC.
    pub fn random() -> Self {
        let mut b: [u8; 6] = rand::random();
        b[0] = (b[0] & 0xfe) | 0x02;
        Self(b)
    }
    /// Parse `aa:bb:cc:dd:ee:ff`; refuses multicast and all-zero addresses.
    pub fn parse(s: &str) -> crate::Result<Self> {
        let bad = || crate::Error::invalid(format!("invalid MAC address \"{s}\""));
        let parts: Vec<&str> = s.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(bad());
            }
            b[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if b[0] & 1 == 1 {
            return Err(crate::Error::invalid(format!(
                "invalid MAC address \"{s}\": multicast addresses cannot be assigned to an interface"
            )));
        }
        if b == [0; 6] {
            return Err(crate::Error::invalid(format!("invalid MAC address \"{s}\": all zero")));
        }
        Ok(Self(b))
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Records written before the driver seam: `bridge: Option<BridgeOptions>` beside the
/// driver's name instead of a [`DriverConfig`], and `""` for "no host interface".
mod legacy {
    use super::*;

    #[derive(Deserialize)]
    pub(super) struct NetworkRecordWire {
        id: NetworkId,
        name: String,
        driver: String,
        created: String,
        enable_ipv6: bool,
        internal: bool,
        attachable: bool,
        ipam_driver: String,
        ipam_options: BTreeMap<String, String>,
        ipam: Vec<IpamPool>,
        options: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
        #[serde(default)]
        config: Option<DriverConfig>,
        #[serde(default)]
        bridge: Option<BridgeOptions>,
        builtin: bool,
    }

    impl From<NetworkRecordWire> for NetworkRecord {
        fn from(w: NetworkRecordWire) -> Self {
            let config = match (w.config, w.bridge) {
                (Some(c), _) => c,
                (None, Some(b)) => DriverConfig::Bridge(b),
                (None, None) if w.driver == "host" => DriverConfig::Host,
                (None, None) => DriverConfig::Null,
            };
            NetworkRecord {
                id: w.id,
                name: w.name,
                driver: w.driver,
                created: w.created,
                enable_ipv6: w.enable_ipv6,
                internal: w.internal,
                attachable: w.attachable,
                ipam_driver: w.ipam_driver,
                ipam_options: w.ipam_options,
                ipam: w.ipam,
                options: w.options,
                labels: w.labels,
                config,
                builtin: w.builtin,
            }
        }
    }

    pub(super) fn empty_is_none<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<String>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_from_ipv4_matches_docker() {
        let m = MacAddr::from_ipv4("172.17.0.2".parse().unwrap());
        assert_eq!(m.to_string(), "02:42:ac:11:00:02");
        assert_eq!(MacAddr::parse("02:42:ac:11:00:02").unwrap(), m);
    }

    #[test]
    fn mac_parse_rejects_bad_input() {
        for bad in
            ["", "zz:42:ac:11:00:02", "01:00:5e:00:00:01", "00:00:00:00:00:00", "02:42:ac:11:00"]
        {
            assert!(MacAddr::parse(bad).is_err(), "{bad}");
        }
        assert!(MacAddr::random().0[0] & 0x03 == 0x02);
    }

    #[test]
    fn records_of_the_bridge_shaped_layout_still_load() {
        let old = r#"{"id":"1111111111111111111111111111111111111111111111111111111111111111","name":"app","driver":"bridge","created":"",
            "enable_ipv6":false,"internal":false,"attachable":false,"ipam_driver":"default",
            "ipam_options":{},"ipam":[],"options":{},"labels":{},
            "bridge":{"name":"br-n1","enable_icc":true,"enable_ip_masquerade":true,
                      "host_binding_ipv4":null,"mtu":1500},"builtin":false}"#;
        let n: NetworkRecord = serde_json::from_str(old).unwrap();
        assert!(matches!(&n.config, DriverConfig::Bridge(b) if b.name == "br-n1"));
        // Written back in the new shape, and read again the same.
        let again: NetworkRecord =
            serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        assert_eq!(again, n);
        let host = old.replace(r#""driver":"bridge""#, r#""driver":"host""#);
        let host = host.split(r#""bridge":{"#).next().unwrap().to_string() + r#""builtin":true}"#;
        let n: NetworkRecord = serde_json::from_str(&host).unwrap();
        assert_eq!(n.config, DriverConfig::Host);
    }

    #[test]
    fn a_record_with_a_malformed_id_is_refused_naming_it() {
        let e = serde_json::from_str::<ContainerId>(r#""c1""#).unwrap_err();
        assert!(e.to_string().contains(r#"invalid container id "c1""#), "{e}");
        assert!(NetworkId::parse(&"A".repeat(64)).is_err(), "uppercase is not Docker's");
        assert!(NetworkId::parse(&"a".repeat(63)).is_err());
        let id = NetworkId::random();
        assert_eq!(NetworkId::parse(id.as_str()).unwrap(), id);
        assert_eq!(id.short().len(), 12);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""), "stored as a plain string");
    }

    #[test]
    fn an_empty_host_ifname_is_none() {
        let ep = r#"{"id":"eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
            "network_id":"dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd",
            "container_id":"cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc","ifname":"eth0",
            "host_ifname":"","mac":"02:42:ac:11:00:02","ipv4":null,"ipv6":null,
            "gateway4":null,"gateway6":null,"aliases":[]}"#;
        let e: EndpointRecord = serde_json::from_str(ep).unwrap();
        assert_eq!(e.host_ifname, None);
        let e: EndpointRecord =
            serde_json::from_str(&ep.replace(r#""host_ifname":"""#, r#""host_ifname":"cv1""#))
                .unwrap();
        assert_eq!(e.host_ifname.as_deref(), Some("cv1"));
    }
}
