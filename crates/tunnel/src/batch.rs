// SPDX-License-Identifier: Apache-2.0
//! Many UDP datagrams per system call: `recvmmsg(2)` and `sendmmsg(2)` over buffers
//! allocated once per thread, with UDP segmentation offload both ways: consecutive
//! datagrams to one peer of one size leave as one `UDP_SEGMENT` message (one trip through
//! the UDP/IP stack, segmented by the device or at the last moment), and the socket takes
//! coalesced datagrams (`UDP_GRO`), split here by their segment size.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call. wireguard-go batches 128 with offloads; a batch of 64 already
/// amortises the call and keeps the buffers (64 x 64 KiB) small.
pub(crate) const BATCH: usize = 64;

/// Room for one datagram (or one coalesced run of them): the largest UDP payload.
pub(crate) const DATAGRAM: usize = 65_536;

/// Segments of one `UDP_SEGMENT` message: the kernel's `UDP_MAX_SEGMENTS` (64 before 6.8).
const MAX_SEGMENTS: usize = 64;

/// Payload bytes of one `UDP_SEGMENT` message: an IPv6 datagram's limit less its headers.
const MAX_GSO_BYTES: usize = 65_535 - 40 - 8;

/// Room for one control message with a small payload (`CMSG_SPACE(4)` is 24 here).
type Ctrl = [u64; 4];

/// `BATCH` datagram buffers with their addresses, for either direction.
pub(crate) struct Batch {
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    dests: [Option<SocketAddr>; BATCH],
    addrs: [libc::sockaddr_storage; BATCH],
    iovs: [libc::iovec; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
    ctrl: [Ctrl; BATCH],
    /// Segment size of each received buffer (its whole length when not coalesced).
    seg: [usize; BATCH],
    /// Whether to send with `UDP_SEGMENT`; turned off for good when the kernel refuses it.
    pub(crate) gso: bool,
    /// Datagrams filled (send) or buffers received (receive).
    pub(crate) len: usize,
}

impl Batch {
    pub(crate) fn new() -> Box<Batch> {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid (empty) value; the pointers inside are set before each use.
        let (addrs, iovs, hdrs) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Box::new(Batch {
            bufs: (0..BATCH).map(|_| vec![0u8; DATAGRAM].into_boxed_slice()).collect(),
            lens: [0; BATCH],
            dests: [None; BATCH],
            addrs,
            iovs,
            hdrs,
            ctrl: [[0; 4]; BATCH],
            seg: [0; BATCH],
            gso: true,
            len: 0,
        })
    }

    /// Whether no more datagrams fit.
    pub(crate) fn is_full(&self) -> bool {
        self.len == BATCH
    }

    /// The next free buffer, to fill and then [`Batch::push`].
    pub(crate) fn next_buf(&mut self) -> &mut [u8] {
        &mut self.bufs[self.len]
    }

    /// Queue the first `len` bytes of the buffer from [`Batch::next_buf`] for `to`.
    pub(crate) fn push(&mut self, len: usize, to: SocketAddr) {
        self.lens[self.len] = len;
        self.dests[self.len] = Some(to);
        self.addrs[self.len] = sockaddr(to);
        self.len += 1;
    }

    /// Buffer `i` of a received batch: its datagrams (more than one when the kernel
    /// coalesced them) and their source.
    pub(crate) fn received(&self, i: usize) -> (std::slice::Chunks<'_, u8>, Option<SocketAddr>) {
        let from = to_socket_addr(&self.addrs[i]);
        (self.bufs[i][..self.lens[i]].chunks(self.seg[i].max(1)), from)
    }

    /// Send the queued datagrams on `fd`, as few calls and stack traversals as the kernel
    /// allows. A datagram the kernel refuses is skipped; returns how many were refused.
    /// Empties the batch.
    pub(crate) fn send(&mut self, fd: RawFd) -> usize {
        let n = self.len;
        let mut failed = 0;
        let mut first = 0; // first datagram not yet sent
        while first < n {
            // Messages from `first` on: runs of one destination and one size (the last of a
            // run may be shorter) become one message with a segment size.
            let (mut m, mut i) = (0, first);
            let mut starts = [0usize; BATCH + 1];
            while i < n {
                let (size, to) = (self.lens[i], self.dests[i]);
                let mut j = i + 1;
                let mut total = size;
                while self.gso
                    && j < n
                    && j - i < MAX_SEGMENTS
                    && self.dests[j] == to
                    && self.lens[j] <= size
                    && total + self.lens[j] <= MAX_GSO_BYTES
                {
                    total += self.lens[j];
                    j += 1;
                    if self.lens[j - 1] < size {
                        break; // a shorter one ends the run
                    }
                }
                self.message(m, i, j);
                starts[m] = i;
                m += 1;
                i = j;
            }
            starts[m] = n;
            // SAFETY: headers 0..m point at iovecs, buffers, addresses and control space
            // owned by `self`, which outlive the call; the count matches.
            let rc = unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), m as libc::c_uint, 0) };
            if rc > 0 {
                first = starts[rc as usize];
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EAGAIN) => wait_writable(fd), // full socket buffer: wait for room
                Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP)
                    if self.gso && starts[1] - first > 1 =>
                {
                    // The route's device cannot take segmentation offload: plain datagrams.
                    tracing::debug!("UDP GSO refused ({e}); sending datagrams one by one");
                    self.gso = false;
                }
                _ => {
                    tracing::trace!("sendmmsg: {e}");
                    failed += starts[1] - first;
                    first = starts[1];
                }
            }
        }
        self.len = 0;
        failed
    }

    /// Header `m`: datagrams `i..j` to one destination, with a segment size when several.
    fn message(&mut self, m: usize, i: usize, j: usize) {
        for k in i..j {
            self.iovs[k] =
                libc::iovec { iov_base: self.bufs[k].as_mut_ptr().cast(), iov_len: self.lens[k] };
        }
        let mut h = libc::msghdr {
            msg_name: (&raw mut self.addrs[i]).cast(),
            msg_namelen: addr_len(&self.addrs[i]),
            msg_iov: &raw mut self.iovs[i],
            msg_iovlen: j - i,
            msg_control: std::ptr::null_mut(),
            msg_controllen: 0,
            msg_flags: 0,
        };
        if j - i > 1 {
            h.msg_control = self.ctrl[m].as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is a size computation.
            h.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
            // SAFETY: the control buffer is 32 bytes, aligned for cmsghdr, and larger than
            // CMSG_SPACE(2); CMSG_FIRSTHDR and CMSG_DATA point inside it.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&h);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                libc::CMSG_DATA(c).cast::<u16>().write_unaligned(self.lens[i] as u16);
            }
        }
        self.hdrs[m].msg_hdr = h;
    }

    /// Receive up to `BATCH` buffers from the non-blocking `fd`. Returns how many (0 when
    /// none is waiting).
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] =
                libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: DATAGRAM };
            self.hdrs[i].msg_hdr = libc::msghdr {
                msg_name: (&raw mut self.addrs[i]).cast(),
                msg_namelen: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
                msg_iov: &raw mut self.iovs[i],
                msg_iovlen: 1,
                msg_control: self.ctrl[i].as_mut_ptr().cast(),
                msg_controllen: size_of::<Ctrl>(),
                msg_flags: 0,
            };
            self.hdrs[i].msg_len = 0;
        }
        loop {
            // SAFETY: as in `send`: every header points at memory owned by `self`.
            let rc = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdrs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                let n = rc as usize;
                for i in 0..n {
                    self.lens[i] = self.hdrs[i].msg_len as usize;
                    self.seg[i] = gro_size(&self.hdrs[i].msg_hdr).unwrap_or(self.lens[i]);
                }
                self.len = n;
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    self.len = 0;
                    return Ok(0);
                }
                _ => return Err(e),
            }
        }
    }
}

/// Ask the kernel to coalesce datagrams of one flow on `fd` (`UDP_GRO`). Best effort: an
/// older kernel just hands them over one by one.
pub(crate) fn enable_gro(fd: RawFd) {
    let on: libc::c_int = 1;
    // SAFETY: an int option of the right size on a valid socket.
    unsafe {
        libc::setsockopt(fd, libc::SOL_UDP, libc::UDP_GRO, (&raw const on).cast(), 4);
    }
}

/// Socket buffer size asked for both ways (wireguard-go's 7 MiB). The default (208 KiB)
/// holds ~150 datagrams: a receiving thread a few milliseconds late (a descheduled thread
/// on a busy machine) loses whole coalesced runs of them, and the inner TCP halves its
/// window each time; measured here: ~10% of the overlay's segments retransmitted.
pub(crate) const SOCKET_BUFFER: libc::c_int = 7 << 20;

/// Grow the socket buffers of `fd` to [`SOCKET_BUFFER`]: `SO_*BUFFORCE` (beyond
/// `net.core.rmem_max`, with CAP_NET_ADMIN), else as far as the limit allows.
pub(crate) fn grow_buffers(fd: RawFd) {
    let size = SOCKET_BUFFER;
    for (force, plain) in
        [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)]
    {
        for opt in [force, plain] {
            // SAFETY: an int option of the right size on a valid socket.
            let rc =
                unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const size).cast(), 4) };
            if rc == 0 {
                break;
            }
        }
    }
}

/// The segment size of a coalesced receive (the `UDP_GRO` control message), if any.
fn gro_size(h: &libc::msghdr) -> Option<usize> {
    // SAFETY: the control buffer and its length are as the kernel left them; CMSG_FIRSTHDR
    // and CMSG_NXTHDR stay inside it.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let size = libc::CMSG_DATA(c).cast::<libc::c_int>().read_unaligned();
                return usize::try_from(size).ok().filter(|s| *s > 0);
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

fn wait_writable(fd: RawFd) {
    let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
    // SAFETY: one valid pollfd; a bounded wait so a stop is never held up for long.
    unsafe { libc::poll(&mut p, 1, 100) };
}

fn sockaddr(a: SocketAddr) -> libc::sockaddr_storage {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut s: libc::sockaddr_storage = unsafe { zeroed() };
    match a {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { (&raw mut s).cast::<libc::sockaddr_in>().write(sin) };
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr { s6_addr: a.ip().octets() },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { (&raw mut s).cast::<libc::sockaddr_in6>().write(sin6) };
        }
    }
    s
}

fn addr_len(s: &libc::sockaddr_storage) -> libc::socklen_t {
    if s.ss_family == libc::AF_INET6 as libc::sa_family_t {
        size_of::<libc::sockaddr_in6>() as libc::socklen_t
    } else {
        size_of::<libc::sockaddr_in>() as libc::socklen_t
    }
}

fn to_socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match s.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 =
                unsafe { &*(s as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The source address an IPv4-mapped peer address stands for (a dual-stack socket reports
/// IPv4 peers as `::ffff:a.b.c.d`).
pub(crate) fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for a in ["203.0.113.7:51820", "[2001:db8::7]:4789"] {
            let a: SocketAddr = a.parse().unwrap();
            assert_eq!(to_socket_addr(&sockaddr(a)), Some(a));
        }
        let mapped: SocketAddr = "[::ffff:203.0.113.7]:1".parse().unwrap();
        assert_eq!(canonical(mapped), "203.0.113.7:1".parse().unwrap());
    }

    /// Datagrams of mixed sizes and destinations, with and without segmentation offload,
    /// arrive whole and in order over loopback (which the kernel coalesces with `UDP_GRO`).
    #[test]
    fn a_batch_goes_out_and_comes_back_over_loopback() {
        use std::os::fd::AsRawFd;
        for gso in [true, false] {
            let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let rx2 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for r in [&rx, &rx2] {
                r.set_nonblocking(true).unwrap();
                enable_gro(r.as_raw_fd());
            }
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let sizes = [1200, 1200, 1200, 700, 1200, 1200, 90, 1200];
            let mut out = Batch::new();
            out.gso = gso;
            let mut want = (Vec::new(), Vec::new());
            for (i, &size) in sizes.iter().enumerate() {
                let d: Vec<u8> = (0..size).map(|k| (k + i) as u8).collect();
                out.next_buf()[..size].copy_from_slice(&d);
                // Two datagrams to the second socket break the run in the middle.
                if i == 4 || i == 5 {
                    out.push(size, rx2.local_addr().unwrap());
                    want.1.push(d);
                } else {
                    out.push(size, rx.local_addr().unwrap());
                    want.0.push(d);
                }
            }
            assert_eq!(out.send(tx.as_raw_fd()), 0);
            assert_eq!(out.len, 0);
            assert_eq!(out.gso, gso, "loopback takes UDP_SEGMENT");
            for (sock, want) in [(&rx, &want.0), (&rx2, &want.1)] {
                let mut inb = Batch::new();
                let mut got = Vec::new();
                for _ in 0..100 {
                    let n = inb.recv(sock.as_raw_fd()).unwrap();
                    for i in 0..n {
                        let (ds, from) = inb.received(i);
                        assert_eq!(from, Some(tx.local_addr().unwrap()));
                        got.extend(ds.map(|d| d.to_vec()));
                    }
                    if got.len() >= want.len() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                assert!(&got == want, "gso {gso}: {:?} vs {:?}", lens(&got), lens(want));
            }
        }
    }

    fn lens(v: &[Vec<u8>]) -> Vec<usize> {
        v.iter().map(Vec::len).collect()
    }
}
