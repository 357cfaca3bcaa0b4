// SPDX-License-Identifier: Apache-2.0
//! The peer set: one WireGuard session state (`Tunn`) per peer, found by inner address
//! (outbound), by session index (inbound data) or by static key (inbound handshakes).
//!
//! The table itself is immutable; a change builds a new one and swaps it in, so the
//! datapath threads read it without a lock (they take a snapshot per batch). A peer whose
//! key and allowed IP did not change keeps its session state across a swap.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::Tunn;

use crate::error::TunnelError;
use crate::keys::{PrivateKey, PublicKey};
use crate::stats::PeerCounters;

/// Handshake initiations per second the node answers before it asks for cookies (the
/// load defence of WireGuard §5.3); boringtun's device uses 100.
const HANDSHAKES_PER_SECOND: u64 = 100;

/// A peer as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The peer's static public key.
    pub public_key: PublicKey,
    /// The peer's underlay address and port; data for it goes there.
    pub endpoint: SocketAddr,
    /// The one inner address the peer owns (a tunnel IP, as a /32 or /128): packets to it
    /// go to this peer, and packets from this peer must come from it.
    pub allowed_ip: IpAddr,
}

/// This node's identity: its key and the handshake limiter keyed by it.
pub(crate) struct Identity {
    pub(crate) key: PrivateKey,
    pub(crate) public: boringtun::x25519::PublicKey,
    /// Checks MAC1 (which only someone who knows our public key can compute) and the
    /// handshake rate before any Diffie-Hellman is spent on an initiation.
    pub(crate) limiter: RateLimiter,
}

impl Identity {
    pub(crate) fn new(key: PrivateKey) -> Identity {
        let public = key.public_key().x25519();
        Identity { limiter: RateLimiter::new(&public, HANDSHAKES_PER_SECOND), key, public }
    }
}

/// One peer's live state.
pub(crate) struct PeerState {
    pub(crate) public_key: PublicKey,
    pub(crate) allowed_ip: IpAddr,
    /// The high 24 bits of every session index of this peer's `Tunn`.
    pub(crate) index: u32,
    tunn: Mutex<Tunn>,
    pub(crate) counters: PeerCounters,
}

impl PeerState {
    /// The session state. A poisoned lock (a panic in boringtun) is taken over: the state
    /// is at worst a broken session, which the protocol's timers replace.
    pub(crate) fn tunn(&self) -> MutexGuard<'_, Tunn> {
        self.tunn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A peer in the current table: its state and where to send.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) state: Arc<PeerState>,
    pub(crate) endpoint: SocketAddr,
}

/// The peer set, indexed three ways.
#[derive(Default)]
pub(crate) struct PeerTable {
    pub(crate) entries: Vec<Entry>,
    by_ip: HashMap<IpAddr, usize>,
    by_index: HashMap<u32, usize>,
    by_key: HashMap<PublicKey, usize>,
}

impl PeerTable {
    /// The peer owning the inner address `ip`.
    pub(crate) fn by_ip(&self, ip: IpAddr) -> Option<&Entry> {
        self.by_ip.get(&ip).map(|&i| &self.entries[i])
    }

    /// The peer whose session index is `receiver_idx` (its high 24 bits name the peer).
    pub(crate) fn by_session(&self, receiver_idx: u32) -> Option<&Entry> {
        self.by_index.get(&(receiver_idx >> 8)).map(|&i| &self.entries[i])
    }

    /// The peer with this static key.
    pub(crate) fn by_key(&self, key: &PublicKey) -> Option<&Entry> {
        self.by_key.get(key).map(|&i| &self.entries[i])
    }

    /// A table for `peers`, keeping the state of each peer of `old` whose key and allowed IP
    /// are unchanged. Returns it and the peers that got a fresh session state (new or
    /// replaced), which should start a handshake.
    pub(crate) fn rebuild(
        old: &PeerTable,
        peers: &[Peer],
        id: &Identity,
        next_index: &AtomicU32,
    ) -> Result<(PeerTable, Vec<Entry>), TunnelError> {
        let mut t = PeerTable::default();
        let mut fresh = Vec::new();
        for p in peers {
            if t.by_key.contains_key(&p.public_key) {
                return Err(TunnelError::Config(format!("peer {} listed twice", p.public_key)));
            }
            if t.by_ip.contains_key(&p.allowed_ip) {
                return Err(TunnelError::Config(format!(
                    "allowed IP {} given to two peers",
                    p.allowed_ip
                )));
            }
            let kept = old
                .by_key(&p.public_key)
                .filter(|e| e.state.allowed_ip == p.allowed_ip)
                .map(|e| e.state.clone());
            let state = match kept {
                Some(s) => s,
                None => {
                    let index = free_index(old, &t, next_index);
                    let tunn = Tunn::new(
                        id.key.secret().clone(),
                        p.public_key.x25519(),
                        None,
                        None,
                        index,
                        None,
                    );
                    Arc::new(PeerState {
                        public_key: p.public_key,
                        allowed_ip: p.allowed_ip,
                        index,
                        tunn: Mutex::new(tunn),
                        counters: PeerCounters::default(),
                    })
                }
            };
            let entry = Entry { state, endpoint: p.endpoint };
            if kept_state_is_new(old, &entry) {
                fresh.push(entry.clone());
            }
            let i = t.entries.len();
            t.by_key.insert(p.public_key, i);
            t.by_ip.insert(p.allowed_ip, i);
            t.by_index.insert(entry.state.index, i);
            t.entries.push(entry);
        }
        Ok((t, fresh))
    }
}

/// Whether `entry`'s state was made for this table (not carried over from `old`).
fn kept_state_is_new(old: &PeerTable, entry: &Entry) -> bool {
    old.by_index
        .get(&entry.state.index)
        .is_none_or(|&i| !Arc::ptr_eq(&old.entries[i].state, &entry.state))
}

/// A 24-bit peer index used by neither table: a session index of a removed peer must not
/// reach a new one (its datagrams would be refused anyway, but counted wrongly).
fn free_index(old: &PeerTable, new: &PeerTable, next: &AtomicU32) -> u32 {
    loop {
        let i = next.fetch_add(1, Relaxed) & 0x00ff_ffff;
        if !old.by_index.contains_key(&i) && !new.by_index.contains_key(&i) {
            return i;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> (PrivateKey, Peer) {
        let k = PrivateKey::generate().unwrap();
        let p = Peer {
            public_key: k.public_key(),
            endpoint: format!("203.0.113.{n}:51820").parse().unwrap(),
            allowed_ip: format!("10.255.0.{n}").parse().unwrap(),
        };
        (k, p)
    }

    #[test]
    fn lookups_and_carry_over() {
        let id = Identity::new(PrivateKey::generate().unwrap());
        let next = AtomicU32::new(7);
        let (_, a) = peer(2);
        let (_, b) = peer(3);
        let (t1, fresh) =
            PeerTable::rebuild(&PeerTable::default(), &[a.clone(), b.clone()], &id, &next).unwrap();
        assert_eq!(fresh.len(), 2);
        let ea = t1.by_ip(a.allowed_ip).unwrap();
        assert_eq!(ea.state.public_key, a.public_key);
        assert!(Arc::ptr_eq(&t1.by_key(&a.public_key).unwrap().state, &ea.state));
        assert!(Arc::ptr_eq(&t1.by_session((ea.state.index << 8) | 3).unwrap().state, &ea.state));
        assert!(t1.by_ip("10.255.0.9".parse().unwrap()).is_none());

        // b moves (new endpoint): same state; a's key is replaced: fresh state, new index.
        let (_, a2) = peer(2);
        let b2 = Peer { endpoint: "203.0.113.33:51820".parse().unwrap(), ..b.clone() };
        let (t2, fresh) = PeerTable::rebuild(&t1, &[a2.clone(), b2.clone()], &id, &next).unwrap();
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].state.public_key, a2.public_key);
        let eb = t2.by_ip(b.allowed_ip).unwrap();
        assert!(Arc::ptr_eq(&eb.state, &t1.by_ip(b.allowed_ip).unwrap().state));
        assert_eq!(eb.endpoint, b2.endpoint);
        assert!(t2.by_key(&a.public_key).is_none());
        assert!(t2.by_session(ea.state.index << 8).is_none(), "the old index is gone");
        assert_ne!(t2.by_ip(a.allowed_ip).unwrap().state.index, ea.state.index);
    }

    #[test]
    fn duplicates_are_refused() {
        let id = Identity::new(PrivateKey::generate().unwrap());
        let next = AtomicU32::new(0);
        let (_, a) = peer(2);
        let (_, b) = peer(3);
        let same_ip = Peer { allowed_ip: a.allowed_ip, ..b };
        let e = PeerTable::rebuild(&PeerTable::default(), &[a.clone(), same_ip], &id, &next);
        assert!(matches!(e, Err(TunnelError::Config(m)) if m.contains("10.255.0.2")));
        let e = PeerTable::rebuild(&PeerTable::default(), &[a.clone(), a], &id, &next);
        assert!(matches!(e, Err(TunnelError::Config(m)) if m.contains("twice")));
    }
}
