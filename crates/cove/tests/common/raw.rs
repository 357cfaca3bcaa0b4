//! Raw Ethernet frames, sent and caught with `AF_PACKET` sockets, for the probes ordinary
//! sockets cannot make: a LAN host addressing 127.0.0.1 to the host's MAC, a container
//! (with `CAP_NET_RAW`) forging its source, frames that are not IP at all.
//!
//! Senders and catchers run on a thread that has joined the target network namespace
//! (`Neighbour::in_netns`, `in_container_netns`, [`Catcher::start`]).

use std::ffi::CString;
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// An Ethernet address.
pub type Mac = [u8; 6];

/// EtherTypes used by the tests.
pub const ETH_IP: u16 = 0x0800;
pub const ETH_ARP: u16 = 0x0806;
pub const ETH_IP6: u16 = 0x86dd;
/// IEEE 802 "local experimental": a frame no stack handles.
pub const ETH_EXPERIMENTAL: u16 = 0x88b5;

/// Parse `02:42:0a:00:00:02`.
#[track_caller]
pub fn mac(s: &str) -> Mac {
    let v: Vec<u8> = s
        .trim()
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap_or_else(|_| panic!("not a MAC: {s:?}")))
        .collect();
    v.try_into().unwrap_or_else(|_| panic!("not a MAC: {s:?}"))
}

fn sum(data: &[u8], mut acc: u32) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// An Ethernet frame (padded to the 60-byte minimum).
pub fn ether(dst: Mac, src: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(64 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

/// An IPv4 packet (TTL 64, DF) around an L4 segment whose checksum is already set.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let len = (20 + l4.len()) as u16;
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = fold(sum(&h, 0));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

fn l4_checksum4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, seg: &[u8]) -> u16 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc += u32::from(proto) + seg.len() as u32;
    fold(sum(seg, acc))
}

/// An IPv4 TCP SYN from `src:sport` to `dst:dport`.
pub fn tcp_syn4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let mut t = Vec::with_capacity(20);
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x0c0f_fee0_u32.to_be_bytes()); // seq
    t.extend_from_slice(&[0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
    let c = l4_checksum4(src, dst, 6, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 6, &t)
}

/// An IPv4 UDP datagram.
pub fn udp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + data.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let c = l4_checksum4(src, dst, 17, &u);
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv4(src, dst, 17, &u)
}

/// An ARP payload (`op` 1 request, 2 reply).
pub fn arp(op: u16, sha: Mac, spa: Ipv4Addr, tha: Mac, tpa: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4];
    a.extend_from_slice(&op.to_be_bytes());
    a.extend_from_slice(&sha);
    a.extend_from_slice(&spa.octets());
    a.extend_from_slice(&tha);
    a.extend_from_slice(&tpa.octets());
    a
}

/// An IPv6 packet (hop limit 255) carrying the ICMPv6 message `msg` (checksum computed).
pub fn icmp6(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> Vec<u8> {
    let mut m = msg.to_vec();
    m[2] = 0;
    m[3] = 0;
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc += m.len() as u32 + 58;
    let c = fold(sum(&m, acc));
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x60, 0, 0, 0];
    p.extend_from_slice(&(m.len() as u16).to_be_bytes());
    p.extend_from_slice(&[58, 255]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&m);
    p
}

/// An ICMPv6 router advertisement (default router for 1800 s) announcing `prefix`/64 for
/// autoconfiguration, from a router with link-layer address `src`.
pub fn router_advert(src: Mac, prefix: Ipv6Addr) -> Vec<u8> {
    let mut m = vec![134, 0, 0, 0, 64, 0];
    m.extend_from_slice(&1800u16.to_be_bytes());
    m.extend_from_slice(&[0; 8]);
    m.extend_from_slice(&[1, 1]);
    m.extend_from_slice(&src);
    m.extend_from_slice(&[3, 4, 64, 0xc0]);
    m.extend_from_slice(&86400u32.to_be_bytes());
    m.extend_from_slice(&14400u32.to_be_bytes());
    m.extend_from_slice(&[0; 4]);
    m.extend_from_slice(&prefix.octets());
    m
}

/// An ICMPv6 echo request.
pub fn echo_request6(id: u16, seq: u16) -> Vec<u8> {
    let mut m = vec![128, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"cove-test");
    m
}

fn ifindex(ifname: &str) -> i32 {
    let c = CString::new(ifname).expect("interface name");
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert!(idx != 0, "no interface {ifname}: {}", std::io::Error::last_os_error());
    idx as i32
}

fn packet_socket(protocol: u16) -> OwnedFd {
    // SAFETY: socket(2) has no memory arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol.to_be()),
        )
    };
    assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn sockaddr_ll(ifindex: i32, protocol: u16, dst: &[u8]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = protocol.to_be();
    sll.sll_ifindex = ifindex;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dst[..6]);
    sll
}

/// Send each frame (Ethernet header included) out of `ifname` in the calling thread's
/// network namespace.
#[track_caller]
pub fn send(ifname: &str, frames: &[Vec<u8>]) {
    let idx = ifindex(ifname);
    let fd = packet_socket(0);
    for f in frames {
        let sll = sockaddr_ll(idx, u16::from_be_bytes([f[12], f[13]]), f);
        // SAFETY: the buffer and the address are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                f.as_ptr().cast(),
                f.len(),
                0,
                std::ptr::from_ref(&sll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(n, f.len() as isize, "sendto: {}", std::io::Error::last_os_error());
    }
}

/// Counts the frames of one EtherType that arrive on an interface of another network
/// namespace and satisfy a predicate: a receiver that sees exactly the probe's frames.
#[derive(Debug)]
pub struct Catcher {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<usize>>,
}

impl Catcher {
    /// Start catching on `ifname` of the network namespace `netns` (an open
    /// `/proc/<pid>/ns/net`); returns once the socket is bound.
    #[track_caller]
    pub fn start(
        netns: File,
        ifname: &str,
        ethertype: u16,
        wanted: impl Fn(&[u8]) -> bool + Send + 'static,
    ) -> Catcher {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (stop2, ifname) = (Arc::clone(&stop), ifname.to_string());
        let handle = std::thread::spawn(move || {
            // SAFETY: setns(2) on an open namespace descriptor, for this thread only.
            let r = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            let fd = packet_socket(ethertype);
            let sll = sockaddr_ll(ifindex(&ifname), ethertype, &[0; 6]);
            // SAFETY: the address is valid for the length given.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    std::ptr::from_ref(&sll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(r, 0, "bind AF_PACKET: {}", std::io::Error::last_os_error());
            let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
            // SAFETY: the option value is a valid timeval of the length given.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    std::ptr::from_ref(&tv).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            let _ = tx.send(());
            let mut buf = vec![0u8; 4096];
            let mut count = 0;
            while !stop2.load(Ordering::Relaxed) {
                // SAFETY: a zeroed sockaddr_ll is valid; the lengths match the buffers.
                let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                let mut flen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
                // SAFETY: `buf`, `from` and `flen` are valid for the lengths given.
                let n = unsafe {
                    libc::recvfrom(
                        fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        std::ptr::from_mut(&mut from).cast(),
                        &mut flen,
                    )
                };
                if n > 0 && from.sll_pkttype != libc::PACKET_OUTGOING && wanted(&buf[..n as usize])
                {
                    count += 1;
                }
            }
            count
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("the frame catcher did not start");
        Catcher { stop, handle: Some(handle) }
    }

    /// Wait `settle` for frames still on their way, stop, and return how many were caught.
    pub fn finish(mut self, settle: Duration) -> usize {
        std::thread::sleep(settle);
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().map(|h| h.join().expect("frame catcher panicked")).unwrap_or(0)
    }
}

impl Drop for Catcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// For an IPv4 frame carrying TCP or UDP (`proto` 6 or 17): its (source port, destination
/// port).
pub fn ports4(f: &[u8], proto: u8) -> Option<(u16, u16)> {
    if f.len() < 34 || u16::from_be_bytes([f[12], f[13]]) != ETH_IP || f[23] != proto {
        return None;
    }
    let l4 = 14 + usize::from(f[14] & 0x0f) * 4;
    let p = f.get(l4..l4 + 4)?;
    Some((u16::from_be_bytes([p[0], p[1]]), u16::from_be_bytes([p[2], p[3]])))
}

/// For an IPv6 frame carrying ICMPv6 directly: its message type.
pub fn icmp6_type(f: &[u8]) -> Option<u8> {
    if f.len() < 55 || u16::from_be_bytes([f[12], f[13]]) != ETH_IP6 || f[20] != 58 {
        return None;
    }
    Some(f[54])
}
