//! Element deltas between two models: the hot path (attach a container, publish a port).
//!
//! A delta is a typed value ([`ElementDelta`]) with two renderings: nft text
//! ([`ElementDelta::render_text`], for `nft`) and netlink data
//! ([`ElementDelta::to_netlink`](crate::netlink), for the kernel directly).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::hash::Hash;

use crate::elements::{in_text_order, Contents, Elements, SetDecl, SetElement, DECLS};
use crate::model::FirewallModel;
use crate::ruleset;

/// Element changes to apply in one transaction on top of a kernel holding some ruleset:
/// `delete element` changes (first) and `add element` changes of Cove's named sets and
/// maps. Made by [`crate::element_delta`]; several are merged by concatenation
/// ([`ElementDelta::append`], or `collect()`), in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementDelta {
    pub(crate) changes: Vec<SetChange>,
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
    /// Nothing changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes, in the order they apply.
    pub fn changes(&self) -> &[SetChange] {
        &self.changes
    }

    /// Appends `other`'s changes after this one's (both in one transaction, in order).
    pub fn append(&mut self, mut other: ElementDelta) {
        self.changes.append(&mut other.changes);
    }

    /// The delta as `nft` text: one `delete element` / `add element` line per change, for
    /// one `nft -f -` transaction (or one `nft -i` session transaction). `""` when empty.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for c in &self.changes {
            c.render_text(&mut out);
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

/// The part of `m` an element delta depends on when only endpoints and published ports
/// changed: its networks, and the given endpoints and ports.
fn partial(
    m: &FirewallModel,
    endpoints: Vec<&crate::model::EndpointRules>,
    published: Vec<&crate::model::PublishedPort>,
    links: Vec<&crate::model::LinkRule>,
) -> FirewallModel {
    FirewallModel {
        networks: m.networks.clone(),
        endpoints: endpoints.into_iter().cloned().collect(),
        published: published.into_iter().cloned().collect(),
        links: links.into_iter().cloned().collect(),
        drop_foreign_forwarding: m.drop_foreign_forwarding,
        vxlan: m.vxlan.clone(),
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
        || before.encryption != after.encryption
        || ruleset::lo6_bridges(before) != ruleset::lo6_bridges(after)
}

/// Renders the element changes from `before` to `after` (see [`crate::render_delta`]).
pub(crate) fn render_delta(before: &FirewallModel, after: &FirewallModel) -> String {
    if rules_differ(before, after) {
        // A rule changes: only the full ruleset can say that.
        return ruleset::render(after);
    }
    let (b, a) = if before.networks == after.networks {
        // The hot path (attach, detach, publish): only endpoints or ports changed. Every
        // element they contribute is keyed by something of their own (the port's interface
        // name, the host port the controller reserved for it), so the delta is the
        // difference of what the changed ones contribute: its cost does not grow with the
        // number of containers on the host.
        let gone = partial(
            before,
            missing(&before.endpoints, &after.endpoints),
            missing(&before.published, &after.published),
            missing(&before.links, &after.links),
        );
        let new = partial(
            after,
            missing(&after.endpoints, &before.endpoints),
            missing(&after.published, &before.published),
            missing(&after.links, &before.links),
        );
        (Contents::build(&gone), Contents::build(&new))
    } else {
        (Contents::build(before), Contents::build(after))
    };
    diff(&b, &a).render_text()
}

/// See [`crate::element_delta`].
pub(crate) fn element_delta_of(
    before: &FirewallModel,
    after: &FirewallModel,
) -> Option<ElementDelta> {
    if rules_differ(before, after) {
        return None;
    }
    Some(diff(&Contents::build(before), &Contents::build(after)))
}

/// The element changes that turn contents `b` into `a`.
pub(crate) fn diff(b: &Contents, a: &Contents) -> ElementDelta {
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
    // network to a new one, must be gone before it is added again. One transaction.
    deletes.append(&mut adds);
    ElementDelta { changes: deletes }
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
