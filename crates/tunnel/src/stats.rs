// SPDX-License-Identifier: Apache-2.0
//! What a tunnel reports: per-peer traffic and handshakes, and packets dropped by reason.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::SystemTime;

use crate::keys::PublicKey;

/// A snapshot of a tunnel's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelStats {
    /// This node's current public key.
    pub public_key: PublicKey,
    /// One entry per configured peer, in the order they were given.
    pub peers: Vec<PeerStats>,
    /// Packets dropped, by reason, since the tunnel started.
    pub drops: Drops,
    /// Inner packets written to the TUN device (all peers).
    pub tun_writes: u64,
    /// Inner packets read from the TUN device (segments of super-packets counted one by
    /// one).
    pub tun_reads: u64,
    /// `read` calls on the TUN device that returned a packet: below [`Self::tun_reads`]
    /// when the kernel hands over super-packets.
    pub tun_read_calls: u64,
    /// `write` calls on the TUN device: below [`Self::tun_writes`] when decrypted segments
    /// are coalesced.
    pub tun_write_calls: u64,
}

/// One peer's counters. Bytes are inner (IP packet) bytes, not UDP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer's public key.
    pub public_key: PublicKey,
    /// Where its datagrams go.
    pub endpoint: SocketAddr,
    /// The one inner address it may use.
    pub allowed_ip: IpAddr,
    /// When its current session was established, to within the timer tick (boringtun's
    /// session clock advances with it); `None` before the first handshake and after the
    /// sessions were dropped (a key change).
    pub last_handshake: Option<SystemTime>,
    /// Handshakes completed with it (as initiator or responder) since it was configured.
    pub handshakes: u64,
    /// Inner bytes received from it and written to the TUN device.
    pub rx_bytes: u64,
    /// Inner packets received from it and written to the TUN device.
    pub rx_packets: u64,
    /// Inner bytes read from the TUN device for it (sent, or queued until a handshake).
    pub tx_bytes: u64,
    /// Inner packets read from the TUN device for it.
    pub tx_packets: u64,
}

/// Packets dropped, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drops {
    /// Read from the TUN device for an inner destination no peer owns (cryptokey routing,
    /// outbound).
    pub no_peer_for_destination: u64,
    /// Read from the TUN device but not an IPv4/IPv6 packet.
    pub not_ip: u64,
    /// A handshake initiation from a static key that is not in the peer set (no session
    /// is created, no answer sent).
    pub unknown_peer_key: u64,
    /// A handshake response, cookie or data packet for a session index no peer has (an old
    /// session of a removed or replaced peer, or garbage).
    pub unknown_session: u64,
    /// A decrypted inner packet whose source is not the sending peer's allowed IP
    /// (cryptokey routing, inbound): not written to the TUN device.
    pub spoofed_source: u64,
    /// A datagram that is no WireGuard message, fails its MAC or its decryption: garbage or
    /// forgery.
    pub invalid: u64,
    /// An authentic-looking datagram the session state refuses: a replayed or too-old
    /// counter or handshake timestamp, an answer to a handshake no longer in progress (both
    /// sides initiating at once), data for a session not yet or no longer there. A few are
    /// normal around handshakes; many mean replays.
    pub stale: u64,
    /// A datagram the UDP socket refused to send.
    pub send_failed: u64,
    /// An inner packet the TUN device refused.
    pub tun_write_failed: u64,
    /// A super-packet read from the TUN device that could not be segmented (a virtio
    /// header this crate does not understand).
    pub bad_super_packet: u64,
}

/// The live counters behind [`Drops`].
#[derive(Debug, Default)]
pub(crate) struct DropCounters {
    pub(crate) no_peer_for_destination: AtomicU64,
    pub(crate) not_ip: AtomicU64,
    pub(crate) unknown_peer_key: AtomicU64,
    pub(crate) unknown_session: AtomicU64,
    pub(crate) spoofed_source: AtomicU64,
    pub(crate) invalid: AtomicU64,
    pub(crate) stale: AtomicU64,
    pub(crate) send_failed: AtomicU64,
    pub(crate) tun_write_failed: AtomicU64,
    pub(crate) bad_super_packet: AtomicU64,
}

impl DropCounters {
    pub(crate) fn snapshot(&self) -> Drops {
        Drops {
            no_peer_for_destination: self.no_peer_for_destination.load(Relaxed),
            not_ip: self.not_ip.load(Relaxed),
            unknown_peer_key: self.unknown_peer_key.load(Relaxed),
            unknown_session: self.unknown_session.load(Relaxed),
            spoofed_source: self.spoofed_source.load(Relaxed),
            invalid: self.invalid.load(Relaxed),
            stale: self.stale.load(Relaxed),
            send_failed: self.send_failed.load(Relaxed),
            tun_write_failed: self.tun_write_failed.load(Relaxed),
            bad_super_packet: self.bad_super_packet.load(Relaxed),
        }
    }
}

/// The live per-peer counters.
#[derive(Debug, Default)]
pub(crate) struct PeerCounters {
    pub(crate) handshakes: AtomicU64,
    pub(crate) rx_bytes: AtomicU64,
    pub(crate) rx_packets: AtomicU64,
    pub(crate) tx_bytes: AtomicU64,
    pub(crate) tx_packets: AtomicU64,
}

impl DropCounters {
    /// Count a datagram boringtun refused, by why.
    pub(crate) fn refused(&self, e: &boringtun::noise::errors::WireGuardError) {
        use boringtun::noise::errors::WireGuardError as E;
        match e {
            E::UnexpectedPacket
            | E::WrongIndex
            | E::InvalidTai64nTimestamp
            | E::WrongTai64nTimestamp
            | E::InvalidCounter
            | E::DuplicateCounter
            | E::NoCurrentSession
            | E::ConnectionExpired
            | E::UnderLoad => bump(&self.stale),
            _ => bump(&self.invalid),
        }
    }
}

/// Add one to a counter.
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}
