//! DNS over TCP: the length-prefix framer and the per-connection tasks.
//!
//! Every connection runs in its own task (CVE-2024-8418: one slow client must not block
//! the others), reads until EOF/error/timeout and never loops without consuming input
//! (CVE-2026-35406: a length prefix followed by EOF must end the connection).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::{Outcome, Resolver, Transport};

/// Splits a TCP byte stream into DNS messages (RFC 1035 §4.2.2 two-byte length prefix).
///
/// Pure state machine, so the framing can be fuzzed on its own. Buffered data is at most
/// one partial message plus what was pushed since the last [`Framer::next_frame`] calls.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
}

/// Result of [`Framer::next_frame`].
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete message.
    Message(&'a [u8]),
    /// More bytes are needed.
    Incomplete,
    /// A zero length prefix: no DNS message is empty, so the connection should be closed.
    Invalid,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Takes the next complete message, if any.
    pub fn next_frame(&mut self) -> Frame<'_> {
        let rest = &self.buf[self.start..];
        let [hi, lo, ..] = *rest else {
            return Frame::Incomplete;
        };
        let len = u16::from_be_bytes([hi, lo]) as usize;
        if len == 0 {
            return Frame::Invalid;
        }
        if rest.len() < 2 + len {
            return Frame::Incomplete;
        }
        let at = self.start + 2;
        self.start = at + len;
        Frame::Message(&self.buf[at..at + len])
    }

    /// Bytes received but not yet returned as messages.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

pub(crate) async fn serve_tcp(
    resolver: Arc<Resolver>,
    sandbox: Arc<str>,
    listener: TcpListener,
    conn_permits: Arc<Semaphore>,
    inflight: Arc<Semaphore>,
) {
    // Owned here, so aborting this task (dropping the serve handle) aborts every connection.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => match conn_permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let conn = connection(resolver.clone(), sandbox.clone(), stream, permit, inflight.clone());
                        conns.spawn(conn);
                    }
                    Err(_) => {
                        resolver.stats.tcp_rejected.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                    }
                },
                Err(e) => {
                    // EMFILE and friends persist: back off instead of spinning.
                    tracing::debug!(error = %e, "dns tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn write_timeout(wr: &Mutex<OwnedWriteHalf>, data: &[u8], limit: Duration) -> bool {
    let write = async { wr.lock().await.write_all(data).await };
    matches!(tokio::time::timeout(limit, write).await, Ok(Ok(())))
}

fn push_framed(batch: &mut Vec<u8>, msg: &[u8]) {
    batch.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    batch.extend_from_slice(msg);
}

async fn connection(
    resolver: Arc<Resolver>,
    sandbox: Arc<str>,
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    inflight: Arc<Semaphore>,
) {
    let _ = stream.set_nodelay(true);
    let limit = resolver.config.tcp_timeout;
    let (mut rd, wr) = stream.into_split();
    let wr = Arc::new(Mutex::new(wr));
    let mut framer = Framer::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut out = Vec::with_capacity(4096);
    let mut batch = Vec::new();
    // The next query must be complete by this instant: a slow drip of bytes (slowloris)
    // does not extend it, only a complete query does.
    let mut deadline = Instant::now() + limit;
    loop {
        let mut close = false;
        loop {
            let msg = match framer.next_frame() {
                Frame::Message(m) => m,
                Frame::Incomplete => break,
                Frame::Invalid => {
                    close = true;
                    break;
                }
            };
            deadline = Instant::now() + limit;
            match resolver.respond(&sandbox, msg, Transport::Tcp, &mut out) {
                Outcome::Reply => push_framed(&mut batch, &out),
                Outcome::Drop => {
                    close = true;
                    break;
                }
                Outcome::Forward(plan) => match inflight.clone().try_acquire_owned() {
                    Ok(permit) => {
                        // Answered out of order when ready (RFC 7766 §6.2.1.1), so a slow
                        // upstream does not hold back the local answers behind it.
                        let query = msg.to_vec();
                        let weak = Arc::downgrade(&wr);
                        let resolver = resolver.clone();
                        tokio::spawn(async move {
                            let reply = resolver.forward(&plan, &query, Transport::Tcp).await;
                            drop(permit);
                            if let Some(wr) = weak.upgrade() {
                                let mut framed = Vec::with_capacity(reply.len() + 2);
                                push_framed(&mut framed, &reply);
                                write_timeout(&wr, &framed, limit).await;
                            }
                        });
                    }
                    Err(_) => {
                        resolver.refused(&plan, msg, &mut out);
                        push_framed(&mut batch, &out);
                    }
                },
            }
        }
        if !batch.is_empty() {
            if !write_timeout(&wr, &batch, limit).await {
                return;
            }
            batch.clear();
        }
        if close {
            return;
        }
        resolver.stats.tcp_reads.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => framer.push(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_splits_and_reassembles() {
        let mut f = Framer::new();
        f.push(&[0, 3, b'a']);
        assert_eq!(f.next_frame(), Frame::Incomplete);
        f.push(&[b'b', b'c', 0, 1, b'x', 0]);
        assert_eq!(f.next_frame(), Frame::Message(b"abc"));
        assert_eq!(f.next_frame(), Frame::Message(b"x"));
        assert_eq!(f.next_frame(), Frame::Incomplete);
        assert_eq!(f.pending(), 1);
        f.push(&[0]);
        assert_eq!(f.next_frame(), Frame::Invalid);
    }

    #[test]
    fn framer_prefix_only_stays_incomplete() {
        let mut f = Framer::new();
        f.push(&[0x00, 0x3c]);
        for _ in 0..3 {
            assert_eq!(f.next_frame(), Frame::Incomplete);
        }
        f.push(&[0xff]);
        assert_eq!(f.next_frame(), Frame::Incomplete);
    }
}
