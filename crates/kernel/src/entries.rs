//! Forwarding (FDB) and neighbour entries of the host namespace, many at a time: an
//! overlay network programs three per remote endpoint (a VXLAN entry, a static bridge
//! entry, a permanent neighbour), thousands on a large cluster.
//!
//! They go over a netlink socket of their own. Requests are written [`CHUNK`] to a
//! datagram: the kernel handles the messages of one `sendmsg` in order and acknowledges
//! each, so 2,000 endpoints cost about fifty system calls instead of 6,000 round trips,
//! and every entry still gets its own answer (errors are per entry). The chunk bounds the
//! acknowledgements queued on the socket at once, well below its receive buffer: an
//! overrun would lose answers. The same socket dumps forwarding entries with
//! `NETLINK_GET_STRICT_CHK` on, which is what lets the kernel filter a dump by port (one
//! device's entries, not every port's of the host).

use std::collections::HashMap;
use std::net::IpAddr;

use futures::StreamExt;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::proto::{sys::SocketAddr, ConnectionHandle};

use cove_drivers::plan::{Netns, Op};
use cove_model::MacAddr;

use crate::error::Cause;
use crate::handles::Handles;
use crate::nl;

/// Requests per datagram (and acknowledgements waiting on the socket at most).
const CHUNK: usize = 128;

/// Receive buffer asked for (the kernel caps it at `net.core.rmem_max`, doubled): room
/// for a chunk's acknowledgements with their echoed requests many times over.
const RECEIVE_BUFFER: usize = 1 << 20;

/// The entries socket of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Entries {
    conn: ConnectionHandle<RouteNetlinkMessage>,
}

impl Entries {
    /// Open the socket in the calling thread's namespace, driven by `rt`.
    pub(crate) fn connect(rt: &tokio::runtime::Handle) -> Result<Entries, Cause> {
        let _enter = rt.enter();
        let (mut conn, handle, unsolicited) = rtnetlink::proto::new_connection::<
            RouteNetlinkMessage,
        >(rtnetlink::sys::protocols::NETLINK_ROUTE)?;
        let socket = rtnetlink::sys::AsyncSocket::socket_mut(conn.socket_mut());
        socket.set_netlink_get_strict_chk(true)?;
        // Best effort: without it the default buffer still holds a chunk's answers.
        if let Err(e) = socket.set_rx_buf_sz(RECEIVE_BUFFER) {
            tracing::debug!("could not grow the entries socket's receive buffer: {e}");
        }
        // Dumps end with NLMSG_DONE, which can carry NLM_F_DUMP_INTR; and every request
        // of a batch is answered by its acknowledgement (which the connection would
        // otherwise swallow when it says "success").
        conn.set_forward_done(true);
        conn.set_forward_ack(true);
        drop(unsolicited);
        rt.spawn(conn);
        Ok(Entries { conn: handle })
    }

    fn send(
        &self,
        req: NetlinkMessage<RouteNetlinkMessage>,
    ) -> Result<impl futures::Stream<Item = NetlinkMessage<RouteNetlinkMessage>>, Cause> {
        self.conn
            .request(req, SocketAddr::new(0, 0))
            .map_err(|e| Cause::Protocol(format!("netlink request failed: {e}")))
    }

    /// The forwarding entries of device `index`, as the kernel reports them: its own
    /// (`self`: a VXLAN device's table) and its bridge's for it as a port (`master`).
    pub(crate) async fn fdb(&self, index: u32) -> Result<Vec<NeighbourMessage>, Cause> {
        let mut req = NeighbourMessage::default();
        req.header.family = AddressFamily::Bridge;
        // With strict checking the header's index is the port filter (`brport_idx`).
        req.header.ifindex = index;
        let msgs =
            nl::dump_with(|r| self.send(r), RouteNetlinkMessage::GetNeighbour(req), Some).await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                // Another device's entry would be a filter the kernel ignored.
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == index => Some(n),
                _ => None,
            })
            .collect())
    }

    /// Send `msgs` (each with its request flags), [`CHUNK`] to a datagram, and return each
    /// one's answer, in order.
    async fn batch(&self, msgs: Vec<(RouteNetlinkMessage, u16)>) -> Vec<Result<(), Cause>> {
        let mut out = Vec::with_capacity(msgs.len());
        let mut msgs = msgs.into_iter().peekable();
        while msgs.peek().is_some() {
            let chunk: Vec<NetlinkMessage<RouteNetlinkMessage>> = msgs
                .by_ref()
                .take(CHUNK)
                .map(|(m, flags)| {
                    let mut req = NetlinkMessage::from(m);
                    req.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
                    req
                })
                .collect();
            let n = chunk.len();
            let answers = match self.conn.request_batch(chunk, SocketAddr::new(0, 0)) {
                Ok(replies) => collect_acks(replies, n).await,
                Err(e) => (0..n)
                    .map(|_| Err(Cause::Protocol(format!("netlink request failed: {e}"))))
                    .collect(),
            };
            out.extend(answers);
        }
        out
    }
}

/// The answers to `n` requests sent in one datagram, in order: the kernel handles and
/// acknowledges them one after the other, so the k-th acknowledgement is the k-th
/// request's (the sequence numbers say the same; they are checked).
async fn collect_acks(
    replies: impl futures::Stream<Item = NetlinkMessage<RouteNetlinkMessage>>,
    n: usize,
) -> Vec<Result<(), Cause>> {
    futures::pin_mut!(replies);
    let mut out = Vec::with_capacity(n);
    let mut first_seq = None;
    while let Some(reply) = replies.next().await {
        let NetlinkPayload::Error(e) = reply.payload else { continue };
        let seq = reply.header.sequence_number;
        let first = *first_seq.get_or_insert(seq);
        if seq.wrapping_sub(first) as usize != out.len() {
            // An answer went missing (a receive-buffer overrun): which ones is unknown.
            break;
        }
        out.push(match e.code {
            None => Ok(()),
            Some(_) => Err(Cause::Os(e.to_io())),
        });
    }
    let lost = out.len()..n;
    out.truncate(lost.start);
    out.extend(lost.map(|_| Err(Cause::Protocol("no answer from the kernel".into()))));
    out
}

/// Whether `op` is an entry the executor programs in batches: forwarding entries, and
/// neighbour entries of the host namespace.
pub(crate) fn is_entry(op: &Op) -> bool {
    matches!(
        op,
        Op::VxlanFdb { .. }
            | Op::DelVxlanFdb { .. }
            | Op::BridgeFdb { .. }
            | Op::DelBridgeFdb { .. }
            | Op::Neighbor { netns: Netns::Host, .. }
            | Op::DelNeighbor { netns: Netns::Host, .. }
    )
}

/// The device an entry op is on.
fn device(op: &Op) -> &str {
    match op {
        Op::VxlanFdb { link, .. }
        | Op::DelVxlanFdb { link, .. }
        | Op::BridgeFdb { link, .. }
        | Op::DelBridgeFdb { link, .. }
        | Op::Neighbor { link, .. }
        | Op::DelNeighbor { link, .. } => link,
        other => unreachable!("not an entry op: {other}"),
    }
}

/// Execute entry ops (see [`is_entry`]) in order, pipelined; one answer per op. Each
/// device is looked up once.
pub(crate) async fn exec(hs: &Handles, ops: &[Op]) -> Vec<Result<(), Cause>> {
    let mut index: HashMap<&str, Result<u32, Cause>> = HashMap::new();
    for op in ops {
        let link = device(op);
        if !index.contains_key(link) {
            let found = nl::link_index(hs.host(), link).await;
            index.insert(link, found);
        }
    }
    let mut out: Vec<Option<Result<(), Cause>>> = Vec::with_capacity(ops.len());
    let mut msgs = vec![];
    for op in ops {
        match &index[device(op)] {
            Ok(i) => {
                msgs.push(message(op, *i));
                out.push(None);
            }
            Err(c) => out.push(Some(Err(copy(c)))),
        }
    }
    let mut answers = hs.entries().batch(msgs).await.into_iter();
    out.into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                answers.next().unwrap_or_else(|| Err(Cause::Protocol("no answer".into())))
            })
        })
        .collect()
}

/// The same cause again (a device lookup's failure, once per op on that device).
fn copy(c: &Cause) -> Cause {
    match c {
        Cause::NoSuchLink(l) => Cause::NoSuchLink(l.clone()),
        Cause::Os(e) => Cause::Os(match e.raw_os_error() {
            Some(errno) => std::io::Error::from_raw_os_error(errno),
            None => std::io::Error::new(e.kind(), e.to_string()),
        }),
        other => Cause::Protocol(other.to_string()),
    }
}

const REPLACE: u16 = NLM_F_CREATE | NLM_F_REPLACE;

/// The request of one entry op on device `index`, with its flags.
fn message(op: &Op, index: u32) -> (RouteNetlinkMessage, u16) {
    match op {
        Op::VxlanFdb { mac, dst, .. } => {
            let m = fdb_message(index, *mac, NeighbourFlags::Own, Some(*dst));
            (RouteNetlinkMessage::NewNeighbour(m), REPLACE)
        }
        Op::DelVxlanFdb { mac, .. } => {
            let m = fdb_message(index, *mac, NeighbourFlags::Own, None);
            (RouteNetlinkMessage::DelNeighbour(m), 0)
        }
        Op::BridgeFdb { mac, .. } => {
            let m = fdb_message(index, *mac, NeighbourFlags::Controller, None);
            (RouteNetlinkMessage::NewNeighbour(m), REPLACE)
        }
        Op::DelBridgeFdb { mac, .. } => {
            let m = fdb_message(index, *mac, NeighbourFlags::Controller, None);
            (RouteNetlinkMessage::DelNeighbour(m), 0)
        }
        Op::Neighbor { addr, mac, .. } => {
            let m = crate::ops::neighbour_message(index, *addr, Some(mac.0));
            (RouteNetlinkMessage::NewNeighbour(m), REPLACE)
        }
        Op::DelNeighbor { addr, .. } => {
            let m = crate::ops::neighbour_message(index, *addr, None);
            (RouteNetlinkMessage::DelNeighbour(m), 0)
        }
        other => unreachable!("not an entry op: {other}"),
    }
}

/// A forwarding entry for `mac` on device `index` (`RTM_NEWNEIGH` / `RTM_DELNEIGH` of
/// `AF_BRIDGE`). `NTF_SELF` (`Own`): the device's own table, a VXLAN device's, where an
/// entry must be `NUD_PERMANENT` (the VXLAN driver refuses other states from user space)
/// and names the remote VTEP in `NDA_DST`. `NTF_MASTER` (`Controller`): the bridge's
/// table, where `NUD_NOARP` is `static` (`NUD_PERMANENT` there would mean "local": frames
/// for the MAC delivered to the host).
pub(crate) fn fdb_message(
    index: u32,
    mac: MacAddr,
    table: NeighbourFlags,
    dst: Option<IpAddr>,
) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Bridge;
    m.header.ifindex = index;
    m.header.flags = table;
    m.header.state = if table.contains(NeighbourFlags::Own) {
        NeighbourState::Permanent
    } else {
        NeighbourState::Noarp
    };
    m.attributes.push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
    if let Some(dst) = dst {
        m.attributes.push(NeighbourAttribute::Destination(match dst {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, NetlinkHeader};

    #[test]
    fn vxlan_entries_are_self_permanent_with_a_destination() {
        let m = fdb_message(7, MacAddr([2, 0x42, 10, 0, 9, 3]), NeighbourFlags::Own, None);
        assert_eq!(m.header.state, NeighbourState::Permanent);
        let (msg, flags) = message(
            &Op::VxlanFdb {
                link: "vx".into(),
                mac: MacAddr([2, 0x42, 10, 0, 9, 3]),
                dst: "2001:db8::12".parse().unwrap(),
            },
            7,
        );
        assert_eq!(flags, NLM_F_CREATE | NLM_F_REPLACE);
        let RouteNetlinkMessage::NewNeighbour(n) = msg else { panic!() };
        assert_eq!(n.header.family, AddressFamily::Bridge);
        assert_eq!(n.header.flags, NeighbourFlags::Own);
        assert!(n.attributes.contains(&NeighbourAttribute::Destination(NeighbourAddress::Inet6(
            "2001:db8::12".parse().unwrap()
        ))));
    }

    #[test]
    fn bridge_entries_are_master_static() {
        let (msg, flags) =
            message(&Op::BridgeFdb { link: "vx".into(), mac: MacAddr([2, 0, 0, 0, 0, 1]) }, 7);
        assert_eq!(flags, NLM_F_CREATE | NLM_F_REPLACE);
        let RouteNetlinkMessage::NewNeighbour(n) = msg else { panic!() };
        assert_eq!(n.header.flags, NeighbourFlags::Controller);
        assert_eq!(n.header.state, NeighbourState::Noarp);
        assert!(!n.attributes.iter().any(|a| matches!(a, NeighbourAttribute::Destination(_))));
        // A 12-byte ndmsg and the MAC attribute (4 + 6, padded to 12): nothing else.
        assert_eq!(n.buffer_len(), 24);
    }

    #[tokio::test]
    async fn answers_map_to_requests_in_order_and_lost_ones_are_errors() {
        let ack = |seq: u32, code: i32| {
            let mut e = netlink_packet_core::ErrorMessage::default();
            e.code = std::num::NonZeroI32::new(code);
            let mut m = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::Error(e));
            m.header.sequence_number = seq;
            m
        };
        let replies = futures::stream::iter(vec![ack(10, 0), ack(11, -libc::ENODEV), ack(12, 0)]);
        let got = collect_acks(replies, 4).await;
        assert!(got[0].is_ok() && got[2].is_ok());
        assert_eq!(got[1].as_ref().unwrap_err().errno(), Some(libc::ENODEV));
        assert!(matches!(got[3], Err(Cause::Protocol(_))));
        // A gap in the sequence: everything from it on is unknown.
        let replies = futures::stream::iter(vec![ack(10, 0), ack(12, 0)]);
        let got = collect_acks(replies, 3).await;
        assert!(got[0].is_ok() && got[1].is_err() && got[2].is_err());
    }
}
