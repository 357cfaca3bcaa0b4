//! Network create, remove and prune on fakes: every validation error (and that it changes
//! nothing), the pools chosen, the options kept, the default bridge's flags, a failure at
//! each kernel step rolled back, and what removal does before and after it answers.

use std::time::Duration;

use cove_drivers::plan::OWNED_LINK_GROUP;
use cove_model::{BridgeOptions, DriverConfig, Error, ErrorKind, NetworkRecord};
use cove_store::Table;

use super::{ctr, host, host_with, net, run, snapshot, stored_endpoints};
use crate::fake::FakeHost;
use crate::{IpamConfigRequest, NetworkCreate};

const ICC: &str = "com.docker.network.bridge.enable_icc";
const NAME: &str = "com.docker.network.bridge.name";
const MTU: &str = "com.docker.network.driver.mtu";

/// A request that must be refused: the error, after checking nothing changed.
async fn refused(h: &FakeHost, req: NetworkCreate) -> Error {
    let before = snapshot(h);
    let e = h.ctl.network_create(req).await.expect_err("the request was accepted");
    assert_eq!(snapshot(h), before, "a refused create changed something ({e})");
    e
}

fn with_ipam(name: &str, c: IpamConfigRequest) -> NetworkCreate {
    NetworkCreate { name: name.into(), ipam_config: vec![c], ..Default::default() }
}

fn pool(subnet: &str) -> IpamConfigRequest {
    IpamConfigRequest { subnet: Some(subnet.parse().unwrap()), ..Default::default() }
}

fn with_option(name: &str, key: &str, value: &str) -> NetworkCreate {
    let mut r = net(name, None);
    r.options.insert(key.into(), value.into());
    r
}

fn record(h: &FakeHost, id: &str) -> NetworkRecord {
    h.store.get::<NetworkRecord>(Table::Networks, id).unwrap().expect("network record")
}

fn bridge(rec: &NetworkRecord) -> BridgeOptions {
    match &rec.config {
        DriverConfig::Bridge(b) => b.clone(),
        other => panic!("not a bridge: {other:?}"),
    }
}

fn subnets(rec: &NetworkRecord) -> Vec<String> {
    rec.ipam.iter().map(|p| p.subnet.to_string()).collect()
}

fn network_count(h: &FakeHost) -> usize {
    h.store.list::<NetworkRecord>(Table::Networks).unwrap().len()
}

/// Poll until `f` holds (spawned work finishing), at most a second.
async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in time");
}

// ---- validation -------------------------------------------------------------------------

#[tokio::test]
async fn create_refuses_an_empty_name() {
    let h = host().await;
    let e = refused(&h, net("", None)).await;
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(e.message, "network name must not be empty");
}

#[tokio::test]
async fn create_refuses_names_outside_the_container_name_alphabet() {
    let h = host().await;
    for bad in ["-lead", "a b", "a/b", ".dot", &"x".repeat(129)] {
        let e = refused(&h, net(bad, None)).await;
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{bad}: {e}");
        assert!(e.message.starts_with("invalid network name"), "{bad}: {}", e.message);
    }
}

#[tokio::test]
async fn create_refuses_a_duplicate_name_as_a_conflict() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    let e = refused(&h, net("app", Some("10.1.1.0/24"))).await;
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert_eq!(e.message, "network with name app already exists");
}

#[tokio::test]
async fn create_refuses_the_name_of_a_builtin_network() {
    let h = host().await;
    for name in ["bridge", "host", "none"] {
        let e = refused(&h, net(name, None)).await;
        assert_eq!(e.kind, ErrorKind::Conflict, "{name}: {e}");
    }
}

#[tokio::test]
async fn create_refuses_an_unknown_driver_as_not_found() {
    let h = host().await;
    let e = refused(&h, NetworkCreate { driver: "weave".into(), ..net("o", None) }).await;
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.starts_with("plugin \"weave\" not found"), "{}", e.message);
}

#[tokio::test]
async fn create_refuses_the_builtin_only_drivers_as_forbidden() {
    let h = host().await;
    for driver in ["host", "null"] {
        let e = refused(&h, NetworkCreate { driver: driver.into(), ..net("x", None) }).await;
        assert_eq!(e.kind, ErrorKind::Forbidden, "{driver}: {e}");
        assert_eq!(e.message, format!("only one instance of \"{driver}\" network is allowed"));
    }
}

#[tokio::test]
async fn create_refuses_an_unknown_ipam_driver_as_not_found() {
    let h = host().await;
    let e = refused(&h, NetworkCreate { ipam_driver: "dhcp".into(), ..net("x", None) }).await;
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("IPAM driver \"dhcp\" not found"), "{}", e.message);
    // The default driver, by either of its names, is accepted.
    for d in ["", "default"] {
        let name = format!("ok{}", d.len());
        h.ctl
            .network_create(NetworkCreate { ipam_driver: d.into(), ..net(&name, None) })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn create_refuses_an_unknown_option() {
    let h = host().await;
    let e = refused(&h, with_option("x", "com.docker.network.bridge.colour", "red")).await;
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(
        e.message.starts_with("unknown option \"com.docker.network.bridge.colour\""),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn create_refuses_bad_option_values() {
    let h = host().await;
    let cases = [
        (ICC, "maybe", "expected true or false"),
        ("com.docker.network.bridge.enable_ip_masquerade", "yes", "expected true or false"),
        ("com.docker.network.bridge.host_binding_ipv4", "localhost", "expected an IP address"),
        (MTU, "67", "expected an MTU between 68 and 65535"),
        (MTU, "65536", "expected an MTU between 68 and 65535"),
        (MTU, "big", "expected an MTU between 68 and 65535"),
        (NAME, "a-very-long-bridge-name", "must be 1 to 15 bytes long"),
        (NAME, "br:0", "must not contain"),
        (NAME, "br 0", "must not contain"),
    ];
    for (key, value, why) in cases {
        let e = refused(&h, with_option("x", key, value)).await;
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{key}={value}: {e}");
        assert!(e.message.contains(why), "{key}={value}: {}", e.message);
    }
}

#[tokio::test]
async fn create_refuses_an_ipv6_subnet_without_ipv6() {
    let h = host().await;
    let e = refused(&h, net("v6", Some("fd12::/64"))).await;
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("IPv6 is not enabled on the network"), "{}", e.message);
}

#[tokio::test]
async fn create_refuses_a_subnet_overlapping_another_network() {
    let h = host().await;
    h.ctl.network_create(net("first", Some("10.1.0.0/16"))).await.unwrap();
    let e = refused(&h, net("second", Some("10.1.4.0/24"))).await;
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(
        e.message,
        "Pool overlaps with other one on this address space: 10.1.4.0/24 overlaps 10.1.0.0/16 of network first"
    );
}

#[tokio::test]
async fn create_refuses_a_subnet_overlapping_the_default_bridge() {
    let h = host().await;
    let e = refused(&h, net("x", Some("172.16.0.0/12"))).await;
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.ends_with("overlaps 172.17.0.0/16 of network bridge"), "{}", e.message);
}

#[tokio::test]
async fn create_refuses_a_subnet_overlapping_a_host_route() {
    let h = host().await;
    h.kernel.model().routes.push("192.168.50.0/24".parse().unwrap());
    let e = refused(&h, net("x", Some("192.168.0.0/16"))).await;
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(e.message.ends_with("overlaps 192.168.50.0/24 of a host route"), "{}", e.message);
}

#[tokio::test]
async fn create_refuses_bad_subnets() {
    let h = host().await;
    // Syntax ("banana", "10.1.0.0") is refused at the edge, where the text is parsed
    // (`PoolRequest::parse`); what reaches the controller is a prefix.
    let cases =
        [("10.1.0.1/24", "it should be 10.1.0.0/24"), ("10.1.0.0/31", "prefix length of at most")];
    for (subnet, why) in cases {
        let e = refused(&h, net("x", Some(subnet))).await;
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{subnet}: {e}");
        assert!(e.message.contains(why), "{subnet}: {}", e.message);
    }
}

#[tokio::test]
async fn create_refuses_bad_gateways() {
    let h = host().await;
    let cases = [
        ("10.1.1.1", "doesn't contain this address"),
        ("10.1.0.0", "network address of subnet 10.1.0.0/24"),
        ("10.1.0.255", "broadcast address of subnet 10.1.0.0/24"),
        ("fd00::1", "parent subnet is an IPv4 block"),
    ];
    for (gw, why) in cases {
        let req = with_ipam(
            "x",
            IpamConfigRequest { gateway: Some(gw.parse().unwrap()), ..pool("10.1.0.0/24") },
        );
        let e = refused(&h, req).await;
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{gw}: {e}");
        assert!(e.message.starts_with(&format!("invalid gateway {gw}")), "{}", e.message);
        assert!(e.message.contains(why), "{gw}: {}", e.message);
    }
}

#[tokio::test]
async fn create_refuses_bad_ip_ranges() {
    let h = host().await;
    let cases = [
        ("10.2.0.0/24", "doesn't contain ip-range"),
        ("10.1.0.0/16", "bigger than its parent subnet"),
        ("10.1.0.1/28", "it should be 10.1.0.0/28"),
        ("fd00::/64", "parent subnet is an IPv4 block"),
    ];
    for (range, why) in cases {
        let req = with_ipam(
            "x",
            IpamConfigRequest { ip_range: Some(range.parse().unwrap()), ..pool("10.1.0.0/24") },
        );
        let e = refused(&h, req).await;
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{range}: {e}");
        assert!(e.message.contains(why), "{range}: {}", e.message);
    }
}

#[tokio::test]
async fn create_refuses_bad_auxiliary_addresses() {
    let h = host().await;
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[("router", "10.9.0.5")], "doesn't contain this address"),
        (&[("", "10.1.0.5")], "missing name"),
        (&[("a", "10.1.0.5"), ("a", "10.1.0.6")], "duplicate name"),
    ];
    for (aux, why) in cases {
        let aux = aux.iter().map(|(n, a)| (n.to_string(), a.parse().unwrap())).collect();
        let req = with_ipam("x", IpamConfigRequest { aux_addresses: aux, ..pool("10.1.0.0/24") });
        let e = refused(&h, req).await;
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");
        assert!(e.message.contains(why), "{}", e.message);
    }
}

#[tokio::test]
async fn create_refuses_a_gateway_without_a_subnet() {
    let h = host().await;
    let req = with_ipam(
        "x",
        IpamConfigRequest { gateway: Some("10.1.0.1".parse().unwrap()), ..Default::default() },
    );
    let e = refused(&h, req).await;
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("but no subnet"), "{}", e.message);
}

#[tokio::test]
async fn create_refuses_two_subnets_of_one_family_and_overlapping_ones() {
    let h = host().await;
    let two = NetworkCreate {
        ipam_config: vec![pool("10.1.0.0/24"), pool("10.2.0.0/24")],
        ..net("x", None)
    };
    let e = refused(&h, two).await;
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.starts_with("only one IPv4 subnet per network"), "{}", e.message);
    let overlapping = NetworkCreate {
        ipam_config: vec![pool("10.1.0.0/16"), pool("10.1.2.0/24")],
        ..net("x", None)
    };
    let e = refused(&h, overlapping).await;
    assert!(e.message.contains("of the same network"), "{}", e.message);
}

// ---- what a created network is ------------------------------------------------------------

#[tokio::test]
async fn default_pools_are_taken_in_order_after_the_default_bridge() {
    let h = host().await;
    let a = h.ctl.network_create(net("a", None)).await.unwrap();
    let b = h.ctl.network_create(net("b", None)).await.unwrap();
    assert_eq!(subnets(&record(&h, &a)), ["172.18.0.0/16"]);
    assert_eq!(subnets(&record(&h, &b)), ["172.19.0.0/16"]);
    let gw = record(&h, &a).ipam[0].gateway.unwrap();
    assert_eq!(gw.to_string(), "172.18.0.1", "the first host address is the gateway");
}

#[tokio::test]
async fn default_pools_skip_host_routes_and_user_subnets() {
    let h = host().await;
    h.kernel.model().routes.push("172.18.3.0/24".parse().unwrap());
    h.ctl.network_create(net("mine", Some("172.19.128.0/24"))).await.unwrap();
    let id = h.ctl.network_create(net("auto", None)).await.unwrap();
    assert_eq!(subnets(&record(&h, &id)), ["172.20.0.0/16"]);
}

#[tokio::test]
async fn a_removed_network_gives_its_default_pool_back() {
    let h = host().await;
    h.ctl.network_create(net("a", None)).await.unwrap();
    h.ctl.network_remove("a").await.unwrap();
    let id = h.ctl.network_create(net("b", None)).await.unwrap();
    assert_eq!(subnets(&record(&h, &id)), ["172.18.0.0/16"]);
}

#[tokio::test]
async fn configured_default_pools_serve_the_default_bridge_then_user_networks() {
    let h = host_with(|c| {
        c.default_address_pools =
            vec![cove_ipam::parse_pool_spec("base=10.10.0.0/16,size=24").unwrap()]
    })
    .await;
    let bridge = h.ctl.network_get("bridge").await.unwrap().record;
    assert_eq!(subnets(&bridge), ["10.10.0.0/24"]);
    let id = h.ctl.network_create(net("a", None)).await.unwrap();
    assert_eq!(subnets(&record(&h, &id)), ["10.10.1.0/24"]);
}

#[tokio::test]
async fn exhausted_default_pools_are_unavailable_and_leave_nothing() {
    let h = host_with(|c| {
        c.default_address_pools =
            vec![cove_ipam::parse_pool_spec("base=10.10.0.0/24,size=24").unwrap()]
    })
    .await;
    let e = refused(&h, net("a", None)).await;
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.message.contains("non-overlapping IPv4 address pool"), "{}", e.message);
}

#[tokio::test]
async fn a_user_subnet_keeps_its_range_gateway_and_aux_addresses() {
    let h = host().await;
    let req = with_ipam(
        "x",
        IpamConfigRequest {
            subnet: Some("10.1.0.0/24".parse().unwrap()),
            ip_range: Some("10.1.0.128/25".parse().unwrap()),
            gateway: Some("10.1.0.254".parse().unwrap()),
            aux_addresses: vec![("router".into(), "10.1.0.200".parse().unwrap())],
        },
    );
    let id = h.ctl.network_create(req).await.unwrap();
    let rec = record(&h, &id);
    let p = &rec.ipam[0];
    assert_eq!(p.ip_range.unwrap().to_string(), "10.1.0.128/25");
    assert_eq!(p.gateway.unwrap().to_string(), "10.1.0.254");
    assert_eq!(p.aux_addresses["router"].to_string(), "10.1.0.200");
    let b = bridge(&rec).name;
    assert!(h.kernel.model().addresses.contains(&(b, "10.1.0.254/24".parse().unwrap())));
}

#[tokio::test]
async fn ipv6_without_subnets_is_dual_stack_from_the_default_pools() {
    let h = host().await;
    let id =
        h.ctl.network_create(NetworkCreate { enable_ipv6: true, ..net("v6", None) }).await.unwrap();
    let rec = record(&h, &id);
    assert_eq!(subnets(&rec), ["172.18.0.0/16", "fd00::/64"]);
    let b = bridge(&rec).name;
    let k = h.kernel.model();
    assert!(k.addresses.contains(&(b.clone(), "172.18.0.1/16".parse().unwrap())));
    assert!(k.addresses.contains(&(b.clone(), "fd00::1/64".parse().unwrap())));
    assert_eq!(k.sysctls[&format!("net/ipv6/conf/{b}/disable_ipv6")], "0");
    assert_eq!(k.sysctls[&format!("net/ipv6/conf/{b}/accept_ra")], "0");
    assert_eq!(k.sysctls["net/ipv6/conf/all/forwarding"], "1", "IPv6 forwarding turned on");
    assert!(
        k.journal
            .iter()
            .any(|l| l == &format!("apply add route local ::1 dev {b} table local metric 1024")),
        "{:?}",
        k.journal
    );
}

#[tokio::test]
async fn an_ipv6_subnet_alone_gets_an_ipv4_subnet_chosen_too() {
    let h = host().await;
    let id = h
        .ctl
        .network_create(NetworkCreate { enable_ipv6: true, ..net("v6", Some("fd12:3::/64")) })
        .await
        .unwrap();
    assert_eq!(subnets(&record(&h, &id)), ["172.18.0.0/16", "fd12:3::/64"]);
}

#[tokio::test]
async fn an_ipv4_network_leaves_ipv6_off_on_its_bridge_and_forwarding_alone() {
    let h = host().await;
    let id = h.ctl.network_create(net("v4", Some("10.1.0.0/24"))).await.unwrap();
    let b = bridge(&record(&h, &id)).name;
    let k = h.kernel.model();
    assert_eq!(k.sysctls[&format!("net/ipv6/conf/{b}/disable_ipv6")], "1");
    assert!(!k.sysctls.contains_key(&format!("net/ipv6/conf/{b}/accept_ra")));
    assert!(!k.sysctls.contains_key("net/ipv6/conf/all/forwarding"));
    assert_eq!(k.sysctls[&format!("net/ipv4/conf/{b}/route_localnet")], "1");
}

#[tokio::test]
async fn internal_attachable_labels_and_options_are_kept() {
    let h = host().await;
    let mut req = with_option("x", ICC, "false");
    req.internal = true;
    req.attachable = true;
    req.labels.insert("team".into(), "blue".into());
    req.ipam_options.insert("opt".into(), "v".into());
    let id = h.ctl.network_create(req).await.unwrap();
    let rec = h.ctl.network_get("x").await.unwrap().record;
    assert_eq!(rec.id, id);
    assert!(rec.internal && rec.attachable && !rec.builtin);
    assert_eq!(rec.labels["team"], "blue");
    assert_eq!(rec.options[ICC], "false");
    assert_eq!(rec.ipam_options["opt"], "v");
    assert_eq!(rec.driver, "bridge");
    assert!(!bridge(&rec).enable_icc);
    assert_eq!(record(&h, &id), rec, "the store has what the controller shows");
}

#[tokio::test]
async fn the_bridge_name_option_names_the_device() {
    let h = host().await;
    let id = h.ctl.network_create(with_option("x", NAME, "mybr0")).await.unwrap();
    assert_eq!(bridge(&record(&h, &id)).name, "mybr0");
    let k = h.kernel.model();
    assert_eq!(k.links["mybr0"].group, OWNED_LINK_GROUP);
    assert!(k.links["mybr0"].up);
}

#[tokio::test]
async fn a_bridge_name_another_network_claims_is_a_conflict() {
    let h = host().await;
    h.ctl.network_create(with_option("x", NAME, "mybr0")).await.unwrap();
    let e = refused(&h, with_option("y", NAME, "mybr0")).await;
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert_eq!(e.message, "bridge name mybr0 is already used by network x");
    let e = refused(&h, with_option("z", NAME, "cove0")).await;
    assert_eq!(e.message, "bridge name cove0 is already used by network bridge");
}

#[tokio::test]
async fn the_mtu_option_and_the_daemon_default_reach_the_bridge() {
    let h = host_with(|c| c.mtu = 1400).await;
    let a = h.ctl.network_create(with_option("jumbo", MTU, "9000")).await.unwrap();
    let b = h.ctl.network_create(net("plain", None)).await.unwrap();
    let (a, b) = (bridge(&record(&h, &a)), bridge(&record(&h, &b)));
    assert_eq!((a.mtu, b.mtu), (9000, 1400));
    let k = h.kernel.model();
    assert!(k
        .journal
        .iter()
        .any(|l| l.starts_with(&format!("apply create bridge {} mtu 9000", a.name))));
    assert!(k
        .journal
        .iter()
        .any(|l| l.starts_with(&format!("apply create bridge {} mtu 1400", b.name))));
}

#[tokio::test]
async fn a_network_is_created_in_the_diffs_order() {
    let h = host().await;
    let start = h.kernel.model().journal.len();
    let id = h.ctl.network_create(net("x", Some("10.1.0.0/24"))).await.unwrap();
    let b = bridge(&record(&h, &id)).name;
    let k = h.kernel.model();
    let ops: Vec<&str> =
        k.journal[start..].iter().map(|l| l.split(" mac ").next().unwrap()).collect();
    assert_eq!(
        ops,
        [
            format!("apply create bridge {b} mtu 1500"),
            format!("apply sysctl net/ipv4/conf/{b}/route_localnet=1 in host"),
            format!("apply sysctl net/ipv6/conf/{b}/disable_ipv6=1 in host"),
            format!("apply add address 10.1.0.1/24 to {b} in host"),
            format!("apply set {b} up in host"),
        ]
    );
}

#[tokio::test]
async fn the_default_bridge_follows_bip() {
    let h = host_with(|c| c.bip = Some("10.7.0.1/16".parse().unwrap())).await;
    let rec = h.ctl.network_get("bridge").await.unwrap().record;
    assert_eq!(subnets(&rec), ["10.7.0.0/16"]);
    assert_eq!(rec.ipam[0].gateway.unwrap().to_string(), "10.7.0.1");
    assert!(rec.builtin);
    assert!(h.kernel.model().addresses.contains(&("cove0".into(), "10.7.0.1/16".parse().unwrap())));
    // The default pools go on from 172.17 for user networks.
    let id = h.ctl.network_create(net("a", None)).await.unwrap();
    assert_eq!(subnets(&record(&h, &id)), ["172.17.0.0/16"]);
}

#[tokio::test]
async fn the_default_bridge_follows_fixed_cidr_alone() {
    let h = host_with(|c| c.fixed_cidr = Some("10.8.1.0/24".parse().unwrap())).await;
    let rec = h.ctl.network_get("bridge").await.unwrap().record;
    assert_eq!(subnets(&rec), ["10.8.1.0/24"]);
    assert_eq!(rec.ipam[0].ip_range.unwrap().to_string(), "10.8.1.0/24");
    assert_eq!(rec.ipam[0].gateway.unwrap().to_string(), "10.8.1.1");
}

#[tokio::test]
async fn containers_on_the_default_bridge_get_addresses_from_fixed_cidr() {
    let h = host_with(|c| {
        c.bip = Some("10.7.0.1/16".parse().unwrap());
        c.fixed_cidr = Some("10.7.9.0/24".parse().unwrap());
    })
    .await;
    run(&h, ctr("a", "bridge")).await;
    let ep = super::endpoint(&h, "a", "bridge").await;
    let range: ipnet::IpNet = "10.7.9.0/24".parse().unwrap();
    let v4 = ep.ipv4.unwrap();
    assert!(range.contains(&std::net::IpAddr::V4(v4.addr())), "{v4}");
    assert_eq!(v4.prefix_len(), 16, "the subnet's prefix, not the range's");
    assert_eq!(ep.gateway4.unwrap().to_string(), "10.7.0.1");
}

#[tokio::test]
async fn the_default_bridge_follows_icc() {
    let h = host_with(|c| c.icc = false).await;
    let rec = h.ctl.network_get("bridge").await.unwrap().record;
    assert_eq!(rec.options[ICC], "false");
    assert!(!bridge(&rec).enable_icc);
    let h = host().await;
    let rec = h.ctl.network_get("bridge").await.unwrap().record;
    assert_eq!(rec.options[ICC], "true");
    assert!(bridge(&rec).enable_icc);
}

// ---- a kernel failure at each step of the plan ---------------------------------------------

/// Create `req` with the kernel refusing the op that contains `step`: the record is rolled
/// back, every link and address the plan made is gone, and after healing the same request
/// succeeds. Returns the rollback lines of the journal.
async fn create_fails_at(req: NetworkCreate, step: &str) -> Vec<String> {
    let h = host().await;
    let journal = h.kernel.model().journal.len();
    let fw_writes = |h: &FakeHost| {
        let l = h.firewall.log();
        (l.rulesets.len(), l.deltas.len())
    };
    let fw = fw_writes(&h);
    h.kernel.fail_on(step);
    let e = h.ctl.network_create(req.clone()).await.expect_err("the kernel refused");
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert!(e.message.contains(&format!("create network {}", req.name)), "{}", e.message);
    assert_eq!(network_count(&h), 3, "the record was rolled back");
    assert!(h.ctl.network_get(&req.name).await.is_err());
    let rollback = {
        let k = h.kernel.model();
        assert_eq!(k.owned_links(), ["cove0"], "links rolled back: {:?}", k.links);
        assert!(k.addresses.iter().all(|(l, _)| l == "cove0"), "{:?}", k.addresses);
        assert!(
            k.journal[journal..].iter().any(|l| l.starts_with("apply ") && l.contains(step)),
            "{step} was not tried"
        );
        k.journal_of("rollback ")
    };
    assert_eq!(fw_writes(&h), fw, "the firewall was written");
    h.kernel.heal();
    let id = h.ctl.network_create(req.clone()).await.expect("the same request after healing");
    // The same subnet as first asked for: nothing of the failed attempt was kept.
    let want = req.ipam_config.first().and_then(|c| c.subnet).map(|s| s.to_string());
    assert_eq!(subnets(&record(&h, &id))[0], want.unwrap_or_else(|| "172.18.0.0/16".into()));
    rollback
}

#[tokio::test]
async fn create_failing_at_create_bridge_needs_no_rollback() {
    let rb = create_fails_at(net("x", None), "create bridge br-").await;
    assert!(rb.is_empty(), "{rb:?}");
}

#[tokio::test]
async fn create_failing_at_the_ipv6_sysctl_deletes_the_bridge() {
    let rb = create_fails_at(net("x", None), "disable_ipv6=1 in host").await;
    assert_eq!(rb.len(), 1, "{rb:?}");
    assert!(rb[0].starts_with("rollback delete link br-"), "{rb:?}");
}

#[tokio::test]
async fn create_failing_at_the_gateway_address_deletes_the_bridge() {
    let rb = create_fails_at(net("x", Some("10.3.0.0/24")), "add address 10.3.0.1/24").await;
    assert_eq!(rb.len(), 1, "{rb:?}");
    assert!(rb[0].starts_with("rollback delete link br-"), "{rb:?}");
}

#[tokio::test]
async fn create_failing_at_route_localnet_deletes_the_bridge() {
    // Sysctls come before addresses in the diff's order: only the bridge to undo.
    let rb = create_fails_at(net("x", Some("10.3.0.0/24")), "route_localnet=1").await;
    assert_eq!(rb.len(), 1, "{rb:?}");
    assert!(rb[0].starts_with("rollback delete link br-"), "{rb:?}");
}

#[tokio::test]
async fn create_failing_at_set_up_rolls_everything_back() {
    let rb = create_fails_at(net("x", Some("10.3.0.0/24")), "up in host").await;
    assert_eq!(rb.len(), 2, "{rb:?}");
    assert!(rb[1].starts_with("rollback delete link br-"), "{rb:?}");
}

#[tokio::test]
async fn create_failing_at_accept_ra_rolls_the_dual_stack_bridge_back() {
    let req = NetworkCreate { enable_ipv6: true, ..net("x", Some("10.3.0.0/24")) };
    let rb = create_fails_at(req, "accept_ra=0").await;
    // Sysctls come before addresses in the diff's order: only the bridge to undo.
    assert_eq!(rb.len(), 1, "the link: {rb:?}");
    assert!(rb[0].starts_with("rollback delete link br-"), "{rb:?}");
}

#[tokio::test]
async fn create_failing_at_the_loopback_route_rolls_the_dual_stack_bridge_back() {
    let req = NetworkCreate { enable_ipv6: true, ..net("x", Some("10.3.0.0/24")) };
    let rb = create_fails_at(req, "add route local ::1").await;
    assert!(rb.last().unwrap().starts_with("rollback delete link br-"), "{rb:?}");
}

#[tokio::test]
async fn create_failing_to_turn_on_ipv6_forwarding_leaves_nothing() {
    let h = host().await;
    h.kernel.fail_on("net/ipv6/conf/all/forwarding");
    let req = NetworkCreate { enable_ipv6: true, ..net("x", Some("10.3.0.0/24")) };
    let e = h.ctl.network_create(req.clone()).await.unwrap_err();
    assert!(e.message.contains("net.ipv6.conf.all.forwarding"), "{}", e.message);
    assert_eq!(network_count(&h), 3, "a record was left behind");
    assert_eq!(h.kernel.model().owned_links(), ["cove0"], "a bridge was left behind");
    h.kernel.heal();
    h.ctl.network_create(req).await.expect("the subnet and name are free again");
}

#[tokio::test]
async fn create_with_the_firewall_refusing_leaves_nothing() {
    let h = host().await;
    h.firewall.log().fail = true;
    let e = h.ctl.network_create(net("x", Some("10.3.0.0/24"))).await.unwrap_err();
    assert!(e.message.contains("program the firewall"), "{}", e.message);
    assert!(h.ctl.network_get("x").await.is_err(), "the network exists after an error");
    assert_eq!(network_count(&h), 3, "a record was left behind");
    assert_eq!(h.kernel.model().owned_links(), ["cove0"], "a bridge was left behind");
}

// ---- remove and prune ---------------------------------------------------------------------

#[tokio::test]
async fn builtin_networks_cannot_be_removed() {
    let h = host().await;
    for name in ["bridge", "host", "none"] {
        let before = snapshot(&h);
        let e = h.ctl.network_remove(name).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden, "{name}");
        assert_eq!(e.message, format!("{name} is a pre-defined network and cannot be removed"));
        assert_eq!(snapshot(&h), before);
    }
}

#[tokio::test]
async fn removing_an_unknown_network_is_not_found() {
    let h = host().await;
    let e = h.ctl.network_remove("nope").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn a_network_with_active_endpoints_cannot_be_removed() {
    let h = host().await;
    let id = h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    run(&h, ctr("c1", "app")).await;
    let before = snapshot(&h);
    let e = h.ctl.network_remove("app").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(
        e.message,
        format!("error while removing network: network app id {id} has active endpoints")
    );
    assert_eq!(snapshot(&h), before, "the refused remove changed something");
}

#[tokio::test]
async fn remove_takes_the_addresses_before_answering_and_condemns_the_bridge() {
    use crate::seams::Kernel;
    let h = host().await;
    let id = h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    let b = bridge(&record(&h, &id)).name;
    h.ctl.network_remove(&id[..8]).await.unwrap();
    {
        let k = h.kernel.model();
        assert!(!k.addresses.iter().any(|(l, _)| *l == b), "addresses still on {b}");
        let del = format!("teardown delete address 10.1.0.1/24 from {b} in host");
        let condemn = format!("teardown condemn {b} (reaped");
        let at = |p: &str| k.journal.iter().position(|l| l.starts_with(p));
        assert!(at(&del).unwrap() < at(&condemn).unwrap(), "{:?}", k.journal);
        // Condemned: out of Cove's group, waiting for the reaper.
        assert_eq!(k.links[&b].group, cove_drivers::plan::RETIRED_LINK_GROUP);
        assert_eq!(k.owned_links(), ["cove0"]);
    }
    assert!(h.store.get::<NetworkRecord>(Table::Networks, &id).unwrap().is_none());
    // The executor's reaper deletes the condemned bridge.
    h.kernel.reap_condemned().await.unwrap();
    assert_eq!(h.kernel.model().links.len(), 1, "only cove0 is left");
}

#[tokio::test]
async fn a_removed_networks_subnet_is_free_at_once() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    h.ctl.network_remove("app").await.unwrap();
    // Before the bridge is deleted in the background, the subnet is already free.
    h.ctl.network_create(net("app2", Some("10.1.0.0/24"))).await.unwrap();
    h.ctl.network_create(net("app", Some("10.2.0.0/24"))).await.expect("the name is free too");
}

#[tokio::test]
async fn remove_tells_the_firewall_the_network_went() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    let writes = {
        let fw = h.firewall.log();
        fw.rulesets.len() + fw.deltas.len()
    };
    h.ctl.network_remove("app").await.unwrap();
    let fw = h.firewall.clone();
    until(|| {
        let l = fw.log();
        l.rulesets.len() + l.deltas.len() > writes
    })
    .await;
    let l = h.firewall.log();
    let last = l.deltas.last().cloned().unwrap_or_default();
    let ruleset = l.rulesets.last().cloned().unwrap_or_default();
    assert!(
        (last.contains("delete element") && last.contains("10.1.0.0/24"))
            || (l.rulesets.len() > 1 && !ruleset.contains("10.1.0.0/24")),
        "{last:?}"
    );
}

#[tokio::test]
async fn a_failed_address_removal_keeps_the_network() {
    let h = host().await;
    let id = h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    h.kernel.fail_on("delete address 10.1.0.1/24");
    let e = h.ctl.network_remove("app").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal);
    assert!(e.message.starts_with("remove network app"), "{}", e.message);
    assert!(h.store.get::<NetworkRecord>(Table::Networks, &id).unwrap().is_some());
    assert!(h.ctl.network_get("app").await.is_ok());
    h.kernel.heal();
    h.ctl.network_remove("app").await.expect("removed once the kernel agrees");
}

#[tokio::test]
async fn stopped_containers_forget_a_removed_network() {
    let h = host().await;
    let app = h.ctl.network_create(net("app", Some("10.1.0.0/24"))).await.unwrap();
    let id = h.ctl.container_create(ctr("c1", "bridge")).await.unwrap();
    h.ctl.network_connect("app", "c1", Default::default()).await.unwrap();
    let rec = h.store.get::<cove_model::ContainerRecord>(Table::Containers, &id).unwrap().unwrap();
    assert!(rec.networks.iter().any(|(n, _)| *n == app));
    h.ctl.network_remove("app").await.unwrap();
    let rec = h.store.get::<cove_model::ContainerRecord>(Table::Containers, &id).unwrap().unwrap();
    assert_eq!(rec.networks.len(), 1, "{:?}", rec.networks);
    assert!(!rec.networks.iter().any(|(n, _)| *n == app));
    // It starts on what it has left.
    h.ctl.container_start(&id).await.unwrap();
    let eps = stored_endpoints(&h);
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0].ifname, "eth0");
}

#[tokio::test]
async fn prune_removes_only_unused_user_networks() {
    let h = host().await;
    for (n, s) in [("idle", "10.1.0.0/24"), ("busy", "10.2.0.0/24"), ("kept", "10.3.0.0/24")] {
        h.ctl.network_create(net(n, Some(s))).await.unwrap();
    }
    run(&h, ctr("c1", "busy")).await;
    // A stopped container still connected keeps its network too.
    h.ctl.container_create(ctr("c2", "kept")).await.unwrap();
    let removed = h.ctl.network_prune(&|_| true).await.unwrap();
    assert_eq!(removed, ["idle"]);
    let names: Vec<String> =
        h.ctl.network_list().await.into_iter().map(|v| v.record.name).collect();
    for n in ["bridge", "host", "none", "busy", "kept"] {
        assert!(names.iter().any(|x| x == n), "{n} was pruned");
    }
    assert_eq!(names.len(), 5);
}

#[tokio::test]
async fn prune_honours_its_filter() {
    let h = host().await;
    let mut a = net("tagged", Some("10.1.0.0/24"));
    a.labels.insert("env".into(), "test".into());
    h.ctl.network_create(a).await.unwrap();
    h.ctl.network_create(net("plain", Some("10.2.0.0/24"))).await.unwrap();
    let removed = h
        .ctl
        .network_prune(&|n: &NetworkRecord| n.labels.get("env").is_some_and(|v| v == "test"))
        .await
        .unwrap();
    assert_eq!(removed, ["tagged"]);
    assert!(h.ctl.network_get("plain").await.is_ok());
    // (Names that are not hex: a gone name must not resolve as an id prefix.)
    assert!(h.ctl.network_get("tagged").await.is_err());
    assert!(h.ctl.network_prune(&|_| false).await.unwrap().is_empty());
}
