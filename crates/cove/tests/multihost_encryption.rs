//! Encrypted overlay networks (`--opt encrypted`, issue 18) across fake hosts with a real
//! etcd: containers talk over the nodes' WireGuard tunnel, and nothing of an encrypted
//! network ever crosses the underlay in clear. Each negative check has a positive control
//! in the same run (the same marker over an unencrypted network *is* captured, the same
//! forged datagram for an unencrypted VNI *is* delivered) and proof that the probe arrived
//! (a counter moved).
//!
//! The leak detector is an AF_PACKET capture of the hosts' underlay links
//! (`common::leak`).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use cove_testkit::{require_etcd, require_root, Etcd, FakeHost, Frames, Netlab};

mod common;
use common::leak::{marker, Capture, Seen};
use common::multihost::{eventually, inspect, FLAGS};

/// A netlab of h1, h2, kv (etcd) and evil, daemons up, busybox imported.
fn lab(name: &str, nodes: &[&str]) -> (Netlab, Etcd) {
    require_root();
    let mut lab = Netlab::with_hosts(name, Path::new(env!("CARGO_BIN_EXE_cove")), 2);
    lab.add_node("evil", Netlab::EVIL);
    let etcd = Etcd::start_in(name, &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    lab.start_daemons(nodes, &FLAGS);
    for h in nodes {
        lab.host(h).import_busybox("bb");
    }
    (lab, etcd)
}

/// A created network: its id, VXLAN device and VNI on `h`.
struct Net {
    vx: String,
    vni: u32,
}

fn create(h: &FakeHost, other: &FakeHost, args: &[&str], name: &str) -> Net {
    let mut argv = vec!["network", "create", "-d", "overlay"];
    argv.extend_from_slice(args);
    argv.push(name);
    let id = h.cove(&argv).ok().stdout.trim().to_string();
    let vx = format!("vx-{}", &id[..12]);
    for host in [h, other] {
        assert!(
            eventually(10, || host.sh(&format!("ip link show {vx}")).status.success()),
            "{} has no {vx}",
            host.name()
        );
    }
    let details = h.sh_ok(&format!("ip -d link show {vx}"));
    let vni = details
        .split("vxlan id ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no VNI in {details}"));
    Net { vx, vni }
}

fn tunnel_ip(h: &FakeHost) -> String {
    let out = h.sh_ok("ip -4 -o addr show cvwg0");
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no tunnel address on {}: {out}", h.name()))
        .to_string()
}

fn ip_of(h: &FakeHost, c: &str) -> String {
    inspect(h, c, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
}

fn mac_of(h: &FakeHost, c: &str) -> String {
    inspect(h, c, "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}")
}

/// A server on `h` appending everything it receives on TCP 8080 to /tmp/got.
fn server(h: &FakeHost, name: &str, net: &str) -> String {
    h.cove(&[
        "run",
        "-d",
        "--network",
        net,
        "--name",
        name,
        "bb",
        "sh",
        "-c",
        "touch /tmp/got; while true; do nc -l -p 8080 >> /tmp/got; done",
    ])
    .ok();
    ip_of(h, name)
}

fn received(h: &FakeHost, server: &str) -> u64 {
    let out = h.cove(&["exec", server, "wc", "-c", "/tmp/got"]).stdout.to_string();
    out.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Send `bytes` of marker-laden data from `client` on h to `ip`:8080, until the server got
/// them (the probe arrived).
fn send(h: &FakeHost, client: &str, ip: &str, m: &str, bytes: u64, srv: (&FakeHost, &str)) {
    let before = received(srv.0, srv.1);
    let script = format!("yes {m} | head -c {bytes} | timeout 5 nc {ip} 8080");
    let arrived = eventually(40, || {
        h.cove(&["exec", client, "sh", "-c", &script]);
        received(srv.0, srv.1) >= before + bytes
    });
    assert!(arrived, "{bytes} bytes from {client} never reached {ip}");
}

fn counter(h: &FakeHost, name: &str) -> u64 {
    common::nft_packets(h, "inet cove", name)
}

fn rx_packets(h: &FakeHost, link: &str) -> u64 {
    h.sh_ok(&format!("cat /sys/class/net/{link}/statistics/rx_packets")).trim().parse().unwrap()
}

/// A VXLAN datagram with `vni` carrying an ARP frame to `dst_mac`.
fn vxlan_datagram(vni: u32, dst_mac: &str) -> Vec<u8> {
    let mut d = vec![0x08, 0, 0, 0];
    d.extend_from_slice(&vni.to_be_bytes()[1..]);
    d.push(0);
    let mac: Vec<u8> = dst_mac.split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    d.extend_from_slice(&mac);
    d.extend_from_slice(&[0x02, 0x66, 0x66, 0x66, 0x66, 0x66, 0x08, 0x06]);
    d.extend_from_slice(&[0u8; 28]);
    d
}

/// Send `d` to `to` from a UDP socket on the calling thread (in a netns), as `uid`
/// (switched for this thread only: a raw `setresuid`, not glibc's process-wide one).
fn udp_send(uid: u32, to: SocketAddr, d: &[u8]) -> std::io::Result<usize> {
    if uid != 0 {
        // SAFETY: the raw syscall changes the calling thread's credentials only; this
        // thread exists for this send alone.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
    }
    let s = UdpSocket::bind("0.0.0.0:0")?;
    s.send_to(d, to)
}

fn network_json(h: &FakeHost, name: &str) -> serde_json::Value {
    let out = h.cove(&["network", "inspect", name]).ok().stdout.to_string();
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

fn assert_no_plaintext(seen: &Seen, vni: u32, what: &str) {
    assert_eq!(seen.vnis.get(&vni), None, "{what}: plaintext VXLAN of the encrypted VNI: {seen:?}");
    assert_eq!(seen.marker, 0, "{what}: the marker crossed the underlay: {seen:?}");
    assert_eq!(seen.dropped, 0, "{what}: the capture lost frames: {seen:?}");
}

/// §6.(e) 1-4 and 10: containers on h1 and h2 talk over an encrypted network (MTU 1370,
/// tunnel addresses only), inspect shows the peer's handshake, 2 MiB of marker-laden
/// traffic leave no trace on the underlay while the plain network's marker does; forged
/// VXLAN from `evil`, hand-crafted VXLAN from root and `nobody` on a member host and a
/// peer with an unknown key all get nowhere.
#[test]
fn multihost_encryption_carries_traffic_and_nothing_leaks_or_gets_in() {
    require_etcd!();
    let (lab, _etcd) = lab("multihost_enc_steady", &["h1", "h2"]);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let secure = create(h1, h2, &["--opt", "encrypted", "--subnet", "10.0.20.0/24"], "secure");
    let plain = create(h1, h2, &["--subnet", "10.0.21.0/24"], "plain");
    let (t1, t2) = (tunnel_ip(h1), tunnel_ip(h2));
    // Docker's option is kept as given; the guards hold the VNI from creation on.
    let n = network_json(h1, "secure");
    assert_eq!(n["Options"]["encrypted"], "", "{n}");
    for h in [h1, h2] {
        let set = h.sh_ok("nft list set inet cove encrypted_vnis");
        // nft lists a raw payload's values in hex.
        assert!(set.contains(&format!("{:#x}", secure.vni)), "{set}");
        let routes = h.sh_ok("ip route show type blackhole");
        assert!(routes.contains("10.255.0.0/16"), "{routes}");
    }

    let s2 = server(h2, "s2", "secure");
    let p2 = server(h2, "p2", "plain");
    h1.cove(&["run", "-d", "--network", "secure", "--name", "s1", "bb", "sleep", "900"]).ok();
    h1.cove(&["run", "-d", "--network", "plain", "--name", "p1", "bb", "sleep", "900"]).ok();
    let mtu = h1.cove(&["exec", "s1", "cat", "/sys/class/net/eth0/mtu"]).ok().stdout.to_string();
    assert_eq!(mtu.trim(), "1370");

    // Structure: the encrypted network's VXLAN sends from h1's tunnel address, and its
    // forwarding entry names h2's tunnel address, never an underlay address.
    let details = h1.sh_ok(&format!("ip -d link show {}", secure.vx));
    assert!(details.contains(&format!("local {t1}")), "{details}");
    let s2_mac = mac_of(h2, "s2");
    let fdb = || h1.sh_ok(&format!("bridge fdb show dev {}", secure.vx));
    assert!(eventually(10, || fdb().contains(&format!("{s2_mac} dst {t2}"))), "{}", fdb());
    assert!(!fdb().contains("dst 203.0.113."), "{}", fdb());

    // Steady traffic: 2 MiB over the encrypted network, captured on both underlay links.
    let m = marker();
    let caps = [Capture::start(h1, "eth0", &m), Capture::start(h2, "eth0", &m)];
    send(h1, "s1", &s2, &m, 2 << 20, (h2, "s2"));
    let seen: Vec<Seen> = caps.into_iter().map(Capture::finish).collect();
    for (s, h) in seen.iter().zip(["h1", "h2"]) {
        println!("{h} underlay, encrypted network: {s:?}");
        assert_no_plaintext(s, secure.vni, h);
        assert!(s.wireguard > 100, "{h}: the data went through the tunnel: {s:?}");
    }
    // Positive control, same marker, same capture: the plain network shows it.
    let cap = Capture::start(h1, "eth0", &m);
    send(h1, "p1", &p2, &m, 64 << 10, (h2, "p2"));
    let s = cap.finish();
    println!("h1 underlay, plain network: {s:?}");
    assert!(s.marker > 0 && s.vnis.get(&plain.vni).is_some_and(|n| *n > 0), "{s:?}");

    // Inspect: the peer h2, with a handshake and bytes both ways.
    let n = network_json(h1, "secure");
    let e = &n["Encryption"];
    assert_eq!(e["Protocol"], "wireguard", "{n}");
    let p = &e["Peers"][0];
    assert_eq!(p["Node"], "h2", "{n}");
    assert_eq!(p["Endpoint"], "203.0.113.12:51820", "{n}");
    assert!(!p["LastHandshake"].as_str().unwrap_or("").is_empty(), "{n}");
    assert!(p["TxBytes"].as_u64().unwrap() > 2 << 20, "{n}");
    assert!(network_json(h1, "plain").get("Encryption").is_none());

    // Forged cleartext VXLAN for the encrypted VNI from evil (CVE-2023-28842's shape): dropped
    // and counted on h2, nothing reaches s2; the same datagram for the plain VNI from a
    // node is delivered (positive control).
    let (in_before, rx_before) = (counter(h2, "drop_vxlan_plain_in"), rx_packets(h2, &secure.vx));
    let to_h2: SocketAddr = "203.0.113.12:4789".parse().unwrap();
    let forged = vxlan_datagram(secure.vni, &s2_mac);
    lab.in_netns("evil", || {
        for _ in 0..5 {
            udp_send(0, to_h2, &forged).unwrap();
        }
    });
    assert!(
        eventually(5, || counter(h2, "drop_vxlan_plain_in") >= in_before + 5),
        "the forged datagrams reached h2 and were counted"
    );
    let p_mac = mac_of(h2, "p2");
    let plain_rx = rx_packets(h2, &plain.vx);
    let good = vxlan_datagram(plain.vni, &p_mac);
    h1.in_netns(|| {
        for _ in 0..5 {
            udp_send(0, to_h2, &good).unwrap();
        }
    });
    assert!(eventually(5, || rx_packets(h2, &plain.vx) >= plain_rx + 5), "control delivered");

    // Local injection on h1, as root and as nobody, to h2's tunnel address (which would be
    // encrypted and delivered) and its underlay address: dropped and counted on h1.
    let local_before = counter(h1, "drop_vxlan_local");
    let targets: [SocketAddr; 2] = [format!("{t2}:4789").parse().unwrap(), to_h2];
    for uid in [0u32, 65534] {
        for to in targets {
            let forged = forged.clone();
            let r = h1.in_netns(move || udp_send(uid, to, &forged));
            println!("uid {uid} -> {to}: {r:?}");
        }
    }
    assert_eq!(counter(h1, "drop_vxlan_local"), local_before + 4, "each injection dropped");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx_packets(h2, &secure.vx), rx_before, "s2's network received none of it");

    // A peer with an unknown key: evil runs a WireGuard tunnel that knows h1's key and
    // endpoint; its initiations reach h1 and get no session.
    let h1_key: cove_tunnel::PublicKey =
        e["PublicKey"].as_str().expect("h1's key").parse().unwrap();
    let evil_key = cove_tunnel::PrivateKey::generate().unwrap();
    let evil = cove_tunnel::Tunnel::start(cove_tunnel::TunnelConfig {
        netns: Some(lab.node("evil").netns_path()),
        ifname: "cvwg0".into(),
        tunnel_addr: "10.255.0.99/16".parse().unwrap(),
        mtu: 1420,
        listen: "203.0.113.66:51820".parse().unwrap(),
        key: evil_key,
    })
    .expect("evil's tunnel");
    let to_h1 = Frames::any().from("evil").dst(Netlab::host_addr(1)).udp_dport(51820);
    let ((), sent) = lab.count_frames(&[to_h1], || {
        evil.set_peers(&[cove_tunnel::Peer {
            public_key: h1_key,
            endpoint: "203.0.113.11:51820".parse().unwrap(),
            allowed_ip: t1.parse().unwrap(),
        }])
        .unwrap();
        std::thread::sleep(Duration::from_secs(2));
    });
    let st = evil.stats();
    println!("evil's tunnel: {st:?}");
    assert!(sent[0] >= 1, "evil's initiation reached h1");
    assert_eq!(st.peers[0].handshakes, 0, "h1 answered an unknown key: {st:?}");
    assert!(st.peers[0].last_handshake.is_none(), "{st:?}");
}

/// §6.(e) 5, 6, 8: a stream on the encrypted network keeps flowing (or stops) without one
/// plaintext datagram on h1's underlay through an outside `nft flush ruleset`, a key
/// rotation and a kill -9 of h1's daemon (the TUN device vanishes; the blackhole route
/// stays), and resumes after the daemon's restart.
#[test]
fn multihost_encryption_fails_closed_through_flush_rotation_and_crash() {
    require_etcd!();
    let (mut lab, etcd) = lab("multihost_enc_closed", &["h1", "h2"]);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let secure = create(h1, h2, &["--opt", "encrypted", "--subnet", "10.0.20.0/24"], "secure");
    let s2 = server(h2, "s2", "secure");
    let m = marker();
    // A stream: one marker line every 50 ms, each a connection of its own.
    let stream = format!("while true; do echo {m} | nc -w 1 {s2} 8080; usleep 50000; done");
    h1.cove(&["run", "-d", "--network", "secure", "--name", "s1", "bb", "sh", "-c", &stream]).ok();
    let grows = |h2: &FakeHost| {
        let before = received(h2, "s2");
        eventually(30, || received(h2, "s2") > before)
    };
    assert!(grows(h2), "the stream flows");
    let cap = Capture::start(h1, "eth0", &m);

    // An outside flush: the guards come back (the route guard holds meanwhile).
    h1.sh_ok("nft flush ruleset");
    assert!(
        eventually(10, || h1.sh("nft list chain inet cove enc_out").status.success()),
        "the guards were restored"
    );
    assert!(grows(h2), "the stream flows after the flush");

    // Rotation during the stream: a new key in etcd, a new handshake, the stream resumes.
    let old = network_json(h1, "secure")["Encryption"]["PublicKey"].clone();
    let new = h1.cove(&["node", "rotate-key"]).ok().stdout.trim().to_string();
    assert_ne!(serde_json::Value::String(new.clone()), old);
    let stored = etcd.etcdctl(&["get", "--prefix", "/cove/v1/node-state/"]).ok().stdout.to_string();
    assert!(stored.contains(&new), "the new key is in etcd: {stored}");
    assert!(grows(h2), "the stream resumes with the new key");
    let key_file = lab.data_root("h1").join("wg.key");
    let mode = std::fs::metadata(&key_file)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "{}", key_file.display());

    // kill -9: the device goes with the daemon, the blackhole route stays, and nothing of
    // the stream (which goes on in s1) leaves in clear.
    lab.host_mut("h1").kill_daemon();
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    assert!(eventually(5, || !h1.sh("ip link show cvwg0").status.success()), "cvwg0 gone");
    let routes = h1.sh_ok("ip route show type blackhole");
    assert!(routes.contains("10.255.0.0/16"), "{routes}");
    let stalled = received(h2, "s2");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(received(h2, "s2"), stalled, "traffic stops while the tunnel is down");
    lab.start_daemons(&["h1"], &FLAGS);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    assert!(grows(h2), "the stream resumes after the restart");
    let seen = cap.finish();
    println!("h1 underlay through flush, rotation, crash and restart: {seen:?}");
    assert_no_plaintext(&seen, secure.vni, "h1");
    assert!(seen.wireguard > 0, "{seen:?}");
    let _ = h1;
}

/// §6.(e) 7: with `/dev/net/tun` hidden in h1's mount namespace, an encrypted network
/// create on h1 is refused naming it and creates nothing; an encrypted network made on h2
/// refuses endpoints on h1 instead of attaching them in plaintext. Unencrypted overlays
/// still work on h1.
#[test]
fn multihost_encryption_refused_where_it_cannot_be_enforced() {
    require_etcd!();
    let (mut lab, etcd) = lab("multihost_enc_refused", &["h2"]);
    // Hide the TUN device before h1's daemon starts.
    lab.host("h1").sh_ok("mount -t tmpfs none /dev/net");
    lab.start_daemons(&["h1"], &FLAGS);
    lab.host("h1").import_busybox("bb");
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let out = h1.cove(&["network", "create", "-d", "overlay", "--opt", "encrypted", "secure"]);
    out.fails().stderr_has("/dev/net/tun");
    assert!(!h1.cove(&["network", "ls"]).ok().stdout.contains("secure"));
    let keys = etcd.etcdctl(&["get", "--prefix", "/cove/v1/network-names/", "--keys-only"]);
    assert!(!keys.ok().stdout.contains("secure"), "nothing in the cluster");
    // The route guard stands anyway.
    assert!(h1.sh_ok("ip route show type blackhole").contains("10.255.0.0/16"));

    let args = ["network", "create", "-d", "overlay", "--opt", "encrypted", "secure2"];
    let id = h2.cove(&args).ok().stdout.trim().to_string();
    assert!(eventually(10, || h1.cove(&["network", "ls", "--no-trunc"]).ok().stdout.contains(&id)));
    // h1 knows it and guards its VNI, but has no datapath for it.
    let vx = format!("vx-{}", &id[..12]);
    assert!(!h1.sh(&format!("ip link show {vx}")).status.success());
    let vni = h2.sh_ok(&format!("ip -d link show {vx}"));
    let vni: u32 =
        vni.split("vxlan id ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let guarded =
        || h1.sh_ok("nft list set inet cove encrypted_vnis").contains(&format!("{vni:#x}"));
    assert!(eventually(10, guarded), "h1 guards the VNI of a network it cannot carry");
    let out = h1.cove(&["run", "-d", "--network", "secure2", "--name", "c1", "bb", "sleep", "60"]);
    out.fails().stderr_has("/dev/net/tun");
    let eps = etcd.etcdctl(&["get", "--prefix", "/cove/v1/endpoints/", "--keys-only"]);
    assert!(eps.ok().stdout.trim().is_empty(), "no endpoint was reserved");
    // Unencrypted overlays are unaffected.
    h1.cove(&["network", "create", "-d", "overlay", "--subnet", "10.0.21.0/24", "plain"]).ok();
    h1.cove(&["run", "-d", "--network", "plain", "--name", "c2", "bb", "sleep", "60"]).ok();
}
