//! The UDP serving loop of one sandbox socket.
//!
//! One task per socket. Datagrams are received and replies sent in batches with
//! `recvmmsg`/`sendmmsg` (one system call for up to [`BATCH`] messages when the client
//! keeps several queries in flight, the case that matters under load), into per-thread
//! buffers, so local answers cost no allocation and never wait on anything upstream.
//! Forwarded queries get their own task (bounded by the sandbox's in-flight semaphore)
//! holding only a weak reference to the socket, so dropping the serve handle closes the
//! socket at once.

use std::cell::RefCell;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;

use crate::{Outcome, Resolver, Transport};

/// Messages per system call.
const BATCH: usize = 32;
/// Receive slot per message. A query needs far less; a longer datagram arrives truncated
/// (MSG_TRUNC) and is dropped rather than misparsed.
const SLOT: usize = 4096;

/// One received datagram: length, source, truncated?
type Meta = (usize, Option<SockaddrStorage>, bool);

fn recv_batch(fd: RawFd, bufs: &mut [u8], meta: &mut Vec<Meta>) -> io::Result<()> {
    // Rebuilt per call: the headers hold raw pointers into `bufs` and must not be kept
    // across an await (they are not `Send`).
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
    let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
        bufs.chunks_mut(SLOT).map(|c| [IoSliceMut::new(c)]).collect();
    let got = recvmmsg(fd, &mut headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)?;
    meta.clear();
    meta.extend(got.map(|m| (m.bytes, m.address, m.flags.contains(MsgFlags::MSG_TRUNC))));
    Ok(())
}

fn send_batch(fd: RawFd, outs: &[Vec<u8>], dests: &[Option<SockaddrStorage>]) -> io::Result<usize> {
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(outs.len(), None);
    let iovs: Vec<[IoSlice<'_>; 1]> = outs.iter().map(|o| [IoSlice::new(o)]).collect();
    let cmsgs: [ControlMessage<'_>; 0] = [];
    let sent = sendmmsg(fd, &mut headers, &iovs, dests, cmsgs, MsgFlags::MSG_DONTWAIT)?;
    Ok(sent.count())
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

/// Receive and reply buffers. One per worker thread, not per socket, so that thousands
/// of sandboxes cost no buffer memory while idle; only borrowed in synchronous sections.
struct Scratch {
    bufs: Vec<u8>,
    meta: Vec<Meta>,
    outs: Vec<Vec<u8>>,
    dests: Vec<Option<SockaddrStorage>>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            bufs: vec![0u8; BATCH * SLOT],
            meta: Vec::with_capacity(BATCH),
            outs: (0..BATCH).map(|_| Vec::with_capacity(512)).collect(),
            dests: vec![None; BATCH],
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// Replies the batch send did not take, to be sent one by one.
type Leftover = Vec<(Vec<u8>, SocketAddr)>;

struct Ctx {
    resolver: Arc<Resolver>,
    sandbox: Arc<str>,
    sock: Arc<UdpSocket>,
    inflight: Arc<Semaphore>,
}

/// Receives one batch, answers it and sends the answers; never awaits.
fn step(cx: &Ctx, s: &mut Scratch) -> io::Result<Leftover> {
    let fd = cx.sock.as_raw_fd();
    cx.sock.try_io(Interest::READABLE, || recv_batch(fd, &mut s.bufs, &mut s.meta))?;
    let mut n = 0;
    for (i, &(len, addr, truncated)) in s.meta.iter().enumerate() {
        let Some(addr) = addr else { continue };
        if truncated {
            cx.resolver.stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let query = &s.bufs[i * SLOT..i * SLOT + len];
        match cx.resolver.respond(&cx.sandbox, query, Transport::Udp, &mut s.outs[n]) {
            Outcome::Reply => {
                s.dests[n] = Some(addr);
                n += 1;
            }
            Outcome::Drop => {}
            Outcome::Forward(plan) => {
                let Some(peer) = to_std(&addr) else { continue };
                match cx.inflight.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let query = query.to_vec();
                        let weak = Arc::downgrade(&cx.sock);
                        let resolver = cx.resolver.clone();
                        tokio::spawn(async move {
                            let reply = resolver.forward(&plan, &query, Transport::Udp).await;
                            drop(permit);
                            if let Some(sock) = weak.upgrade() {
                                let _ = sock.send_to(&reply, peer).await;
                            }
                        });
                    }
                    Err(_) => {
                        cx.resolver.refused(&plan, query, &mut s.outs[n]);
                        s.dests[n] = Some(addr);
                        n += 1;
                    }
                }
            }
        }
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let sent = send_batch(fd, &s.outs[..n], &s.dests[..n]).unwrap_or(0);
    // Whatever the batch did not take (full socket buffer, error) goes one by one.
    Ok(s.outs[sent..n]
        .iter()
        .zip(&s.dests[sent..n])
        .filter_map(|(out, dest)| Some((out.clone(), dest.as_ref().and_then(to_std)?)))
        .collect())
}

pub(crate) async fn serve_udp(
    resolver: Arc<Resolver>,
    sandbox: Arc<str>,
    sock: UdpSocket,
    inflight: Arc<Semaphore>,
) {
    let cx = Ctx { resolver, sandbox, sock: Arc::new(sock), inflight };
    loop {
        let result = match cx.sock.readable().await {
            Ok(()) => {
                SCRATCH.with(|cell| step(&cx, cell.borrow_mut().get_or_insert_with(Scratch::new)))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(leftover) => {
                for (out, peer) in leftover {
                    let _ = cx.sock.send_to(&out, peer).await;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                // E.g. ENOMEM or a stray ICMP error: back off so that a persistent error
                // cannot become a busy loop.
                tracing::debug!(error = %e, "dns udp recv failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
