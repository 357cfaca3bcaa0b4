// SPDX-License-Identifier: Apache-2.0
//! Many UDP datagrams per system call: `recvmmsg(2)` and `sendmmsg(2)` over buffers
//! allocated once per thread.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams per system call. wireguard-go batches 128 with offloads; without GSO a batch of
/// 64 already amortises the call and keeps the buffers (64 x 64 KiB) small.
pub(crate) const BATCH: usize = 64;

/// Room for one datagram: the largest UDP payload.
pub(crate) const DATAGRAM: usize = 65_536;

/// `BATCH` datagram buffers with their addresses, for either direction.
pub(crate) struct Batch {
    bufs: Vec<Box<[u8]>>,
    lens: [usize; BATCH],
    addrs: [libc::sockaddr_storage; BATCH],
    iovs: [libc::iovec; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
    /// Datagrams filled (send) or received (receive).
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
            addrs,
            iovs,
            hdrs,
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
        self.addrs[self.len] = sockaddr(to);
        self.len += 1;
    }

    /// Datagram `i` of a received batch and its source.
    pub(crate) fn received(&mut self, i: usize) -> (&mut [u8], Option<SocketAddr>) {
        let from = to_socket_addr(&self.addrs[i]);
        (&mut self.bufs[i][..self.lens[i]], from)
    }

    /// Send the queued datagrams on `fd`, as few calls as the kernel allows. A datagram
    /// the kernel refuses is skipped; returns how many were refused. Empties the batch.
    pub(crate) fn send(&mut self, fd: RawFd) -> usize {
        let n = self.len;
        for i in 0..n {
            self.iovs[i] =
                libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: self.lens[i] };
            self.hdrs[i].msg_hdr = libc::msghdr {
                msg_name: (&raw mut self.addrs[i]).cast(),
                msg_namelen: addr_len(&self.addrs[i]),
                msg_iov: &raw mut self.iovs[i],
                msg_iovlen: 1,
                msg_control: std::ptr::null_mut(),
                msg_controllen: 0,
                msg_flags: 0,
            };
        }
        let (mut at, mut failed) = (0, 0);
        while at < n {
            // SAFETY: headers at..n point at iovecs, buffers and addresses owned by `self`,
            // which outlive the call; the count matches the slice.
            let rc = unsafe {
                libc::sendmmsg(fd, self.hdrs[at..].as_mut_ptr(), (n - at) as libc::c_uint, 0)
            };
            if rc > 0 {
                at += rc as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => {
                    // The socket buffer is full: wait for room rather than drop.
                    wait_writable(fd);
                    continue;
                }
                _ => {
                    tracing::trace!("sendmmsg: {e}");
                    failed += 1;
                    at += 1;
                }
            }
        }
        self.len = 0;
        failed
    }

    /// Receive up to `BATCH` datagrams from the non-blocking `fd`. Returns how many
    /// (0 when none is waiting).
    pub(crate) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] =
                libc::iovec { iov_base: self.bufs[i].as_mut_ptr().cast(), iov_len: DATAGRAM };
            self.hdrs[i].msg_hdr = libc::msghdr {
                msg_name: (&raw mut self.addrs[i]).cast(),
                msg_namelen: size_of::<libc::sockaddr_storage>() as libc::socklen_t,
                msg_iov: &raw mut self.iovs[i],
                msg_iovlen: 1,
                msg_control: std::ptr::null_mut(),
                msg_controllen: 0,
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

    #[test]
    fn a_batch_goes_out_and_comes_back_over_loopback() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut out = Batch::new();
        for i in 0..5u8 {
            let b = out.next_buf();
            b[..3].copy_from_slice(&[i, i, i]);
            out.push(3, to);
        }
        use std::os::fd::AsRawFd;
        assert_eq!(out.send(tx.as_raw_fd()), 0);
        assert_eq!(out.len, 0);
        let mut inb = Batch::new();
        let mut got = Vec::new();
        for _ in 0..100 {
            let n = inb.recv(rx.as_raw_fd()).unwrap();
            for i in 0..n {
                let (d, from) = inb.received(i);
                assert_eq!(from, Some(tx.local_addr().unwrap()));
                got.push(d.to_vec());
            }
            if got.len() == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, (0..5u8).map(|i| vec![i, i, i]).collect::<Vec<_>>());
    }
}
