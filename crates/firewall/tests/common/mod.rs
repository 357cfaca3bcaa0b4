//! Models shared by the golden-file tests and the `nft -c` tests.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;

use cove_firewall::{
    EndpointRules, FirewallModel, IngressPort, MacAddr, NetworkRules, Proto, PublishedPort,
    ServiceLb, ServicePort,
};

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

pub fn network(bridge: &str, v4: &[&str], v6: &[&str]) -> NetworkRules {
    NetworkRules {
        bridge: bridge.into(),
        subnets4: v4.iter().map(|s| s.parse().unwrap()).collect(),
        subnets6: v6.iter().map(|s| s.parse().unwrap()).collect(),
        internal: false,
        icc: true,
        masquerade: true,
    }
}

pub fn endpoint(bridge: &str, port: &str, v4: Option<&str>, v6: Option<&str>) -> EndpointRules {
    let ipv4 = v4.map(|s| s.parse().unwrap());
    let mac = match ipv4 {
        Some(ip) => MacAddr::from_ipv4(ip),
        None => MacAddr([0x02, 0x42, 0xfd, 0, 0, port.len() as u8]),
    };
    EndpointRules {
        bridge: bridge.into(),
        host_ifname: port.into(),
        mac,
        ipv4,
        ipv6: v6.map(|s| s.parse().unwrap()),
    }
}

pub fn port(
    proto: Proto,
    host: Option<&str>,
    hport: u16,
    ctr: &str,
    cport: u16,
    bridge: &str,
) -> PublishedPort {
    PublishedPort {
        proto,
        host_ip: host.map(|h| h.parse::<IpAddr>().unwrap()),
        host_port: hport,
        container_ip: ctr.parse().unwrap(),
        container_port: cport,
        bridge: bridge.into(),
    }
}

/// No networks at all: the tables, chains and empty sets still exist.
pub fn empty() -> FirewallModel {
    FirewallModel::default()
}

/// The default bridge network with one container and no published port.
pub fn one_network() -> FirewallModel {
    FirewallModel {
        networks: vec![network("cove0", &["172.17.0.0/16"], &[])],
        endpoints: vec![endpoint("cove0", "cv0123456789ab", Some("172.17.0.2"), None)],
        published: vec![],
        links: vec![],
        drop_foreign_forwarding: false,
        vxlan: None,
        service_lb: false,
        services: vec![],
        encryption: None,
    }
}

/// Two dual-stack networks with containers and ports of every kind, an internal network
/// and an icc=false network.
pub fn full() -> FirewallModel {
    let mut internal = network("br-1a1a1a1a1a1a", &["10.88.3.0/24"], &[]);
    internal.internal = true;
    let mut noicc = network("br-2b2b2b2b2b2b", &["10.88.4.0/24"], &[]);
    noicc.icc = false;
    noicc.masquerade = false;
    FirewallModel {
        networks: vec![
            network("br-aaaaaaaaaaaa", &["10.88.1.0/24"], &["fd00:88:1::/64"]),
            network("br-bbbbbbbbbbbb", &["10.88.2.0/24"], &["fd00:88:2::/64"]),
            internal,
            noicc,
        ],
        endpoints: vec![
            endpoint("br-aaaaaaaaaaaa", "cv000000000001", Some("10.88.1.2"), Some("fd00:88:1::2")),
            endpoint("br-aaaaaaaaaaaa", "cv000000000002", Some("10.88.1.3"), Some("fd00:88:1::3")),
            endpoint("br-bbbbbbbbbbbb", "cv000000000003", Some("10.88.2.2"), Some("fd00:88:2::2")),
            endpoint("br-1a1a1a1a1a1a", "cv000000000004", Some("10.88.3.2"), None),
            endpoint("br-2b2b2b2b2b2b", "cv000000000005", Some("10.88.4.2"), None),
            endpoint("br-2b2b2b2b2b2b", "cv000000000006", Some("10.88.4.3"), None),
        ],
        published: vec![
            // -p 8080:80 on a dual-stack container: one entry per family.
            port(Proto::Tcp, None, 8080, "10.88.1.2", 80, "br-aaaaaaaaaaaa"),
            port(Proto::Tcp, None, 8080, "fd00:88:1::2", 80, "br-aaaaaaaaaaaa"),
            // 0.0.0.0 means every address.
            port(Proto::Udp, Some("0.0.0.0"), 5353, "10.88.1.3", 53, "br-aaaaaaaaaaaa"),
            // bound to loopback
            port(Proto::Tcp, Some("127.0.0.1"), 8081, "10.88.1.3", 80, "br-aaaaaaaaaaaa"),
            port(Proto::Tcp, Some("::1"), 8081, "fd00:88:1::3", 80, "br-aaaaaaaaaaaa"),
            // bound to one host address
            port(Proto::Tcp, Some("192.0.2.10"), 8443, "10.88.2.2", 443, "br-bbbbbbbbbbbb"),
            port(Proto::Sctp, Some("2001:db8::10"), 9000, "fd00:88:2::2", 9000, "br-bbbbbbbbbbbb"),
            // icc=false network
            port(Proto::Tcp, None, 8090, "10.88.4.2", 80, "br-2b2b2b2b2b2b"),
        ],
        // on the icc=false network: cv...6 links to cv...5, which exposes 80/tcp and 53/udp
        links: vec![
            cove_firewall::LinkRule {
                from: "cv000000000006".into(),
                to: "cv000000000005".into(),
                proto: Proto::Tcp,
                port: 80,
            },
            cove_firewall::LinkRule {
                from: "cv000000000006".into(),
                to: "cv000000000005".into(),
                proto: Proto::Udp,
                port: 53,
            },
        ],
        drop_foreign_forwarding: false,
        vxlan: Some(cove_firewall::VxlanGuard {
            port: 4789,
            peers: vec!["203.0.113.11".parse().unwrap(), "203.0.113.12".parse().unwrap()],
        }),
        service_lb: false,
        services: vec![],
        encryption: Some(cove_firewall::EncryptionGuard {
            device: "cvwg0".into(),
            port: 4789,
            vnis: vec![4097, 4096],
        }),
    }
}

/// One network, and Cove enabled forwarding itself.
pub fn drop_foreign() -> FirewallModel {
    FirewallModel { drop_foreign_forwarding: true, ..one_network() }
}

/// Every golden model with its file name.
pub fn goldens() -> Vec<(&'static str, FirewallModel)> {
    vec![
        ("empty", empty()),
        ("one_network", one_network()),
        ("full", full()),
        ("drop_foreign", drop_foreign()),
        ("services_empty", services_empty()),
        ("services", services()),
    ]
}

/// `full` plus one container attached to the first network, with a published port.
pub fn full_plus_one() -> FirewallModel {
    let mut m = full();
    m.endpoints.push(endpoint(
        "br-aaaaaaaaaaaa",
        "cv000000000007",
        Some("10.88.1.4"),
        Some("fd00:88:1::4"),
    ));
    m.published.push(port(Proto::Tcp, None, 8082, "10.88.1.4", 80, "br-aaaaaaaaaaaa"));
    m
}

/// `full` after a network was removed and a new one took its subnet, and a host port
/// moved to another container.
pub fn full_reshuffled() -> FirewallModel {
    let mut m = full();
    m.networks.retain(|n| n.bridge != "br-bbbbbbbbbbbb");
    m.endpoints.retain(|e| e.bridge != "br-bbbbbbbbbbbb");
    m.published.retain(|p| p.bridge != "br-bbbbbbbbbbbb");
    m.networks.push(network("br-cccccccccccc", &["10.88.2.0/24"], &["fd00:88:2::/64"]));
    m.endpoints.push(endpoint(
        "br-cccccccccccc",
        "cv000000000008",
        Some("10.88.2.2"),
        Some("fd00:88:2::2"),
    ));
    for p in &mut m.published {
        if p.host_port == 8080 && p.container_ip.is_ipv4() {
            p.container_ip = "10.88.1.3".parse().unwrap();
        }
    }
    m
}

/// (name, before, after) pairs for the delta tests.
pub fn delta_pairs() -> Vec<(&'static str, FirewallModel, FirewallModel)> {
    vec![
        ("attach", full(), full_plus_one()),
        ("detach", full_plus_one(), full()),
        ("from_empty", empty(), full()),
        ("to_empty", full(), empty()),
        ("reshuffle", full(), full_reshuffled()),
        ("unchanged", full(), full()),
    ]
    .into_iter()
    .chain(service_delta_pairs())
    .collect()
}

pub fn backend(ip: &str, local: bool) -> cove_firewall::Backend {
    cove_firewall::Backend { ip: ip.parse().unwrap(), local }
}

pub fn service(
    id: &str,
    vips: &[&str],
    ports: &[(Proto, u16)],
    backends: &[(&str, bool)],
) -> ServiceLb {
    ServiceLb {
        id: id.into(),
        vips: vips.iter().map(|v| v.parse().unwrap()).collect(),
        ports: ports.iter().map(|&(proto, port)| ServicePort { proto, port }).collect(),
        backends: backends.iter().map(|&(ip, local)| backend(ip, local)).collect(),
        ingress: vec![],
        ingress_snat: None,
        local_only: false,
    }
}

/// Service load balancing on, no service: the static part only.
pub fn services_empty() -> FirewallModel {
    FirewallModel { service_lb: true, ..one_network() }
}

/// `full` with services of every kind: dual-stack with ports and a routing-mesh port
/// (local and remote backends), port-less, without backends, and routing mesh with
/// ingress-policy=local and no local backend.
pub fn services() -> FirewallModel {
    let mut web = service(
        "0123456789ab",
        &["10.88.1.100", "fd00:88:1::100"],
        &[(Proto::Tcp, 80), (Proto::Udp, 53)],
        &[
            ("10.88.1.2", true),
            ("10.88.1.3", true),
            ("10.88.1.50", false),
            ("fd00:88:1::2", true),
            ("fd00:88:1::3", true),
        ],
    );
    web.ingress = vec![IngressPort { proto: Proto::Tcp, published: 9080, target: 80 }];
    web.ingress_snat = Some("10.88.1.254".parse().unwrap());
    let portless = service("bbbbbbbbbbbb", &["10.88.2.100"], &[], &[("10.88.2.2", true)]);
    let mut empty = service("cccccccccccc", &["10.88.1.101"], &[(Proto::Tcp, 443)], &[]);
    empty.ingress = vec![IngressPort { proto: Proto::Tcp, published: 9443, target: 443 }];
    let mut local =
        service("dddddddddddd", &["10.88.2.101"], &[(Proto::Tcp, 80)], &[("10.88.2.50", false)]);
    local.ingress = vec![IngressPort { proto: Proto::Tcp, published: 9090, target: 80 }];
    local.ingress_snat = Some("10.88.2.254".parse().unwrap());
    local.local_only = true;
    FirewallModel { service_lb: true, services: vec![web, portless, empty, local], ..full() }
}

/// `services` with one change to the service `id`.
pub fn services_with(id: &str, change: impl FnOnce(&mut ServiceLb)) -> FirewallModel {
    let mut m = services();
    change(m.services.iter_mut().find(|s| s.id == id).expect("service"));
    m
}

/// (name, before, after) pairs of service changes; their deltas are golden files too.
pub fn service_delta_pairs() -> Vec<(&'static str, FirewallModel, FirewallModel)> {
    let web = "0123456789ab";
    let added = services_with(web, |s| s.backends.push(backend("10.88.1.4", true)));
    let zero = services_with(web, |s| s.backends.clear());
    let mut without_portless = services();
    without_portless.services.retain(|s| s.id != "bbbbbbbbbbbb");
    let mut without_web = services();
    without_web.services.retain(|s| s.id != web);
    let ingress = services_with("bbbbbbbbbbbb", |s| {
        s.ingress = vec![
            IngressPort { proto: Proto::Tcp, published: 9444, target: 443 },
            IngressPort { proto: Proto::Udp, published: 5300, target: 53 },
        ];
    });
    let local_only = services_with(web, |s| s.local_only = true);
    let local_backend =
        services_with("dddddddddddd", |s| s.backends.push(backend("10.88.2.3", true)));
    vec![
        ("svc_add_backend", services(), added.clone()),
        ("svc_remove_backend", added, services()),
        ("svc_zero_backends", services(), zero.clone()),
        ("svc_first_backend", zero, services()),
        ("svc_add_portless", without_portless.clone(), services()),
        ("svc_remove_portless", services(), without_portless),
        ("svc_remove_service", services(), without_web),
        ("svc_add_ingress", services(), ingress),
        ("svc_local_only", services(), local_only),
        ("svc_local_only_gets_a_local_backend", services(), local_backend),
        ("svc_enable", one_network(), services_empty()),
    ]
}
