// SPDX-License-Identifier: Apache-2.0
//! Privileged tests of the TUN offloads: large TCP transfers (tunnel address to tunnel
//! address, and container to container over VXLAN over the tunnel) and a UDP burst sent
//! with `UDP_SEGMENT` cross a pair of tunnels with offloads on and with them off, every
//! byte checked. With them on, the counters show super-packets both ways (fewer TUN calls
//! than packets); with them off, exactly one call per packet. Each test has namespaces of
//! its own (`support`); traffic stays inside them.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use cove_tunnel::{PrivateKey, Tunnel, TunnelStats};
use support::*;

const SECURE: u32 = 42;

fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// Two peered tunnels, with offloads or without.
fn tunnels(hs: &[Host], offloads: bool) -> [Tunnel; 2] {
    let keys = [PrivateKey::generate().unwrap(), PrivateKey::generate().unwrap()];
    let start = |h: &Host, k: &PrivateKey| {
        let c = h.tunnel_config(k);
        if offloads { Tunnel::start(c) } else { Tunnel::start_without_offloads(c) }.unwrap()
    };
    let ts = [start(&hs[0], &keys[0]), start(&hs[1], &keys[1])];
    ts[0].set_peers(&[hs[1].peer(&keys[1])]).unwrap();
    ts[1].set_peers(&[hs[0].peer(&keys[0])]).unwrap();
    ts
}

/// No drop a healthy pair should see (as in the tunnel tests).
fn assert_clean(s: &TunnelStats) {
    let d = &s.drops;
    let bad = (
        d.not_ip,
        d.unknown_session,
        d.spoofed_source,
        d.invalid,
        d.send_failed,
        d.tun_write_failed,
        d.bad_super_packet,
    );
    assert_eq!(bad, (0, 0, 0, 0, 0, 0, 0), "{s:#?}");
}

/// TUN calls against packets over a run: (packets read, reads) of the sender, (packets
/// written, writes) of the receiver.
fn calls(tx: &TunnelStats, rx: &TunnelStats) -> [u64; 4] {
    [tx.tun_reads, tx.tun_read_calls, rx.tun_writes, rx.tun_write_calls]
}

fn delta(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    [b[0] - a[0], b[1] - a[1], b[2] - a[2], b[3] - a[3]]
}

/// Super-packets were used both ways when offloads are on; one call per packet when off.
fn assert_calls(d: [u64; 4], offloads: bool, what: &str) {
    let [read, reads, written, writes] = d;
    assert!(read > 1000 && written > 1000, "{what}: {d:?}");
    if offloads {
        assert!(reads < read, "{what}: the sender read super-packets: {d:?}");
        assert!(writes < written, "{what}: the receiver wrote coalesced packets: {d:?}");
    } else {
        assert_eq!((reads, writes), (read, written), "{what}: one call per packet: {d:?}");
    }
}

#[test]
fn large_tcp_transfers_arrive_whole_with_offloads_and_without() {
    for offloads in [true, false] {
        in_fresh_netns(move |dir| async move {
            let hs = hosts(&dir, 2).await;
            let [t1, t2] = tunnels(&hs, offloads);
            let on = t1.offloads();
            if offloads {
                // This kernel (6.18) has them all; a kernel without would fall back.
                assert!(on.vnet_hdr && on.tso && on.uso && on.udp_tunnel, "{on:?}");
            } else {
                assert_eq!(on, cove_tunnel::Offloads::default());
            }
            for (me, other) in [(&hs[0], &hs[1]), (&hs[1], &hs[0])] {
                let peer = (other.container_ip, other.n);
                overlay(me, SECURE, me.tunnel_ip, other.tunnel_ip, 1370, peer).await;
            }
            const TOTAL: usize = 32 << 20;

            // TCP between tunnel addresses: TSO super-packets.
            let k0 = calls(&t1.stats(), &t2.stats());
            let to = sa(hs[1].tunnel_ip, 8080);
            large_transfer(&hs[0].ns, listen_in(&hs[1].ns, to), to, TOTAL);
            let k1 = calls(&t1.stats(), &t2.stats());
            assert_calls(delta(k0, k1), offloads, "TCP between tunnel addresses");

            // Container to container: VXLAN super-packets (UDP tunnel GSO) out of h1's
            // device, UDP super-packets into h2's.
            let (c1, c2) = (container(&hs[0], SECURE), container(&hs[1], SECURE));
            let to = sa(hs[1].container_ip, 8081);
            large_transfer(&c1, listen_in(&c2, to), to, TOTAL);
            let k2 = calls(&t1.stats(), &t2.stats());
            assert_calls(delta(k1, k2), offloads, "VXLAN over the tunnel");

            for t in [&t1, &t2] {
                assert_clean(&t.stats());
            }
        });
    }
}

/// `UDP_SEGMENT` (linux/udp.h): the sender's segment size.
const UDP_SEGMENT: libc::c_int = 103;

#[test]
fn a_udp_burst_sent_with_segmentation_offload_arrives_as_its_datagrams() {
    for offloads in [true, false] {
        in_fresh_netns(move |dir| async move {
            let hs = hosts(&dir, 2).await;
            let [t1, t2] = tunnels(&hs, offloads);
            let rx = udp_in(&hs[1].ns, sa(hs[1].tunnel_ip, 9000));
            rx.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
            let tx = udp_in(&hs[0].ns, sa(hs[0].tunnel_ip, 0));
            let seg: libc::c_int = 1200;
            // SAFETY: an int option of the right size on a valid socket.
            let rc = unsafe {
                libc::setsockopt(
                    tx.as_raw_fd(),
                    libc::SOL_UDP,
                    UDP_SEGMENT,
                    (&raw const seg).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
            // The handshake first, so nothing waits in a queue.
            let ping = udp_in(&hs[1].ns, sa(hs[1].tunnel_ip, 9001));
            let (from, to) = (sa(hs[0].tunnel_ip, 0), sa(hs[1].tunnel_ip, 9001));
            assert!(udp_arrives(&hs[0].ns, from, to, &ping, b"ping", 10));
            // Ten full datagrams and a short eleventh, in one send.
            let burst: Vec<u8> = (0..12_345).map(pattern).collect();
            tx.send_to(&burst, sa(hs[1].tunnel_ip, 9000)).unwrap();
            let mut buf = vec![0u8; 65_536];
            let mut got = Vec::new();
            while let Ok((n, _)) = rx.recv_from(&mut buf) {
                got.push(buf[..n].to_vec());
                if got.len() == 11 {
                    break;
                }
            }
            let lens: Vec<usize> = got.iter().map(Vec::len).collect();
            let mut want = vec![1200; 10];
            want.push(345);
            assert_eq!(lens, want);
            assert!(got.concat() == burst, "the datagrams carry the burst, in order");
            let (s1, s2) = (t1.stats(), t2.stats());
            if offloads {
                assert!(s1.tun_read_calls < s1.tun_reads, "one super-packet read: {s1:#?}");
                assert!(s2.tun_write_calls < s2.tun_writes, "coalesced on write: {s2:#?}");
            }
            assert_clean(&s1);
            assert_clean(&s2);
        });
    }
}
