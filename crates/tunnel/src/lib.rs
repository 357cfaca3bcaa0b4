// SPDX-License-Identifier: Apache-2.0
//! Encrypted transport between nodes: the WireGuard protocol in userspace (boringtun's
//! `noise` module) over a TUN device, for overlay networks opened with `--opt encrypted`.
//!
//! A node has one [`Tunnel`]: a TUN device (`cvwg0`) holding the node's tunnel address, and
//! a UDP socket on the underlay (port 51820). The kernel's VXLAN device of an encrypted
//! network uses the tunnel address as its `local` and peers' tunnel addresses as forwarding
//! destinations, so its datagrams are routed into the TUN device; the tunnel encrypts them
//! for the peer that owns the destination and sends them over the underlay, and writes what
//! it decrypts back into the TUN device (see docs/adr/0019-userspace-wireguard-tunnel.md).
//!
//! Where the kernel offers them, the TUN device runs with offloads (`IFF_VNET_HDR`): reads
//! return super-packets of up to 64 KiB, segmented here before encryption, and decrypted
//! packets of one flow are coalesced into one write ([`Tunnel::offloads`]).
//!
//! Security properties this crate keeps:
//! * cryptokey routing both ways: an inner packet goes only to the peer owning its
//!   destination, and is accepted from a peer only if its source is that peer's address;
//! * a handshake from a key outside the peer set creates no session and gets no answer;
//! * the TUN device is not persistent: when the process dies the device goes, and with it
//!   the route to the tunnel addresses (a blackhole route installed by the daemon then
//!   swallows VXLAN to tunnel addresses instead of the default route sending it in clear).
#![warn(missing_docs)]

mod batch;
mod datapath;
mod device;
mod error;
mod gro;
mod keys;
mod offload;
mod peers;
mod stats;

use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::SystemTime;

use ipnet::IpNet;

pub use error::TunnelError;
pub use keys::{PrivateKey, PublicKey};
pub use peers::Peer;
pub use stats::{Drops, PeerStats, TunnelStats};

use datapath::Shared;

/// A datapath thread's body.
type Loop = fn(&Shared);
use peers::{Identity, PeerTable};

/// WireGuard's registered port, Cove's default for `--encryption-port`.
pub const DEFAULT_PORT: u16 = 51820;

/// Bytes WireGuard adds to an inner packet on an IPv6 underlay (40 IP + 8 UDP + 32
/// WireGuard): the TUN device's MTU is the underlay's minus this (1420 on 1500).
pub const OVERHEAD: u32 = 80;

/// Which TUN offloads a tunnel runs with (see docs/adr/0019-userspace-wireguard-tunnel.md).
/// With none, every inner packet costs one `read` or `write` on the TUN device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Offloads {
    /// The device carries a `virtio_net_hdr` (`IFF_VNET_HDR`): the kernel hands over
    /// super-packets and takes coalesced ones.
    pub vnet_hdr: bool,
    /// TCP segmentation offload (`TUN_F_TSO4/6`): TCP super-packets of up to 64 KiB.
    pub tso: bool,
    /// UDP segmentation offload (`TUN_F_USO4/6`, Linux 6.2+).
    pub uso: bool,
    /// Segmentation offload inside UDP tunnels (`TUN_F_UDP_TUNNEL_GSO`, Linux 6.17+): the
    /// encrypted overlay's VXLAN arrives as super-packets. (It leaves towards the kernel as
    /// UDP super-packets: the kernel refuses tunnel ones on a layer-3 TUN device.)
    pub udp_tunnel: bool,
}

/// How to build a tunnel.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// The network namespace (a bind-mounted netns file) to create the device and socket
    /// in; `None` for the calling thread's.
    pub netns: Option<PathBuf>,
    /// The TUN device's name (`cvwg0`).
    pub ifname: String,
    /// The node's tunnel address with the pool's prefix length (`10.255.0.1/16`): the
    /// connected route to the pool goes through the device.
    pub tunnel_addr: IpNet,
    /// The device's MTU: the underlay's minus [`OVERHEAD`].
    pub mtu: u32,
    /// The underlay address and port to receive on (`203.0.113.11:51820`).
    pub listen: SocketAddr,
    /// The node's static private key.
    pub key: PrivateKey,
}

/// A running tunnel. Dropping it stops its threads and closes the TUN device, which removes
/// the device (and its routes) from the kernel.
pub struct Tunnel {
    shared: Arc<Shared>,
    /// Serialises peer-set and key changes (the datapath never takes it).
    config: Mutex<()>,
    next_index: AtomicU32,
    threads: Vec<JoinHandle<()>>,
    ifname: String,
    ifindex: u32,
    started: SystemTime,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel")
            .field("ifname", &self.ifname)
            .field("ifindex", &self.ifindex)
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// Create the TUN device and the UDP socket in the configured namespace and start the
    /// datapath threads, with no peers yet (every outbound packet is dropped as having no
    /// peer until [`Tunnel::set_peers`]).
    ///
    /// The TUN device takes every offload the kernel offers ([`Tunnel::offloads`]), and
    /// falls back to one packet per system call where it offers none.
    pub fn start(config: TunnelConfig) -> Result<Tunnel, TunnelError> {
        Tunnel::start_with(config, true)
    }

    /// [`Tunnel::start`] without TUN offloads: one inner packet per `read` and `write` of
    /// the TUN device, the path a kernel without offloads gets (for tests and comparison).
    pub fn start_without_offloads(config: TunnelConfig) -> Result<Tunnel, TunnelError> {
        Tunnel::start_with(config, false)
    }

    fn start_with(config: TunnelConfig, offload: bool) -> Result<Tunnel, TunnelError> {
        if config.mtu < 1280 || config.mtu > 65_535 - OVERHEAD {
            return Err(TunnelError::Config(format!(
                "MTU {} is outside 1280..={}",
                config.mtu,
                65_535 - OVERHEAD
            )));
        }
        let spec = device::DeviceSpec {
            netns: config.netns.clone(),
            ifname: config.ifname.clone(),
            addr: config.tunnel_addr,
            mtu: config.mtu,
            listen: config.listen,
            offload,
        };
        let handles = device::open(&spec)?;
        // SAFETY: eventfd(2) with valid flags; a non-negative result is a new fd we own.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(TunnelError::Thread {
                name: "eventfd".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: `wake` was just returned by eventfd and is owned by nothing else.
        let wake = unsafe { OwnedFd::from_raw_fd(wake) };
        let shared = Arc::new(Shared {
            tun: handles.tun,
            udp: handles.udp,
            wake,
            stopping: AtomicBool::new(false),
            table: RwLock::new(Arc::new(PeerTable::default())),
            identity: RwLock::new(Arc::new(Identity::new(config.key))),
            drops: Default::default(),
            tun_writes: AtomicU64::new(0),
            tun_reads: AtomicU64::new(0),
            tun_read_calls: AtomicU64::new(0),
            tun_write_calls: AtomicU64::new(0),
            offloads: handles.offloads,
        });
        let mut tunnel = Tunnel {
            shared,
            config: Mutex::new(()),
            next_index: AtomicU32::new(random_u32()),
            threads: Vec::new(),
            ifname: config.ifname,
            ifindex: handles.ifindex,
            started: SystemTime::now(),
        };
        let loops: [(&str, Loop); 3] = [
            ("cvwg-out", datapath::outbound),
            ("cvwg-in", datapath::inbound),
            ("cvwg-timers", datapath::timers),
        ];
        for (name, f) in loops {
            let sh = tunnel.shared.clone();
            let t = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || f(&sh))
                .map_err(|source| TunnelError::Thread { name: name.into(), source })?;
            tunnel.threads.push(t);
        }
        tracing::info!(
            "tunnel {} up: {} on {}, key {}, offloads {:?}",
            tunnel.ifname,
            config.tunnel_addr,
            config.listen,
            tunnel.public_key(),
            handles.offloads,
        );
        Ok(tunnel)
    }

    /// Replace the peer set. Peers whose key and allowed IP are unchanged keep their session
    /// (an endpoint change applies at once); a new or re-keyed peer gets a fresh session
    /// state and a handshake is started with it right away, so traffic resumes within one
    /// handshake. A removed peer's sessions are gone: its datagrams are refused.
    pub fn set_peers(&self, peers: &[Peer]) -> Result<(), TunnelError> {
        let _config = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let id = self.shared.identity();
        let old = self.shared.table();
        let (table, fresh) = PeerTable::rebuild(&old, peers, &id, &self.next_index)?;
        *self.shared.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        let mut buf = [0u8; 256];
        for e in &fresh {
            self.shared.initiate(e, &mut buf);
        }
        Ok(())
    }

    /// Replace this node's static key (rotation). Every session is dropped and a handshake
    /// with the new key is started with every peer; peers must be given the new public key
    /// ([`Tunnel::public_key`]) through their own `set_peers`. Whichever side learns of the
    /// change last completes the handshake.
    pub fn set_key(&self, key: PrivateKey) {
        let _config = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let id = Arc::new(Identity::new(key));
        *self.shared.identity.write().unwrap_or_else(|e| e.into_inner()) = id.clone();
        let table = self.shared.table();
        let mut buf = [0u8; 256];
        for e in &table.entries {
            e.state.tunn().set_static_private(id.key.secret().clone(), id.public, None);
            self.shared.initiate(e, &mut buf);
        }
        tracing::info!("tunnel {}: new key {}", self.ifname, self.public_key());
    }

    /// The TUN offloads in use.
    pub fn offloads(&self) -> Offloads {
        self.shared.offloads
    }

    /// This node's current public key.
    pub fn public_key(&self) -> PublicKey {
        self.shared.identity().key.public_key()
    }

    /// The TUN device's name.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// The TUN device's interface index (in the tunnel's namespace).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> TunnelStats {
        let table = self.shared.table();
        let now = SystemTime::now();
        let peers = table
            .entries
            .iter()
            .map(|e| {
                let (since, ..) = e.state.tunn().stats();
                let c = &e.state.counters;
                PeerStats {
                    public_key: e.state.public_key,
                    endpoint: e.endpoint,
                    allowed_ip: e.state.allowed_ip,
                    last_handshake: since
                        .and_then(|d| now.checked_sub(d))
                        .map(|t| t.max(self.started)),
                    handshakes: c.handshakes.load(Relaxed),
                    rx_bytes: c.rx_bytes.load(Relaxed),
                    rx_packets: c.rx_packets.load(Relaxed),
                    tx_bytes: c.tx_bytes.load(Relaxed),
                    tx_packets: c.tx_packets.load(Relaxed),
                }
            })
            .collect();
        TunnelStats {
            public_key: self.public_key(),
            peers,
            drops: self.shared.drops.snapshot(),
            tun_writes: self.shared.tun_writes.load(Relaxed),
            tun_reads: self.shared.tun_reads.load(Relaxed),
            tun_read_calls: self.shared.tun_read_calls.load(Relaxed),
            tun_write_calls: self.shared.tun_write_calls.load(Relaxed),
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Relaxed);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one` to the eventfd, which `shared` keeps open.
        unsafe {
            libc::write(
                std::os::fd::AsRawFd::as_raw_fd(&self.shared.wake),
                (&raw const one).cast(),
                8,
            )
        };
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // The threads held the only other references: the TUN fd closes with this one,
        // and the kernel removes the device.
        tracing::info!("tunnel {} down", self.ifname);
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: fills the 4 bytes of `b`; on failure `b` stays zero, which is still a valid
    // starting index (indices need to be unique, not secret).
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), 4, 0) };
    u32::from_ne_bytes(b)
}
