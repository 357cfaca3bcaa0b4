//! End-to-end: LAN safety (the holes Docker 28 closed after CVEs) and anti-spoofing, with
//! real traffic and raw frames. A LAN neighbour must not reach container addresses by
//! routing through the host, nor ports published on 127.0.0.1 by addressing 127.0.0.1 to
//! the host's MAC; a container must not forge its IP or MAC source, poison the host's ARP
//! cache, or send router advertisements.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use common::raw::{self, Catcher};
use common::{
    add_early_bridge_counter, assert_same_as, assert_served, container_netns, early_bridge_counter,
    exec_ok, host, in_container_netns, mac_in, peer_server, sleeper, tcp_fetch,
};
use cove_testkit::FakeHost;

#[test]
fn a_lan_neighbour_cannot_route_to_container_addresses() {
    let h = host("a_lan_neighbour_cannot_route_to_container_addresses");
    // The neighbour routes everything (both families) via the fake host.
    let nb = h.add_neighbour("lan", true);
    h.add_probe_counter("direct4", "iifname \"eth-lan\" ip daddr 10.74.1.10 tcp dport 80");
    h.add_probe_counter("direct6", "iifname \"eth-lan\" ip6 daddr fd00:74:1::10 tcp dport 80");
    let baseline = h.snapshot();
    let v6 = ["--ipv6", "--subnet", "10.74.1.0/24", "--subnet", "fd00:74:1::/64", "d"];
    h.cove(&[&["network", "create"][..], &v6].concat()).ok();
    let net = ["--network", "d", "--ip", "10.74.1.10", "--ip6", "fd00:74:1::10", "-p", "8080:80"];
    peer_server(&h, "srv", &net, &[80]);

    // Positive control: the published port, both families, from the same neighbour.
    assert_served(&nb.in_netns(|| tcp_fetch("198.51.100.1:8080", 3)), "srv:80", "198.51.100.2");
    let r = nb.in_netns(|| tcp_fetch("[2001:db8:1::1]:8080", 3));
    assert_served(&r, "srv:80", "2001:db8:1::2");
    // The container's own addresses: nothing, though the SYNs reach the host.
    for (addr, counter) in [("10.74.1.10:80", "direct4"), ("[fd00:74:1::10]:80", "direct6")] {
        let r = nb.in_netns(|| tcp_fetch(addr, 2));
        assert!(r.is_err(), "the LAN reached {addr} directly: {r:?}");
        assert!(h.probe_counter(counter) > 0, "the probe to {addr} never reached the host");
    }

    h.cove(&["rm", "-f", "srv"]).ok();
    h.cove(&["network", "rm", "d"]).ok();
    assert_same_as(&h, &baseline, "after the direct-routing test");
}

/// How many TCP segments with source port `sport` arrive at `container`'s eth0 (caught
/// there by a packet socket) while `send` runs.
fn arrivals(h: &FakeHost, container: &str, sport: u16, send: impl FnOnce()) -> usize {
    let catcher = Catcher::start(container_netns(h, container), "eth0", raw::ETH_IP, move |f| {
        raw::ports4(f, 6).is_some_and(|(s, _)| s == sport)
    });
    send();
    catcher.finish(Duration::from_millis(500))
}

#[test]
fn frames_to_127_0_0_1_do_not_reach_ports_published_on_loopback() {
    let h = host("frames_to_127_0_0_1_do_not_reach_ports_published_on_loopback");
    let nb = h.add_neighbour("lan", false);
    h.add_probe_counter("lo_lan", "iifname \"eth-lan\" ip daddr 127.0.0.1 tcp dport 8081");
    h.add_probe_counter("lo_ct", "iifname \"cvlo\" ip daddr 127.0.0.1 tcp dport 8081");
    let baseline = h.snapshot();
    let brname = "com.docker.network.bridge.name=cvlo";
    h.cove(&["network", "create", "--subnet", "10.74.2.0/24", "-o", brname, "lo"]).ok();
    let net = ["--network", "lo", "--ip", "10.74.2.10", "-p", "8080:80", "-p", "127.0.0.1:8081:80"];
    peer_server(&h, "srv", &net, &[80]);
    sleeper(&h, "atk", &["--network", "lo", "--ip", "10.74.2.20"]);
    // The loopback port works for the host itself.
    let r = h.in_netns(|| tcp_fetch("127.0.0.1:8081", 3));
    assert!(r.as_ref().is_ok_and(|t| t.contains("srv:80")), "127.0.0.1:8081: {r:?}");

    // From the LAN: raw SYNs framed to the host's eth-lan MAC.
    let host_mac = raw::mac(&h.sh_ok("cat /sys/class/net/eth-lan/address"));
    let nb_mac = raw::mac(&nb.sh_ok("cat /sys/class/net/eth0/address"));
    let nb_ip: Ipv4Addr = "198.51.100.2".parse().unwrap();
    let lan = |dst: Ipv4Addr, dport: u16, sport: u16| {
        let syn = raw::tcp_syn4(nb_ip, sport, dst, dport);
        let frame = raw::ether(host_mac, nb_mac, raw::ETH_IP, &syn);
        arrivals(&h, "srv", sport, || nb.in_netns(|| raw::send("eth0", &vec![frame; 5])))
    };
    // Positive control of the raw path: to the host's address, the port published on all
    // addresses. The attack: to 127.0.0.1:8081 (route_localnet is on for the bridges):
    // the frames reach the host (counted), never the container.
    let got = lan("198.51.100.1".parse().unwrap(), 8080, 40080);
    assert!(got >= 5, "raw SYNs to 198.51.100.1:8080: {got} of 5 arrived");
    let got = lan(Ipv4Addr::LOCALHOST, 8081, 40081);
    assert_eq!(got, 0, "LAN frames to 127.0.0.1:8081 reached the container");
    assert!(h.probe_counter("lo_lan") >= 5, "the frames to 127.0.0.1 never reached the host");

    // The same from another container on the bridge (raw frames to the gateway's MAC,
    // with its own genuine source addresses).
    let br_mac = raw::mac(&h.sh_ok("cat /sys/class/net/cvlo/address"));
    let atk_mac = mac_in(&h, "atk", "eth0");
    let atk_ip: Ipv4Addr = "10.74.2.20".parse().unwrap();
    let ct = |dst: Ipv4Addr, dport: u16, sport: u16| {
        let frame =
            raw::ether(br_mac, atk_mac, raw::ETH_IP, &raw::tcp_syn4(atk_ip, sport, dst, dport));
        arrivals(&h, "srv", sport, || {
            in_container_netns(&h, "atk", || raw::send("eth0", &vec![frame; 5]))
        })
    };
    let got = ct("10.74.2.1".parse().unwrap(), 8080, 40082);
    assert!(got >= 5, "control: raw SYNs to the gateway's :8080: {got} of 5 arrived");
    let got = ct(Ipv4Addr::LOCALHOST, 8081, 40083);
    assert_eq!(got, 0, "a container's frames to 127.0.0.1:8081 reached the server");
    assert!(h.probe_counter("lo_ct") >= 5, "the container's frames never reached the host");

    h.cove(&["rm", "-f", "srv", "atk"]).ok();
    h.cove(&["network", "rm", "lo"]).ok();
    assert_same_as(&h, &baseline, "after the 127.0.0.1 test");
}

/// The host-side interface of a container's eth0 (by its peer ifindex).
fn host_side_of(h: &FakeHost, container: &str) -> String {
    let idx = exec_ok(h, container, &["cat", "/sys/class/net/eth0/iflink"]).trim().to_string();
    let links = h.sh_ok("ip -o link show");
    links
        .lines()
        .find_map(|l| {
            let (i, rest) = l.split_once(": ")?;
            (i == idx).then(|| rest.split(['@', ':']).next().unwrap_or_default().to_string())
        })
        .unwrap_or_else(|| panic!("no host link with index {idx}:\n{links}"))
}

#[test]
fn containers_cannot_forge_their_ip_or_mac_or_poison_arp() {
    let h = host("containers_cannot_forge_their_ip_or_mac_or_poison_arp");
    let (a_mac, b_mac) = ("02:00:00:74:03:10", "02:00:00:74:03:20");
    add_early_bridge_counter(&h, "to_b", &[&format!("ether daddr {b_mac} udp dport 9999")]);
    add_early_bridge_counter(
        &h,
        "arp_b",
        &[&format!("ether saddr {a_mac} arp saddr ip 10.74.3.20")],
    );
    let baseline = h.snapshot();
    let brname = "com.docker.network.bridge.name=cvspoof";
    h.cove(&["network", "create", "--subnet", "10.74.3.0/24", "-o", brname, "sp"]).ok();
    sleeper(&h, "a", &["--network", "sp", "--ip", "10.74.3.10", "--mac-address", a_mac]);
    sleeper(&h, "b", &["--network", "sp", "--ip", "10.74.3.20", "--mac-address", b_mac]);
    let (a_ip, b_ip): (Ipv4Addr, Ipv4Addr) =
        ("10.74.3.10".parse().unwrap(), "10.74.3.20".parse().unwrap());

    // UDP frames from a's netns to b: count arrivals at b per source port.
    let deliver = |src_mac: raw::Mac, src_ip: Ipv4Addr, sport: u16| -> usize {
        let catcher = Catcher::start(container_netns(&h, "b"), "eth0", raw::ETH_IP, move |f| {
            raw::ports4(f, 17) == Some((sport, 9999))
        });
        let pkt = raw::udp4(src_ip, sport, b_ip, 9999, b"cove-spoof-test");
        let frame = raw::ether(raw::mac(b_mac), src_mac, raw::ETH_IP, &pkt);
        in_container_netns(&h, "a", || raw::send("eth0", &vec![frame; 5]));
        catcher.finish(Duration::from_millis(300))
    };
    let got = deliver(raw::mac(a_mac), a_ip, 5001);
    assert_eq!(got, 5, "control: a's genuine frames to b");
    let got = deliver(raw::mac(a_mac), "10.74.3.99".parse().unwrap(), 5002);
    assert_eq!(got, 0, "a forged its source IP");
    let got = deliver(raw::mac("02:00:00:74:03:99"), a_ip, 5003);
    assert_eq!(got, 0, "a forged its source MAC");
    assert!(early_bridge_counter(&h, "to_b") >= 15, "a's frames never reached the bridge");

    // ARP: a claims b's address to the host; the host keeps b's MAC.
    exec_ok(&h, "b", &["ping", "-c", "1", "-W", "2", "10.74.3.1"]);
    h.sh_ok("busybox ping -c 1 -W 2 10.74.3.20");
    std::thread::sleep(Duration::from_millis(1100)); // past the ARP locktime
    let br_mac = raw::mac(&h.sh_ok("cat /sys/class/net/cvspoof/address"));
    let gw: Ipv4Addr = "10.74.3.1".parse().unwrap();
    let lie = raw::arp(2, raw::mac(a_mac), b_ip, br_mac, gw);
    let frame = raw::ether(br_mac, raw::mac(a_mac), raw::ETH_ARP, &lie);
    in_container_netns(&h, "a", || raw::send("eth0", &vec![frame; 3]));
    std::thread::sleep(Duration::from_millis(200));
    let neigh = h.sh_ok("ip neigh show 10.74.3.20 dev cvspoof");
    assert!(neigh.contains(b_mac) && !neigh.contains(a_mac), "ARP poisoned: {neigh}");
    assert!(early_bridge_counter(&h, "arp_b") >= 3, "the forged ARP never reached the bridge");

    // Structural check (not traffic): the bridge table pins a's port to its MAC and IP.
    let port = host_side_of(&h, "a");
    let table = h.sh_ok("nft list table bridge cove");
    for want in [port.as_str(), a_mac, "10.74.3.10"] {
        assert!(table.contains(want), "{want} not in the bridge table:\n{table}");
    }

    h.cove(&["rm", "-f", "a", "b"]).ok();
    h.cove(&["network", "rm", "sp"]).ok();
    assert_same_as(&h, &baseline, "after the anti-spoofing test");
}

#[test]
fn containers_cannot_forge_ipv6_sources_or_send_router_advertisements() {
    let h = host("containers_cannot_forge_ipv6_sources_or_send_router_advertisements");
    add_early_bridge_counter(&h, "ra", &["icmpv6 type nd-router-advert"]);
    add_early_bridge_counter(&h, "forged6", &["ip6 saddr fd00:74:4::99"]);
    add_early_bridge_counter(&h, "to_lo6", &["ip6 daddr ::1"]);
    let baseline = h.snapshot();
    let brname = "com.docker.network.bridge.name=cvra";
    let net =
        ["--ipv6", "--subnet", "10.74.4.0/24", "--subnet", "fd00:74:4::/64", "-o", brname, "r6"];
    h.cove(&[&["network", "create"][..], &net].concat()).ok();
    sleeper(&h, "a", &["--network", "r6", "--ip6", "fd00:74:4::10"]);
    sleeper(&h, "b", &["--network", "r6", "--ip6", "fd00:74:4::20"]);
    let (a_mac, b_mac) = (mac_in(&h, "a", "eth0"), mac_in(&h, "b", "eth0"));
    let a_ip: Ipv6Addr = "fd00:74:4::10".parse().unwrap();
    let b_ip: Ipv6Addr = "fd00:74:4::20".parse().unwrap();

    let catch = |ty: u8| {
        Catcher::start(container_netns(&h, "b"), "eth0", raw::ETH_IP6, move |f| {
            raw::icmp6_type(f) == Some(ty)
        })
    };
    // Control: a's ICMPv6 echo requests reach b.
    let c = catch(128);
    let echo =
        raw::ether(b_mac, a_mac, raw::ETH_IP6, &raw::icmp6(a_ip, b_ip, &raw::echo_request6(7, 1)));
    in_container_netns(&h, "a", || raw::send("eth0", &vec![echo; 3]));
    assert_eq!(c.finish(Duration::from_millis(300)), 3, "control: echo requests a -> b");
    // The same with a forged IPv6 source.
    let c = catch(128);
    let forged: Ipv6Addr = "fd00:74:4::99".parse().unwrap();
    let echo = raw::ether(
        b_mac,
        a_mac,
        raw::ETH_IP6,
        &raw::icmp6(forged, b_ip, &raw::echo_request6(7, 2)),
    );
    in_container_netns(&h, "a", || raw::send("eth0", &vec![echo; 3]));
    assert_eq!(c.finish(Duration::from_millis(300)), 0, "a forged its IPv6 source");
    assert!(early_bridge_counter(&h, "forged6") >= 3, "the forged echoes never reached the bridge");
    // A router advertisement (default route + an autoconf prefix) from a, to all nodes.
    let c = catch(134);
    let ll: Ipv6Addr = "fe80::42:aff:fe4a:40a".parse().unwrap();
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    let ra = raw::router_advert(a_mac, "fd00:bad::".parse().unwrap());
    let frame =
        raw::ether([0x33, 0x33, 0, 0, 0, 1], a_mac, raw::ETH_IP6, &raw::icmp6(ll, all_nodes, &ra));
    in_container_netns(&h, "a", || raw::send("eth0", &vec![frame; 3]));
    assert_eq!(c.finish(Duration::from_millis(500)), 0, "b received a's router advertisements");
    assert!(early_bridge_counter(&h, "ra") >= 3, "the RAs never reached the bridge");
    // Neither b nor the host took a route or address from it.
    let b_routes = exec_ok(&h, "b", &["ip", "-6", "route"]);
    assert!(!b_routes.contains("fd00:bad") && !b_routes.contains("proto ra"), "{b_routes}");
    let host_view = h.sh_ok("ip -6 route; ip -6 addr");
    assert!(!host_view.contains("fd00:bad"), "{host_view}");
    assert_eq!(h.sh_ok("cat /proc/sys/net/ipv6/conf/cvra/accept_ra").trim(), "0");

    // The bridge has `local ::1` (ports published on [::1]); only replies un-NATed to ::1
    // may use it. a's echo requests framed to the gateway's MAC for ::1 reach the host
    // (early counter) and are never delivered to it (input counter stays 0); the same to
    // the gateway's own address are (positive control).
    let local = h.sh_ok("ip -6 route show table local");
    assert!(local.contains("local ::1 dev cvra"), "no ::1 route on the bridge: {local}");
    h.sh_ok(
        "nft add table inet lo6probe && nft add chain inet lo6probe input \
         '{ type filter hook input priority 100; }' && \
         nft add rule inet lo6probe input icmpv6 type echo-request ip6 daddr ::1 counter && \
         nft add rule inet lo6probe input icmpv6 type echo-request ip6 daddr fd00:74:4::1 counter",
    );
    let br_mac = raw::mac(&h.sh_ok("cat /sys/class/net/cvra/address"));
    let gw: Ipv6Addr = "fd00:74:4::1".parse().unwrap();
    for (dst, seq) in [(gw, 3), (Ipv6Addr::LOCALHOST, 4)] {
        let echo = raw::ether(
            br_mac,
            a_mac,
            raw::ETH_IP6,
            &raw::icmp6(a_ip, dst, &raw::echo_request6(9, seq)),
        );
        in_container_netns(&h, "a", || raw::send("eth0", &vec![echo; 3]));
    }
    std::thread::sleep(Duration::from_millis(300));
    let counts = h.sh_ok("nft list table inet lo6probe");
    let delivered = |addr: &str| -> u64 {
        let line = counts.lines().find(|l| l.contains(&format!("daddr {addr} "))).unwrap_or("");
        let n = line.split("packets ").nth(1).and_then(|r| r.split(' ').next());
        n.and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(delivered("fd00:74:4::1") >= 3, "control: echoes to the gateway: {counts}");
    assert_eq!(delivered("::1"), 0, "a container's packets to ::1 were delivered: {counts}");
    assert!(early_bridge_counter(&h, "to_lo6") >= 3, "the ::1 echoes never reached the bridge");
    h.sh_ok("nft delete table inet lo6probe");

    h.cove(&["rm", "-f", "a", "b"]).ok();
    h.cove(&["network", "rm", "r6"]).ok();
    assert_same_as(&h, &baseline, "after the router-advertisement test");
}
