//! Privileged tests of the overlay datapath: VXLAN devices, bridge-port flags, forwarding
//! and neighbour entries, applied and observed through the executor.
//!
//! Each test runs in a fresh network and mount namespace of its own (`support`), and builds
//! its "hosts" and "containers" as further namespaces inside it: two hosts joined by a
//! veth pair as the underlay (203.0.113.11 and .12), in each a bridge with a VXLAN device
//! (VNI 4097) and a container on the bridge (10.0.9.2 and 10.0.9.3). Traffic stays inside
//! those namespaces.

mod support;

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cove_drivers::plan::{Netns, Op, PortFlags, OWNED_LINK_GROUP};
use cove_kernel::Kernel;
use cove_model::MacAddr;
use cove_plan::{diff, HostState};
use support::*;

const VNI: u32 = 4097;
const BRIDGE: &str = "ov-test";
const VX: &str = "vx-test";

/// One simulated host: its namespace, underlay address, container and the container's
/// port, address and MAC.
struct Host {
    ns: PathBuf,
    underlay: IpAddr,
    container: PathBuf,
    port: &'static str,
    ip4: IpAddr,
    ip6: IpAddr,
    mac: MacAddr,
}

fn host(dir: &Path, n: u8) -> Host {
    Host {
        ns: dir.join(format!("netns/h{n}")),
        underlay: format!("203.0.113.1{n}").parse().unwrap(),
        container: dir.join(format!("netns/c{n}")),
        port: if n == 1 { "cvtest01" } else { "cvtest02" },
        ip4: format!("10.0.9.{}", n + 1).parse().unwrap(),
        ip6: format!("fd00:9::{}", n + 1).parse().unwrap(),
        mac: MacAddr([2, 0x42, 10, 0, 9, n + 1]),
    }
}

/// The overlay network's host objects: bridge, VXLAN device on it, flags, both up.
fn overlay_ops(local: IpAddr) -> Vec<Op> {
    vec![
        Op::CreateBridge {
            name: BRIDGE.into(),
            group: OWNED_LINK_GROUP,
            mtu: 1450,
            mac: MacAddr([2, 0x42, 0xaa, 0, 0, 1]),
        },
        Op::CreateVxlan {
            name: VX.into(),
            group: OWNED_LINK_GROUP,
            vni: VNI,
            local,
            port: 4789,
            mtu: 1450,
            master: BRIDGE.into(),
        },
        Op::SetPortFlags { link: VX.into(), flags: PortFlags::OVERLAY_VXLAN },
        Op::SetUp { netns: Netns::Host, link: BRIDGE.into() },
        Op::SetUp { netns: Netns::Host, link: VX.into() },
    ]
}

/// The local container: a veth on the bridge, its addresses, up.
fn container_ops(h: &Host) -> Vec<Op> {
    let sb = Netns::Path(h.container.clone());
    vec![
        Op::CreateVeth {
            host_name: h.port.into(),
            group: OWNED_LINK_GROUP,
            bridge: BRIDGE.into(),
            mtu: 1450,
            peer_name: "eth0".into(),
            peer_netns: h.container.clone(),
            peer_mac: h.mac,
        },
        Op::AddAddress {
            netns: sb.clone(),
            link: "eth0".into(),
            addr: ipnet::IpNet::new(h.ip4, 24).unwrap(),
        },
        Op::AddAddress {
            netns: sb.clone(),
            link: "eth0".into(),
            addr: ipnet::IpNet::new(h.ip6, 64).unwrap(),
        },
        Op::SetUp { netns: sb, link: "eth0".into() },
    ]
}

/// What a host programs for a remote endpoint `peer` on the host `vtep`.
fn peer_ops(peer: &Host, vtep: IpAddr) -> Vec<Op> {
    vec![
        Op::Neighbor { netns: Netns::Host, link: VX.into(), addr: peer.ip4, mac: peer.mac },
        Op::Neighbor { netns: Netns::Host, link: VX.into(), addr: peer.ip6, mac: peer.mac },
        Op::VxlanFdb { link: VX.into(), mac: peer.mac, dst: vtep },
        Op::BridgeFdb { link: VX.into(), mac: peer.mac },
    ]
}

/// Run `f` with an executor of the host namespace at `ns`.
fn on_host<T, F, Fut>(ns: &Path, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce(Kernel) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    block_on_in_netns(ns, || async move { f(Kernel::new().await.unwrap()).await })
}

fn run_on(ns: &Path, cmd: &[&str]) -> String {
    run_in_netns(ns, cmd)
}

/// Two hosts on an underlay, each with the overlay, a container, and entries for the
/// other's container.
async fn two_hosts(dir: &Path) -> (Host, Host) {
    let (h1, h2) = (host(dir, 1), host(dir, 2));
    let outer = Kernel::new().await.unwrap();
    outer.create_netns(&h1.ns).await.unwrap();
    outer.create_netns(&h2.ns).await.unwrap();
    let h2ns = h2.ns.display().to_string();
    run_on(
        &h1.ns,
        &["ip", "link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", &h2ns],
    );
    for h in [&h1, &h2] {
        let addr = format!("{}/24", h.underlay);
        run_on(&h.ns, &["ip", "addr", "add", &addr, "dev", "ul0"]);
        run_on(&h.ns, &["ip", "link", "set", "ul0", "up"]);
    }
    for (me, other) in [(&h1, &h2), (&h2, &h1)] {
        let mut ops = overlay_ops(me.underlay);
        ops.extend(container_ops(me));
        ops.extend(peer_ops(other, other.underlay));
        let container = me.container.clone();
        on_host(&me.ns, move |k| async move {
            k.create_netns(&container).await.unwrap();
            k.apply(&ops).await.unwrap();
        });
    }
    (h1, h2)
}

/// The host objects of one host's plan (what the diff compares with the kernel).
fn desired(me: &Host, other: &Host, vtep: IpAddr) -> HostState {
    let mut ops = overlay_ops(me.underlay);
    ops.extend(container_ops(me));
    ops.extend(peer_ops(other, vtep));
    HostState::from_ops(&ops)
}

fn observe(ns: &Path) -> HostState {
    on_host(ns, |k| async move { k.observe_host(&[]).await.unwrap() })
}

/// TCP connect from the namespace `ns` to `to`.
fn tcp_from(ns: &Path, to: SocketAddr) -> std::io::Result<()> {
    in_netns(ns, move || TcpStream::connect_timeout(&to, Duration::from_secs(3)).map(drop))
}

/// A UDP socket bound in `ns`.
fn udp_in(ns: &Path, at: SocketAddr) -> UdpSocket {
    in_netns(ns, move || {
        let s = UdpSocket::bind(at).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        s
    })
}

/// Send one datagram from `ns` to `to`; whether `rx` got it within its read timeout.
fn datagram_arrives(ns: &Path, to: SocketAddr, rx: &UdpSocket, payload: &'static [u8]) -> bool {
    in_netns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(payload, to).unwrap();
    });
    let mut buf = [0u8; 64];
    loop {
        match rx.recv_from(&mut buf) {
            Ok((n, _)) if &buf[..n] == payload => return true,
            Ok(_) => continue, // an earlier probe's late datagram
            Err(_) => return false,
        }
    }
}

/// Whether a path that should work does: the datagram is sent again a few times, because on a
/// loaded machine the first one can be lost while a fresh port or neighbour entry settles
/// (CI once lost the very first one). A path that is cut fails every try.
fn path_works(ns: &Path, to: SocketAddr, rx: &UdpSocket, payload: &'static [u8]) -> bool {
    (0..8).any(|_| datagram_arrives(ns, to, rx, payload))
}

/// A link's packet counter (`tx` or `rx`) in the namespace `ns`.
fn packets(ns: &Path, link: &str, dir: &str) -> u64 {
    let out = run_on(ns, &["ip", "-s", "-j", "link", "show", "dev", link]);
    let key = format!("\"{dir}\":{{\"bytes\":");
    let at = out.find(&key).unwrap_or_else(|| panic!("{key} in {out}"));
    let rest = &out[at..];
    let p = rest.find("\"packets\":").unwrap() + "\"packets\":".len();
    rest[p..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

#[test]
fn containers_on_two_hosts_talk_over_vxlan() {
    in_fresh_netns(|dir| async move {
        let (h1, h2) = two_hosts(&dir).await;

        // The device is exactly the one asked for.
        let link = run_on(&h1.ns, &["ip", "-d", "link", "show", VX]);
        for want in
            ["vxlan id 4097 local 203.0.113.11", "dstport 4789", "nolearning", "proxy", "mtu 1450"]
        {
            assert!(link.contains(want), "{want:?} missing: {link}");
        }
        // No miss notifications, no default destination (`remote` / `group` on the
        // VXLAN line; the link's own `group` is Cove's link group).
        let vxlan_line = link.lines().find(|l| l.trim_start().starts_with("vxlan id")).unwrap();
        for unwanted in ["l2miss", "l3miss", "remote", "group"] {
            assert!(!vxlan_line.contains(unwanted), "{unwanted:?}: {vxlan_line}");
        }
        assert!(link.contains("group 1668249189"), "Cove's link group: {link}");
        assert!(link.contains(&format!("master {BRIDGE}")), "{link}");
        let port = run_on(&h1.ns, &["bridge", "-d", "link", "show", "dev", VX]);
        for want in ["learning off", "flood off", "mcast_flood on", "bcast_flood on"] {
            assert!(port.contains(want), "{want:?} missing: {port}");
        }
        let fdb = run_on(&h1.ns, &["bridge", "fdb", "show", "dev", VX]);
        assert!(fdb.contains("02:42:0a:00:09:03 dst 203.0.113.12 self permanent"), "{fdb}");
        assert!(fdb.contains("02:42:0a:00:09:03 master ov-test static"), "{fdb}");
        assert!(!fdb.contains("00:00:00:00:00:00"), "no flood entry: {fdb}");

        // TCP both ways across the tunnel, IPv4 and IPv6 (ARP and ND answered by `proxy`).
        let listener = in_netns(&h2.container, || TcpListener::bind("[::]:8080").unwrap());
        tcp_from(&h1.container, "10.0.9.3:8080".parse().unwrap()).expect("IPv4 across VXLAN");
        assert_eq!(
            listener.accept().unwrap().1.ip().to_canonical(),
            "10.0.9.2".parse::<IpAddr>().unwrap()
        );
        tcp_from(&h1.container, "[fd00:9::3]:8080".parse().unwrap()).expect("IPv6 across VXLAN");
        assert_eq!(listener.accept().unwrap().1.ip(), "fd00:9::2".parse::<IpAddr>().unwrap());
        let neigh = run_on(&h1.container, &["ip", "neigh", "show", "10.0.9.3"]);
        assert!(neigh.contains("lladdr 02:42:0a:00:09:03"), "proxied ARP answer: {neigh}");
        // It went through the tunnel: the VXLAN devices counted it both ways.
        assert!(packets(&h1.ns, VX, "tx") > 0 && packets(&h2.ns, VX, "rx") > 0);
        assert!(packets(&h2.ns, VX, "tx") > 0 && packets(&h1.ns, VX, "rx") > 0);

        // The kernel holds exactly the plan: nothing to do.
        for (me, other) in [(&h1, &h2), (&h2, &h1)] {
            let ops = diff(&desired(me, other, other.underlay), &observe(&me.ns));
            assert!(ops.is_empty(), "{ops:#?}");
        }
    });
}

#[test]
fn without_forwarding_entries_nothing_arrives() {
    in_fresh_netns(|dir| async move {
        let (h1, h2) = two_hosts(&dir).await;
        let rx = udp_in(&h2.container, "10.0.9.3:9000".parse().unwrap());
        let to: SocketAddr = "10.0.9.3:9000".parse().unwrap();
        // Positive control, which also leaves c1 with a resolved neighbour for c2.
        assert!(path_works(&h1.container, to, &rx, b"control"));

        // No VXLAN entry: the bridge hands the frame to the VXLAN device, which has no
        // destination for it and no default entry: dropped.
        let vxlan = Op::VxlanFdb { link: VX.into(), mac: h2.mac, dst: h2.underlay };
        let del = vxlan.inverse().unwrap();
        on_host(&h1.ns, move |k| async move { k.apply(&[del]).await.unwrap() });
        assert!(!datagram_arrives(&h1.container, to, &rx, b"no vxlan entry"));
        let again = vxlan.clone();
        on_host(&h1.ns, move |k| async move { k.apply(&[again]).await.unwrap() });
        assert!(path_works(&h1.container, to, &rx, b"vxlan entry back"));

        // No static bridge entry: the MAC is unknown to the bridge, and unknown unicast is
        // not flooded to the VXLAN port.
        let bridge = Op::BridgeFdb { link: VX.into(), mac: h2.mac };
        let del = bridge.inverse().unwrap();
        on_host(&h1.ns, move |k| async move { k.apply(&[del]).await.unwrap() });
        assert!(!datagram_arrives(&h1.container, to, &rx, b"no bridge entry"));
        on_host(&h1.ns, move |k| async move { k.apply(&[bridge]).await.unwrap() });
        assert!(path_works(&h1.container, to, &rx, b"bridge entry back"));
    });
}

#[test]
fn a_moved_peer_is_one_replace_and_a_gone_one_leaves_nothing() {
    in_fresh_netns(|dir| async move {
        let (h1, h2) = two_hosts(&dir).await;
        // h2's underlay address changes: h1 replaces the destination, one op.
        let moved: IpAddr = "203.0.113.22".parse().unwrap();
        let want = desired(&h1, &h2, moved);
        let ops = diff(&want, &observe(&h1.ns));
        assert_eq!(ops, [Op::VxlanFdb { link: VX.into(), mac: h2.mac, dst: moved }]);
        on_host(&h1.ns, move |k| async move { k.apply(&ops).await.unwrap() });
        let seen = observe(&h1.ns);
        assert_eq!(seen.fdb_self.get(&(VX.to_string(), h2.mac)), Some(&moved));
        assert!(diff(&want, &seen).is_empty());
        let fdb = run_on(&h1.ns, &["bridge", "fdb", "show", "dev", VX]);
        assert!(fdb.contains("02:42:0a:00:09:03 dst 203.0.113.22 self permanent"), "{fdb}");
        assert!(!fdb.contains("203.0.113.12"), "{fdb}");

        // h2's container is gone: its entries go, the device and the local port stay.
        let mut ops = overlay_ops(h1.underlay);
        ops.extend(container_ops(&h1));
        let want = HostState::from_ops(&ops);
        let ops = diff(&want, &observe(&h1.ns));
        let shown: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
        assert_eq!(
            shown,
            [
                "delete neighbour 10.0.9.3 dev vx-test in host",
                "delete neighbour fd00:9::3 dev vx-test in host",
                "delete fdb 02:42:0a:00:09:03 dev vx-test self",
                "delete fdb 02:42:0a:00:09:03 dev vx-test master",
            ]
        );
        let errors = on_host(&h1.ns, move |k| async move { k.teardown(&ops).await });
        assert!(errors.is_empty(), "{errors:?}");
        let seen = observe(&h1.ns);
        assert!(seen.fdb_self.is_empty() && seen.fdb_master.is_empty(), "{seen:#?}");
        assert!(!seen.neighbours.keys().any(|(l, _)| l == VX), "{seen:#?}");
        assert!(diff(&want, &seen).is_empty());
        let fdb = run_on(&h1.ns, &["bridge", "fdb", "show", "dev", VX]);
        assert!(!fdb.contains("02:42:0a:00:09:03"), "{fdb}");
        let neigh = run_on(&h1.ns, &["ip", "neigh", "show", "dev", VX]);
        assert!(!neigh.contains("PERMANENT"), "{neigh}");
    });
}

#[test]
fn vxlan_drift_is_repaired_by_recreating_the_device() {
    in_fresh_netns(|dir| async move {
        let (h1, h2) = two_hosts(&dir).await;
        // Someone turns learning on and flooding back on.
        run_on(&h1.ns, &["ip", "link", "set", VX, "type", "vxlan", "learning"]);
        run_on(&h1.ns, &["bridge", "link", "set", "dev", VX, "flood", "on"]);
        let want = desired(&h1, &h2, h2.underlay);
        let ops = diff(&want, &observe(&h1.ns));
        assert!(matches!(&ops[0], Op::DeleteLink { name, .. } if name == VX), "{ops:#?}");
        assert!(matches!(&ops[1], Op::CreateVxlan { .. }), "{ops:#?}");
        on_host(&h1.ns, move |k| async move { k.apply(&ops).await.unwrap() });
        assert!(diff(&want, &observe(&h1.ns)).is_empty());
        let link = run_on(&h1.ns, &["ip", "-d", "link", "show", VX]);
        assert!(link.contains("nolearning"), "{link}");
        // And the tunnel works again.
        let listener = in_netns(&h2.container, || TcpListener::bind("0.0.0.0:8080").unwrap());
        tcp_from(&h1.container, "10.0.9.3:8080".parse().unwrap()).expect("after the repair");
        drop(listener);
    });
}

#[test]
fn a_failed_entry_rolls_back_its_batch_and_teardown_reports_each() {
    in_fresh_netns(|dir| async move {
        let ns = dir.join("netns/h1");
        Kernel::new().await.unwrap().create_netns(&ns).await.unwrap();
        let (mac1, mac2) = (MacAddr([2, 0x42, 1, 0, 0, 1]), MacAddr([2, 0x42, 1, 0, 0, 2]));
        let dst: IpAddr = "203.0.113.12".parse().unwrap();
        let (e, fdb) = on_host(&ns, move |k| async move {
            k.apply(&overlay_ops("203.0.113.11".parse().unwrap())).await.unwrap();
            // `lo` is no bridge port: the kernel refuses the middle entry.
            let e = k
                .apply(&[
                    Op::VxlanFdb { link: VX.into(), mac: mac1, dst },
                    Op::BridgeFdb { link: "lo".into(), mac: mac1 },
                    Op::VxlanFdb { link: VX.into(), mac: mac2, dst },
                ])
                .await
                .unwrap_err();
            (e.to_string(), k.observe_host(&[]).await.unwrap().fdb_self)
        });
        assert!(e.starts_with("replace fdb 02:42:01:00:00:01 dev lo master static: "), "{e}");
        assert!(fdb.is_empty(), "the batch's other entries were rolled back: {fdb:?}");

        // Best effort: every entry is tried, each failure reported on its own; a missing
        // device or entry counts as done.
        let errors = on_host(&ns, move |k| async move {
            k.teardown(&[
                Op::BridgeFdb { link: "lo".into(), mac: mac1 },
                Op::VxlanFdb { link: VX.into(), mac: mac1, dst },
                Op::VxlanFdb { link: "no-such-vx".into(), mac: mac1, dst },
                Op::BridgeFdb { link: "lo".into(), mac: mac2 },
                Op::DelVxlanFdb { link: VX.into(), mac: mac2 },
            ])
            .await
        });
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("replace fdb 02:42:01:00:00:01 dev lo master"), "{shown:?}");
        assert!(shown[1].starts_with("replace fdb 02:42:01:00:00:02 dev lo master"), "{shown:?}");
        let fdb = run_on(&ns, &["bridge", "fdb", "show", "dev", VX]);
        assert!(fdb.contains("02:42:01:00:00:01 dst 203.0.113.12 self permanent"), "{fdb}");
    });
}

/// 2,000 remote endpoints: a VXLAN entry, a static bridge entry and a permanent
/// neighbour each, programmed, observed and removed through the executor. Prints the
/// times (no assertion on them).
#[test]
fn two_thousand_remote_endpoints() {
    in_fresh_netns(|dir| async move {
        const N: u16 = 2000;
        let ns = dir.join("netns/h1");
        Kernel::new().await.unwrap().create_netns(&ns).await.unwrap();
        let mut ops = overlay_ops("203.0.113.11".parse().unwrap());
        let base = ops.len();
        for i in 0..N {
            let [hi, lo] = i.to_be_bytes();
            let mac = MacAddr([2, 0x42, 10, 1, hi, lo]);
            let vtep: IpAddr = format!("203.0.113.{}", 100 + i % 50).parse().unwrap();
            ops.push(Op::Neighbor {
                netns: Netns::Host,
                link: VX.into(),
                addr: format!("10.1.{hi}.{lo}").parse().unwrap(),
                mac,
            });
            ops.push(Op::VxlanFdb { link: VX.into(), mac, dst: vtep });
            ops.push(Op::BridgeFdb { link: VX.into(), mac });
        }
        let want = HostState::from_ops(&ops);
        let report = on_host(&ns, move |k| async move {
            k.apply(&ops[..base]).await.unwrap();
            let t = Instant::now();
            k.apply(&ops[base..]).await.unwrap();
            let program = t.elapsed();
            let t = Instant::now();
            let seen = k.observe_host(&[]).await.unwrap();
            let observe = t.elapsed();
            assert_eq!(seen.fdb_self.len(), N as usize);
            assert_eq!(seen.fdb_master.len(), N as usize);
            assert_eq!(seen.neighbours.len(), N as usize);
            assert!(diff(&want, &seen).is_empty());
            let gone = diff(&HostState::from_ops(&ops[..base]), &seen);
            assert_eq!(gone.len(), 3 * N as usize);
            let t = Instant::now();
            let errors = k.teardown(&gone).await;
            let remove = t.elapsed();
            assert!(errors.is_empty(), "{errors:?}");
            let seen = k.observe_host(&[]).await.unwrap();
            assert!(seen.fdb_self.is_empty() && seen.fdb_master.is_empty());
            format!(
                "{N} remote endpoints ({} entries): programmed in {program:?}, observed in \
                 {observe:?}, removed in {remove:?}",
                3 * N
            )
        });
        println!("{report}");
        eprintln!("{report}");
    });
}
