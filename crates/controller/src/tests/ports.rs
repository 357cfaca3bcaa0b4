//! Published ports on fakes: `-p` and `-P` as reserved and recorded, host addresses,
//! conflicts, release, and the firewall's published-port elements.

use std::net::IpAddr;

use cove_model::{ErrorKind, PortBinding, Proto, Status};

use super::containers::{
    daemon_restart, endpoints, endpoints_of, record, run, sandbox, tcp, until,
};
use super::{ctr, host, net};
use crate::fake::FakeHost;
use crate::{IpamConfigRequest, NetworkCreate};

fn ports_of(h: &FakeHost, id: &str) -> Vec<PortBinding> {
    record(h, id).unwrap().state.ports
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

/// Element lines of the firewall deltas written since `from`.
fn delta_lines(h: &FakeHost, from: usize) -> Vec<String> {
    h.firewall.log().deltas[from..].iter().flat_map(|d| d.lines().map(String::from)).collect()
}

#[tokio::test]
async fn a_fixed_port_is_reserved_recorded_and_published_to_the_container() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = h.ctl.container_create(req).await.unwrap();
    let deltas = h.firewall.log().deltas.len();
    h.ctl.container_start(&id).await.unwrap();
    let want = vec![PortBinding { host_ip: ip("0.0.0.0"), ..tcp(80, 8080) }];
    assert_eq!(ports_of(&h, &id), want);
    assert_eq!(h.kernel.model().ports[id.as_str()], want);
    let lines = delta_lines(&h, deltas);
    assert!(
        lines.iter().any(|l| l.starts_with("add element")
            && l.contains("8080")
            && l.contains("172.17.0.2")
            && l.contains("80")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn an_ephemeral_port_gets_a_host_port_from_the_dynamic_range() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![tcp(80, 0), tcp(443, 0)];
    let id = run(&h, req).await;
    let p = ports_of(&h, &id);
    assert_eq!(p.len(), 2);
    assert!(p.iter().all(|b| b.host_port >= 32768), "{p:?}");
    assert_ne!(p[0].host_port, p[1].host_port);
    assert_eq!((p[0].container_port, p[1].container_port), (80, 443));
}

#[tokio::test]
async fn a_range_is_published_port_by_port_as_recorded() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = (0..3).map(|i| tcp(8000 + i, 9000 + i)).collect();
    let id = run(&h, req).await;
    let got: Vec<(u16, u16)> =
        ports_of(&h, &id).iter().map(|b| (b.container_port, b.host_port)).collect();
    assert_eq!(got, [(8000, 9000), (8001, 9001), (8002, 9002)]);
}

#[tokio::test]
async fn publish_all_publishes_every_exposed_port_including_the_images() {
    let h = host().await;
    h.runtime.model().images.get_mut("busybox:latest").unwrap().exposed_ports =
        vec!["443/tcp".into()];
    let mut req = ctr("web", "bridge");
    req.config.exposed_ports = vec!["80/tcp".into(), "53/udp".into()];
    req.host_config.publish_all_ports = true;
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = run(&h, req).await;
    let p = ports_of(&h, &id);
    assert_eq!(p.len(), 3, "{p:?}");
    let find = |port, proto| p.iter().find(|b| b.container_port == port && b.protocol == proto);
    assert_eq!(find(80, Proto::Tcp).unwrap().host_port, 8080, "-p wins over -P");
    assert!(find(53, Proto::Udp).unwrap().host_port >= 32768);
    assert!(find(443, Proto::Tcp).unwrap().host_port >= 32768);
}

#[tokio::test]
async fn exposed_ports_without_publish_all_are_not_published() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.config.exposed_ports = vec!["80/tcp".into()];
    let id = run(&h, req).await;
    assert!(ports_of(&h, &id).is_empty());
    assert!(!h.kernel.model().ports.contains_key(&id));
}

#[tokio::test]
async fn the_networks_host_binding_ipv4_is_the_default_host_address() {
    let h = host().await;
    let mut n = net("app", Some("10.40.0.0/24"));
    n.options.insert("com.docker.network.bridge.host_binding_ipv4".into(), "127.0.0.1".into());
    h.ctl.network_create(n).await.unwrap();
    let mut req = ctr("web", "app");
    req.host_config.port_bindings =
        vec![tcp(80, 8080), PortBinding { host_ip: ip("127.0.0.2"), ..tcp(81, 8081) }];
    let id = run(&h, req).await;
    let p = ports_of(&h, &id);
    assert_eq!(p[0].host_ip, ip("127.0.0.1"));
    assert_eq!(p[1].host_ip, ip("127.0.0.2"), "an explicit address was overridden");
}

#[tokio::test]
async fn a_port_taken_by_another_container_is_a_conflict_and_leaves_nothing() {
    let h = host().await;
    let mut a = ctr("a", "bridge");
    a.host_config.port_bindings = vec![tcp(80, 8080)];
    let a = run(&h, a).await;
    let mut b = ctr("b", "bridge");
    b.host_config.port_bindings = vec![tcp(81, 8080)];
    let b = h.ctl.container_create(b).await.unwrap();
    let deltas = h.firewall.log().deltas.len();
    let e = h.ctl.container_start(&b).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    assert!(e.message.contains("port is already allocated"), "{}", e.message);
    assert!(e.message.contains("start container b"), "{}", e.message);
    assert!(!h.runtime.running(&b));
    assert!(!h.kernel.model().netns.contains(&sandbox(&h, &b)));
    assert!(endpoints_of(&h, &b).is_empty());
    assert_eq!(record(&h, &b).unwrap().state.status, Status::Created);
    assert_eq!(h.firewall.log().deltas.len(), deltas, "the firewall heard of b");
    // a keeps its port; b's address went back to the pool.
    assert_eq!(h.kernel.model().ports[&a][0].host_port, 8080);
    let c = run(&h, ctr("c", "bridge")).await;
    assert_eq!(endpoints_of(&h, &c)[0].ipv4.unwrap().addr().to_string(), "172.17.0.3");
}

#[tokio::test]
async fn a_port_released_on_stop_can_be_taken_by_another_container() {
    let h = host().await;
    let mut a = ctr("a", "bridge");
    a.host_config.port_bindings = vec![tcp(80, 8080)];
    let a = run(&h, a).await;
    h.ctl.container_stop(&a, Some(1)).await.unwrap();
    assert!(record(&h, &a).unwrap().state.ports.is_empty());
    assert!(h.kernel.model().ports.is_empty());
    let mut b = ctr("b", "bridge");
    b.host_config.port_bindings = vec![tcp(80, 8080)];
    let b = run(&h, b).await;
    assert_eq!(ports_of(&h, &b)[0].host_port, 8080);
}

#[tokio::test]
async fn the_same_port_on_other_protocols_or_addresses_does_not_conflict() {
    let h = host().await;
    let mut a = ctr("a", "bridge");
    a.host_config.port_bindings = vec![PortBinding { host_ip: ip("127.0.0.1"), ..tcp(80, 8080) }];
    run(&h, a).await;
    let mut b = ctr("b", "bridge");
    b.host_config.port_bindings = vec![
        PortBinding { host_ip: ip("127.0.0.2"), ..tcp(80, 8080) },
        PortBinding { protocol: Proto::Udp, ..tcp(80, 8080) },
    ];
    let b = run(&h, b).await;
    assert_eq!(ports_of(&h, &b).len(), 2);
    // But all addresses clash with one.
    let mut c = ctr("c", "bridge");
    c.host_config.port_bindings = vec![tcp(80, 8080)];
    let c = h.ctl.container_create(c).await.unwrap();
    assert_eq!(h.ctl.container_start(&c).await.unwrap_err().kind, ErrorKind::Conflict);
}

#[tokio::test]
async fn the_published_port_elements_go_on_stop() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = run(&h, req).await;
    let deltas = h.firewall.log().deltas.len();
    h.runtime.exit(&id, 0);
    until("the ports' elements are deleted", || {
        delta_lines(&h, deltas)
            .iter()
            .any(|l| l.starts_with("delete element") && l.contains("8080"))
    })
    .await;
    assert!(
        !delta_lines(&h, deltas).iter().any(|l| l.starts_with("add element")),
        "{:#?}",
        delta_lines(&h, deltas)
    );
}

fn dual_stack(name: &str, v4: &str, v6: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        enable_ipv6: true,
        ipam_config: [v4, v6]
            .iter()
            .map(|s| IpamConfigRequest { subnet: Some(s.parse().unwrap()), ..Default::default() })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn on_a_dual_stack_network_a_port_is_published_on_both_families() {
    let h = host().await;
    h.ctl.network_create(dual_stack("v6net", "10.41.0.0/24", "fd00:41::/64")).await.unwrap();
    let mut req = ctr("web", "v6net");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = h.ctl.container_create(req).await.unwrap();
    let deltas = h.firewall.log().deltas.len();
    h.ctl.container_start(&id).await.unwrap();
    let ips: Vec<Option<IpAddr>> = ports_of(&h, &id).iter().map(|b| b.host_ip).collect();
    assert_eq!(ips, [ip("0.0.0.0"), ip("::")]);
    let ep = &endpoints_of(&h, &id)[0];
    let v6 = ep.ipv6.expect("an IPv6 address").addr().to_string();
    let lines = delta_lines(&h, deltas);
    assert!(lines.iter().any(|l| l.contains(&v6) && l.contains("8080")), "{v6}: {lines:#?}");
    assert!(lines.iter().any(|l| l.contains("10.41.0.2") && l.contains("8080")), "{lines:#?}");
}

#[tokio::test]
async fn on_an_ipv4_only_network_a_port_is_published_on_ipv4_only() {
    let h = host().await;
    h.ctl.network_create(net("v4net", Some("10.42.0.0/24"))).await.unwrap();
    let mut req = ctr("web", "v4net");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = run(&h, req).await;
    assert_eq!(ports_of(&h, &id).len(), 1);
    assert!(endpoints(&h)[0].ipv6.is_none());
}

#[tokio::test]
async fn host_networking_publishes_nothing() {
    let h = host().await;
    let mut req = ctr("web", "host");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = run(&h, req).await;
    assert!(ports_of(&h, &id).is_empty());
    assert!(h.kernel.model().ports.is_empty());
}

#[tokio::test]
async fn an_ipv6_loopback_port_is_reserved_on_ipv6_loopback_only() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![PortBinding { host_ip: ip("::1"), ..tcp(80, 8080) }];
    let id = run(&h, req).await;
    assert_eq!(ports_of(&h, &id), [PortBinding { host_ip: ip("::1"), ..tcp(80, 8080) }]);
}

#[tokio::test]
async fn ports_are_held_again_after_a_daemon_restart_and_released_on_a_later_exit() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![tcp(80, 0)];
    let id = run(&h, req).await;
    let bound = ports_of(&h, &id);
    let h2 = daemon_restart(&h).await;
    assert_eq!(h2.kernel.model().ports[id.as_str()], bound, "not the same ephemeral port");
    h2.runtime.exit(&id, 0);
    until("the ports are released", || !h2.kernel.model().ports.contains_key(&id)).await;
}
