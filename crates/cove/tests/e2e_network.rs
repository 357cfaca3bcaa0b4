//! End-to-end: networks, containers on them, real traffic, leak audits.

mod common;

use common::{host, inspect, ip_of, tcp_probe, tcp_server};

#[test]
fn harness_runs_in_a_fake_host_namespace() {
    let h = host("harness_runs_in_a_fake_host_namespace");
    let own = cove_testkit::ns_inode("self", "net").expect("own netns");
    assert_ne!(h.netns_inode(), own, "the fake host must not share the test's netns");
    // The daemon's bridge exists inside the fake host only.
    let links = h.sh_ok("ip -o link show");
    assert!(links.contains("cove0"), "{links}");
    let real =
        std::process::Command::new("ip").args(["-o", "link", "show", "cove0"]).output().unwrap();
    assert!(!real.status.success(), "cove0 must not exist on the real host");
}

#[test]
fn builtin_networks_exist_and_cannot_be_removed() {
    let h = host("builtin_networks_exist_and_cannot_be_removed");
    let ls = h.cove(&["network", "ls"]);
    ls.ok();
    for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
        assert!(
            ls.stdout.lines().any(|l| l.split_whitespace().nth(1) == Some(name)
                && l.split_whitespace().nth(2) == Some(driver)),
            "{name} missing: {}",
            ls.stdout
        );
        h.cove(&["network", "rm", name]).fails().stderr_has("pre-defined network");
        let (status, body) = h.api("DELETE", &format!("/v1.45/networks/{name}"), None);
        assert_eq!(status, 403, "{body}");
    }
    let bridge = inspect(&h, &["network", "inspect", "bridge"]);
    assert_eq!(bridge["IPAM"]["Config"][0]["Subnet"], "172.17.0.0/16", "{bridge}");
    assert_eq!(bridge["Options"]["com.docker.network.bridge.name"], "cove0");
}

#[test]
fn two_containers_talk_on_a_network_and_not_across_networks() {
    let h = host("two_containers_talk_on_a_network_and_not_across_networks");
    h.add_probe_counter("cross", "ip saddr 10.89.2.0/24 ip daddr 10.89.1.10 tcp dport 8080");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.89.1.0/24", "front"]).ok();
    h.cove(&["network", "create", "--subnet", "10.89.2.0/24", "back"]).ok();
    tcp_server(&h, "srv", &["--network", "front", "--ip", "10.89.1.10"], "hello-front");

    // Positive: same network.
    let out = tcp_probe(&h, &["--network", "front"], "10.89.1.10");
    out.ok();
    assert!(out.stdout.contains("hello-front"), "{out:?}");

    // Negative: a container on another network cannot reach it, though its probe does
    // reach the host (counted there).
    let out = tcp_probe(&h, &["--network", "back"], "10.89.1.10");
    assert!(!out.stdout.contains("hello-front"), "crossed networks: {out:?}");
    assert!(h.probe_counter("cross") > 0, "the cross-network probe never reached the host");

    h.cove(&["rm", "-f", "srv"]).ok();
    h.cove(&["network", "rm", "front", "back"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn network_create_inspect_ls_rm() {
    let h = host("network_create_inspect_ls_rm");
    let baseline = h.snapshot();
    let id = h
        .cove(&[
            "network",
            "create",
            "--subnet",
            "10.90.0.0/16",
            "--ip-range",
            "10.90.5.0/24",
            "--gateway",
            "10.90.0.254",
            "--aux-address",
            "router=10.90.0.2",
            "--label",
            "team=net",
            "-o",
            "com.docker.network.bridge.name=cvtest0",
            "-o",
            "com.docker.network.driver.mtu=1400",
            "--internal",
            "--attachable",
            "app",
        ])
        .out()
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let v = inspect(&h, &["network", "inspect", "app"]);
    assert_eq!(v["Name"], "app");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Driver"], "bridge");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Internal"], true);
    assert_eq!(v["Attachable"], true);
    assert_eq!(v["EnableIPv6"], false);
    assert_eq!(v["IPAM"]["Driver"], "default");
    assert_eq!(v["IPAM"]["Config"][0]["Subnet"], "10.90.0.0/16");
    assert_eq!(v["IPAM"]["Config"][0]["IPRange"], "10.90.5.0/24");
    assert_eq!(v["IPAM"]["Config"][0]["Gateway"], "10.90.0.254");
    assert_eq!(v["IPAM"]["Config"][0]["AuxiliaryAddresses"]["router"], "10.90.0.2");
    assert_eq!(v["Labels"]["team"], "net");
    assert!(v["Created"].as_str().unwrap().contains('T'), "{v}");
    // The kernel has the bridge with the gateway address and MTU.
    let link = h.sh_ok("ip -o addr show dev cvtest0");
    assert!(link.contains("10.90.0.254/16"), "{link}");
    assert!(h.sh_ok("ip -o link show cvtest0").contains("mtu 1400"));

    // By id prefix, ls filters and -q.
    let by_prefix = inspect(&h, &["network", "inspect", &id[..10]]);
    assert_eq!(by_prefix["Name"], "app");
    let q = h.cove(&["network", "ls", "-q", "--filter", "name=app"]);
    assert_eq!(q.out().trim(), &id[..12]);
    let lbl = h.cove(&["network", "ls", "--filter", "label=team=net", "--format", "{{.Name}}"]);
    assert_eq!(lbl.out().trim(), "app");

    // A dynamic address comes from the ip-range.
    h.cove(&["run", "-d", "--name", "c1", "--network", "app", "busybox", "sleep", "60"]).ok();
    let ip = ip_of(&h, "c1", "app");
    assert!(ip.starts_with("10.90.5."), "{ip}");
    let v = inspect(&h, &["network", "inspect", "app"]);
    let containers = v["Containers"].as_object().expect("Containers map");
    assert_eq!(containers.len(), 1, "{v}");
    // In use: cannot be removed.
    h.cove(&["network", "rm", "app"]).fails().stderr_has("active endpoints");
    h.cove(&["rm", "-f", "c1"]).ok();
    h.cove(&["network", "rm", id.as_str()]).ok();
    // The bridge is condemned at once and deleted by the reaper moments later.
    common::wait_until("the bridge to go", 10, || !h.sh("ip link show cvtest0").status.success());
    h.assert_no_leaks(&baseline);
}

#[test]
fn subnets_are_chosen_from_default_pools_without_overlap() {
    let h = host("subnets_are_chosen_from_default_pools_without_overlap");
    // A route the fake host already has must be avoided.
    h.sh_ok("ip link add cvt-r type bridge && ip link set cvt-r up && ip route add 172.18.5.0/24 dev cvt-r");
    h.cove(&["network", "create", "a"]).ok();
    h.cove(&["network", "create", "b"]).ok();
    let a = inspect(&h, &["network", "inspect", "a"]);
    let b = inspect(&h, &["network", "inspect", "b"]);
    assert_eq!(a["IPAM"]["Config"][0]["Subnet"], "172.19.0.0/16", "{a}");
    assert_eq!(a["IPAM"]["Config"][0]["Gateway"], "172.19.0.1", "{a}");
    assert_eq!(b["IPAM"]["Config"][0]["Subnet"], "172.20.0.0/16", "{b}");
    // Overlap with an existing network is refused.
    h.cove(&["network", "create", "--subnet", "172.19.128.0/17", "c"])
        .fails()
        .stderr_has("overlaps");
}

#[test]
fn dual_stack_network_gives_both_families() {
    let h = host("dual_stack_network_gives_both_families");
    h.cove(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.91.0.0/24",
        "--subnet",
        "2001:db8:91::/64",
        "ds",
    ])
    .ok();
    h.cove(&[
        "run",
        "-d",
        "--name",
        "s",
        "--network",
        "ds",
        "--ip6",
        "2001:db8:91::10",
        "busybox",
        "sleep",
        "60",
    ])
    .ok();
    let v = inspect(&h, &["inspect", "s"]);
    let n = &v["NetworkSettings"]["Networks"]["ds"];
    assert_eq!(n["GlobalIPv6Address"], "2001:db8:91::10", "{v}");
    assert_eq!(n["GlobalIPv6PrefixLen"], 64);
    assert_eq!(n["IPv6Gateway"], "2001:db8:91::1");
    assert!(n["IPAddress"].as_str().unwrap().starts_with("10.91.0."), "{v}");
    let addrs = h.cove(&["exec", "s", "ip", "-o", "addr", "show", "eth0"]);
    addrs.ok();
    assert!(addrs.stdout.contains("2001:db8:91::10/64"), "{addrs:?}");
    // Reachability over IPv6 from the host to the container.
    let ping = h.sh("busybox ping -6 -c 1 -W 2 2001:db8:91::10");
    assert!(ping.status.success(), "{ping:?}");
}

#[test]
fn network_prune_removes_only_unused_custom_networks() {
    let h = host("network_prune_removes_only_unused_custom_networks");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--label", "keep=no", "unused1"]).ok();
    h.cove(&["network", "create", "--label", "keep=yes", "unused2"]).ok();
    h.cove(&["network", "create", "used"]).ok();
    h.cove(&["run", "-d", "--name", "c", "--network", "used", "busybox", "sleep", "60"]).ok();
    // Filters narrow it down.
    let r = h.cove(&["network", "prune", "-f", "--filter", "label=keep=no"]);
    r.ok();
    assert!(r.stdout.contains("unused1") && !r.stdout.contains("unused2"), "{r:?}");
    let r = h.cove(&["network", "prune", "-f"]);
    r.ok();
    assert!(r.stdout.contains("unused2") && !r.stdout.contains("used\n"), "{r:?}");
    let names = h.cove(&["network", "ls", "--format", "{{.Name}}"]);
    let mut names: Vec<&str> = names.stdout.lines().collect();
    names.sort();
    assert_eq!(names, ["bridge", "host", "none", "used"]);
    let dangling = h.cove(&["network", "ls", "-q", "--filter", "dangling=true"]);
    assert_eq!(dangling.out(), "", "only used or built-in networks remain");
    h.cove(&["rm", "-f", "c"]).ok();
    h.cove(&["network", "rm", "used"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn a_removed_networks_subnet_is_free_at_once_and_its_bridge_goes() {
    let h = host("net-rm-subnet");
    let id = h
        .cove(&["network", "create", "--subnet", "10.75.0.0/24", "first"])
        .ok()
        .stdout
        .trim()
        .to_string();
    let bridge = format!("br-{}", &id[..12]);
    assert!(h.sh(&format!("ip link show {bridge}")).status.success(), "no bridge {bridge}");
    h.cove(&["network", "rm", "first"]).ok();
    // The gateway address (and its route) went with the answer: the same subnet at once.
    h.cove(&["network", "create", "--subnet", "10.75.0.0/24", "second"]).ok();
    let routes = h.sh_ok("ip -4 route show 10.75.0.0/24");
    assert_eq!(routes.lines().count(), 1, "two routes for the subnet: {routes}");
    // The first bridge itself is deleted after the answer, soon.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while h.sh(&format!("ip link show {bridge}")).status.success() {
        assert!(std::time::Instant::now() < deadline, "{bridge} was never deleted");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    h.cove(&["network", "rm", "second"]).ok();
}

#[test]
fn a_bridge_name_taken_by_a_host_interface_is_refused() {
    let h = host("net-bridge-name-taken");
    h.sh_ok("ip link add cove-taken type bridge");
    let r =
        h.cove(&["network", "create", "-o", "com.docker.network.bridge.name=cove-taken", "taken"]);
    r.fails();
    assert!(r.stderr.contains("already used by an existing interface"), "{r}");
    // Nothing changed; a free name works (positive control).
    assert!(!h.cove(&["network", "ls"]).stdout.contains("taken"));
    h.cove(&["network", "create", "-o", "com.docker.network.bridge.name=cove-free", "free"]).ok();
    h.cove(&["network", "rm", "free"]).ok();
    h.sh_ok("ip link del cove-taken");
}

/// The kernel's neighbour-table limit (`gc_thresh3`, 1,024) is global to the machine: with
/// learned ARP entries in the host and in every sandbox, ~1,000 containers overflow it and
/// new connections time out. Cove writes permanent entries (exempt from the limit) for each
/// endpoint, both ways, and removes the host's when the endpoint goes.
#[test]
fn endpoints_get_permanent_neighbour_entries_that_go_with_them() {
    let h = host("net-permanent-neighbours");
    h.cove(&["network", "create", "--subnet", "10.89.7.0/24", "nb"]).ok();
    let net = inspect(&h, &["network", "inspect", "nb"]);
    let bridge = format!("br-{}", &net["Id"].as_str().unwrap()[..12]);
    let bridge_mac = h.sh_ok(&format!("cat /sys/class/net/{bridge}/address"));
    tcp_server(&h, "srv", &["--network", "nb", "--ip", "10.89.7.10"], "hello-nb");
    let srv = inspect(&h, &["inspect", "srv"]);
    let mac = srv["NetworkSettings"]["Networks"]["nb"]["MacAddress"].as_str().unwrap().to_owned();
    let host_entries = || h.sh_ok(&format!("ip neigh show dev {bridge} nud permanent"));
    assert!(host_entries().contains(&format!("10.89.7.10 lladdr {mac}")), "{}", host_entries());
    // The sandbox knows its gateway's MAC without asking.
    let key = srv["NetworkSettings"]["SandboxKey"].as_str().unwrap();
    let inside = h.sh_ok(&format!("nsenter --net={key} ip neigh show dev eth0 nud permanent"));
    assert!(inside.contains(&format!("10.89.7.1 lladdr {}", bridge_mac.trim())), "{inside}");
    // Traffic flows with them (another container, and the host itself).
    let out = tcp_probe(&h, &["--network", "nb"], "10.89.7.10");
    assert!(out.stdout.contains("hello-nb"), "{out:?}");
    assert!(h.sh_ok("busybox nc -w 3 10.89.7.10 8080 </dev/null").contains("hello-nb"));
    // A connected then disconnected container leaves no entry behind; nor does a stop.
    common::sleeper(&h, "other", &[]);
    h.cove(&["network", "connect", "--ip", "10.89.7.20", "nb", "other"]).ok();
    assert!(host_entries().contains("10.89.7.20 "), "{}", host_entries());
    h.cove(&["network", "disconnect", "nb", "other"]).ok();
    assert!(!host_entries().contains("10.89.7.20 "), "{}", host_entries());
    h.cove(&["rm", "-f", "srv", "other"]).ok();
    assert!(!host_entries().contains("10.89.7.10 "), "{}", host_entries());
    h.cove(&["network", "rm", "nb"]).ok();
}

/// Link counts on the host and in a sandbox (`nsenter` into it inside the fake host).
fn link_counts(h: &cove_testkit::FakeHost, sandbox: &str) -> (usize, usize) {
    let host = h.sh_ok("ip -o link show").lines().count();
    let inner = h.sh_ok(&format!("nsenter --net={sandbox} ip -o link show")).lines().count();
    (host, inner)
}

/// Issue 12: a disconnect leaves nothing behind. 1,100 connect/disconnect cycles of one
/// running container (more than the 1,024 ports a Linux bridge takes, so a detach that left
/// its veth on the bridge would make the network refuse new endpoints), then the link
/// counts on the host and in the container come back to what they were, and a new
/// container still joins the network.
#[test]
fn eleven_hundred_connect_disconnect_cycles_leave_no_link_behind() {
    let h = host("eleven_hundred_connect_disconnect_cycles_leave_no_link_behind");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.81.0.0/24", "cyc"]).ok();
    common::sleeper(&h, "cyc-c1", &[]);
    let sandbox = h.cove(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", "cyc-c1"]);
    let sandbox = sandbox.ok().stdout.trim().to_string();
    let before = link_counts(&h, &sandbox);
    let bridge = format!(
        "br-{}",
        &h.cove(&["network", "inspect", "-f", "{{.Id}}", "cyc"]).ok().stdout.trim()[..12]
    );
    let body = r#"{"Container":"cyc-c1"}"#;
    for i in 0..1100 {
        let (code, text) = h.api("POST", "/networks/cyc/connect", Some(body));
        assert_eq!(code, 200, "connect #{i}: {text}");
        let (code, text) = h.api("POST", "/networks/cyc/disconnect", Some(body));
        assert_eq!(code, 200, "disconnect #{i}: {text}");
    }
    common::wait_until("the links of 1,100 detaches to be reaped", 20, || {
        link_counts(&h, &sandbox) == before
    });
    let ports = h.sh_ok(&format!("ip -o link show master {bridge}")).lines().count();
    assert_eq!(ports, 0, "ports left on {bridge}");
    // A new endpoint still joins the network, and the old container can join it again.
    tcp_server(&h, "cyc-c2", &["--network", "cyc"], "cycled");
    h.cove(&["network", "connect", "cyc", "cyc-c1"]).ok();
    common::wait_listening(&h, "cyc-c2", 8080);
    let probe = common::exec_probe(&h, "cyc-c1", &ip_of(&h, "cyc-c2", "cyc"));
    assert!(probe.stdout.contains("cycled"), "no traffic after the cycles: {probe:?}");
    h.cove(&["rm", "-f", "cyc-c1", "cyc-c2"]).ok();
    h.cove(&["network", "rm", "cyc"]).ok();
    h.assert_no_leaks(&baseline);
}
