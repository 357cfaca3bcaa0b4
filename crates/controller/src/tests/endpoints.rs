//! Connect and disconnect on fakes: running and stopped containers, static addresses,
//! aliases, the built-in networks' rules, the sandbox's default route, neighbour entries,
//! the firewall's delta, failures rolled back, and IPAM handing out and taking back.

use std::net::IpAddr;

use cove_drivers::plan::RETIRED_LINK_GROUP;
use cove_model::{ContainerRecord, EndpointSettings, ErrorKind, NetworkRecord, Status};
use cove_store::Table;

use super::{ctr, ctr_on, endpoint, host, net, run, snapshot, stored_endpoints};
use crate::fake::FakeHost;
use crate::NetworkCreate;

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn with_ip(v4: &str) -> EndpointSettings {
    EndpointSettings { ipv4_address: ip(v4), ..Default::default() }
}

fn aliases(a: &[&str]) -> EndpointSettings {
    EndpointSettings { aliases: a.iter().map(|s| s.to_string()).collect(), ..Default::default() }
}

async fn bridge_of(h: &FakeHost, network: &str) -> String {
    match h.ctl.network_get(network).await.unwrap().record.config {
        cove_model::DriverConfig::Bridge(b) => b.name,
        other => panic!("{other:?}"),
    }
}

/// A host with network `app` on 10.1.0.0/24.
async fn with_app() -> FakeHost {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    h
}

fn container(h: &FakeHost, id: &str) -> ContainerRecord {
    h.store.get::<ContainerRecord>(Table::Containers, id).unwrap().unwrap()
}

fn v4(ep: &cove_model::EndpointRecord) -> String {
    ep.ipv4.unwrap().addr().to_string()
}

/// Connect that must be refused: the error, after checking nothing changed.
async fn connect_refused(
    h: &FakeHost,
    network: &str,
    container: &str,
    s: EndpointSettings,
) -> cove_model::Error {
    let before = snapshot(h);
    let e = h.ctl.network_connect(network, container, s).await.expect_err("connect accepted");
    assert_eq!(snapshot(h), before, "a refused connect changed something ({e})");
    e
}

/// Journal lines since `from`.
fn journal_since(h: &FakeHost, from: usize) -> Vec<String> {
    h.kernel.model().journal[from..].to_vec()
}

// ---- connect -----------------------------------------------------------------------------

#[tokio::test]
async fn connecting_a_running_container_adds_the_next_interface_on_the_bridge() {
    let h = with_app().await;
    let id = run(&h, ctr("c1", "bridge")).await;
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    let ep = endpoint(&h, "c1", "app").await;
    assert_eq!(ep.ifname, "eth1");
    assert_eq!(ep.ipv4.unwrap().to_string(), "10.1.0.2/24");
    assert_eq!(ep.gateway4.unwrap().to_string(), "10.1.0.1");
    assert_eq!(ep.mac.to_string(), "02:42:0a:01:00:02", "MAC derived from the address");
    let host_end = ep.host_ifname.clone().unwrap();
    let b = bridge_of(&h, "app").await;
    let k = h.kernel.model();
    assert_eq!(k.links[&host_end].master.as_deref(), Some(b.as_str()));
    assert!(k.ports_of(&b).contains(&host_end));
    assert!(k.journal.iter().any(|l| l.starts_with("apply add address 10.1.0.2/24 to eth1 in")));
    assert!(container(&h, &id).networks.iter().any(|(n, _)| n == &ep.network_id));
    assert!(stored_endpoints(&h).iter().any(|e| e.id == ep.id), "the endpoint is stored");
}

#[tokio::test]
async fn connecting_a_stopped_container_only_records_the_network() {
    let h = with_app().await;
    let id = h.ctl.container_create(ctr("c1", "bridge")).await.unwrap();
    let journal = h.kernel.model().journal.len();
    h.ctl.network_connect("app", "c1", aliases(&["web"])).await.unwrap();
    assert_eq!(h.kernel.model().journal.len(), journal, "the kernel was touched");
    assert!(stored_endpoints(&h).is_empty());
    let rec = container(&h, &id);
    assert_eq!(rec.networks.len(), 2);
    assert_eq!(rec.networks[1].1.aliases, ["web"]);
    // Started, it joins both, in connect order.
    h.ctl.container_start(&id).await.unwrap();
    assert_eq!(endpoint(&h, "c1", "bridge").await.ifname, "eth0");
    let ep = endpoint(&h, "c1", "app").await;
    assert_eq!(ep.ifname, "eth1");
    assert_eq!(ep.aliases, ["web"]);
}

#[tokio::test]
async fn a_second_connect_to_the_same_network_is_refused() {
    let h = with_app().await;
    run(&h, ctr("c1", "app")).await;
    let e = connect_refused(&h, "app", "c1", Default::default()).await;
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(e.message, "endpoint with name c1 already exists in network app");
    h.ctl.container_create(ctr("c2", "app")).await.unwrap();
    let e = connect_refused(&h, "app", "c2", Default::default()).await;
    assert_eq!(e.kind, ErrorKind::Forbidden, "a stopped container too");
}

#[tokio::test]
async fn connect_to_unknown_networks_or_containers_is_not_found() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    assert_eq!(
        connect_refused(&h, "nope", "c1", Default::default()).await.kind,
        ErrorKind::NotFound
    );
    let e = connect_refused(&h, "app", "ghost", Default::default()).await;
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.message, "No such container: ghost");
}

#[tokio::test]
async fn a_static_address_in_the_subnet_is_used() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    h.ctl.network_connect("app", "c1", with_ip("10.1.0.77")).await.unwrap();
    assert_eq!(v4(&endpoint(&h, "c1", "app").await), "10.1.0.77");
}

#[tokio::test]
async fn a_static_address_outside_the_subnet_is_refused() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    let e = connect_refused(&h, "app", "c1", with_ip("10.2.0.5")).await;
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(
        e.message,
        "requested address 10.2.0.5 is outside the subnet 10.1.0.0/24 of network app"
    );
}

#[tokio::test]
async fn a_static_address_of_the_wrong_family_is_refused() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    let e = connect_refused(&h, "app", "c1", with_ip("fd00::5")).await;
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(e.message, "invalid IPv4 address fd00::5");
    let s = EndpointSettings { ipv6_address: ip("10.1.0.5"), ..Default::default() };
    let e = connect_refused(&h, "app", "c1", s).await;
    assert_eq!(e.message, "invalid IPv6 address 10.1.0.5");
    let s = EndpointSettings { ipv6_address: ip("fd00::5"), ..Default::default() };
    let e = connect_refused(&h, "app", "c1", s).await;
    assert_eq!(e.message, "network app has no IPv6 subnet for address fd00::5");
}

#[tokio::test]
async fn a_static_address_taken_or_reserved_is_a_conflict_that_leaves_nothing() {
    let h = with_app().await;
    run(&h, ctr_on("a", "app", with_ip("10.1.0.9"))).await;
    run(&h, ctr("b", "bridge")).await;
    let b_eps = stored_endpoints(&h).len();
    for (addr, why) in
        [("10.1.0.9", "Address already in use: 10.1.0.9"), ("10.1.0.1", "is the gateway")]
    {
        let journal = h.kernel.model().journal.len();
        let e = h.ctl.network_connect("app", "b", with_ip(addr)).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict, "{addr}");
        assert!(e.message.contains(why), "{}", e.message);
        assert_eq!(h.kernel.model().journal.len(), journal, "{addr}: the kernel was touched");
        assert_eq!(stored_endpoints(&h).len(), b_eps);
    }
    assert_eq!(v4(&endpoint(&h, "a", "app").await), "10.1.0.9", "the holder keeps it");
    // The network and broadcast addresses are bad requests.
    let e = h.ctl.network_connect("app", "b", with_ip("10.1.0.255")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");
}

#[tokio::test]
async fn bad_aliases_are_refused() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    let long_label = "x".repeat(64);
    let long_name = vec!["abc"; 64].join(".");
    for bad in ["", "a..b", ".lead", "trail.", long_label.as_str(), long_name.as_str()] {
        let e = connect_refused(&h, "app", "c1", aliases(&["ok", bad])).await;
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{bad:?}");
        assert!(e.message.starts_with("invalid alias"), "{}", e.message);
    }
}

#[tokio::test]
async fn aliases_are_kept_on_the_endpoint() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    h.ctl.network_connect("app", "c1", aliases(&["web", "www.example"])).await.unwrap();
    let ep = endpoint(&h, "c1", "app").await;
    assert_eq!(ep.aliases, ["web", "www.example"]);
    let stored = stored_endpoints(&h).into_iter().find(|e| e.id == ep.id).unwrap();
    assert_eq!(stored.aliases, ep.aliases);
}

#[tokio::test]
async fn the_default_bridge_takes_no_alias_address_or_link() {
    let h = with_app().await;
    run(&h, ctr("c1", "app")).await;
    let e = connect_refused(&h, "bridge", "c1", aliases(&["web"])).await;
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.starts_with("network-scoped alias is supported only"), "{}", e.message);
    let e = connect_refused(&h, "bridge", "c1", with_ip("172.17.0.9")).await;
    assert_eq!(e.message, "user specified IP address is supported on user defined networks only");
    let s = EndpointSettings { links: vec!["c1:x".into()], ..Default::default() };
    let e = connect_refused(&h, "bridge", "c1", s).await;
    assert_eq!(e.message, "links are only supported for user-defined networks");
    // Plainly, it can join.
    h.ctl.network_connect("bridge", "c1", Default::default()).await.unwrap();
    assert_eq!(endpoint(&h, "c1", "bridge").await.ifname, "eth1");
}

#[tokio::test]
async fn the_host_and_none_networks_cannot_be_joined() {
    let h = with_app().await;
    run(&h, ctr("c1", "app")).await;
    for n in ["host", "none"] {
        let e = connect_refused(&h, n, "c1", Default::default()).await;
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{n}");
        assert!(e.message.starts_with("container cannot be connected to network"), "{}", e.message);
    }
}

#[tokio::test]
async fn a_container_on_another_stack_cannot_be_connected() {
    let h = with_app().await;
    run(&h, ctr("h1", "host")).await;
    run(&h, ctr("n1", "none")).await;
    for c in ["h1", "n1"] {
        let e = connect_refused(&h, "app", c, Default::default()).await;
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{c}");
        assert!(e.message.contains("shares the network stack of"), "{}", e.message);
    }
}

// ---- the default route ---------------------------------------------------------------------

#[tokio::test]
async fn the_first_network_keeps_the_default_route_when_another_is_connected() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    assert_eq!(h.kernel.model().journal_of("apply add route 0.0.0.0/0").len(), 1);
    assert!(h.kernel.model().journal_of("apply add route 0.0.0.0/0")[0]
        .contains("via 172.17.0.1 dev eth0"));
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    assert_eq!(h.kernel.model().journal_of("apply add route 0.0.0.0/0").len(), 1, "route moved");
}

#[tokio::test]
async fn an_internal_network_gives_no_default_route_and_the_next_network_does() {
    let h = host().await;
    h.ctl
        .network_create(NetworkCreate { internal: true, ..net("int", Some("10.5.0.0/24")) })
        .await
        .unwrap();
    h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    run(&h, ctr("c1", "int")).await;
    assert!(h.kernel.model().journal_of("apply add route").is_empty());
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    let routes = h.kernel.model().journal_of("apply add route");
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(
        routes[0].starts_with("apply add route 0.0.0.0/0 via 10.1.0.1 dev eth1 in"),
        "{routes:?}"
    );
}

#[tokio::test]
async fn disconnecting_the_gateway_network_moves_the_default_route() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    let from = h.kernel.model().journal.len();
    h.ctl.network_disconnect("bridge", "c1", false).await.unwrap();
    let routes: Vec<String> = journal_since(&h, from)
        .into_iter()
        .filter(|l| l.starts_with("apply add route 0.0.0.0/0"))
        .collect();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(routes[0].contains("via 10.1.0.1 dev eth1"), "{routes:?}");
}

#[tokio::test]
async fn disconnecting_another_network_leaves_the_default_route() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    let from = h.kernel.model().journal.len();
    h.ctl.network_disconnect("app", "c1", false).await.unwrap();
    assert!(!journal_since(&h, from).iter().any(|l| l.contains("add route")));
}

// ---- IPv6 ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_dual_stack_endpoint_gets_both_families_and_both_default_routes() {
    let h = host().await;
    h.ctl
        .network_create(NetworkCreate { enable_ipv6: true, ..net("v6", Some("fd12::/64")) })
        .await
        .unwrap();
    run(&h, ctr("c1", "v6")).await;
    let ep = endpoint(&h, "c1", "v6").await;
    assert_eq!(ep.ipv4.unwrap().to_string(), "172.18.0.2/16");
    assert_eq!(ep.ipv6.unwrap().to_string(), "fd12::2/64");
    assert_eq!(ep.gateway6.unwrap().to_string(), "fd12::1");
    let b = bridge_of(&h, "v6").await;
    let k = h.kernel.model();
    assert!(
        k.journal_of("apply add route ::/0 via fd12::1 dev eth0").len() == 1,
        "{:?}",
        k.journal
    );
    assert!(k.journal.iter().any(|l| l.starts_with("apply add address fd12::2/64 to eth0 in")));
    assert!(!k.journal.iter().any(|l| l.contains("conf/eth0/disable_ipv6")), "IPv6 turned off");
    assert!(k
        .neighbours
        .iter()
        .any(|(ns, l, a)| ns == "host" && *l == b && a.to_string() == "fd12::2"));
}

#[tokio::test]
async fn a_static_ipv6_address_is_used() {
    let h = host().await;
    h.ctl
        .network_create(NetworkCreate { enable_ipv6: true, ..net("v6", Some("fd12::/64")) })
        .await
        .unwrap();
    run(&h, ctr("c1", "bridge")).await;
    let s = EndpointSettings { ipv6_address: ip("fd12::abcd"), ..Default::default() };
    h.ctl.network_connect("v6", "c1", s).await.unwrap();
    assert_eq!(endpoint(&h, "c1", "v6").await.ipv6.unwrap().to_string(), "fd12::abcd/64");
}

#[tokio::test]
async fn an_ipv4_only_endpoint_has_ipv6_turned_off_in_the_sandbox() {
    let h = with_app().await;
    run(&h, ctr("c1", "app")).await;
    let k = h.kernel.model();
    assert!(k
        .journal
        .iter()
        .any(|l| l.starts_with("apply sysctl net/ipv6/conf/eth0/disable_ipv6=1 in /")));
}

// ---- neighbours and the firewall ---------------------------------------------------------

#[tokio::test]
async fn connect_adds_neighbour_entries_both_ways_and_disconnect_removes_them() {
    let h = with_app().await;
    let id = run(&h, ctr("c1", "bridge")).await;
    let sandbox = h.ctl.container_get("c1").await.unwrap().record.state.sandbox_key;
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    let b = bridge_of(&h, "app").await;
    let host_side = ("host".to_string(), b.clone(), "10.1.0.2".parse::<IpAddr>().unwrap());
    let sandbox_side = (sandbox.clone(), "eth1".to_string(), "10.1.0.1".parse::<IpAddr>().unwrap());
    {
        let k = h.kernel.model();
        assert!(k.neighbours.contains(&host_side), "{:?}", k.neighbours);
        assert!(k.neighbours.contains(&sandbox_side), "{:?}", k.neighbours);
        let mac = format!("lladdr 02:42:0a:01:00:02 dev {b} in host");
        assert!(k.journal.iter().any(|l| l.ends_with(&mac)), "the container's MAC on the bridge");
    }
    h.ctl.network_disconnect("app", "c1", false).await.unwrap();
    {
        let k = h.kernel.model();
        assert!(!k.neighbours.contains(&host_side), "{:?}", k.neighbours);
        assert!(!k.neighbours.contains(&sandbox_side), "{:?}", k.neighbours);
        assert!(k.journal.contains(&format!("teardown delete neighbour 10.1.0.2 dev {b} in host")));
        // The default bridge's stay.
        assert!(k.neighbours.iter().any(|(ns, l, _)| ns == "host" && l == "cove0"));
    }
    assert_eq!(container(&h, &id).networks.len(), 1, "only the default bridge is left");
}

#[tokio::test]
async fn stopping_removes_the_hosts_neighbour_entries() {
    let h = with_app().await;
    run(&h, ctr("c1", "app")).await;
    assert_eq!(h.kernel.model().neighbours.len(), 2, "one each way");
    h.ctl.container_stop("c1", Some(1)).await.unwrap();
    let k = h.kernel.model();
    assert!(k.neighbours.is_empty(), "{:?}", k.neighbours);
}

#[tokio::test]
async fn connect_sends_the_new_port_to_the_firewall_as_a_delta() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    let (rulesets, deltas) = {
        let fw = h.firewall.log();
        (fw.rulesets.len(), fw.deltas.len())
    };
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    let ep = endpoint(&h, "c1", "app").await;
    let fw = h.firewall.log();
    assert_eq!(fw.rulesets.len(), rulesets, "not a whole ruleset");
    assert_eq!(fw.deltas.len(), deltas + 1);
    let d = fw.deltas.last().unwrap();
    assert!(d.starts_with("add element"), "{d}");
    assert!(d.contains(ep.host_ifname.as_deref().unwrap()), "{d}");
    assert!(d.contains("10.1.0.2"), "{d}");
}

// ---- failures during connect --------------------------------------------------------------

/// Connect `c1` to `app` with the kernel refusing `step`: refused, the endpoint record and
/// its links gone, and after healing the same address is handed out.
async fn connect_fails_at(step: &str) {
    let h = with_app().await;
    let id = run(&h, ctr("c1", "bridge")).await;
    let links = h.kernel.model().links.clone();
    let eps = stored_endpoints(&h);
    h.kernel.fail_on(step);
    let e = h.ctl.network_connect("app", "c1", Default::default()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert!(e.message.contains("connect c1 to app"), "{}", e.message);
    assert_eq!(stored_endpoints(&h), eps, "the endpoint record was not rolled back");
    assert_eq!(container(&h, &id).networks.len(), 1, "the container records the network");
    assert_eq!(h.kernel.model().links, links, "links were left behind");
    assert!(h.kernel.model().neighbours.iter().all(|(_, _, a)| a.to_string() != "10.1.0.2"));
    h.kernel.heal();
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    assert_eq!(v4(&endpoint(&h, "c1", "app").await), "10.1.0.2", "IPAM was not rolled back");
}

#[tokio::test]
async fn connect_failing_at_the_veth_rolls_back_ipam_and_the_record() {
    connect_fails_at("create veth").await;
}

#[tokio::test]
async fn connect_failing_at_the_sandbox_address_rolls_back_the_veth() {
    connect_fails_at("add address 10.1.0.2/24 to eth1").await;
}

#[tokio::test]
async fn connect_failing_at_the_host_neighbour_rolls_back_everything() {
    connect_fails_at("add permanent neighbour 10.1.0.2").await;
}

#[tokio::test]
async fn connect_with_the_firewall_refusing_is_rolled_back() {
    let h = with_app().await;
    let id = run(&h, ctr("c1", "bridge")).await;
    let eps = stored_endpoints(&h);
    h.firewall.log().fail = true;
    let e = h.ctl.network_connect("app", "c1", Default::default()).await.unwrap_err();
    assert!(e.message.contains("program the firewall"), "{}", e.message);
    assert_eq!(stored_endpoints(&h), eps);
    assert_eq!(container(&h, &id).networks.len(), 1);
    {
        let k = h.kernel.model();
        // The new interface was retired, its host end condemned for the reaper.
        assert_eq!(k.journal_of("teardown retire eth1 as x").len(), 1, "{:?}", k.journal);
        assert!(k.links.values().filter(|l| l.group == RETIRED_LINK_GROUP).count() == 1);
    }
    h.firewall.log().fail = false;
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    let ep = endpoint(&h, "c1", "app").await;
    assert_eq!(v4(&ep), "10.1.0.2");
    assert_eq!(ep.ifname, "eth1", "the tombstone freed the name");
}

// ---- disconnect ---------------------------------------------------------------------------

#[tokio::test]
async fn disconnect_retires_the_interface_condemns_the_host_end_and_deletes_the_record() {
    let h = with_app().await;
    let id = run(&h, ctr("c1", "bridge")).await;
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    let ep = endpoint(&h, "c1", "app").await;
    let host_end = ep.host_ifname.clone().unwrap();
    h.ctl.network_disconnect("app", "c1", false).await.unwrap();
    {
        let k = h.kernel.model();
        let tomb = format!("teardown retire eth1 as x{}", host_end.trim_start_matches("cv"));
        assert!(k.journal.iter().any(|l| l.starts_with(&tomb)), "{:?}", k.journal);
        assert!(k
            .journal
            .contains(&format!("teardown condemn {host_end} (reaped in the background)")));
        // Only its group changes: setting it down would walk the neighbour table.
        assert_eq!(k.links[&host_end].group, RETIRED_LINK_GROUP);
    }
    assert!(!stored_endpoints(&h).iter().any(|e| e.id == ep.id));
    assert_eq!(container(&h, &id).networks.len(), 1);
    h.ctl.kernel.reap_condemned().await.unwrap();
    assert!(!h.kernel.model().links.contains_key(&host_end));
    let b = bridge_of(&h, "app").await;
    assert!(h.kernel.model().ports_of(&b).is_empty());
}

#[tokio::test]
async fn disconnect_from_a_network_not_joined_is_not_found() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    let before = snapshot(&h);
    let e = h.ctl.network_disconnect("app", "c1", false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.message, "container c1 is not connected to network app");
    assert_eq!(snapshot(&h), before);
}

#[tokio::test]
async fn disconnecting_a_stopped_container_only_changes_its_record() {
    let h = with_app().await;
    let id = h.ctl.container_create(ctr("c1", "app")).await.unwrap();
    let journal = h.kernel.model().journal.len();
    h.ctl.network_disconnect("app", "c1", false).await.unwrap();
    assert_eq!(h.kernel.model().journal.len(), journal);
    assert!(container(&h, &id).networks.is_empty());
}

#[tokio::test]
async fn a_container_cannot_be_disconnected_from_its_network_mode() {
    let h = host().await;
    run(&h, ctr("n1", "none")).await;
    let before = snapshot(&h);
    let e = h.ctl.network_disconnect("none", "n1", false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("change its network mode instead"), "{}", e.message);
    assert_eq!(snapshot(&h), before);
}

#[tokio::test]
async fn interfaces_are_numbered_after_the_highest_in_use() {
    let h = host().await;
    for (n, s) in [("a", "10.1.0.0/24"), ("b", "10.2.0.0/24"), ("c", "10.3.0.0/24")] {
        h.ctl.network_create(net(n, Some(s))).await.unwrap();
    }
    run(&h, ctr("c1", "bridge")).await;
    h.ctl.network_connect("a", "c1", Default::default()).await.unwrap();
    h.ctl.network_connect("b", "c1", Default::default()).await.unwrap();
    h.ctl.network_disconnect("a", "c1", false).await.unwrap();
    h.ctl.network_connect("c", "c1", Default::default()).await.unwrap();
    assert_eq!(endpoint(&h, "c1", "b").await.ifname, "eth2");
    assert_eq!(endpoint(&h, "c1", "c").await.ifname, "eth3");
}

#[tokio::test]
async fn a_mac_address_setting_is_used() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    let s = EndpointSettings {
        mac_address: Some(cove_model::MacAddr([0x02, 0, 0, 0, 0, 0x42])),
        ..Default::default()
    };
    h.ctl.network_connect("app", "c1", s).await.unwrap();
    assert_eq!(endpoint(&h, "c1", "app").await.mac.to_string(), "02:00:00:00:00:42");
    assert!(h
        .kernel
        .model()
        .journal
        .iter()
        .any(|l| l.contains("peer eth1 in") && l.contains("mac 02:00:00:00:00:42")));
}

// ---- IPAM ---------------------------------------------------------------------------------

#[tokio::test]
async fn addresses_are_handed_out_lowest_first() {
    let h = with_app().await;
    for n in ["a", "b", "c"] {
        run(&h, ctr(n, "app")).await;
    }
    let got: Vec<String> = [
        endpoint(&h, "a", "app").await,
        endpoint(&h, "b", "app").await,
        endpoint(&h, "c", "app").await,
    ]
    .iter()
    .map(v4)
    .collect();
    assert_eq!(got, ["10.1.0.2", "10.1.0.3", "10.1.0.4"]);
}

#[tokio::test]
async fn an_address_released_by_disconnect_is_handed_out_again() {
    let h = with_app().await;
    run(&h, ctr("a", "app")).await;
    run(&h, ctr("b", "app")).await;
    h.ctl.network_disconnect("app", "a", false).await.unwrap();
    run(&h, ctr("c", "bridge")).await;
    h.ctl.network_connect("app", "c", Default::default()).await.unwrap();
    assert_eq!(v4(&endpoint(&h, "c", "app").await), "10.1.0.2");
}

#[tokio::test]
async fn an_address_released_by_stop_is_handed_out_again() {
    let h = with_app().await;
    let a = run(&h, ctr("a", "app")).await;
    run(&h, ctr("b", "app")).await;
    h.ctl.container_stop("a", Some(1)).await.unwrap();
    assert_eq!(container(&h, &a).state.status, Status::Exited);
    assert!(!stored_endpoints(&h).iter().any(|e| e.container_id == a), "a's endpoint stayed");
    run(&h, ctr("c", "app")).await;
    assert_eq!(v4(&endpoint(&h, "c", "app").await), "10.1.0.2");
}

#[tokio::test]
async fn a_static_address_released_is_free_for_another_static_request() {
    let h = with_app().await;
    run(&h, ctr_on("a", "app", with_ip("10.1.0.50"))).await;
    h.ctl.container_stop("a", Some(1)).await.unwrap();
    run(&h, ctr_on("b", "app", with_ip("10.1.0.50"))).await;
    assert_eq!(v4(&endpoint(&h, "b", "app").await), "10.1.0.50");
}

#[tokio::test]
async fn an_exhausted_pool_refuses_a_start_and_leaves_nothing() {
    let h = host().await;
    h.ctl.network_create(net("tiny", Some("10.9.0.0/30"))).await.unwrap();
    run(&h, ctr("a", "tiny")).await;
    assert_eq!(v4(&endpoint(&h, "a", "tiny").await), "10.9.0.2");
    let b = h.ctl.container_create(ctr("b", "tiny")).await.unwrap();
    let (links, netns) = {
        let k = h.kernel.model();
        (k.links.clone(), k.netns.clone())
    };
    let eps = stored_endpoints(&h);
    let e = h.ctl.container_start(&b).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.message.contains("no available IPv4 addresses"), "{}", e.message);
    assert_eq!(stored_endpoints(&h), eps);
    let k = h.kernel.model();
    assert_eq!(k.links, links);
    assert_eq!(k.netns, netns);
    assert!(!h.runtime.running(&b));
}

#[tokio::test]
async fn an_exhausted_pool_refuses_a_connect_and_leaves_nothing() {
    let h = host().await;
    h.ctl.network_create(net("tiny", Some("10.9.0.0/30"))).await.unwrap();
    run(&h, ctr("a", "tiny")).await;
    run(&h, ctr("b", "bridge")).await;
    let before = snapshot(&h);
    let e = h.ctl.network_connect("tiny", "b", Default::default()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert_eq!(snapshot(&h), before);
    // Freed, the one address serves the next.
    h.ctl.network_disconnect("tiny", "a", false).await.unwrap();
    h.ctl.network_connect("tiny", "b", Default::default()).await.unwrap();
    assert_eq!(v4(&endpoint(&h, "b", "tiny").await), "10.9.0.2");
}

#[tokio::test]
async fn the_ip_range_bounds_dynamic_addresses_but_not_static_ones() {
    let h = host().await;
    let req = NetworkCreate {
        ipam_config: vec![crate::IpamConfigRequest {
            subnet: Some("10.1.0.0/24".parse().unwrap()),
            ip_range: Some("10.1.0.128/25".parse().unwrap()),
            ..Default::default()
        }],
        ..net("app", None)
    };
    h.ctl.network_create(req).await.unwrap();
    run(&h, ctr("a", "app")).await;
    run(&h, ctr_on("b", "app", with_ip("10.1.0.5"))).await;
    let a = v4(&endpoint(&h, "a", "app").await);
    assert!(a.starts_with("10.1.0.") && a["10.1.0.".len()..].parse::<u8>().unwrap() >= 128, "{a}");
    assert_eq!(v4(&endpoint(&h, "b", "app").await), "10.1.0.5");
}

#[tokio::test]
async fn removing_a_network_with_only_stopped_members_keeps_their_other_networks() {
    let h = with_app().await;
    let id = h.ctl.container_create(ctr("c1", "bridge")).await.unwrap();
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    h.ctl.network_remove("app").await.unwrap();
    let rec = container(&h, &id);
    let bridge = h.store.list::<NetworkRecord>(Table::Networks).unwrap();
    let bridge_id = &bridge.iter().find(|(_, n)| n.name == "bridge").unwrap().0;
    assert_eq!(rec.networks.iter().map(|(n, _)| n).collect::<Vec<_>>(), [bridge_id]);
}
