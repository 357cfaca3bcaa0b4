//! Reading the host namespace's objects back into a [`HostState`], for the diff against
//! what Cove wants (`cove_plan::diff`): links (every one, with kind, group, master, MTU,
//! state), the addresses and permanent neighbour entries of Cove's links, the sysctls asked
//! for, and Cove's `local ::1` routes.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::Handle;

use cove_model::MacAddr;
use cove_plan::{HostState, Link, LinkKind, OWNED_LINK_GROUP};

use crate::error::Cause;
use crate::nl;

/// The host namespace's objects as the kernel has them. Addresses, neighbours and routes
/// are read only for Cove's links (those in its group); sysctls only for `sysctl_keys`
/// (a `/proc/sys` read each).
pub(crate) async fn host_state(h: &Handle, sysctl_keys: &[String]) -> Result<HostState, Cause> {
    let mut s = HostState::default();
    let links = nl::links(h).await?;
    let names: HashMap<u32, &str> = links.iter().map(|l| (l.index, l.name.as_str())).collect();
    let mut ours: HashMap<u32, &str> = HashMap::new();
    for l in &links {
        let kind = match l.kind.as_deref() {
            // A bridge's MAC is not observed: the diff never re-creates a bridge that exists.
            Some("bridge") => LinkKind::Bridge { mac: MacAddr([0; 6]) },
            Some("veth") => LinkKind::Veth,
            other => LinkKind::Other(other.map(str::to_string)),
        };
        s.links.insert(
            l.name.clone(),
            Link {
                kind,
                mtu: l.mtu,
                up: l.up,
                master: l.master.and_then(|m| names.get(&m).map(|n| n.to_string())),
                group: l.group,
                hairpin: false,
            },
        );
        if l.group == OWNED_LINK_GROUP {
            ours.insert(l.index, l.name.as_str());
        }
    }
    for msg in nl::dump(h, RouteNetlinkMessage::GetAddress(AddressMessage::default())).await? {
        let RouteNetlinkMessage::NewAddress(a) = msg else { continue };
        let Some(link) = ours.get(&a.header.index) else { continue };
        let addr = a.attributes.iter().find_map(|at| match at {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        });
        // Link-local IPv6 addresses are the kernel's own, not Cove's.
        if let Some(ip) = addr.filter(|ip| !is_link_local(ip)) {
            if let Ok(net) = IpNet::new(ip, a.header.prefix_len) {
                s.addresses.insert((link.to_string(), net));
            }
        }
    }
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut req = NeighbourMessage::default();
        req.header.family = family;
        for msg in nl::dump(h, RouteNetlinkMessage::GetNeighbour(req)).await? {
            let RouteNetlinkMessage::NewNeighbour(n) = msg else { continue };
            if n.header.state != NeighbourState::Permanent {
                continue;
            }
            let Some(link) = ours.get(&n.header.ifindex) else { continue };
            let (mut addr, mut mac) = (None, None);
            for at in &n.attributes {
                match at {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => {
                        addr = Some(IpAddr::V4(*a))
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                        addr = Some(IpAddr::V6(*a))
                    }
                    NeighbourAttribute::LinkLayerAddress(m) if m.len() == 6 => {
                        let mut b = [0u8; 6];
                        b.copy_from_slice(m);
                        mac = Some(MacAddr(b));
                    }
                    _ => {}
                }
            }
            if let (Some(addr), Some(mac)) = (addr, mac) {
                s.neighbours.insert((link.to_string(), addr), mac);
            }
        }
    }
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet6;
    req.header.table = 255; // RT_TABLE_LOCAL
    for msg in nl::dump(h, RouteNetlinkMessage::GetRoute(req)).await? {
        let RouteNetlinkMessage::NewRoute(r) = msg else { continue };
        if r.header.kind != RouteType::Local || r.header.destination_prefix_length != 128 {
            continue;
        }
        let oif = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        let loopback = r.attributes.iter().any(|a| {
            matches!(a, RouteAttribute::Destination(d)
                if nl::route_ip(d) == Some(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)))
        });
        if let (true, Some(link)) = (loopback, oif.and_then(|i| ours.get(&i))) {
            s.loopback6.insert(link.to_string());
        }
    }
    for key in sysctl_keys {
        if let Ok(v) = crate::read_sysctl(key) {
            s.sysctls.insert(key.clone(), v);
        }
    }
    Ok(s)
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}
