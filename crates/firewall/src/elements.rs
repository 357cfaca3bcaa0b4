//! The contents of every named set and map, derived from a [`FirewallModel`], as typed
//! values ([`FieldValue`]). Both the full ruleset and the element deltas (their nft text
//! and their netlink form) are rendered from these, so they cannot disagree.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cove_model::MacAddr;
use ipnet::{Ipv4Net, Ipv6Net};

use crate::model::{valid_ifname, FirewallModel, NetworkRules, Proto};
use crate::names::*;

/// One field of a set element's key or of a map element's value, typed as its set
/// declares it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldValue {
    /// `ifname`: an interface name ([`crate::valid_ifname`]), printed quoted.
    Ifname(String),
    /// `ether_addr`: a MAC address.
    Ether(MacAddr),
    /// `ipv4_addr`: one address.
    Ipv4(Ipv4Addr),
    /// `ipv6_addr`: one address.
    Ipv6(Ipv6Addr),
    /// `ipv4_addr` of an interval set: a prefix (host bits cleared).
    Net4(Ipv4Net),
    /// `ipv6_addr` of an interval set: a prefix (host bits cleared).
    Net6(Ipv6Net),
    /// `inet_proto`.
    Proto(Proto),
    /// `inet_service`: a port.
    Service(u16),
    /// `@th,64,128`: 128 raw bits of the transport header (a neighbour advertisement's
    /// target address, as an integer).
    Raw128(u128),
    /// `inet_service` of an interval set: a range of ports, both ends included.
    ServiceRange(u16, u16),
    /// `verdict` of a verdict map: `goto <chain>`.
    Goto(String),
}

impl fmt::Display for FieldValue {
    /// The field as nft writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Ifname(name) => write!(f, "\"{name}\""),
            FieldValue::Ether(mac) => mac.fmt(f),
            FieldValue::Ipv4(ip) => ip.fmt(f),
            FieldValue::Ipv6(ip) => ip.fmt(f),
            FieldValue::Net4(net) => net.fmt(f),
            FieldValue::Net6(net) => net.fmt(f),
            FieldValue::Proto(p) => p.fmt(f),
            FieldValue::Service(port) => port.fmt(f),
            FieldValue::Raw128(raw) => write!(f, "0x{raw:032x}"),
            FieldValue::ServiceRange(from, to) => write!(f, "{from}-{to}"),
            FieldValue::Goto(chain) => write!(f, "goto {chain}"),
        }
    }
}

/// A concatenation (`a . b . c`) as nft writes it.
pub(crate) fn fields_text(fields: &[FieldValue]) -> String {
    let mut out = String::new();
    for (i, v) in fields.iter().enumerate() {
        if i > 0 {
            out.push_str(" . ");
        }
        let _ = write!(out, "{v}");
    }
    out
}

/// One element of a named set or map: its key and, for a map, its value (a map element
/// being deleted is named by its key alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElement {
    /// The key's fields (one per concatenated type of the set).
    pub key: Vec<FieldValue>,
    /// The mapped value's fields; `None` for a set, or a map element being deleted.
    pub value: Option<Vec<FieldValue>>,
}

impl SetElement {
    /// The element as it appears in a set declaration or an `add element` statement.
    pub fn text(&self) -> String {
        match &self.value {
            Some(v) => format!("{} : {}", fields_text(&self.key), fields_text(v)),
            None => fields_text(&self.key),
        }
    }
}

/// The nftables family of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Inet,
    Bridge,
    Netdev,
}

impl Family {
    /// `inet cove` / `bridge cove`, as nft commands name the table.
    pub(crate) fn table(self) -> String {
        match self {
            Family::Inet => format!("inet {INET_TABLE}"),
            Family::Bridge => format!("bridge {BRIDGE_TABLE}"),
            Family::Netdev => format!("netdev {NETDEV_TABLE}"),
        }
    }
}

/// A named set or map: its declaration, without elements.
#[derive(Debug)]
pub(crate) struct SetDecl {
    pub family: Family,
    pub name: &'static str,
    /// `map` rather than `set`.
    pub map: bool,
    /// Declaration statements (`type ...`, `flags interval`), one per line.
    pub spec: &'static [&'static str],
    /// Part of the service load balancing: declared only with
    /// [`FirewallModel::service_lb`].
    pub service: bool,
}

impl SetDecl {
    /// An interval set (`flags interval`): its elements are ranges, which the kernel keeps
    /// as pairs of boundary elements.
    pub(crate) fn interval(&self) -> bool {
        self.spec.contains(&INTERVAL)
    }
}

const fn decl(family: Family, name: &'static str, spec: &'static [&'static str]) -> SetDecl {
    SetDecl { family, name, map: false, spec, service: false }
}

const fn map(name: &'static str, spec: &'static [&'static str]) -> SetDecl {
    SetDecl { family: Family::Inet, name, map: true, spec, service: false }
}

const fn svc_set(name: &'static str, spec: &'static [&'static str]) -> SetDecl {
    SetDecl { family: Family::Inet, name, map: false, spec, service: true }
}

const fn svc_map(name: &'static str, spec: &'static [&'static str]) -> SetDecl {
    SetDecl { family: Family::Inet, name, map: true, spec, service: true }
}

const INTERVAL: &str = "flags interval";

/// Every named set and map, in rendering order. [`Contents::sets`] is aligned with it.
pub(crate) const DECLS: &[SetDecl] = &[
    decl(Family::Inet, SET_BRIDGES, &["type ifname"]),
    decl(Family::Inet, SET_BRIDGE_SELF, &["type ifname . ifname"]),
    decl(Family::Inet, SET_INTERNAL, &["type ifname"]),
    decl(Family::Inet, SET_SUBNETS4, &["type ipv4_addr", INTERVAL]),
    decl(Family::Inet, SET_SUBNETS6, &["type ipv6_addr", INTERVAL]),
    decl(Family::Inet, SET_MASQ4, &["type ipv4_addr", INTERVAL]),
    decl(Family::Inet, SET_MASQ6, &["type ipv6_addr", INTERVAL]),
    map(MAP_DNAT4_ANY, &["type inet_proto . inet_service : ipv4_addr . inet_service"]),
    map(MAP_DNAT4_ADDR, &["type inet_proto . ipv4_addr . inet_service : ipv4_addr . inet_service"]),
    map(MAP_DNAT6_ANY, &["type inet_proto . inet_service : ipv6_addr . inet_service"]),
    map(MAP_DNAT6_ADDR, &["type inet_proto . ipv6_addr . inet_service : ipv6_addr . inet_service"]),
    svc_map(MAP_SVC4, &["type ipv4_addr . inet_proto . inet_service : verdict"]),
    svc_map(MAP_SVC6, &["type ipv6_addr . inet_proto . inet_service : verdict"]),
    svc_map(MAP_SVC4_ANY, &["type ipv4_addr . inet_proto : verdict"]),
    svc_map(MAP_SVC6_ANY, &["type ipv6_addr . inet_proto : verdict"]),
    svc_set(SET_VIPS4, &["type ipv4_addr"]),
    svc_set(SET_VIPS6, &["type ipv6_addr"]),
    svc_set(SET_SVC_NOEP4, &["type ipv4_addr . inet_proto . inet_service"]),
    svc_set(SET_SVC_NOEP6, &["type ipv6_addr . inet_proto . inet_service"]),
    svc_set(SET_SVC_NOEP4_ANY, &["type ipv4_addr . inet_proto"]),
    svc_set(SET_SVC_NOEP6_ANY, &["type ipv6_addr . inet_proto"]),
    svc_map(MAP_INGRESS4, &["type inet_proto . inet_service : verdict"]),
    svc_set(SET_INGRESS_NOEP4, &["type inet_proto . inet_service"]),
    svc_map(MAP_INGRESS_SNAT4, &["type ipv4_addr : ipv4_addr"]),
    decl(Family::Bridge, SET_GUARDED, &["type ifname"]),
    decl(Family::Bridge, SET_PORT_MAC, &["type ifname . ether_addr"]),
    decl(Family::Bridge, SET_PORT_IP4, &["type ifname . ether_addr . ipv4_addr"]),
    decl(Family::Bridge, SET_PORT_IP6, &["type ifname . ether_addr . ipv6_addr"]),
    decl(Family::Bridge, SET_PORT_ND6, &["typeof iifname . ether saddr . @th,64,128"]),
    decl(Family::Bridge, SET_ICC_OFF, &["type ifname"]),
    decl(Family::Bridge, SET_LINK_PAIRS, &["type ifname . ifname"]),
    decl(Family::Bridge, SET_LINK_FWD, &["type ifname . ifname . inet_proto . inet_service"]),
    decl(Family::Bridge, SET_LINK_REV, &["type ifname . ifname . inet_proto . inet_service"]),
];

/// Elements of one set or map: key, and for maps the value, typed.
pub(crate) type Elements = BTreeMap<Vec<FieldValue>, Option<Vec<FieldValue>>>;

/// `elements` in the order nft text sorts them (by the key's text), the one order every
/// rendering uses, so it is deterministic whatever the order of the model's vectors.
pub(crate) fn in_text_order<'a>(
    elements: impl IntoIterator<Item = (&'a Vec<FieldValue>, &'a Option<Vec<FieldValue>>)>,
) -> Vec<SetElement> {
    let mut v: Vec<(String, SetElement)> = elements
        .into_iter()
        .map(|(k, v)| (fields_text(k), SetElement { key: k.clone(), value: v.clone() }))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, e)| e).collect()
}

/// The elements of every set and map of one model, and what had to be left out.
#[derive(Debug)]
pub(crate) struct Contents {
    /// Aligned with [`DECLS`].
    pub sets: Vec<Elements>,
    /// One sentence per model entry that could not be rendered.
    pub problems: Vec<String>,
}

fn q(ifname: &str) -> FieldValue {
    FieldValue::Ifname(ifname.to_owned())
}

fn overlaps4(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn overlaps6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Contents {
    fn new() -> Self {
        Contents { sets: vec![Elements::new(); DECLS.len()], problems: Vec::new() }
    }

    fn slot(&mut self, family: Family, name: &str) -> &mut Elements {
        let i = DECLS
            .iter()
            .position(|d| d.family == family && d.name == name)
            .expect("every set name used in elements.rs is declared in DECLS");
        &mut self.sets[i]
    }

    pub(crate) fn add(&mut self, family: Family, name: &str, key: Vec<FieldValue>) {
        self.slot(family, name).insert(key, None);
    }

    /// Adds a map element; refuses a key that is already mapped to another value (and says
    /// which).
    pub(crate) fn add_mapping(
        &mut self,
        name: &str,
        key: Vec<FieldValue>,
        value: Vec<FieldValue>,
    ) -> Result<(), String> {
        let slot = self.slot(Family::Inet, name);
        match slot.get(&key) {
            Some(Some(existing)) if *existing != value => Err(fields_text(existing)),
            _ => {
                slot.insert(key, Some(value));
                Ok(())
            }
        }
    }

    /// The elements of one set or map.
    #[cfg(test)]
    pub(crate) fn get(&self, family: Family, name: &str) -> &Elements {
        let i = DECLS.iter().position(|d| d.family == family && d.name == name);
        &self.sets[i.expect("declared set")]
    }

    /// Derives every set's and map's elements from `model`.
    pub(crate) fn build(model: &FirewallModel) -> Self {
        let mut c = Contents::new();
        let networks = c.networks(model);
        c.endpoints(model, &networks);
        c.published(model, &networks);
        c.links(model);
        if model.service_lb {
            crate::services::add_elements(&mut c, &crate::services::Plan::of(model));
        } else if !model.services.is_empty() {
            c.problems.push(format!(
                "{} service(s) left out: service load balancing (service_lb) is off",
                model.services.len()
            ));
        }
        c
    }

    /// Bridges and subnets. Returns the networks that were rendered, by bridge.
    fn networks<'m>(&mut self, model: &'m FirewallModel) -> BTreeMap<&'m str, &'m NetworkRules> {
        let mut by_bridge: BTreeMap<&str, &NetworkRules> = BTreeMap::new();
        let mut seen4: Vec<(Ipv4Net, &str)> = Vec::new();
        let mut seen6: Vec<(Ipv6Net, &str)> = Vec::new();
        for n in &model.networks {
            let br = n.bridge.as_str();
            if !valid_ifname(br) {
                self.problems.push(format!("network bridge {br:?} is not a valid interface name"));
                continue;
            }
            if by_bridge.insert(br, n).is_some() {
                self.problems.push(format!("bridge {br} belongs to more than one network"));
                continue;
            }
            self.add(Family::Inet, SET_BRIDGES, vec![q(br)]);
            self.add(Family::Inet, SET_BRIDGE_SELF, vec![q(br), q(br)]);
            if n.internal {
                self.add(Family::Inet, SET_INTERNAL, vec![q(br)]);
            }
            let masq = n.masquerade && !n.internal;
            for net in n.subnets4.iter().map(Ipv4Net::trunc) {
                if let Some((_, other)) = seen4.iter().find(|(s, _)| overlaps4(s, &net)) {
                    self.problems
                        .push(format!("subnet {net} of {br} overlaps a subnet of {other}"));
                    continue;
                }
                seen4.push((net, br));
                self.add(Family::Inet, SET_SUBNETS4, vec![FieldValue::Net4(net)]);
                if masq {
                    self.add(Family::Inet, SET_MASQ4, vec![FieldValue::Net4(net)]);
                }
            }
            for net in n.subnets6.iter().map(Ipv6Net::trunc) {
                if let Some((_, other)) = seen6.iter().find(|(s, _)| overlaps6(s, &net)) {
                    self.problems
                        .push(format!("subnet {net} of {br} overlaps a subnet of {other}"));
                    continue;
                }
                seen6.push((net, br));
                self.add(Family::Inet, SET_SUBNETS6, vec![FieldValue::Net6(net)]);
                if masq {
                    self.add(Family::Inet, SET_MASQ6, vec![FieldValue::Net6(net)]);
                }
            }
        }
        by_bridge
    }

    /// Anti-spoofing and icc sets. An endpoint on a bridge the model does not list is still
    /// guarded (it is a container port either way), but never counted as icc=false.
    fn endpoints(&mut self, model: &FirewallModel, networks: &BTreeMap<&str, &NetworkRules>) {
        let mut ports = BTreeSet::new();
        for e in &model.endpoints {
            let port = e.host_ifname.as_str();
            if !valid_ifname(port) {
                self.problems.push(format!("endpoint port {port:?} is not a valid interface name"));
                continue;
            }
            if !ports.insert(port) {
                self.problems.push(format!("endpoint port {port} is listed more than once"));
                continue;
            }
            let (p, mac) = (q(port), FieldValue::Ether(e.mac));
            self.add(Family::Bridge, SET_GUARDED, vec![p.clone()]);
            self.add(Family::Bridge, SET_PORT_MAC, vec![p.clone(), mac.clone()]);
            if let Some(ip) = e.ipv4 {
                let key = vec![p.clone(), mac.clone(), FieldValue::Ipv4(ip)];
                self.add(Family::Bridge, SET_PORT_IP4, key);
            }
            if let Some(ip) = e.ipv6 {
                let key = vec![p.clone(), mac.clone(), FieldValue::Ipv6(ip)];
                self.add(Family::Bridge, SET_PORT_IP6, key);
                let key = vec![p.clone(), mac.clone(), FieldValue::Raw128(u128::from(ip))];
                self.add(Family::Bridge, SET_PORT_ND6, key);
            }
            if networks.get(e.bridge.as_str()).is_some_and(|n| !n.icc) {
                self.add(Family::Bridge, SET_ICC_OFF, vec![p]);
            }
        }
    }

    /// Legacy links through icc=false: the pair both ways, the exposed port, its replies.
    fn links(&mut self, model: &FirewallModel) {
        for l in &model.links {
            if !valid_ifname(&l.from) || !valid_ifname(&l.to) || l.port == 0 {
                self.problems.push(format!(
                    "link {} -> {} {}/{} is not valid",
                    l.from, l.to, l.port, l.proto
                ));
                continue;
            }
            let (from, to) = (q(&l.from), q(&l.to));
            let (proto, port) = (FieldValue::Proto(l.proto), FieldValue::Service(l.port));
            // One orientation only (the rules match both): an element belongs to one
            // linker's share, so deltas of two containers that link each other never
            // remove each other's.
            self.add(Family::Bridge, SET_LINK_PAIRS, vec![from.clone(), to.clone()]);
            let fwd = vec![from.clone(), to.clone(), proto.clone(), port.clone()];
            self.add(Family::Bridge, SET_LINK_FWD, fwd);
            self.add(Family::Bridge, SET_LINK_REV, vec![to, from, proto, port]);
        }
    }

    /// DNAT maps.
    fn published(&mut self, model: &FirewallModel, networks: &BTreeMap<&str, &NetworkRules>) {
        for p in &model.published {
            let what = format!(
                "published port {}/{} -> {}:{} on {}",
                p.host_port, p.proto, p.container_ip, p.container_port, p.bridge
            );
            if p.host_port == 0 || p.container_port == 0 {
                self.problems.push(format!("{what}: port 0"));
                continue;
            }
            match networks.get(p.bridge.as_str()) {
                None => {
                    self.problems.push(format!("{what}: no network has bridge {}", p.bridge));
                    continue;
                }
                Some(n) if n.internal => {
                    self.problems.push(format!("{what}: the network is internal"));
                    continue;
                }
                Some(_) => {}
            }
            let proto = FieldValue::Proto(p.proto);
            let (hport, cport) =
                (FieldValue::Service(p.host_port), FieldValue::Service(p.container_port));
            let (name, key, value) = match (p.normalized_host_ip(), p.container_ip) {
                (None, IpAddr::V4(c)) => {
                    (MAP_DNAT4_ANY, vec![proto, hport], vec![FieldValue::Ipv4(c), cport])
                }
                (None, IpAddr::V6(c)) => {
                    (MAP_DNAT6_ANY, vec![proto, hport], vec![FieldValue::Ipv6(c), cport])
                }
                (Some(IpAddr::V4(h)), IpAddr::V4(c)) => (
                    MAP_DNAT4_ADDR,
                    vec![proto, FieldValue::Ipv4(h), hport],
                    vec![FieldValue::Ipv4(c), cport],
                ),
                (Some(IpAddr::V6(h)), IpAddr::V6(c)) => (
                    MAP_DNAT6_ADDR,
                    vec![proto, FieldValue::Ipv6(h), hport],
                    vec![FieldValue::Ipv6(c), cport],
                ),
                (Some(h), _) => {
                    self.problems.push(format!(
                        "{what}: host address {h} and container address are of different families"
                    ));
                    continue;
                }
            };
            if let Err(existing) = self.add_mapping(name, key, value) {
                self.problems.push(format!("{what}: the host port already maps to {existing}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EndpointRules, Proto, PublishedPort};
    use cove_model::MacAddr;

    fn net(bridge: &str, v4: &str) -> NetworkRules {
        NetworkRules {
            bridge: bridge.into(),
            subnets4: vec![v4.parse().unwrap()],
            subnets6: vec![],
            internal: false,
            icc: true,
            masquerade: true,
        }
    }

    fn port(host: Option<&str>, hport: u16, ctr: &str, bridge: &str) -> PublishedPort {
        PublishedPort {
            proto: Proto::Udp,
            host_ip: host.map(|h| h.parse().unwrap()),
            host_port: hport,
            container_ip: ctr.parse().unwrap(),
            container_port: 53,
            bridge: bridge.into(),
        }
    }

    fn keys(c: &Contents, family: Family, name: &str) -> Vec<String> {
        in_text_order(c.get(family, name)).iter().map(SetElement::text).collect()
    }

    #[test]
    fn unspecified_host_addresses_mean_every_address() {
        let mut m =
            FirewallModel { networks: vec![net("br-a", "10.1.0.0/24")], ..Default::default() };
        m.networks[0].subnets6 = vec!["fd00:1::/64".parse().unwrap()];
        m.published = vec![
            port(Some("0.0.0.0"), 53, "10.1.0.2", "br-a"),
            port(Some("::"), 53, "fd00:1::2", "br-a"),
        ];
        let c = Contents::build(&m);
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        assert_eq!(keys(&c, Family::Inet, MAP_DNAT4_ANY), ["udp . 53 : 10.1.0.2 . 53"]);
        assert_eq!(keys(&c, Family::Inet, MAP_DNAT6_ANY), ["udp . 53 : fd00:1::2 . 53"]);
        assert!(c.get(Family::Inet, MAP_DNAT4_ADDR).is_empty());
    }

    #[test]
    fn host_bits_of_subnets_are_dropped() {
        let m = FirewallModel { networks: vec![net("br-a", "10.1.0.1/24")], ..Default::default() };
        assert_eq!(keys(&Contents::build(&m), Family::Inet, SET_SUBNETS4), ["10.1.0.0/24"]);
    }

    #[test]
    fn internal_and_unmasqueraded_networks_are_not_masqueraded() {
        let mut internal = net("br-i", "10.2.0.0/24");
        internal.internal = true;
        let mut plain = net("br-p", "10.3.0.0/24");
        plain.masquerade = false;
        let m = FirewallModel {
            networks: vec![net("br-a", "10.1.0.0/24"), internal, plain],
            ..Default::default()
        };
        let c = Contents::build(&m);
        assert_eq!(keys(&c, Family::Inet, SET_MASQ4), ["10.1.0.0/24"]);
        assert_eq!(keys(&c, Family::Inet, SET_SUBNETS4).len(), 3);
        assert_eq!(keys(&c, Family::Inet, SET_INTERNAL), ["\"br-i\""]);
    }

    #[test]
    fn what_cannot_be_rendered_is_left_out_and_reported() {
        let mut internal = net("br-i", "10.2.0.0/24");
        internal.internal = true;
        let m = FirewallModel {
            networks: vec![
                net("br-a", "10.1.0.0/24"),
                internal,
                net("bad\"name", "10.4.0.0/24"),
                net("br-overlap", "10.1.0.128/25"),
                net("br-a", "10.5.0.0/24"),
            ],
            endpoints: vec![EndpointRules {
                bridge: "br-a".into(),
                host_ifname: "this-name-is-too-long".into(),
                mac: MacAddr::from_ipv4("10.1.0.2".parse().unwrap()),
                ipv4: Some("10.1.0.2".parse().unwrap()),
                ipv6: None,
            }],
            published: vec![
                port(None, 53, "10.1.0.2", "br-a"),
                port(None, 53, "10.1.0.3", "br-a"),
                port(None, 54, "10.2.0.2", "br-i"),
                port(Some("::1"), 55, "10.1.0.2", "br-a"),
                port(None, 56, "10.1.0.2", "br-missing"),
                port(None, 0, "10.1.0.2", "br-a"),
            ],
            links: vec![],
            drop_foreign_forwarding: false,
            vxlan: None,
            service_lb: false,
            services: vec![],
            encryption: None,
        };
        let problems = m.problems();
        assert_eq!(problems.len(), 9, "{problems:#?}");
        for needle in [
            "\"bad\\\"name\" is not a valid interface name",
            "overlaps a subnet of br-a",
            "belongs to more than one network",
            "\"this-name-is-too-long\" is not a valid interface name",
            "already maps to 10.1.0.2 . 53",
            "the network is internal",
            "different families",
            "no network has bridge br-missing",
            "port 0",
        ] {
            assert!(problems.iter().any(|p| p.contains(needle)), "{needle}: {problems:#?}");
        }
        let c = Contents::build(&m);
        assert_eq!(keys(&c, Family::Inet, MAP_DNAT4_ANY), ["udp . 53 : 10.1.0.2 . 53"]);
        // A network whose subnet is left out is still a Cove bridge: isolated like the others.
        assert_eq!(keys(&c, Family::Inet, SET_BRIDGES), ["\"br-a\"", "\"br-i\"", "\"br-overlap\""]);
        assert_eq!(keys(&c, Family::Inet, SET_SUBNETS4), ["10.1.0.0/24", "10.2.0.0/24"]);
        assert!(c.get(Family::Bridge, SET_GUARDED).is_empty());
    }

    #[test]
    fn endpoints_on_icc_false_networks_are_listed() {
        let mut m =
            FirewallModel { networks: vec![net("br-a", "10.1.0.0/24")], ..Default::default() };
        m.networks[0].icc = false;
        let ep = |port: &str, bridge: &str| EndpointRules {
            bridge: bridge.into(),
            host_ifname: port.into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ipv4: None,
            ipv6: None,
        };
        m.endpoints = vec![ep("cv1", "br-a"), ep("cv2", "br-unknown")];
        let c = Contents::build(&m);
        assert_eq!(keys(&c, Family::Bridge, SET_ICC_OFF), ["\"cv1\""]);
        assert_eq!(keys(&c, Family::Bridge, SET_GUARDED), ["\"cv1\"", "\"cv2\""]);
        assert!(c.get(Family::Bridge, SET_PORT_IP4).is_empty());
    }

    #[test]
    fn every_declared_name_is_in_the_name_lists() {
        for d in DECLS {
            let list: &[&str] = match (d.family, d.map) {
                (Family::Inet, false) if d.service => SERVICE_SETS,
                (Family::Inet, true) if d.service => SERVICE_MAPS,
                (Family::Inet, false) => INET_SETS,
                (Family::Inet, true) => INET_MAPS,
                (Family::Bridge, _) => BRIDGE_SETS,
                (Family::Netdev, _) => &[],
            };
            assert!(list.contains(&d.name), "{}", d.name);
        }
        let services = SERVICE_SETS.len() + SERVICE_MAPS.len();
        assert_eq!(DECLS.len(), INET_SETS.len() + INET_MAPS.len() + BRIDGE_SETS.len() + services);
    }
}
