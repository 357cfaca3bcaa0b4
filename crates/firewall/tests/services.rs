//! Services (VIP load balancing, routing mesh) in the pure model: problems, determinism,
//! and the cost of a backend change (flat in the number of services).

mod common;

use common::{backend, service, services, services_with};
use cove_firewall::{FirewallModel, IngressPort, Proto, ServiceLb};

/// `n` services of three backends each on one network, IPv4 only.
fn many(n: u32) -> FirewallModel {
    let mut m = FirewallModel { service_lb: true, ..common::one_network() };
    for i in 0..n {
        let [_, _, hi, lo] = i.to_be_bytes();
        let vip = format!("172.18.{hi}.{lo}");
        let backends: Vec<String> = (1..=3).map(|b| format!("172.17.{}.{}", b + hi, lo)).collect();
        let b: Vec<(&str, bool)> = backends.iter().map(|s| (s.as_str(), true)).collect();
        m.services.push(service(&format!("{i:012x}"), &[&vip], &[(Proto::Tcp, 80)], &b));
    }
    m
}

#[test]
fn a_backend_change_costs_the_same_at_10_and_1000_services() {
    let mut sizes = Vec::new();
    for n in [10, 1000] {
        let before = many(n);
        let mut after = before.clone();
        after.services[5].backends.push(backend("172.17.9.5", true));
        assert!(after.problems().is_empty(), "{:?}", after.problems());
        // Full models, as a reconcile would give them, and partial ones (only the service
        // that changed), as the controller's hot path gives them: the same delta.
        let full = cove_firewall::element_delta(&before, &after).expect("no rule changes");
        let partial = |m: &FirewallModel| FirewallModel {
            services: vec![m.services[5].clone()],
            ..m.clone()
        };
        let hot = cove_firewall::element_delta(&partial(&before), &partial(&after)).unwrap();
        assert_eq!(full, hot);
        let text = full.render_text();
        assert_eq!(text, cove_firewall::render_delta(&before, &after));
        assert!(full.has_chain_edits() && full.to_netlink().is_none());
        // Only service 5's chains, and no element at all.
        let id = "000000000005";
        for line in text.lines() {
            assert!(line.contains(id) && !line.contains(" element "), "{line}");
        }
        let edit = full.chain_edits().next().unwrap();
        assert_eq!(edit.created().collect::<Vec<_>>(), [format!("be-{id}-ac110905")]);
        assert_eq!(edit.rewritten().collect::<Vec<_>>(), [format!("svc-{id}")]);
        assert_eq!(edit.deleted().count(), 0);
        sizes.push((n, text.len(), cove_firewall::render(&after).len()));
        // And back: the chain goes, after the service chain stopped naming it.
        let back = cove_firewall::render_delta(&after, &before);
        let flush = back.find(&format!("flush chain inet cove be-{id}-ac110905")).unwrap();
        let rewrite = back.find(&format!("flush chain inet cove svc-{id}")).unwrap();
        let delete = back.find(&format!("delete chain inet cove be-{id}-ac110905")).unwrap();
        assert!(rewrite < flush && flush < delete, "{back}");
    }
    for (n, delta, full) in &sizes {
        println!(
            "{n} services: one backend added = {delta} bytes of nft text (full ruleset {full})"
        );
    }
    assert_eq!(sizes[0].1, sizes[1].1, "the delta does not grow with the number of services");
}

#[test]
fn without_service_lb_the_ruleset_is_unchanged_and_services_are_a_problem() {
    let plain = common::one_network();
    let mut m = plain.clone();
    m.services = services().services;
    assert_eq!(cove_firewall::render(&m), cove_firewall::render(&plain));
    let problems = m.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("service_lb"), "{problems:?}");
    // Turning it on is a rule change: no element delta, a full render.
    let on = FirewallModel { service_lb: true, ..plain.clone() };
    assert!(cove_firewall::element_delta(&plain, &on).is_none());
    assert_eq!(cove_firewall::render_delta(&plain, &on), cove_firewall::render(&on));
}

#[test]
fn render_ignores_the_order_of_services_and_backends() {
    let mut m = services();
    m.services.reverse();
    for s in &mut m.services {
        s.backends.reverse();
        s.vips.reverse();
        s.ports.reverse();
    }
    assert_eq!(cove_firewall::render(&m), cove_firewall::render(&services()));
    assert!(cove_firewall::element_delta(&m, &services()).unwrap().is_empty());
}

#[test]
fn models_without_services_still_parse() {
    let json = serde_json::to_string(&common::full()).unwrap();
    let stripped = json.replace(",\"service_lb\":false,\"services\":[]", "");
    assert_ne!(stripped, json);
    let back: FirewallModel = serde_json::from_str(&stripped).unwrap();
    assert_eq!(back, common::full());
    let m = services();
    let back: FirewallModel = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back, m);
}

#[test]
fn what_cannot_be_rendered_is_reported() {
    let mut m = services();
    let bad = |id: &str| ServiceLb { id: id.into(), ..service("000000000000", &[], &[], &[]) };
    let mut wrong_family =
        service("eeeeeeeeeeee", &["fd00:88:2::100"], &[], &[("10.88.2.9", true)]);
    wrong_family.ingress_snat = Some("fd00::1".parse().unwrap());
    wrong_family.ingress = vec![IngressPort { proto: Proto::Tcp, published: 9999, target: 80 }];
    let mut shadowing =
        service("ffffffffffff", &["10.88.1.200"], &[(Proto::Tcp, 0), (Proto::Tcp, 81)], &[]);
    shadowing.ingress = vec![
        // -p 8080:80 is published by a container in `full`, and 9080 by a service.
        IngressPort { proto: Proto::Tcp, published: 8080, target: 80 },
        IngressPort { proto: Proto::Tcp, published: 9080, target: 80 },
    ];
    let mut no_snat = service("aaaaaaaaaaa1", &["10.88.1.201"], &[], &[("10.88.1.77", false)]);
    no_snat.ingress = vec![IngressPort { proto: Proto::Udp, published: 5354, target: 53 }];
    m.services.extend([
        bad("ABCDEF012345"),
        bad("short"),
        service("0123456789ab", &["10.88.1.150"], &[], &[]),
        service("aaaaaaaaaaa0", &["10.88.1.100", "224.0.0.1"], &[], &[("0.0.0.0", true)]),
        wrong_family,
        shadowing,
        no_snat,
        service("aaaaaaaaaaa2", &["10.88.1.202"], &[(Proto::Udp, 0)], &[]),
    ]);
    let problems = m.problems();
    for needle in [
        "\"ABCDEF012345\" is not 12 lowercase hex",
        "\"short\" is not 12 lowercase hex",
        "service 0123456789ab is listed more than once",
        "VIP 10.88.1.100 belongs to 0123456789ab",
        "VIP 224.0.0.1 is not unicast",
        "backend 0.0.0.0 is not usable",
        "VIP fd00:88:2::100 has no backend of its family",
        "ingress_snat fd00::1 is not a usable IPv4 address",
        "port 0/tcp",
        "no valid port, left out",
        "8080/tcp: the host port is published by a container",
        "9080/tcp: already published by service 0123456789ab",
        "1 remote backend(s) left out of the routing mesh",
        "aaaaaaaaaaa0: neither a VIP nor a routing-mesh port",
    ] {
        assert!(problems.iter().any(|p| p.contains(needle)), "{needle}: {problems:#?}");
    }
    assert_eq!(problems.len(), 15, "{problems:#?}");
    let text = cove_firewall::render(&m);
    // What was refused is not there; the first owner of a VIP keeps it.
    assert!(text.contains("10.88.1.200 . tcp . 81 : goto svc-ffffffffffff"), "{text}");
    assert!(!text.contains("ing-ffffffffffff"), "both its mesh ports were refused: {text}");
    assert!(!text.contains("10.88.1.150") && !text.contains("224.0.0.1"), "{text}");
    assert!(!text.contains("10.88.1.202"), "not opened port-less: {text}");
    assert!(text.contains("10.88.1.100 . tcp . 80 : goto svc-0123456789ab"), "{text}");
    assert!(text.contains("udp . 5354 : goto ing-aaaaaaaaaaa1"), "{text}");
    assert!(!text.contains("10.88.1.77 :"), "no SNAT for a backend left out: {text}");
}

#[test]
fn local_only_sends_only_to_local_backends_and_refuses_without_one() {
    let web = "0123456789ab";
    let m = services_with(web, |s| s.local_only = true);
    let text = cove_firewall::render(&m);
    let ing = text.split(&format!("chain ing-{web} {{")).nth(1).unwrap();
    let ing = &ing[..ing.find('}').unwrap()];
    assert!(ing.contains("mod 2") && !ing.contains("0a580132"), "{ing}");
    // The VIP still balances over every backend, the remote one included.
    let svc = text.split(&format!("chain svc-{web} {{")).nth(1).unwrap();
    assert!(svc[..svc.find('}').unwrap()].contains("0a580132"), "{svc}");
    // The service with only a remote backend and local_only refuses its mesh port.
    assert!(text.contains("ingress_noep4 {"), "{text}");
    let noep = text.split("set ingress_noep4 {").nth(1).unwrap();
    assert!(noep[..noep.find("\t}").unwrap()].contains("tcp . 9090"), "{noep}");
}
