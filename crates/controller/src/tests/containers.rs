//! Containers on fakes: create (validation, records, bundle), start (sandbox, joins,
//! firewall, runtime) and its rollbacks, stop/kill/restart/rm/wait, and a daemon restart
//! with containers running. Helpers shared by the other container test files live here.

use std::time::Duration;

use cove_model::{
    ContainerRecord, EndpointRecord, EndpointSettings, ErrorKind, NetworkMode, PortBinding, Proto,
    Status,
};
use cove_runtime::BundleNetwork;
use cove_store::Table;

use super::{ctr, ctr_on, host, host_with, net};
use crate::fake::{FakeHost, FakeProcess};
use crate::WaitCondition;

/// The stored record of container `id`.
pub(super) fn record(h: &FakeHost, id: &str) -> Option<ContainerRecord> {
    h.store.get(Table::Containers, id).unwrap()
}

/// Every stored container record.
pub(super) fn containers(h: &FakeHost) -> Vec<ContainerRecord> {
    h.store.list(Table::Containers).unwrap().into_iter().map(|(_, c)| c).collect()
}

/// Every stored endpoint record.
pub(super) fn endpoints(h: &FakeHost) -> Vec<EndpointRecord> {
    h.store.list(Table::Endpoints).unwrap().into_iter().map(|(_, e)| e).collect()
}

/// Stored endpoint records of one container.
pub(super) fn endpoints_of(h: &FakeHost, id: &str) -> Vec<EndpointRecord> {
    endpoints(h).into_iter().filter(|e| e.container_id == id).collect()
}

/// Polls (yielding to the monitor tasks) until `f` holds; panics after a bounded wait.
pub(super) async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Until container `id`'s record is no longer Running (or gone); the record if any.
pub(super) async fn until_stopped(h: &FakeHost, id: &str) -> Option<ContainerRecord> {
    until("the container is recorded stopped", || {
        record(h, id).is_none_or(|c| c.state.status != Status::Running)
    })
    .await;
    record(h, id)
}

/// Create and start.
pub(super) async fn run(h: &FakeHost, req: crate::ContainerCreate) -> String {
    let id = h.ctl.container_create(req).await.unwrap();
    assert!(h.ctl.container_start(&id).await.unwrap());
    id.to_string()
}

/// `-p <host_port>:<container_port>/tcp`.
pub(super) fn tcp(container_port: u16, host_port: u16) -> PortBinding {
    PortBinding { container_port, protocol: Proto::Tcp, host_ip: None, host_port }
}

/// The container's IPv4 address on its first network while running.
pub(super) async fn ipv4(h: &FakeHost, reference: &str) -> std::net::Ipv4Addr {
    let v = h.ctl.container_get(reference).await.unwrap();
    v.networks[0].1.as_ref().expect("endpoint while running").ipv4.unwrap().addr()
}

/// The sandbox path the controller uses for container `id`.
pub(super) fn sandbox(h: &FakeHost, id: &str) -> std::path::PathBuf {
    h.cfg.exec_root.join("netns").join(cove_model::short_id(id))
}

/// A generated file of a container as last written (bundle or rewrite).
pub(super) fn etc(h: &FakeHost, id: &str, name: &str) -> String {
    let m = h.runtime.model();
    if let Some(s) = m.etc.get(&(id.to_string(), name.to_string())) {
        return s.clone();
    }
    let b = m.bundles.get(id).expect("a bundle");
    match name {
        "hosts" => b.hosts.clone(),
        "resolv.conf" => b.resolv_conf.clone(),
        other => panic!("no {other} in the bundle"),
    }
}

// ---- create -------------------------------------------------------------------------

#[tokio::test]
async fn create_stores_a_created_record_and_writes_the_bundle_without_touching_the_kernel() {
    let h = host().await;
    let journal = h.kernel.model().journal.len();
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    let c = record(&h, &id).expect("record stored");
    assert_eq!(c.name, "web");
    assert_eq!(c.state.status, Status::Created);
    assert_eq!(c.host_config.network_mode, NetworkMode::Sandbox);
    assert_eq!(c.config.image_id, crate::fake::busybox().id);
    assert_eq!(c.config.hostname, cove_model::short_id(&id));
    let bridge = h.ctl.network_list().await.into_iter().find(|n| n.record.name == "bridge");
    assert_eq!(c.networks[0].0, bridge.unwrap().record.id);
    {
        let m = h.runtime.model();
        let b = &m.bundles[id.as_str()];
        assert_eq!(b.args, ["sleep", "600"]);
        assert_eq!(b.env, ["PATH=/bin"]);
        assert_eq!(b.cwd, "/");
        assert_eq!(b.network, BundleNetwork::Sandbox);
        assert!(b.hosts.starts_with("127.0.0.1\tlocalhost\n"), "{}", b.hosts);
        assert!(m.journal.is_empty(), "nothing started: {:?}", m.journal);
    }
    assert_eq!(h.kernel.model().journal.len(), journal, "create touched the kernel");
    assert!(endpoints(&h).is_empty(), "endpoints exist only while running");
}

#[tokio::test]
async fn create_without_a_name_generates_distinct_adjective_scientist_names() {
    let h = host().await;
    let mut names = vec![];
    for _ in 0..5 {
        let mut req = ctr("x", "bridge");
        req.name = None;
        let id = h.ctl.container_create(req).await.unwrap();
        let n = record(&h, &id).unwrap().name;
        let (a, b) = n.split_once('_').unwrap_or_else(|| panic!("not adjective_name: {n}"));
        assert!(!a.is_empty() && b.chars().next().unwrap().is_ascii_lowercase(), "{n}");
        names.push(n);
    }
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

#[tokio::test]
async fn create_with_an_invalid_name_is_refused_and_writes_nothing() {
    let h = host().await;
    let e = h.ctl.container_create(ctr("bad name!", "bridge")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput, "{e}");
    assert!(e.message.contains("invalid container name"), "{}", e.message);
    assert!(containers(&h).is_empty());
    assert!(h.runtime.model().bundles.is_empty());
}

#[tokio::test]
async fn create_strips_a_leading_slash_from_the_name() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("/web", "bridge")).await.unwrap();
    assert_eq!(record(&h, &id).unwrap().name, "web");
    assert_eq!(h.ctl.container_get("/web").await.unwrap().record.id, id);
}

#[tokio::test]
async fn create_with_a_taken_name_is_a_conflict_naming_the_owner() {
    let h = host().await;
    let first = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    let e = h.ctl.container_create(ctr("web", "bridge")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains(first.as_str()), "{}", e.message);
    assert_eq!(containers(&h).len(), 1);
    assert_eq!(h.runtime.model().bundles.len(), 1);
}

#[tokio::test]
async fn create_of_a_missing_image_is_not_found_and_writes_nothing() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.config.image = "nginx".into();
    let e = h.ctl.container_create(req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("No such image: nginx"), "{}", e.message);
    assert!(containers(&h).is_empty());
    assert!(h.runtime.model().bundles.is_empty());
    let (past, _) = h.ctl.events_subscribe();
    assert!(!past.iter().any(|e| e.action == "create" && e.kind == crate::EventType::Container));
}

#[tokio::test]
async fn create_without_a_command_takes_the_images_entrypoint_and_cmd() {
    let h = host().await;
    h.runtime.model().images.get_mut("busybox:latest").unwrap().entrypoint = vec!["/init".into()];
    let mut req = ctr("web", "bridge");
    req.config.cmd.clear();
    let id = h.ctl.container_create(req).await.unwrap();
    let c = record(&h, &id).unwrap();
    assert_eq!(c.config.entrypoint, ["/init"]);
    assert_eq!(c.config.cmd, ["sh"]);
    assert_eq!(h.runtime.model().bundles[id.as_str()].args, ["/init", "sh"]);
}

#[tokio::test]
async fn create_with_a_cmd_keeps_it_after_the_images_entrypoint() {
    let h = host().await;
    h.runtime.model().images.get_mut("busybox:latest").unwrap().entrypoint = vec!["/init".into()];
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    assert_eq!(h.runtime.model().bundles[id.as_str()].args, ["/init", "sleep", "600"]);
}

#[tokio::test]
async fn create_without_any_command_is_refused() {
    let h = host().await;
    h.runtime.model().images.get_mut("busybox:latest").unwrap().cmd.clear();
    let mut req = ctr("web", "bridge");
    req.config.cmd.clear();
    let e = h.ctl.container_create(req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(e.message, "no command specified");
    assert!(containers(&h).is_empty());
}

#[tokio::test]
async fn create_puts_the_images_env_before_the_containers_and_keeps_its_workdir() {
    let h = host().await;
    h.runtime.model().images.get_mut("busybox:latest").unwrap().working_dir = "/srv".into();
    let mut req = ctr("web", "bridge");
    req.config.env = vec!["A=1".into()];
    let id = h.ctl.container_create(req).await.unwrap();
    let m = h.runtime.model();
    assert_eq!(m.bundles[id.as_str()].env, ["PATH=/bin", "A=1"]);
    assert_eq!(m.bundles[id.as_str()].cwd, "/srv");
}

#[tokio::test]
async fn create_with_an_empty_or_default_network_mode_is_on_the_default_bridge() {
    let h = host().await;
    for (name, mode) in [("a", ""), ("b", "default")] {
        let id = h.ctl.container_create(ctr(name, mode)).await.unwrap();
        let c = record(&h, &id).unwrap();
        assert_eq!(c.host_config.network_mode_name, "bridge", "{mode:?}");
        assert_eq!(c.host_config.network_mode, NetworkMode::Sandbox);
        assert_eq!(c.networks.len(), 1);
    }
}

#[tokio::test]
async fn create_on_a_user_network_records_it_with_the_endpoint_settings() {
    let h = host().await;
    let nid = h.ctl.network_create(net("app", Some("10.20.0.0/24"))).await.unwrap();
    let s = EndpointSettings { aliases: vec!["api".into()], ..Default::default() };
    let id = h.ctl.container_create(ctr_on("web", "app", s.clone())).await.unwrap();
    let c = record(&h, &id).unwrap();
    assert_eq!(c.networks, vec![(nid, s)]);
    assert_eq!(c.host_config.network_mode, NetworkMode::Sandbox);
}

#[tokio::test]
async fn create_on_an_unknown_network_is_not_found() {
    let h = host().await;
    let e = h.ctl.container_create(ctr("web", "nosuch")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(containers(&h).is_empty());
}

#[tokio::test]
async fn create_with_the_same_network_twice_is_refused() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.21.0.0/24"))).await.unwrap();
    let mut req = ctr("web", "app");
    req.endpoints.push(("app".into(), Default::default()));
    req.endpoints.push(("app".into(), Default::default()));
    let e = h.ctl.container_create(req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("given twice"), "{}", e.message);
}

#[tokio::test]
async fn create_with_an_address_outside_the_subnet_is_refused() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.22.0.0/24"))).await.unwrap();
    let s =
        EndpointSettings { ipv4_address: Some("10.99.0.5".parse().unwrap()), ..Default::default() };
    let e = h.ctl.container_create(ctr_on("web", "app", s)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("outside the subnet 10.22.0.0/24"), "{}", e.message);
}

#[tokio::test]
async fn create_with_an_address_on_the_default_bridge_is_refused() {
    let h = host().await;
    let s = EndpointSettings {
        ipv4_address: Some("172.17.0.9".parse().unwrap()),
        ..Default::default()
    };
    let e = h.ctl.container_create(ctr_on("web", "bridge", s)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("user defined networks only"), "{}", e.message);
}

#[tokio::test]
async fn create_with_host_networking_takes_the_hosts_name_and_starts_without_a_sandbox() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "host")).await.unwrap();
    let c = record(&h, &id).unwrap();
    assert_eq!(c.host_config.network_mode, NetworkMode::Host);
    assert_ne!(c.config.hostname, cove_model::short_id(&id));
    assert!(!c.config.hostname.is_empty());
    assert_eq!(h.runtime.model().bundles[id.as_str()].network, BundleNetwork::Host);
    h.ctl.container_start(&id).await.unwrap();
    assert!(h.kernel.model().netns.is_empty(), "host mode made a sandbox");
    assert_eq!(
        h.runtime.model().processes[id.as_str()],
        FakeProcess::Running { pid: record(&h, &id).unwrap().state.pid, netns: None }
    );
    assert!(endpoints(&h).is_empty());
}

#[tokio::test]
async fn create_with_host_networking_refuses_aliases_and_other_networks() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.23.0.0/24"))).await.unwrap();
    let s = EndpointSettings { aliases: vec!["a".into()], ..Default::default() };
    let e = h.ctl.container_create(ctr_on("a", "host", s)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("conflicting options: ip or alias"), "{}", e.message);
    let mut req = ctr("b", "host");
    req.endpoints.push(("app".into(), Default::default()));
    let e = h.ctl.container_create(req).await.unwrap_err();
    assert!(e.message.contains("with network mode host"), "{}", e.message);
    assert!(containers(&h).is_empty());
}

#[tokio::test]
async fn a_none_container_gets_a_sandbox_without_interfaces() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "none")).await.unwrap();
    assert_eq!(record(&h, &id).unwrap().host_config.network_mode, NetworkMode::None);
    h.ctl.container_start(&id).await.unwrap();
    {
        let k = h.kernel.model();
        assert!(k.netns.contains(&sandbox(&h, &id)));
        assert!(k.journal_of("apply create veth").is_empty(), "{:?}", k.journal);
    }
    assert!(endpoints(&h).is_empty());
    h.ctl.container_stop(&id, Some(1)).await.unwrap();
    assert!(h.kernel.model().netns.is_empty(), "the none sandbox was kept");
}

#[tokio::test]
async fn a_container_mode_container_joins_the_targets_sandbox_and_hostname() {
    let h = host().await;
    let t = run(&h, ctr("target", "bridge")).await;
    let id = h.ctl.container_create(ctr("side", "container:target")).await.unwrap();
    let c = record(&h, &id).unwrap();
    assert_eq!(c.host_config.network_mode, NetworkMode::Container(t.clone()));
    assert_eq!(c.config.hostname, record(&h, &t).unwrap().config.hostname);
    let netns_before = h.kernel.model().netns.len();
    h.ctl.container_start(&id).await.unwrap();
    assert_eq!(h.kernel.model().netns.len(), netns_before, "a second sandbox");
    match &h.runtime.model().processes[id.as_str()] {
        FakeProcess::Running { netns, .. } => assert_eq!(netns.as_deref(), Some(&*sandbox(&h, &t))),
        p => panic!("{p:?}"),
    }
    // Its hosts file lists the target's address.
    let ip = ipv4(&h, "target").await;
    assert!(etc(&h, &id, "hosts").contains(&ip.to_string()));
}

#[tokio::test]
async fn a_container_mode_start_needs_the_target_running() {
    let h = host().await;
    h.ctl.container_create(ctr("target", "bridge")).await.unwrap();
    let id = h.ctl.container_create(ctr("side", "container:target")).await.unwrap();
    let e = h.ctl.container_start(&id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    assert!(e.message.contains("non running container"), "{}", e.message);
    assert!(!h.runtime.running(&id));
    assert!(h.kernel.model().netns.is_empty());
}

#[tokio::test]
async fn a_container_mode_refuses_its_own_network_settings() {
    let h = host().await;
    h.ctl.container_create(ctr("target", "bridge")).await.unwrap();
    let mut hn = ctr("a", "container:target");
    hn.config.hostname = "mine".into();
    let mut dns = ctr("b", "container:target");
    dns.host_config.dns = vec!["1.1.1.1".into()];
    let mut add = ctr("c", "container:target");
    add.host_config.extra_hosts = vec!["x:1.2.3.4".into()];
    let ip = ctr_on(
        "d",
        "container:target",
        EndpointSettings { aliases: vec!["x".into()], ..Default::default() },
    );
    let mut other = ctr("e", "container:target");
    other.endpoints.push(("bridge".into(), Default::default()));
    for (req, what) in [
        (hn, "hostname"),
        (dns, "dns or add-host"),
        (add, "dns or add-host"),
        (ip, "ip, mac-address or alias"),
        (other, "network endpoints"),
    ] {
        let e = h.ctl.container_create(req).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert_eq!(e.message, format!("conflicting options: {what} and the network mode"));
    }
    assert_eq!(containers(&h).len(), 1);
}

#[tokio::test]
async fn a_container_mode_on_a_missing_container_is_not_found() {
    let h = host().await;
    let e = h.ctl.container_create(ctr("side", "container:ghost")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("ghost"), "{}", e.message);
}

#[tokio::test]
async fn create_refuses_an_invalid_hostname_dns_server_search_and_option() {
    let h = host().await;
    let mut hn = ctr("a", "bridge");
    hn.config.hostname = "two words".into();
    let mut srv = ctr("b", "bridge");
    srv.host_config.dns = vec!["dns.example".into()];
    let mut search = ctr("c", "bridge");
    search.host_config.dns_search = vec!["bad domain".into()];
    let mut opt = ctr("d", "bridge");
    opt.host_config.dns_options = vec!["ndots:many".into()];
    let mut dom = ctr("e", "bridge");
    dom.config.domainname = "a\nb".into();
    for (req, what) in [
        (hn, "invalid hostname"),
        (srv, "invalid --dns server"),
        (search, "invalid --dns-search"),
        (opt, "invalid --dns-option"),
        (dom, "invalid domainname"),
    ] {
        let e = h.ctl.container_create(req).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{what}: {e}");
        assert!(e.message.contains(what), "{what}: {}", e.message);
    }
    assert!(containers(&h).is_empty());
}

#[tokio::test]
async fn create_refuses_malformed_extra_hosts_and_resolves_host_gateway() {
    let h = host().await;
    for bad in ["nocolon", ":1.2.3.4", "x:notanip"] {
        let mut req = ctr("a", "bridge");
        req.host_config.extra_hosts = vec![bad.into()];
        let e = h.ctl.container_create(req).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{bad}");
        assert!(e.message.contains("invalid extra host"), "{bad}: {}", e.message);
    }
    let mut req = ctr("a", "bridge");
    req.host_config.extra_hosts = vec!["gw:host-gateway".into(), "v6:[2001:db8::1]".into()];
    let id = h.ctl.container_create(req).await.unwrap();
    let hosts = etc(&h, &id, "hosts");
    assert!(hosts.contains("172.17.0.1\tgw\n"), "{hosts}");
    assert!(hosts.contains("2001:db8::1\tv6\n"), "{hosts}");
}

#[tokio::test]
async fn publishing_on_ipv6_loopback_is_refused_with_the_ipv6_firewall_off() {
    let h = host_with(|c| c.firewall6 = false).await;
    let mut req = ctr("a", "bridge");
    req.host_config.port_bindings =
        vec![PortBinding { host_ip: Some("::1".parse().unwrap()), ..tcp(80, 8080) }];
    let e = h.ctl.container_create(req.clone()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("publishing on [::1] (80/tcp)"), "{}", e.message);
    assert!(e.message.contains("--ip6tables=false"), "{}", e.message);
    assert!(containers(&h).is_empty());
    // With the IPv6 firewall on, it is accepted.
    let h = host().await;
    h.ctl.container_create(req).await.unwrap();
}

#[tokio::test]
async fn publish_all_with_exposed_ports_is_refused_without_the_firewall() {
    let h = host_with(|c| c.firewall = false).await;
    let mut req = ctr("a", "bridge");
    req.host_config.publish_all_ports = true;
    req.config.exposed_ports = vec!["80/tcp".into()];
    let e = h.ctl.container_create(req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("needs the firewall"), "{}", e.message);
    // -P with nothing exposed publishes nothing: accepted.
    let mut req = ctr("b", "bridge");
    req.host_config.publish_all_ports = true;
    h.ctl.container_create(req).await.unwrap();
}

// ---- links at create ----------------------------------------------------------------

#[tokio::test]
async fn a_link_is_stored_as_docker_stores_it() {
    let h = host().await;
    h.ctl.container_create(ctr("db", "bridge")).await.unwrap();
    let mut req = ctr("web", "bridge");
    req.host_config.links = vec!["db:data".into()];
    let id = h.ctl.container_create(req).await.unwrap();
    assert_eq!(record(&h, &id).unwrap().host_config.links, ["/db:/web/data"]);
}

#[tokio::test]
async fn a_link_to_a_missing_container_is_not_found() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.links = vec!["ghost".into()];
    let e = h.ctl.container_create(req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("could not get container for ghost"), "{}", e.message);
    assert!(containers(&h).is_empty());
}

#[tokio::test]
async fn links_are_refused_with_host_and_none_networking_and_to_a_host_container() {
    let h = host().await;
    h.ctl.container_create(ctr("db", "bridge")).await.unwrap();
    h.ctl.container_create(ctr("hostdb", "host")).await.unwrap();
    for (mode, link, want) in [
        ("host", "db", "host type networking can't be used with links"),
        ("none", "db", "links need a network"),
        ("bridge", "hostdb", "it uses host networking"),
    ] {
        let mut req = ctr("web", mode);
        req.host_config.links = vec![link.into()];
        let e = h.ctl.container_create(req).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{mode} {link}");
        assert!(e.message.contains(want), "{mode} {link}: {}", e.message);
    }
    assert_eq!(containers(&h).len(), 2);
}

#[tokio::test]
async fn a_network_scoped_link_on_the_default_bridge_is_refused() {
    let h = host().await;
    h.ctl.container_create(ctr("db", "bridge")).await.unwrap();
    let s = EndpointSettings { links: vec!["db".into()], ..Default::default() };
    let e = h.ctl.container_create(ctr_on("web", "bridge", s)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert!(e.message.contains("user-defined networks"), "{}", e.message);
}

// ---- start ----------------------------------------------------------------------------

#[tokio::test]
async fn start_creates_the_sandbox_then_joins_it_with_address_and_default_route() {
    let h = host().await;
    let nid = h.ctl.network_create(net("app", Some("10.30.0.0/24"))).await.unwrap();
    let id = h.ctl.container_create(ctr("web", "app")).await.unwrap();
    let from = h.kernel.model().journal.len();
    h.ctl.container_start(&id).await.unwrap();
    let path = sandbox(&h, &id);
    let k = h.kernel.model();
    let j = &k.journal[from..];
    let pos = |what: &str| {
        j.iter().position(|l| l.contains(what)).unwrap_or_else(|| panic!("{what}: {j:#?}"))
    };
    let bridge = format!("br-{}", &nid[..12]);
    let netns = pos(&format!("create netns {}", path.display()));
    let veth = pos(&format!("(master {bridge}) peer eth0 in {}", path.display()));
    let addr = pos("add address 10.30.0.2/24 to eth0 in");
    let route = pos("add route 0.0.0.0/0 via 10.30.0.1 dev eth0 in");
    assert!(netns < veth && veth < addr && addr < route, "{j:#?}");
    assert!(k.netns.contains(&path));
    let ep = endpoints_of(&h, &id);
    assert_eq!(ep.len(), 1);
    let host_end = ep[0].host_ifname.clone().unwrap();
    assert_eq!(k.links[&host_end].master.as_deref(), Some(bridge.as_str()));
    assert_eq!(k.links[&host_end].peer_netns.as_deref(), Some(&*path));
}

#[tokio::test]
async fn start_records_running_with_pid_sandbox_and_endpoint() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    assert!(h.ctl.container_start(&id).await.unwrap());
    let c = record(&h, &id).unwrap();
    assert_eq!(c.state.status, Status::Running);
    let path = sandbox(&h, &id);
    assert_eq!(c.state.sandbox_key, path.display().to_string());
    assert_eq!(
        h.runtime.model().processes[id.as_str()],
        FakeProcess::Running { pid: c.state.pid, netns: Some(path) }
    );
    assert_ne!(c.state.started_at, cove_model::ZERO_TIME);
    let ep = endpoints_of(&h, &id);
    assert_eq!(ep.len(), 1);
    assert_eq!(ep[0].ifname, "eth0");
    assert_eq!(ep[0].ipv4.unwrap().to_string(), "172.17.0.2/16");
    assert_eq!(ep[0].gateway4.unwrap().to_string(), "172.17.0.1");
    assert_eq!(h.runtime.model().journal, [format!("start {id}")]);
}

#[tokio::test]
async fn start_of_a_running_container_is_ok_false_and_changes_nothing() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    let journal = h.kernel.model().journal.len();
    let deltas = h.firewall.log().deltas.len();
    assert!(!h.ctl.container_start(&id).await.unwrap());
    assert_eq!(h.kernel.model().journal.len(), journal);
    assert_eq!(h.firewall.log().deltas.len(), deltas);
    assert_eq!(h.runtime.model().journal.len(), 1, "started twice");
}

#[tokio::test]
async fn start_of_an_unknown_container_is_not_found() {
    let h = host().await;
    let e = h.ctl.container_start("ghost").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.message, "No such container: ghost");
}

#[tokio::test]
async fn start_writes_the_anti_spoofing_elements_of_the_new_port() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    let deltas = h.firewall.log().deltas.len();
    h.ctl.container_start(&id).await.unwrap();
    let host_end = endpoints_of(&h, &id)[0].host_ifname.clone().unwrap();
    let fw = h.firewall.log();
    let new = fw.deltas[deltas..].join("");
    assert!(new.contains(&host_end), "{new}");
    assert!(new.contains("172.17.0.2"), "{new}");
    assert!(new.lines().all(|l| l.starts_with("add element")), "{new}");
}

#[tokio::test]
async fn start_on_two_networks_routes_via_the_first_that_is_not_internal() {
    let h = host().await;
    let mut internal = net("back", Some("10.31.0.0/24"));
    internal.internal = true;
    h.ctl.network_create(internal).await.unwrap();
    h.ctl.network_create(net("front", Some("10.32.0.0/24"))).await.unwrap();
    let mut req = ctr("web", "back");
    req.endpoints.push(("front".into(), Default::default()));
    let id = h.ctl.container_create(req).await.unwrap();
    let from = h.kernel.model().journal.len();
    h.ctl.container_start(&id).await.unwrap();
    let k = h.kernel.model();
    let routes: Vec<_> =
        k.journal[from..].iter().filter(|l| l.contains("add route 0.0.0.0/0")).collect();
    assert_eq!(routes.len(), 1, "{routes:?}");
    assert!(routes[0].contains("via 10.32.0.1 dev eth1"), "{routes:?}");
}

// ---- start failures: nothing left ---------------------------------------------------

/// After a refused start of `id`: no sandbox, no owned veth of it, no endpoint records, not
/// running, not Running in the store, and its ports released.
async fn assert_nothing_left(h: &FakeHost, id: &str) {
    {
        let k = h.kernel.model();
        assert!(!k.netns.contains(&sandbox(h, id)), "sandbox left: {:?}", k.netns);
        let path = sandbox(h, id);
        assert!(
            !k.links.values().any(|l| l.peer_netns.as_deref() == Some(&*path)),
            "veth left: {:?}",
            k.links
        );
        assert!(!k.ports.contains_key(id), "ports left: {:?}", k.ports);
    }
    assert!(endpoints_of(h, id).is_empty(), "endpoint records left");
    assert!(!h.runtime.running(id));
    assert_ne!(record(h, id).unwrap().state.status, Status::Running);
    let v = h.ctl.container_get(id).await.unwrap();
    assert!(v.networks.iter().all(|(_, ep)| ep.is_none()), "endpoint in memory");
}

/// A second container on the same network gets the first free address: `want`.
async fn next_gets(h: &FakeHost, network: &str, want: &str) {
    let id = run(h, ctr("next", network)).await;
    let ep = endpoints_of(h, &id);
    assert_eq!(ep[0].ipv4.unwrap().addr().to_string(), want, "the address leaked");
}

#[tokio::test]
async fn a_refused_netns_leaves_nothing() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    h.kernel.fail_on("create netns");
    let e = h.ctl.container_start(&id).await.unwrap_err();
    assert!(e.message.contains("start container web"), "{}", e.message);
    assert!(h.kernel.model().journal_of("apply create veth").is_empty());
    assert_nothing_left(&h, &id).await;
    assert!(h.runtime.model().journal.is_empty());
    h.kernel.heal();
    next_gets(&h, "bridge", "172.17.0.2").await;
}

#[tokio::test]
async fn a_refused_veth_is_rolled_back_and_leaves_nothing() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    h.kernel.fail_on("create veth");
    let e = h.ctl.container_start(&id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert_nothing_left(&h, &id).await;
    assert!(h
        .kernel
        .model()
        .journal_of("remove netns")
        .iter()
        .any(|l| l.ends_with(&cove_model::short_id(&id).to_string())));
    h.kernel.heal();
    next_gets(&h, "bridge", "172.17.0.2").await;
}

#[tokio::test]
async fn a_refused_default_route_rolls_back_the_join() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    h.kernel.fail_on("add route");
    let deltas = h.firewall.log().deltas.len();
    h.ctl.container_start(&id).await.unwrap_err();
    {
        let k = h.kernel.model();
        assert!(!k.journal_of("rollback delete link cv").is_empty(), "{:#?}", k.journal);
    }
    assert_nothing_left(&h, &id).await;
    assert_eq!(h.firewall.log().deltas.len(), deltas, "the firewall heard of it");
    assert!(h.runtime.model().journal.is_empty());
    h.kernel.heal();
    next_gets(&h, "bridge", "172.17.0.2").await;
}

#[tokio::test]
async fn a_refused_firewall_write_leaves_nothing_and_never_starts_the_process() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = h.ctl.container_create(req).await.unwrap();
    h.firewall.log().fail = true;
    let e = h.ctl.container_start(&id).await.unwrap_err();
    assert!(e.message.contains("program the firewall"), "{}", e.message);
    assert!(h.runtime.model().journal.is_empty(), "started without its firewall");
    assert_nothing_left(&h, &id).await;
    h.firewall.log().fail = false;
    // The host port is free again, and so is the address.
    let mut again = ctr("next", "bridge");
    again.host_config.port_bindings = vec![tcp(80, 8080)];
    let n = run(&h, again).await;
    assert_eq!(endpoints_of(&h, &n)[0].ipv4.unwrap().addr().to_string(), "172.17.0.2");
}

#[tokio::test]
async fn a_refused_runtime_start_releases_everything_and_records_the_error() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = h.ctl.container_create(req).await.unwrap();
    h.runtime.model().fail_start.insert(id.to_string());
    let deltas = h.firewall.log().deltas.len();
    let e = h.ctl.container_start(&id).await.unwrap_err();
    assert!(e.message.contains("failed to start"), "{}", e.message);
    assert_nothing_left(&h, &id).await;
    let c = record(&h, &id).unwrap();
    assert_eq!(c.state.exit_code, 127);
    assert!(c.state.error.contains("failed to start"), "{}", c.state.error);
    // The firewall got the port before the runtime was asked, and lost it after.
    {
        let fw = h.firewall.log();
        let new = &fw.deltas[deltas..];
        assert!(new.len() >= 2, "{new:?}");
        assert!(new[0].contains("add element") && new[0].contains("8080"), "{new:?}");
        assert!(new.last().unwrap().contains("delete element"), "{new:?}");
    }
    assert!(h.runtime.model().journal.contains(&format!("cleanup {id}")));
    h.runtime.model().fail_start.clear();
    next_gets(&h, "bridge", "172.17.0.2").await;
}

#[tokio::test]
async fn a_refused_resolver_socket_leaves_nothing() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.33.0.0/24"))).await.unwrap();
    let id = h.ctl.container_create(ctr("web", "app")).await.unwrap();
    h.kernel.fail_on("bind 127.0.0.11:53");
    let e = h.ctl.container_start(&id).await.unwrap_err();
    assert!(e.message.contains("embedded DNS"), "{}", e.message);
    assert!(h.runtime.model().journal.iter().all(|l| !l.starts_with("start")));
    assert_nothing_left(&h, &id).await;
    assert!(!h.ctl.dns_served(&id));
    h.kernel.heal();
    next_gets(&h, "app", "10.33.0.2").await;
}

#[tokio::test]
async fn a_start_refused_for_a_stopped_link_target_touches_nothing() {
    let h = host().await;
    h.ctl.container_create(ctr("db", "bridge")).await.unwrap();
    let mut req = ctr("web", "bridge");
    req.host_config.links = vec!["db".into()];
    let id = h.ctl.container_create(req).await.unwrap();
    let journal = h.kernel.model().journal.len();
    let e = h.ctl.container_start(&id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains("Cannot link to a non running container: /db AS /web/db"));
    assert_eq!(h.kernel.model().journal.len(), journal);
}

#[tokio::test]
async fn a_failed_start_can_be_retried() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    h.kernel.fail_on("create veth");
    h.ctl.container_start(&id).await.unwrap_err();
    h.kernel.heal();
    assert!(h.ctl.container_start(&id).await.unwrap());
    assert_eq!(record(&h, &id).unwrap().state.status, Status::Running);
    assert_eq!(endpoints_of(&h, &id).len(), 1);
    assert!(record(&h, &id).unwrap().state.error.is_empty());
}

// ---- stop, kill, restart, exit --------------------------------------------------------

#[tokio::test]
async fn stop_releases_the_sandbox_endpoints_neighbours_ports_and_firewall_elements() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = run(&h, req).await;
    let host_end = endpoints_of(&h, &id)[0].host_ifname.clone().unwrap();
    let addr: std::net::IpAddr = "172.17.0.2".parse().unwrap();
    assert!(h
        .kernel
        .model()
        .neighbours
        .iter()
        .any(|(ns, l, a)| ns == "host" && l == "cove0" && *a == addr));
    let deltas = h.firewall.log().deltas.len();
    assert!(h.ctl.container_stop(&id, Some(5)).await.unwrap());
    {
        let k = h.kernel.model();
        assert!(!k.netns.contains(&sandbox(&h, &id)));
        assert!(!k.links.contains_key(&host_end), "veth left");
        assert!(!k.neighbours.iter().any(|(_, _, a)| *a == addr), "{:?}", k.neighbours);
        assert!(k.neighbours.iter().all(|(ns, _, _)| ns == "host"), "{:?}", k.neighbours);
        assert!(!k.ports.contains_key(&id));
    }
    assert!(endpoints(&h).is_empty());
    until("the removal reaches the firewall", || {
        h.firewall.log().deltas[deltas..].iter().any(|d| d.contains("delete element"))
    })
    .await;
    let fw = h.firewall.log();
    let gone = fw.deltas[deltas..].join("");
    assert!(gone.contains(&host_end) && gone.contains("8080"), "{gone}");
}

#[tokio::test]
async fn stop_records_the_exit_of_sigterm() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    h.ctl.container_stop(&id, None).await.unwrap();
    let c = record(&h, &id).unwrap();
    assert_eq!(c.state.status, Status::Exited);
    assert_eq!(c.state.exit_code, 128 + libc::SIGTERM);
    assert_eq!(c.state.pid, 0);
    assert!(c.state.sandbox_key.is_empty());
    assert_ne!(c.state.finished_at, cove_model::ZERO_TIME);
    assert!(h.runtime.model().journal.contains(&format!("kill {id} {}", libc::SIGTERM)));
}

#[tokio::test]
async fn stop_of_a_stopped_container_is_ok_false() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    assert!(!h.ctl.container_stop(&id, None).await.unwrap());
    assert!(h.runtime.model().journal.is_empty());
}

#[tokio::test]
async fn kill_sends_the_signal_and_sigkill_is_recorded_as_137() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    h.ctl.container_kill(&id, libc::SIGUSR1).await.unwrap();
    assert!(h.runtime.running(&id), "SIGUSR1 ended it");
    h.ctl.container_kill(&id, libc::SIGKILL).await.unwrap();
    let c = until_stopped(&h, &id).await.unwrap();
    assert_eq!(c.state.status, Status::Exited);
    assert_eq!(c.state.exit_code, 137);
    assert!(h.kernel.model().netns.is_empty());
}

#[tokio::test]
async fn kill_of_a_container_that_is_not_running_is_a_conflict() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    let e = h.ctl.container_kill(&id, libc::SIGKILL).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains("is not running"), "{}", e.message);
    assert!(h.runtime.model().journal.is_empty());
}

#[tokio::test]
async fn a_container_exiting_by_itself_is_recorded_with_its_code_and_released() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    h.runtime.exit(&id, 3);
    let c = until_stopped(&h, &id).await.unwrap();
    assert_eq!(c.state.status, Status::Exited);
    assert_eq!(c.state.exit_code, 3);
    assert!(c.state.ports.is_empty());
    assert!(h.kernel.model().netns.is_empty());
    assert!(endpoints(&h).is_empty());
    assert!(h.runtime.model().journal.contains(&format!("cleanup {id}")));
    // It starts again, on the same address.
    h.ctl.container_start(&id).await.unwrap();
    assert_eq!(endpoints_of(&h, &id)[0].ipv4.unwrap().to_string(), "172.17.0.2/16");
}

#[tokio::test]
async fn restart_runs_it_again_with_a_new_pid() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    let before = record(&h, &id).unwrap();
    h.ctl.container_restart(&id, Some(1)).await.unwrap();
    let after = record(&h, &id).unwrap();
    assert_eq!(after.state.status, Status::Running);
    assert_ne!(after.state.pid, before.state.pid);
    assert_eq!(h.kernel.model().netns.len(), 1);
    assert_eq!(endpoints(&h).len(), 1);
    let starts = h.runtime.model().journal.iter().filter(|l| l.starts_with("start")).count();
    assert_eq!(starts, 2);
    // The first run's monitor does not record the second run's exit as its own.
    h.runtime.exit(&id, 5);
    assert_eq!(until_stopped(&h, &id).await.unwrap().state.exit_code, 5);
}

#[tokio::test]
async fn restart_of_a_created_container_starts_it() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    h.ctl.container_restart(&id, Some(1)).await.unwrap();
    assert_eq!(record(&h, &id).unwrap().state.status, Status::Running);
}

#[tokio::test]
async fn auto_remove_removes_the_record_and_the_files_on_exit() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.auto_remove = true;
    let id = run(&h, req).await;
    h.runtime.exit(&id, 0);
    until("the record is removed", || record(&h, &id).is_none()).await;
    assert!(!h.runtime.model().bundles.contains_key(&id));
    assert!(endpoints(&h).is_empty());
    assert!(h.kernel.model().netns.is_empty());
    assert_eq!(h.ctl.container_get(&id).await.unwrap_err().kind, ErrorKind::NotFound);
}

// ---- rm -------------------------------------------------------------------------------

#[tokio::test]
async fn rm_of_a_running_container_without_force_is_a_conflict() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    let e = h.ctl.container_remove("web", false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains("container is running"), "{}", e.message);
    assert!(h.runtime.running(&id));
    assert_eq!(record(&h, &id).unwrap().state.status, Status::Running);
    assert_eq!(endpoints(&h).len(), 1);
}

#[tokio::test]
async fn rm_force_kills_then_removes_everything() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = run(&h, req).await;
    h.ctl.container_remove("web", true).await.unwrap();
    assert!(record(&h, &id).is_none());
    {
        let m = h.runtime.model();
        let kill = m.journal.iter().position(|l| *l == format!("kill {id} {}", libc::SIGKILL));
        let remove = m.journal.iter().position(|l| *l == format!("remove {id}"));
        assert!(kill.is_some() && kill < remove, "{:?}", m.journal);
        assert!(!m.bundles.contains_key(&id));
    }
    assert!(endpoints(&h).is_empty());
    assert!(h.kernel.model().netns.is_empty());
    assert!(h.kernel.model().ports.is_empty());
}

#[tokio::test]
async fn rm_of_a_stopped_container_removes_its_record_and_bundle() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    h.ctl.container_remove(&id, false).await.unwrap();
    assert!(containers(&h).is_empty());
    assert!(h.runtime.model().bundles.is_empty());
    // The name is free again.
    h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
}

#[tokio::test]
async fn rm_is_refused_while_another_container_shares_its_netns() {
    let h = host().await;
    let t = run(&h, ctr("target", "bridge")).await;
    run(&h, ctr("side", "container:target")).await;
    let e = h.ctl.container_remove("target", true).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains("side shares its network namespace"), "{}", e.message);
    assert!(h.runtime.running(&t), "the refused rm killed it");
    assert!(record(&h, &t).is_some());
}

#[tokio::test]
async fn rm_of_an_unknown_container_is_not_found() {
    let h = host().await;
    assert_eq!(h.ctl.container_remove("ghost", true).await.unwrap_err().kind, ErrorKind::NotFound);
}

// ---- wait -------------------------------------------------------------------------------

#[tokio::test]
async fn wait_on_a_stopped_container_returns_its_last_code_at_once() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    h.runtime.exit(&id, 7);
    until_stopped(&h, &id).await;
    assert_eq!(h.ctl.container_wait(&id).await.unwrap(), 7);
}

#[tokio::test]
async fn wait_on_a_running_container_returns_the_code_of_its_exit() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    let ctl = h.ctl.clone();
    let i = id.clone();
    let waiter = tokio::spawn(async move { ctl.container_wait(&i).await });
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    h.runtime.exit(&id, 42);
    assert_eq!(waiter.await.unwrap().unwrap(), 42);
}

#[tokio::test]
async fn wait_next_exit_on_a_stopped_container_waits_for_the_next_run() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    h.runtime.exit(&id, 1);
    until_stopped(&h, &id).await;
    let ctl = h.ctl.clone();
    let i = id.clone();
    let waiter =
        tokio::spawn(async move { ctl.container_wait_until(&i, WaitCondition::NextExit).await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(!waiter.is_finished(), "returned the old exit");
    h.ctl.container_start(&id).await.unwrap();
    h.runtime.exit(&id, 9);
    assert_eq!(waiter.await.unwrap().unwrap(), 9);
}

#[tokio::test]
async fn wait_removed_returns_when_the_container_is_removed() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    let ctl = h.ctl.clone();
    let i = id.clone();
    let waiter =
        tokio::spawn(async move { ctl.container_wait_until(&i, WaitCondition::Removed).await });
    h.runtime.exit(&id, 4);
    until_stopped(&h, &id).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(!waiter.is_finished(), "returned on exit, not removal");
    h.ctl.container_remove(&id, false).await.unwrap();
    assert_eq!(waiter.await.unwrap().unwrap(), 4);
}

#[tokio::test]
async fn list_shows_every_container_newest_first_with_live_endpoints() {
    let h = host().await;
    let a = h.ctl.container_create(ctr("a", "bridge")).await.unwrap();
    let b = run(&h, ctr("b", "bridge")).await;
    let l = h.ctl.container_list().await;
    let ids: Vec<&str> = l.iter().map(|v| v.record.id.as_str()).collect();
    assert_eq!(ids, [b.as_str(), a.as_str()]);
    assert!(l[0].networks[0].1.is_some());
    assert!(l[1].networks[0].1.is_none());
}

// ---- daemon restart -------------------------------------------------------------------

/// The daemon restarts: its port reservations (sockets) die with it.
pub(super) async fn daemon_restart(h: &FakeHost) -> FakeHost {
    h.kernel.model().ports.clear();
    h.restart().await.expect("restart")
}

#[tokio::test]
async fn a_daemon_restart_adopts_running_containers_and_holds_their_ports_again() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = run(&h, req).await;
    let before = record(&h, &id).unwrap();
    let h2 = daemon_restart(&h).await;
    let c = h2.ctl.container_get(&id).await.unwrap();
    assert_eq!(c.record.state.status, Status::Running);
    assert_eq!(c.record.state.pid, before.state.pid);
    assert!(c.networks[0].1.is_some(), "endpoint forgotten");
    assert!(h2.kernel.model().netns.contains(&sandbox(&h2, &id)), "sandbox removed");
    let ports = h2.kernel.model().ports.get(&id).cloned().expect("ports held again");
    assert_eq!(ports.iter().map(|p| p.host_port).collect::<Vec<_>>(), [8080]);
    // Another container cannot take them.
    let mut other = ctr("other", "bridge");
    other.host_config.port_bindings = vec![tcp(80, 8080)];
    let o = h2.ctl.container_create(other).await.unwrap();
    assert_eq!(h2.ctl.container_start(&o).await.unwrap_err().kind, ErrorKind::Conflict);
}

#[tokio::test]
async fn a_daemon_restart_reattaches_the_monitor() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    let h2 = daemon_restart(&h).await;
    h2.runtime.exit(&id, 12);
    // The new controller's own view (the store is shared with the old one).
    let mut v = h2.ctl.container_get(&id).await.unwrap();
    for _ in 0..1000 {
        if v.record.state.status != Status::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        v = h2.ctl.container_get(&id).await.unwrap();
    }
    assert_eq!(v.record.state.status, Status::Exited);
    assert_eq!(v.record.state.exit_code, 12);
}

#[tokio::test]
async fn a_container_that_exited_while_the_daemon_was_down_is_recorded_and_released() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.port_bindings = vec![tcp(80, 8080)];
    let id = run(&h, req).await;
    // Exits unseen (no notification reaches the old controller's monitor).
    h.runtime.model().processes.insert(id.clone(), FakeProcess::Exited(2));
    let h2 = daemon_restart(&h).await;
    let c = h2.ctl.container_get(&id).await.unwrap();
    assert_eq!(c.record.state.status, Status::Exited);
    assert_eq!(c.record.state.exit_code, 2);
    assert!(c.record.state.ports.is_empty());
    assert_eq!(record(&h2, &id).unwrap().state.status, Status::Exited);
    assert!(endpoints(&h2).is_empty());
    {
        let k = h2.kernel.model();
        assert!(!k.netns.contains(&sandbox(&h2, &id)));
        assert!(!k.ports.contains_key(&id));
    }
    // Its address is free: the next container gets it.
    next_gets(&h2, "bridge", "172.17.0.2").await;
}

#[tokio::test]
async fn an_auto_remove_container_that_exited_while_down_is_removed_at_restart() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.auto_remove = true;
    let id = run(&h, req).await;
    h.runtime.model().processes.insert(id.clone(), FakeProcess::Exited(0));
    let h2 = daemon_restart(&h).await;
    assert!(record(&h2, &id).is_none());
    assert!(h2.ctl.container_get(&id).await.is_err());
    assert!(endpoints(&h2).is_empty());
}

#[tokio::test]
async fn wait_on_an_auto_remove_container_returns_its_exit_code() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.host_config.auto_remove = true;
    let id = run(&h, req).await;
    let ctl = h.ctl.clone();
    let i = id.clone();
    let waiter = tokio::spawn(async move { ctl.container_wait(&i).await });
    tokio::task::yield_now().await;
    h.runtime.exit(&id, 6);
    assert_eq!(waiter.await.unwrap().unwrap(), 6);
    assert!(record(&h, &id).is_none());
}
