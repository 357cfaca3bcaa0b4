//! The requests for an overlay network's VXLAN device and its bridge port, and reading
//! their attributes back from a link dump.

use std::net::IpAddr;

use netlink_packet_core::{DefaultNla, Nla};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoPortData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage,
    LinkProtoInfoBridge,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::LinkVxlan;

use cove_drivers::plan::{PortFlags, Vxlan};

/// Everything [`cove_drivers::plan::Op::CreateVxlan`] asks for, in one `RTM_NEWLINK`:
/// the VXLAN attributes (no `GROUP`/`REMOTE`: no default destination), MTU, group and
/// master. The kernel leaves it down.
pub(crate) struct VxlanRequest<'a> {
    pub(crate) name: &'a str,
    pub(crate) group: u32,
    pub(crate) vni: u32,
    pub(crate) local: IpAddr,
    pub(crate) port: u16,
    pub(crate) mtu: u32,
    pub(crate) master: u32,
}

impl VxlanRequest<'_> {
    /// The create message.
    pub(crate) fn message(&self) -> LinkMessage {
        let b = LinkVxlan::new(self.name, self.vni).mtu(self.mtu).controller(self.master);
        let b = match self.local {
            IpAddr::V4(a) => b.local(a),
            IpAddr::V6(a) => b.local6(a),
        };
        // `port` is written in network byte order by the attribute's encoder.
        let mut msg =
            b.port(self.port).learning(false).proxy(true).l2miss(false).l3miss(false).build();
        msg.attributes.push(LinkAttribute::Group(self.group));
        msg
    }
}

/// `bridge link set dev <port> ...`: `RTM_SETLINK` of family `AF_BRIDGE` for port `index`
/// with the flags as `IFLA_BRPORT_*` in a nested `IFLA_PROTINFO` (the bridge finds the port
/// by index only).
pub(crate) fn port_flags_message(index: u32, flags: &PortFlags) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.interface_family = AddressFamily::Bridge;
    m.header.index = index;
    let attrs = [
        InfoBridgePort::Learning(flags.learning),
        InfoBridgePort::UnicastFlood(flags.unicast_flood),
        InfoBridgePort::MulticastFlood(flags.mcast_flood),
        InfoBridgePort::BroadcastFlood(flags.bcast_flood),
        InfoBridgePort::NeighSupress(flags.neigh_suppress),
    ];
    // The same attributes as the port's link-info data; IFLA_PROTINFO's type in this crate
    // only names one of them, so they travel as raw attributes.
    let nlas = attrs
        .iter()
        .map(|a| {
            let mut value = vec![0; a.value_len()];
            a.emit_value(&mut value);
            LinkProtoInfoBridge::Other(DefaultNla::new(a.kind(), value))
        })
        .collect();
    m.attributes.push(LinkAttribute::ProtoInfoBridge(nlas));
    m
}

/// The VXLAN attributes of a link, if it is a VXLAN device.
pub(crate) fn vxlan_of(l: &LinkMessage) -> Option<Vxlan> {
    let data = link_infos(l).find_map(|i| match i {
        LinkInfo::Data(InfoData::Vxlan(v)) => Some(v),
        _ => None,
    })?;
    let mut v = Vxlan {
        vni: 0,
        local: None,
        port: 0,
        learning: false,
        proxy: false,
        l2miss: false,
        l3miss: false,
        remote: None,
    };
    for a in data {
        match a {
            InfoVxlan::Id(id) => v.vni = *id,
            InfoVxlan::Local(a) => v.local = Some(IpAddr::V4(*a)),
            InfoVxlan::Local6(a) => v.local = Some(IpAddr::V6(*a)),
            InfoVxlan::Group(a) => v.remote = Some(IpAddr::V4(*a)),
            InfoVxlan::Group6(a) => v.remote = Some(IpAddr::V6(*a)),
            InfoVxlan::Port(p) => v.port = *p,
            InfoVxlan::Learning(b) => v.learning = *b,
            InfoVxlan::Proxy(b) => v.proxy = *b,
            InfoVxlan::L2Miss(b) => v.l2miss = *b,
            InfoVxlan::L3Miss(b) => v.l3miss = *b,
            _ => {}
        }
    }
    Some(v)
}

/// The bridge-port flags of a link, if it is a bridge port (from the link dump's
/// `IFLA_INFO_SLAVE_DATA`).
pub(crate) fn port_flags_of(l: &LinkMessage) -> Option<PortFlags> {
    let data = link_infos(l).find_map(|i| match i {
        LinkInfo::PortData(InfoPortData::BridgePort(p)) => Some(p),
        _ => None,
    })?;
    let mut f = PortFlags::DEFAULT;
    for a in data {
        match a {
            InfoBridgePort::Learning(b) => f.learning = *b,
            InfoBridgePort::UnicastFlood(b) => f.unicast_flood = *b,
            InfoBridgePort::MulticastFlood(b) => f.mcast_flood = *b,
            InfoBridgePort::BroadcastFlood(b) => f.bcast_flood = *b,
            InfoBridgePort::NeighSupress(b) => f.neigh_suppress = *b,
            _ => {}
        }
    }
    Some(f)
}

fn link_infos(l: &LinkMessage) -> impl Iterator<Item = &LinkInfo> {
    l.attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos),
            _ => None,
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::Emitable;
    use netlink_packet_route::link::{InfoKind, InfoPortKind};

    #[test]
    fn create_request_has_every_attribute_and_no_default_destination() {
        let req = VxlanRequest {
            name: "vx-a",
            group: 7,
            vni: 4097,
            local: "203.0.113.11".parse().unwrap(),
            port: 4789,
            mtu: 1450,
            master: 3,
        };
        let m = req.message();
        assert!(m.attributes.contains(&LinkAttribute::Group(7)));
        assert!(m.attributes.contains(&LinkAttribute::Mtu(1450)));
        assert!(m.attributes.contains(&LinkAttribute::Controller(3)));
        let v = vxlan_of(&m).unwrap();
        assert_eq!(v, Vxlan::overlay(4097, "203.0.113.11".parse().unwrap(), 4789));
        assert!(link_infos(&m).any(|i| *i == LinkInfo::Kind(InfoKind::Vxlan)));
        // The port goes out big-endian: 4789 = 0x12b5.
        let mut buf = vec![0; InfoVxlan::Port(4789).value_len()];
        InfoVxlan::Port(4789).emit_value(&mut buf);
        assert_eq!(buf, [0x12, 0xb5]);
        let ipv6 = VxlanRequest { local: "2001:db8::11".parse().unwrap(), ..req };
        assert_eq!(vxlan_of(&ipv6.message()).unwrap().local, Some("2001:db8::11".parse().unwrap()));
    }

    #[test]
    fn port_flags_are_nested_brport_attributes_and_read_back() {
        let m = port_flags_message(9, &PortFlags::OVERLAY_VXLAN);
        assert_eq!(m.header.interface_family, AddressFamily::Bridge);
        assert_eq!(m.header.index, 9);
        let mut buf = vec![0; m.buffer_len()];
        m.emit(&mut buf);
        // ifinfomsg (16 bytes), then IFLA_PROTINFO (12) with NLA_F_NESTED.
        assert_eq!(u16::from_ne_bytes([buf[18], buf[19]]), 12 | 0x8000);
        // Five one-byte attributes, 8 bytes each with padding.
        assert_eq!(u16::from_ne_bytes([buf[16], buf[17]]), 4 + 5 * 8);
        // IFLA_BRPORT_LEARNING (8) = 0, IFLA_BRPORT_UNICAST_FLOOD (9) = 0.
        assert_eq!(&buf[20..25], &[5, 0, 8, 0, 0]);
        assert_eq!(&buf[28..33], &[5, 0, 9, 0, 0]);

        let mut port = LinkMessage::default();
        port.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::Learning(false),
                InfoBridgePort::UnicastFlood(false),
            ])),
        ]));
        assert_eq!(port_flags_of(&port), Some(PortFlags::OVERLAY_VXLAN));
        assert_eq!(port_flags_of(&LinkMessage::default()), None);
    }
}
