//! A scrape on fakes: objects and IPAM from the state, per-endpoint traffic from the host
//! ends of the veths (from the container's side), drops from the firewall's named counters,
//! and network operations timed.

use cove_kernel::LinkStats;
use cove_metrics::{DropSample, EndpointTraffic};

use super::{ctr, endpoint, host, host_with, net, run};

#[tokio::test]
async fn a_scrape_reads_objects_traffic_and_drops() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    run(&h, ctr("web", "app")).await;
    h.ctl.container_create(ctr("idle", "app")).await.unwrap();
    let host_end = endpoint(&h, "web", "app").await.host_ifname.unwrap();
    h.kernel.model().link_stats.insert(
        host_end.clone(),
        LinkStats {
            name: host_end,
            rx_bytes: 100,
            rx_packets: 1,
            tx_bytes: 2000,
            tx_packets: 20,
            tx_dropped: 3,
            ..Default::default()
        },
    );
    h.firewall.log().counters.insert(("inet cove".into(), "drop_isolation".into()), (7, 420));

    let snap = h.ctl.metrics_snapshot().await;
    let app = snap.networks.iter().find(|n| n.name == "app").expect("app sampled");
    assert_eq!((app.driver.as_str(), app.scope.as_str(), app.endpoints), ("bridge", "local", 1));
    assert_eq!(app.ipam.len(), 1);
    // 256 less network, broadcast and gateway, less web's address.
    assert_eq!((app.ipam[0].family, app.ipam[0].used, app.ipam[0].free), ("ipv4", 1.0, 252.0));
    assert_eq!(app.fdb_entries, None);
    assert_eq!(snap.containers.get("running"), Some(&1));
    assert_eq!(snap.containers.get("created"), Some(&1));
    assert_eq!(
        snap.endpoints,
        vec![EndpointTraffic {
            container: "web".into(),
            network: "app".into(),
            rx_bytes: 2000,
            rx_packets: 20,
            rx_dropped: 3,
            tx_bytes: 100,
            tx_packets: 1,
            tx_dropped: 0,
        }]
    );
    let iso = snap.drops.iter().find(|d| d.reason == "isolation");
    assert_eq!(iso, Some(&DropSample { reason: "isolation".into(), packets: 7, bytes: 420 }));
    // Both tables' counters are read, each once.
    assert!(snap.drops.iter().any(|d| d.reason == "spoof_mac"), "{:?}", snap.drops);
    assert_eq!(snap.drops.iter().filter(|d| d.reason == "isolation").count(), 1);

    let text = h.ctl.metrics_text().await;
    assert!(text.contains("cove_network_actions_seconds_count{action=\"create\"} 1\n"), "{text}");
    assert!(text.contains("cove_firewall_sync_seconds_count{write=\"full\"}"), "{text}");

    // Gone with the container and the network.
    h.ctl.container_remove("web", true).await.unwrap();
    h.ctl.container_remove("idle", true).await.unwrap();
    h.ctl.network_remove("app").await.unwrap();
    let snap = h.ctl.metrics_snapshot().await;
    assert!(snap.networks.iter().all(|n| n.name != "app"));
    assert!(snap.endpoints.is_empty() && snap.containers.is_empty());
}

#[tokio::test]
async fn per_endpoint_series_off_and_no_firewall_read_nothing_of_the_kernel() {
    let h = host_with(|c| {
        c.metrics.per_endpoint = false;
        c.firewall = false;
    })
    .await;
    h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    run(&h, ctr("web", "app")).await;
    let snap = h.ctl.metrics_snapshot().await;
    assert!(snap.endpoints.is_empty() && snap.drops.is_empty(), "{snap:?}");
    assert_eq!(snap.networks.iter().find(|n| n.name == "app").unwrap().endpoints, 1);
}
