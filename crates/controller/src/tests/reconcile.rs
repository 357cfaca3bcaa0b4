//! Restarts on fakes: a new controller on the same kernel, firewall, runtime and store
//! brings the kernel in line with the records: bridges re-created only when missing,
//! orphans of Cove removed and look-alikes kept, built-ins not duplicated, the daemon's
//! flags applied, IPAM rebuilt from the endpoint records, stale endpoints dropped.

use cove_drivers::plan::{OWNED_LINK_GROUP, RETIRED_LINK_GROUP};
use cove_model::{
    ContainerRecord, DriverConfig, EndpointRecord, EndpointSettings, ErrorKind, MacAddr,
    NetworkRecord, Status,
};
use cove_store::{Batch, Table};

use super::{ctr, ctr_on, endpoint, host, net, run, stored_endpoints};
use crate::fake::{FakeHost, FakeLink, FakeProcess};
use crate::seams::Kernel;
use crate::NetworkCreate;

fn ip4(a: &str) -> EndpointSettings {
    EndpointSettings { ipv4_address: Some(a.parse().unwrap()), ..Default::default() }
}

fn link(kind: &'static str, group: u32, master: Option<&str>) -> FakeLink {
    FakeLink { kind, group, master: master.map(str::to_string), peer_netns: None, up: true }
}

async fn bridge_of(h: &FakeHost, network: &str) -> String {
    match h.ctl.network_get(network).await.unwrap().record.config {
        DriverConfig::Bridge(b) => b.name,
        other => panic!("{other:?}"),
    }
}

fn networks(h: &FakeHost) -> Vec<NetworkRecord> {
    h.store.list::<NetworkRecord>(Table::Networks).unwrap().into_iter().map(|(_, n)| n).collect()
}

fn container(h: &FakeHost, id: &str) -> ContainerRecord {
    h.store.get::<ContainerRecord>(Table::Containers, id).unwrap().unwrap()
}

fn v4(ep: &EndpointRecord) -> String {
    ep.ipv4.unwrap().addr().to_string()
}

/// A host with network `app` on 10.1.0.0/24.
async fn with_app() -> FakeHost {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    h
}

async fn restart(h: &FakeHost) -> (FakeHost, usize) {
    let from = h.kernel.model().journal.len();
    (h.restart().await.expect("restart"), from)
}

fn journal_since(h: &FakeHost, from: usize) -> Vec<String> {
    h.kernel.model().journal[from..].to_vec()
}

/// An endpoint record written to the store behind the controller's back.
fn stale_endpoint(
    h: &FakeHost,
    network_id: &str,
    container_id: &str,
    addr: &str,
) -> EndpointRecord {
    let id = cove_model::EndpointId::random();
    let ep = EndpointRecord {
        host_ifname: Some(format!("cv{}", id.short())),
        id,
        network_id: network_id.parse().unwrap(),
        container_id: container_id.parse().unwrap(),
        ifname: "eth0".into(),
        mac: MacAddr([2, 0, 0, 0, 0, 9]),
        ipv4: Some(format!("{addr}/24").parse().unwrap()),
        ipv6: None,
        gateway4: Some("10.1.0.1".parse().unwrap()),
        gateway6: None,
        aliases: vec![],
    };
    let mut b = Batch::new();
    b.put(Table::Endpoints, &ep.id, &ep);
    h.store.commit(b).unwrap();
    ep
}

// ---- bridges ------------------------------------------------------------------------------

#[tokio::test]
async fn restart_recreates_a_missing_bridge_with_its_address() {
    let h = with_app().await;
    let b = bridge_of(&h, "app").await;
    {
        let mut k = h.kernel.model();
        k.links.remove(&b);
        k.addresses.retain(|(l, _)| *l != b);
    }
    let (h2, from) = restart(&h).await;
    let j = journal_since(&h2, from);
    // Reconciliation is best effort: every op of the diff is tried (`teardown`).
    assert!(
        j.iter().any(|l| l.starts_with(&format!("teardown create bridge {b} mtu 1500"))),
        "{j:?}"
    );
    {
        let k = h2.kernel.model();
        assert!(k.links[&b].up);
        assert_eq!(k.links[&b].group, OWNED_LINK_GROUP);
        assert!(k.addresses.contains(&(b.clone(), "10.1.0.1/24".parse().unwrap())));
    }
    // The repairs are counted by kind.
    let text = h2.ctl.metrics_text().await;
    assert!(text.contains("cove_reconcile_fixes_total{kind=\"create_bridge\"} 1\n"), "{text}");
    assert!(text.contains("cove_reconcile_fixes_total{kind=\"add_address\"} 1\n"), "{text}");
}

#[tokio::test]
async fn restart_leaves_present_bridges_in_place() {
    let h = with_app().await;
    let b = bridge_of(&h, "app").await;
    let (h2, from) = restart(&h).await;
    let j = journal_since(&h2, from);
    assert!(!j.iter().any(|l| l.contains("create bridge")), "{j:?}");
    assert!(!j.iter().any(|l| l.contains("delete link")), "{j:?}");
    let k = h2.kernel.model();
    assert_eq!(k.owned_links(), {
        let mut v = vec!["cove0".to_string(), b.clone()];
        v.sort();
        v
    });
    assert!(k.addresses.contains(&(b, "10.1.0.1/24".parse().unwrap())));
}

#[tokio::test]
async fn restart_recreates_a_missing_dual_stack_bridge() {
    let h = host().await;
    h.ctl
        .network_create(NetworkCreate { enable_ipv6: true, ..net("v6", Some("fd12::/64")) })
        .await
        .unwrap();
    let b = bridge_of(&h, "v6").await;
    {
        let mut k = h.kernel.model();
        k.links.remove(&b);
        k.addresses.retain(|(l, _)| *l != b);
    }
    let (h2, _) = restart(&h).await;
    let k = h2.kernel.model();
    assert!(k.links.contains_key(&b));
    assert!(k.addresses.contains(&(b.clone(), "fd12::1/64".parse().unwrap())));
    assert_eq!(k.sysctls[&format!("net/ipv6/conf/{b}/disable_ipv6")], "0");
}

#[tokio::test]
async fn a_bridge_the_kernel_refuses_to_restore_does_not_stop_the_start_and_comes_back_later() {
    let h = with_app().await;
    let b = bridge_of(&h, "app").await;
    h.kernel.model().links.remove(&b);
    h.kernel.fail_on(&format!("create bridge {b}"));
    // The daemon starts (its other networks work); the bridge is still missing.
    let h2 = h.restart().await.expect("a start with one network the kernel refuses");
    assert!(!h2.kernel.model().links.contains_key(&b));
    assert!(h2.kernel.model().links.contains_key("cove0"));
    // The next reconciliation, once the kernel agrees, brings it back.
    h.kernel.heal();
    let h3 = h2.restart().await.expect("a restart once the kernel agrees");
    assert!(h3.kernel.model().links.contains_key(&b));
}

// ---- orphans ------------------------------------------------------------------------------

#[tokio::test]
async fn restart_removes_an_orphan_veth_of_cove_and_keeps_a_running_containers() {
    let h = with_app().await;
    run(&h, ctr("c1", "app")).await;
    let live = endpoint(&h, "c1", "app").await.host_ifname.unwrap();
    let b = bridge_of(&h, "app").await;
    h.kernel
        .model()
        .links
        .insert("cv0123456789ab".into(), link("veth", OWNED_LINK_GROUP, Some(&b)));
    h.kernel.model().links.insert("cvlookalike".into(), link("veth", 0, Some(&b)));
    let (h2, from) = restart(&h).await;
    let k = h2.kernel.model();
    assert!(!k.links.contains_key("cv0123456789ab"), "the orphan survived");
    assert!(k.links.contains_key("cvlookalike"), "a link not in Cove's group was removed");
    assert!(k.links.contains_key(&live), "the running container's veth was removed");
    // Condemned (the reaper deletes it), and nothing else.
    assert!(k.journal[from..]
        .contains(&"teardown condemn cv0123456789ab (reaped in the background)".to_string()));
    assert_eq!(k.journal[from..].iter().filter(|l| l.contains("condemn")).count(), 1);
}

#[tokio::test]
async fn restart_reaps_links_condemned_before_it() {
    let h = with_app().await;
    run(&h, ctr("c1", "bridge")).await;
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    h.ctl.network_disconnect("app", "c1", false).await.unwrap();
    assert_eq!(
        h.kernel.model().links.values().filter(|l| l.group == RETIRED_LINK_GROUP).count(),
        1
    );
    let (h2, from) = restart(&h).await;
    let k = h2.kernel.model();
    assert!(k.journal[from..].contains(&"reap".to_string()));
    assert!(!k.links.values().any(|l| l.group == RETIRED_LINK_GROUP), "{:?}", k.links);
    // The container's default-bridge veth stays.
    assert_eq!(k.ports_of("cove0").len(), 1);
}

#[tokio::test]
async fn restart_removes_an_orphan_bridge_of_cove_but_not_one_of_another_group() {
    let h = host().await;
    {
        let mut k = h.kernel.model();
        k.links.insert("br-deadbeef0000".into(), link("bridge", OWNED_LINK_GROUP, None));
        k.links.insert("br-foreign".into(), link("bridge", 0, None));
        k.links.insert("cove1".into(), link("bridge", 7, None));
    }
    let (h2, _) = restart(&h).await;
    let k = h2.kernel.model();
    assert!(!k.links.contains_key("br-deadbeef0000"));
    assert!(k.links.contains_key("br-foreign") && k.links.contains_key("cove1"));
}

// ---- built-in networks and the daemon's flags ------------------------------------------------

#[tokio::test]
async fn restart_does_not_duplicate_the_builtin_networks() {
    let h = with_app().await;
    let before = networks(&h);
    let (h2, from) = restart(&h).await;
    let (h3, _) = restart(&h2).await;
    let after = networks(&h3);
    assert_eq!(after.len(), 4);
    let ids =
        |v: &[NetworkRecord]| v.iter().map(|n| (n.id.clone(), n.name.clone())).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before));
    assert_eq!(h3.ctl.network_list().await.len(), 4);
    assert!(!journal_since(&h3, from).iter().any(|l| l.contains("create bridge")));
}

#[tokio::test]
async fn a_changed_icc_flag_is_applied_to_the_existing_default_bridge() {
    let h = host().await;
    let before = h.ctl.network_get("bridge").await.unwrap().record;
    let mut cfg = h.cfg.clone();
    cfg.icc = false;
    let h2 = h.restart_with(cfg).await.unwrap();
    let after = h2.ctl.network_get("bridge").await.unwrap().record;
    assert_eq!(after.id, before.id, "the default bridge was replaced");
    assert_eq!(after.ipam, before.ipam);
    assert_eq!(after.options["com.docker.network.bridge.enable_icc"], "false");
    let DriverConfig::Bridge(b) = &after.config else { panic!() };
    assert!(!b.enable_icc);
    assert_eq!(b.name, "cove0");
    let stored = h2.store.get::<NetworkRecord>(Table::Networks, &after.id).unwrap().unwrap();
    assert_eq!(stored, after, "the change was not stored");
    // And back.
    let h3 = h2.restart().await.unwrap();
    assert_eq!(
        h3.ctl.network_get("bridge").await.unwrap().record.options
            ["com.docker.network.bridge.enable_icc"],
        "false"
    );
    let mut cfg = h.cfg.clone();
    cfg.icc = true;
    let h4 = h.restart_with(cfg).await.unwrap();
    let back = h4.ctl.network_get("bridge").await.unwrap().record;
    assert_eq!(back.options["com.docker.network.bridge.enable_icc"], "true");
}

#[tokio::test]
async fn a_changed_bip_keeps_the_existing_default_bridges_subnet() {
    let h = host().await;
    let before = h.ctl.network_get("bridge").await.unwrap().record;
    let mut cfg = h.cfg.clone();
    cfg.bip = Some("10.7.0.1/16".parse().unwrap());
    let h2 = h.restart_with(cfg).await.unwrap();
    let after = h2.ctl.network_get("bridge").await.unwrap().record;
    assert_eq!(after.ipam, before.ipam);
    assert!(!h2.kernel.model().addresses.iter().any(|(_, a)| a.to_string() == "10.7.0.1/16"));
}

// ---- records and IPAM ------------------------------------------------------------------------

#[tokio::test]
async fn records_survive_a_restart() {
    let h = with_app().await;
    let mut labelled = net("lab", Some("10.2.0.0/24"));
    labelled.labels.insert("k".into(), "v".into());
    h.ctl.network_create(labelled).await.unwrap();
    let a = run(
        &h,
        ctr_on("a", "app", EndpointSettings { aliases: vec!["web".into()], ..Default::default() }),
    )
    .await;
    let b = h.ctl.container_create(ctr("b", "lab")).await.unwrap();
    let (nets, eps) = (networks(&h), stored_endpoints(&h));
    let (h2, _) = restart(&h).await;
    assert_eq!(networks(&h2), nets);
    assert_eq!(stored_endpoints(&h2), eps);
    assert_eq!(h2.ctl.network_get("lab").await.unwrap().record.labels["k"], "v");
    assert_eq!(container(&h2, &a).state.status, Status::Running);
    assert_eq!(container(&h2, &b).state.status, Status::Created);
    assert_eq!(endpoint(&h2, "a", "app").await.aliases, ["web"]);
    let view = h2.ctl.network_get("app").await.unwrap();
    assert_eq!(view.endpoints.len(), 1);
    assert_eq!(view.endpoints[0].1, "a");
}

#[tokio::test]
async fn ipam_is_rebuilt_from_the_endpoint_records() {
    let h = with_app().await;
    run(&h, ctr("a", "app")).await;
    let (h2, _) = restart(&h).await;
    run(&h2, ctr("b", "app")).await;
    assert_eq!(v4(&endpoint(&h2, "a", "app").await), "10.1.0.2");
    assert_eq!(
        v4(&endpoint(&h2, "b", "app").await),
        "10.1.0.3",
        "a's address was handed out again"
    );
}

#[tokio::test]
async fn a_running_containers_static_address_stays_taken_after_restart() {
    let h = with_app().await;
    run(&h, ctr_on("a", "app", ip4("10.1.0.40"))).await;
    let (h2, _) = restart(&h).await;
    let b = h2.ctl.container_create(ctr_on("b", "app", ip4("10.1.0.40"))).await.unwrap();
    let e = h2.ctl.container_start(&b).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
}

#[tokio::test]
async fn a_stopped_containers_address_is_free_after_restart() {
    let h = with_app().await;
    run(&h, ctr("a", "app")).await;
    h.ctl.container_stop("a", Some(1)).await.unwrap();
    let (h2, _) = restart(&h).await;
    run(&h2, ctr("b", "app")).await;
    assert_eq!(v4(&endpoint(&h2, "b", "app").await), "10.1.0.2");
}

#[tokio::test]
async fn stale_endpoints_of_containers_that_are_gone_are_removed() {
    let h = with_app().await;
    let app = h.ctl.network_get("app").await.unwrap().record.id;
    let stale = stale_endpoint(&h, &app, &"f".repeat(64), "10.1.0.2");
    let b = bridge_of(&h, "app").await;
    let veth = stale.host_ifname.clone().unwrap();
    h.kernel.model().links.insert(veth.clone(), link("veth", OWNED_LINK_GROUP, Some(&b)));
    let (h2, _) = restart(&h).await;
    assert!(!stored_endpoints(&h2).iter().any(|e| e.id == stale.id), "the stale endpoint stayed");
    assert!(!h2.kernel.model().links.contains_key(&veth), "its veth stayed");
    assert!(h2.ctl.network_get("app").await.unwrap().endpoints.is_empty());
    // Its address is free again.
    run(&h2, ctr("c", "app")).await;
    assert_eq!(v4(&endpoint(&h2, "c", "app").await), "10.1.0.2");
    // And the network can go.
    h2.ctl.container_remove("c", true).await.unwrap();
    h2.ctl.network_remove("app").await.unwrap();
}

#[tokio::test]
async fn endpoints_left_by_an_interrupted_start_are_released() {
    let h = with_app().await;
    let app = h.ctl.network_get("app").await.unwrap().record.id;
    let c = h.ctl.container_create(ctr("c", "app")).await.unwrap();
    let stale = stale_endpoint(&h, &app, &c, "10.1.0.2");
    let (h2, _) = restart(&h).await;
    assert!(!stored_endpoints(&h2).iter().any(|e| e.id == stale.id));
    h2.ctl.container_start(&c).await.unwrap();
    assert_eq!(v4(&endpoint(&h2, "c", "app").await), "10.1.0.2");
}

#[tokio::test]
async fn a_container_that_died_while_the_daemon_was_down_is_cleaned_up() {
    let h = with_app().await;
    let a = run(&h, ctr("a", "app")).await;
    let b = bridge_of(&h, "app").await;
    // The process ended unseen (no exit notification for the old daemon).
    h.runtime.model().processes.insert(a.clone(), FakeProcess::Exited(137));
    let (h2, _) = restart(&h).await;
    let rec = container(&h2, &a);
    assert_eq!(rec.state.status, Status::Exited);
    assert_eq!(rec.state.exit_code, 137);
    assert!(rec.state.sandbox_key.is_empty());
    assert!(stored_endpoints(&h2).is_empty());
    let k = h2.kernel.model();
    assert!(k.netns.is_empty(), "{:?}", k.netns);
    assert!(k.ports_of(&b).is_empty(), "its veth stayed");
    assert!(!k.neighbours.iter().any(|(ns, l, _)| ns == "host" && *l == b), "{:?}", k.neighbours);
}

#[tokio::test]
async fn a_running_container_keeps_its_sandbox_veth_and_ports_across_restart() {
    let h = with_app().await;
    let mut req = ctr("a", "app");
    req.host_config.port_bindings.push(cove_model::PortBinding {
        container_port: 80,
        protocol: cove_model::Proto::Tcp,
        host_ip: None,
        host_port: 8080,
    });
    let a = run(&h, req).await;
    let veth = endpoint(&h, "a", "app").await.host_ifname.unwrap();
    let (netns, pid) = (h.kernel.model().netns.clone(), container(&h, &a).state.pid);
    // The old daemon's sockets went with it.
    h.kernel.release_ports(&a);
    let (h2, from) = restart(&h).await;
    let rec = container(&h2, &a);
    assert_eq!(rec.state.status, Status::Running);
    assert_eq!(rec.state.pid, pid);
    let k = h2.kernel.model();
    assert_eq!(k.netns, netns);
    assert!(k.links.contains_key(&veth));
    assert!(
        !k.journal[from..].iter().any(|l| l.contains("create veth")
            || l.contains("create netns")
            || l.contains("remove netns")),
        "{:?}",
        &k.journal[from..]
    );
    assert_eq!(k.ports[&a].len(), 1, "its published port is held again");
    assert_eq!(k.ports[&a][0].host_port, 8080);
}

#[tokio::test]
async fn restart_writes_the_whole_firewall_once() {
    let h = with_app().await;
    run(&h, ctr("a", "app")).await;
    let rulesets = h.firewall.log().rulesets.len();
    let (h2, _) = restart(&h).await;
    let fw = h2.firewall.log();
    assert_eq!(fw.rulesets.len(), rulesets + 1);
    let last = fw.rulesets.last().unwrap();
    assert!(last.contains("10.1.0.0/24"), "the network is in the ruleset");
    assert!(last.contains("10.1.0.2"), "the endpoint is in the ruleset");
}

// ---- the timer's rounds -------------------------------------------------------------------

#[tokio::test]
async fn a_timer_round_repairs_a_bridge_deleted_by_hand() {
    let h = with_app().await;
    let b = bridge_of(&h, "app").await;
    {
        let mut k = h.kernel.model();
        k.links.remove(&b);
        k.addresses.retain(|(l, _)| *l != b);
    }
    let repaired = h.ctl.reconcile_tick().await.unwrap();
    assert!(repaired.is_some_and(|n| n > 0), "{repaired:?}");
    let k = h.kernel.model();
    assert!(k.links.contains_key(&b));
    assert!(k.addresses.contains(&(b, "10.1.0.1/24".parse().unwrap())));
}

#[tokio::test]
async fn a_timer_round_on_a_healthy_host_does_nothing() {
    let h = with_app().await;
    run(&h, ctr("c1", "app")).await;
    let from = h.kernel.model().journal.len();
    assert_eq!(h.ctl.reconcile_tick().await.unwrap(), Some(0));
    let j = journal_since(&h, from);
    assert!(j.iter().all(|l| !l.starts_with("teardown") && !l.starts_with("apply")), "{j:?}");
}

#[tokio::test]
async fn a_timer_round_skips_when_the_records_change_while_it_observes() {
    let h = with_app().await;
    let b = bridge_of(&h, "app").await;
    // The bridge is missing when observed; a network is created meanwhile (its own
    // bridge would be an orphan to the stale desired state).
    {
        let mut k = h.kernel.model();
        k.links.remove(&b);
        k.addresses.retain(|(l, _)| *l != b);
    }
    let store = h.store.clone();
    h.kernel.after_next_observe(move || {
        let mut batch = Batch::new();
        batch.put(Table::Containers, "written-meanwhile", &"x");
        store.commit(batch).unwrap();
    });
    assert_eq!(h.ctl.reconcile_tick().await.unwrap(), None, "the round must be skipped");
    assert!(!h.kernel.model().links.contains_key(&b), "nothing was repaired");
    // The next round, on a quiet host, repairs.
    assert!(h.ctl.reconcile_tick().await.unwrap().is_some_and(|n| n > 0));
    assert!(h.kernel.model().links.contains_key(&b));
}

#[tokio::test]
async fn a_bridge_deleted_by_hand_comes_back_without_waiting_for_the_timer() {
    // A timer that never fires within the test: only the removal can trigger the round.
    let h = super::host_with(|c| c.reconcile_interval = std::time::Duration::from_secs(3600)).await;
    h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    let b = bridge_of(&h, "app").await;
    h.kernel.delete_by_hand(&b);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !h.kernel.model().links.contains_key(&b) {
        assert!(std::time::Instant::now() < deadline, "the bridge did not come back");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(h.kernel.model().addresses.contains(&(b, "10.1.0.1/24".parse().unwrap())));
}
