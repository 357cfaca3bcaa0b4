//! Network and endpoint records: what the controller stores and drivers plan from.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The built-in network drivers. A closed set: dispatch is a `match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    /// A Linux bridge with a veth pair per endpoint.
    Bridge,
    /// The host's own network stack (no sandbox of its own).
    Host,
    /// Only a loopback interface.
    Null,
}

impl DriverKind {
    /// Parse a driver name as Docker spells it.
    pub fn parse(name: &str) -> crate::Result<Self> {
        match name {
            "" | "bridge" => Ok(Self::Bridge),
            "host" => Ok(Self::Host),
            "null" => Ok(Self::Null),
            // dockerd answers 404 for a driver no plugin provides.
            other => Err(crate::Error::not_found(format!(
                "plugin \"{other}\" not found: unknown network driver (supported: bridge, host, null)"
            ))),
        }
    }
    /// The name Docker uses for the driver.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Host => "host",
            Self::Null => "null",
        }
    }
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
pub struct NetworkRecord {
    /// 64-hex id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Driver.
    pub driver: DriverKind,
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
    /// Typed bridge options, for bridge networks.
    pub bridge: Option<BridgeOptions>,
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
    pub id: String,
    /// Network this endpoint belongs to.
    pub network_id: String,
    /// Container whose sandbox joined it.
    pub container_id: String,
    /// Interface name inside the sandbox (`eth0`, `eth1`, ...).
    pub ifname: String,
    /// Host-side interface name (unique, never reused), empty for non-bridge drivers.
    pub host_ifname: String,
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
    fn driver_names() {
        assert_eq!(DriverKind::parse("").unwrap(), DriverKind::Bridge);
        assert_eq!(DriverKind::parse("null").unwrap().as_str(), "null");
        let e = DriverKind::parse("../../bin/sh").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::NotFound);
    }
}
