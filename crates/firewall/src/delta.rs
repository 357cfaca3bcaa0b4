//! Deltas between two models: the hot path (attach a container, publish a port, add or
//! remove a service backend).
//!
//! A delta is a typed value ([`ElementDelta`]) with two renderings: nft text
//! ([`ElementDelta::render_text`], for `nft`) and netlink data
//! ([`ElementDelta::to_netlink`](crate::netlink), for the kernel directly, when it holds
//! only elements).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::hash::Hash;

use crate::elements::{in_text_order, Contents, Elements, SetDecl, SetElement, DECLS};
use crate::model::FirewallModel;
use crate::names::INET_TABLE;
use crate::ruleset;

/// Changes to apply in one transaction on top of a kernel holding some ruleset:
/// `delete element` changes (first), the per-service chains that appear, change or go
/// ([`ChainEdit`]), then `add element` changes of Cove's named sets and maps. Made by
/// [`crate::element_delta`]; several are merged by concatenation ([`ElementDelta::append`],
/// or `collect()`), in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementDelta {
    pub(crate) steps: Vec<Step>,
}

/// One step of a delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Set(SetChange),
    Chains(ChainEdit),
}

/// The elements one set or map gains or loses: one `add element` or `delete element`
/// statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetChange {
    /// Index of the set's declaration in [`DECLS`].
    pub(crate) set: usize,
    /// Deleted rather than added.
    pub(crate) delete: bool,
    /// The elements, in nft text order; deleted map elements carry no value.
    pub(crate) elements: Vec<SetElement>,
}

/// Per-service chains of `inet cove` that appear, change or go (services only: every
/// other chain is static). Rendered, in this order: `add chain` for the new ones;
/// `flush chain` (existing ones) and `add rule` for the new and changed ones; `flush chain`
/// of every stale one, then `delete chain` of each, once nothing refers to them any more
/// (their map elements went in the delta's `delete element` step before; a service chain
/// that referred to a stale backend chain was flushed or rewritten just before).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainEdit {
    /// Chains that appear, with their rules.
    pub(crate) created: Vec<(String, Vec<String>)>,
    /// Existing chains whose rules are replaced.
    pub(crate) rewritten: Vec<(String, Vec<String>)>,
    /// Chains that go.
    pub(crate) deleted: Vec<String>,
}

impl ChainEdit {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.rewritten.is_empty() && self.deleted.is_empty()
    }

    /// Names of the chains that appear.
    pub fn created(&self) -> impl Iterator<Item = &str> {
        self.created.iter().map(|(n, _)| n.as_str())
    }

    /// Names of the existing chains whose rules are replaced.
    pub fn rewritten(&self) -> impl Iterator<Item = &str> {
        self.rewritten.iter().map(|(n, _)| n.as_str())
    }

    /// Names of the chains that go.
    pub fn deleted(&self) -> impl Iterator<Item = &str> {
        self.deleted.iter().map(String::as_str)
    }

    /// One command per line (`add chain`, `flush chain`, `add rule`, `delete chain`), each
    /// a complete nft command, so the text works with `nft -f -` and `nft -i` alike.
    fn render_text(&self, out: &mut String) {
        let t = format!("inet {INET_TABLE}");
        for (name, _) in &self.created {
            let _ = writeln!(out, "add chain {t} {name}");
        }
        let rules = |out: &mut String, name: &str, rules: &[String]| {
            for r in rules.iter().filter(|r| !r.starts_with('#')) {
                let _ = writeln!(out, "add rule {t} {name} {r}");
            }
        };
        for (name, r) in &self.created {
            rules(out, name, r);
        }
        for (name, r) in &self.rewritten {
            let _ = writeln!(out, "flush chain {t} {name}");
            rules(out, name, r);
        }
        for name in &self.deleted {
            let _ = writeln!(out, "flush chain {t} {name}");
        }
        for name in &self.deleted {
            let _ = writeln!(out, "delete chain {t} {name}");
        }
    }
}

impl SetChange {
    pub(crate) fn decl(&self) -> &'static SetDecl {
        &DECLS[self.set]
    }

    /// The table, as nft commands name it (`inet cove`, `bridge cove`).
    pub fn table(&self) -> String {
        self.decl().family.table()
    }

    /// The set's or map's name.
    pub fn set_name(&self) -> &'static str {
        self.decl().name
    }

    /// Whether the elements are deleted rather than added.
    pub fn is_delete(&self) -> bool {
        self.delete
    }

    /// The elements (keys, and for an added map element its value).
    pub fn elements(&self) -> &[SetElement] {
        &self.elements
    }

    /// `add element <table> <set> { a, b : c }` (or `delete element`, by keys), one line.
    fn render_text(&self, out: &mut String) {
        let verb = if self.delete { "delete" } else { "add" };
        let items: Vec<String> = self.elements.iter().map(SetElement::text).collect();
        let _ = writeln!(
            out,
            "{verb} element {} {} {{ {} }}",
            self.table(),
            self.set_name(),
            items.join(", ")
        );
    }
}

impl ElementDelta {
    /// A delta of element changes only.
    #[cfg(test)]
    pub(crate) fn from_set_changes(changes: Vec<SetChange>) -> ElementDelta {
        ElementDelta { steps: changes.into_iter().map(Step::Set).collect() }
    }

    /// Nothing changes.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The element changes, in the order they apply.
    pub fn set_changes(&self) -> impl Iterator<Item = &SetChange> {
        self.steps.iter().filter_map(|s| match s {
            Step::Set(c) => Some(c),
            Step::Chains(_) => None,
        })
    }

    /// The chain changes (services), in the order they apply.
    pub fn chain_edits(&self) -> impl Iterator<Item = &ChainEdit> {
        self.steps.iter().filter_map(|s| match s {
            Step::Chains(c) => Some(c),
            Step::Set(_) => None,
        })
    }

    /// Whether a chain appears, changes or goes: the delta then has no netlink form
    /// ([`ElementDelta::to_netlink`] is `None`) and goes through `nft` as one transaction.
    pub fn has_chain_edits(&self) -> bool {
        self.chain_edits().next().is_some()
    }

    /// Appends `other`'s changes after this one's (both in one transaction, in order).
    pub fn append(&mut self, mut other: ElementDelta) {
        self.steps.append(&mut other.steps);
    }

    /// The delta as `nft` text: one command per line (`delete element`, chain commands,
    /// `add element`), for one `nft -f -` transaction (or one `nft -i` session
    /// transaction). `""` when empty.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            match s {
                Step::Set(c) => c.render_text(&mut out),
                Step::Chains(c) => c.render_text(&mut out),
            }
        }
        out
    }
}

impl FromIterator<ElementDelta> for ElementDelta {
    fn from_iter<I: IntoIterator<Item = ElementDelta>>(iter: I) -> Self {
        let mut all = ElementDelta::default();
        for d in iter {
            all.append(d);
        }
        all
    }
}

/// Items of `a` that `b` lacks.
fn missing<'a, T: Eq + Hash>(a: &'a [T], b: &[T]) -> Vec<&'a T> {
    let b: HashSet<&T> = b.iter().collect();
    a.iter().filter(|x| !b.contains(x)).collect()
}

/// The part of `m` that `other` lacks, for a delta when only endpoints, published ports,
/// links and services changed: its networks and flags, and the entries of `m` that are
/// not (identically) in `other`.
fn partial(m: &FirewallModel, other: &FirewallModel) -> FirewallModel {
    fn own<T: Eq + Hash + Clone>(a: &[T], b: &[T]) -> Vec<T> {
        missing(a, b).into_iter().cloned().collect()
    }
    FirewallModel {
        networks: m.networks.clone(),
        endpoints: own(&m.endpoints, &other.endpoints),
        published: own(&m.published, &other.published),
        links: own(&m.links, &other.links),
        drop_foreign_forwarding: m.drop_foreign_forwarding,
        vxlan: m.vxlan.clone(),
        service_lb: m.service_lb,
        services: own(&m.services, &other.services),
        encryption: m.encryption.clone(),
    }
}

/// Keys of `from` that `to` lacks or maps to another value (as elements to delete: keys
/// alone).
fn removed(from: &Elements, to: &Elements) -> Vec<SetElement> {
    let gone = from.iter().filter(|(k, v)| to.get(*k) != Some(v)).map(|(k, _)| (k, &None));
    in_text_order(gone)
}

/// Elements of `to` that `from` lacks or maps to another value.
fn added(from: &Elements, to: &Elements) -> Vec<SetElement> {
    in_text_order(to.iter().filter(|(k, v)| from.get(*k) != Some(v)))
}

/// Whether going from `before` to `after` changes a rule or a chain (not only elements):
/// a chain per IPv6 bridge, or the foreign-forwarding drop.
fn rules_differ(before: &FirewallModel, after: &FirewallModel) -> bool {
    before.drop_foreign_forwarding != after.drop_foreign_forwarding
        || before.vxlan != after.vxlan
        || before.service_lb != after.service_lb
        || before.encryption != after.encryption
        || ruleset::lo6_bridges(before) != ruleset::lo6_bridges(after)
}

/// Renders the element changes from `before` to `after` (see [`crate::render_delta`]).
pub(crate) fn render_delta(before: &FirewallModel, after: &FirewallModel) -> String {
    if rules_differ(before, after) {
        // A rule changes: only the full ruleset can say that.
        return ruleset::render(after);
    }
    if before.networks == after.networks {
        // The hot path (attach, detach, publish, a service's backends): only endpoints,
        // ports or services changed. Every element they contribute is keyed by something of
        // their own (the port's interface name, the host port the controller reserved for
        // it, the service's VIP and id), so the delta is the difference of what the changed
        // ones contribute: its cost does not grow with the number of containers or
        // services on the host.
        let (gone, new) = (partial(before, after), partial(after, before));
        delta_of(&gone, &new).render_text()
    } else {
        delta_of(before, after).render_text()
    }
}

/// See [`crate::element_delta`].
pub(crate) fn element_delta_of(
    before: &FirewallModel,
    after: &FirewallModel,
) -> Option<ElementDelta> {
    if rules_differ(before, after) {
        return None;
    }
    Some(delta_of(before, after))
}

/// Element and chain changes from `before` to `after` (same rules).
fn delta_of(before: &FirewallModel, after: &FirewallModel) -> ElementDelta {
    let chains = chain_edit(&ruleset::service_chains(before), &ruleset::service_chains(after));
    diff_with_chains(&Contents::build(before), &Contents::build(after), chains)
}

/// The per-service chains that appear, change or go from `before` to `after` (each sorted
/// by name).
fn chain_edit(before: &[ruleset::Chain], after: &[ruleset::Chain]) -> ChainEdit {
    let old: BTreeMap<&str, &Vec<String>> =
        before.iter().map(|c| (c.name.as_str(), &c.rules)).collect();
    let new: BTreeMap<&str, &Vec<String>> =
        after.iter().map(|c| (c.name.as_str(), &c.rules)).collect();
    let mut edit = ChainEdit::default();
    for (&name, &rules) in &new {
        match old.get(name) {
            None => edit.created.push((name.to_string(), rules.clone())),
            Some(&was) if was != rules => edit.rewritten.push((name.to_string(), rules.clone())),
            Some(_) => {}
        }
    }
    edit.deleted = old.keys().filter(|n| !new.contains_key(*n)).map(|n| n.to_string()).collect();
    edit
}

/// The element changes that turn contents `b` into `a`.
#[cfg(test)]
pub(crate) fn diff(b: &Contents, a: &Contents) -> ElementDelta {
    diff_with_chains(b, a, ChainEdit::default())
}

/// The element changes that turn contents `b` into `a`, with `chains` between the deletions
/// and the additions.
fn diff_with_chains(b: &Contents, a: &Contents, chains: ChainEdit) -> ElementDelta {
    let (mut deletes, mut adds) = (Vec::new(), Vec::new());
    for (set, (from, to)) in b.sets.iter().zip(&a.sets).enumerate() {
        let gone = removed(from, to);
        if !gone.is_empty() {
            deletes.push(SetChange { set, delete: true, elements: gone });
        }
        let new = added(from, to);
        if !new.is_empty() {
            adds.push(SetChange { set, delete: false, elements: new });
        }
    }
    // Deletions first: a key whose value changes, or an interval handed from a removed
    // network to a new one, must be gone before it is added again; a chain that goes must
    // no longer be named by a map element. Chains next: a new chain must exist before an
    // element names it. One transaction.
    let mut steps: Vec<Step> = deletes.into_iter().map(Step::Set).collect();
    if !chains.is_empty() {
        steps.push(Step::Chains(chains));
    }
    steps.extend(adds.into_iter().map(Step::Set));
    ElementDelta { steps }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EndpointRules, NetworkRules, Proto, PublishedPort};
    use cove_model::MacAddr;

    fn base() -> FirewallModel {
        FirewallModel {
            networks: vec![NetworkRules {
                bridge: "br-test".into(),
                subnets4: vec!["10.99.0.0/24".parse().unwrap()],
                subnets6: vec!["fd00:99::/64".parse().unwrap()],
                internal: false,
                icc: false,
                masquerade: true,
            }],
            endpoints: vec![endpoint("cv1", 2)],
            published: vec![published(8080, 2)],
            links: vec![],
            drop_foreign_forwarding: false,
            vxlan: None,
            service_lb: false,
            services: vec![],
            encryption: None,
        }
    }

    #[test]
    fn a_link_is_three_sets_of_elements_and_goes_away_whole() {
        let before = FirewallModel { endpoints: vec![endpoint("cv1", 2)], ..base() };
        let link = |port| crate::model::LinkRule {
            from: "cv2".into(),
            to: "cv1".into(),
            proto: crate::model::Proto::Tcp,
            port,
        };
        let mut after = before.clone();
        after.endpoints.push(endpoint("cv2", 3));
        after.links = vec![link(80), link(443)];
        let typed = element_delta_of(&before, &after).unwrap();
        let add = typed.render_text();
        for want in [
            r#"add element bridge cove link_pairs { "cv2" . "cv1" }"#,
            r#"add element bridge cove link_fwd { "cv2" . "cv1" . tcp . 443, "cv2" . "cv1" . tcp . 80 }"#,
            r#"add element bridge cove link_rev { "cv1" . "cv2" . tcp . 443, "cv1" . "cv2" . tcp . 80 }"#,
        ] {
            assert!(add.contains(want), "{want} not in {add}");
        }
        let remove = render_delta(&after, &before);
        assert!(
            remove.contains(r#"delete element bridge cove link_pairs { "cv2" . "cv1" }"#),
            "{remove}"
        );
        assert!(!remove.contains("add element"), "{remove}");
        // The hot path's netlink form covers the link sets too.
        assert!(typed.to_netlink().is_some());
    }

    fn endpoint(port: &str, host: u8) -> EndpointRules {
        let ip = std::net::Ipv4Addr::new(10, 99, 0, host);
        EndpointRules {
            bridge: "br-test".into(),
            host_ifname: port.into(),
            mac: MacAddr::from_ipv4(ip),
            ipv4: Some(ip),
            ipv6: Some(format!("fd00:99::{host}").parse().unwrap()),
        }
    }

    fn published(hport: u16, host: u8) -> PublishedPort {
        PublishedPort {
            proto: Proto::Tcp,
            host_ip: None,
            host_port: hport,
            container_ip: format!("10.99.0.{host}").parse().unwrap(),
            container_port: 80,
            bridge: "br-test".into(),
        }
    }

    fn lines(s: &str) -> Vec<&str> {
        s.lines().collect()
    }

    #[test]
    fn no_change_is_empty() {
        assert_eq!(render_delta(&base(), &base()), "");
        assert_eq!(render_delta(&FirewallModel::default(), &FirewallModel::default()), "");
    }

    #[test]
    fn order_of_the_model_is_no_change() {
        let mut a = base();
        a.endpoints.push(endpoint("cv2", 3));
        let mut b = a.clone();
        b.endpoints.reverse();
        assert_eq!(render_delta(&a, &b), "");
    }

    #[test]
    fn adding_an_endpoint_adds_elements_only() {
        let mut after = base();
        after.endpoints.push(endpoint("cv2", 3));
        let delta = render_delta(&base(), &after);
        assert_eq!(
            lines(&delta),
            [
                r#"add element bridge cove guarded { "cv2" }"#,
                r#"add element bridge cove port_mac { "cv2" . 02:42:0a:63:00:03 }"#,
                r#"add element bridge cove port_ip4 { "cv2" . 02:42:0a:63:00:03 . 10.99.0.3 }"#,
                r#"add element bridge cove port_ip6 { "cv2" . 02:42:0a:63:00:03 . fd00:99::3 }"#,
                r#"add element bridge cove port_nd6 { "cv2" . 02:42:0a:63:00:03 . 0xfd000099000000000000000000000003 }"#,
                r#"add element bridge cove icc_off { "cv2" }"#,
            ]
        );
    }

    #[test]
    fn removing_an_endpoint_and_its_port_deletes_elements_only() {
        let mut after = base();
        after.endpoints.clear();
        after.published.clear();
        let delta = render_delta(&base(), &after);
        assert!(delta.lines().all(|l| l.starts_with("delete element ")), "{delta}");
        assert!(delta.contains("delete element inet cove dnat4_any { tcp . 8080 }\n"), "{delta}");
        assert!(delta.contains(r#"delete element bridge cove icc_off { "cv1" }"#), "{delta}");
        assert_eq!(delta.lines().count(), 7, "{delta}");
    }

    #[test]
    fn publishing_a_port_is_one_element() {
        let mut after = base();
        after.published.push(published(8081, 2));
        assert_eq!(
            render_delta(&base(), &after),
            "add element inet cove dnat4_any { tcp . 8081 : 10.99.0.2 . 80 }\n"
        );
    }

    #[test]
    fn a_host_port_moving_to_another_container_is_deleted_then_added() {
        let mut after = base();
        after.published[0].container_ip = "10.99.0.3".parse().unwrap();
        assert_eq!(
            lines(&render_delta(&base(), &after)),
            [
                "delete element inet cove dnat4_any { tcp . 8080 }",
                "add element inet cove dnat4_any { tcp . 8080 : 10.99.0.3 . 80 }",
            ]
        );
    }

    #[test]
    fn deletions_come_before_additions() {
        // IPv4 only: a new IPv6 bridge needs a chain, so that would be a full render.
        let mut before = base();
        before.networks[0].subnets6.clear();
        let mut after = before.clone();
        after.networks[0].bridge = "br-new".into();
        let delta = render_delta(&before, &after);
        let first_add = delta.find("add element").unwrap();
        assert!(delta[first_add..].lines().all(|l| l.starts_with("add element")), "{delta}");
        assert!(delta.contains(r#"delete element inet cove bridges { "br-test" }"#), "{delta}");
    }

    proptest::proptest! {
        /// The hot path's delta (only what changed endpoints and ports contribute) is the
        /// full diff of everything, for any change of endpoints and ports.
        #[test]
        fn entity_delta_equals_the_full_diff(
            before_eps in proptest::collection::btree_set(2u8..60, 0..12),
            after_eps in proptest::collection::btree_set(2u8..60, 0..12),
            before_ports in proptest::collection::btree_map(8000u16..8040, 2u8..60, 0..10),
            after_ports in proptest::collection::btree_map(8000u16..8040, 2u8..60, 0..10),
            moved in 0u8..3,
        ) {
            let make = |eps: &std::collections::BTreeSet<u8>,
                        ports: &std::collections::BTreeMap<u16, u8>,
                        shift: u8| {
                let mut m = base();
                m.endpoints = eps
                    .iter()
                    .map(|&h| {
                        let mut e = endpoint(&format!("cv{h}"), h);
                        // Same interface, another address: a value change under one key.
                        if shift > 0 && h % 7 == 0 {
                            e.ipv4 = Some(std::net::Ipv4Addr::new(10, 99, 1, h));
                        }
                        e
                    })
                    .collect();
                m.published = ports.iter().map(|(&p, &h)| published(p, h)).collect();
                m
            };
            let (b, a) = (make(&before_eps, &before_ports, 0), make(&after_eps, &after_ports, moved));
            let full = diff(&Contents::build(&b), &Contents::build(&a)).render_text();
            proptest::prop_assert_eq!(render_delta(&b, &a), full);
        }
    }

    #[test]
    fn a_new_or_removed_ipv6_bridge_renders_everything() {
        let mut after = base();
        after.networks[0].bridge = "br-new".into();
        let full = render_delta(&base(), &after);
        assert_eq!(full, ruleset::render(&after));
        assert!(full.contains("chain lo6_br-new {"), "{full}");
        assert!(!full.contains("lo6_br-test"), "{full}");
    }

    #[test]
    fn a_rule_change_renders_everything() {
        let after = FirewallModel { drop_foreign_forwarding: true, ..base() };
        assert_eq!(render_delta(&base(), &after), ruleset::render(&after));
        assert!(ruleset::render(&after).contains("counter name \"drop_foreign\" drop"));
        assert!(!ruleset::render(&base()).contains("counter name \"drop_foreign\" drop"));
    }
}
