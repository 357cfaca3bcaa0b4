//! Names on fakes: the generated hosts, hostname and resolv.conf files, the embedded
//! resolver's names and serving, and legacy links (hosts entries, environment, linkers
//! rewritten, icc=false openings).

use cove_model::EndpointSettings;

use super::containers::{endpoints_of, etc, ipv4, run, until, until_stopped};
use super::{ctr, ctr_on, host, host_with, net};
use crate::fake::FakeHost;

/// Firewall delta lines written since `from`.
fn delta_lines(h: &FakeHost, from: usize) -> Vec<String> {
    h.firewall.log().deltas[from..].iter().flat_map(|d| d.lines().map(String::from)).collect()
}

#[tokio::test]
async fn a_user_network_container_uses_the_embedded_resolver_and_the_default_bridge_does_not() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.50.0.0/24"))).await.unwrap();
    let u = h.ctl.container_create(ctr("u", "app")).await.unwrap();
    let b = h.ctl.container_create(ctr("b", "bridge")).await.unwrap();
    // Already in the bundle written at create.
    assert!(etc(&h, &u, "resolv.conf").contains("nameserver 127.0.0.11\n"));
    assert!(!etc(&h, &b, "resolv.conf").contains("127.0.0.11"));
    h.ctl.container_start(&u).await.unwrap();
    h.ctl.container_start(&b).await.unwrap();
    assert!(etc(&h, &u, "resolv.conf").contains("nameserver 127.0.0.11\n"));
    assert!(!etc(&h, &b, "resolv.conf").contains("127.0.0.11"));
}

#[tokio::test]
async fn the_resolver_is_served_in_a_user_network_sandbox_only_while_it_runs() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.51.0.0/24"))).await.unwrap();
    let u = run(&h, ctr("u", "app")).await;
    let b = run(&h, ctr("b", "bridge")).await;
    assert!(h.ctl.dns_served(&u));
    assert!(!h.ctl.dns_served(&b));
    let path = super::containers::sandbox(&h, &u);
    let binds = h.kernel.model().journal_of("bind ");
    assert_eq!(binds, [format!("bind 127.0.0.11:53 in {}", path.display())]);
    h.ctl.container_stop(&u, Some(1)).await.unwrap();
    assert!(!h.ctl.dns_served(&u), "still served after stop");
}

#[tokio::test]
async fn the_resolver_is_served_before_the_process_starts() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.52.0.0/24"))).await.unwrap();
    let u = h.ctl.container_create(ctr("u", "app")).await.unwrap();
    h.runtime.model().fail_start.insert(u.to_string());
    h.ctl.container_start(&u).await.unwrap_err();
    // The bind happened (before the refused start), and was undone with the sandbox.
    assert_eq!(h.kernel.model().journal_of("bind ").len(), 1);
    assert!(!h.ctl.dns_served(&u));
}

#[tokio::test]
async fn containers_on_a_user_network_resolve_each_others_names_and_aliases() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.53.0.0/24"))).await.unwrap();
    h.ctl.network_create(net("other", Some("10.54.0.0/24"))).await.unwrap();
    let s = EndpointSettings { aliases: vec!["database".into()], ..Default::default() };
    let db = run(&h, ctr_on("db", "app", s)).await;
    let web = run(&h, ctr("web", "app")).await;
    let stranger = run(&h, ctr("stranger", "other")).await;
    let ip = std::net::IpAddr::V4(ipv4(&h, "db").await);
    assert_eq!(h.ctl.dns_lookup(&web, "db"), Some(vec![ip]));
    assert_eq!(h.ctl.dns_lookup(&web, "database"), Some(vec![ip]));
    assert_eq!(h.ctl.dns_lookup(&web, "db.app"), Some(vec![ip]));
    assert_eq!(h.ctl.dns_lookup(&web, cove_model::short_id(&db)), Some(vec![ip]));
    assert_eq!(h.ctl.dns_lookup(&stranger, "db"), None, "seen from another network");
    // Stopped: the name goes.
    h.ctl.container_stop(&db, Some(1)).await.unwrap();
    assert_eq!(h.ctl.dns_lookup(&web, "db"), None);
}

#[tokio::test]
async fn a_link_on_a_user_network_is_an_alias_for_the_linker_only() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.55.0.0/24"))).await.unwrap();
    run(&h, ctr("db", "app")).await;
    let mut req = ctr("web", "app");
    req.host_config.links = vec!["db:data".into()];
    let web = run(&h, req).await;
    let other = run(&h, ctr("other", "app")).await;
    let ip = std::net::IpAddr::V4(ipv4(&h, "db").await);
    assert_eq!(h.ctl.dns_lookup(&web, "data"), Some(vec![ip]));
    assert_eq!(h.ctl.dns_lookup(&other, "data"), None);
}

#[tokio::test]
async fn dns_servers_search_and_options_go_to_resolv_conf_on_the_default_bridge() {
    let h = host().await;
    let mut req = ctr("b", "bridge");
    req.host_config.dns = vec!["9.9.9.9".into()];
    req.host_config.dns_search = vec!["example.org".into()];
    req.host_config.dns_options = vec!["ndots:2".into()];
    let id = run(&h, req).await;
    let r = etc(&h, &id, "resolv.conf");
    assert_eq!(r, "search example.org\nnameserver 9.9.9.9\noptions ndots:2\n");
}

#[tokio::test]
async fn hosts_and_hostname_files_carry_the_address_hostname_domain_and_extra_hosts() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.config.hostname = "box".into();
    req.config.domainname = "example.org".into();
    req.host_config.extra_hosts = vec!["db:10.0.0.5".into()];
    let id = run(&h, req).await;
    let hosts = etc(&h, &id, "hosts");
    assert!(hosts.contains("10.0.0.5\tdb\n"), "{hosts}");
    assert!(hosts.ends_with("172.17.0.2\tbox.example.org box\n"), "{hosts}");
    assert_eq!(etc_file(&h, &id, "hostname"), "box\n");
    assert_eq!(h.runtime.model().bundles[id.as_str()].hostname, "box");
}

fn etc_file(h: &FakeHost, id: &str, name: &str) -> String {
    h.runtime.model().etc[&(id.to_string(), name.to_string())].clone()
}

#[tokio::test]
async fn a_container_mode_container_gets_its_targets_resolv_conf() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.56.0.0/24"))).await.unwrap();
    run(&h, ctr("target", "app")).await;
    let side = run(&h, ctr("side", "container:target")).await;
    assert!(etc(&h, &side, "resolv.conf").contains("nameserver 127.0.0.11"));
}

#[tokio::test]
async fn connecting_a_bridge_container_to_a_user_network_switches_on_the_resolver() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.57.0.0/24"))).await.unwrap();
    let id = run(&h, ctr("web", "bridge")).await;
    assert!(!h.ctl.dns_served(&id));
    h.ctl.network_connect("app", "web", Default::default()).await.unwrap();
    assert!(h.ctl.dns_served(&id));
    assert!(etc_file(&h, &id, "resolv.conf").contains("nameserver 127.0.0.11"));
    assert!(etc_file(&h, &id, "hosts").contains("10.57.0.2\t"), "hosts not rewritten");
}

// ---- legacy links on the default bridge -----------------------------------------------

#[tokio::test]
async fn a_link_gives_a_hosts_entry_and_docker_link_variables() {
    let h = host().await;
    let mut db = ctr("db", "bridge");
    db.config.exposed_ports = vec!["5432/tcp".into()];
    db.config.env = vec!["PGUSER=app".into()];
    let db = run(&h, db).await;
    let db_host = super::containers::record(&h, &db).unwrap().config.hostname;
    let mut req = ctr("web", "bridge");
    req.host_config.links = vec!["db:data".into()];
    req.config.env = vec!["DATA_NAME=mine".into()];
    let web = run(&h, req).await;
    let hosts = etc(&h, &web, "hosts");
    assert!(hosts.contains(&format!("172.17.0.2\tdata {db_host} db\n")), "{hosts}");
    let env = h.runtime.model().bundles[&web].env.clone();
    for want in [
        "DATA_PORT=tcp://172.17.0.2:5432",
        "DATA_PORT_5432_TCP_ADDR=172.17.0.2",
        "DATA_ENV_PGUSER=app",
        "DATA_NAME=mine",
    ] {
        assert!(env.iter().any(|e| e == want), "{want} missing: {env:?}");
    }
    assert!(!env.iter().any(|e| e == "DATA_NAME=/web/data"), "-e did not win: {env:?}");
}

#[tokio::test]
async fn a_linker_on_a_user_network_gets_no_hosts_entry_for_the_link() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.58.0.0/24"))).await.unwrap();
    run(&h, ctr("db", "app")).await;
    let mut req = ctr("web", "app");
    req.host_config.links = vec!["db:data".into()];
    let web = run(&h, req).await;
    assert!(!etc(&h, &web, "hosts").contains("data"));
}

#[tokio::test]
async fn a_link_to_a_container_off_the_default_bridge_is_refused_at_start() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.59.0.0/24"))).await.unwrap();
    run(&h, ctr("db", "app")).await;
    let mut req = ctr("web", "bridge");
    req.host_config.links = vec!["db".into()];
    let web = h.ctl.container_create(req).await.unwrap();
    let e = h.ctl.container_start(&web).await.unwrap_err();
    assert!(e.message.contains("does not belong to the default network"), "{}", e.message);
    assert!(endpoints_of(&h, &web).is_empty());
}

#[tokio::test]
async fn a_linkers_hosts_file_follows_the_linked_container_to_its_new_address() {
    let h = host().await;
    let db = run(&h, ctr("db", "bridge")).await;
    let mut req = ctr("web", "bridge");
    req.host_config.links = vec!["db".into()];
    let web = run(&h, req).await;
    assert!(etc(&h, &web, "hosts").contains("172.17.0.2\tdb "));
    h.ctl.container_stop(&db, Some(1)).await.unwrap();
    // Its address goes to another container; db comes back on a new one.
    run(&h, ctr("squatter", "bridge")).await;
    h.ctl.container_start(&db).await.unwrap();
    assert_eq!(ipv4(&h, "db").await.to_string(), "172.17.0.4");
    let hosts = etc(&h, &web, "hosts");
    assert!(hosts.contains("172.17.0.4\tdb "), "{hosts}");
    assert!(!hosts.contains("172.17.0.2\tdb "), "{hosts}");
}

#[tokio::test]
async fn with_icc_off_a_link_opens_the_linked_containers_exposed_ports() {
    let h = host_with(|c| c.icc = false).await;
    let mut db = ctr("db", "bridge");
    db.config.exposed_ports = vec!["5432/tcp".into()];
    let db = run(&h, db).await;
    let mut req = ctr("web", "bridge");
    req.host_config.links = vec!["db".into()];
    let web = h.ctl.container_create(req).await.unwrap();
    let deltas = h.firewall.log().deltas.len();
    h.ctl.container_start(&web).await.unwrap();
    let from = endpoints_of(&h, &web)[0].host_ifname.clone().unwrap();
    let to = endpoints_of(&h, &db)[0].host_ifname.clone().unwrap();
    let lines = delta_lines(&h, deltas);
    assert!(
        lines.iter().any(|l| l.starts_with("add element")
            && l.contains(&from)
            && l.contains(&to)
            && l.contains("5432")),
        "{lines:#?}"
    );
    // The linked container stops: the opening goes.
    let deltas = h.firewall.log().deltas.len();
    h.runtime.exit(&db, 0);
    until_stopped(&h, &db).await;
    until("the link's elements are deleted", || {
        delta_lines(&h, deltas)
            .iter()
            .any(|l| l.starts_with("delete element") && l.contains(&to) && l.contains("5432"))
    })
    .await;
}

#[tokio::test]
async fn with_icc_on_a_link_needs_no_firewall_opening() {
    let h = host().await;
    let mut db = ctr("db", "bridge");
    db.config.exposed_ports = vec!["5432/tcp".into()];
    run(&h, db).await;
    let mut req = ctr("web", "bridge");
    req.host_config.links = vec!["db".into()];
    let web = h.ctl.container_create(req).await.unwrap();
    let deltas = h.firewall.log().deltas.len();
    h.ctl.container_start(&web).await.unwrap();
    let lines = delta_lines(&h, deltas);
    assert!(!lines.is_empty());
    assert!(!lines.iter().any(|l| l.contains("5432")), "{lines:#?}");
}

#[tokio::test]
async fn a_daemon_restart_serves_adopted_sandboxes_and_their_names_again() {
    let h = host().await;
    h.ctl.network_create(net("app", Some("10.62.0.0/24"))).await.unwrap();
    run(&h, ctr("db", "app")).await;
    let web = run(&h, ctr("web", "app")).await;
    let ip = std::net::IpAddr::V4(ipv4(&h, "db").await);
    let h2 = super::containers::daemon_restart(&h).await;
    assert!(h2.ctl.dns_served(&web), "not served after the restart");
    assert_eq!(h2.ctl.dns_lookup(&web, "db"), Some(vec![ip]));
}
