//! Set element changes written straight over `NETLINK_NETFILTER`: one batch
//! (`NFNL_MSG_BATCH_BEGIN`, a `NFT_MSG_NEWSETELEM` / `NFT_MSG_DELSETELEM` per set, `..._END`),
//! one atomic transaction, sent and acknowledged from a thread of the daemon that owns the
//! socket. The hot path of every container start and stop; everything else (whole
//! rulesets, interval sets) still goes through `nft` ([`crate::nft`]).
//!
//! The kernel checks each element against its set (key and value lengths, existence), so a
//! malformed element is refused, never misapplied; the whole batch then aborts.

use std::sync::mpsc;
use std::time::Duration;

use cove_firewall::netlink::SetElements;
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket};
use tokio::sync::oneshot;
use tracing::debug;

use crate::error::{Cause, KernelError};

const NLMSG_HDRLEN: usize = 16;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;

/// A netlink message being built: header, `nfgenmsg`, attributes.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

impl Msg {
    fn new(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in `finish`
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&seq.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        buf.extend_from_slice(&[family, 0]); // nfgenmsg: family, NFNETLINK_V0
        buf.extend_from_slice(&res_id.to_be_bytes());
        Msg { buf, nests: vec![] }
    }

    fn pad(&mut self) {
        self.buf.resize(self.buf.len().div_ceil(4) * 4, 0);
    }

    fn attr(&mut self, kind: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    fn string(&mut self, kind: u16, s: &str) {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        self.attr(kind, &v);
    }

    fn begin(&mut self, kind: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
    }

    fn end(&mut self) {
        let at = self.nests.pop().expect("balanced nests");
        let len = (self.buf.len() - at) as u16;
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self, out: &mut Vec<u8>) {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&self.buf);
    }
}

/// The batch's bytes and the sequence numbers that ask for an acknowledgement.
pub(crate) fn encode(batch: &[SetElements], first_seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut out = Vec::new();
    let mut seq = first_seq;
    Msg::new(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES).finish(&mut out);
    let mut acked = vec![];
    for s in batch {
        seq += 1;
        let (op, flags) = if s.delete {
            (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
        } else {
            // As `nft add element`: an element already there as asked is not an error.
            (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
        };
        let mut m = Msg::new((NFNL_SUBSYS_NFTABLES << 8) | op, flags, seq, s.family, 0);
        m.string(NFTA_SET_ELEM_LIST_TABLE, s.table);
        m.string(NFTA_SET_ELEM_LIST_SET, s.set);
        m.begin(NFTA_SET_ELEM_LIST_ELEMENTS);
        for e in &s.elements {
            m.begin(NFTA_LIST_ELEM);
            m.begin(NFTA_SET_ELEM_KEY);
            m.attr(NFTA_DATA_VALUE, &e.key);
            m.end();
            if let Some(d) = &e.data {
                m.begin(NFTA_SET_ELEM_DATA);
                m.attr(NFTA_DATA_VALUE, d);
                m.end();
            }
            m.end();
        }
        m.end();
        m.finish(&mut out);
        acked.push(seq);
    }
    seq += 1;
    Msg::new(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES).finish(&mut out);
    (out, acked)
}

/// Reads acknowledgements until every sequence number in `waiting` has one; the first
/// error wins (the kernel aborted the whole batch).
fn read_acks(sock: &Socket, mut waiting: Vec<u32>) -> Result<(), Cause> {
    let mut first_error = None;
    while !waiting.is_empty() {
        let (buf, _) = sock.recv_from_full().map_err(Cause::from)?;
        let mut at = 0;
        while at + NLMSG_HDRLEN <= buf.len() {
            let word = |i: usize| u32::from_ne_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
            let len = word(at) as usize;
            let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
            let seq = word(at + 8);
            if len < NLMSG_HDRLEN || at + len > buf.len() {
                return Err(Cause::Protocol("truncated netlink reply".into()));
            }
            if kind == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 {
                let errno = -(word(at + NLMSG_HDRLEN) as i32);
                waiting.retain(|&s| s != seq);
                if errno != 0 && first_error.is_none() {
                    first_error = Some(Cause::from(std::io::Error::from_raw_os_error(errno)));
                }
            }
            at += len.div_ceil(4) * 4;
        }
    }
    first_error.map_or(Ok(()), Err)
}

type Request = (Vec<SetElements>, oneshot::Sender<Result<(), Cause>>);

/// The thread that owns the `NETLINK_NETFILTER` socket; element batches go to it.
#[derive(Debug)]
pub struct ElementWriter {
    tx: mpsc::Sender<Request>,
}

impl ElementWriter {
    /// Opens the socket (in the calling thread's network namespace) and starts the thread.
    /// Its thread id is recorded as Cove's own, so [`crate::nft::watch_foreign_changes`]
    /// does not take these transactions for tampering.
    pub fn spawn() -> Result<Self, KernelError> {
        let err = |c: Cause| KernelError::new("open NETLINK_NETFILTER socket", c);
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| err(e.into()))?;
        sock.bind_auto().map_err(|e| err(e.into()))?;
        // A kernel that never answers must not hang a container start.
        nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::from(libc::timeval { tv_sec: 5, tv_usec: 0 }),
        )
        .map_err(|e| err(Cause::from(std::io::Error::from(e))))?;
        let (tx, rx) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("cove-nfnl".into())
            .spawn(move || {
                let _ = ready_tx.send(nix::unistd::gettid().as_raw() as u32);
                let mut seq: u32 = 1;
                for (batch, reply) in rx {
                    let (bytes, acked) = encode(&batch, seq);
                    seq = seq.wrapping_add(batch.len() as u32 + 2);
                    let res = sock
                        .send(&bytes, 0)
                        .map_err(Cause::from)
                        .and_then(|_| read_acks(&sock, acked));
                    let _ = reply.send(res);
                }
            })
            .map_err(|e| err(e.into()))?;
        let tid = ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| err(Cause::Protocol("writer thread did not start".into())))?;
        crate::nft::remember_own(tid);
        crate::nft::remember_own(std::process::id());
        Ok(Self { tx })
    }

    /// Applies `batch` as one transaction: all of it or, on any error, none of it.
    pub async fn apply(&self, batch: Vec<SetElements>) -> Result<(), KernelError> {
        let ctx = "apply nftables element changes (netlink)";
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len();
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((batch, reply))
            .map_err(|_| KernelError::new(ctx, Cause::Protocol("writer thread gone".into())))?;
        rx.await
            .map_err(|_| KernelError::new(ctx, Cause::Protocol("writer thread gone".into())))?
            .map_err(|c| KernelError::new(ctx, c))?;
        debug!(sets = n, "nftables elements applied (netlink)");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_firewall::netlink::{Element, NFPROTO_BRIDGE};

    #[test]
    fn batch_layout() {
        // add element bridge cove guarded { "cv1" }
        let b = vec![SetElements {
            family: NFPROTO_BRIDGE,
            table: "cove",
            set: "guarded",
            delete: false,
            elements: vec![Element { key: b"cv1\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(), data: None }],
        }];
        let (bytes, acked) = encode(&b, 7);
        assert_eq!(acked, vec![8]);
        // begin (20 bytes) + message + end (20 bytes), each length-prefixed.
        let first = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(first, 20);
        let second = u32::from_ne_bytes(bytes[20..24].try_into().unwrap()) as usize;
        assert_eq!(bytes.len(), 20 + second + 20);
        assert_eq!(u16::from_ne_bytes([bytes[24], bytes[25]]), (10 << 8) | 12);
        assert_eq!(bytes[36], 7, "NFPROTO_BRIDGE");
        assert!(bytes.windows(16).any(|w| w == b"cv1\0\0\0\0\0\0\0\0\0\0\0\0\0"));
    }
}
