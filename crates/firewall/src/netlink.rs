//! Element deltas as nftables netlink data: the hot path without an `nft` process.
//!
//! [`ElementDelta::to_netlink`] turns a typed element delta ([`crate::element_delta`]) into
//! keys and values in the byte layout the kernel keeps in its set elements. The kernel
//! executor sends them as one `NFT_MSG_NEWSETELEM` / `NFT_MSG_DELSETELEM` batch: one system
//! call from the daemon instead of a round trip through `nft -i` (parse, cache check, two
//! process switches; most of a published-port attach's firewall time). What it does not
//! encode (an interval set, whose ranges the kernel keeps as pairs of boundary elements)
//! makes it return `None`, and the delta's text goes through `nft` as before.

use crate::delta::ElementDelta;
use crate::elements::{Family, FieldValue};
use crate::names::{BRIDGE_TABLE, INET_TABLE, NETDEV_TABLE};
/// `NFPROTO_*` of a table family, as netlink names it.
pub const NFPROTO_INET: u8 = 1;
/// `NFPROTO_BRIDGE`.
pub const NFPROTO_BRIDGE: u8 = 7;
/// `NFPROTO_NETDEV`.
pub const NFPROTO_NETDEV: u8 = 5;

/// One set element: its key and, for a map, its value, in the kernel's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Key bytes (each field of a concatenation padded to 4 bytes).
    pub key: Vec<u8>,
    /// Map value bytes; `None` for a set, or a map element being deleted.
    pub data: Option<Vec<u8>>,
}

/// The elements one `add element` or `delete element` line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetElements {
    /// `NFPROTO_*` of the table.
    pub family: u8,
    /// Table name.
    pub table: &'static str,
    /// Set or map name.
    pub set: &'static str,
    /// `delete element` rather than `add element`.
    pub delete: bool,
    /// The elements, in the line's order.
    pub elements: Vec<Element>,
}

impl FieldValue {
    /// Appends the field's bytes; in a concatenation (`pad`) padded to a multiple of 4, as
    /// the kernel's registers hold each field. `None` for what is not encoded here (an
    /// interval's prefix, an interface name the kernel would not take).
    fn encode(&self, pad: bool, out: &mut Vec<u8>) -> Option<()> {
        let start = out.len();
        match self {
            FieldValue::Ifname(name) => {
                if name.is_empty() || name.len() >= 16 || !name.is_ascii() {
                    return None;
                }
                out.extend_from_slice(name.as_bytes());
                out.resize(start + 16, 0);
            }
            FieldValue::Ether(mac) => out.extend_from_slice(&mac.0),
            FieldValue::Ipv4(ip) => out.extend_from_slice(&ip.octets()),
            FieldValue::Ipv6(ip) => out.extend_from_slice(&ip.octets()),
            FieldValue::Net4(_) | FieldValue::Net6(_) => return None,
            FieldValue::ServiceRange(..) | FieldValue::Goto(_) => return None,
            FieldValue::Proto(p) => out.push(p.number()),
            FieldValue::Service(port) => out.extend_from_slice(&port.to_be_bytes()),
            FieldValue::Raw128(raw) => out.extend_from_slice(&raw.to_be_bytes()),
        }
        if pad {
            out.resize(start + (out.len() - start).div_ceil(4) * 4, 0);
        }
        Some(())
    }
}

/// A key or value: its fields, each padded in a concatenation.
fn encode_all(fields: &[FieldValue]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(32);
    let pad = fields.len() > 1;
    for f in fields {
        f.encode(pad, &mut out)?;
    }
    Some(out)
}

fn family_of(f: Family) -> (u8, &'static str) {
    match f {
        Family::Inet => (NFPROTO_INET, INET_TABLE),
        Family::Bridge => (NFPROTO_BRIDGE, BRIDGE_TABLE),
        Family::Netdev => (NFPROTO_NETDEV, NETDEV_TABLE),
    }
}

impl ElementDelta {
    /// The netlink form of the delta (see the module docs): one [`SetElements`] per change,
    /// in order. `None` when any change cannot be encoded here (an interval set, a chain of a
    /// service); the text ([`ElementDelta::render_text`]) then goes through `nft`, the whole
    /// delta in one transaction.
    pub fn to_netlink(&self) -> Option<Vec<SetElements>> {
        if self.has_chain_edits() {
            return None;
        }
        self.set_changes()
            .map(|c| {
                let d = c.decl();
                if d.interval() {
                    return None;
                }
                let elements = c
                    .elements()
                    .iter()
                    .map(|e| {
                        // A map element is added with its value and deleted by its key alone.
                        let data = match (&e.value, c.is_delete()) {
                            (Some(v), false) => Some(encode_all(v)?),
                            _ => None,
                        };
                        Some(Element { key: encode_all(&e.key)?, data })
                    })
                    .collect::<Option<Vec<_>>>()?;
                let (family, table) = family_of(d.family);
                Some(SetElements { family, table, set: d.name, delete: c.is_delete(), elements })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use cove_model::MacAddr;
    use proptest::prelude::*;

    use super::*;
    use crate::delta::{diff, SetChange};
    use crate::elements::{in_text_order, Contents, SetElement, DECLS};
    use crate::model::{
        EndpointRules, FirewallModel, LinkRule, NetworkRules, Proto, PublishedPort,
    };
    use FieldValue as F;

    /// The encoder this module had before deltas were typed: it re-parsed the delta's nft
    /// text. Kept as the oracle: the typed encoder must give exactly its bytes.
    mod reference {
        use std::net::{Ipv4Addr, Ipv6Addr};

        use super::super::{Element, SetElements, NFPROTO_BRIDGE, NFPROTO_INET, NFPROTO_NETDEV};
        use crate::elements::{Family, FieldValue, SetDecl, DECLS};
        use crate::names::{BRIDGE_TABLE, INET_TABLE, NETDEV_TABLE};

        /// The field types a set key or map value can be made of.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum Field {
            Ifname,
            Ether,
            Ipv4,
            Ipv6,
            Proto,
            Service,
            /// `@th,64,128`: 128 raw bits of the transport header (an ND target address).
            Raw128,
        }

        impl Field {
            fn parse(t: &str) -> Option<Self> {
                Some(match t {
                    "ifname" | "iifname" | "oifname" => Field::Ifname,
                    "ether_addr" | "ether saddr" | "ether daddr" => Field::Ether,
                    "ipv4_addr" => Field::Ipv4,
                    "ipv6_addr" => Field::Ipv6,
                    "inet_proto" => Field::Proto,
                    "inet_service" => Field::Service,
                    "@th,64,128" => Field::Raw128,
                    _ => return None,
                })
            }

            /// Appends the field's bytes; in a concatenation (`pad`) padded to a multiple of 4, as
            /// the kernel's registers hold each field.
            fn encode(self, text: &str, pad: bool, out: &mut Vec<u8>) -> Option<()> {
                let start = out.len();
                match self {
                    Field::Ifname => {
                        let name = text.strip_prefix('"')?.strip_suffix('"')?;
                        if name.is_empty() || name.len() >= 16 || !name.is_ascii() {
                            return None;
                        }
                        out.extend_from_slice(name.as_bytes());
                        out.resize(start + 16, 0);
                    }
                    Field::Ether => {
                        let mut n = 0;
                        for part in text.split(':') {
                            out.push(
                                u8::from_str_radix(part, 16).ok().filter(|_| part.len() == 2)?,
                            );
                            n += 1;
                        }
                        if n != 6 {
                            return None;
                        }
                    }
                    Field::Ipv4 => out.extend_from_slice(&text.parse::<Ipv4Addr>().ok()?.octets()),
                    Field::Ipv6 => out.extend_from_slice(&text.parse::<Ipv6Addr>().ok()?.octets()),
                    Field::Proto => out.push(match text {
                        "tcp" => 6,
                        "udp" => 17,
                        "sctp" => 132,
                        n => n.parse().ok()?,
                    }),
                    Field::Service => {
                        out.extend_from_slice(&text.parse::<u16>().ok()?.to_be_bytes())
                    }
                    Field::Raw128 => {
                        let hex = text.strip_prefix("0x")?;
                        if hex.len() != 32 {
                            return None;
                        }
                        out.extend_from_slice(&u128::from_str_radix(hex, 16).ok()?.to_be_bytes());
                    }
                }
                if pad {
                    out.resize(start + (out.len() - start).div_ceil(4) * 4, 0);
                }
                Some(())
            }
        }

        /// Key and value field types of a declaration; `None` for what is not encoded here
        /// (interval sets, unknown types).
        pub(super) fn layout(d: &SetDecl) -> Option<(Vec<Field>, Vec<Field>)> {
            let mut types = None;
            for s in d.spec {
                if s.starts_with("flags") {
                    return None;
                }
                types = s.strip_prefix("type ").or_else(|| s.strip_prefix("typeof "));
            }
            let (key, value) = match types?.split_once(" : ") {
                Some((k, v)) => (k, Some(v)),
                None => (types?, None),
            };
            let fields = |t: &str| t.split(" . ").map(Field::parse).collect::<Option<Vec<_>>>();
            Some((fields(key)?, value.map(fields).unwrap_or(Some(vec![]))?))
        }

        fn encode_all(fields: &[Field], text: &str) -> Option<Vec<u8>> {
            let parts: Vec<&str> = text.split(" . ").collect();
            if parts.len() != fields.len() {
                return None;
            }
            let mut out = Vec::with_capacity(32);
            let pad = fields.len() > 1;
            for (f, p) in fields.iter().zip(parts) {
                f.encode(p.trim(), pad, &mut out)?;
            }
            Some(out)
        }

        fn family_of(f: Family) -> (u8, &'static str) {
            match f {
                Family::Inet => (NFPROTO_INET, INET_TABLE),
                Family::Bridge => (NFPROTO_BRIDGE, BRIDGE_TABLE),
                Family::Netdev => (NFPROTO_NETDEV, NETDEV_TABLE),
            }
        }

        /// One `add element <family> <table> <set> { a, b : c }` line.
        fn line(l: &str) -> Option<SetElements> {
            let (delete, rest) = if let Some(r) = l.strip_prefix("add element ") {
                (false, r)
            } else {
                (true, l.strip_prefix("delete element ")?)
            };
            let (head, body) = rest.split_once(" { ")?;
            let body = body.strip_suffix(" }")?;
            let mut words = head.split(' ');
            let (fam, table, set) = (words.next()?, words.next()?, words.next()?);
            if words.next().is_some() {
                return None;
            }
            let d = DECLS
                .iter()
                .find(|d| d.family.table() == format!("{fam} {table}") && d.name == set)?;
            let (key_fields, value_fields) = layout(d)?;
            let mut elements = vec![];
            for e in body.split(", ") {
                let (k, v) = match e.split_once(" : ") {
                    Some((k, v)) => (k, Some(v)),
                    None => (e, None),
                };
                // A map element is added with its value and deleted by its key alone.
                if d.map != v.is_some() && !(d.map && delete) {
                    return None;
                }
                let data = match v {
                    Some(v) => Some(encode_all(&value_fields, v)?),
                    None => None,
                };
                elements.push(Element { key: encode_all(&key_fields, k)?, data });
            }
            let (family, table) = family_of(d.family);
            Some(SetElements { family, table, set: d.name, delete, elements })
        }

        /// The netlink form of an element delta (see the module docs), in its order; `None` when
        /// any line cannot be encoded here.
        pub(super) fn element_batch(delta: &str) -> Option<Vec<SetElements>> {
            delta.lines().map(str::trim).filter(|l| !l.is_empty()).map(line).collect()
        }

        /// Whether a typed field is of the declared type `f`.
        pub(super) fn matches(f: Field, v: &FieldValue) -> bool {
            matches!(
                (f, v),
                (Field::Ifname, FieldValue::Ifname(_))
                    | (Field::Ether, FieldValue::Ether(_))
                    | (Field::Ipv4, FieldValue::Ipv4(_))
                    | (Field::Ipv6, FieldValue::Ipv6(_))
                    | (Field::Proto, FieldValue::Proto(_))
                    | (Field::Service, FieldValue::Service(_))
                    | (Field::Raw128, FieldValue::Raw128(_))
            )
        }
    }

    fn change(set: &str, delete: bool, elements: Vec<SetElement>) -> SetChange {
        let set = DECLS.iter().position(|d| d.name == set).expect("declared set");
        SetChange { set, delete, elements }
    }

    fn el(key: Vec<FieldValue>, value: Option<Vec<FieldValue>>) -> SetElement {
        SetElement { key, value }
    }

    fn ifname(n: &str) -> FieldValue {
        F::Ifname(n.into())
    }

    fn mac(last: u8) -> FieldValue {
        F::Ether(MacAddr([2, 0x42, 10, 0xd2, 0, last]))
    }

    #[test]
    fn encodes_a_published_port_attach() {
        let key = vec![F::Proto(Proto::Tcp), F::Service(28004)];
        let value = vec![F::Ipv4(Ipv4Addr::new(10, 210, 0, 4)), F::Service(80)];
        let nd = 0x2001_0db8_0000_0000_0000_0000_0000_0001;
        let delta = ElementDelta::from_set_changes(vec![
            change("dnat4_any", true, vec![el(key.clone(), None)]),
            change("dnat4_any", false, vec![el(key, Some(value))]),
            change("guarded", false, vec![el(vec![ifname("cv50f1747b244d")], None)]),
            change("port_mac", false, vec![el(vec![ifname("cv50f1747b244d"), mac(4)], None)]),
            change("port_nd6", false, vec![el(vec![ifname("cv1"), mac(4), F::Raw128(nd)], None)]),
        ]);
        let text = "delete element inet cove dnat4_any { tcp . 28004 }\n\
             add element inet cove dnat4_any { tcp . 28004 : 10.210.0.4 . 80 }\n\
             add element bridge cove guarded { \"cv50f1747b244d\" }\n\
             add element bridge cove port_mac { \"cv50f1747b244d\" . 02:42:0a:d2:00:04 }\n\
             add element bridge cove port_nd6 { \"cv1\" . 02:42:0a:d2:00:04 . 0x20010db8000000000000000000000001 }\n";
        assert_eq!(delta.render_text(), text);
        let b = delta.to_netlink().expect("encodable");
        assert_eq!(Some(&b), reference::element_batch(text).as_ref());
        assert_eq!(b.len(), 5);
        assert!(b[0].delete && b[0].elements[0].data.is_none());
        assert_eq!(b[0].elements[0].key, [6, 0, 0, 0, 0x6d, 0x64, 0, 0]);
        assert_eq!((b[1].family, b[1].table, b[1].set), (NFPROTO_INET, "cove", "dnat4_any"));
        assert_eq!(b[1].elements[0].data.as_deref(), Some(&[10, 210, 0, 4, 0, 80, 0, 0][..]));
        assert_eq!(b[2].family, NFPROTO_BRIDGE);
        assert_eq!(&b[2].elements[0].key[..], b"cv50f1747b244d\0\0");
        let mac = &b[3].elements[0].key;
        assert_eq!(mac.len(), 24);
        assert_eq!(&mac[16..], &[2, 0x42, 10, 0xd2, 0, 4, 0, 0]);
        let nd = &b[4].elements[0].key;
        assert_eq!(nd.len(), 16 + 8 + 16);
        assert_eq!(&nd[24..28], &[0x20, 0x01, 0x0d, 0xb8]);
    }

    #[test]
    fn several_elements_per_set() {
        let both = vec![el(vec![ifname("cv1")], None), el(vec![ifname("cv2")], None)];
        let delta = ElementDelta::from_set_changes(vec![change("icc_off", false, both)]);
        assert_eq!(delta.render_text(), "add element bridge cove icc_off { \"cv1\", \"cv2\" }\n");
        let b = delta.to_netlink().unwrap();
        assert_eq!(b[0].elements.len(), 2);
        assert_eq!(Some(b), reference::element_batch(&delta.render_text()));
    }

    #[test]
    fn refuses_what_it_cannot_encode() {
        let subnet = el(vec![F::Net4("10.0.0.0/16".parse().unwrap())], None);
        let guarded = change("guarded", false, vec![el(vec![ifname("cv1")], None)]);
        // Interval sets go through nft, and a delta with one goes through nft whole.
        for set in ["subnets4", "masq4"] {
            let d = ElementDelta::from_set_changes(vec![
                guarded.clone(),
                change(set, false, vec![subnet.clone()]),
            ]);
            assert_eq!(d.to_netlink(), None, "{set}");
            assert_eq!(reference::element_batch(&d.render_text()), None, "{set}");
        }
        let long = change("guarded", false, vec![el(vec![ifname("abcdefghijklmnopq")], None)]);
        assert_eq!(ElementDelta::from_set_changes(vec![long]).to_netlink(), None);
        assert_eq!(ElementDelta::default().to_netlink(), Some(vec![]));
    }

    /// A model with elements in every set and map.
    fn everything() -> FirewallModel {
        let ep = |port: &str, bridge: &str, host: u8| EndpointRules {
            bridge: bridge.into(),
            host_ifname: port.into(),
            mac: MacAddr([2, 0x42, 10, 1, 0, host]),
            ipv4: Some(Ipv4Addr::new(10, 1, 0, host)),
            ipv6: Some(format!("fd00:1::{host}").parse().unwrap()),
        };
        let port = |host_ip: Option<&str>, ctr: &str| PublishedPort {
            proto: Proto::Udp,
            host_ip: host_ip.map(|h| h.parse().unwrap()),
            host_port: 5353,
            container_ip: ctr.parse().unwrap(),
            container_port: 53,
            bridge: "br-a".into(),
        };
        let mut internal = net("br-i", false);
        internal.internal = true;
        FirewallModel {
            networks: vec![net("br-a", false), internal],
            endpoints: vec![ep("cv1", "br-a", 2), ep("cv2", "br-a", 3)],
            published: vec![
                port(None, "10.1.0.2"),
                port(None, "fd00:1::2"),
                port(Some("127.0.0.1"), "10.1.0.2"),
                port(Some("::1"), "fd00:1::2"),
            ],
            links: vec![LinkRule {
                from: "cv2".into(),
                to: "cv1".into(),
                proto: Proto::Sctp,
                port: 9,
            }],
            drop_foreign_forwarding: false,
            vxlan: None,
            service_lb: false,
            services: vec![],
            encryption: None,
        }
    }

    fn net(bridge: &str, icc: bool) -> NetworkRules {
        let n = if bridge == "br-a" { 1 } else { 2 };
        NetworkRules {
            bridge: bridge.into(),
            subnets4: vec![format!("10.{n}.0.0/24").parse().unwrap()],
            subnets6: vec![format!("fd00:{n}::/64").parse().unwrap()],
            internal: false,
            icc,
            masquerade: true,
        }
    }

    #[test]
    fn every_hash_set_is_encodable_and_typed_as_declared() {
        // The sets a container start or stop touches must all take the netlink path.
        let c = Contents::build(&everything());
        assert!(c.problems.is_empty(), "{:?}", c.problems);
        for (set, (d, elements)) in DECLS.iter().zip(&c.sets).enumerate() {
            if d.service {
                // Service elements change with service chains, which only nft text says:
                // they always take the nft path (see services_take_the_nft_path).
                continue;
            }
            assert!(!elements.is_empty(), "{} is empty", d.name);
            let elements = in_text_order(elements);
            // Every field is of the type the declaration gives.
            if let Some((key, value)) = reference::layout(d) {
                for e in &elements {
                    assert_eq!(e.key.len(), key.len(), "{}", d.name);
                    assert!(
                        key.iter().zip(&e.key).all(|(f, v)| reference::matches(*f, v)),
                        "{}",
                        d.name
                    );
                    let v = e.value.as_deref().unwrap_or_default();
                    assert_eq!(v.len(), value.len(), "{}", d.name);
                    assert!(
                        value.iter().zip(v).all(|(f, v)| reference::matches(*f, v)),
                        "{}",
                        d.name
                    );
                }
            }
            let change = SetChange { set, delete: false, elements };
            let delta = ElementDelta::from_set_changes(vec![change]);
            assert_eq!(delta.to_netlink().is_some(), !d.interval(), "{}", d.name);
            assert_eq!(reference::layout(d).is_some(), !d.interval(), "{}", d.name);
        }
    }

    fn arb_ifname() -> impl Strategy<Value = String> {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_.-";
        proptest::collection::vec(0..CHARS.len(), 1..=15)
            .prop_map(|v| v.into_iter().map(|i| CHARS[i] as char).collect())
    }

    fn arb_proto() -> impl Strategy<Value = Proto> {
        prop_oneof![Just(Proto::Tcp), Just(Proto::Udp), Just(Proto::Sctp)]
    }

    fn arb_endpoint() -> impl Strategy<Value = EndpointRules> {
        (
            arb_ifname(),
            any::<[u8; 6]>(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u128>()),
            any::<bool>(),
        )
            .prop_map(|(name, mac, v4, v6, icc)| EndpointRules {
                bridge: if icc { "br-a" } else { "br-b" }.into(),
                host_ifname: name,
                mac: MacAddr(mac),
                ipv4: v4.map(Ipv4Addr::from),
                ipv6: v6.map(Ipv6Addr::from),
            })
    }

    fn arb_published() -> impl Strategy<Value = PublishedPort> {
        (arb_proto(), 0u8..3, any::<bool>(), any::<u128>(), 1u16.., any::<u128>(), 1u16..).prop_map(
            |(proto, host, v6, h, host_port, c, container_port)| {
                let ip = |raw: u128| {
                    if v6 {
                        IpAddr::V6(Ipv6Addr::from(raw))
                    } else {
                        IpAddr::V4(Ipv4Addr::from(raw as u32))
                    }
                };
                PublishedPort {
                    proto,
                    host_ip: match host {
                        0 => None,
                        1 => Some(if v6 {
                            Ipv6Addr::UNSPECIFIED.into()
                        } else {
                            Ipv4Addr::UNSPECIFIED.into()
                        }),
                        _ => Some(ip(h)),
                    },
                    host_port,
                    container_ip: ip(c),
                    container_port,
                    bridge: if c % 2 == 0 { "br-a" } else { "br-b" }.into(),
                }
            },
        )
    }

    fn arb_link() -> impl Strategy<Value = LinkRule> {
        (arb_ifname(), arb_ifname(), arb_proto(), 1u16..)
            .prop_map(|(from, to, proto, port)| LinkRule { from, to, proto, port })
    }

    proptest! {
        /// For any endpoints, ports and links, added or removed: the typed encoder gives the
        /// bytes the text re-parser gave for the delta's text, and covers every change.
        #[test]
        fn typed_netlink_equals_the_text_encoder(
            endpoints in proptest::collection::vec(arb_endpoint(), 0..8),
            published in proptest::collection::vec(arb_published(), 0..8),
            links in proptest::collection::vec(arb_link(), 0..4),
        ) {
            let base = FirewallModel {
                networks: vec![net("br-a", true), net("br-b", false)],
                ..FirewallModel::default()
            };
            let full = FirewallModel { endpoints, published, links, ..base.clone() };
            let (b, a) = (Contents::build(&base), Contents::build(&full));
            for delta in [diff(&b, &a), diff(&a, &b)] {
                let text = delta.render_text();
                let typed = delta.to_netlink();
                prop_assert!(typed.is_some(), "{}", text);
                prop_assert_eq!(typed, reference::element_batch(&text));
            }
            // With the networks (interval sets) in it, the delta goes through nft.
            let with_networks = diff(&Contents::build(&FirewallModel::default()), &a);
            prop_assert_eq!(with_networks.to_netlink(), None);
            prop_assert_eq!(reference::element_batch(&with_networks.render_text()), None);
        }
    }
}
