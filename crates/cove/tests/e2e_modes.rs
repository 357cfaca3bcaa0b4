//! End-to-end: container interfaces (MAC, MTU), the default bridge, the network modes
//! `host`, `none` and `container:`, and containers on several networks, with real traffic.

mod common;

use common::{
    add_bridge_counter, bridge_counter, exec_ok, exec_probe, host, inspect, ip_of, sleeper,
    tcp_server, wait_listening,
};
use cove_testkit::FakeHost;

/// Interface names inside a container (`ip -o link`), without the `@ifN` suffix.
fn links_in(h: &FakeHost, c: &str) -> Vec<String> {
    exec_ok(h, c, &["ip", "-o", "link"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// `cat <file>` inside a container, trimmed.
fn cat(h: &FakeHost, c: &str, file: &str) -> String {
    exec_ok(h, c, &["cat", file]).trim().to_string()
}

#[test]
fn mac_addresses_and_mtu_inside_containers() {
    let h = host("mac_addresses_and_mtu_inside_containers");
    let baseline = h.snapshot();
    let mtu_opt = "com.docker.network.driver.mtu=1400";
    h.cove(&["network", "create", "--subnet", "10.83.3.0/24", "-o", mtu_opt, "m3"]).ok();

    // Default: 02:42 followed by the IPv4 address's octets.
    sleeper(&h, "m1", &["--network", "m3", "--ip", "10.83.3.10"]);
    assert_eq!(cat(&h, "m1", "/sys/class/net/eth0/address"), "02:42:0a:53:03:0a");
    let v = inspect(&h, &["inspect", "m1"]);
    assert_eq!(v["NetworkSettings"]["Networks"]["m3"]["MacAddress"], "02:42:0a:53:03:0a", "{v}");
    // The network's MTU, inside.
    assert_eq!(cat(&h, "m1", "/sys/class/net/eth0/mtu"), "1400");

    // --mac-address.
    sleeper(&h, "m2", &["--network", "m3", "--mac-address", "02:00:00:00:00:99"]);
    assert_eq!(cat(&h, "m2", "/sys/class/net/eth0/address"), "02:00:00:00:00:99");
    let v = inspect(&h, &["inspect", "m2"]);
    assert_eq!(v["NetworkSettings"]["Networks"]["m3"]["MacAddress"], "02:00:00:00:00:99", "{v}");
    assert_eq!(cat(&h, "m2", "/sys/class/net/eth0/mtu"), "1400");

    // The host resolves both to those MACs when it talks to them.
    let ip2 = ip_of(&h, "m2", "m3");
    for (ip, mac) in [("10.83.3.10", "02:42:0a:53:03:0a"), (ip2.as_str(), "02:00:00:00:00:99")] {
        h.sh_ok(&format!("busybox ping -c 1 -W 2 {ip}"));
        let neigh = h.sh_ok(&format!("ip neigh show {ip}"));
        assert!(neigh.contains(mac), "{ip}: {neigh}");
    }

    h.cove(&["rm", "-f", "m1", "m2"]).ok();
    h.cove(&["network", "rm", "m3"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn default_bridge_gives_addresses_route_and_connectivity() {
    let h = host("default_bridge_gives_addresses_route_and_connectivity");
    let baseline = h.snapshot();
    let bridge_mac = h.sh_ok("cat /sys/class/net/cove0/address");

    tcp_server(&h, "b1", &[], "hello-bridge");
    let v = inspect(&h, &["inspect", "b1"]);
    assert_eq!(v["HostConfig"]["NetworkMode"], "bridge", "{v}");
    let n = &v["NetworkSettings"]["Networks"]["bridge"];
    let ip = n["IPAddress"].as_str().unwrap_or_default().to_string();
    assert!(ip.starts_with("172.17.0.") && ip != "172.17.0.1", "{v}");
    assert_eq!(n["Gateway"], "172.17.0.1", "{v}");
    assert_eq!(n["IPPrefixLen"], 16);
    let addrs = exec_ok(&h, "b1", &["ip", "-o", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip}/16")), "{addrs}");
    let routes = exec_ok(&h, "b1", &["ip", "route"]);
    assert!(routes.lines().any(|l| l.starts_with("default via 172.17.0.1 dev eth0")), "{routes}");

    // A second default-bridge container reaches the first by TCP.
    sleeper(&h, "b2", &[]);
    assert!(ip_of(&h, "b2", "bridge").starts_with("172.17.0."));
    wait_listening(&h, "b1", 8080);
    let out = exec_probe(&h, "b2", &ip);
    assert!(out.stdout.contains("hello-bridge"), "{out}");
    let bridge_mac_in_use = h.sh_ok("cat /sys/class/net/cove0/address");

    h.cove(&["rm", "-f", "b1", "b2"]).ok();
    // Docker gives its bridges a fixed MAC so it does not change as ports come and go.
    let bridge_mac_after = h.sh_ok("cat /sys/class/net/cove0/address");
    assert_eq!(bridge_mac_in_use, bridge_mac, "cove0 took another MAC when a port joined");
    assert_eq!(bridge_mac_after, bridge_mac, "cove0 lost its MAC when the ports left");
    h.assert_no_leaks(&baseline);
}

#[test]
fn host_network_mode_shares_the_hosts_links() {
    let h = host("host_network_mode_shares_the_hosts_links");
    let baseline = h.snapshot();
    tcp_server(&h, "hs", &["--network", "host"], "hello-host");
    let links = links_in(&h, "hs");
    assert!(links.iter().any(|l| l == "cove0") && links.iter().any(|l| l == "lo"), "{links:?}");
    assert!(!links.iter().any(|l| l == "eth0"), "{links:?}");
    let v = inspect(&h, &["inspect", "hs"]);
    assert_eq!(v["HostConfig"]["NetworkMode"], "host", "{v}");
    // Its server listens in the fake host's own namespace.
    wait_listening(&h, "hs", 8080);
    let out = h.sh("busybox nc -w 2 127.0.0.1 8080");
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello-host"), "{out:?}");

    h.cove(&["rm", "-f", "hs"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn none_network_mode_has_only_loopback() {
    let h = host("none_network_mode_has_only_loopback");
    let baseline = h.snapshot();
    sleeper(&h, "nn", &["--network", "none"]);
    assert_eq!(links_in(&h, "nn"), ["lo"]);
    let routes = exec_ok(&h, "nn", &["ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    let v = inspect(&h, &["inspect", "nn"]);
    assert_eq!(v["HostConfig"]["NetworkMode"], "none", "{v}");
    assert_eq!(v["NetworkSettings"]["Networks"]["none"]["IPAddress"], "", "{v}");
    h.cove(&["rm", "-f", "nn"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn container_network_mode_shares_the_targets_namespace() {
    let h = host("container_network_mode_shares_the_targets_namespace");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.85.5.0/24", "n5"]).ok();
    tcp_server(&h, "tgt", &["--network", "n5", "--ip", "10.85.5.10"], "hello-shared");
    sleeper(&h, "joiner", &["--network", "container:tgt"]);

    // The same interfaces and address on both sides.
    let addr = |c: &str| {
        let out = exec_ok(&h, c, &["ip", "-o", "addr", "show", "eth0"]);
        assert!(out.contains("10.85.5.10/24"), "{c}: {out}");
        out.split_whitespace().nth(3).unwrap_or_default().to_string()
    };
    assert_eq!(addr("tgt"), addr("joiner"));
    assert_eq!(links_in(&h, "joiner"), links_in(&h, "tgt"));
    // The target's server is on the joiner's loopback.
    wait_listening(&h, "tgt", 8080);
    let out = exec_probe(&h, "joiner", "127.0.0.1");
    assert!(out.stdout.contains("hello-shared"), "{out}");

    // Joining a stopped container is refused.
    sleeper(&h, "stopped", &["--network", "n5"]);
    h.cove(&["stop", "-t", "1", "stopped"]).ok();
    let r = h.cove(&[
        "run",
        "-d",
        "--name",
        "late",
        "--network",
        "container:stopped",
        "busybox",
        "sleep",
        "600",
    ]);
    r.fails().stderr_has("non running container");

    // The target cannot be removed while the joiner uses its namespace.
    h.cove(&["rm", "-f", "tgt"]).fails().stderr_has("joiner");
    let v = inspect(&h, &["inspect", "tgt"]);
    assert_eq!(v["State"]["Status"], "running", "{v}");

    h.cove(&["rm", "-f", "joiner"]).ok();
    h.cove(&["rm", "-f", "tgt", "stopped"]).ok();
    let _ = h.cove(&["rm", "-f", "late"]); // Docker keeps it as "created"
    h.cove(&["network", "rm", "n5"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn connect_and_disconnect_a_running_container() {
    let h = host("connect_and_disconnect_a_running_container");
    // Every frame the b-only peer (fixed MAC) sends towards a container: ARP or TCP.
    let peer_mac = "02:00:00:86:02:14";
    add_bridge_counter(
        &h,
        "peer",
        &[
            &format!("ether saddr {peer_mac} arp operation request arp daddr ip != 10.86.2.1"),
            &format!("ether saddr {peer_mac} tcp dport 8080"),
        ],
    );
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.86.1.0/24", "a6"]).ok();
    h.cove(&["network", "create", "--subnet", "10.86.2.0/24", "b6"]).ok();
    tcp_server(&h, "c", &["--network", "a6", "--ip", "10.86.1.10"], "hello-c");
    sleeper(&h, "pa", &["--network", "a6"]);
    sleeper(&h, "pb", &["--network", "b6", "--ip", "10.86.2.20", "--mac-address", peer_mac]);
    let default_via_a = |h: &FakeHost| {
        let routes = exec_ok(h, "c", &["ip", "route"]);
        assert!(
            routes.lines().any(|l| l.starts_with("default via 10.86.1.1 dev eth0")),
            "{routes}"
        );
    };

    // Connect: eth1 with an address in b6, reachable from the b-only peer.
    h.cove(&["network", "connect", "b6", "c"]).ok();
    let ip_b = ip_of(&h, "c", "b6");
    assert!(ip_b.starts_with("10.86.2."), "{ip_b}");
    let eth1 = exec_ok(&h, "c", &["ip", "-o", "addr", "show", "eth1"]);
    assert!(eth1.contains(&format!("{ip_b}/24")), "{eth1}");
    default_via_a(&h);
    wait_listening(&h, "c", 8080);
    let out = exec_probe(&h, "pb", &ip_b);
    assert!(out.stdout.contains("hello-c"), "{out}");
    h.cove(&["network", "connect", "b6", "c"]).fails().stderr_has("already exists");

    // Disconnect: eth1 goes, the peer's probe reaches the bridge but nothing answers.
    h.cove(&["network", "disconnect", "b6", "c"]).ok();
    assert!(!links_in(&h, "c").iter().any(|l| l == "eth1"));
    let v = inspect(&h, &["inspect", "c"]);
    assert!(v["NetworkSettings"]["Networks"].get("b6").is_none(), "{v}");
    default_via_a(&h);
    wait_listening(&h, "c", 8080);
    let before = bridge_counter(&h, "peer");
    let out = exec_probe(&h, "pb", &ip_b);
    assert!(!out.stdout.contains("hello-c"), "reached a disconnected address: {out}");
    assert!(bridge_counter(&h, "peer") > before, "the peer's probe never reached the bridge");
    // Positive control on a6.
    let out = exec_probe(&h, "pa", "10.86.1.10");
    assert!(out.stdout.contains("hello-c"), "{out}");
    h.cove(&["network", "disconnect", "b6", "c"]).fails().stderr_has("not connected");

    // Connect again with a fixed address and an alias.
    h.cove(&["network", "connect", "--ip", "10.86.2.50", "--alias", "x", "b6", "c"]).ok();
    let v = inspect(&h, &["inspect", "c"]);
    let n = &v["NetworkSettings"]["Networks"]["b6"];
    assert_eq!(n["IPAddress"], "10.86.2.50", "{v}");
    assert!(n["Aliases"].as_array().is_some_and(|a| a.iter().any(|x| x == "x")), "{v}");
    let eth1 = exec_ok(&h, "c", &["ip", "-o", "addr", "show", "eth1"]);
    assert!(eth1.contains("10.86.2.50/24"), "{eth1}");
    default_via_a(&h);
    wait_listening(&h, "c", 8080);
    let out = exec_probe(&h, "pb", "10.86.2.50");
    assert!(out.stdout.contains("hello-c"), "{out}");

    h.cove(&["rm", "-f", "c", "pa", "pb"]).ok();
    h.cove(&["network", "rm", "a6", "b6"]).ok();
    h.assert_no_leaks(&baseline);
}
