//! Services: virtual IPs balanced over backends by the host, in `table inet cove`, after
//! kube-proxy's nftables mode (`pkg/proxy/nftables/proxier.go`). No IPVS (absent on this
//! kernel) and no per-sandbox state: one set of chains per service, in the host's netns.
//!
//! What exists with [`FirewallModel::service_lb`] (static, whatever the services):
//!
//! * `nat_prerouting` / `nat_output` first look up `ip daddr . meta l4proto . th dport` in
//!   the verdict maps `svc4`/`svc6` (`goto svc-<id>`); anything else to a VIP is
//!   accepted there untouched (no published port or routing-mesh DNAT on a VIP), and
//!   `fib daddr type local` + `meta l4proto . th dport` in `ingress4` sends routing-mesh
//!   traffic to `goto ing-<id>`.
//! * `svc_input` / `svc_forward` (filter, priority -10): a VIP key of a service with no
//!   backend (`svc_noep4/6`) or a routing-mesh port with none (`ingress_noep4`) goes to
//!   `svc_reject` (TCP reset, ICMP port unreachable: the client fails at once, no
//!   timeout); anything else to a VIP is dropped and counted (`drop_vip_other`), so the
//!   VIP, a local address of the host, never exposes the host's own services. VIP
//!   traffic between two different bridges is dropped (`drop_isolation`). NAT chains
//!   cannot reject, hence the split: NAT picks a backend, filter refuses what it could not.
//! * `nat_postrouting`: hairpin (mark [`MARK_SVC_MASQ`]) masquerade, routing-mesh SNAT of
//!   remote backends (mark [`MARK_SVC_SNAT`], source from `ingress_snat4`), then VIP
//!   traffic is left alone: the backend sees the client's own address.
//!
//! Per service (created, rewritten and deleted by deltas, see [`crate::element_delta`]):
//!
//! * `svc-<id>` (IPv4) / `svc6-<id>` (IPv6): `numgen random mod N vmap { i : goto be-… }`.
//! * `be-<id>-<backend hex>`: the hairpin mark when the client is the backend, then DNAT
//!   to the backend, port unchanged (a VIP's port is the backend's port, as in Docker).
//! * `ing-<id>`: the same dispatch over the routing-mesh backends (only local ones with
//!   `local_only`), to `ib-<id>-<backend hex>`: the SNAT mark for a remote backend, DNAT
//!   with the published port translated to the target port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::elements::{Contents, Family, FieldValue};
use crate::model::{FirewallModel, Proto};
use crate::names::*;
use crate::ruleset::Chain;

/// One service as seen on one network: its virtual IP(s) there, its ports, and its
/// backends' addresses on that network. A service on two networks is two entries (their
/// backends' addresses differ, and a VIP must only lead into its own network).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServiceLb {
    /// 12 lowercase hex digits, unique per entry (for instance derived from the service and
    /// network ids): the chains are named after it (`svc-<id>`, `be-<id>-…`).
    pub id: String,
    /// The VIPs: at most one IPv4 and one IPv6 address is usual (one network). An IPv4 VIP
    /// balances over the IPv4 backends, an IPv6 VIP over the IPv6 ones. May be empty for a
    /// service reached only through the routing mesh.
    pub vips: Vec<IpAddr>,
    /// The ports clients reach on the VIP, the same on the backend (Docker's VIP
    /// semantics). Empty: every TCP and UDP port, to the same port on the backend (Docker's
    /// fwmark services).
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// The backends (running, healthy tasks). Empty: connections to the VIP's service
    /// ports are refused (TCP reset / ICMP port unreachable).
    #[serde(default)]
    pub backends: Vec<Backend>,
    /// Routing-mesh ports: published on every local IPv4 address of the host, balanced over
    /// the IPv4 backends.
    #[serde(default)]
    pub ingress: Vec<IngressPort>,
    /// This host's own node address on the service's network: the source address remote
    /// backends see for routing-mesh traffic, so their replies return to this host. IPv4.
    /// Without it, remote backends are left out of the routing mesh (a problem).
    #[serde(default)]
    pub ingress_snat: Option<IpAddr>,
    /// `ingress-policy=local`: the routing mesh sends only to backends on this host (the
    /// client's address is always kept); with none here, it refuses.
    #[serde(default)]
    pub local_only: bool,
}

/// A port of a service's VIP (and of its backends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ServicePort {
    /// Transport protocol.
    pub proto: Proto,
    /// The port, on the VIP and on the backend (not 0).
    pub port: u16,
}

/// One backend of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Backend {
    /// The backend's address on the service's network.
    pub ip: IpAddr,
    /// The backend runs on this host (routing mesh: keeps the client's address; remote
    /// backends get the SNAT address).
    pub local: bool,
}

/// A routing-mesh port: `published` on every local IPv4 address of the host, to `target`
/// on a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IngressPort {
    /// Transport protocol.
    pub proto: Proto,
    /// The port published on the host (not 0).
    pub published: u16,
    /// The backend's port (not 0).
    pub target: u16,
}

/// Whether `id` is 12 lowercase hex digits.
fn valid_id(id: &str) -> bool {
    id.len() == 12 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// An address a VIP, backend or SNAT source can be: unicast, not unspecified, loopback
/// or multicast.
fn usable(ip: IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || broadcast)
}

/// A backend address in chain names: 8 or 32 hex digits.
fn hex(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{:08x}", u32::from(a)),
        IpAddr::V6(a) => format!("{:032x}", u128::from(a)),
    }
}

fn addr(ip: IpAddr) -> FieldValue {
    match ip {
        IpAddr::V4(a) => FieldValue::Ipv4(a),
        IpAddr::V6(a) => FieldValue::Ipv6(a),
    }
}

/// `svc-<id>` or `svc6-<id>`.
fn svc_chain(id: &str, v6: bool) -> String {
    format!("{}{id}", if v6 { CHAIN_SVC6_PREFIX } else { CHAIN_SVC4_PREFIX })
}

fn backend_chain(id: &str, ip: IpAddr) -> String {
    format!("{CHAIN_BACKEND_PREFIX}{id}-{}", hex(ip))
}

fn ingress_chain(id: &str) -> String {
    format!("{CHAIN_INGRESS_PREFIX}{id}")
}

fn ingress_backend_chain(id: &str, ip: Ipv4Addr) -> String {
    format!("{CHAIN_INGRESS_BACKEND_PREFIX}{id}-{}", hex(IpAddr::V4(ip)))
}

/// What the ruleset says about one address family of a service.
#[derive(Debug)]
struct FamPlan {
    v6: bool,
    /// Sorted, deduplicated.
    vips: Vec<IpAddr>,
    /// Protocol and port of each map key, after the VIP (`None`: every port).
    keys: Vec<(Proto, Option<u16>)>,
    /// Sorted, deduplicated.
    backends: Vec<IpAddr>,
}

/// What the ruleset says about a service's routing-mesh ports.
#[derive(Debug)]
struct IngressPlan {
    /// Sorted by protocol and published port.
    ports: Vec<IngressPort>,
    /// The backends it balances over (sorted), and whether each is remote (SNAT).
    backends: Vec<(Ipv4Addr, bool)>,
    snat: Option<Ipv4Addr>,
}

/// One valid service, normalised.
#[derive(Debug)]
struct SvcPlan {
    id: String,
    fams: Vec<FamPlan>,
    ingress: Option<IngressPlan>,
}

/// Every service of a model as the ruleset renders it, and what had to be left out. Both
/// the elements and the chains come from it, so they cannot disagree.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    services: Vec<SvcPlan>,
    problems: Vec<String>,
}

impl Plan {
    /// Validates and normalises `model.services` (sorted by id; when two claim one VIP or
    /// routing-mesh port, the first id keeps it).
    pub(crate) fn of(model: &FirewallModel) -> Plan {
        let mut plan = Plan::default();
        let mut services: Vec<&ServiceLb> = model.services.iter().collect();
        services.sort_by(|a, b| a.id.cmp(&b.id));
        // Ports published the plain way (IPv4): the routing mesh would shadow them.
        let published: BTreeSet<(Proto, u16)> = model
            .published
            .iter()
            .filter(|p| p.container_ip.is_ipv4())
            .map(|p| (p.proto, p.host_port))
            .collect();
        let mut ids = BTreeSet::new();
        let mut vips_taken: BTreeMap<IpAddr, String> = BTreeMap::new();
        let mut mesh_taken: BTreeMap<(Proto, u16), String> = BTreeMap::new();
        for s in services {
            if !valid_id(&s.id) {
                plan.problems.push(format!("service id {:?} is not 12 lowercase hex digits", s.id));
                continue;
            }
            if !ids.insert(s.id.as_str()) {
                plan.problems.push(format!("service {} is listed more than once", s.id));
                continue;
            }
            if let Some(p) = plan.service(s, &published, &mut vips_taken, &mut mesh_taken) {
                plan.services.push(p);
            }
        }
        plan
    }

    fn service(
        &mut self,
        s: &ServiceLb,
        published: &BTreeSet<(Proto, u16)>,
        vips_taken: &mut BTreeMap<IpAddr, String>,
        mesh_taken: &mut BTreeMap<(Proto, u16), String>,
    ) -> Option<SvcPlan> {
        let id = &s.id;
        let mut ports = BTreeSet::new();
        for p in &s.ports {
            if p.port == 0 {
                self.problems.push(format!("service {id}: port 0/{}", p.proto));
            } else {
                ports.insert((p.proto, p.port));
            }
        }
        if !s.ports.is_empty() && ports.is_empty() {
            // Rendering it port-less would open every port.
            self.problems.push(format!("service {id}: no valid port, left out"));
            return None;
        }
        let keys: Vec<(Proto, Option<u16>)> = if ports.is_empty() {
            vec![(Proto::Tcp, None), (Proto::Udp, None)]
        } else {
            ports.into_iter().map(|(proto, port)| (proto, Some(port))).collect()
        };
        let mut backends: BTreeMap<IpAddr, bool> = BTreeMap::new();
        for b in &s.backends {
            if !usable(b.ip) || s.vips.contains(&b.ip) {
                self.problems.push(format!("service {id}: backend {} is not usable", b.ip));
                continue;
            }
            backends.entry(b.ip).or_insert(b.local);
        }
        let mut fams = Vec::new();
        for v6 in [false, true] {
            let mut vips = Vec::new();
            for &vip in s.vips.iter().filter(|v| v.is_ipv6() == v6) {
                if !usable(vip) {
                    self.problems.push(format!("service {id}: VIP {vip} is not unicast"));
                    continue;
                }
                match vips_taken.get(&vip) {
                    Some(other) if other != id => {
                        self.problems.push(format!("service {id}: VIP {vip} belongs to {other}"));
                        continue;
                    }
                    _ => {}
                }
                vips_taken.insert(vip, id.clone());
                vips.push(vip);
            }
            vips.sort();
            vips.dedup();
            if vips.is_empty() {
                continue;
            }
            let fam: Vec<IpAddr> = backends.keys().copied().filter(|b| b.is_ipv6() == v6).collect();
            if fam.is_empty() && !backends.is_empty() {
                self.problems.push(format!(
                    "service {id}: VIP {} has no backend of its family (no NAT between IPv4 and \
                     IPv6): refused as a service without backends",
                    vips[0]
                ));
            }
            fams.push(FamPlan { v6, vips, keys: keys.clone(), backends: fam });
        }
        let ingress = self.ingress(s, &backends, published, mesh_taken);
        if fams.is_empty() && ingress.is_none() {
            self.problems.push(format!("service {id}: neither a VIP nor a routing-mesh port"));
            return None;
        }
        Some(SvcPlan { id: id.clone(), fams, ingress })
    }

    fn ingress(
        &mut self,
        s: &ServiceLb,
        backends: &BTreeMap<IpAddr, bool>,
        published: &BTreeSet<(Proto, u16)>,
        mesh_taken: &mut BTreeMap<(Proto, u16), String>,
    ) -> Option<IngressPlan> {
        let id = &s.id;
        let mut ports: Vec<IngressPort> = Vec::new();
        let mut sorted = s.ingress.clone();
        sorted.sort();
        for p in sorted {
            let what = format!("service {id}: routing-mesh port {}/{}", p.published, p.proto);
            if p.published == 0 || p.target == 0 {
                self.problems.push(format!("{what}: port 0"));
                continue;
            }
            if published.contains(&(p.proto, p.published)) {
                self.problems.push(format!("{what}: the host port is published by a container"));
                continue;
            }
            match mesh_taken.get(&(p.proto, p.published)) {
                Some(other) if other != id => {
                    self.problems.push(format!("{what}: already published by service {other}"));
                    continue;
                }
                Some(_) => {
                    self.problems.push(format!("{what}: listed more than once"));
                    continue;
                }
                None => {}
            }
            mesh_taken.insert((p.proto, p.published), id.clone());
            ports.push(p);
        }
        if ports.is_empty() {
            return None;
        }
        let snat = match s.ingress_snat {
            Some(IpAddr::V4(a)) if usable(IpAddr::V4(a)) => Some(a),
            Some(other) => {
                self.problems.push(format!(
                    "service {id}: ingress_snat {other} is not a usable IPv4 address"
                ));
                None
            }
            None => None,
        };
        let mut eligible = Vec::new();
        let mut left_out = 0;
        for (&ip, &local) in backends {
            let IpAddr::V4(v4) = ip else { continue };
            if local {
                eligible.push((v4, false));
            } else if !s.local_only {
                match snat {
                    Some(_) => eligible.push((v4, true)),
                    None => left_out += 1,
                }
            }
        }
        if left_out > 0 {
            self.problems.push(format!(
                "service {id}: {left_out} remote backend(s) left out of the routing mesh: no \
                 ingress_snat address to send them from"
            ));
        }
        Some(IngressPlan { ports, backends: eligible, snat })
    }
}

/// Adds the elements of every service in `plan` (and its problems) to `c`.
pub(crate) fn add_elements(c: &mut Contents, plan: &Plan) {
    c.problems.extend(plan.problems.iter().cloned());
    for s in &plan.services {
        for f in &s.fams {
            let (map, map_any, vips, noep, noep_any) = if f.v6 {
                (MAP_SVC6, MAP_SVC6_ANY, SET_VIPS6, SET_SVC_NOEP6, SET_SVC_NOEP6_ANY)
            } else {
                (MAP_SVC4, MAP_SVC4_ANY, SET_VIPS4, SET_SVC_NOEP4, SET_SVC_NOEP4_ANY)
            };
            let verdict = vec![FieldValue::Goto(svc_chain(&s.id, f.v6))];
            for &vip in &f.vips {
                c.add(Family::Inet, vips, vec![addr(vip)]);
                for (proto, port) in &f.keys {
                    let mut key = vec![addr(vip), FieldValue::Proto(*proto)];
                    let (map, noep) = match port {
                        Some(p) => {
                            key.push(FieldValue::Service(*p));
                            (map, noep)
                        }
                        None => (map_any, noep_any),
                    };
                    // VIPs are unique (the plan saw to it), so keys cannot collide.
                    let _ = c.add_mapping(map, key.clone(), verdict.clone());
                    if f.backends.is_empty() {
                        c.add(Family::Inet, noep, key);
                    }
                }
            }
        }
        let Some(ing) = &s.ingress else { continue };
        let verdict = vec![FieldValue::Goto(ingress_chain(&s.id))];
        for p in &ing.ports {
            let key = vec![FieldValue::Proto(p.proto), FieldValue::Service(p.published)];
            let _ = c.add_mapping(MAP_INGRESS4, key.clone(), verdict.clone());
            if ing.backends.is_empty() {
                c.add(Family::Inet, SET_INGRESS_NOEP4, key);
            }
        }
        for &(b, remote) in &ing.backends {
            let Some(snat) = ing.snat.filter(|_| remote) else { continue };
            let key = vec![FieldValue::Ipv4(b)];
            if let Err(other) = c.add_mapping(MAP_INGRESS_SNAT4, key, vec![FieldValue::Ipv4(snat)])
            {
                c.problems.push(format!(
                    "service {}: remote backend {b} is SNATed from {other} by another service",
                    s.id
                ));
            }
        }
    }
}

/// `goto` the only target, `numgen random mod N` over several, nothing for none.
fn dispatch(targets: &[String]) -> Vec<String> {
    match targets {
        [] => vec![],
        [one] => vec![format!("goto {one}")],
        many => {
            let arms: Vec<String> =
                many.iter().enumerate().map(|(i, t)| format!("{i} : goto {t}")).collect();
            vec![format!("numgen random mod {} vmap {{ {} }}", many.len(), arms.join(", "))]
        }
    }
}

fn regular(name: String, rules: Vec<String>) -> Chain {
    Chain { name, hook: String::new(), rules }
}

/// Every per-service chain of `plan`, sorted by name.
pub(crate) fn chains(plan: &Plan) -> Vec<Chain> {
    let mut out = Vec::new();
    for s in &plan.services {
        for f in &s.fams {
            let names: Vec<String> = f.backends.iter().map(|&b| backend_chain(&s.id, b)).collect();
            out.push(regular(svc_chain(&s.id, f.v6), dispatch(&names)));
            for (&b, name) in f.backends.iter().zip(names) {
                let (l3, nat) = if f.v6 { ("ip6", "ip6") } else { ("ip", "ip") };
                let rules = vec![
                    format!("{l3} saddr {b} meta mark set meta mark | {MARK_SVC_MASQ:#010x}"),
                    format!("dnat {nat} to {b}"),
                ];
                out.push(regular(name, rules));
            }
        }
        let Some(ing) = &s.ingress else { continue };
        let names: Vec<String> =
            ing.backends.iter().map(|&(b, _)| ingress_backend_chain(&s.id, b)).collect();
        out.push(regular(ingress_chain(&s.id), dispatch(&names)));
        for (&(b, remote), name) in ing.backends.iter().zip(names) {
            let mut rules = Vec::new();
            if remote {
                rules.push(format!("meta mark set meta mark | {MARK_SVC_SNAT:#010x}"));
            }
            let arms: Vec<String> = ing
                .ports
                .iter()
                .map(|p| format!("{} . {} : {b} . {}", p.proto, p.published, p.target))
                .collect();
            rules.push(format!("dnat ip to meta l4proto . th dport map {{ {} }}", arms.join(", ")));
            out.push(regular(name, rules));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The service rules at the head of `nat_prerouting` and `nat_output`.
pub(crate) fn nat_rules() -> Vec<String> {
    let key = "meta l4proto . th dport";
    vec![
        "# services: VIP, protocol and port to the service's chain".into(),
        format!("ip daddr . {key} vmap @{MAP_SVC4}"),
        format!("ip6 daddr . {key} vmap @{MAP_SVC6}"),
        format!("ip daddr . meta l4proto vmap @{MAP_SVC4_ANY}"),
        format!("ip6 daddr . meta l4proto vmap @{MAP_SVC6_ANY}"),
        "# nothing else to a VIP is NAT'ed (svc_input drops it)".into(),
        format!("ip daddr @{SET_VIPS4} accept"),
        format!("ip6 daddr @{SET_VIPS6} accept"),
        "# routing mesh: a service's port on every local IPv4 address".into(),
        format!("meta nfproto ipv4 fib daddr type local {key} vmap @{MAP_INGRESS4}"),
    ]
}

/// The service rules at the head of `nat_postrouting`.
pub(crate) fn postrouting_rules() -> Vec<String> {
    let (masq, snat) = (MARK_SVC_MASQ, MARK_SVC_SNAT);
    vec![
        "# services: a backend reaching its own VIP (hairpin) is masqueraded".into(),
        format!(
            "meta mark & {masq:#010x} == {masq:#010x} meta mark set meta mark & {:#010x} \
             masquerade",
            !masq
        ),
        "# routing mesh to a backend on another host: from this host's node address".into(),
        format!(
            "meta mark & {snat:#010x} == {snat:#010x} meta mark set meta mark & {:#010x} \
             snat ip to ip daddr map @{MAP_INGRESS_SNAT4}",
            !snat
        ),
        "# VIP traffic keeps the client's address".into(),
        format!("ct status dnat ct original ip daddr @{SET_VIPS4} accept"),
        format!("ct status dnat ct original ip6 daddr @{SET_VIPS6} accept"),
    ]
}

/// The static service chains: `svc_input`, `svc_forward`, `svc_reject`.
pub(crate) fn base_chains() -> Vec<Chain> {
    let key = "meta l4proto . th dport";
    let refuse = |l3: &str, set: &str| format!("{l3} daddr . {key} @{set} goto {CHAIN_SVC_REJECT}");
    let refuse_any =
        |l3: &str, set: &str| format!("{l3} daddr . meta l4proto @{set} goto {CHAIN_SVC_REJECT}");
    let drop_other = |l3: &str, set: &str| {
        format!("{l3} daddr @{set} counter name \"{COUNTER_DROP_VIP_OTHER}\" drop")
    };
    let input = vec![
        "# replies to the host's own connections through a VIP".into(),
        "ct state established,related accept".into(),
        "# a service without backends refuses; anything else to a VIP is dropped".into(),
        refuse("ip", SET_SVC_NOEP4),
        refuse("ip6", SET_SVC_NOEP6),
        refuse_any("ip", SET_SVC_NOEP4_ANY),
        refuse_any("ip6", SET_SVC_NOEP6_ANY),
        drop_other("ip", SET_VIPS4),
        drop_other("ip6", SET_VIPS6),
        "# a routing-mesh port with no backend to send to refuses".into(),
        format!("meta nfproto ipv4 {key} @{SET_INGRESS_NOEP4} goto {CHAIN_SVC_REJECT}"),
    ];
    let isolation = |l3: &str, set: &str| {
        format!(
            "ct status dnat ct original {l3} daddr @{set} iifname . oifname != @{SET_BRIDGE_SELF} \
             counter name \"{COUNTER_DROP_ISOLATION}\" drop"
        )
    };
    let forward = vec![
        refuse("ip", SET_SVC_NOEP4),
        refuse("ip6", SET_SVC_NOEP6),
        refuse_any("ip", SET_SVC_NOEP4_ANY),
        refuse_any("ip6", SET_SVC_NOEP6_ANY),
        drop_other("ip", SET_VIPS4),
        drop_other("ip6", SET_VIPS6),
        "# a VIP leads only into its own network's bridge".into(),
        isolation("ip", SET_VIPS4),
        isolation("ip6", SET_VIPS6),
    ];
    vec![
        Chain {
            name: CHAIN_SVC_INPUT.into(),
            hook: "type filter hook input priority -10; policy accept;".into(),
            rules: input,
        },
        Chain {
            name: CHAIN_SVC_FORWARD.into(),
            hook: "type filter hook forward priority -10; policy accept;".into(),
            rules: forward,
        },
        regular(
            CHAIN_SVC_REJECT.into(),
            vec!["meta l4proto tcp reject with tcp reset".into(), "reject".into()],
        ),
    ]
}
