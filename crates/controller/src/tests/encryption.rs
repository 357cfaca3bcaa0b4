//! Encrypted overlay networks on fakes: two hosts share one in-memory cluster store and
//! each has a recording tunnel. The datapath of an encrypted network names tunnel
//! addresses only, peers follow shared endpoints, keys rotate, and what cannot be enforced
//! is refused, creating nothing.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use cove_model::{ClusterEndpoint, ErrorKind, NetworkRecord, NodeRecord};
use cove_store::{MemStore, Records, Table};

use super::cluster::seam;
use super::{ctr, net};
use crate::fake::{config, FakeHost, FakeTunnels};
use crate::{ClusterSeam, EncryptionSeam, EncryptionSettings, NetworkCreate};

struct Node {
    h: FakeHost,
    tunnels: Arc<FakeTunnels>,
    _dir: tempfile::TempDir,
}

fn with_tunnel(
    cluster: &(Records, Arc<MemStore>),
    n: u8,
    tunnels: &Arc<FakeTunnels>,
) -> ClusterSeam {
    ClusterSeam {
        encryption: Some(EncryptionSeam {
            settings: EncryptionSettings::defaults(true),
            tunnels: tunnels.clone(),
        }),
        ..seam(cluster, n)
    }
}

async fn node(cluster: &(Records, Arc<MemStore>), n: u8, fail_start: Option<&str>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let tunnels = Arc::new(FakeTunnels::default());
    tunnels.model().fail_start = fail_start.map(str::to_string);
    let h = FakeHost::start_in_cluster(config(dir.path()), with_tunnel(cluster, n, &tunnels))
        .await
        .unwrap();
    Node { h, tunnels, _dir: dir }
}

fn cluster() -> (Records, Arc<MemStore>) {
    let mem = Arc::new(MemStore::new());
    (Records::new(mem.clone()), mem)
}

fn overlay(name: &str, subnet: &str, encrypted: bool) -> NetworkCreate {
    let options = if encrypted {
        BTreeMap::from([("encrypted".to_string(), String::new())])
    } else {
        BTreeMap::new()
    };
    NetworkCreate { driver: "overlay".into(), options, ..net(name, Some(subnet)) }
}

fn vxlan(h: &FakeHost, network: &str) -> (String, u32) {
    let nets = h.store.list::<NetworkRecord>(Table::Networks).unwrap();
    let n = nets.into_iter().find(|(_, n)| n.name == network).expect("network").1;
    match n.config {
        cove_model::DriverConfig::Overlay(o) => (o.vxlan, o.vni),
        other => panic!("{other:?}"),
    }
}

/// The last full ruleset, once it contains `want` (a background sync writes it; 2 s at
/// most), or as it is then.
async fn ruleset_with(h: &FakeHost, want: &str) -> String {
    for _ in 0..100 {
        let last = h.firewall.log().rulesets.last().cloned().unwrap_or_default();
        if last.contains(want) {
            return last;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    h.firewall.log().rulesets.last().cloned().unwrap_or_default()
}

async fn round(h: &FakeHost) {
    h.ctl.cluster_round().await.unwrap();
}

#[tokio::test]
async fn encrypted_networks_ride_the_tunnel_and_peer_only_nodes_that_share_them() {
    let c = cluster();
    let (n1, n2) = (node(&c, 1, None).await, node(&c, 2, None).await);
    // Each node: a key file only it may read, an address of the cluster's pool, the route
    // guard, a tunnel, and its record carrying key, address and endpoint.
    let key = n1._dir.path().join("data/wg.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(c.0.get::<String>(Table::Cluster, "tunnel-pool").unwrap().unwrap(), "10.255.0.0/16");
    for (n, ip) in [(&n1, "10.255.0.1"), (&n2, "10.255.0.2")] {
        let started = n.tunnels.model().started.clone().expect("a tunnel");
        assert_eq!(started.tunnel_addr.to_string(), format!("{ip}/16"));
        assert_eq!((started.ifname.as_str(), started.mtu), ("cvwg0", 1420));
        let blackholes = n.h.kernel.model().blackholes.clone();
        assert_eq!(blackholes.get(&"10.255.0.0/16".parse().unwrap()), Some(&u32::MAX));
    }
    let rec: NodeRecord = c.0.get(Table::NodeStates, "node1").unwrap().unwrap();
    let t = rec.tunnel.expect("h1 publishes its tunnel");
    assert_eq!(
        (t.tunnel_ip.to_string(), t.wg_endpoint.to_string()),
        ("10.255.0.1".into(), "203.0.113.11:51820".into())
    );
    assert_eq!(Some(t.wg_pubkey.clone()), n1.tunnels.model().public_key.map(|k| k.to_base64()));

    n1.h.ctl.network_create(overlay("secure", "10.0.20.0/24", true)).await.unwrap();
    n1.h.ctl.network_create(overlay("plain", "10.0.21.0/24", false)).await.unwrap();
    round(&n2.h).await;
    // The encrypted network's VXLAN device sends from the tunnel address; the guards hold
    // its VNI from creation on, on both hosts, before any endpoint exists.
    let (vx, vni) = vxlan(&n2.h, "secure");
    let (pvx, _) = vxlan(&n2.h, "plain");
    {
        let k2 = n2.h.kernel.model();
        assert_eq!(k2.vxlans[&vx].local, Some("10.255.0.2".parse().unwrap()));
        assert_eq!(k2.vxlans[&pvx].local, Some("203.0.113.12".parse().unwrap()));
        assert_eq!(k2.mtus.get(&vx), Some(&1370));
    }
    for n in [&n1, &n2] {
        let rules = ruleset_with(&n.h, &format!("elements = {{ {vni} }}")).await;
        assert!(rules.contains("chain enc_in") && rules.contains("chain enc_out"), "{rules}");
        assert!(rules.contains(&format!("elements = {{ {vni} }}")), "{rules}");
    }
    assert!(n1.tunnels.model().peers.is_empty(), "no shared endpoint yet: no peer");

    // Endpoints on both hosts: each peers with the other (tunnel address only), and the
    // forwarding entry names the tunnel address, never the underlay's.
    super::run(&n1.h, ctr("c1", "secure")).await;
    super::run(&n2.h, ctr("c2", "secure")).await;
    for _ in 0..2 {
        round(&n1.h).await;
        round(&n2.h).await;
    }
    let peers = n1.tunnels.model().peers.clone();
    assert_eq!(peers.len(), 1, "{peers:?}");
    assert_eq!(peers[0].allowed_ip.to_string(), "10.255.0.2");
    assert_eq!(peers[0].endpoint.to_string(), "203.0.113.12:51820");
    let (vx1, _) = vxlan(&n1.h, "secure");
    let dsts: Vec<String> =
        n1.h.kernel
            .model()
            .fdb_self
            .iter()
            .filter(|((l, _), _)| *l == vx1)
            .map(|(_, d)| d.to_string())
            .collect();
    assert_eq!(dsts, vec!["10.255.0.2".to_string()]);
    // Decrypted VXLAN comes from tunnel addresses: the foreign-VXLAN guard lets them in.
    let rules = ruleset_with(&n1.h, "10.255.0.2").await;
    assert!(
        rules.contains("saddr != { 10.255.0.1, 10.255.0.2, 203.0.113.11, 203.0.113.12 }"),
        "{rules}"
    );
    // Inspect shows the encryption.
    let v = n1.h.ctl.network_get("secure").await.unwrap();
    let e = v.encryption.expect("an encrypted network's view");
    assert_eq!(e.protocol, "wireguard");
    assert_eq!(e.public_key.as_deref(), Some(t.wg_pubkey.as_str()));
    assert!(n1.h.ctl.network_get("plain").await.unwrap().encryption.is_none());

    // Rotation: a new key in the file, the tunnel and the record; the peer follows.
    let old = peers[0].public_key;
    let new = n2.h.ctl.node_rotate_key().await.unwrap();
    assert_ne!(new, old.to_base64());
    let rec: NodeRecord = c.0.get(Table::NodeStates, "node2").unwrap().unwrap();
    assert_eq!(rec.tunnel.unwrap().wg_pubkey, new);
    round(&n1.h).await;
    assert_eq!(n1.tunnels.model().peers[0].public_key.to_base64(), new);
    let file = std::fs::read_to_string(n2._dir.path().join("data/wg.key")).unwrap();
    let k = cove_tunnel::PrivateKey::from_base64(&file).unwrap();
    assert_eq!(k.public_key().to_base64(), new);
}

#[tokio::test]
async fn encryption_that_cannot_be_enforced_is_refused_and_creates_nothing() {
    let c = cluster();
    let why = "create TUN device cvwg0 (/dev/net/tun): No such file or directory (os error 2)";
    let n1 = node(&c, 1, Some(why)).await;
    let n2 = node(&c, 2, None).await;
    // No tunnel on h1: its encrypted create is refused naming why; nothing is created
    // anywhere, and the route guard still stands.
    let e = n1.h.ctl.network_create(overlay("secure", "10.0.20.0/24", true)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("/dev/net/tun") && e.message.contains("cannot be enforced"), "{e}");
    assert!(c.0.list::<NetworkRecord>(Table::Networks).unwrap().is_empty());
    assert!(n1
        .h
        .store
        .list::<NetworkRecord>(Table::Networks)
        .unwrap()
        .iter()
        .all(|(_, n)| n.name != "secure"));
    assert!(n1.h.kernel.model().blackholes.contains_key(&"10.255.0.0/16".parse().unwrap()));
    // Without a tunnel the node publishes none: nobody peers with it.
    let rec: NodeRecord = c.0.get(Table::NodeStates, "node1").unwrap().unwrap();
    assert!(rec.tunnel.is_none());
    // Unencrypted overlays still work there.
    n1.h.ctl.network_create(overlay("plain", "10.0.21.0/24", false)).await.unwrap();

    // An encrypted network made elsewhere: h1 guards its VNI, has no datapath for it, and
    // refuses endpoints on it rather than attaching them in plaintext.
    n2.h.ctl.network_create(overlay("secure", "10.0.20.0/24", true)).await.unwrap();
    round(&n1.h).await;
    let (vx, vni) = vxlan(&n1.h, "secure");
    assert!(!n1.h.kernel.model().links.contains_key(&vx));
    let want = format!("elements = {{ {vni} }}");
    let rules = ruleset_with(&n1.h, &want).await;
    assert!(rules.contains(&want), "{rules}");
    let id = n1.h.ctl.container_create(ctr("c1", "secure")).await.unwrap();
    let e = n1.h.ctl.container_start(&id).await.unwrap_err();
    assert!(e.message.contains("/dev/net/tun"), "{e}");
    assert!(c.0.list::<ClusterEndpoint>(Table::Endpoints).unwrap().is_empty());
    let v = n1.h.ctl.network_get("secure").await.unwrap();
    assert!(v.encryption.unwrap().refusal.unwrap().contains("/dev/net/tun"));
    let e = n1.h.ctl.node_rotate_key().await.unwrap_err();
    assert!(e.message.contains("/dev/net/tun"), "{e}");
}

#[tokio::test]
async fn without_the_firewall_or_a_cluster_store_encryption_is_refused() {
    let c = cluster();
    let dir = tempfile::tempdir().unwrap();
    let tunnels = Arc::new(FakeTunnels::default());
    let mut cfg = config(dir.path());
    cfg.firewall = false;
    let h = FakeHost::start_in_cluster(cfg, with_tunnel(&c, 1, &tunnels)).await.unwrap();
    let e = h.ctl.network_create(overlay("secure", "10.0.20.0/24", true)).await.unwrap_err();
    assert!(e.message.contains("--iptables=false"), "{e}");
    assert!(tunnels.model().started.is_none(), "no tunnel without its guards");
    assert!(c.0.list::<NetworkRecord>(Table::Networks).unwrap().is_empty());

    // A cluster of one (no cluster store): refused, naming the store.
    let local = ClusterSeam { url: String::new(), leases: None, ..seam(&cluster(), 3) };
    let h = FakeHost::start_in_cluster(config(dir.path()), local).await.unwrap();
    let e = h.ctl.network_create(overlay("secure", "10.0.20.0/24", true)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("--cluster-store"), "{e}");
    h.ctl.network_create(overlay("plain", "10.0.21.0/24", false)).await.unwrap();
}
