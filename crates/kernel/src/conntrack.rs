//! Connection tracking entries over `NETLINK_NETFILTER` (`NFNL_SUBSYS_CTNETLINK`): list
//! them, and delete those whose replies come from a given address.
//!
//! Why: when a service backend goes, new connections stop reaching it at once (its chain
//! is gone), but a UDP "connection" is only a conntrack entry that every datagram of the
//! flow refreshes: the client's next datagrams keep being DNAT'ed to the removed backend
//! for as long as it keeps sending (kube-proxy's `CleanStaleEntries`, Docker's IPVS
//! `expire_nodest_conn`). Deleting the entries whose reply source is the backend makes the
//! next datagram a new flow, which the service's chain sends to a live backend.
//!
//! Blocking: call from a thread (or `spawn_blocking`) in the network namespace whose
//! table is meant; the socket belongs to the calling thread's namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};

use crate::error::{Cause, KernelError};

const NLMSG_HDRLEN: usize = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_ID: u16 = 12;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// A dump interrupted by a concurrent change is retried this many times.
const DUMP_TRIES: usize = 5;

/// One direction of a tracked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 for protocols without ports).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// One conntrack entry: its protocol and both directions (the reply direction says where
/// NAT sent it: a DNAT'ed flow's reply source is the backend).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// IP protocol number (6 TCP, 17 UDP, ...).
    pub proto: u8,
    /// The direction of the first packet, as it arrived.
    pub original: Tuple,
    /// The direction of the replies, as they leave the peer.
    pub reply: Tuple,
    /// The kernel's id of the entry (`CTA_ID`).
    id: Option<u32>,
    /// The raw `CTA_TUPLE_ORIG` attribute (zone included), to name the entry when deleting.
    orig_attr: Vec<u8>,
}

/// Attributes of one netlink message payload: (type without flags, payload).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        // Attributes are padded to 4 bytes; the last one's padding may be missing.
        buf = &buf[(len.div_ceil(4) * 4).min(buf.len())..];
        Some((kind, payload))
    })
}

fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, p)| p)
}

fn ip(payload: &[u8]) -> Option<IpAddr> {
    match payload.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(payload).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(payload).ok()?))),
        _ => None,
    }
}

fn port(payload: Option<&[u8]>) -> u16 {
    payload.and_then(|p| p.try_into().ok()).map_or(0, u16::from_be_bytes)
}

/// A tuple attribute's contents: (protocol, tuple).
fn tuple(buf: &[u8]) -> Option<(u8, Tuple)> {
    let ips = find(buf, CTA_TUPLE_IP)?;
    let (src, dst) = match (find(ips, CTA_IP_V4_SRC), find(ips, CTA_IP_V4_DST)) {
        (Some(s), Some(d)) => (ip(s)?, ip(d)?),
        _ => (ip(find(ips, CTA_IP_V6_SRC)?)?, ip(find(ips, CTA_IP_V6_DST)?)?),
    };
    let proto = find(buf, CTA_TUPLE_PROTO)?;
    let num = *find(proto, CTA_PROTO_NUM)?.first()?;
    let t = Tuple {
        src,
        dst,
        sport: port(find(proto, CTA_PROTO_SRC_PORT)),
        dport: port(find(proto, CTA_PROTO_DST_PORT)),
    };
    Some((num, t))
}

/// One `IPCTNL_MSG_CT_NEW` message of a dump (after the `nfgenmsg`).
fn entry(payload: &[u8]) -> Option<Entry> {
    let mut orig_attr = None;
    let (mut original, mut reply, mut id) = (None, None, None);
    for (kind, p) in attrs(payload) {
        match kind {
            CTA_TUPLE_ORIG => {
                original = tuple(p);
                let mut raw = Vec::with_capacity(p.len() + 4);
                raw.extend_from_slice(&((p.len() + 4) as u16).to_ne_bytes());
                raw.extend_from_slice(&(CTA_TUPLE_ORIG | NLA_F_NESTED).to_ne_bytes());
                raw.extend_from_slice(p);
                orig_attr = Some(raw);
            }
            CTA_TUPLE_REPLY => reply = tuple(p),
            CTA_ID => id = p.try_into().ok().map(u32::from_be_bytes),
            _ => {}
        }
    }
    let (proto, original) = original?;
    let (_, reply) = reply?;
    Some(Entry { proto, original, reply, id, orig_attr: orig_attr? })
}

fn header(kind: u16, flags: u16, seq: u32, family: u8, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by `finish`
    out.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[family, 0, 0, 0]); // nfgenmsg: family, version 0, res_id 0
    start
}

fn finish(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn open() -> Result<Socket, Cause> {
    let mut sock = Socket::new(NETLINK_NETFILTER)?;
    sock.bind_auto()?;
    nix::sys::socket::setsockopt(
        &sock,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::from(libc::timeval { tv_sec: 5, tv_usec: 0 }),
    )
    .map_err(|e| Cause::from(std::io::Error::from(e)))?;
    Ok(sock)
}

/// Reads one dump to its end: the entries, and whether the kernel flagged it interrupted.
fn read_dump(sock: &Socket) -> Result<(Vec<Entry>, bool), Cause> {
    let mut entries = Vec::new();
    let mut interrupted = false;
    loop {
        let (buf, _) = sock.recv_from_full()?;
        let mut at = 0;
        while at + NLMSG_HDRLEN <= buf.len() {
            let len = u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes")) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            let flags = u16::from_ne_bytes([buf[at + 6], buf[at + 7]]);
            if len < NLMSG_HDRLEN || at + len > buf.len() {
                return Err(Cause::Protocol("truncated conntrack dump".into()));
            }
            interrupted |= flags & NLM_F_DUMP_INTR != 0;
            match kind {
                NLMSG_DONE => return Ok((entries, interrupted)),
                NLMSG_ERROR => {
                    let errno = i32::from_ne_bytes(
                        buf[at + NLMSG_HDRLEN..at + NLMSG_HDRLEN + 4].try_into().expect("4"),
                    );
                    if errno != 0 {
                        return Err(std::io::Error::from_raw_os_error(-errno).into());
                    }
                }
                _ if len >= NLMSG_HDRLEN + 4 => {
                    entries.extend(entry(&buf[at + NLMSG_HDRLEN + 4..at + len]));
                }
                _ => {}
            }
            at += len.div_ceil(4) * 4;
        }
    }
}

fn dump_with(sock: &Socket, family: u8) -> Result<Vec<Entry>, Cause> {
    for seq in 1..=DUMP_TRIES as u32 {
        let mut msg = Vec::new();
        let start = header(IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, family, &mut msg);
        finish(&mut msg, start);
        sock.send(&msg, 0)?;
        let (entries, interrupted) = read_dump(sock)?;
        if !interrupted {
            return Ok(entries);
        }
    }
    Err(Cause::Protocol(format!("conntrack dump interrupted {DUMP_TRIES} times in a row")))
}

fn family_of(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        libc::AF_INET as u8
    } else {
        libc::AF_INET6 as u8
    }
}

/// Every conntrack entry of one address family (`v6`) in the calling thread's netns.
pub fn entries(v6: bool) -> Result<Vec<Entry>, KernelError> {
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET } as u8;
    open().and_then(|s| dump_with(&s, family)).map_err(|c| KernelError::new("list conntrack", c))
}

/// Deletes the conntrack entries whose replies come from `backend` (its reply tuple's
/// source), of protocol `proto` (an IP protocol number) or of every protocol; returns how
/// many it deleted. An entry that expired meanwhile counts as deleted by someone else (not
/// counted, not an error).
pub fn delete_by_reply_source(backend: IpAddr, proto: Option<u8>) -> Result<usize, KernelError> {
    let ctx = format!("delete the conntrack entries of {backend}");
    let run = || -> Result<usize, Cause> {
        let sock = open()?;
        let family = family_of(backend);
        let doomed: Vec<Entry> = dump_with(&sock, family)?
            .into_iter()
            .filter(|e| e.reply.src == backend && proto.is_none_or(|p| p == e.proto))
            .collect();
        let mut deleted = 0;
        for (seq, e) in (100u32..).zip(&doomed) {
            let mut msg = Vec::new();
            let flags = NLM_F_REQUEST | NLM_F_ACK;
            let start = header(IPCTNL_MSG_CT_DELETE, flags, seq, family, &mut msg);
            msg.extend_from_slice(&e.orig_attr);
            if let Some(id) = e.id {
                // Only this entry, not a new one with the same tuple.
                msg.extend_from_slice(&8u16.to_ne_bytes());
                msg.extend_from_slice(&CTA_ID.to_ne_bytes());
                msg.extend_from_slice(&id.to_be_bytes());
            }
            finish(&mut msg, start);
            sock.send(&msg, 0)?;
            match read_ack(&sock, seq)? {
                0 => deleted += 1,
                e if e == libc::ENOENT => {}
                e => return Err(std::io::Error::from_raw_os_error(e).into()),
            }
        }
        Ok(deleted)
    };
    run().map_err(|c| KernelError::new(ctx, c))
}

/// The errno of the acknowledgement of `seq` (0: done).
fn read_ack(sock: &Socket, seq: u32) -> Result<i32, Cause> {
    loop {
        let (buf, _) = sock.recv_from_full()?;
        let mut at = 0;
        while at + NLMSG_HDRLEN + 4 <= buf.len() {
            let word = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
            let len = word(at) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            if len < NLMSG_HDRLEN || at + len > buf.len() {
                return Err(Cause::Protocol("truncated netlink reply".into()));
            }
            if kind == NLMSG_ERROR && word(at + 8) == seq {
                return Ok(-(word(at + NLMSG_HDRLEN) as i32));
            }
            at += len.div_ceil(4) * 4;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = ((payload.len() + 4) as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(payload);
        v.resize(v.len().div_ceil(4) * 4, 0);
        v
    }

    fn tuple_attr(kind: u16, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let ips = [attr(CTA_IP_V4_SRC, &src), attr(CTA_IP_V4_DST, &dst)].concat();
        let proto = [
            attr(CTA_PROTO_NUM, &[17]),
            attr(CTA_PROTO_SRC_PORT, &sport.to_be_bytes()),
            attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes()),
        ]
        .concat();
        let inner =
            [attr(CTA_TUPLE_IP | NLA_F_NESTED, &ips), attr(CTA_TUPLE_PROTO | NLA_F_NESTED, &proto)]
                .concat();
        attr(kind | NLA_F_NESTED, &inner)
    }

    #[test]
    fn parses_a_dnat_entry() {
        // A UDP flow from 10.0.9.50:4000 to the VIP 10.0.9.100:53, DNAT'ed to 10.0.9.11.
        let payload = [
            tuple_attr(CTA_TUPLE_ORIG, [10, 0, 9, 50], [10, 0, 9, 100], 4000, 53),
            tuple_attr(CTA_TUPLE_REPLY, [10, 0, 9, 11], [10, 0, 9, 50], 53, 4000),
            attr(CTA_ID, &7u32.to_be_bytes()),
        ]
        .concat();
        let e = entry(&payload).expect("an entry");
        assert_eq!(e.proto, 17);
        assert_eq!(e.original.dst, "10.0.9.100".parse::<IpAddr>().unwrap());
        assert_eq!((e.original.sport, e.original.dport), (4000, 53));
        assert_eq!(e.reply.src, "10.0.9.11".parse::<IpAddr>().unwrap());
        assert_eq!(e.id, Some(7));
        // The original tuple is sent back as it came, nested flag included.
        assert_eq!(e.orig_attr, payload[..e.orig_attr.len()]);
    }

    #[test]
    fn a_truncated_attribute_ends_the_list() {
        let mut a = attr(CTA_ID, &7u32.to_be_bytes());
        a[0] = 40;
        assert_eq!(attrs(&a).count(), 0);
        assert!(entry(&a).is_none());
    }
}
