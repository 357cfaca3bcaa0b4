//! Dumps of the daemon's namespace read one datagram at a time, on a socket of their own.
//!
//! An rtnetlink connection reads and parses everything its socket holds before the task
//! that asked for a dump gets to run, and a dump refills the socket as it is read: the
//! whole dump is parsed and queued at once. At 1,000 containers a link dump (some 18 KiB
//! of parsed attributes per link) held 18 MiB at a time, every reconciliation round, and
//! the allocator kept that high-water mark as the daemon's resident memory. Here the
//! task that asked reads a datagram, parses its messages and hands each to the caller's
//! summary before reading the next: one datagram's messages are parsed at a time.

use netlink_packet_core::{
    NetlinkBuffer, NetlinkMessage, NetlinkPayload, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST,
};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, AsyncSocket, AsyncSocketExt, TokioSocket};

use crate::error::Cause;
use crate::nl::{self, DUMP_ATTEMPTS};

/// How long a dump left unfinished (its caller gave up half-way) may take to drain.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A netlink socket for dumps in the namespace it was opened in. One dump at a time.
#[derive(Debug)]
pub(crate) struct Dumper {
    inner: tokio::sync::Mutex<Socket>,
}

struct Socket {
    socket: TokioSocket,
    seq: u32,
    /// The sequence number of a dump whose end was not read (its caller was dropped).
    unfinished: Option<u32>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("seq", &self.seq).finish_non_exhaustive()
    }
}

/// How one datagram of a dump ended.
enum Datagram {
    /// More to read.
    More,
    /// The dump is complete; `interrupted` if the kernel flagged it (`NLM_F_DUMP_INTR`).
    Done { interrupted: bool },
}

impl Dumper {
    /// Open the socket in the calling thread's namespace; must run inside a tokio runtime.
    pub(crate) fn open() -> Result<Self, Cause> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
        socket.socket_mut().connect(&rtnetlink::sys::SocketAddr::new(0, 0))?;
        Ok(Self { inner: tokio::sync::Mutex::new(Socket { socket, seq: 0, unfinished: None }) })
    }

    /// Dump with `msg` as the request; `keep` sums up each message as its datagram is
    /// read. A dump the kernel flags as interrupted by a concurrent change is restarted
    /// (bounded), as [`crate::nl::dump_map`] does.
    pub(crate) async fn dump<T>(
        &self,
        msg: RouteNetlinkMessage,
        mut keep: impl FnMut(RouteNetlinkMessage) -> Option<T>,
    ) -> Result<Vec<T>, Cause> {
        let mut s = self.inner.lock().await;
        if let Some(seq) = s.unfinished {
            // Read the rest of an abandoned dump, or the kernel refuses the next (EBUSY).
            let (mut skip, mut none) = (|_| None::<()>, vec![]);
            let drain = s.read(seq, &mut skip, &mut none);
            if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
                tracing::debug!("an abandoned netlink dump did not drain");
            }
            s.unfinished = None;
        }
        for _ in 0..DUMP_ATTEMPTS {
            s.seq = s.seq.wrapping_add(1);
            let seq = s.seq;
            let mut req = NetlinkMessage::from(msg.clone());
            req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            req.header.sequence_number = seq;
            req.finalize();
            let mut buf = vec![0; req.buffer_len()];
            req.serialize(&mut buf);
            s.socket.send(&buf).await?;
            s.unfinished = Some(seq);
            let mut out = Vec::new();
            let interrupted = s.read(seq, &mut keep, &mut out).await;
            s.unfinished = None;
            if !interrupted? {
                return Ok(out);
            }
            tracing::debug!("netlink dump interrupted, restarting");
        }
        Err(Cause::Protocol(format!("netlink dump interrupted {DUMP_ATTEMPTS} times in a row")))
    }
}

impl Dumper {
    /// Every link, as `keep` sums each up (with its kind's and its bridge port's
    /// attributes).
    pub(crate) async fn link_dump<T>(
        &self,
        mut keep: impl FnMut(&LinkMessage) -> T,
    ) -> Result<Vec<T>, Cause> {
        self.dump(nl::link_dump_request(), |m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(keep(&l)),
            _ => None,
        })
        .await
    }
}

impl Socket {
    /// Read dump `seq` to its end, handing each message to `keep`; whether the kernel
    /// flagged it as interrupted.
    async fn read<T>(
        &mut self,
        seq: u32,
        keep: &mut impl FnMut(RouteNetlinkMessage) -> Option<T>,
        out: &mut Vec<T>,
    ) -> Result<bool, Cause> {
        let mut interrupted = false;
        loop {
            let (datagram, _) = self.socket.recv_from_full().await?;
            match parse(&datagram, seq, &mut interrupted, keep, out)? {
                Datagram::More => {}
                Datagram::Done { interrupted } => return Ok(interrupted),
            }
        }
    }
}

/// The messages of one datagram of dump `seq` (others' are skipped).
fn parse<T>(
    datagram: &[u8],
    seq: u32,
    interrupted: &mut bool,
    keep: &mut impl FnMut(RouteNetlinkMessage) -> Option<T>,
    out: &mut Vec<T>,
) -> Result<Datagram, Cause> {
    let mut at = 0;
    while at < datagram.len() {
        let rest = &datagram[at..];
        let len = match NetlinkBuffer::new_checked(rest) {
            Ok(b) => b.length() as usize,
            Err(e) => return Err(Cause::Protocol(format!("bad netlink datagram: {e}"))),
        };
        // Messages are 4-byte aligned within a datagram.
        at += (len + 3) & !3;
        let msg = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len]) {
            Ok(m) => m,
            // As the rtnetlink connection does: a message this crate cannot parse is skipped.
            Err(e) => {
                tracing::warn!("skipped a netlink message that does not parse: {e}");
                continue;
            }
        };
        if msg.header.sequence_number != seq {
            continue;
        }
        *interrupted |= msg.header.flags & NLM_F_DUMP_INTR != 0;
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => out.extend(keep(m)),
            NetlinkPayload::Done(_) => return Ok(Datagram::Done { interrupted: *interrupted }),
            NetlinkPayload::Error(e) if e.code.is_some() => return Err(Cause::Os(e.to_io())),
            NetlinkPayload::Overrun(_) => *interrupted = true,
            _ => {}
        }
    }
    Ok(Datagram::More)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{DoneMessage, NetlinkHeader};
    use netlink_packet_route::link::LinkAttribute;

    fn link(seq: u32, index: u32, name: &str) -> NetlinkMessage<RouteNetlinkMessage> {
        let mut l = LinkMessage::default();
        l.header.index = index;
        l.attributes.push(LinkAttribute::IfName(name.into()));
        let mut m = NetlinkMessage::from(RouteNetlinkMessage::NewLink(l));
        m.header.sequence_number = seq;
        m
    }

    fn done(seq: u32, flags: u16) -> NetlinkMessage<RouteNetlinkMessage> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = seq;
        header.flags = flags;
        let mut m = NetlinkMessage::new(header, NetlinkPayload::Done(DoneMessage::default()));
        m.finalize();
        m
    }

    fn datagram(msgs: Vec<NetlinkMessage<RouteNetlinkMessage>>) -> Vec<u8> {
        let mut out = Vec::new();
        for mut m in msgs {
            m.finalize();
            let mut b = vec![0; m.buffer_len()];
            m.serialize(&mut b);
            out.extend_from_slice(&b);
            out.resize((out.len() + 3) & !3, 0);
        }
        out
    }

    fn names(m: RouteNetlinkMessage) -> Option<String> {
        match m {
            RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            }),
            _ => None,
        }
    }

    #[test]
    fn a_datagram_is_summed_up_message_by_message_and_other_dumps_are_skipped() {
        let d = datagram(vec![link(7, 1, "lo"), link(6, 2, "stale"), link(7, 3, "br-x")]);
        let (mut out, mut intr) = (vec![], false);
        let r = parse(&d, 7, &mut intr, &mut names, &mut out).unwrap();
        assert!(matches!(r, Datagram::More));
        assert_eq!(out, ["lo", "br-x"]);
        assert!(!intr);

        let d = datagram(vec![link(7, 4, "veth1"), done(7, NLM_F_DUMP_INTR)]);
        let r = parse(&d, 7, &mut intr, &mut names, &mut out).unwrap();
        assert!(matches!(r, Datagram::Done { interrupted: true }));
        assert_eq!(out, ["lo", "br-x", "veth1"]);
    }

    #[test]
    fn a_done_of_another_dump_does_not_end_this_one() {
        let d = datagram(vec![done(3, 0), link(4, 1, "lo")]);
        let (mut out, mut intr) = (vec![], false);
        assert!(matches!(parse(&d, 4, &mut intr, &mut names, &mut out), Ok(Datagram::More)));
        assert_eq!(out, ["lo"]);
        assert!(parse(&[1, 2, 3], 4, &mut intr, &mut names, &mut out).is_err());
    }
}
