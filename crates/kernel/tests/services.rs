//! Privileged tests of service load balancing (ADR 0020): the ruleset and deltas of
//! `cove_firewall` applied by the executor, proved with real TCP and UDP traffic.
//!
//! Each test runs in a fresh network and mount namespace of its own (`support`) and builds
//! a "host" namespace inside it: bridge `br0` (10.0.9.1/24, `nf_call_iptables` on), the
//! VIP 10.0.9.100/32 on the bridge, backends b1..b3 (10.0.9.11-13) in namespaces of their
//! own answering with their name, and a client (10.0.9.50). The routing-mesh test adds a
//! second host joined by a VXLAN over an underlay (203.0.113.0/24) and an outside client
//! (203.0.113.100). Traffic stays inside those namespaces.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cove_drivers::plan::{Netns, Op, PortFlags, OWNED_LINK_GROUP};
use cove_firewall::{
    Backend, FirewallModel, IngressPort, NetworkRules, Proto, ServiceLb, ServicePort,
};
use cove_kernel::Kernel;
use cove_model::MacAddr;
use support::*;

const BRIDGE: &str = "br0";
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 100);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 50);
const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 1);
const WEB: &str = "0000000000a1";

/// Who connected to a backend, in order.
type Peers = Arc<Mutex<Vec<IpAddr>>>;

/// A backend task: its namespace, address, and the peers its servers saw.
struct Task {
    name: String,
    ns: PathBuf,
    ip: Ipv4Addr,
    tcp_peers: Peers,
}

/// One host with its tasks and a client on the bridge.
struct Lab {
    host: PathBuf,
    client: PathBuf,
    tasks: Vec<Task>,
}

fn bridge_mac(n: u8) -> MacAddr {
    MacAddr([2, 0x42, 0xaa, 0, 0, n])
}

fn task_mac(ip: Ipv4Addr) -> MacAddr {
    MacAddr::from_ipv4(ip)
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

/// A bridge with its addresses, up.
fn bridge_ops(mac: MacAddr, addrs: &[&str]) -> Vec<Op> {
    let mut ops =
        vec![Op::CreateBridge { name: BRIDGE.into(), group: OWNED_LINK_GROUP, mtu: 1450, mac }];
    for a in addrs {
        ops.push(Op::AddAddress {
            netns: Netns::Host,
            link: BRIDGE.into(),
            addr: a.parse().unwrap(),
        });
    }
    // Forwarding in this test host only; no ICMP redirects for DNAT'ed traffic that goes
    // back out of the bridge it came in on.
    for (key, value) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/ipv4/conf/all/send_redirects", "0"),
        ("net/ipv4/conf/br0/send_redirects", "0"),
    ] {
        ops.push(Op::Sysctl { netns: Netns::Host, key: key.into(), value: value.into() });
    }
    ops.push(Op::SetUp { netns: Netns::Host, link: BRIDGE.into() });
    ops
}

/// A namespace on the bridge: veth, address, up, default route via the gateway. (Then
/// [`hairpin`] on its port.)
fn attach_ops(port: &str, ns: &Path, ip: Ipv4Addr) -> Vec<Op> {
    let sb = Netns::Path(ns.to_owned());
    vec![
        Op::CreateVeth {
            host_name: port.into(),
            group: OWNED_LINK_GROUP,
            bridge: BRIDGE.into(),
            mtu: 1450,
            peer_name: "eth0".into(),
            peer_netns: ns.to_owned(),
            peer_mac: task_mac(ip),
        },
        Op::AddAddress {
            netns: sb.clone(),
            link: "eth0".into(),
            addr: ipnet::IpNet::new(IpAddr::V4(ip), 24).unwrap(),
        },
        Op::SetUp { netns: sb.clone(), link: "eth0".into() },
        Op::AddRoute {
            netns: sb,
            dst: "0.0.0.0/0".parse().unwrap(),
            gateway: Some(IpAddr::V4(GATEWAY)),
            link: "eth0".into(),
        },
    ]
}

/// Hairpin mode on the bridge ports of the host `ns`, as Cove sets it on container ports
/// (`Op::Hairpin`, through the daemon's sysfs, which is not this test host's): under
/// br_netfilter, a task DNAT'ed to itself is bridged back out of the port it came in on.
fn hairpin(ns: &Path, ports: &[String]) {
    for p in ports {
        run_in_netns(ns, &["bridge", "link", "set", "dev", p, "hairpin", "on"]);
    }
}

/// A TCP server on port 80 of `ns` that answers every connection with `name` and records
/// the peer's address.
fn serve_tcp(ns: &Path, name: &str) -> Peers {
    let listener = in_netns(ns, || TcpListener::bind("0.0.0.0:80").unwrap());
    let peers: Peers = Arc::default();
    let (seen, name) = (peers.clone(), name.to_string());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            if let Ok(peer) = c.peer_addr() {
                seen.lock().unwrap().push(peer.ip());
            }
            let _ = c.write_all(name.as_bytes());
        }
    });
    peers
}

/// A UDP server on port 53 of `ns` that answers every datagram with `name`.
fn serve_udp(ns: &Path, name: &str) {
    let sock = in_netns(ns, || UdpSocket::bind("0.0.0.0:53").unwrap());
    let name = name.to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, peer)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(name.as_bytes(), peer);
        }
    });
}

/// One TCP connection from `ns` to `to`: the name the backend answered with.
fn fetch_in(to: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// `n` connections from `ns` to `to`, one after the other.
fn fetch_many(ns: &Path, to: SocketAddr, n: usize) -> Vec<std::io::Result<String>> {
    in_netns(ns, move || (0..n).map(|_| fetch_in(to)).collect())
}

fn fetch(ns: &Path, to: SocketAddr) -> std::io::Result<String> {
    fetch_many(ns, to, 1).pop().unwrap()
}

/// How many answers each name gave; panics on any failed connection.
fn tally(results: Vec<std::io::Result<String>>) -> BTreeMap<String, usize> {
    let mut t = BTreeMap::new();
    for r in results {
        *t.entry(r.expect("connection through the VIP")).or_insert(0) += 1;
    }
    t
}

fn network() -> NetworkRules {
    NetworkRules {
        bridge: BRIDGE.into(),
        subnets4: vec!["10.0.9.0/24".parse().unwrap()],
        subnets6: vec![],
        internal: false,
        icc: true,
        masquerade: true,
    }
}

fn model(services: Vec<ServiceLb>) -> FirewallModel {
    FirewallModel {
        networks: vec![network()],
        service_lb: true,
        services,
        ..FirewallModel::default()
    }
}

/// The service `WEB` on the VIP, `ports`, with the given local backends.
fn web(ports: &[(Proto, u16)], backends: &[Ipv4Addr]) -> ServiceLb {
    ServiceLb {
        id: WEB.into(),
        vips: vec![IpAddr::V4(VIP)],
        ports: ports.iter().map(|&(proto, port)| ServicePort { proto, port }).collect(),
        backends: backends.iter().map(|&b| Backend { ip: IpAddr::V4(b), local: true }).collect(),
        ingress: vec![],
        ingress_snat: None,
        local_only: false,
    }
}

/// Applies `text` with `nft -f -` in the host namespace.
fn nft_apply(host: &Path, text: String) {
    block_on_in_netns(host, move || async move { cove_kernel::nft::apply(&text).await })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Applies the delta from `before` to `after` (one transaction) in the host namespace,
/// through the long-lived `nft -i` session the daemon uses (`session`) or `nft -f -`.
fn apply_delta(host: &Path, before: &FirewallModel, after: &FirewallModel, session: bool) {
    let delta = cove_firewall::element_delta(before, after).expect("no rule changes");
    assert!(delta.to_netlink().is_none(), "service deltas go through nft");
    let text = delta.render_text();
    assert!(!text.contains("table"), "a delta, not a full ruleset: {text}");
    if !session {
        return nft_apply(host, text);
    }
    block_on_in_netns(host, move || async move {
        let mut s = cove_kernel::nft::NftSession::spawn()?;
        s.run(&text).await
    })
    .unwrap_or_else(|e| panic!("{e}"));
}

fn counter(host: &Path, name: &'static str) -> u64 {
    let text = block_on_in_netns(host, || async {
        cove_kernel::nft::list_counters("inet", "cove").await.unwrap()
    });
    let all = cove_firewall::parse_counters(&text);
    all.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("{name} in {text}")).packets
}

/// Why the host cannot run these tests, if it cannot: no `numgen` (or another nftables
/// feature), or no br_netfilter (replies between two ports of one bridge would not be
/// un-NAT'ed; `nf_call_iptables` on the bridge needs the module).
fn missing_feature(host: &Path) -> Option<String> {
    let probe = block_on_in_netns(host, || async {
        cove_kernel::nft::check(cove_kernel::nft::NUMGEN_PROBE).await
    });
    if let Err(e) = probe {
        return Some(format!("the kernel refuses what service load balancing needs: {e}"));
    }
    let brnf =
        in_netns(host, || std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables"));
    match brnf {
        Err(e) => Some(format!("no br_netfilter (/proc/sys/net/bridge: {e})")),
        Ok(_) => None,
    }
}

/// The host, its backends (`n`, serving TCP 80 and UDP 53) and a client; the firewall
/// with `services` applied. `None` (after printing why) when the kernel lacks a feature.
async fn lab(dir: &Path, n: u8, services: Vec<ServiceLb>) -> Option<Lab> {
    let host = dir.join("netns/host");
    let client = dir.join("netns/client");
    let outer = Kernel::new().await.unwrap();
    outer.create_netns(&host).await.unwrap();
    let mut ops = bridge_ops(bridge_mac(1), &["10.0.9.1/24", "10.0.9.100/32"]);
    let mut tasks = Vec::new();
    for i in 1..=n {
        let t = Task {
            name: format!("b{i}"),
            ns: dir.join(format!("netns/b{i}")),
            ip: Ipv4Addr::new(10, 0, 9, 10 + i),
            tcp_peers: Arc::default(),
        };
        ops.extend(attach_ops(&format!("vb{i}"), &t.ns, t.ip));
        tasks.push(t);
    }
    ops.extend(attach_ops("vc", &client, CLIENT));
    let spaces: Vec<PathBuf> = tasks.iter().map(|t| t.ns.clone()).chain([client.clone()]).collect();
    on_host(&host, move |k| async move {
        for ns in &spaces {
            k.create_netns(ns).await.unwrap();
        }
        k.apply(&ops).await.unwrap();
    });
    // br_netfilter for this bridge only: the attribute, not the namespace's sysctl.
    run_in_netns(&host, &["ip", "link", "set", BRIDGE, "type", "bridge", "nf_call_iptables", "1"]);
    hairpin(&host, &(1..=n).map(|i| format!("vb{i}")).collect::<Vec<_>>());
    if let Some(why) = missing_feature(&host) {
        println!("skipping: {why}");
        eprintln!("skipping: {why}");
        return None;
    }
    for t in &mut tasks {
        t.tcp_peers = serve_tcp(&t.ns, &t.name);
        serve_udp(&t.ns, &t.name);
    }
    nft_apply(&host, cove_firewall::render(&model(services)));
    Some(Lab { host, client, tasks })
}

fn ips(tasks: &[Task]) -> Vec<Ipv4Addr> {
    tasks.iter().map(|t| t.ip).collect()
}

fn vip(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(VIP), port)
}

#[test]
fn the_vip_balances_new_connections_and_follows_backend_changes() {
    in_fresh_netns(|dir| async move {
        let s = web(&[(Proto::Tcp, 80)], &[]);
        let Some(lab) = lab(&dir, 3, vec![s]).await else { return };
        let three = model(vec![web(&[(Proto::Tcp, 80)], &ips(&lab.tasks))]);
        apply_delta(&lab.host, &model(vec![web(&[(Proto::Tcp, 80)], &[])]), &three, false);

        // 300 new connections: each backend gets 59..=141 (p = 1/3: mean 100, sd 8.2; a
        // false failure is below 1e-6).
        let t = tally(fetch_many(&lab.client, vip(80), 300));
        println!("300 connections to the VIP: {t:?}");
        assert_eq!(t.values().sum::<usize>(), 300, "{t:?}");
        assert_eq!(t.len(), 3, "{t:?}");
        for (name, n) in &t {
            assert!((59..=141).contains(n), "{name} answered {n} of 300: {t:?}");
        }
        // The backends saw the client's own address (br_netfilter un-NATs the replies).
        for task in &lab.tasks {
            let peers = task.tcp_peers.lock().unwrap().clone();
            assert!(
                !peers.is_empty() && peers.iter().all(|p| *p == IpAddr::V4(CLIENT)),
                "{peers:?}"
            );
        }

        // b2 leaves (through the daemon's nft -i session): every new connection succeeds,
        // none reaches it.
        let keep = [lab.tasks[0].ip, lab.tasks[2].ip];
        let two = model(vec![web(&[(Proto::Tcp, 80)], &keep)]);
        apply_delta(&lab.host, &three, &two, true);
        let t = tally(fetch_many(&lab.client, vip(80), 100));
        assert_eq!(t.values().sum::<usize>(), 100, "{t:?}");
        assert!(!t.contains_key("b2"), "{t:?}");
        assert_eq!(t.len(), 2, "{t:?}");

        // It comes back: reached again ((2/3)^100 is the chance of a false failure).
        apply_delta(&lab.host, &two, &three, false);
        let t = tally(fetch_many(&lab.client, vip(80), 100));
        assert!(t.get("b2").is_some_and(|&n| n > 0), "{t:?}");
        let listed =
            run_in_netns(&lab.host, &["nft", "list", "chain", "inet", "cove", "svc-0000000000a1"]);
        assert!(listed.contains("numgen random mod 3"), "{listed}");
    });
}

#[test]
fn without_backends_the_vip_refuses_and_other_ports_of_it_are_dropped() {
    in_fresh_netns(|dir| async move {
        let Some(lab) = lab(&dir, 1, vec![]).await else { return };
        let one = model(vec![web(&[(Proto::Tcp, 80)], &ips(&lab.tasks))]);
        apply_delta(&lab.host, &model(vec![]), &one, false);
        // The host's own services on 22 and 80: what the VIP must never expose.
        let _ssh = in_netns(&lab.host, || TcpListener::bind("0.0.0.0:22").unwrap());
        let _web = in_netns(&lab.host, || TcpListener::bind("0.0.0.0:80").unwrap());
        let host = |port| SocketAddr::new(IpAddr::V4(GATEWAY), port);
        // Positive controls: the client reaches them on the bridge address, and the VIP's
        // service port answers from the backend.
        assert!(in_netns(&lab.client, move || TcpStream::connect(host(22))).is_ok());
        assert!(in_netns(&lab.client, move || TcpStream::connect(host(80))).is_ok());
        assert_eq!(fetch(&lab.client, vip(80)).unwrap(), "b1");

        // Zero backends: refused at once (a reset), not a timeout, and not the host's own
        // port 80 either.
        let zero = model(vec![web(&[(Proto::Tcp, 80)], &[])]);
        apply_delta(&lab.host, &one, &zero, true);
        let err = fetch(&lab.client, vip(80)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");

        // Another port of the VIP: dropped and counted, although the host listens on it.
        let before = counter(&lab.host, "drop_vip_other");
        let err = in_netns(&lab.client, move || {
            TcpStream::connect_timeout(&vip(22), Duration::from_secs(1)).map(drop)
        })
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(counter(&lab.host, "drop_vip_other") > before);
        assert!(in_netns(&lab.client, move || TcpStream::connect(host(22))).is_ok());

        // A backend again: served again.
        apply_delta(&lab.host, &zero, &one, false);
        assert_eq!(fetch(&lab.client, vip(80)).unwrap(), "b1");
    });
}

#[test]
fn a_backend_reaching_its_own_vip_is_hairpinned() {
    in_fresh_netns(|dir| async move {
        let Some(lab) = lab(&dir, 3, vec![]).await else { return };
        nft_apply(&lab.host, cove_firewall::render(&model(vec![web(&[], &ips(&lab.tasks))])));
        // b1 connects to its own service (port-less: any port) 60 times; (2/3)^60 is the
        // chance it never gets itself.
        let b1 = &lab.tasks[0];
        let t = tally(fetch_many(&b1.ns, vip(80), 60));
        assert_eq!(t.values().sum::<usize>(), 60, "{t:?}");
        let own = *t.get("b1").expect("b1 picked itself at least once");
        // When b1 is its own backend it sees the bridge's address (masquerade), otherwise
        // the others see b1's own address.
        let seen = b1.tcp_peers.lock().unwrap().clone();
        assert_eq!(seen.len(), own);
        assert!(seen.iter().all(|p| *p == IpAddr::V4(GATEWAY)), "{seen:?}");
        for other in &lab.tasks[1..] {
            let seen = other.tcp_peers.lock().unwrap().clone();
            assert!(seen.iter().all(|p| *p == IpAddr::V4(b1.ip)), "{seen:?}");
        }
    });
}

/// Sends one datagram from `sock` to the VIP's port 53; the name that answered.
fn ask(sock: &UdpSocket) -> String {
    sock.send_to(b"?", vip(53)).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = sock.recv_from(&mut buf).expect("an answer");
    assert_eq!(from, vip(53), "the reply comes from the VIP");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_udp_flow_leaves_a_removed_backend_once_its_conntrack_entry_goes() {
    in_fresh_netns(|dir| async move {
        let Some(lab) = lab(&dir, 3, vec![]).await else { return };
        let three = model(vec![web(&[(Proto::Udp, 53)], &ips(&lab.tasks))]);
        nft_apply(&lab.host, cove_firewall::render(&three));
        let sock = in_netns(&lab.client, || {
            let s = UdpSocket::bind("10.0.9.50:4000").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s
        });
        // The flow is pinned to one backend by its conntrack entry.
        let pinned = ask(&sock);
        for _ in 0..5 {
            assert_eq!(ask(&sock), pinned);
        }
        let gone = lab.tasks.iter().find(|t| t.name == pinned).unwrap().ip;
        let stale = |host: &Path| {
            in_netns(host, move || cove_kernel::conntrack::entries(false).unwrap())
                .into_iter()
                .filter(|e| e.reply.src == IpAddr::V4(gone) && e.proto == 17)
                .count()
        };
        assert_eq!(stale(&lab.host), 1);

        // The backend leaves the service, its entry stays: the flow still reaches it
        // (it still runs here, so it answers). The negative control.
        let rest: Vec<Ipv4Addr> = ips(&lab.tasks).into_iter().filter(|&ip| ip != gone).collect();
        let two = model(vec![web(&[(Proto::Udp, 53)], &rest)]);
        apply_delta(&lab.host, &three, &two, false);
        assert_eq!(ask(&sock), pinned, "without cleanup the stale entry still wins");
        assert_eq!(stale(&lab.host), 1);

        // Cleanup: the next datagram of the same 5-tuple is a new flow, to a live backend.
        let deleted = in_netns(&lab.host, move || {
            cove_kernel::conntrack::delete_by_reply_source(IpAddr::V4(gone), Some(17)).unwrap()
        });
        assert_eq!(deleted, 1);
        assert_eq!(stale(&lab.host), 0);
        let now = ask(&sock);
        assert_ne!(now, pinned);
        assert!(["b1", "b2", "b3"].contains(&now.as_str()), "{now}");
        for _ in 0..5 {
            assert_eq!(ask(&sock), now, "pinned to the new backend");
        }
        // Cleaning a backend without entries deletes nothing.
        let none = in_netns(&lab.host, move || {
            cove_kernel::conntrack::delete_by_reply_source(IpAddr::V4(gone), None).unwrap()
        });
        assert_eq!(none, 0);
    });
}

/// The routing-mesh lab: an underlay bridge in its own namespace joining host h1
/// (203.0.113.11), host h2 (.12) and an outside client (.100); h1 runs b1 and b2, h2 runs
/// b4, the overlay (VNI 4097) joins both hosts' bridges. h1's node address on the overlay
/// is 10.0.9.201: what remote backends see for routing-mesh traffic.
struct Mesh {
    h1: PathBuf,
    outside: PathBuf,
    local: Vec<Task>,
    remote: Task,
}

const NODE1: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 201);
const MESH: &str = "0000000000b2";

async fn mesh(dir: &Path) -> Option<Mesh> {
    let ns = |n: &str| dir.join(format!("netns/{n}"));
    let (wire, h1, h2, outside) = (ns("wire"), ns("h1"), ns("h2"), ns("outside"));
    let outer = Kernel::new().await.unwrap();
    for n in [&wire, &h1, &h2, &outside] {
        outer.create_netns(n).await.unwrap();
    }
    // The underlay: one bridge, three veths into h1, h2 and outside.
    let ports = [("u1", &h1, "203.0.113.11/24"), ("u2", &h2, "203.0.113.12/24")];
    let ports = ports.into_iter().chain([("u3", &outside, "203.0.113.100/24")]);
    let mut ops = vec![Op::CreateBridge {
        name: "ul".into(),
        group: OWNED_LINK_GROUP,
        mtu: 1500,
        mac: bridge_mac(9),
    }];
    for (i, (port, ns, addr)) in ports.enumerate() {
        let sb = Netns::Path(ns.clone());
        ops.extend([
            Op::CreateVeth {
                host_name: port.into(),
                group: OWNED_LINK_GROUP,
                bridge: "ul".into(),
                mtu: 1500,
                peer_name: "ul0".into(),
                peer_netns: ns.clone(),
                peer_mac: MacAddr([2, 0x42, 0xcb, 0, 0x71, i as u8 + 1]),
            },
            Op::AddAddress { netns: sb.clone(), link: "ul0".into(), addr: addr.parse().unwrap() },
            Op::SetUp { netns: sb, link: "ul0".into() },
        ]);
    }
    ops.push(Op::SetUp { netns: Netns::Host, link: "ul".into() });
    on_host(&wire, move |k| async move { k.apply(&ops).await.unwrap() });

    let task = |name: &str, ip: Ipv4Addr| Task {
        name: name.into(),
        ns: ns(name),
        ip,
        tcp_peers: Arc::default(),
    };
    let local =
        vec![task("b1", Ipv4Addr::new(10, 0, 9, 11)), task("b2", Ipv4Addr::new(10, 0, 9, 12))];
    let remote = task("b4", Ipv4Addr::new(10, 0, 9, 14));
    let remote_entry = (remote.ip, task_mac(remote.ip), "203.0.113.12");
    let ops1 = overlay_ops(1, "203.0.113.11", &[&local[0], &local[1]], remote_entry);
    let ops2 = overlay_ops(2, "203.0.113.12", &[&remote], (NODE1, bridge_mac(1), "203.0.113.11"));
    for (host, ops, spaces) in [
        (&h1, ops1, vec![local[0].ns.clone(), local[1].ns.clone()]),
        (&h2, ops2, vec![remote.ns.clone()]),
    ] {
        on_host(host, move |k| async move {
            for ns in &spaces {
                k.create_netns(ns).await.unwrap();
            }
            k.apply(&ops).await.unwrap();
        });
        run_in_netns(
            host,
            &["ip", "link", "set", BRIDGE, "type", "bridge", "nf_call_iptables", "1"],
        );
    }
    if let Some(why) = missing_feature(&h1) {
        println!("skipping: {why}");
        eprintln!("skipping: {why}");
        return None;
    }
    let mut local = local;
    let mut remote = remote;
    for t in local.iter_mut().chain([&mut remote]) {
        t.tcp_peers = serve_tcp(&t.ns, &t.name);
    }
    Some(Mesh { h1, outside, local, remote })
}

/// One host of the mesh: its bridge (its own MAC), the VXLAN device on it, its tasks, and
/// the entries for an address that lives on the other host (`peer`: address, MAC, the
/// other host's underlay address), as the overlay driver plans them.
fn overlay_ops(
    me: u8,
    underlay: &str,
    tasks: &[&Task],
    peer: (Ipv4Addr, MacAddr, &str),
) -> Vec<Op> {
    let mut ops = bridge_ops(bridge_mac(me), &["10.0.9.1/24"]);
    if me == 1 {
        ops.push(Op::AddAddress {
            netns: Netns::Host,
            link: BRIDGE.into(),
            addr: ipnet::IpNet::new(IpAddr::V4(NODE1), 32).unwrap(),
        });
    }
    ops.extend([
        Op::CreateVxlan {
            name: "vx0".into(),
            group: OWNED_LINK_GROUP,
            vni: 4097,
            local: underlay.parse().unwrap(),
            port: 4789,
            mtu: 1450,
            master: BRIDGE.into(),
        },
        Op::SetPortFlags { link: "vx0".into(), flags: PortFlags::OVERLAY_VXLAN },
        Op::SetUp { netns: Netns::Host, link: "vx0".into() },
    ]);
    for (i, t) in tasks.iter().enumerate() {
        ops.extend(attach_ops(&format!("vb{i}"), &t.ns, t.ip));
    }
    let (addr, mac, vtep) = peer;
    ops.extend([
        Op::Neighbor { netns: Netns::Host, link: "vx0".into(), addr: IpAddr::V4(addr), mac },
        Op::VxlanFdb { link: "vx0".into(), mac, dst: vtep.parse().unwrap() },
        Op::BridgeFdb { link: "vx0".into(), mac },
    ]);
    ops
}

fn mesh_service(backends: &[(&Task, bool)], local_only: bool) -> ServiceLb {
    ServiceLb {
        id: MESH.into(),
        vips: vec![],
        ports: vec![],
        backends: backends
            .iter()
            .map(|(t, local)| Backend { ip: IpAddr::V4(t.ip), local: *local })
            .collect(),
        ingress: vec![IngressPort { proto: Proto::Tcp, published: 8080, target: 80 }],
        ingress_snat: Some(IpAddr::V4(NODE1)),
        local_only,
    }
}

#[test]
fn the_routing_mesh_balances_snats_remote_backends_and_local_only_refuses() {
    in_fresh_netns(|dir| async move {
        let Some(m) = mesh(&dir).await else { return };
        let published: SocketAddr = "203.0.113.11:8080".parse().unwrap();
        let (b1, b2, b4) = (&m.local[0], &m.local[1], &m.remote);
        let all = model(vec![mesh_service(&[(b1, true), (b2, true), (b4, false)], false)]);
        nft_apply(&m.h1, cove_firewall::render(&all));

        // 90 connections from outside to h1's published port: every backend answers,
        // the remote one over the overlay.
        let t = tally(fetch_many(&m.outside, published, 90));
        println!("90 connections through the routing mesh: {t:?}");
        assert_eq!(t.values().sum::<usize>(), 90, "{t:?}");
        assert_eq!(t.keys().collect::<Vec<_>>(), ["b1", "b2", "b4"], "{t:?}");
        let outside: IpAddr = "203.0.113.100".parse().unwrap();
        for local in [b1, b2] {
            let seen = local.tcp_peers.lock().unwrap().clone();
            assert!(seen.iter().all(|p| *p == outside), "client address kept: {seen:?}");
        }
        let seen = b4.tcp_peers.lock().unwrap().clone();
        assert!(!seen.is_empty() && seen.iter().all(|p| *p == IpAddr::V4(NODE1)), "{seen:?}");

        // ingress-policy=local: only b1 and b2, with the client's address.
        let local_only = model(vec![mesh_service(&[(b1, true), (b2, true), (b4, false)], true)]);
        apply_delta(&m.h1, &all, &local_only, true);
        let before = b4.tcp_peers.lock().unwrap().len();
        let t = tally(fetch_many(&m.outside, published, 30));
        assert!(!t.contains_key("b4") && t.values().sum::<usize>() == 30, "{t:?}");
        assert_eq!(b4.tcp_peers.lock().unwrap().len(), before);

        // ... and with no local backend left, this host refuses.
        let none_here = model(vec![mesh_service(&[(b4, false)], true)]);
        apply_delta(&m.h1, &local_only, &none_here, false);
        let err = fetch(&m.outside, published).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        // Positive control: the same backend without local_only is reached, SNAT'ed.
        let remote_ok = model(vec![mesh_service(&[(b4, false)], false)]);
        apply_delta(&m.h1, &none_here, &remote_ok, false);
        assert_eq!(fetch(&m.outside, published).unwrap(), "b4");
        assert_eq!(b4.tcp_peers.lock().unwrap().last(), Some(&IpAddr::V4(NODE1)));
    });
}

/// `n` services of three backends each (the VIP 10.1.x.y, backends in 10.2.0.0/16).
fn many(n: u32, extra: bool) -> FirewallModel {
    let mut services = Vec::new();
    for i in 0..n {
        let [_, _, hi, lo] = i.to_be_bytes();
        let backends: Vec<Ipv4Addr> =
            (1..=3).map(|b| Ipv4Addr::new(10, 2, hi * 4 + b, lo)).collect();
        let mut s = web(&[(Proto::Tcp, 80)], &backends);
        s.id = format!("{i:012x}");
        s.vips = vec![IpAddr::V4(Ipv4Addr::new(10, 1, hi, lo))];
        if extra && i == 5 {
            s.backends.push(Backend { ip: "10.3.0.1".parse().unwrap(), local: true });
        }
        services.push(s);
    }
    let mut m = model(services);
    m.networks[0].subnets4 = vec!["10.0.0.0/8".parse().unwrap()];
    m
}

/// The cost of one backend change with 10 and 1,000 services: transaction size and apply
/// time (printed, no assertion on times).
#[test]
fn one_backend_change_costs_the_same_with_10_and_1000_services() {
    in_fresh_netns(|dir| async move {
        let host = dir.join("netns/host");
        Kernel::new().await.unwrap().create_netns(&host).await.unwrap();
        if let Some(why) = missing_feature(&host) {
            println!("skipping: {why}");
            return;
        }
        let mut report = Vec::new();
        for n in [10u32, 1000] {
            let (base, more) = (many(n, false), many(n, true));
            let full = cove_firewall::render(&base);
            let t = Instant::now();
            nft_apply(&host, full.clone());
            let full_time = t.elapsed();
            let add = cove_firewall::element_delta(&base, &more).unwrap().render_text();
            let remove = cove_firewall::element_delta(&more, &base).unwrap().render_text();
            let (mut by_process, mut by_session) = (Vec::new(), Vec::new());
            for _ in 0..5 {
                for text in [&add, &remove] {
                    let t = Instant::now();
                    nft_apply(&host, text.clone());
                    by_process.push(t.elapsed());
                }
            }
            let (a, r) = (add.clone(), remove.clone());
            let session_times = block_on_in_netns(&host, move || async move {
                let mut s = cove_kernel::nft::NftSession::spawn().unwrap();
                let mut times = Vec::new();
                for _ in 0..5 {
                    for text in [&a, &r] {
                        let t = Instant::now();
                        s.run(text).await.unwrap();
                        times.push(t.elapsed());
                    }
                }
                times
            });
            by_session.extend(session_times);
            let chains = run_in_netns(&host, &["nft", "list", "table", "inet", "cove"]);
            assert_eq!(chains.matches("chain svc-").count(), n as usize);
            by_process.sort();
            by_session.sort();
            report.push(format!(
                "{n} services: full ruleset {} bytes applied in {full_time:?}; one backend \
                 added {} bytes / removed {} bytes; applied by `nft -f -` median {:?}, by the \
                 `nft -i` session median {:?}",
                full.len(),
                add.len(),
                remove.len(),
                by_process[by_process.len() / 2],
                by_session[by_session.len() / 2],
            ));
            assert_eq!(
                add.len(),
                cove_firewall::element_delta(&many(10, false), &many(10, true))
                    .unwrap()
                    .render_text()
                    .len()
            );
        }
        for line in &report {
            println!("{line}");
            eprintln!("{line}");
        }
    });
}
