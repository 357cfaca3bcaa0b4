//! Hosts of one cluster on fakes: two controllers share one in-memory cluster store, as
//! real hosts share etcd. Global networks appear on every host, endpoints reserve their
//! addresses cluster-wide, and each host programs the other's endpoints as peers.

use cove_drivers::Underlay;
use cove_model::{ClusterEndpoint, ErrorKind, MacAddr, NetworkRecord, NodeRecord};
use std::sync::Arc;

use cove_store::{Batch, MemStore, Records, Table};

use super::{cfg, ctr, net};
use crate::fake::FakeHost;
use crate::{ClusterSeam, NetworkCreate};

/// Host `n` of a cluster whose store is `cluster`, at 203.0.113.1n.
pub(crate) fn seam(cluster: &(Records, Arc<MemStore>), n: u8) -> ClusterSeam {
    let advertise = format!("203.0.113.1{n}").parse().unwrap();
    ClusterSeam {
        store: cluster.0.clone(),
        url: "etcd://203.0.113.2:2379".into(),
        leases: Some(cluster.1.clone()),
        node: NodeRecord {
            id: format!("node{n}"),
            hostname: format!("h{n}"),
            advertise,
            lease: None,
            labels: Default::default(),
            tunnel: None,
        },
        underlay: Underlay { advertise, mtu: 1500, port: 4789, tunnel: None },
        encryption: None,
    }
}

async fn two_hosts() -> (Records, FakeHost, FakeHost) {
    let mem = Arc::new(MemStore::new());
    let cluster = (Records::new(mem.clone()), mem);
    let h1 = FakeHost::start_in_cluster(cfg(), seam(&cluster, 1)).await.unwrap();
    let h2 = FakeHost::start_in_cluster(cfg(), seam(&cluster, 2)).await.unwrap();
    (cluster.0, h1, h2)
}

fn overlay(name: &str, subnet: &str) -> NetworkCreate {
    NetworkCreate { driver: "overlay".into(), ..net(name, Some(subnet)) }
}

async fn round(h: &FakeHost) {
    h.ctl.cluster_round().await.unwrap();
}

fn vxlan_of(h: &FakeHost, network: &str) -> String {
    let nets = h.store.list::<NetworkRecord>(Table::Networks).unwrap();
    let n = nets.iter().find(|(_, n)| n.name == network).expect("network mirrored").1.clone();
    match n.config {
        cove_model::DriverConfig::Overlay(o) => o.vxlan,
        other => panic!("{other:?}"),
    }
}

async fn mac_of(h: &FakeHost, container: &str) -> (MacAddr, String) {
    let v = h.ctl.container_get(container).await.unwrap();
    let ep = v.networks[0].1.as_ref().expect("running: an endpoint");
    (ep.mac, ep.ipv4.unwrap().addr().to_string())
}

#[tokio::test]
async fn a_global_network_appears_on_every_host_with_its_datapath() {
    let (cluster, h1, h2) = two_hosts().await;
    let id = h1.ctl.network_create(overlay("ov1", "10.0.9.0/24")).await.unwrap();
    // The cluster has it, its name, its VXLAN id and its subnet.
    assert_eq!(
        cluster.get::<String>(Table::NetworkNames, "ov1").unwrap().as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        cluster.get::<String>(Table::Segments, "4096").unwrap().as_deref(),
        Some(id.as_str())
    );
    assert!(cluster.get::<String>(Table::Pools, "10.0.9.0/24").unwrap().is_some());
    // h2 follows.
    round(&h2).await;
    let v = h2.ctl.network_get("ov1").await.unwrap();
    assert_eq!(v.record.id, id);
    let vx = vxlan_of(&h2, "ov1");
    {
        let k = h2.kernel.model();
        assert!(k.links.contains_key(&vx), "{:?}", k.owned_links());
        assert_eq!(k.links[&vx].master.as_deref(), Some(&*vx.replace("vx-", "ov-")));
        assert!(
            k.journal
                .iter()
                .any(|l| l.contains(&vx) && l.contains("4096") && l.contains("203.0.113.12")),
            "{:?}",
            k.journal
        );
    }
    // The same name on another host is taken, cluster-wide.
    let e = h2.ctl.network_create(overlay("ov1", "10.0.10.0/24")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{}", e.message);
    // So is the subnet (Docker's 403 for an overlapping pool).
    let e = h2.ctl.network_create(overlay("ov2", "10.0.9.0/24")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden, "{}", e.message);
    assert!(e.message.contains("overlaps 10.0.9.0/24 of network ov1"), "{}", e.message);
    assert!(cluster.get::<String>(Table::NetworkNames, "ov2").unwrap().is_none(), "nothing of ov2");
}

#[tokio::test]
async fn endpoints_take_distinct_addresses_and_become_each_others_peers() {
    let (cluster, h1, h2) = two_hosts().await;
    h1.ctl.network_create(overlay("ov1", "10.0.9.0/24")).await.unwrap();
    round(&h2).await;
    super::run(&h1, ctr("c1", "ov1")).await;
    super::run(&h2, ctr("c2", "ov1")).await;
    let (mac1, ip1) = mac_of(&h1, "c1").await;
    let (mac2, ip2) = mac_of(&h2, "c2").await;
    assert_ne!(ip1, ip2, "both hosts started from the lowest free address");
    let eps = cluster.list::<ClusterEndpoint>(Table::Endpoints).unwrap();
    assert_eq!(eps.len(), 2);
    assert!(cluster
        .get::<String>(Table::Ipam, &format!("{}/{ip2}", eps[0].1.endpoint.network_id))
        .unwrap()
        .is_some());
    round(&h1).await;
    round(&h2).await;
    let vx = vxlan_of(&h1, "ov1");
    {
        let k1 = h1.kernel.model();
        assert_eq!(
            k1.fdb_self.get(&(vx.clone(), mac2)).map(|a| a.to_string()).as_deref(),
            Some("203.0.113.12")
        );
        assert!(k1.fdb_master.contains(&(vx.clone(), mac2)));
        assert!(!k1.fdb_self.contains_key(&(vx.clone(), mac1)), "a local endpoint is no peer");
        let k2 = h2.kernel.model();
        assert_eq!(
            k2.fdb_self.get(&(vx.clone(), mac1)).map(|a| a.to_string()).as_deref(),
            Some("203.0.113.11")
        );
    }
    // c2 goes: its addresses and record leave the cluster, and h1 forgets it.
    h2.ctl.container_remove("c2", true).await.unwrap();
    round(&h2).await;
    assert_eq!(cluster.list::<ClusterEndpoint>(Table::Endpoints).unwrap().len(), 1);
    assert!(cluster
        .get::<String>(Table::Ipam, &format!("{}/{ip2}", eps[0].1.endpoint.network_id))
        .unwrap()
        .is_none());
    round(&h1).await;
    let k1 = h1.kernel.model();
    assert!(!k1.fdb_self.contains_key(&(vx.clone(), mac2)), "{:?}", k1.fdb_self);
    assert!(!k1.fdb_master.contains(&(vx, mac2)));
}

#[tokio::test]
async fn a_global_network_with_endpoints_anywhere_cannot_be_removed_and_goes_everywhere_after() {
    let (cluster, h1, h2) = two_hosts().await;
    h1.ctl.network_create(overlay("ov1", "10.0.9.0/24")).await.unwrap();
    round(&h2).await;
    super::run(&h2, ctr("c2", "ov1")).await;
    let e = h1.ctl.network_remove("ov1").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.contains("c2 on h2"), "{}", e.message);
    h2.ctl.container_remove("c2", true).await.unwrap();
    round(&h2).await;
    h1.ctl.network_remove("ov1").await.unwrap();
    for table in [Table::Networks, Table::NetworkNames, Table::Segments, Table::Pools, Table::Ipam]
    {
        assert!(cluster.store().range(&table.prefix()).unwrap().kvs.is_empty(), "{table:?} left");
    }
    let vx = vxlan_of(&h2, "ov1");
    round(&h2).await;
    assert!(h2.ctl.network_get("ov1").await.is_err());
    let k = h2.kernel.model();
    assert!(!k.owned_links().contains(&vx), "{:?}", k.owned_links());
}

#[tokio::test]
async fn overlay_networks_need_a_cluster() {
    let h = super::host().await;
    let e = h.ctl.network_create(overlay("ov1", "10.0.9.0/24")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("--cluster-store"), "{}", e.message);
}

#[tokio::test]
async fn a_node_that_is_down_keeps_its_peers_until_it_is_removed() {
    let (cluster, h1, h2) = two_hosts().await;
    h1.ctl.network_create(overlay("ov1", "10.0.9.0/24")).await.unwrap();
    round(&h2).await;
    super::run(&h2, ctr("c2", "ov1")).await;
    round(&h1).await;
    let nodes = h1.ctl.node_list().await.unwrap();
    assert_eq!(nodes.iter().filter(|n| n.up).count(), 2, "{nodes:?}");
    let e = h1.ctl.node_remove("h2").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{}", e.message);
    // h2's liveness lapses (its lease expired): down, but its container is still reachable.
    let mut b = Batch::new();
    b.delete(Table::Nodes, "node2");
    cluster.commit(b).unwrap();
    round(&h1).await;
    let nodes = h1.ctl.node_list().await.unwrap();
    let h2n = nodes.iter().find(|n| n.node.hostname == "h2").unwrap();
    assert!(!h2n.up && !h2n.this);
    let vx = vxlan_of(&h1, "ov1");
    let (mac2, _) = mac_of(&h2, "c2").await;
    assert!(h1.kernel.model().fdb_self.contains_key(&(vx.clone(), mac2)), "the data plane stays");
    // Removed for good: its endpoint and addresses leave the cluster, h1 drops the peer.
    h1.ctl.node_remove("h2").await.unwrap();
    assert!(cluster.list::<ClusterEndpoint>(Table::Endpoints).unwrap().is_empty());
    assert!(cluster.store().range("ipam/").unwrap().kvs.is_empty());
    round(&h1).await;
    assert!(!h1.kernel.model().fdb_self.contains_key(&(vx, mac2)));
    assert_eq!(h1.ctl.node_list().await.unwrap().len(), 1);
    assert_eq!(h1.ctl.node_remove("h2").await.unwrap_err().kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn overlay_networks_without_a_subnet_take_tens_from_the_global_pool() {
    let (cluster, h1, h2) = two_hosts().await;
    let a = NetworkCreate { driver: "overlay".into(), ..net("a", None) };
    h1.ctl.network_create(a).await.unwrap();
    round(&h2).await;
    let b = NetworkCreate { driver: "overlay".into(), ..net("b", None) };
    h2.ctl.network_create(b).await.unwrap();
    let pools: Vec<String> = cluster
        .store()
        .range("pools/")
        .unwrap()
        .kvs
        .iter()
        .map(|kv| kv.key["pools/".len()..].to_string())
        .collect();
    assert_eq!(pools, ["10.0.0.0/24", "10.0.1.0/24"], "distinct /24s of 10.0.0.0/8");
    // A bridge network keeps the local pools.
    let id = h1.ctl.network_create(net("local", None)).await.unwrap();
    let v = h1.ctl.network_get(&id).await.unwrap();
    assert!(v.record.ipam[0].subnet.to_string().starts_with("172."), "{:?}", v.record.ipam);
}

#[tokio::test]
async fn a_network_the_underlay_cannot_carry_refuses_endpoints_and_holds_up_nothing_else() {
    let mem = Arc::new(MemStore::new());
    let cluster = (Records::new(mem.clone()), mem);
    let h1 = FakeHost::start_in_cluster(cfg(), seam(&cluster, 1)).await.unwrap();
    let mut small = seam(&cluster, 2);
    small.underlay.mtu = 1400;
    let h2 = FakeHost::start_in_cluster(cfg(), small).await.unwrap();
    // MTU 1450, made on h1's 1500 underlay: more than h2's 1400 can carry.
    h1.ctl.network_create(overlay("big", "10.0.9.0/24")).await.unwrap();
    round(&h2).await;
    let vx = vxlan_of(&h2, "big");
    assert!(!h2.kernel.model().links.contains_key(&vx), "a datapath h2 cannot carry");
    // Its endpoints are refused before anything is reserved, naming both MTUs.
    let id = h2.ctl.container_create(ctr("c2", "big")).await.unwrap();
    let e = h2.ctl.container_start(&id).await.unwrap_err();
    assert!(e.message.contains("1450") && e.message.contains("1400"), "{}", e.message);
    assert!(cluster.0.list::<ClusterEndpoint>(Table::Endpoints).unwrap().is_empty());
    // Everything else on h2 goes on: a network it can carry, its peers, its restart.
    h2.ctl.network_create(overlay("small", "10.0.8.0/24")).await.unwrap();
    round(&h1).await;
    super::run(&h1, ctr("c1", "small")).await;
    round(&h2).await;
    let (mac1, _) = mac_of(&h1, "c1").await;
    let small_vx = vxlan_of(&h2, "small");
    assert!(h2.kernel.model().fdb_self.contains_key(&(small_vx.clone(), mac1)));
    let h2 = h2.restart().await.expect("h2 starts with a network it cannot carry");
    assert!(h2.kernel.model().fdb_self.contains_key(&(small_vx, mac1)));
    assert!(!h2.kernel.model().links.contains_key(&vx));
}

/// h2 is cut off and removed (`node rm` on h1); h1 reuses its container's addresses, both
/// families. When h2 comes back, it does not publish its endpoint over h1's: the addresses
/// stay h1's in the cluster, and h2's container keeps running on its own host.
#[tokio::test]
async fn a_removed_node_that_comes_back_cannot_take_back_addresses_given_away() {
    let (cluster, h1, h2) = two_hosts().await;
    let mut create = overlay("ov1", "10.0.9.0/29");
    create.enable_ipv6 = true;
    create.ipam_config.push(crate::IpamConfigRequest {
        subnet: Some("fd00:9::/125".parse().unwrap()),
        ..Default::default()
    });
    h1.ctl.network_create(create).await.unwrap();
    round(&h2).await;
    super::run(&h2, ctr("c2", "ov1")).await;
    let v = h2.ctl.container_get("c2").await.unwrap();
    let ep2 = v.networks[0].1.clone().expect("an endpoint");
    let (v4, v6) = (ep2.ipv4.unwrap().addr(), ep2.ipv6.expect("dual stack").addr());
    round(&h1).await;

    // h2 goes down and is removed: h1 frees both of its addresses, and takes them.
    let mut b = Batch::new();
    b.delete(Table::Nodes, "node2");
    cluster.commit(b).unwrap();
    h1.ctl.node_remove("h2").await.unwrap();
    round(&h1).await;
    let mut mine = None;
    for i in 0..5 {
        let name = format!("a{i}");
        super::run(&h1, ctr(&name, "ov1")).await;
        let ep = h1.ctl.container_get(&name).await.unwrap().networks[0].1.clone().unwrap();
        if ep.ipv4.unwrap().addr() == v4 {
            assert_eq!(ep.ipv6.unwrap().addr(), v6, "the IPv6 address was freed with the IPv4 one");
            mine = Some(ep);
            break;
        }
    }
    let mine = mine.expect("h1 was never given h2's old address");
    let key4 = format!("{}/{v4}", ep2.network_id);
    let key6 = format!("{}/{v6}", ep2.network_id);
    let holder = |k: &str| cluster.get::<cove_model::EndpointId>(Table::Ipam, k).unwrap();
    assert_eq!(holder(&key4), Some(mine.id.clone()));

    // h2 is back: its endpoint is missing from the cluster, but its addresses are taken.
    round(&h2).await;
    round(&h2).await;
    assert_eq!(holder(&key4), Some(mine.id.clone()), "h2 took h1's IPv4 address");
    assert_eq!(holder(&key6), Some(mine.id.clone()), "h2 took h1's IPv6 address");
    let eps = cluster.list::<ClusterEndpoint>(Table::Endpoints).unwrap();
    assert!(eps.iter().all(|(_, e)| e.endpoint.id != ep2.id), "h2's endpoint published: {eps:?}");
    assert!(h2.ctl.container_get("c2").await.unwrap().networks[0].1.is_some(), "c2 still runs");
}

#[tokio::test]
async fn an_address_another_host_took_first_is_free_again_once_it_lets_go() {
    let (_cluster, h1, h2) = two_hosts().await;
    h1.ctl.network_create(overlay("ov1", "10.0.9.0/29")).await.unwrap();
    round(&h2).await;
    // h2 takes .2 before h1 has seen anything of it: h1's try at .2 collides in the
    // cluster, and h1 gets .3.
    super::run(&h2, ctr("c2", "ov1")).await;
    super::run(&h1, ctr("c1", "ov1")).await;
    assert_eq!(mac_of(&h2, "c2").await.1, "10.0.9.2");
    assert_eq!(mac_of(&h1, "c1").await.1, "10.0.9.3");
    // h2 lets it go, and h1 hears of the cluster only afterwards (it never saw c2 as a
    // peer): .2 is free for h1 again, as for everyone.
    h2.ctl.container_remove("c2", true).await.unwrap();
    round(&h2).await;
    round(&h1).await;
    super::run(&h1, ctr("c3", "ov1")).await;
    assert_eq!(mac_of(&h1, "c3").await.1, "10.0.9.2", "h1 kept .2 taken after the collision");
}

#[tokio::test]
async fn a_host_in_a_cluster_exposes_the_store_nodes_and_overlay_entries() {
    let (_cluster, h1, h2) = two_hosts().await;
    h1.ctl.network_create(overlay("ov1", "10.0.9.0/24")).await.unwrap();
    round(&h2).await;
    super::run(&h1, ctr("c1", "ov1")).await;
    super::run(&h2, ctr("c2", "ov1")).await;
    round(&h1).await;
    let text = h1.ctl.metrics_text().await;
    let has = |s: &str| text.lines().any(|l| l == s);
    assert!(has("cove_cluster_store_up 1"), "{text}");
    assert!(has(r#"cove_nodes{state="ready"} 2"#), "{text}");
    assert!(has(r#"cove_networks{driver="overlay",scope="global"} 1"#), "{text}");
    // h2's endpoint is h1's one forwarding entry on ov1.
    assert!(has(r#"cove_overlay_fdb_entries{network="ov1"} 1"#), "{text}");
    assert!(text.contains(r#"cove_cluster_store_request_seconds_count{op="list"}"#), "{text}");
}
