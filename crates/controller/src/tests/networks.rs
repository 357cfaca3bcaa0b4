//! Network create, remove, connect and disconnect on fakes.

use cove_drivers::plan::{OWNED_LINK_GROUP, RETIRED_LINK_GROUP};
use cove_model::{DriverConfig, ErrorKind};
use cove_store::Table;

use super::{ctr, host, net};

#[tokio::test]
async fn start_creates_the_builtin_networks_and_the_default_bridge() {
    let h = host().await;
    let names: Vec<String> =
        h.ctl.network_list().await.into_iter().map(|v| v.record.name).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in ["bridge", "host", "none"] {
        assert!(names.iter().any(|x| x == n), "{n} missing: {names:?}");
    }
    let k = h.kernel.model();
    assert_eq!(k.owned_links(), ["cove0"], "one bridge, in Cove's group");
    assert!(k.links["cove0"].up);
    assert!(k.journal.iter().any(|l| l.starts_with("apply add address 172.17.0.1/16 to cove0")));
    // Forwarding is turned on through the executor, and the firewall written whole.
    assert_eq!(k.sysctls.get("net/ipv4/ip_forward").map(String::as_str), Some("1"));
    drop(k);
    assert_eq!(h.firewall.log().rulesets.len(), 1);
}

#[tokio::test]
async fn network_create_stores_the_record_then_creates_the_bridge() {
    let h = host().await;
    let id = h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    let rec = h.store.get::<cove_model::NetworkRecord>(Table::Networks, &id).unwrap().unwrap();
    let DriverConfig::Bridge(b) = &rec.config else { panic!("not a bridge: {rec:?}") };
    assert_eq!(b.name, format!("br-{}", &id[..12]));
    let k = h.kernel.model();
    assert_eq!(k.links[&b.name].group, OWNED_LINK_GROUP);
    assert!(k.addresses.contains(&(b.name.clone(), "10.1.0.1/24".parse().unwrap())));
    // The firewall learns the network as an element delta, not a whole ruleset.
    drop(k);
    let fw = h.firewall.log();
    assert_eq!(fw.rulesets.len(), 1, "only the start's ruleset");
    assert!(fw.deltas.iter().any(|d| d.contains("10.1.0.0/24")), "{:?}", fw.deltas);
}

#[tokio::test]
async fn a_refused_bridge_leaves_no_record_and_no_link() {
    let h = host().await;
    h.kernel.fail_on("add address 10.2.0.1/24");
    let e = h.ctl.network_create(net("bad", Some("10.2.0.0/24"))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert!(e.message.contains("create network bad"), "{}", e.message);
    assert_eq!(h.store.list::<cove_model::NetworkRecord>(Table::Networks).unwrap().len(), 3);
    let k = h.kernel.model();
    assert_eq!(k.owned_links(), ["cove0"], "the new bridge was rolled back");
    assert!(k.journal.iter().any(|l| l.starts_with("rollback delete link br-")), "{:?}", k.journal);
}

#[tokio::test]
async fn a_bridge_name_taken_on_the_host_is_a_conflict_before_anything_is_written() {
    let h = host().await;
    h.kernel.model().links.insert(
        "taken0".into(),
        crate::fake::FakeLink {
            kind: "bridge",
            group: 0,
            master: None,
            peer_netns: None,
            up: true,
        },
    );
    let mut req = net("t", None);
    req.options.insert("com.docker.network.bridge.name".into(), "taken0".into());
    let journal_before = h.kernel.model().journal.len();
    let e = h.ctl.network_create(req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert_eq!(
        e.message,
        "bridge name taken0 is already used by an existing interface on the host"
    );
    // Nothing changed but a reap of condemned links (a removed network's bridge of that
    // name would have been deleted by it).
    let k = h.kernel.model();
    assert_eq!(k.journal[journal_before..], ["reap".to_string()], "a kernel change");
    drop(k);
    assert_eq!(h.store.list::<cove_model::NetworkRecord>(Table::Networks).unwrap().len(), 3);
}

#[tokio::test]
async fn a_removed_networks_bridge_name_is_free_at_once_for_a_new_network() {
    let h = host().await;
    let mut req = net("first", Some("10.8.0.0/24"));
    req.options.insert("com.docker.network.bridge.name".into(), "mine0".into());
    h.ctl.network_create(req.clone()).await.unwrap();
    h.ctl.network_remove("first").await.unwrap();
    // The bridge is condemned, not yet deleted: the new network's claim reaps it.
    assert_eq!(h.kernel.model().links["mine0"].group, RETIRED_LINK_GROUP);
    req.name = "second".into();
    h.ctl.network_create(req).await.expect("the name of a removed network's bridge");
    assert_eq!(h.kernel.model().links["mine0"].group, OWNED_LINK_GROUP);
}

#[tokio::test]
async fn disconnect_condemns_the_veth_and_the_reaper_takes_it() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.3.0.0/24"))).await.unwrap();
    let id = h.ctl.container_create(ctr("c1", "bridge")).await.unwrap();
    h.ctl.container_start(&id).await.unwrap();
    let links_before = h.kernel.model().links.len();
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    assert_eq!(h.kernel.model().links.len(), links_before + 1);
    h.ctl.network_disconnect("app", "c1", false).await.unwrap();
    {
        let k = h.kernel.model();
        let condemned: Vec<_> =
            k.links.iter().filter(|(_, l)| l.group == RETIRED_LINK_GROUP).collect();
        assert_eq!(condemned.len(), 1, "{:?}", k.links);
        assert!(k.journal.iter().any(|l| l.starts_with("teardown retire eth1 as x")));
    }
    h.ctl.kernel.reap_condemned().await.unwrap();
    assert_eq!(h.kernel.model().links.len(), links_before);
}

#[tokio::test]
async fn restart_removes_links_of_cove_that_no_record_owns_and_keeps_look_alikes() {
    let h = host().await;
    {
        let mut k = h.kernel.model();
        for (name, group) in
            [("br-0123456789ab", OWNED_LINK_GROUP), ("br-look", 0), ("cvold", RETIRED_LINK_GROUP)]
        {
            k.links.insert(
                name.into(),
                crate::fake::FakeLink {
                    kind: "bridge",
                    group,
                    master: None,
                    peer_netns: None,
                    up: true,
                },
            );
        }
    }
    let h2 = h.restart().await.unwrap();
    let k = h2.kernel.model();
    assert!(!k.links.contains_key("br-0123456789ab"), "an orphan of Cove's survived");
    assert!(!k.links.contains_key("cvold"), "a condemned link survived");
    assert!(k.links.contains_key("br-look"), "a look-alike was removed");
    assert!(k.links.contains_key("cove0"), "the default bridge went");
}

#[tokio::test]
async fn without_the_firewall_nothing_is_written_to_it_and_ports_are_refused() {
    let h = super::host_with(|c| c.firewall = false).await;
    h.ctl.network_create(net("app", Some("10.4.0.0/24"))).await.unwrap();
    {
        let fw = h.firewall.log();
        assert!(fw.rulesets.is_empty() && fw.deltas.is_empty(), "{fw:?}");
    }
    let mut req = ctr("c1", "app");
    req.host_config.port_bindings.push(cove_model::PortBinding {
        container_port: 80,
        protocol: cove_model::Proto::Tcp,
        host_ip: None,
        host_port: 8080,
    });
    let e = h.ctl.container_create(req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("--iptables=false"), "{}", e.message);
}

#[tokio::test]
async fn a_static_address_is_kept_and_a_taken_one_refused() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.5.0.0/24"))).await.unwrap();
    let s = cove_model::EndpointSettings {
        ipv4_address: Some("10.5.0.9".parse().unwrap()),
        ..Default::default()
    };
    let a = h.ctl.container_create(super::ctr_on("a", "app", s.clone())).await.unwrap();
    h.ctl.container_start(&a).await.unwrap();
    let v = h.ctl.container_get("a").await.unwrap();
    let ep = v.networks[0].1.clone().expect("endpoint while running");
    assert_eq!(ep.ipv4.unwrap().to_string(), "10.5.0.9/24");
    let b = h.ctl.container_create(super::ctr_on("b", "app", s)).await.unwrap();
    let e = h.ctl.container_start(&b).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    assert!(!h.runtime.running(&b), "the refused container was started");
    assert!(h.kernel.model().netns.len() == 1, "the refused start left a sandbox");
}

#[tokio::test]
async fn an_endpoints_addresses_are_reserved_in_the_store_with_it_and_freed_with_it() {
    let h = host().await;
    let net_id = h.ctl.network_create(net("app", Some("10.6.0.0/24"))).await.unwrap();
    let id = h.ctl.container_create(ctr("c1", "app")).await.unwrap();
    h.ctl.container_start(&id).await.unwrap();
    let ep = h.ctl.container_get(&id).await.unwrap().networks[0].1.clone().unwrap();
    let key = format!("{net_id}/{}", ep.ipv4.unwrap().addr());
    let holder: Option<String> = h.store.get(Table::Ipam, &key).unwrap();
    assert_eq!(holder.as_deref(), Some(ep.id.as_str()), "the address key names its endpoint");
    h.ctl.container_stop(&id, Some(1)).await.unwrap();
    assert_eq!(h.store.get::<String>(Table::Ipam, &key).unwrap(), None, "not freed");
}

#[tokio::test]
async fn an_address_another_writer_holds_in_the_store_is_refused_and_nothing_is_left() {
    let h = host().await;
    let net_id = h.ctl.network_create(net("app", Some("10.7.0.0/24"))).await.unwrap();
    // Another host of a shared store took 10.7.0.2 (the in-memory pool does not know).
    let mut b = cove_store::Batch::new();
    b.put(Table::Ipam, &format!("{net_id}/10.7.0.2"), &"elsewhere");
    h.store.commit(b).unwrap();
    let id = h.ctl.container_create(ctr("c1", "app")).await.unwrap();
    let e = h.ctl.container_start(&id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    assert!(e.message.contains("10.7.0.2"), "{}", e.message);
    assert!(h.kernel.model().netns.is_empty(), "a sandbox was left");
    assert!(h.store.list::<cove_model::EndpointRecord>(Table::Endpoints).unwrap().is_empty());
    assert_eq!(
        h.store.get::<String>(Table::Ipam, &format!("{net_id}/10.7.0.2")).unwrap().as_deref(),
        Some("elsewhere")
    );
}
