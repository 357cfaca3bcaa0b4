//! End-to-end: the firewall with real traffic. Outbound NAT (masquerade, per-network
//! opt-out, internal networks), isolation between networks and inside `enable_icc=false`
//! networks (L2 included), ownership of the nftables tables and their restore after outside
//! changes and restarts, `--iptables=false`, and IP forwarding.
//!
//! Every negative probe has a positive control in the same topology and a counter proving
//! the probe reached the fake host (or the bridge). LAN-safety tests: `e2e_lan_safety.rs`;
//! published ports: `e2e_ports.rs`.

mod common;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::raw::{self, Catcher};
use common::{
    add_bridge_counter, add_neighbour_counter, assert_same_as, assert_served, bridge_counter,
    container_netns, exec_ok, exec_probe, host, host_with, in_container_netns, mac_in,
    neighbour_counter, peer_server, sleeper, tcp_fetch, tcp_server, wait_listening, wait_until,
};
use cove_testkit::{FakeHost, Neighbour};

/// Start `nc -ll -p 9000` on the outside host answering `outside:9000` and its TCP tables
/// (see `common::peers_in`): who the outside host saw connecting.
fn outside_server(out: &Neighbour) -> Child {
    let script = "echo outside:9000; cat /proc/net/tcp /proc/net/tcp6";
    let child = out
        .command(&["busybox", "nc", "-ll", "-p", "9000", "-e", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the outside server");
    wait_until("the outside server to listen", 10, || out.sh_ok("ss -Hltn").contains(":9000 "));
    child
}

/// `cove exec <c> nc -w <secs> <ip> <port>`, its stdout as a probe result.
fn exec_fetch(h: &FakeHost, c: &str, ip: &str, port: &str, secs: &str) -> Result<String, String> {
    let r = h.cove(&["exec", c, "nc", "-w", secs, ip, port]);
    if r.stdout.is_empty() {
        Err(format!("{c} -> {ip}:{port}: status {} {}", r.status, r.stderr.trim()))
    } else {
        Ok(r.stdout)
    }
}

#[test]
fn containers_reach_the_outside_through_masquerade() {
    let h = host("containers_reach_the_outside_through_masquerade");
    let out = h.add_outside("out");
    let mut server = outside_server(&out);
    add_neighbour_counter(&out, "from_nomasq", "ip saddr 10.71.2.0/24 tcp dport 9000");
    add_neighbour_counter(&out, "all_9000", "tcp dport 9000");
    h.add_probe_counter("nomasq_try", "ip saddr 10.71.2.0/24 ip daddr 203.0.113.2 tcp dport 9000");
    h.add_probe_counter("int_try", "ip saddr 10.71.3.0/24 ip daddr 203.0.113.2");
    h.add_probe_counter("int_pub", "iifname \"eth-out\" tcp dport 8088");
    let baseline = h.snapshot();
    let nomasq = "com.docker.network.bridge.enable_ip_masquerade=false";
    h.cove(&["network", "create", "--subnet", "10.71.1.0/24", "masq"]).ok();
    h.cove(&["network", "create", "--subnet", "10.71.2.0/24", "-o", nomasq, "nomasq"]).ok();
    h.cove(&["network", "create", "--subnet", "10.71.3.0/24", "--internal", "int"]).ok();
    sleeper(&h, "m", &["--network", "masq"]);
    sleeper(&h, "nm", &["--network", "nomasq", "--ip", "10.71.2.10"]);
    sleeper(&h, "in", &["--network", "int"]);

    // Default: masqueraded behind the fake host's outside address.
    assert_served(&exec_fetch(&h, "m", "203.0.113.2", "9000", "3"), "outside:9000", "203.0.113.1");

    // enable_ip_masquerade=false: the SYN leaves with the container's own address (the
    // outside host counts it), the outside host has no route back, and the connection
    // never completes.
    let r = exec_fetch(&h, "nm", "203.0.113.2", "9000", "2");
    assert!(r.as_ref().map_or(true, |t| !t.contains("outside:9000")), "{r:?}");
    assert!(h.probe_counter("nomasq_try") > 0, "the probe never reached the host");
    assert!(neighbour_counter(&out, "from_nomasq") > 0, "not seen unmasqueraded outside");
    // With a route back (a routed setup) it works, with the container's real address.
    out.sh_ok("ip route add 10.71.2.0/24 via 203.0.113.1");
    assert_served(&exec_fetch(&h, "nm", "203.0.113.2", "9000", "3"), "outside:9000", "10.71.2.10");
    out.sh_ok("ip route del 10.71.2.0/24 via 203.0.113.1");

    // --internal: no default route in the container...
    let routes = exec_ok(&h, "in", &["ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    let r = exec_fetch(&h, "in", "203.0.113.2", "9000", "2");
    assert!(r.is_err(), "{r:?}");
    // ...and even a container that adds one itself (CAP_NET_ADMIN) gets nothing out: its
    // SYNs reach the host (counted) and never arrive outside.
    let gw = common::inspect(&h, &["network", "inspect", "int"])["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap_or("10.71.3.1")
        .to_string();
    let added = in_container_netns(&h, "in", || {
        std::process::Command::new("ip").args(["route", "add", "default", "via", &gw]).output()
    })
    .expect("ip route add");
    assert!(added.status.success(), "{added:?}");
    let arrived = neighbour_counter(&out, "all_9000");
    let r = exec_fetch(&h, "in", "203.0.113.2", "9000", "2");
    assert!(r.is_err(), "an internal container reached the outside: {r:?}");
    assert!(h.probe_counter("int_try") > 0, "the internal probe never reached the host");
    assert_eq!(neighbour_counter(&out, "all_9000"), arrived, "internal traffic arrived outside");

    // No published port of an internal network is reachable from outside (refusing to
    // publish is fine too); the positive control is a port on the masquerading network.
    peer_server(&h, "web", &["--network", "masq", "-p", "8089:80"], &[80]);
    assert_served(&out.in_netns(|| tcp_fetch("203.0.113.1:8089", 3)), "web:80", "203.0.113.2");
    let r = h.cove(&[
        "run",
        "-d",
        "--name",
        "inweb",
        "--network",
        "int",
        "-p",
        "8088:80",
        "busybox",
        "sh",
        "-c",
        "nc -ll -p 80 -e echo inweb",
    ]);
    if r.success() {
        wait_listening(&h, "inweb", 80);
        let r = out.in_netns(|| tcp_fetch("203.0.113.1:8088", 2));
        assert!(r.as_ref().map_or(true, |t| !t.contains("inweb")), "{r:?}");
        assert!(h.probe_counter("int_pub") > 0, "the probe to :8088 never reached the host");
    }

    let _ = server.kill();
    let _ = server.wait();
    let _ = h.cove(&["rm", "-f", "inweb"]);
    h.cove(&["rm", "-f", "m", "nm", "in", "web"]).ok();
    h.cove(&["network", "rm", "masq", "nomasq", "int"]).ok();
    assert_same_as(&h, &baseline, "after the outbound NAT test");
}

#[test]
fn ipv6_containers_reach_the_outside() {
    let h = host("ipv6_containers_reach_the_outside");
    let out = h.add_outside("out");
    let mut server = outside_server(&out);
    let baseline = h.snapshot();
    h.cove(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.71.4.0/24",
        "--subnet",
        "fd00:71:4::/64",
        "v6",
    ])
    .ok();
    sleeper(&h, "c6", &["--network", "v6"]);
    // IPv4 first (control), then IPv6: masqueraded behind 2001:db8:2::1 (ULA subnet).
    assert_served(&exec_fetch(&h, "c6", "203.0.113.2", "9000", "3"), "outside:9000", "203.0.113.1");
    let fwd = h.sh_ok("cat /proc/sys/net/ipv6/conf/all/forwarding");
    let r = exec_fetch(&h, "c6", "2001:db8:2::2", "9000", "3");
    assert!(r.is_ok(), "IPv6 to the outside failed (host ipv6 forwarding = {}): {r:?}", fwd.trim());
    assert_served(&r, "outside:9000", "2001:db8:2::1");
    let _ = server.kill();
    let _ = server.wait();
    h.cove(&["rm", "-f", "c6"]).ok();
    h.cove(&["network", "rm", "v6"]).ok();
    assert_same_as(&h, &baseline, "after the IPv6 outbound test");
}

#[test]
fn networks_are_isolated_from_each_other_over_ipv4_and_ipv6() {
    let h = host("networks_are_isolated_from_each_other_over_ipv4_and_ipv6");
    for (name, m) in [
        ("a_to_b4", "ip saddr 10.72.1.0/24 ip daddr 10.72.2.10 tcp dport 8080"),
        ("b_to_a4", "ip saddr 10.72.2.0/24 ip daddr 10.72.1.10 tcp dport 8080"),
        ("a_to_b6", "ip6 saddr fd00:72:1::/64 ip6 daddr fd00:72:2::10 tcp dport 8080"),
        ("b_to_a6", "ip6 saddr fd00:72:2::/64 ip6 daddr fd00:72:1::10 tcp dport 8080"),
        ("dflt_to_a4", "ip saddr 172.17.0.0/16 ip daddr 10.72.1.10 tcp dport 8080"),
    ] {
        h.add_probe_counter(name, m);
    }
    let baseline = h.snapshot();
    for (n, i) in [("isoa", 1), ("isob", 2)] {
        let (v4, v6) = (format!("10.72.{i}.0/24"), format!("fd00:72:{i}::/64"));
        h.cove(&["network", "create", "--ipv6", "--subnet", &v4, "--subnet", &v6, n]).ok();
        let (ip, ip6) = (format!("10.72.{i}.10"), format!("fd00:72:{i}::10"));
        let net = ["--network", n, "--ip", &ip, "--ip6", &ip6];
        tcp_server(&h, &format!("s{i}"), &net, &format!("hello-{n}"));
        sleeper(&h, &format!("c{i}"), &["--network", n]);
        wait_listening(&h, &format!("s{i}"), 8080);
    }
    // c0 is on the default bridge.
    sleeper(&h, "c0", &[]);
    // Positive controls: each client reaches the server of its own network, both families.
    for (c, ip4, ip6, hello) in [
        ("c1", "10.72.1.10", "fd00:72:1::10", "hello-isoa"),
        ("c2", "10.72.2.10", "fd00:72:2::10", "hello-isob"),
    ] {
        for ip in [ip4, ip6] {
            let r = exec_probe(&h, c, ip);
            assert!(r.stdout.contains(hello), "{c} -> {ip} on its own network: {r}");
        }
    }
    // Across networks, either direction, either family: nothing, though the SYNs reach
    // the host.
    for (c, ip, counter) in [
        ("c1", "10.72.2.10", "a_to_b4"),
        ("c2", "10.72.1.10", "b_to_a4"),
        ("c1", "fd00:72:2::10", "a_to_b6"),
        ("c2", "fd00:72:1::10", "b_to_a6"),
        ("c0", "10.72.1.10", "dflt_to_a4"),
    ] {
        let r = exec_probe(&h, c, ip);
        assert!(!r.stdout.contains("hello"), "{c} crossed to {ip}: {r}");
        assert!(h.probe_counter(counter) > 0, "{c} -> {ip} never reached the host");
    }
    h.cove(&["rm", "-f", "s1", "s2", "c1", "c2", "c0"]).ok();
    h.cove(&["network", "rm", "isoa", "isob"]).ok();
    assert_same_as(&h, &baseline, "after the isolation test");
}

/// Send `n` raw frames of EtherType 0x88b5 (no stack handles them) from `from`'s eth0 to
/// `dst`, and count how many reach `to`'s eth0 (caught there by a packet socket), with
/// `to`'s rx_packets before and after.
fn raw_l2(h: &FakeHost, from: &str, to: &str, dst: raw::Mac, n: usize) -> (usize, u64) {
    let src = mac_in(h, from, "eth0");
    let rx = |c: &str| -> u64 {
        exec_ok(h, c, &["cat", "/sys/class/net/eth0/statistics/rx_packets"]).trim().parse().unwrap()
    };
    let marker = format!("cove-l2-{from}-{to}");
    let want = marker.clone().into_bytes();
    let catcher = Catcher::start(container_netns(h, to), "eth0", raw::ETH_EXPERIMENTAL, move |f| {
        f.windows(want.len()).any(|w| w == want.as_slice())
    });
    let rx_before = rx(to);
    let frames: Vec<Vec<u8>> =
        (0..n).map(|_| raw::ether(dst, src, raw::ETH_EXPERIMENTAL, marker.as_bytes())).collect();
    in_container_netns(h, from, || raw::send("eth0", &frames));
    let caught = catcher.finish(Duration::from_millis(300));
    (caught, rx(to).saturating_sub(rx_before))
}

#[test]
fn icc_false_stops_container_traffic_even_raw_frames_but_not_the_way_out() {
    let h = host("icc_false_stops_container_traffic_even_raw_frames_but_not_the_way_out");
    let out = h.add_outside("out");
    let mut server = outside_server(&out);
    let (n1_mac, n2_mac) = ("02:00:00:73:01:10", "02:00:00:73:01:20");
    add_bridge_counter(
        &h,
        "n2_to_n1",
        &[
            &format!("ether saddr {n2_mac} arp operation request arp daddr ip 10.73.1.10"),
            &format!("ether saddr {n2_mac} ip daddr 10.73.1.10 tcp dport 8080"),
        ],
    );
    add_bridge_counter(&h, "raw_l2", &[&format!("ether saddr {n2_mac} ether type 0x88b5")]);
    let baseline = h.snapshot();
    let no_icc = "com.docker.network.bridge.enable_icc=false";
    h.cove(&["network", "create", "--subnet", "10.73.1.0/24", "-o", no_icc, "noicc"]).ok();
    h.cove(&["network", "create", "--subnet", "10.73.2.0/24", "icc"]).ok();
    let n1 = ["--network", "noicc", "--ip", "10.73.1.10", "--mac-address", n1_mac];
    tcp_server(&h, "n1", &n1, "hello-n1");
    sleeper(&h, "n2", &["--network", "noicc", "--ip", "10.73.1.20", "--mac-address", n2_mac]);
    tcp_server(&h, "i1", &["--network", "icc", "--ip", "10.73.2.10"], "hello-i1");
    sleeper(&h, "i2", &["--network", "icc"]);
    wait_listening(&h, "n1", 8080);
    wait_listening(&h, "i1", 8080);

    // Positive control: containers of a normal network talk.
    let r = exec_probe(&h, "i2", "10.73.2.10");
    assert!(r.stdout.contains("hello-i1"), "{r}");
    // icc=false: not even ARP gets through; the attempt reached the bridge.
    let r = exec_probe(&h, "n2", "10.73.1.10");
    assert!(!r.stdout.contains("hello-n1"), "icc=false containers talked: {r}");
    assert!(bridge_counter(&h, "n2_to_n1") > 0, "n2's probe never reached the bridge");
    // Both still reach their gateway and the outside.
    for c in ["n1", "n2"] {
        exec_ok(&h, c, &["ping", "-c", "1", "-W", "2", "10.73.1.1"]);
        let r = exec_fetch(&h, c, "203.0.113.2", "9000", "3");
        assert_served(&r, "outside:9000", "203.0.113.1");
    }

    // L2: raw Ethernet frames (what a container with CAP_NET_RAW can send) to the other
    // container's MAC and to broadcast. Positive control on the icc=true network.
    let i1_mac = mac_in(&h, "i1", "eth0");
    let (caught, rx) = raw_l2(&h, "i2", "i1", i1_mac, 20);
    assert!(caught == 20 && rx >= 20, "control: {caught} of 20 frames caught, rx +{rx}");
    let (caught, rx) = raw_l2(&h, "n2", "n1", raw::mac(n1_mac), 20);
    assert_eq!(caught, 0, "raw frames crossed an icc=false network (rx +{rx})");
    assert!(rx < 20, "n1's rx_packets grew by {rx}");
    let (caught, _) = raw_l2(&h, "n2", "n1", [0xff; 6], 20);
    assert_eq!(caught, 0, "broadcast frames crossed an icc=false network");
    assert!(bridge_counter(&h, "raw_l2") >= 40, "the raw frames never reached the bridge");

    let _ = server.kill();
    let _ = server.wait();
    h.cove(&["rm", "-f", "n1", "n2", "i1", "i2"]).ok();
    h.cove(&["network", "rm", "noicc", "icc"]).ok();
    assert_same_as(&h, &baseline, "after the icc test");
}

/// Connection attempts from inside a container's network namespace to `target`, as fast as
/// they complete (10 ms timeout each), recorded with their time and whether the target
/// answered. Aim it at a port nothing listens on: an answer is then the target's RST
/// (connection refused), and no connection is ever made that could outlive the test (an
/// orphaned socket keeps its namespace, and so the container's veth, alive). Cove drops
/// blocked traffic (no reject), so a refusal can only come from the target.
#[derive(Debug)]
struct Prober {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(Instant, bool)>>,
}

impl Prober {
    fn start(h: &FakeHost, container: &str, target: &str) -> Prober {
        let ns = container_netns(h, container);
        let target: SocketAddr = target.parse().expect("target");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            // SAFETY: setns(2) on an open namespace descriptor, for this thread only.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            let mut seen = vec![];
            while !stop2.load(Ordering::Relaxed) {
                let ok = match std::net::TcpStream::connect_timeout(
                    &target,
                    Duration::from_millis(10),
                ) {
                    Ok(_) => true,
                    Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
                };
                seen.push((Instant::now(), ok));
            }
            seen
        });
        Prober { stop, handle }
    }

    fn finish(self) -> Vec<(Instant, bool)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("prober panicked")
    }
}

/// Cove's two tables as listed by nft, counter values removed.
fn cove_tables(h: &FakeHost) -> String {
    let text = h.sh("nft list table inet cove; nft list table bridge cove");
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    let mut out = vec![];
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "packets" || w == "bytes" {
            words.next();
        } else {
            out.push(w);
        }
    }
    out.join(" ")
}

#[test]
fn cove_owns_its_tables_and_restores_them_after_outside_changes() {
    let h = host("cove_owns_its_tables_and_restores_them_after_outside_changes");
    let nb = h.add_neighbour("lan", false);
    let iso = "ip saddr 10.75.2.0/24 ip daddr 10.75.1.10 tcp dport 81";
    h.add_probe_counter("iso", iso);
    let baseline = h.snapshot();
    let tables = h.sh_ok("nft list tables");
    for t in ["table inet cove", "table bridge cove"] {
        assert_eq!(tables.matches(t).count(), 1, "{t} in:\n{tables}");
    }
    // The host's own firewall, made after the daemon started: untouched by container churn.
    let hostfw = [
        "table inet hostfw {",
        "  set allowed { type ipv4_addr; elements = { 198.51.100.7 } }",
        "  chain fw_chain {",
        "    type filter hook forward priority 10; policy accept;",
        "    ip saddr @allowed accept",
        "  }",
        "}",
        "table ip filter {",
        "  chain FORWARD { type filter hook forward priority 0; policy accept; }",
        "}",
    ]
    .join("\n");
    common::nft_script(h.command(&["nft", "-f", "-"]), &hostfw);
    let host_rules = || h.sh_ok("nft list table inet hostfw; nft list table ip filter");
    let before = host_rules();
    h.cove(&["network", "create", "--subnet", "10.75.1.0/24", "fa"]).ok();
    h.cove(&["network", "create", "--subnet", "10.75.2.0/24", "fb"]).ok();
    peer_server(&h, "srv", &["--network", "fa", "--ip", "10.75.1.10", "-p", "8080:80"], &[80]);
    sleeper(&h, "atk", &["--network", "fb"]);
    h.cove(&["network", "connect", "fa", "atk"]).ok();
    h.cove(&["network", "disconnect", "fa", "atk"]).ok();
    h.cove(&["run", "--rm", "--network", "fa", "-p", "8095:80", "busybox", "true"]).ok();
    assert_eq!(host_rules(), before, "container churn changed the host's own tables");
    let published = || nb.in_netns(|| tcp_fetch("198.51.100.1:8080", 2));
    assert_served(&published(), "srv:80", "198.51.100.2");
    let good = cove_tables(&h);

    for outside_change in [
        "nft delete table inet cove",
        "nft delete table bridge cove",
        "nft flush chain inet cove forward",
        "nft flush map inet cove dnat4_any",
        "nft flush ruleset", // last: it takes the host's tables (and our counter) too
    ] {
        // atk (network fb) keeps trying the server on fa while it happens.
        let prober = Prober::start(&h, "atk", "10.75.1.10:81");
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        h.sh_ok(outside_change);
        let mut restored = None;
        while t0.elapsed() < Duration::from_secs(2) {
            if cove_tables(&h) == good {
                restored = Some(Instant::now());
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if outside_change == "nft flush ruleset" {
            h.add_probe_counter("iso", iso); // flushed with everything (and in the baseline)
        }
        let counted = h.probe_counter("iso");
        std::thread::sleep(Duration::from_millis(300));
        let seen = prober.finish();
        let back = restored.unwrap_or_else(|| panic!("not restored 2 s after `{outside_change}`"));
        let took = back - t0;
        assert!(took <= Duration::from_secs(1), "`{outside_change}`: restored after {took:?}");
        let after: Vec<_> = seen.iter().filter(|(t, _)| *t >= back).collect();
        assert!(!after.is_empty(), "no probe ran after the restore");
        assert!(
            after.iter().all(|(_, ok)| !ok),
            "`{outside_change}`: isolation broken after restore"
        );
        let in_gap: Vec<_> = seen.iter().filter(|(t, _)| *t >= t0 && *t < back).collect();
        let gap = in_gap.iter().filter(|(_, ok)| *ok).count();
        let early = seen.iter().filter(|(t, ok)| *ok && *t < t0).count();
        assert_eq!(early, 0, "isolation broken before `{outside_change}`");
        eprintln!(
            "`{outside_change}`: restored in {took:?}; {gap} of {} probes got through before",
            in_gap.len()
        );
        assert!(h.probe_counter("iso") > counted, "the probes never reached the host");
        assert_served(&published(), "srv:80", "198.51.100.2");
        let tables = h.sh_ok("nft list tables");
        assert_eq!(tables.matches("table inet cove").count(), 1, "{tables}");
        if outside_change != "nft flush ruleset" {
            assert_eq!(
                host_rules(),
                before,
                "`{outside_change}`: the restore touched the host's tables"
            );
        }
    }

    h.cove(&["rm", "-f", "srv", "atk"]).ok();
    h.cove(&["network", "rm", "fa", "fb"]).ok();
    let _ = h.sh("nft delete table inet hostfw; nft delete table ip filter");
    assert_same_as(&h, &baseline, "after the ownership test");
}

#[test]
fn a_daemon_restart_restores_the_firewall() {
    let mut h = host("a_daemon_restart_restores_the_firewall");
    let nb = h.add_neighbour("lan", false);
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.76.1.0/24", "ra"]).ok();
    h.cove(&["network", "create", "--subnet", "10.76.2.0/24", "rb"]).ok();
    peer_server(&h, "srv", &["--network", "ra", "--ip", "10.76.1.10", "-p", "8080:80"], &[80]);
    sleeper(&h, "atk", &["--network", "rb"]);
    assert_served(&nb.in_netns(|| tcp_fetch("198.51.100.1:8080", 2)), "srv:80", "198.51.100.2");

    for (how, change) in [("stop", "nft flush ruleset"), ("kill", "nft delete table inet cove")] {
        if how == "stop" {
            h.stop_daemon();
        } else {
            h.kill_daemon();
        }
        h.sh_ok(change);
        h.start_daemon(&[]);
        wait_until(&format!("the firewall back after {how} + {change}"), 1, || {
            nb.in_netns(|| tcp_fetch("198.51.100.1:8080", 1)).is_ok_and(|t| t.contains("srv:80"))
        });
        let tables = h.sh_ok("nft list tables");
        assert!(tables.contains("table inet cove") && tables.contains("table bridge cove"));
        h.add_probe_counter("iso", "ip saddr 10.76.2.0/24 ip daddr 10.76.1.10 tcp dport 80");
        let r = h.cove(&["exec", "atk", "nc", "-w", "2", "10.76.1.10", "80"]);
        assert!(!r.stdout.contains("srv:80"), "isolation lost after {how}: {r}");
        assert!(h.probe_counter("iso") > 0, "the isolation probe never reached the host");
        h.sh_ok("nft delete table inet netlab_probe");
    }

    h.cove(&["rm", "-f", "srv", "atk"]).ok();
    h.cove(&["network", "rm", "ra", "rb"]).ok();
    assert_same_as(&h, &baseline, "after the restart test");
}

#[test]
fn iptables_false_programs_no_firewall_and_refuses_publishing() {
    let h = host_with("iptables_false_programs_no_firewall", |_| {}, &["--iptables=false"]);
    let baseline = h.snapshot();
    assert!(!h.sh_ok("nft list ruleset").contains("cove"), "a cove table with --iptables=false");
    h.cove(&["network", "create", "--subnet", "10.77.1.0/24", "plain"]).ok();
    tcp_server(&h, "s", &["--network", "plain"], "hello-plain");
    sleeper(&h, "c", &["--network", "plain"]);
    wait_listening(&h, "s", 8080);
    let ip = common::ip_of(&h, "s", "plain");
    assert!(exec_probe(&h, "c", &ip).stdout.contains("hello-plain"), "containers still talk");
    for args in [
        &["run", "-d", "--name", "p1", "-p", "8080:80", "busybox", "sleep", "60"][..],
        &["run", "-d", "--name", "p2", "-P", "--expose", "80", "busybox", "sleep", "60"][..],
    ] {
        h.cove(args).fails().stderr_has("--iptables=false");
    }
    let ps = h.cove(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!ps.stdout.contains("p1") && !ps.stdout.contains("p2"), "{ps}");
    assert!(!h.sh_ok("nft list ruleset").contains("cove"), "a cove table appeared");
    h.cove(&["rm", "-f", "s", "c"]).ok();
    h.cove(&["network", "rm", "plain"]).ok();
    assert_same_as(&h, &baseline, "after the --iptables=false test");
}

fn forwarding(h: &FakeHost) -> String {
    h.sh_ok("cat /proc/sys/net/ipv4/ip_forward").trim().to_string()
}

#[test]
fn the_daemon_enables_ip_forwarding_unless_told_not_to() {
    let off = |h: &FakeHost| {
        h.sh_ok("sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0");
    };
    // Default: Cove turns forwarding on (IPv4, and IPv6 once a network has it)...
    let h = host_with("ip_forward_default", off, &[]);
    assert_eq!(forwarding(&h), "1", "net.ipv4.ip_forward");
    let nb = h.add_neighbour("lan", true);
    let out = h.add_outside("out");
    out.sh_ok("ip route add 198.51.100.0/24 via 203.0.113.1");
    let mut server = outside_server(&out);
    h.add_probe_counter("lan_out", "iifname \"eth-lan\" ip daddr 203.0.113.2 tcp dport 9000");
    sleeper(&h, "c", &[]);
    assert_served(&exec_fetch(&h, "c", "203.0.113.2", "9000", "3"), "outside:9000", "203.0.113.1");
    // ...and, having turned it on itself, does not forward between the host's other
    // interfaces (Docker sets FORWARD to DROP): LAN -> outside is dropped, though it reaches
    // the host.
    let r = nb.in_netns(|| tcp_fetch("203.0.113.2:9000", 2));
    assert!(r.is_err(), "the host routed LAN -> outside: {r:?}");
    assert!(h.probe_counter("lan_out") > 0, "the LAN probe never reached the host");
    h.cove(&["network", "create", "--ipv6", "--subnet", "fd00:78::/64", "v6"]).ok();
    let fwd6 = h.sh_ok("cat /proc/sys/net/ipv6/conf/all/forwarding");
    let _ = server.kill();
    let _ = server.wait();
    drop((nb, out));
    h.cove(&["rm", "-f", "c"]).ok();
    drop(h);

    // --ip-forward=false: left off.
    let h = host_with("ip_forward_false", off, &["--ip-forward=false"]);
    h.cove(&["network", "create", "--ipv6", "--subnet", "fd00:78::/64", "v6"]).ok();
    sleeper(&h, "c", &[]);
    assert_eq!(forwarding(&h), "0", "--ip-forward=false turned forwarding on");
    let fwd6_off = h.sh_ok("cat /proc/sys/net/ipv6/conf/all/forwarding");
    assert_eq!(fwd6_off.trim(), "0", "--ip-forward=false turned IPv6 forwarding on");
    drop(h);

    // Forwarding the admin turned on is theirs: the host keeps routing LAN -> outside.
    let on = |h: &FakeHost| {
        h.sh_ok("sysctl -qw net.ipv4.ip_forward=1");
    };
    let h = host_with("ip_forward_admin", on, &[]);
    let nb = h.add_neighbour("lan", true);
    let out = h.add_outside("out");
    out.sh_ok("ip route add 198.51.100.0/24 via 203.0.113.1");
    let mut server = outside_server(&out);
    assert_served(
        &nb.in_netns(|| tcp_fetch("203.0.113.2:9000", 3)),
        "outside:9000",
        "198.51.100.2",
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(
        fwd6.trim(),
        "1",
        "IPv6 forwarding with an IPv6 network (the issue: `and IPv6 forwarding`)"
    );
}
