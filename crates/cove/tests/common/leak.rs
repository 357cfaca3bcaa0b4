//! The leak detector of the encryption tests: an AF_PACKET capture of every frame in and
//! out of one link of a fake host (its underlay `eth0`), counting VXLAN by VNI, WireGuard
//! datagrams, and frames that carry a marker string (after cove-tunnel's tests' capture).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use cove_testkit::FakeHost;

/// What a capture saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Every frame.
    pub frames: u64,
    /// UDP datagrams from or to port 4789, by VNI.
    pub vnis: BTreeMap<u32, u64>,
    /// UDP datagrams from or to port 51820 (the tunnel).
    pub wireguard: u64,
    /// Frames containing the marker.
    pub marker: u64,
    /// Frames the kernel dropped before the capture read them.
    pub dropped: u64,
}

/// A running capture.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Seen>>,
}

impl Capture {
    /// Capture on `link` of `h`, counting frames that contain `marker`. Bound before this
    /// returns: every later frame is seen.
    pub fn start(h: &FakeHost, link: &str, marker: &str) -> Capture {
        let fd = h.in_netns(|| open(link));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, m) = (stop.clone(), marker.as_bytes().to_vec());
        let thread = std::thread::spawn(move || run(fd, &s, &m));
        Capture { stop, thread: Some(thread) }
    }

    /// Stop (after what is queued) and report.
    pub fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open(link: &str) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the fd is owned right after.
    let fd =
        unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto as i32) };
    assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just created and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let index = nix::net::if_::if_nametoindex(link).expect("capture link index");
    // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: binds a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "bind the capture: {}", std::io::Error::last_os_error());
    let big: libc::c_int = 32 << 20;
    // SAFETY: an int option of the right size.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const big).cast(),
            4,
        )
    };
    fd
}

fn run(fd: OwnedFd, stop: &AtomicBool, marker: &[u8]) -> Seen {
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if !stopping {
            let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 50) };
            if p.revents == 0 {
                continue;
            }
        }
        let flags = if stopping { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: reading into `buf` of its own length.
        let n = unsafe {
            libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags | libc::MSG_TRUNC)
        };
        if n < 0 {
            if stopping {
                break;
            }
            continue;
        }
        classify(&buf[..(n as usize).min(buf.len())], marker, &mut seen);
    }
    let mut st = [0u32; 2];
    let mut len = 8 as libc::socklen_t;
    // SAFETY: PACKET_STATISTICS fills a struct tpacket_stats (two u32) of the size given.
    unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            st.as_mut_ptr().cast(),
            &mut len,
        )
    };
    seen.dropped = st[1] as u64;
    seen
}

fn classify(frame: &[u8], marker: &[u8], seen: &mut Seen) {
    seen.frames += 1;
    if !marker.is_empty() && frame.windows(marker.len()).any(|w| w == marker) {
        seen.marker += 1;
    }
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ip = &frame[14..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ip[9] != 17 || ip.len() < ihl + 8 {
        return;
    }
    let udp = &ip[ihl..];
    let (sport, dport) =
        (u16::from_be_bytes([udp[0], udp[1]]), u16::from_be_bytes([udp[2], udp[3]]));
    if sport == 4789 || dport == 4789 {
        let vni =
            if udp.len() >= 16 { u32::from_be_bytes([0, udp[12], udp[13], udp[14]]) } else { 0 };
        *seen.vnis.entry(vni).or_default() += 1;
    } else if sport == 51820 || dport == 51820 {
        seen.wireguard += 1;
    }
}

/// A random marker `COVE-LEAK-<hex>`.
pub fn marker() -> String {
    let mut b = [0u8; 12];
    // SAFETY: fills the 12 bytes of `b`.
    unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("COVE-LEAK-{hex}")
}
