//! Global IPAM as a property: two hosts sharing one cluster store connect and disconnect
//! containers to one small overlay subnet in random interleavings, syncing with the cluster
//! only now and then (as a host that has not seen the other's last writes yet).
//!
//! After every step no address is held by two endpoints, and every live endpoint's address
//! is reserved in the cluster under its own id. Once both hosts have synced, the cluster's
//! address keys and endpoint records are exactly the live endpoints', and each host's pool
//! holds exactly the live addresses (its own and its peers'): nothing freed stays taken on
//! any host, so a free address can be handed out again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use proptest::prelude::*;

use cove_model::ClusterEndpoint;
use cove_store::{MemStore, Records, Table};

use super::{cfg, ctr, net};
use crate::fake::FakeHost;
use crate::NetworkCreate;

const SUBNET: &str = "10.0.9.0/29";
/// Containers per host, each running on a local network and connected to the overlay
/// network and disconnected by the steps (more than the subnet's five addresses).
const PER_HOST: usize = 4;

#[derive(Debug, Clone)]
enum Step {
    Connect(usize, usize),
    Disconnect(usize, usize),
    /// Both hosts connect one container each, at once.
    ConnectBoth(usize, usize),
    /// One host syncs with the cluster (reads what the other wrote, withdraws what it let go).
    Round(usize),
}

fn step() -> impl Strategy<Value = Step> {
    let (h, c) = (0..2usize, 0..PER_HOST);
    prop_oneof![
        3 => (h.clone(), c.clone()).prop_map(|(h, c)| Step::Connect(h, c)),
        3 => (h.clone(), c.clone()).prop_map(|(h, c)| Step::Disconnect(h, c)),
        1 => (c.clone(), c).prop_map(|(a, b)| Step::ConnectBoth(a, b)),
        2 => h.prop_map(Step::Round),
    ]
}

fn name(h: usize, c: usize) -> String {
    format!("c{h}x{c}")
}

/// The live endpoints on network `id`, over both hosts: (endpoint id, address, host).
async fn live(hosts: &[FakeHost], id: &str) -> Vec<(String, IpAddr, usize)> {
    let mut out = vec![];
    for (i, h) in hosts.iter().enumerate() {
        let st = h.ctl.state.lock().await;
        for ep in st.endpoints.values().filter(|e| e.network_id.as_str() == id) {
            let ip = IpAddr::V4(ep.ipv4.expect("an overlay endpoint has an address").addr());
            out.push((ep.id.to_string(), ip, i));
        }
    }
    out
}

/// The cluster's address keys of network `id`: address → endpoint id.
fn reserved(cluster: &Records, id: &str) -> BTreeMap<IpAddr, String> {
    let prefix = format!("{id}/");
    cluster
        .list::<String>(Table::Ipam)
        .unwrap()
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.parse().ok()?, v)))
        .collect()
}

/// What must hold after every step.
async fn check_safe(hosts: &[FakeHost], cluster: &Records, id: &str, trace: &[Step]) {
    let live = live(hosts, id).await;
    let mut seen = BTreeMap::new();
    for (ep, ip, h) in &live {
        if let Some((other, oh)) = seen.insert(*ip, (ep.clone(), *h)) {
            panic!("{ip} held by {other} on h{oh} and {ep} on h{h} after {trace:?}");
        }
    }
    let keys = reserved(cluster, id);
    for (ep, ip, h) in &live {
        assert_eq!(
            keys.get(ip),
            Some(ep),
            "{ip} of {ep} on h{h} is not reserved under its id in the cluster ({keys:?}) after \
             {trace:?}"
        );
    }
}

/// What must hold once both hosts have synced.
async fn check_settled(hosts: &[FakeHost], cluster: &Records, id: &str, trace: &[Step]) {
    for h in hosts {
        h.ctl.cluster_round().await.unwrap();
    }
    for h in hosts {
        h.ctl.cluster_round().await.unwrap();
    }
    check_safe(hosts, cluster, id, trace).await;
    let live = live(hosts, id).await;
    let want: BTreeMap<IpAddr, String> = live.iter().map(|(e, ip, _)| (*ip, e.clone())).collect();
    assert_eq!(reserved(cluster, id), want, "the cluster's address keys after {trace:?}");
    let records: BTreeSet<String> = cluster
        .list::<ClusterEndpoint>(Table::Endpoints)
        .unwrap()
        .into_iter()
        .filter(|(_, e)| e.endpoint.network_id.as_str() == id)
        .map(|(k, _)| k)
        .collect();
    let ids: BTreeSet<String> = live.iter().map(|(e, _, _)| e.clone()).collect();
    assert_eq!(records, ids, "the cluster's endpoint records after {trace:?}");
    let addrs: BTreeSet<IpAddr> = want.keys().copied().collect();
    for (i, h) in hosts.iter().enumerate() {
        let st = h.ctl.state.lock().await;
        let pool = st.pools.get(&(id.to_string(), false)).expect("the overlay pool");
        let held: BTreeSet<IpAddr> = pool.allocated().collect();
        assert_eq!(held, addrs, "h{i}'s pool against the live addresses after {trace:?}");
    }
}

async fn scenario(steps: Vec<Step>) {
    let mem = Arc::new(MemStore::new());
    let cluster = Records::new(mem.clone());
    let mut hosts = vec![];
    for n in 1..=2 {
        hosts.push(
            FakeHost::start_in_cluster(
                cfg(),
                super::cluster::seam(&(cluster.clone(), mem.clone()), n),
            )
            .await
            .unwrap(),
        );
    }
    let ov = NetworkCreate { driver: "overlay".into(), ..net("ov", Some(SUBNET)) };
    let id = hosts[0].ctl.network_create(ov).await.unwrap().to_string();
    hosts[1].ctl.cluster_round().await.unwrap();
    for (i, h) in hosts.iter().enumerate() {
        h.ctl.network_create(net("loc", Some(&format!("172.30.{i}.0/24")))).await.unwrap();
        for c in 0..PER_HOST {
            super::run(h, ctr(&name(i, c), "loc")).await;
        }
    }
    let mut trace = vec![];
    for s in steps {
        trace.push(s.clone());
        match s {
            // Refusals (the subnet full, already connected or not) are fine; what they
            // leave behind is checked.
            Step::Connect(h, c) => {
                let _ = hosts[h].ctl.network_connect("ov", &name(h, c), Default::default()).await;
            }
            Step::Disconnect(h, c) => {
                let _ = hosts[h].ctl.network_disconnect("ov", &name(h, c), false).await;
            }
            Step::ConnectBoth(a, b) => {
                let (n0, n1) = (name(0, a), name(1, b));
                let _ = tokio::join!(
                    hosts[0].ctl.network_connect("ov", &n0, Default::default()),
                    hosts[1].ctl.network_connect("ov", &n1, Default::default()),
                );
            }
            Step::Round(h) => hosts[h].ctl.cluster_round().await.unwrap(),
        }
        check_safe(&hosts, &cluster, &id, &trace).await;
    }
    check_settled(&hosts, &cluster, &id, &trace).await;
    // Settled, every free address can be had: each host fills the subnet in turn.
    let live_n = live(&hosts, &id).await.len();
    let free = 5 - live_n;
    let mut got = 0;
    for (h, c) in (0..2).flat_map(|h| (0..PER_HOST).map(move |c| (h, c))) {
        if got == free {
            break;
        }
        if hosts[h].ctl.network_connect("ov", &name(h, c), Default::default()).await.is_ok() {
            got += 1;
        }
    }
    let unconnected = 2 * PER_HOST - live_n;
    assert_eq!(got, free.min(unconnected), "free addresses could not be had after {trace:?}");
    check_settled(&hosts, &cluster, &id, &trace).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn global_ipam_never_hands_out_an_address_twice_nor_keeps_a_freed_one(
        steps in prop::collection::vec(step(), 1..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(scenario(steps));
    }
}
