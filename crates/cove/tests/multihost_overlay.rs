//! Overlay networks across fake hosts of one netlab, with a real etcd as the cluster
//! store: a network created on one host is on the other, containers on both reach each
//! other across VXLAN, each host programs the other's endpoint statically, and removing
//! everything leaves nothing in etcd or on the hosts.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use cove_testkit::{require_etcd, require_root, Etcd, FakeHost, Netlab};

mod common;
use common::clients::{compose, docker};
use common::multihost::{eventually, inspect, FLAGS};

#[test]
fn multihost_overlay_network_spans_two_hosts() {
    require_root();
    require_etcd!();
    let mut lab = Netlab::with_hosts("multihost_overlay", Path::new(env!("CARGO_BIN_EXE_cove")), 2);
    let _etcd = Etcd::start_in("multihost_overlay", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    lab.start_daemons(&["h1", "h2"], &FLAGS);
    for h in ["h1", "h2"] {
        lab.host(h).import_busybox("bb");
    }
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    // Each host's VXLAN guard lets the other in once it knows it.
    let guard = |h: &FakeHost| h.sh_ok("nft list chain inet cove raw_prerouting");
    assert!(eventually(10, || guard(h1).contains("203.0.113.12")), "{}", guard(h1));
    assert!(eventually(10, || guard(h2).contains("203.0.113.11")), "{}", guard(h2));
    let baseline = (h1.snapshot(), h2.snapshot());

    // Both hosts are nodes of the cluster, up, at their underlay addresses.
    let nodes = h1.cove(&["node", "ls"]).ok().stdout.clone();
    for (want, hostname) in [("203.0.113.11", "h1"), ("203.0.113.12", "h2")] {
        let line = nodes.lines().find(|l| l.contains(want)).unwrap_or_else(|| panic!("{nodes}"));
        assert!(line.contains("Ready"), "{nodes}");
        // Each fake host is a machine of its own, hostname included.
        assert!(line.split_whitespace().any(|w| w.trim_start_matches('*') == hostname), "{nodes}");
    }
    // `GET /info` says which store and address (Docker 20.10's fields).
    let (code, info) = h1.api("GET", "/info", None);
    assert_eq!(code, 200);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["ClusterStore"], "etcd://203.0.113.2:2379", "{info}");
    assert_eq!(info["ClusterAdvertise"], "203.0.113.11", "{info}");
    // A node that is up cannot be removed.
    h1.cove(&["node", "rm", "203.0.113.12"]).fails().stderr_has("is up");

    // Created on h1, listed on h2 with the same id, scope global.
    let id = h1
        .cove(&["network", "create", "-d", "overlay", "--subnet", "10.0.9.0/24", "ov1"])
        .ok()
        .stdout
        .trim()
        .to_string();
    assert!(
        eventually(5, || h2.cove(&["network", "ls", "--no-trunc"]).ok().stdout.contains(&id)),
        "h2 never saw ov1"
    );
    let ls = h2.cove(&["network", "ls", "--filter", "name=ov1"]).ok().stdout.clone();
    assert!(ls.contains("overlay") && ls.contains("global"), "{ls}");
    // The same name on h2 is taken cluster-wide.
    h2.cove(&["network", "create", "-d", "overlay", "ov1"]).fails().stderr_has("already exists");

    // A server on h2, a client on h1.
    h2.cove(&[
        "run",
        "-d",
        "--network",
        "ov1",
        "--name",
        "srv",
        "bb",
        "sh",
        "-c",
        "while true; do echo hello-from-h2 | nc -l -p 8080; done",
    ])
    .ok();
    let srv_ip = inspect(h2, "srv", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    let srv_mac = inspect(h2, "srv", "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}");
    assert!(srv_ip.starts_with("10.0.9."), "{srv_ip}");
    h1.cove(&["run", "-d", "--network", "ov1", "--name", "cli", "bb", "sleep", "600"]).ok();
    let cli_ip = inspect(h1, "cli", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    assert_ne!(cli_ip, srv_ip, "global IPAM gave one address twice");

    // `network inspect` lists the hosts with endpoints on it (Docker's `Peers`).
    let peers = || {
        h1.cove(&["network", "inspect", "-f", "{{range .Peers}}{{.IP}} {{end}}", "ov1"])
            .ok()
            .stdout
            .clone()
    };
    assert!(
        eventually(5, || peers().contains("203.0.113.11") && peers().contains("203.0.113.12")),
        "{}",
        peers()
    );
    // h1 programs srv statically: a forwarding entry to h2 and a neighbour entry.
    let vx = format!("vx-{}", &id[..12]);
    assert!(
        eventually(5, || h1
            .sh(&format!("bridge fdb show dev {vx}"))
            .stdout
            .iter()
            .map(|b| *b as char)
            .collect::<String>()
            .contains(&format!("{srv_mac} dst 203.0.113.12 self permanent"))),
        "{}",
        String::from_utf8_lossy(&h1.sh(&format!("bridge fdb show dev {vx}")).stdout)
    );
    let details = h1.sh_ok(&format!("ip -d link show {vx}"));
    for want in ["vxlan id 4096", "dstport 4789", "nolearning", "proxy"] {
        assert!(details.contains(want), "{want} missing: {details}");
    }
    assert!(!details.contains("l2miss") && !details.contains("l3miss"), "{details}");

    // Across the tunnel, by address.
    let got = (0..50)
        .find_map(|_| {
            let out = h1.cove(&["exec", "cli", "sh", "-c", &format!("timeout 2 nc {srv_ip} 8080")]);
            let s = out.stdout.to_string();
            if s.contains("hello-from-h2") {
                Some(s)
            } else {
                std::thread::sleep(Duration::from_millis(100));
                None
            }
        })
        .expect("cli on h1 never reached srv on h2 across the overlay");
    assert!(got.contains("hello-from-h2"));
    // And by name: h1's resolver answers for h2's container.
    let lookup = |name: &str| h1.cove(&["exec", "cli", "nslookup", name]).stdout.to_string();
    assert!(eventually(5, || lookup("srv").contains(&srv_ip)), "{}", lookup("srv"));

    // The network cannot go while h2 has an endpoint on it; then everything goes.
    h1.cove(&["network", "rm", "ov1"]).fails().stderr_has("srv on");
    h2.cove(&["rm", "-f", "srv"]).ok();
    // Its name goes on h1 too (positive control above: it resolved).
    assert!(eventually(5, || !lookup("srv").contains(&srv_ip)), "{}", lookup("srv"));
    h1.cove(&["rm", "-f", "cli"]).ok();
    assert!(
        eventually(10, || h1.cove(&["network", "rm", "ov1"]).status == 0),
        "ov1 could not be removed once empty"
    );
    assert!(
        eventually(10, || !h2.sh(&format!("ip link show {vx}")).status.success()),
        "h2 kept the VXLAN device of a removed network"
    );
    let keys =
        _etcd.etcdctl(&["get", "--prefix", "/cove/v1/", "--keys-only"]).ok().stdout.to_string();
    let left: Vec<&str> =
        keys.lines().filter(|k| !k.is_empty() && !common::multihost::membership_key(k)).collect();
    assert!(left.is_empty(), "etcd keeps {left:?}");
    h1.assert_no_leaks(&baseline.0);
    h2.assert_no_leaks(&baseline.1);
}

/// A VXLAN datagram with the network's VNI, as `evil` or as node `h1` sends it to `h2`.
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

fn counter(h: &FakeHost, name: &str) -> u64 {
    common::nft_packets(h, "inet cove", name)
}

fn rx_packets(h: &FakeHost, link: &str) -> u64 {
    h.sh_ok(&format!("cat /sys/class/net/{link}/statistics/rx_packets")).trim().parse().unwrap()
}

/// SEC-21: VXLAN from an address that is no node of the cluster is dropped (and counted);
/// the same datagram from a node is decapsulated.
#[test]
fn multihost_overlay_drops_vxlan_from_outside_the_cluster() {
    require_root();
    require_etcd!();
    let mut lab =
        Netlab::with_hosts("multihost_vxlan_guard", Path::new(env!("CARGO_BIN_EXE_cove")), 2);
    lab.add_node("evil", Netlab::EVIL);
    let _etcd =
        Etcd::start_in("multihost_vxlan_guard", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    lab.start_daemons(&["h1", "h2"], &FLAGS);
    let id = lab
        .host("h1")
        .cove(&["network", "create", "-d", "overlay", "--subnet", "10.0.9.0/24", "ov1"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let vx = format!("vx-{}", &id[..12]);
    let h2 = lab.host("h2");
    assert!(eventually(5, || h2.sh(&format!("ip link show {vx}")).status.success()));
    let vni: u32 = h2
        .sh_ok(&format!("ip -d link show {vx}"))
        .split_whitespace()
        .skip_while(|w| *w != "id")
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("vni");
    let datagram = lab.dir().join("vxlan.bin");
    std::fs::write(&datagram, vxlan_datagram(vni, "02:42:0a:00:09:02")).unwrap();
    // Busybox's nc has no UDP mode here: python3 (Debian's, which setup needs) sends it.
    let send = format!(
        "python3 -c \"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(open('{}', 'rb').read(), ('203.0.113.12', 4789))\"",
        datagram.display()
    );

    let guard = h2.sh_ok("nft list chain inet cove raw_prerouting");
    assert!(
        eventually(10, || h2
            .sh_ok("nft list chain inet cove raw_prerouting")
            .contains("203.0.113.11")),
        "{guard}"
    );
    // Positive control: from node h1, the datagram is decapsulated by h2's VXLAN device.
    let (rx0, drop0) = (rx_packets(h2, &vx), counter(h2, "drop_vxlan_foreign"));
    let to_h2 = cove_testkit::Frames::any().to("h2").udp_dport(4789);
    let (out, seen) = lab.count_frames(&[to_h2], || lab.host("h1").sh(&send));
    assert!(seen[0] >= 1, "h1's datagram never reached h2's port: {out:?}");
    assert!(
        eventually(3, || rx_packets(h2, &vx) > rx0),
        "h2 never decapsulated h1's datagram:\n{}\n{}",
        h2.sh_ok(&format!("ip -s -d link show {vx}")),
        h2.sh_ok("nft list chain inet cove raw_prerouting")
    );
    assert_eq!(counter(h2, "drop_vxlan_foreign"), drop0);

    // From evil: it reaches h2's port (the switch counts it) and is dropped, counted.
    let rx1 = rx_packets(h2, &vx);
    let frames = cove_testkit::Frames::any().from("evil").to("h2").udp_dport(4789);
    let (_, seen) = lab.count_frames(&[frames], || {
        lab.node("evil").sh(&send);
    });
    assert!(seen[0] >= 1, "evil's datagram never reached h2's port");
    assert!(
        eventually(3, || counter(h2, "drop_vxlan_foreign") > drop0),
        "not dropped by the guard"
    );
    assert_eq!(rx_packets(h2, &vx), rx1, "h2 decapsulated a datagram from outside the cluster");
}

/// Docker's own clients against a daemon in a cluster: the docker CLI sees the overlay
/// network as global on another host, and a compose file with `driver: overlay` brings up
/// a service that a container on another host reaches by its service name.
#[test]
fn multihost_docker_cli_and_compose_on_an_overlay() {
    require_root();
    require_etcd!();
    if !cove_testkit::have_command("docker-compose") || !cove_testkit::have_command("docker") {
        cove_testkit::skip!("docker-compose or docker is not installed (scripts/setup.sh)");
    }
    let mut lab = Netlab::with_hosts("multihost_clients", Path::new(env!("CARGO_BIN_EXE_cove")), 2);
    let _etcd = Etcd::start_in("multihost_clients", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    lab.start_daemons(&["h1", "h2"], &FLAGS);
    for h in ["h1", "h2"] {
        lab.host(h).import_busybox("bb");
    }
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    docker(h1, &["network", "create", "-d", "overlay", "dov"]).ok();
    assert!(
        eventually(5, || docker(
            h2,
            &["network", "ls", "--filter", "scope=global", "--format", "{{.Name}}"]
        )
        .stdout
        .lines()
        .any(|l| l == "dov")),
        "h2's docker network ls --filter scope=global never listed dov"
    );
    let scope = docker(h2, &["network", "inspect", "dov", "--format", "{{.Scope}} {{.Driver}}"]);
    assert_eq!(scope.ok().stdout.trim(), "global overlay");

    let dir = h1.dir().join("compose-overlay");
    std::fs::create_dir_all(&dir).unwrap();
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/compose-overlay/docker-compose.yml");
    std::fs::copy(&file, dir.join("docker-compose.yml")).unwrap();
    compose(h1, &dir, &["-p", "mh", "up", "-d"]).ok();
    // From h2, by the service name, across the tunnel.
    let got = (0..50).find_map(|_| {
        let out = h2.cove(&[
            "run",
            "--rm",
            "--network",
            "mh_ov",
            "bb",
            "sh",
            "-c",
            "timeout 2 nc web 80",
        ]);
        out.stdout.contains("hello-from-compose").then_some(()).or_else(|| {
            std::thread::sleep(Duration::from_millis(200));
            None
        })
    });
    assert!(got.is_some(), "a container on h2 never reached compose's web on h1 by name");
    compose(h1, &dir, &["-p", "mh", "down"]).ok();
    assert!(eventually(10, || docker(h1, &["network", "rm", "dov"]).status == 0));
}

/// Isolation between networks holds across hosts: a container on one overlay network
/// cannot reach a container of another overlay network on another host (dropped and
/// counted where it would cross between the networks), while a container of its own
/// network on that host answers (positive control).
#[test]
fn multihost_overlay_networks_are_isolated_from_each_other() {
    require_root();
    require_etcd!();
    let mut lab =
        Netlab::with_hosts("multihost_isolation", Path::new(env!("CARGO_BIN_EXE_cove")), 2);
    let _etcd =
        Etcd::start_in("multihost_isolation", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    lab.start_daemons(&["h1", "h2"], &FLAGS);
    for h in ["h1", "h2"] {
        lab.host(h).import_busybox("bb");
    }
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    h1.cove(&["network", "create", "-d", "overlay", "--subnet", "10.0.21.0/24", "ova"]).ok();
    h1.cove(&["network", "create", "-d", "overlay", "--subnet", "10.0.22.0/24", "ovb"]).ok();
    assert!(eventually(5, || {
        let ls = h2.cove(&["network", "ls"]).stdout.clone();
        ls.contains("ova") && ls.contains("ovb")
    }));
    let server = "while true; do echo pong | nc -l -p 8080; done";
    h2.cove(&["run", "-d", "--network", "ova", "--name", "same", "bb", "sh", "-c", server]).ok();
    h2.cove(&["run", "-d", "--network", "ovb", "--name", "other", "bb", "sh", "-c", server]).ok();
    h1.cove(&["run", "-d", "--network", "ova", "--name", "cli", "bb", "sleep", "600"]).ok();
    let ip = |n: &str| inspect(h2, n, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    let (same, other) = (ip("same"), ip("other"));
    let probe = |addr: &str| {
        h1.cove(&["exec", "cli", "sh", "-c", &format!("timeout 2 nc {addr} 8080")])
            .stdout
            .contains("pong")
    };
    // Positive control: its own network, across the tunnel.
    assert!(eventually(10, || probe(&same)), "cli never reached same on h2");
    // The other network: refused, and the drop is counted where the networks meet.
    let before = counter(h1, "drop_isolation");
    assert!(!probe(&other), "cli on ova reached other on ovb across hosts");
    assert!(
        counter(h1, "drop_isolation") > before,
        "the probe to ovb was not dropped by the isolation rule"
    );
}

/// An internal overlay network still spans hosts (layer 2 across the tunnel), and nothing
/// on it reaches anything outside it: here the other host's own address.
#[test]
fn multihost_internal_overlay_spans_hosts_but_goes_nowhere_else() {
    require_root();
    require_etcd!();
    let mut lab =
        Netlab::with_hosts("multihost_internal", Path::new(env!("CARGO_BIN_EXE_cove")), 2);
    let _etcd =
        Etcd::start_in("multihost_internal", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    lab.start_daemons(&["h1", "h2"], &FLAGS);
    for h in ["h1", "h2"] {
        lab.host(h).import_busybox("bb");
    }
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    h1.cove(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--internal",
        "--subnet",
        "10.0.23.0/24",
        "ovi",
    ])
    .ok();
    assert!(eventually(5, || h2.cove(&["network", "ls"]).stdout.contains("ovi")));
    let server = "while true; do echo pong | nc -l -p 8080; done";
    h2.cove(&["run", "-d", "--network", "ovi", "--name", "srv", "bb", "sh", "-c", server]).ok();
    h1.cove(&["run", "-d", "--network", "ovi", "--name", "cli", "bb", "sleep", "600"]).ok();
    // A listener on h2's own underlay address: what "outside" means here.
    let listener = "while true; do echo outside | busybox nc -l -p 9090; done";
    let mut outside =
        h2.command(&["busybox", "sh", "-c", listener]).spawn().expect("listener on h2");
    let srv = inspect(h2, "srv", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    let probe = |addr: &str, port: u16, want: &str| {
        h1.cove(&["exec", "cli", "sh", "-c", &format!("timeout 2 nc {addr} {port}")])
            .stdout
            .contains(want)
    };
    assert!(eventually(10, || probe(&srv, 8080, "pong")), "cli never reached srv across hosts");
    // Positive control for the outside probe: h1 itself reaches h2's listener.
    assert!(
        eventually(5, || h1
            .sh("busybox timeout 2 busybox nc 203.0.113.12 9090")
            .stdout
            .starts_with(b"outside")),
        "h1 never reached the listener on h2"
    );
    let routes = h1.cove(&["exec", "cli", "ip", "route"]).ok().stdout.clone();
    assert!(!routes.contains("default"), "an internal network gave a default route: {routes}");
    assert!(!probe("203.0.113.12", 9090, "outside"), "cli on an internal network got out");
    let _ = outside.kill();
    let _ = outside.wait();
}

/// A dual-stack overlay network: containers on two hosts get an address of each family from
/// the cluster, and reach each other over IPv6 across the tunnel, by address and by name.
#[test]
fn multihost_overlay_dual_stack() {
    require_root();
    require_etcd!();
    let mut lab = Netlab::with_hosts("multihost_ipv6", Path::new(env!("CARGO_BIN_EXE_cove")), 2);
    let etcd = Etcd::start_in("multihost_ipv6", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    lab.start_daemons(&["h1", "h2"], &FLAGS);
    for h in ["h1", "h2"] {
        lab.host(h).import_busybox("bb");
    }
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let create = ["network", "create", "-d", "overlay", "--ipv6", "--subnet", "10.0.14.0/24"];
    let id = h1
        .cove(&[&create[..], &["--subnet", "fd00:14::/64", "ov6"]].concat())
        .ok()
        .out()
        .to_string();
    assert!(
        eventually(5, || h2.cove(&["network", "ls", "--no-trunc"]).ok().stdout.contains(&id)),
        "h2 never saw ov6"
    );
    let v6 = inspect(h2, "ov6", "{{.EnableIPv6}}");
    assert_eq!(v6, "true", "h2's copy of the network is not dual-stack");

    let page = "mkdir -p /www && echo hello-v6 > /www/index.html && exec httpd -f -p 80 -h /www";
    h2.cove(&["run", "-d", "--network", "ov6", "--name", "srv", "bb", "sh", "-c", page]).ok();
    h1.cove(&["run", "-d", "--network", "ov6", "--name", "cli", "bb", "sleep", "600"]).ok();
    let v6_of = |h: &FakeHost, c: &str| {
        inspect(h, c, "{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}")
    };
    let (srv6, cli6) = (v6_of(h2, "srv"), v6_of(h1, "cli"));
    assert!(srv6.starts_with("fd00:14::") && cli6.starts_with("fd00:14::"), "{srv6} {cli6}");
    assert_ne!(srv6, cli6, "global IPAM gave one IPv6 address twice");
    let keys =
        etcd.etcdctl(&["get", "--prefix", &format!("/cove/v1/ipam/{id}/fd00:14::"), "--keys-only"]);
    assert_eq!(keys.ok().stdout.lines().filter(|l| !l.is_empty()).count(), 2, "{}", keys.stdout);

    // h1 has a static neighbour entry for srv's IPv6 address on the VXLAN device.
    let vx = format!("vx-{}", &id[..12]);
    let neigh = || h1.sh_ok(&format!("ip -6 neigh show dev {vx}"));
    assert!(eventually(5, || neigh().contains(&format!("{srv6} "))), "{}", neigh());

    // Across the tunnel over IPv6, by address and by name.
    let fetch = |to: &str| {
        let cmd = format!("timeout 3 wget -q -O- http://{to}/");
        h1.cove(&["exec", "cli", "sh", "-c", &cmd]).stdout.to_string()
    };
    let by_addr = format!("[{srv6}]");
    assert!(eventually(10, || fetch(&by_addr).contains("hello-v6")), "{}", fetch(&by_addr));
    let lookup = || h1.cove(&["exec", "cli", "nslookup", "srv"]).stdout.to_string();
    assert!(eventually(5, || lookup().contains(&srv6)), "no AAAA for srv: {}", lookup());
    // Proof the IPv6 path is the tunnel: h2's VXLAN device received.
    assert!(rx_packets(h2, &vx) > 0, "h2's VXLAN device received nothing");

    h2.cove(&["rm", "-f", "srv"]).ok();
    h1.cove(&["rm", "-f", "cli"]).ok();
    let left = || {
        let out =
            etcd.etcdctl(&["get", "--prefix", &format!("/cove/v1/ipam/{id}/"), "--keys-only"]);
        out.ok().stdout.lines().filter(|l| !l.is_empty()).count()
    };
    assert!(eventually(10, || left() == 0), "etcd keeps {} address keys", left());
}
