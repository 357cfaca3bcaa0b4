//! Reading the host namespace's objects back into a [`HostState`], for the diff against
//! what Cove wants (`cove_plan::diff`): links (every one, with kind, group, master, MTU,
//! state; a VXLAN device's attributes), the addresses, permanent neighbour entries and
//! bridge-port flags of Cove's links, the forwarding entries of Cove's VXLAN devices, the
//! sysctls asked for, and Cove's `local ::1` routes.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use cove_model::MacAddr;
use cove_plan::{HostState, Link, LinkKind, OWNED_LINK_GROUP};

use crate::dumper::Dumper;
use crate::entries::Entries;
use crate::error::Cause;
use crate::{nl, vxlan};

/// The host namespace's objects as the kernel has them. Addresses, neighbours, port flags
/// and routes are read only for Cove's links (those in its group), forwarding entries only
/// for Cove's VXLAN devices (one dump each, filtered by the kernel); sysctls only for
/// `sysctl_keys` (a `/proc/sys` read each).
pub(crate) async fn host_state(
    h: &Dumper,
    entries: &Entries,
    sysctl_keys: &[String],
) -> Result<HostState, Cause> {
    let mut s = HostState::default();
    let links = h
        .link_dump(|msg| (nl::link_info(msg), vxlan::vxlan_of(msg), vxlan::port_flags_of(msg)))
        .await?;
    let names: HashMap<u32, &str> =
        links.iter().map(|(l, _, _)| (l.index, l.name.as_str())).collect();
    let mut ours: HashMap<u32, &str> = HashMap::new();
    let mut our_vxlans = vec![];
    for (l, vx, flags) in &links {
        let kind = match (l.kind.as_deref(), *vx) {
            // A bridge's MAC is not observed: the diff never re-creates a bridge that exists.
            (Some("bridge"), _) => LinkKind::Bridge { mac: MacAddr([0; 6]) },
            (Some("veth"), _) => LinkKind::Veth,
            (Some("vxlan"), Some(v)) => LinkKind::Vxlan(v),
            (Some("macvlan"), _) => LinkKind::Macvlan(None),
            (other, _) => LinkKind::Other(other.map(str::to_string)),
        };
        if l.group == OWNED_LINK_GROUP {
            ours.insert(l.index, l.name.as_str());
            if let Some(f) = flags {
                s.port_flags.insert(l.name.clone(), *f);
            }
            if matches!(kind, LinkKind::Vxlan(_)) {
                our_vxlans.push((l.index, l.name.as_str()));
            }
        }
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
    }
    for (index, name) in our_vxlans {
        for n in entries.fdb(index).await? {
            fdb_entry(&mut s, name, &n);
        }
    }
    for msg in h.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()), Some).await? {
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
        for msg in h.dump(RouteNetlinkMessage::GetNeighbour(req), Some).await? {
            let RouteNetlinkMessage::NewNeighbour(n) = msg else { continue };
            if n.header.state != NeighbourState::Permanent {
                continue;
            }
            let Some(link) = ours.get(&n.header.ifindex) else { continue };
            let (addr, mac) = (destination(&n), lladdr(&n));
            if let (Some(addr), Some(mac)) = (addr, mac) {
                s.neighbours.insert((link.to_string(), addr), mac);
            }
        }
    }
    let mut req = RouteMessage::default();
    req.header.address_family = AddressFamily::Inet6;
    req.header.table = 255; // RT_TABLE_LOCAL
    for msg in h.dump(RouteNetlinkMessage::GetRoute(req), Some).await? {
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

/// Fold one forwarding entry of Cove's VXLAN device `link` into the state: its own
/// `permanent` entries with a destination (`fdb_self`, the kernel's default entry
/// included), and its bridge's `static` entries for it without a VLAN (`fdb_master`).
/// The bridge's local (permanent) and learned entries are the kernel's: not reported.
fn fdb_entry(s: &mut HostState, link: &str, n: &NeighbourMessage) {
    let Some(mac) = lladdr(n) else { return };
    // The bridge's entries carry NDA_MASTER (their flags do not say NTF_MASTER).
    let master = n.header.flags.contains(NeighbourFlags::Controller)
        || n.attributes.iter().any(|a| matches!(a, NeighbourAttribute::Controller(_)));
    let vlan = n.attributes.iter().any(|a| matches!(a, NeighbourAttribute::Vlan(v) if *v != 0));
    // States are bit sets here: `bridge fdb add ... permanent` writes PERMANENT|NOARP.
    let state = u16::from(n.header.state);
    let permanent = state & NUD_PERMANENT != 0;
    if master {
        if state & NUD_NOARP != 0 && !permanent && !vlan {
            s.fdb_master.insert((link.to_string(), mac));
        }
    } else if permanent {
        if let Some(dst) = destination(n) {
            s.fdb_self.insert((link.to_string(), mac), dst);
        }
    }
}

const NUD_NOARP: u16 = 0x40;
const NUD_PERMANENT: u16 = 0x80;

/// `NDA_DST`: an IP neighbour's address, or a VXLAN entry's remote (in an `AF_BRIDGE`
/// message, where the parser leaves it raw: 4 or 16 bytes).
fn destination(n: &NeighbourMessage) -> Option<IpAddr> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
            match <[u8; 4]>::try_from(b.as_slice()) {
                Ok(v4) => Some(IpAddr::from(v4)),
                Err(_) => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
            }
        }
        _ => None,
    })
}

fn lladdr(n: &NeighbourMessage) -> Option<MacAddr> {
    n.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(m) if m.len() == 6 => {
            let mut b = [0u8; 6];
            b.copy_from_slice(m);
            Some(MacAddr(b))
        }
        _ => None,
    })
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entries::fdb_message;

    const MAC: MacAddr = MacAddr([2, 0x42, 10, 0, 9, 3]);

    fn entry(table: NeighbourFlags, state: u16, dst: Option<IpAddr>) -> NeighbourMessage {
        let mut n = fdb_message(3, MAC, table, None);
        n.header.state = NeighbourState::from(state);
        if let Some(dst) = dst {
            // As the kernel sends it in an AF_BRIDGE message: raw bytes.
            let raw = match dst {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            n.attributes.push(NeighbourAttribute::Destination(NeighbourAddress::Other(raw)));
        }
        if table.contains(NeighbourFlags::Controller) {
            // The bridge says "master" with NDA_MASTER, not in the flags.
            n.header.flags = NeighbourFlags::empty();
            n.attributes.push(NeighbourAttribute::Controller(2));
        }
        n
    }

    #[test]
    fn forwarding_entries_are_read_by_their_state_bits() {
        let mut s = HostState::default();
        let v4: IpAddr = "203.0.113.12".parse().unwrap();
        let v6: IpAddr = "2001:db8::12".parse().unwrap();
        // Cove's VXLAN entry (PERMANENT), and one `bridge fdb add ... permanent` made
        // (PERMANENT|NOARP): both the device's own.
        fdb_entry(&mut s, "vx", &entry(NeighbourFlags::Own, NUD_PERMANENT, Some(v6)));
        assert_eq!(s.fdb_self.get(&("vx".to_string(), MAC)), Some(&v6));
        fdb_entry(&mut s, "vx", &entry(NeighbourFlags::Own, NUD_PERMANENT | NUD_NOARP, Some(v4)));
        assert_eq!(s.fdb_self.get(&("vx".to_string(), MAC)), Some(&v4));
        // A learned VXLAN entry is the kernel's.
        let mut learned = HostState::default();
        fdb_entry(&mut learned, "vx", &entry(NeighbourFlags::Own, 0x02, Some(v4)));
        assert!(learned.fdb_self.is_empty());

        // The bridge's: static (NOARP) is Cove's kind; local (PERMANENT) and learned
        // (REACHABLE) are the kernel's; a VLAN entry is not Cove's.
        let mut b = HostState::default();
        for state in [NUD_PERMANENT, 0x02, 0x04] {
            fdb_entry(&mut b, "vx", &entry(NeighbourFlags::Controller, state, None));
        }
        assert!(b.fdb_master.is_empty());
        let mut vlan = entry(NeighbourFlags::Controller, NUD_NOARP, None);
        vlan.attributes.push(NeighbourAttribute::Vlan(10));
        fdb_entry(&mut b, "vx", &vlan);
        assert!(b.fdb_master.is_empty());
        fdb_entry(&mut b, "vx", &entry(NeighbourFlags::Controller, NUD_NOARP, None));
        assert!(b.fdb_master.contains(&("vx".to_string(), MAC)));
        assert!(b.fdb_self.is_empty());
    }
}
