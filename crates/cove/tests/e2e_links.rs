//! End-to-end: legacy links through `--icc=false` on the default bridge, as Docker's link
//! rules: the linker reaches the linked container's exposed ports and nothing else; the
//! linked container cannot open connections back; a container without the link reaches
//! neither. Every negative probe has a positive control and a bridge counter proving the
//! probe reached the bridge.

mod common;

use common::{
    add_bridge_counter, bridge_counter, exec_ok, exec_probe, host, host_with, inspect, ip_of,
    sleeper, tcp_server, wait_listening, wait_until,
};

/// The elements of one set of `bridge cove`.
fn link_set(h: &cove_testkit::FakeHost, set: &str) -> String {
    h.sh_ok(&format!("nft list set bridge cove {set}"))
}

#[test]
fn icc_false_opens_only_the_links_exposed_ports() {
    let h = host_with("links-icc", |_| {}, &["--icc=false"]);
    let v = inspect(&h, &["network", "inspect", "bridge"]);
    assert_eq!(v["Options"]["com.docker.network.bridge.enable_icc"], "false", "{v}");

    let (db_mac, web_mac, other_mac) =
        ("02:00:00:74:00:10", "02:00:00:74:00:20", "02:00:00:74:00:30");
    // db serves 8080 (exposed) and 9090 (not exposed).
    let serve = "(while true; do echo hello-db | nc -l -p 8080; done) & \
                 while true; do echo secret-db | nc -l -p 9090; done";
    h.cove(&[
        "run",
        "-d",
        "--name",
        "db",
        "--expose",
        "8080",
        "--mac-address",
        db_mac,
        "busybox",
        "sh",
        "-c",
        serve,
    ])
    .ok();
    wait_listening(&h, "db", 8080);
    wait_listening(&h, "db", 9090);
    tcp_server(&h, "web", &["--link", "db:database", "--mac-address", web_mac], "hello-web");
    sleeper(&h, "other", &["--mac-address", other_mac]);
    wait_listening(&h, "web", 8080);
    let db = ip_of(&h, "db", "bridge");
    let web = ip_of(&h, "web", "bridge");
    add_bridge_counter(&h, "web_to_db_9090", &[&format!("ip daddr {db} tcp dport 9090")]);
    add_bridge_counter(
        &h,
        "other_to_db",
        &[&format!("ether saddr {other_mac} arp operation request arp daddr ip {db}")],
    );
    add_bridge_counter(
        &h,
        "db_to_web",
        &[&format!("ether saddr {db_mac} ip daddr {web} tcp dport 8080")],
    );

    // The link's opening: the linker reaches the exposed port (by the link's alias, too).
    let r = h.cove(&["exec", "web", "nc", "-w", "2", "database", "8080"]);
    assert!(r.stdout.contains("hello-db"), "linker could not reach the exposed port: {r}");
    let fwd = link_set(&h, "link_fwd");
    assert!(fwd.contains(". tcp . 8080"), "{fwd}");

    // Not a port the linked container did not expose; the probe reached the bridge.
    let r = h.cove(&["exec", "web", "nc", "-w", "2", &db, "9090"]);
    assert!(!r.stdout.contains("secret-db"), "a non-exposed port was reachable: {r}");
    assert!(bridge_counter(&h, "web_to_db_9090") > 0, "the probe to 9090 never arrived");

    // The linked container cannot open a connection to its linker.
    let r = exec_probe(&h, "db", &web);
    assert!(!r.stdout.contains("hello-web"), "the linked container connected back: {r}");
    assert!(bridge_counter(&h, "db_to_web") > 0, "db's probe never reached the bridge");

    // A container without the link reaches nothing (not even ARP gets an answer).
    let r = h.cove(&["exec", "other", "nc", "-w", "2", &db, "8080"]);
    assert!(!r.stdout.contains("hello-db"), "an unlinked container got through: {r}");
    assert!(bridge_counter(&h, "other_to_db") > 0, "other's probe never reached the bridge");

    // The opening goes with the linked container.
    h.cove(&["stop", "-t", "1", "db"]).ok();
    wait_until("the link's elements to go", 10, || {
        ["link_pairs", "link_fwd", "link_rev"].iter().all(|s| !link_set(&h, s).contains("elements"))
    });

    // ... and comes back with it, on its new bridge port.
    h.cove(&["start", "db"]).ok();
    wait_listening(&h, "db", 8080);
    wait_until("the linker to reach db again", 10, || {
        h.cove(&["exec", "web", "nc", "-w", "1", "database", "8080"]).stdout.contains("hello-db")
    });

    h.cove(&["rm", "-f", "db", "web", "other"]).ok();
}

#[test]
fn icc_true_is_the_default_and_needs_no_link() {
    let h = host_with("links-icc-default", |_| {}, &[]);
    let v = inspect(&h, &["network", "inspect", "bridge"]);
    assert_eq!(v["Options"]["com.docker.network.bridge.enable_icc"], "true", "{v}");
    tcp_server(&h, "a", &[], "hello-a");
    sleeper(&h, "b", &[]);
    wait_listening(&h, "a", 8080);
    let a = ip_of(&h, "a", "bridge");
    let r = exec_probe(&h, "b", &a);
    assert!(r.stdout.contains("hello-a"), "{r}");
    h.cove(&["rm", "-f", "a", "b"]).ok();
}

#[test]
fn network_connect_link_is_an_alias_for_the_linker_only() {
    let h = host("links-connect");
    h.cove(&["network", "create", "--subnet", "10.74.1.0/24", "ln"]).ok();
    sleeper(&h, "target", &["--network", "ln"]);
    sleeper(&h, "bystander", &["--network", "ln"]);
    sleeper(&h, "linker", &[]);
    let tip = ip_of(&h, "target", "ln");

    // Bad input: named in the error, and nothing changes.
    let r = h.cove(&["network", "connect", "--link", "nosuch:x", "ln", "linker"]);
    r.fails();
    assert!(r.stderr.contains("nosuch"), "{r}");
    let r = h.cove(&["network", "connect", "--link", "target:db", "bridge", "bystander"]);
    r.fails();
    assert!(r.stderr.contains("links are only supported for user-defined networks"), "{r}");
    let v = inspect(&h, &["inspect", "linker"]);
    assert!(v["NetworkSettings"]["Networks"]["ln"].is_null(), "a refused connect connected: {v}");
    let v = inspect(&h, &["inspect", "bystander"]);
    assert!(v["NetworkSettings"]["Networks"]["bridge"].is_null(), "{v}");

    h.cove(&["network", "connect", "--link", "target:db", "ln", "linker"]).ok();
    let v = inspect(&h, &["inspect", "linker"]);
    assert_eq!(v["NetworkSettings"]["Networks"]["ln"]["Links"], serde_json::json!(["target:db"]));
    // The alias resolves through the embedded DNS for the linker...
    let out = exec_ok(&h, "linker", &["nslookup", "db", "127.0.0.11"]);
    assert!(out.contains(&tip), "{out}");
    // ...and for no one else on the network (positive control: the name itself resolves).
    let out = exec_ok(&h, "bystander", &["nslookup", "target", "127.0.0.11"]);
    assert!(out.contains(&tip), "{out}");
    let r = h.cove(&["exec", "bystander", "nslookup", "db", "127.0.0.11"]);
    assert!(!r.stdout.contains(&tip), "the link alias leaked to another container: {r}");

    h.cove(&["rm", "-f", "target", "bystander", "linker"]).ok();
    h.cove(&["network", "rm", "ln"]).ok();
}
