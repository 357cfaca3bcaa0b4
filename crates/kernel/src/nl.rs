//! Raw netlink exchanges on one rtnetlink handle: acknowledged requests, single gets, and
//! dumps with a bounded retry on `NLM_F_DUMP_INTR`; plus the reads built on them.

use std::net::IpAddr;

use futures::StreamExt;
use ipnet::IpNet;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::Handle;

use crate::error::Cause;
use crate::LinkInfo;

/// How often a dump interrupted by concurrent changes is restarted before giving up.
pub(crate) const DUMP_ATTEMPTS: usize = 8;
/// How often a dump refused because another dump runs on the same socket (`EBUSY`) is
/// tried again (waiting up to 10 ms between tries: a dump of thousands of links takes
/// tens of milliseconds).
const BUSY_ATTEMPTS: u64 = 500;

/// Send `msg` with `flags` (plus REQUEST and ACK) and wait for the acknowledgement.
pub(crate) async fn ack(h: &Handle, msg: RouteNetlinkMessage, flags: u16) -> Result<(), Cause> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut replies = h.clone().request(req)?;
    while let Some(reply) = replies.next().await {
        if let NetlinkPayload::Error(e) = reply.payload {
            if e.code.is_some() {
                return Err(Cause::Os(e.to_io()));
            }
        }
    }
    Ok(())
}

/// Send a non-dump get and return the single reply.
async fn get_one(h: &Handle, msg: RouteNetlinkMessage) -> Result<RouteNetlinkMessage, Cause> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST;
    let mut replies = h.clone().request(req)?;
    let mut found = None;
    while let Some(reply) = replies.next().await {
        match reply.payload {
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(Cause::Os(e.to_io())),
            NetlinkPayload::InnerMessage(m) if found.is_none() => found = Some(m),
            _ => {}
        }
    }
    found.ok_or_else(|| Cause::Protocol("netlink get returned no reply".into()))
}

/// Dump with `msg` as the request, restarting (bounded) when the kernel flags the dump as
/// interrupted by a concurrent change.
pub(crate) async fn dump(
    h: &Handle,
    msg: RouteNetlinkMessage,
) -> Result<Vec<RouteNetlinkMessage>, Cause> {
    dump_map(h, msg, Some).await
}

/// [`dump`], keeping only what `keep` makes of each message as it arrives: a host with
/// thousands of links would otherwise hold every parsed message (tens of attributes each)
/// at once, and the allocator keeps that high-water mark.
pub(crate) async fn dump_map<T>(
    h: &Handle,
    msg: RouteNetlinkMessage,
    keep: impl FnMut(RouteNetlinkMessage) -> Option<T>,
) -> Result<Vec<T>, Cause> {
    dump_with(|req| Ok(h.clone().request(req)?), msg, keep).await
}

/// [`dump_map`] over any connection: `send` submits one request and returns its replies.
pub(crate) async fn dump_with<S, T>(
    send: impl Fn(NetlinkMessage<RouteNetlinkMessage>) -> Result<S, Cause>,
    msg: RouteNetlinkMessage,
    mut keep: impl FnMut(RouteNetlinkMessage) -> Option<T>,
) -> Result<Vec<T>, Cause>
where
    S: futures::Stream<Item = NetlinkMessage<RouteNetlinkMessage>>,
{
    let mut busy = 0;
    let mut attempt = 0;
    while attempt < DUMP_ATTEMPTS {
        let mut req = NetlinkMessage::from(msg.clone());
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let replies = send(req)?;
        futures::pin_mut!(replies);
        let mut out = Vec::new();
        let mut interrupted = false;
        let mut refused_busy = false;
        while let Some(reply) = replies.next().await {
            interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
            match reply.payload {
                NetlinkPayload::InnerMessage(m) => out.extend(keep(m)),
                NetlinkPayload::Error(e) if e.code.is_some() => {
                    let err = e.to_io();
                    if err.raw_os_error() == Some(libc::EBUSY) && busy < BUSY_ATTEMPTS {
                        refused_busy = true;
                        break;
                    }
                    return Err(Cause::Os(err));
                }
                NetlinkPayload::Overrun(_) => interrupted = true,
                _ => {}
            }
        }
        if refused_busy {
            // One dump at a time per netlink socket: another task's dump on this
            // connection (a reconciliation's, say) is still running. Wait for it.
            busy += 1;
            tokio::time::sleep(std::time::Duration::from_millis(busy.min(10))).await;
            continue;
        }
        if !interrupted {
            return Ok(out);
        }
        attempt += 1;
        tracing::debug!("netlink dump interrupted, restarting");
    }
    Err(Cause::Protocol(format!("netlink dump interrupted {DUMP_ATTEMPTS} times in a row")))
}

/// A link message asking for no statistics (smaller replies).
fn link_request() -> LinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    m
}

/// The index of link `name`; a missing link is [`Cause::NoSuchLink`].
pub(crate) async fn link_index(h: &Handle, name: &str) -> Result<u32, Cause> {
    let mut m = link_request();
    m.attributes.push(LinkAttribute::IfName(name.to_owned()));
    match get_one(h, RouteNetlinkMessage::GetLink(m)).await {
        Ok(RouteNetlinkMessage::NewLink(l)) => Ok(l.header.index),
        Ok(other) => Err(Cause::Protocol(format!("unexpected reply to a link get: {other:?}"))),
        Err(c) if c.errno() == Some(libc::ENODEV) => Err(Cause::NoSuchLink(name.to_owned())),
        Err(c) => Err(c),
    }
}

/// The request of a dump of every link, without statistics.
pub(crate) fn link_dump_request() -> RouteNetlinkMessage {
    RouteNetlinkMessage::GetLink(link_request())
}

/// A link's group (`IFLA_GROUP`; 0 when absent).
pub(crate) fn link_group(l: &LinkMessage) -> u32 {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Group(g) => Some(*g),
            _ => None,
        })
        .unwrap_or(0)
}

/// A link's name and traffic counters (zero when the kernel gave none).
pub(crate) fn link_stats(l: &LinkMessage) -> crate::LinkStats {
    let mut out = crate::LinkStats::default();
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => out.name = n.clone(),
            LinkAttribute::Stats64(s) => {
                out.rx_bytes = s.rx_bytes;
                out.rx_packets = s.rx_packets;
                out.rx_dropped = s.rx_dropped;
                out.tx_bytes = s.tx_bytes;
                out.tx_packets = s.tx_packets;
                out.tx_dropped = s.tx_dropped;
            }
            _ => {}
        }
    }
    out
}

pub(crate) fn link_info(l: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: l.header.index,
        name: String::new(),
        kind: None,
        master: None,
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
        group: 0,
    };
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => info.name = n.clone(),
            LinkAttribute::Mtu(m) => info.mtu = *m,
            LinkAttribute::Group(g) => info.group = *g,
            LinkAttribute::Controller(c) if *c != 0 => info.master = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        info.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    info
}

fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

/// Whether link `index` carries exactly `addr` (address and prefix length).
pub(crate) async fn has_address(h: &Handle, index: u32, addr: IpNet) -> Result<bool, Cause> {
    let mut req = AddressMessage::default();
    req.header.family = family_of(addr.addr());
    req.header.index = index;
    let msgs = dump(h, RouteNetlinkMessage::GetAddress(req)).await?;
    Ok(msgs.iter().any(|m| match m {
        RouteNetlinkMessage::NewAddress(a) => {
            a.header.index == index
                && a.header.prefix_len == addr.prefix_len()
                && a.attributes.iter().any(|at| match at {
                    // IPv4: IFA_LOCAL is the address (IFA_ADDRESS is the peer on p2p links).
                    AddressAttribute::Local(ip) => *ip == addr.addr(),
                    AddressAttribute::Address(ip) => addr.addr().is_ipv6() && *ip == addr.addr(),
                    _ => false,
                })
        }
        _ => false,
    }))
}

pub(crate) fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The routing table a route message belongs to.
fn table_of(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

/// The destination prefix of a route message (`0.0.0.0/0` or `::/0` for a default route).
fn destination_of(r: &RouteMessage) -> Option<IpNet> {
    let plen = r.header.destination_prefix_length;
    let ip = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(d) => route_ip(d),
            _ => None,
        })
        .or(match r.header.address_family {
            AddressFamily::Inet => Some(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
            AddressFamily::Inet6 => Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
            _ => None,
        })?;
    IpNet::new(ip, plen).ok()
}

async fn main_routes(h: &Handle, family: AddressFamily) -> Result<Vec<RouteMessage>, Cause> {
    let mut req = RouteMessage::default();
    req.header.address_family = family;
    let msgs = dump(h, RouteNetlinkMessage::GetRoute(req)).await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r)
                if r.header.address_family == family
                    && table_of(&r) == u32::from(RouteHeader::RT_TABLE_MAIN) =>
            {
                Some(r)
            }
            _ => None,
        })
        .collect())
}

/// Whether the main table holds a route to `dst` via `gateway` out of link `oif`.
pub(crate) async fn has_route(
    h: &Handle,
    dst: IpNet,
    gateway: Option<IpAddr>,
    oif: u32,
) -> Result<bool, Cause> {
    let routes = main_routes(h, family_of(dst.addr())).await?;
    Ok(routes.iter().any(|r| {
        let gw = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Gateway(g) => route_ip(g),
            _ => None,
        });
        let out = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        });
        destination_of(r) == Some(dst.trunc()) && gw == gateway && out == Some(oif)
    }))
}

/// Whether a routed prefix tells IPAM anything: not default, link-local or multicast.
fn is_routed_prefix(p: &IpNet) -> bool {
    if p.prefix_len() == 0 {
        return false;
    }
    match p.addr() {
        IpAddr::V4(a) => !a.is_multicast(),
        IpAddr::V6(a) => {
            let link_local = (a.segments()[0] & 0xffc0) == 0xfe80;
            !link_local && !a.is_multicast()
        }
    }
}

/// Destination prefixes of the main table's routes (both families), excluding default
/// routes, link-local and multicast prefixes and local/broadcast-type routes.
pub(crate) async fn route_prefixes(h: &Handle) -> Result<Vec<IpNet>, Cause> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        for r in main_routes(h, family).await? {
            let routed_kind = matches!(
                r.header.kind,
                RouteType::Unicast
                    | RouteType::BlackHole
                    | RouteType::Unreachable
                    | RouteType::Prohibit
                    | RouteType::Throw
            );
            if let Some(p) = destination_of(&r).filter(|p| routed_kind && is_routed_prefix(p)) {
                out.push(p.trunc());
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_prefix_filter() {
        let yes = ["10.0.0.0/8", "192.0.2.0/24", "2001:db8::/64", "fd00::/8"];
        let no = ["0.0.0.0/0", "::/0", "fe80::/64", "ff00::/8", "224.0.0.0/4"];
        for p in yes {
            assert!(is_routed_prefix(&p.parse().unwrap()), "{p}");
        }
        for p in no {
            assert!(!is_routed_prefix(&p.parse().unwrap()), "{p}");
        }
    }

    #[test]
    fn destination_defaults_to_unspecified() {
        let mut r = RouteMessage::default();
        r.header.address_family = AddressFamily::Inet6;
        assert_eq!(destination_of(&r), Some("::/0".parse().unwrap()));
        r.header.destination_prefix_length = 24;
        r.header.address_family = AddressFamily::Inet;
        r.attributes.push(RouteAttribute::Destination(RouteAddress::Inet([10, 1, 2, 0].into())));
        assert_eq!(destination_of(&r), Some("10.1.2.0/24".parse().unwrap()));
    }

    #[test]
    fn link_info_parses_attributes() {
        use netlink_packet_route::link::InfoKind;
        let mut l = LinkMessage::default();
        l.header.index = 7;
        l.header.flags = LinkFlags::Up;
        l.attributes = vec![
            LinkAttribute::IfName("veth1".into()),
            LinkAttribute::Mtu(1450),
            LinkAttribute::Controller(3),
            LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(InfoKind::Veth)]),
        ];
        assert_eq!(
            link_info(&l),
            LinkInfo {
                index: 7,
                name: "veth1".into(),
                kind: Some("veth".into()),
                master: Some(3),
                mtu: 1450,
                up: true,
                group: 0,
            }
        );
    }
}
