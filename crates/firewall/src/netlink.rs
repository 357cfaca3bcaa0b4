//! Element deltas as nftables netlink data: the hot path without an `nft` process.
//!
//! [`element_batch`] turns the `add element` / `delete element` lines this crate renders
//! ([`crate::element_delta`]) into keys and values in the byte layout the kernel keeps in
//! its set elements, from the sets' declared types ([`DECLS`]). The kernel executor sends
//! them as one `NFT_MSG_NEWSETELEM` / `NFT_MSG_DELSETELEM` batch: one system call from the
//! daemon instead of a round trip through `nft -i` (parse, cache check, two process
//! switches; most of a published-port attach's firewall time). Anything it does not know how
//! to encode (an interval set, a `typeof` it does not model, a line of another shape)
//! makes it return `None`, and the text goes through `nft` as before.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::elements::{Family, SetDecl, DECLS};
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

/// The field types a set key or map value can be made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
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
                    out.push(u8::from_str_radix(part, 16).ok().filter(|_| part.len() == 2)?);
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
            Field::Service => out.extend_from_slice(&text.parse::<u16>().ok()?.to_be_bytes()),
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
fn layout(d: &SetDecl) -> Option<(Vec<Field>, Vec<Field>)> {
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
    let d = DECLS.iter().find(|d| d.family.table() == format!("{fam} {table}") && d.name == set)?;
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
pub fn element_batch(delta: &str) -> Option<Vec<SetElements>> {
    delta.lines().map(str::trim).filter(|l| !l.is_empty()).map(line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_published_port_attach() {
        let delta = "delete element inet cove dnat4_any { tcp . 28004 }\n\
             add element inet cove dnat4_any { tcp . 28004 : 10.210.0.4 . 80 }\n\
             add element bridge cove guarded { \"cv50f1747b244d\" }\n\
             add element bridge cove port_mac { \"cv50f1747b244d\" . 02:42:0a:d2:00:04 }\n\
             add element bridge cove port_nd6 { \"cv1\" . 02:42:0a:d2:00:04 . 0x20010db8000000000000000000000001 }\n";
        let b = element_batch(delta).expect("encodable");
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
    fn several_elements_per_line() {
        let b = element_batch("add element bridge cove icc_off { \"cv1\", \"cv2\" }").unwrap();
        assert_eq!(b[0].elements.len(), 2);
    }

    #[test]
    fn refuses_what_it_cannot_encode() {
        for bad in [
            // interval sets go through nft
            "add element inet cove subnets4 { 10.0.0.0/16 }",
            "add element inet cove nosuchset { \"x\" }",
            "flush set inet cove bridges",
            "add element inet cove dnat4_any { tcp . 80 }",
            "add element bridge cove guarded { \"abcdefghijklmnopq\" }",
            "add element bridge cove port_mac { \"cv1\" . 02:42:0a }",
            "add element bridge cove port_ip4 { \"cv1\" . 02:42:0a:d2:00:04 . 300.0.0.1 }",
        ] {
            assert_eq!(element_batch(bad), None, "{bad}");
        }
        assert_eq!(element_batch(""), Some(vec![]));
    }

    #[test]
    fn every_hash_set_is_encodable() {
        // The sets a container start or stop touches must all take the netlink path.
        for d in DECLS {
            let interval = d.spec.iter().any(|s| s.starts_with("flags"));
            assert_eq!(layout(d).is_some(), !interval, "{}", d.name);
        }
    }
}
