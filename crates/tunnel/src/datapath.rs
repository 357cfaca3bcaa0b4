// SPDX-License-Identifier: Apache-2.0
//! The three loops of a tunnel, each on an OS thread of its own (never on the tokio
//! runtime: they block in `poll`, and they must not compete with the daemon's API):
//!
//! * `outbound`: reads inner packets from the TUN device, finds the peer owning the inner
//!   destination, encrypts, and sends the batch with one `sendmmsg`;
//! * `inbound`: receives datagrams with `recvmmsg`, finds the peer (by session index, or by
//!   the static key inside a handshake initiation), decrypts, and writes the inner packet to
//!   the TUN device only if its source is that peer's allowed IP;
//! * `timers`: drives each session's timers (rekey, retries, keepalives, expiry) every
//!   [`TICK`].
//!
//! A peer's session state is behind a mutex that `outbound`, `inbound` and `timers` take for
//! one packet at a time.
//!
//! With TUN offloads (the device opened with a virtio header), a read can return a
//! super-packet, which `outbound` segments ([`crate::offload`]) and encrypts segment by
//! segment into the same batch; `inbound` decrypts a whole `recvmmsg` batch into
//! [`Gro`], which coalesces the packets of each TCP or UDP flow, and writes each result
//! once.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};

use crate::batch::{canonical, Batch, DATAGRAM};
use crate::gro::Gro;
use crate::offload::{segment, VnetHdr, VNET_HDR_LEN};
use crate::peers::{Entry, Identity, PeerTable};
use crate::stats::{bump, DropCounters};
use crate::Offloads;

/// How often session timers run. WireGuard's timers have a resolution of seconds (rekey
/// after 120 s, retry after 5 s, keepalive after 10 s); boringtun's device ticks every
/// 250 ms. 100 ms keeps a retried handshake prompt at negligible cost.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// State shared by the threads and the [`crate::Tunnel`] handle.
pub(crate) struct Shared {
    pub(crate) tun: OwnedFd,
    pub(crate) udp: UdpSocket,
    /// An eventfd written once to wake every thread for the stop.
    pub(crate) wake: OwnedFd,
    pub(crate) stopping: AtomicBool,
    pub(crate) table: RwLock<Arc<PeerTable>>,
    pub(crate) identity: RwLock<Arc<Identity>>,
    pub(crate) drops: DropCounters,
    /// Inner packets written to the TUN device.
    pub(crate) tun_writes: AtomicU64,
    /// Inner packets read from the TUN device.
    pub(crate) tun_reads: AtomicU64,
    pub(crate) tun_read_calls: AtomicU64,
    pub(crate) tun_write_calls: AtomicU64,
    pub(crate) offloads: Offloads,
}

impl Shared {
    pub(crate) fn table(&self) -> Arc<PeerTable> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn identity(&self) -> Arc<Identity> {
        self.identity.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Send one datagram now (handshakes, cookies, timer output); a failure is counted.
    pub(crate) fn send_to(&self, packet: &[u8], to: SocketAddr) {
        if let Err(e) = self.udp.send_to(packet, to) {
            tracing::trace!("send to {to}: {e}");
            bump(&self.drops.send_failed);
        }
    }

    /// Start a handshake with `entry` now, even if one is in progress (its key changed).
    pub(crate) fn initiate(&self, entry: &Entry, buf: &mut [u8]) {
        let mut tunn = entry.state.tunn();
        if let TunnResult::WriteToNetwork(p) = tunn.format_handshake_initiation(buf, true) {
            self.send_to(p, entry.endpoint);
        }
    }

    /// Wait until `fd` is readable or the stop is signalled; false when stopping.
    fn wait(&self, fd: RawFd, timeout: Duration) -> bool {
        let mut fds = [
            libc::pollfd { fd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: self.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: two valid pollfds in a live array; the count matches.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        !self.stopping.load(Relaxed)
    }

    /// One `write` to the TUN device carrying `packets` inner packets.
    fn write_tun(&self, buf: &[u8], packets: usize) -> bool {
        // Counted before the call, as the peer's `rx_packets` are: a receiver woken by the
        // write may read the stats before this thread returns from it.
        self.tun_writes.fetch_add(packets as u64, Relaxed);
        bump(&self.tun_write_calls);
        loop {
            // SAFETY: the pointer and length describe `buf`; the fd lives as long as self.
            let rc = unsafe { libc::write(self.tun.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
            if rc >= 0 {
                return true;
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::trace!("write to the TUN device: {e}");
                self.tun_writes.fetch_sub(packets as u64, Relaxed);
                self.drops.tun_write_failed.fetch_add(packets as u64, Relaxed);
                return false;
            }
        }
    }
}

/// TUN device -> peers.
pub(crate) fn outbound(sh: &Shared) {
    let mut out = Batch::new();
    // Room for the virtio header and the largest super-packet.
    let mut packet = vec![0u8; VNET_HDR_LEN + DATAGRAM];
    let mut scratch = vec![0u8; DATAGRAM];
    let tun = sh.tun.as_raw_fd();
    let vnet = sh.offloads.vnet_hdr;
    'run: while sh.wait(tun, Duration::from_secs(3600)) {
        let table = sh.table();
        loop {
            // SAFETY: reading into `packet`, which is that many bytes long.
            let rc = unsafe { libc::read(tun, packet.as_mut_ptr().cast(), packet.len()) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EAGAIN) => break,
                    _ => {
                        tracing::warn!("read from the TUN device: {e}");
                        if sh.stopping.load(Relaxed) {
                            break 'run;
                        }
                        break;
                    }
                }
            }
            bump(&sh.tun_read_calls);
            let read = &mut packet[..rc as usize];
            if !vnet {
                bump(&sh.tun_reads);
                encrypt(sh, &table, read, &mut out);
                continue;
            }
            if read.len() < VNET_HDR_LEN {
                bump(&sh.drops.bad_super_packet);
                continue;
            }
            let (hdr, inner) = read.split_at_mut(VNET_HDR_LEN);
            let hdr = VnetHdr::parse(hdr);
            let res = segment(inner, &hdr, &mut scratch, |seg| {
                bump(&sh.tun_reads);
                encrypt(sh, &table, seg, &mut out);
            });
            if let Err(e) = res {
                tracing::debug!("super-packet from the TUN device ({hdr:?}): {e}");
                bump(&sh.drops.bad_super_packet);
            }
        }
        count_send(sh, &mut out);
    }
}

/// Encrypt one inner packet for the peer owning its destination into `out`, sending the
/// batch when it is full.
fn encrypt(sh: &Shared, table: &PeerTable, inner: &[u8], out: &mut Batch) {
    let Some(dst) = Tunn::dst_address(inner) else {
        bump(&sh.drops.not_ip);
        return;
    };
    let Some(peer) = table.by_ip(dst) else {
        bump(&sh.drops.no_peer_for_destination);
        return;
    };
    let c = &peer.state.counters;
    c.tx_packets.fetch_add(1, Relaxed);
    c.tx_bytes.fetch_add(inner.len() as u64, Relaxed);
    let res = peer.state.tunn().encapsulate(inner, out.next_buf());
    match res {
        TunnResult::WriteToNetwork(p) => {
            let len = p.len();
            out.push(len, peer.endpoint);
        }
        TunnResult::Err(e) => {
            tracing::trace!("encapsulate for {}: {e:?}", peer.state.public_key);
            sh.drops.refused(&e);
        }
        // Queued until the handshake completes.
        _ => {}
    }
    if out.is_full() {
        count_send(sh, out);
    }
}

fn count_send(sh: &Shared, out: &mut Batch) {
    if out.len > 0 {
        let failed = out.send(sh.udp.as_raw_fd());
        sh.drops.send_failed.fetch_add(failed as u64, Relaxed);
    }
}

/// Peers -> TUN device.
pub(crate) fn inbound(sh: &Shared) {
    let mut inb = Batch::new();
    let mut sink = Sink {
        gro: sh.offloads.vnet_hdr.then(|| Gro::new(sh.offloads.uso)),
        plain: vec![0u8; DATAGRAM],
    };
    let udp = sh.udp.as_raw_fd();
    while sh.wait(udp, Duration::from_secs(3600)) {
        loop {
            let n = match inb.recv(udp) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("receive on the tunnel socket: {e}");
                    break;
                }
            };
            let (table, id) = (sh.table(), sh.identity());
            for i in 0..n {
                let (datagrams, from) = inb.received(i);
                let Some(from) = from.map(canonical) else { continue };
                for datagram in datagrams {
                    receive(sh, &table, &id, datagram, from, &mut sink);
                }
            }
            sink.flush(sh);
        }
    }
}

/// Where decrypted packets go: coalesced, then written ([`Gro`]), or written one by one.
struct Sink {
    gro: Option<Gro>,
    plain: Vec<u8>,
}

impl Sink {
    /// The buffer to decrypt into.
    fn buf(&mut self, sh: &Shared) -> &mut [u8] {
        match &mut self.gro {
            Some(g) => {
                if g.is_full() {
                    g.flush(|(b, n)| sh.write_tun(b, n));
                }
                g.slot()
            }
            None => &mut self.plain,
        }
    }

    /// Deliver the first `len` bytes of [`Sink::buf`].
    fn deliver(&mut self, sh: &Shared, len: usize) -> bool {
        match &mut self.gro {
            Some(g) => {
                g.commit(len);
                true
            }
            None => sh.write_tun(&self.plain[..len], 1),
        }
    }

    fn flush(&mut self, sh: &Shared) {
        if let Some(g) = self.gro.as_mut().filter(|g| !g.is_empty()) {
            g.flush(|(b, n)| sh.write_tun(b, n));
        }
    }
}

/// One datagram from `from`.
fn receive(
    sh: &Shared,
    table: &PeerTable,
    id: &Identity,
    datagram: &[u8],
    from: SocketAddr,
    sink: &mut Sink,
) {
    let dst = sink.buf(sh);
    let Ok(packet) = Tunn::parse_incoming_packet(datagram) else {
        bump(&sh.drops.invalid);
        return;
    };
    let is_handshake = matches!(packet, Packet::HandshakeInit(_) | Packet::HandshakeResponse(_));
    let peer = match &packet {
        Packet::HandshakeInit(p) => {
            // MAC1 and the node-wide rate before spending a Diffie-Hellman on it; under load
            // the limiter answers with a cookie instead.
            match id.limiter.verify_packet(Some(from.ip()), datagram, dst) {
                Ok(_) => {}
                Err(TunnResult::WriteToNetwork(cookie)) => {
                    sh.send_to(cookie, from);
                    return;
                }
                Err(_) => {
                    bump(&sh.drops.invalid);
                    return;
                }
            }
            let Ok(half) = parse_handshake_anon(id.key.secret(), &id.public, p) else {
                bump(&sh.drops.invalid);
                return;
            };
            let key = crate::keys::PublicKey(half.peer_static_public);
            let Some(peer) = table.by_key(&key) else {
                tracing::debug!("handshake from {from} with unknown key {key}: dropped");
                bump(&sh.drops.unknown_peer_key);
                return;
            };
            peer
        }
        Packet::HandshakeResponse(p) => match table.by_session(p.receiver_idx) {
            Some(peer) => peer,
            None => return bump(&sh.drops.unknown_session),
        },
        Packet::PacketCookieReply(p) => match table.by_session(p.receiver_idx) {
            Some(peer) => peer,
            None => return bump(&sh.drops.unknown_session),
        },
        Packet::PacketData(p) => match table.by_session(p.receiver_idx) {
            Some(peer) => peer,
            None => return bump(&sh.drops.unknown_session),
        },
    };
    let state = &peer.state;
    let mut tunn = state.tunn();
    match tunn.decapsulate(Some(from.ip()), datagram, dst) {
        TunnResult::Done => {}
        TunnResult::Err(e) => {
            tracing::trace!("from {from} ({}): {e:?}", state.public_key);
            sh.drops.refused(&e);
        }
        TunnResult::WriteToNetwork(p) => {
            if is_handshake {
                bump(&state.counters.handshakes);
            }
            sh.send_to(p, from);
            // Packets queued while the handshake ran go out now.
            while let TunnResult::WriteToNetwork(p) = tunn.decapsulate(None, &[], dst) {
                sh.send_to(p, peer.endpoint);
            }
        }
        TunnResult::WriteToTunnelV4(p, src) => {
            let len = p.len();
            drop(tunn);
            deliver(sh, peer, IpAddr::V4(src), len, sink);
        }
        TunnResult::WriteToTunnelV6(p, src) => {
            let len = p.len();
            drop(tunn);
            deliver(sh, peer, IpAddr::V6(src), len, sink);
        }
    }
}

/// Cryptokey routing, inbound: only the peer's own address may appear as the source. The
/// packet is the first `len` bytes of the sink's buffer.
fn deliver(sh: &Shared, peer: &Entry, src: IpAddr, len: usize, sink: &mut Sink) {
    if src != peer.state.allowed_ip {
        tracing::debug!("{} sent a packet from {src}: dropped", peer.state.public_key);
        bump(&sh.drops.spoofed_source);
        return;
    }
    // Counted before the write (which a coalescing sink defers to the end of the batch);
    // a write that fails takes its packets back out of `tun_writes`, not out of these.
    let c = &peer.state.counters;
    c.rx_packets.fetch_add(1, Relaxed);
    c.rx_bytes.fetch_add(len as u64, Relaxed);
    if !sink.deliver(sh, len) {
        c.rx_packets.fetch_sub(1, Relaxed);
        c.rx_bytes.fetch_sub(len as u64, Relaxed);
    }
}

/// Session timers of every peer, and the node-wide handshake budget.
pub(crate) fn timers(sh: &Shared) {
    let mut buf = vec![0u8; DATAGRAM];
    let mut budget_reset = Instant::now();
    while sh.wait(sh.wake.as_raw_fd(), TICK) {
        let table = sh.table();
        for peer in &table.entries {
            let mut tunn = peer.state.tunn();
            match tunn.update_timers(&mut buf) {
                TunnResult::WriteToNetwork(p) => sh.send_to(p, peer.endpoint),
                TunnResult::Err(e) => tracing::trace!("timers of {}: {e:?}", peer.state.public_key),
                _ => {}
            }
        }
        if budget_reset.elapsed() >= Duration::from_secs(1) {
            sh.identity().limiter.reset_count();
            budget_reset = Instant::now();
        }
    }
}
