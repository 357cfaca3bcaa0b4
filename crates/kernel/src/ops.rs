//! Executing one [`Op`] against the kernel.

use std::net::IpAddr;
use std::os::fd::AsRawFd;

use cove_drivers::plan::{Netns, Op, RETIRED_LINK_GROUP};
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::RouteScope;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{
    AddressMessageBuilder, Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use crate::error::Cause;
use crate::handles::Handles;
use crate::vxlan::{port_flags_message, VxlanRequest};
use crate::{netns, nl};

/// What executing an op did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The kernel changed.
    Changed,
    /// The desired object was already there (EEXIST of an identical address or route).
    Unchanged,
}

const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;

/// Execute `op`.
pub(crate) async fn exec(hs: &Handles, op: &Op) -> Result<Outcome, Cause> {
    match op {
        Op::CreateBridge { name, mtu, mac, group } => {
            let mut msg = LinkMessageBuilder::<LinkBridge>::new(name)
                .mtu(*mtu)
                .address(mac.0.to_vec())
                .build();
            msg.attributes.push(LinkAttribute::Group(*group));
            nl::ack(hs.host(), RouteNetlinkMessage::NewLink(msg), CREATE).await?;
        }
        Op::CreateVeth { host_name, group, bridge, mtu, peer_name, peer_netns, peer_mac } => {
            let master = nl::link_index(hs.host(), bridge).await?;
            let ns = netns::open(peer_netns, hs.nsfs_dev())?;
            // No .up() on the peer: the kernel refuses IFF_UP on a peer in another netns.
            let peer = LinkUnspec::new_with_name(peer_name)
                .mtu(*mtu)
                .address(peer_mac.0.to_vec())
                .setns_by_fd(ns.as_raw_fd())
                .build();
            let mut msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
                .name(host_name.clone())
                .mtu(*mtu)
                .controller(master)
                .up()
                .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                .build();
            msg.attributes.push(LinkAttribute::Group(*group));
            // A task owns the fd until the kernel has answered, even if our caller gives up
            // (drops this future) first: a closed and reused fd number would put the peer
            // into whatever namespace the new fd refers to.
            let host = hs.host().clone();
            tokio::spawn(async move {
                let res = nl::ack(&host, RouteNetlinkMessage::NewLink(msg), CREATE).await;
                drop(ns);
                res
            })
            .await
            .map_err(|e| Cause::Protocol(format!("veth request task failed: {e}")))??;
        }
        Op::Hairpin { link } => {
            // sysfs of the daemon's own namespace; one small write, no netlink attribute
            // juggling (IFLA_PROTINFO) needed.
            let path = format!("/sys/class/net/{link}/brport/hairpin_mode");
            std::fs::write(&path, "1").map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Cause::NoSuchLink(link.clone())
                } else {
                    Cause::from(e)
                }
            })?;
        }
        Op::AddAddress { netns, link, addr } => {
            let h = hs.get(netns).await?;
            let index = nl::link_index(&h, link).await?;
            let msg = RouteNetlinkMessage::NewAddress(address_message(index, *addr));
            match nl::ack(&h, msg, CREATE).await {
                Err(c)
                    if c.errno() == Some(libc::EEXIST)
                        && nl::has_address(&h, index, *addr).await? =>
                {
                    return Ok(Outcome::Unchanged);
                }
                res => res?,
            }
        }
        Op::SetUp { netns, link } => {
            let h = hs.get(netns).await?;
            set_up(&h, link).await?;
        }
        Op::Retire { netns, link, tombstone } => {
            let h = hs.get(netns).await?;
            let index = nl::link_index(&h, link).await.map_err(|c| no_link(c, link))?;
            let down: LinkMessage = LinkUnspec::new_with_index(index).down().build();
            nl::ack(&h, RouteNetlinkMessage::SetLink(down), 0).await?;
            let rename: LinkMessage =
                LinkUnspec::new_with_index(index).name(tombstone.clone()).build();
            nl::ack(&h, RouteNetlinkMessage::SetLink(rename), 0).await?;
        }
        Op::Condemn { link } => {
            // The group alone: no notifier chain runs (see `Op::Condemn`).
            let mut msg: LinkMessage = LinkUnspec::new_with_name(link).build();
            msg.attributes.push(LinkAttribute::Group(RETIRED_LINK_GROUP));
            nl::ack(hs.host(), RouteNetlinkMessage::SetLink(msg), 0)
                .await
                .map_err(|c| no_link(c, link))?;
            hs.reaper().notify();
        }
        Op::SetMaster { link, master } => {
            let m = nl::link_index(hs.host(), master).await?;
            let msg: LinkMessage = LinkUnspec::new_with_name(link).controller(m).build();
            nl::ack(hs.host(), RouteNetlinkMessage::SetLink(msg), 0)
                .await
                .map_err(|c| no_link(c, link))?;
        }
        Op::SetMtu { netns, link, mtu } => {
            let h = hs.get(netns).await?;
            let msg: LinkMessage = LinkUnspec::new_with_name(link).mtu(*mtu).build();
            nl::ack(&h, RouteNetlinkMessage::SetLink(msg), 0)
                .await
                .map_err(|c| no_link(c, link))?;
        }
        Op::AddRoute { netns, dst, gateway, link } => {
            let h = hs.get(netns).await?;
            let oif = nl::link_index(&h, link).await?;
            let msg = route_message(*dst, *gateway, oif)?;
            match nl::ack(&h, RouteNetlinkMessage::NewRoute(msg), CREATE).await {
                Err(c)
                    if c.errno() == Some(libc::EEXIST)
                        && nl::has_route(&h, *dst, *gateway, oif).await? =>
                {
                    return Ok(Outcome::Unchanged);
                }
                res => res?,
            }
        }
        Op::LoopbackRoute6 { link } => {
            let h = hs.get(&Netns::Host).await?;
            let oif = nl::link_index(&h, link).await?;
            let msg = loopback_route6(oif);
            match nl::ack(&h, RouteNetlinkMessage::NewRoute(msg), CREATE).await {
                Err(c) if c.errno() == Some(libc::EEXIST) => return Ok(Outcome::Unchanged),
                res => res?,
            }
        }
        Op::BlackholeRoute { dst, metric } => {
            let msg = blackhole_route(*dst, *metric)?;
            nl::ack(hs.host(), RouteNetlinkMessage::NewRoute(msg), NLM_F_CREATE | NLM_F_REPLACE)
                .await?;
        }
        Op::Sysctl { netns: Netns::Host, key, value } => netns::write_sysctl(key, value)?,
        Op::Sysctl { netns: Netns::Path(path), key, value } => {
            let (path, key, value, dev) = (path.clone(), key.clone(), value.clone(), hs.nsfs_dev());
            netns::on_thread(move || {
                netns::enter(&path, dev)?;
                netns::write_sysctl_own_proc(&key, &value)
            })
            .await?;
        }
        Op::DeleteLink { netns, name } => {
            let h = hs.get(netns).await?;
            let msg = LinkUnspec::new_with_name(name).build();
            nl::ack(&h, RouteNetlinkMessage::DelLink(msg), 0)
                .await
                .map_err(|c| no_link(c, name))?;
        }
        Op::DelAddress { netns, link, addr } => {
            let h = hs.get(netns).await?;
            let index = nl::link_index(&h, link).await?;
            let msg = RouteNetlinkMessage::DelAddress(address_message(index, *addr));
            nl::ack(&h, msg, 0).await?;
        }
        Op::Neighbor { netns, link, addr, mac } => {
            let h = hs.get(netns).await?;
            let index = nl::link_index(&h, link).await?;
            let msg = neighbour_message(index, *addr, Some(mac.0));
            nl::ack(&h, RouteNetlinkMessage::NewNeighbour(msg), NLM_F_CREATE | NLM_F_REPLACE)
                .await?;
        }
        Op::DelNeighbor { netns, link, addr } => {
            // A missing link or entry is "gone" (Cause::is_gone), which teardown and
            // rollback count as done.
            let h = hs.get(netns).await?;
            let index = nl::link_index(&h, link).await?;
            let msg = neighbour_message(index, *addr, None);
            nl::ack(&h, RouteNetlinkMessage::DelNeighbour(msg), 0).await?;
        }
        Op::CreateVxlan { name, group, vni, local, port, mtu, master } => {
            let master = nl::link_index(hs.host(), master).await?;
            let req = VxlanRequest {
                name,
                group: *group,
                vni: *vni,
                local: *local,
                port: *port,
                mtu: *mtu,
                master,
            };
            nl::ack(hs.host(), RouteNetlinkMessage::NewLink(req.message()), CREATE).await?;
        }
        Op::CreateMacvlan { name, group, parent, mac, mtu } => {
            let parent = nl::link_index(hs.host(), parent).await?;
            let mut msg = rtnetlink::LinkMacVlan::new(
                name,
                parent,
                netlink_packet_route::link::MacVlanMode::Bridge,
            )
            .mtu(*mtu)
            .address(mac.0.to_vec())
            .build();
            msg.attributes.push(netlink_packet_route::link::LinkAttribute::Group(*group));
            nl::ack(hs.host(), RouteNetlinkMessage::NewLink(msg), CREATE).await?;
        }
        Op::SetPortFlags { link, flags } => {
            let index = nl::link_index(hs.host(), link).await?;
            let msg = port_flags_message(index, flags);
            nl::ack(hs.host(), RouteNetlinkMessage::SetLink(msg), 0).await?;
        }
        Op::VxlanFdb { .. }
        | Op::DelVxlanFdb { .. }
        | Op::BridgeFdb { .. }
        | Op::DelBridgeFdb { .. } => {
            // Usually a run of them goes to `entries::exec` directly (Kernel::apply).
            let mut res = crate::entries::exec(hs, std::slice::from_ref(op)).await;
            res.pop().unwrap_or_else(|| Err(Cause::Protocol("no answer".into())))?;
        }
    }
    Ok(Outcome::Changed)
}

/// Delete every link of `group` in one request (`ip link delete group N`): one RTNL hold
/// and one RCU grace period for the whole batch. No link in the group is "gone".
pub(crate) async fn delete_group(h: &Handle, group: u32) -> Result<(), Cause> {
    let mut msg = LinkMessage::default();
    msg.attributes.push(LinkAttribute::Group(group));
    nl::ack(h, RouteNetlinkMessage::DelLink(msg), 0).await
}

/// Bring link `name` up (looked up by name in the kernel: no index round trip).
pub(crate) async fn set_up(h: &Handle, name: &str) -> Result<(), Cause> {
    let msg: LinkMessage = LinkUnspec::new_with_name(name).up().build();
    nl::ack(h, RouteNetlinkMessage::SetLink(msg), 0).await.map_err(|c| no_link(c, name))
}

fn no_link(c: Cause, name: &str) -> Cause {
    if c.errno() == Some(libc::ENODEV) {
        Cause::NoSuchLink(name.to_owned())
    } else {
        c
    }
}

/// An address message. IPv6 addresses skip duplicate address detection: IPAM hands out
/// unique addresses on a segment Cove owns, and DAD would leave them unusable ("tentative")
/// for a second or more.
fn address_message(index: u32, addr: IpNet) -> AddressMessage {
    match addr.addr() {
        IpAddr::V4(a) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(index)
            .address(a, addr.prefix_len())
            .build(),
        IpAddr::V6(a) => {
            let mut m = AddressMessageBuilder::<std::net::Ipv6Addr>::new()
                .index(index)
                .address(a, addr.prefix_len())
                .build();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
            m
        }
    }
}

/// A permanent neighbour entry for `addr` on link `index` (`mac` None: the key of a delete).
pub(crate) fn neighbour_message(
    index: u32,
    addr: IpAddr,
    mac: Option<[u8; 6]>,
) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    m.attributes.push(NeighbourAttribute::Destination(match addr {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    }));
    if let Some(mac) = mac {
        m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
    }
    m
}

fn invalid_route(e: impl std::fmt::Display) -> Cause {
    Cause::Invalid(e.to_string())
}

fn route_message(
    dst: IpNet,
    gateway: Option<IpAddr>,
    oif: u32,
) -> Result<netlink_packet_route::route::RouteMessage, Cause> {
    let mut b = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.trunc().addr(), dst.prefix_len())
        .map_err(invalid_route)?
        .output_interface(oif);
    match gateway {
        Some(gw) => b = b.gateway(gw).map_err(invalid_route)?,
        None => b = b.scope(RouteScope::Link),
    }
    Ok(b.build())
}

/// `blackhole <dst> metric <metric>` in the main table (see `Op::BlackholeRoute`).
fn blackhole_route(
    dst: IpNet,
    metric: u32,
) -> Result<netlink_packet_route::route::RouteMessage, Cause> {
    use netlink_packet_route::route::{RouteProtocol, RouteType};
    Ok(RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.trunc().addr(), dst.prefix_len())
        .map_err(invalid_route)?
        .kind(RouteType::BlackHole)
        .scope(RouteScope::Universe)
        .protocol(RouteProtocol::Static)
        .priority(metric)
        .build())
}

/// `local ::1 dev <oif> table local metric 1024` (see `Op::LoopbackRoute6`).
fn loopback_route6(oif: u32) -> netlink_packet_route::route::RouteMessage {
    use netlink_packet_route::route::{RouteProtocol, RouteType};
    RouteMessageBuilder::<std::net::Ipv6Addr>::new()
        .destination_prefix(std::net::Ipv6Addr::LOCALHOST, 128)
        .output_interface(oif)
        .table_id(255)
        .kind(RouteType::Local)
        .scope(RouteScope::Host)
        .protocol(RouteProtocol::Static)
        .priority(1024)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::{RouteAddress, RouteAttribute};

    #[test]
    fn ipv6_addresses_skip_dad() {
        let m = address_message(4, "fd00::2/64".parse().unwrap());
        assert!(m.header.flags.contains(AddressHeaderFlags::Nodad));
        assert!(m.attributes.contains(&AddressAttribute::Flags(AddressFlags::Nodad)));
        let m = address_message(4, "10.1.0.2/24".parse().unwrap());
        assert!(!m.header.flags.contains(AddressHeaderFlags::Nodad));
    }

    #[test]
    fn default_route_message() {
        let m = route_message("0.0.0.0/0".parse().unwrap(), Some("10.1.0.1".parse().unwrap()), 3)
            .unwrap();
        assert_eq!(m.header.destination_prefix_length, 0);
        assert!(m.attributes.contains(&RouteAttribute::Oif(3)));
        assert!(m
            .attributes
            .contains(&RouteAttribute::Gateway(RouteAddress::Inet([10, 1, 0, 1].into()))));
        assert!(
            route_message("::/0".parse().unwrap(), Some("10.1.0.1".parse().unwrap()), 3).is_err()
        );
    }
}
