// SPDX-License-Identifier: Apache-2.0
//! Privileged tests of Cove's tunnel: two (or three) hosts as namespaces on an underlay
//! switch, a Cove tunnel in each, and kernel VXLAN devices over the tunnel. Each test has
//! namespaces of its own (`support`); traffic stays inside them.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use cove_tunnel::PrivateKey;
use support::*;

/// Encrypted overlay (VXLAN over the tunnel) and plain overlay (VXLAN over the underlay).
const SECURE: u32 = 42;
const PLAIN: u32 = 43;

/// No drop that a healthy pair of tunnels should see. (`unknown_peer_key` may count the
/// first side's eager handshake, sent before the other side knew it; `stale` an answer to
/// a handshake crossed by the other side's; `no_peer_...` is what the kernel sends into the
/// device for addresses no peer owns.)
fn assert_clean(s: &cove_tunnel::TunnelStats) {
    let d = &s.drops;
    let bad = (
        d.not_ip,
        d.unknown_session,
        d.spoofed_source,
        d.invalid,
        d.send_failed,
        d.tun_write_failed,
    );
    assert_eq!(bad, (0, 0, 0, 0, 0, 0), "{s:#?}");
    assert!(d.unknown_peer_key <= 1, "{s:#?}");
}

fn sa(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// Two hosts with a tunnel each, peered.
async fn two_tunnels(
    dir: &std::path::Path,
) -> (Vec<Host>, [PrivateKey; 2], [cove_tunnel::Tunnel; 2]) {
    let hs = hosts(dir, 2).await;
    let keys = [PrivateKey::generate().unwrap(), PrivateKey::generate().unwrap()];
    let t1 = hs[0].tunnel(&keys[0]);
    let t2 = hs[1].tunnel(&keys[1]);
    t1.set_peers(&[hs[1].peer(&keys[1])]).unwrap();
    t2.set_peers(&[hs[0].peer(&keys[0])]).unwrap();
    (hs, keys, [t1, t2])
}

/// The encrypted overlay (MTU 1370 = 1500 - 50 - 80) and the plain one (1450) between h1
/// and h2.
async fn overlays(hs: &[Host]) {
    for (me, other) in [(&hs[0], &hs[1]), (&hs[1], &hs[0])] {
        let peer = (other.container_ip, other.n);
        overlay(me, SECURE, me.tunnel_ip, other.tunnel_ip, 1370, peer).await;
        overlay(me, PLAIN, me.underlay, other.underlay, 1450, peer).await;
    }
}

#[test]
fn tests_run_in_a_namespace_of_their_own() {
    let outer = thread_netns_inode();
    in_fresh_netns(move |_| async move {
        assert_ne!(thread_netns_inode(), outer, "the test body runs in a fresh netns");
    });
}

#[test]
fn two_tunnels_carry_tcp_and_udp_between_tunnel_ips() {
    in_fresh_netns(|dir| async move {
        let (hs, keys, [t1, t2]) = two_tunnels(&dir).await;
        let (h1, h2) = (&hs[0], &hs[1]);

        // The device is what was asked for: a TUN device, MTU 1420, the address with the
        // pool's prefix (so the pool is routed into it), up.
        let link = run_in(&h1.ns, &["ip", "-d", "link", "show", "cvwg0"]);
        assert!(link.contains("mtu 1420") && link.contains("tun type tun"), "{link}");
        assert!(link.contains(",UP,") || link.contains("<POINTOPOINT"), "{link}");
        let addr = run_in(&h1.ns, &["ip", "addr", "show", "cvwg0"]);
        assert!(addr.contains("inet 10.255.0.1/16"), "{addr}");
        let route = run_in(&h1.ns, &["ip", "route", "get", "10.255.0.2"]);
        assert!(route.contains("dev cvwg0"), "{route}");

        // TCP both ways, then UDP.
        let l2 = listen_in(&h2.ns, sa(h2.tunnel_ip, 8080));
        tcp_round_trip(&h1.ns, sa(h2.tunnel_ip, 8080), &l2, b"over the tunnel, h1 -> h2");
        let l1 = listen_in(&h1.ns, sa(h1.tunnel_ip, 8081));
        tcp_round_trip(&h2.ns, sa(h1.tunnel_ip, 8081), &l1, b"over the tunnel, h2 -> h1");
        let rx = udp_in(&h2.ns, sa(h2.tunnel_ip, 9000));
        assert!(udp_arrives(&h1.ns, sa(h1.tunnel_ip, 0), sa(h2.tunnel_ip, 9000), &rx, b"udp", 5));

        for (t, other) in [(&t1, &keys[1]), (&t2, &keys[0])] {
            let s = t.stats();
            assert_eq!(s.peers.len(), 1);
            let p = &s.peers[0];
            assert_eq!(p.public_key, other.public_key());
            assert!(p.handshakes >= 1, "{s:#?}");
            let when = p.last_handshake.expect("a handshake time");
            assert!(when <= SystemTime::now(), "{s:#?}");
            assert!(p.rx_bytes > 0 && p.tx_bytes > 0 && p.rx_packets > 0, "{s:#?}");
            assert_clean(&s);
            assert_eq!(s.drops.no_peer_for_destination, 0, "{s:#?}");
            assert_eq!(s.tun_writes, p.rx_packets);
        }
        assert_eq!(t1.stats().public_key, keys[0].public_key());

        // Not persistent: the device goes with the tunnel.
        drop(t1);
        let gone = try_run_in(&h1.ns, &["ip", "link", "show", "cvwg0"]);
        assert!(gone.is_err(), "cvwg0 outlived its tunnel: {gone:?}");
        let route = run_in(&h1.ns, &["ip", "route", "show", "10.255.0.0/16"]);
        assert!(route.trim().is_empty(), "{route}");
    });
}

#[test]
fn vxlan_over_the_tunnel_carries_containers_and_a_large_transfer() {
    in_fresh_netns(|dir| async move {
        let (hs, _keys, [t1, t2]) = two_tunnels(&dir).await;
        overlays(&hs).await;
        let (c1, c2) = (container(&hs[0], SECURE), container(&hs[1], SECURE));
        let link = run_in(&hs[0].ns, &["ip", "-d", "link", "show", "vx42"]);
        assert!(link.contains("local 10.255.0.1") && link.contains("mtu 1370"), "{link}");
        let eth0 = run_in(&c1, &["ip", "link", "show", "eth0"]);
        assert!(eth0.contains("mtu 1370"), "{eth0}");

        let to = sa(hs[1].container_ip, 8080);
        let l = listen_in(&c2, to);
        tcp_round_trip(&c1, to, &l, b"container to container, encrypted");

        // 16 MiB in full-size segments: a wrong MTU anywhere on the path would stall it
        // (the inner 1370 + 50 of VXLAN fits the tunnel's 1420, whose 1420 + 60 fit 1500).
        const TOTAL: usize = 16 << 20;
        large_transfer(&c1, l, to, TOTAL);

        // It went through the tunnels: VXLAN datagrams were written to h2's TUN device.
        let (s1, s2) = (t1.stats(), t2.stats());
        assert!(s1.peers[0].tx_bytes as usize > TOTAL, "{s1:#?}");
        assert!(s2.peers[0].rx_bytes as usize > TOTAL, "{s2:#?}");
        assert_clean(&s1);
        assert_clean(&s2);
    });
}

#[test]
fn nothing_leaks_onto_the_underlay_while_the_plain_overlay_shows_its_marker() {
    in_fresh_netns(|dir| async move {
        let (hs, _keys, _tunnels) = two_tunnels(&dir).await;
        overlays(&hs).await;
        let m = marker();
        let payload: Vec<u8> = m.repeat(20).into_bytes();

        let send = |vni: u32| {
            let (c1, c2) = (container(&hs[0], vni), container(&hs[1], vni));
            let to = sa(hs[1].container_ip, 8080);
            let l = listen_in(&c2, to);
            tcp_round_trip(&c1, to, &l, &payload);
            let rx = udp_in(&c2, sa(hs[1].container_ip, 9000));
            let from = sa(hs[0].container_ip, 0);
            assert!(udp_arrives(&c1, from, sa(hs[1].container_ip, 9000), &rx, &payload, 5));
        };

        // Encrypted: the probes arrive (asserted in `send`), and the underlay carries only
        // WireGuard datagrams, none with the marker.
        let cap = Capture::start(&hs[0].ns, "ul0", m.as_bytes());
        send(SECURE);
        std::thread::sleep(Duration::from_millis(200));
        let seen = cap.finish();
        println!("encrypted overlay, underlay capture: {seen:?}");
        assert_eq!(seen.dropped, 0, "the capture lost frames: {seen:?}");
        assert!(seen.wireguard > 0, "the capture saw the tunnel's datagrams: {seen:?}");
        assert_eq!(seen.vnis.get(&SECURE), None, "no VXLAN of the encrypted VNI: {seen:?}");
        // The plain overlay, up since just before, may add chatter of its own (its links'
        // first multicast reports): VXLAN of its VNI only, and never with the marker.
        let plain = seen.vnis.get(&PLAIN).copied().unwrap_or(0);
        assert_eq!((seen.vxlan - plain, seen.marker, seen.other_udp), (0, 0, 0), "{seen:?}");

        // Positive control, same run, same marker: the plain overlay shows it on the wire.
        let cap = Capture::start(&hs[0].ns, "ul0", m.as_bytes());
        send(PLAIN);
        std::thread::sleep(Duration::from_millis(200));
        let seen = cap.finish();
        println!("plain overlay, underlay capture: {seen:?}");
        assert!(seen.vxlan > 0 && seen.marker > 0, "the capture sees plaintext: {seen:?}");
        assert!(seen.vnis.get(&PLAIN).is_some_and(|n| *n > 0), "{seen:?}");
    });
}

#[test]
fn vxlan_to_tunnel_ips_fails_closed_behind_the_blackhole_route() {
    in_fresh_netns(|dir| async move {
        let (hs, _keys, [t1, _t2]) = two_tunnels(&dir).await;
        // Only the encrypted overlay: any VXLAN on the underlay would be its.
        for (me, other) in [(&hs[0], &hs[1]), (&hs[1], &hs[0])] {
            let peer = (other.container_ip, other.n);
            overlay(me, SECURE, me.tunnel_ip, other.tunnel_ip, 1370, peer).await;
        }
        let (h1, c1, c2) = (&hs[0], container(&hs[0], SECURE), container(&hs[1], SECURE));
        // A default route out of the underlay, as a real host has.
        sh(&h1.ns, "ip route add default via 203.0.113.12 dev ul0");
        let rx = udp_in(&c2, sa(hs[1].container_ip, 9000));
        let (from, to) = (sa(h1.container_ip, 0), sa(hs[1].container_ip, 9000));
        assert!(udp_arrives(&c1, from, to, &rx, b"through the tunnel", 5));
        let m = marker();

        // Control: no route guard, and the pool no longer routed into the device (it is
        // down; its address stays, so the VXLAN device still has its source address): the
        // default route takes VXLAN for the peer's tunnel address, in clear, marker and all.
        sh(&h1.ns, "ip link set cvwg0 down");
        let (seen, _) = probe_tunnel_path(&hs, &m, 20);
        println!("device down, no blackhole route: {seen:?}");
        assert!(seen.vxlan >= 20 && seen.marker >= 20, "the leak the guard exists for: {seen:?}");
        sh(&h1.ns, "ip link set cvwg0 up");
        assert!(udp_arrives(&c1, from, to, &rx, b"device up again", 10));

        // The guard: a blackhole for the pool with the highest metric. With the device up
        // it changes nothing (the device's connected route wins) ...
        sh(&h1.ns, "ip route add blackhole 10.255.0.0/16 metric 4294967295");
        assert!(udp_arrives(&c1, from, to, &rx, b"guard in place", 10));
        let routes = run_in(&h1.ns, &["ip", "route", "show", "10.255.0.0/16"]);
        assert!(routes.contains("dev cvwg0") && routes.contains("blackhole"), "{routes}");

        // ... with the device down, VXLAN to tunnel addresses goes nowhere ...
        sh(&h1.ns, "ip link set cvwg0 down");
        let (seen, errors) = probe_tunnel_path(&hs, &m, 20);
        println!("device down, blackhole route: {seen:?}, vx42 tx errors +{errors}");
        assert!(errors >= 20, "the probes reached the VXLAN device and were refused there");
        assert_eq!((seen.dropped, seen.vxlan, seen.marker), (0, 0, 0), "{seen:?}");
        sh(&h1.ns, "ip link set cvwg0 up");
        assert!(udp_arrives(&c1, from, to, &rx, b"device up, guard in place", 10));

        // ... and when the process's tunnel dies (the device goes with its fd) too.
        drop(t1);
        assert!(try_run_in(&h1.ns, &["ip", "link", "show", "cvwg0"]).is_err());
        let (seen, errors) = probe_tunnel_path(&hs, &m, 20);
        println!("tunnel dropped, blackhole route: {seen:?}, vx42 tx errors +{errors}");
        assert!(errors >= 20, "the probes reached the VXLAN device and were refused there");
        assert_eq!((seen.dropped, seen.vxlan, seen.marker), (0, 0, 0), "{seen:?}");
        assert!(!udp_arrives(&c1, from, to, &rx, b"after the tunnel died", 1));

        // Observed, not required: without the guard a dead tunnel does not leak either on
        // this kernel, because the VXLAN device's source address (the tunnel IP) left with
        // the device and the route lookup refuses a source that is not local.
        sh(&h1.ns, "ip route del blackhole 10.255.0.0/16 metric 4294967295");
        let (seen, errors) = probe_tunnel_path(&hs, &m, 20);
        println!("tunnel dropped, no blackhole route: {seen:?}, vx42 tx errors +{errors}");
    });
}

/// Send `n` marker datagrams from h1's container on the encrypted overlay while capturing
/// on h1's underlay link; returns the capture and how many transmit errors h1's VXLAN
/// device counted meanwhile.
fn probe_tunnel_path(hs: &[Host], m: &str, n: usize) -> (Seen, u64) {
    let c1 = container(&hs[0], SECURE);
    let errors_before = link_counter(&hs[0].ns, "vx42", "tx", "errors");
    let cap = Capture::start(&hs[0].ns, "ul0", m.as_bytes());
    let tx = udp_in(&c1, sa(hs[0].container_ip, 0));
    for _ in 0..n {
        tx.send_to(m.as_bytes(), sa(hs[1].container_ip, 9000)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let seen = cap.finish();
    (seen, link_counter(&hs[0].ns, "vx42", "tx", "errors") - errors_before)
}

#[test]
fn a_key_outside_the_peer_set_gets_no_session() {
    in_fresh_netns(|dir| async move {
        let hs = hosts(&dir, 3).await;
        let keys: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate().unwrap()).collect();
        let (h1, h2, evil) = (&hs[0], &hs[1], &hs[2]);
        let t1 = h1.tunnel(&keys[0]);
        let t2 = h2.tunnel(&keys[1]);
        t1.set_peers(&[h2.peer(&keys[1])]).unwrap();
        t2.set_peers(&[h1.peer(&keys[0])]).unwrap();

        // Positive control: the known peer gets a session, its probe reaches h1.
        let rx = udp_in(&h1.ns, sa(h1.tunnel_ip, 9000));
        assert!(udp_arrives(&h2.ns, sa(h2.tunnel_ip, 0), sa(h1.tunnel_ip, 9000), &rx, b"ok", 5));

        // The third node knows h1's key and endpoint, but h1 does not know its key.
        let t3 = evil.tunnel(&keys[2]);
        t3.set_peers(&[h1.peer(&keys[0])]).unwrap();
        let reached = eventually(Duration::from_secs(5), || t1.stats().drops.unknown_peer_key >= 1);
        assert!(reached, "h1 received and refused the initiation: {:#?}", t1.stats());
        assert!(!udp_arrives(
            &evil.ns,
            sa(evil.tunnel_ip, 0),
            sa(h1.tunnel_ip, 9000),
            &rx,
            b"x",
            3
        ));

        let (s1, s3) = (t1.stats(), t3.stats());
        // (boringtun retries an unanswered initiation after 5 s; the probes above wait in
        // its queue meanwhile.)
        assert_eq!(s1.tun_writes, s1.peers[0].rx_packets, "only h2's packets reached h1's TUN");
        assert_eq!(s1.peers.len(), 1);
        assert_eq!((s3.peers[0].handshakes, s3.peers[0].last_handshake), (0, None), "{s3:#?}");
        assert!(s3.peers[0].tx_packets > 0, "the probes were sent: {s3:#?}");
        assert_eq!(s3.tun_writes, 0);
    });
}

#[test]
fn inner_packets_from_a_foreign_source_or_to_no_peer_are_dropped() {
    in_fresh_netns(|dir| async move {
        let (hs, _keys, [t1, t2]) = two_tunnels(&dir).await;
        let (h1, h2) = (&hs[0], &hs[1]);
        // h2 owns 10.255.0.2 in h1's table; it also holds .99, which it has no right to.
        sh(&h2.ns, "ip addr add 10.255.0.99/32 dev cvwg0");
        let rx = udp_in(&h1.ns, sa(h1.tunnel_ip, 9000));
        let to = sa(h1.tunnel_ip, 9000);
        // Positive control: from its own address, it arrives.
        assert!(udp_arrives(&h2.ns, sa(h2.tunnel_ip, 0), to, &rx, b"own address", 5));
        let before = (t1.stats(), t2.stats().peers[0].tx_packets);

        let spoofed = "10.255.0.99".parse().unwrap();
        assert!(!udp_arrives(&h2.ns, sa(spoofed, 0), to, &rx, b"spoofed", 3));
        let (s1, s2) = (t1.stats(), t2.stats());
        assert!(s2.peers[0].tx_packets >= before.1 + 3, "h2 sent them: {s2:#?}");
        assert!(
            s1.drops.spoofed_source >= 3,
            "h1 decrypted and refused them (proof they arrived): {s1:#?}"
        );
        assert_eq!(s1.tun_writes, before.0.tun_writes, "none reached the TUN device");

        // Outbound: an address of the pool that no peer owns.
        let nobody = sa("10.255.0.77".parse().unwrap(), 9000);
        in_netns(&h1.ns, move || {
            let s = std::net::UdpSocket::bind("10.255.0.1:0").unwrap();
            for _ in 0..3 {
                s.send_to(b"to nobody", nobody).unwrap();
            }
        });
        let counted =
            eventually(Duration::from_secs(2), || t1.stats().drops.no_peer_for_destination >= 3);
        assert!(counted, "{:#?}", t1.stats());
        assert_eq!(t1.stats().peers[0].tx_packets, before.0.peers[0].tx_packets);
    });
}

#[test]
fn a_rotated_key_keeps_a_running_stream() {
    in_fresh_netns(|dir| async move {
        let (hs, keys, [t1, t2]) = two_tunnels(&dir).await;
        let (h1, h2) = (hs[0].clone(), hs[1].clone());
        const TOTAL: usize = 24 << 20;
        let to = sa(h2.tunnel_ip, 7000);
        let l = listen_in(&h2.ns, to);
        let received = Arc::new(AtomicU64::new(0));
        let r = received.clone();
        let reader = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let (mut got, mut buf, mut bad) = (0usize, vec![0u8; 1 << 16], 0usize);
            let (mut last, mut gap) = (Instant::now(), Duration::ZERO);
            loop {
                let n = s.read(&mut buf).unwrap();
                gap = gap.max(last.elapsed());
                last = Instant::now();
                if n == 0 {
                    return (got, bad, gap);
                }
                bad += buf[..n].iter().enumerate().filter(|(i, b)| **b != pattern(got + i)).count();
                got += n;
                r.store(got as u64, Ordering::Relaxed);
            }
        });
        let writer = std::thread::spawn({
            let ns = h1.ns.clone();
            move || {
                let mut c = connect_from(&ns, to).unwrap();
                c.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
                let chunk: Vec<u8> = (0..1 << 14).map(pattern).collect();
                for _ in 0..TOTAL / chunk.len() {
                    c.write_all(&chunk).unwrap();
                }
            }
        });
        assert!(eventually(Duration::from_secs(20), || received.load(Ordering::Relaxed) >= 4 << 20));
        let handshakes_before = t1.stats().peers[0].handshakes;
        let old = keys[0].public_key();

        let new_key = PrivateKey::generate().unwrap();
        let rotated_at = SystemTime::now();
        t1.set_key(new_key.clone());
        t2.set_peers(&[h1.peer(&new_key)]).unwrap();

        writer.join().expect("every write succeeded across the rotation");
        let (got, bad, gap) = reader.join().unwrap();
        assert_eq!((got, bad), (TOTAL, 0), "the stream survived whole");
        println!("longest pause between reads across the rotation: {gap:?}");

        let (s1, s2) = (t1.stats(), t2.stats());
        assert_eq!(s1.public_key, new_key.public_key());
        assert_ne!(s1.public_key, old);
        assert!(s1.peers[0].handshakes > handshakes_before, "a new handshake: {s1:#?}");
        let p = &s2.peers[0];
        assert_eq!(p.public_key, new_key.public_key());
        assert!(p.handshakes >= 1, "{s2:#?}");
        // boringtun's session clock advances with its timer tick (100 ms): a second of slack.
        assert!(p.last_handshake.expect("handshake") >= rotated_at - Duration::from_secs(1));
        assert!(p.rx_bytes > 0, "the stream's tail came with the new key: {s2:#?}");
    });
}
