//! Hand-written codec for the hot path: parsing a client query and writing answers.
//!
//! A query from a container only needs its header, its single question and its OPT record,
//! so this parses exactly that into a fixed-size, allocation-free [`ParsedQuery`] and writes
//! answers straight into a reused buffer. Untrusted *upstream* replies are not parsed here:
//! they go through hickory-proto's full parser (see [`crate::validate_reply`]).

use std::net::IpAddr;

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest name in wire form (RFC 1035 §2.3.4), including the root label.
pub const MAX_NAME_LEN: usize = 255;
/// Largest UDP reply to a client that sent no EDNS OPT record.
pub const MIN_UDP_SIZE: usize = 512;
/// The UDP payload size this resolver advertises in its own OPT records.
pub const OUR_UDP_SIZE: u16 = 4096;

/// Record type A.
pub const TYPE_A: u16 = 1;
/// Record type PTR.
pub const TYPE_PTR: u16 = 12;
/// Record type AAAA.
pub const TYPE_AAAA: u16 = 28;
/// Record type OPT (EDNS).
pub const TYPE_OPT: u16 = 41;
/// Class IN.
pub const CLASS_IN: u16 = 1;

/// Response codes used by the resolver.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// Format error: the query could not be understood.
    pub const FORMERR: u8 = 1;
    /// Server failure: no upstream answered, or forwarding is not allowed.
    pub const SERVFAIL: u8 = 2;
    /// Not implemented (opcode other than QUERY).
    pub const NOTIMP: u8 = 4;
    /// Refused: too many queries in flight.
    pub const REFUSED: u8 = 5;
}

/// A lower-cased name in wire form (length-prefixed labels ending with the root label).
///
/// Used as the lookup key of the name table: wire form keeps label boundaries exact (a
/// label may legally contain a `.`), and needs no allocation to build from a query.
#[derive(Clone, Copy)]
pub struct NameKey {
    buf: [u8; MAX_NAME_LEN],
    len: u8,
}

impl NameKey {
    /// The wire bytes, including the terminating root label.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// Builds a key from wire bytes; `None` if longer than 255 bytes.
    pub fn from_wire(wire: &[u8]) -> Option<Self> {
        if wire.len() > MAX_NAME_LEN {
            return None;
        }
        let mut buf = [0u8; MAX_NAME_LEN];
        buf[..wire.len()].copy_from_slice(wire);
        Some(NameKey { buf, len: wire.len() as u8 })
    }
}

impl std::fmt::Debug for NameKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NameKey({})", display_wire(self.as_bytes()))
    }
}

/// The EDNS parameters of a query's OPT record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Advertised UDP payload size.
    pub udp_size: u16,
    /// EDNS version.
    pub version: u8,
    /// The DO bit.
    pub dnssec_ok: bool,
}

/// A client query that passed [`parse_query`]. Offsets refer to the parsed buffer.
#[derive(Debug, Clone, Copy)]
pub struct ParsedQuery {
    /// Message id.
    pub id: u16,
    /// Opcode (always 0 here: others are answered NOTIMP by [`parse_query`]'s caller).
    pub opcode: u8,
    /// RD flag.
    pub recursion_desired: bool,
    /// CD flag.
    pub checking_disabled: bool,
    /// End of the question section (question is `buf[12..question_end]`).
    pub question_end: usize,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// Lower-cased question name.
    pub key: NameKey,
    /// OPT record, if any.
    pub edns: Option<Edns>,
}

impl ParsedQuery {
    /// Largest reply the client accepts over UDP (RFC 6891 §6.2.5: never below 512).
    pub fn max_udp_size(&self) -> usize {
        match self.edns {
            Some(e) => (e.udp_size as usize).max(MIN_UDP_SIZE),
            None => MIN_UDP_SIZE,
        }
    }
}

/// Why a datagram is not a query we can answer normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Shorter than a header, or a response (QR=1): dropped silently so that no two
    /// resolvers can be made to bounce messages at each other.
    #[error("not a DNS query")]
    Drop,
    /// Malformed: answer FORMERR with this id.
    #[error("malformed query")]
    FormErr {
        /// Id of the offending message.
        id: u16,
        /// Opcode of the offending message.
        opcode: u8,
    },
    /// Opcode other than QUERY: answer NOTIMP.
    #[error("opcode not implemented")]
    NotImp {
        /// Id of the offending message.
        id: u16,
        /// Its opcode.
        opcode: u8,
    },
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Skips a (possibly compressed) name starting at `pos`; returns the offset after it.
/// Pointers are not followed: only the bytes in place are consumed, so this cannot loop.
fn skip_name(b: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *b.get(pos)?;
        match len & 0xC0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + len as usize,
            0xC0 => return (pos + 2 <= b.len()).then_some(pos + 2),
            _ => return None,
        }
    }
}

/// Parses a client query: header, exactly one question, and the OPT record if present.
pub fn parse_query(b: &[u8]) -> Result<ParsedQuery, QueryError> {
    if b.len() < HEADER_LEN || b[2] & 0x80 != 0 {
        return Err(QueryError::Drop);
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    let opcode = (b[2] >> 3) & 0x0F;
    if opcode != 0 {
        return Err(QueryError::NotImp { id, opcode });
    }
    let formerr = QueryError::FormErr { id, opcode };
    let qd = u16::from_be_bytes([b[4], b[5]]);
    let an = u16::from_be_bytes([b[6], b[7]]);
    let ns = u16::from_be_bytes([b[8], b[9]]);
    let ar = u16::from_be_bytes([b[10], b[11]]);
    if qd != 1 {
        return Err(formerr);
    }
    // The question name. Compression is refused: in a one-question query the only earlier
    // bytes are the header, so a pointer can never be legitimate.
    let mut key = [0u8; MAX_NAME_LEN];
    let mut pos = HEADER_LEN;
    let mut klen = 0usize;
    loop {
        let len = *b.get(pos).ok_or(formerr)? as usize;
        if len & 0xC0 != 0 {
            return Err(formerr);
        }
        if klen + 1 + len > MAX_NAME_LEN {
            return Err(formerr);
        }
        let label = b.get(pos + 1..pos + 1 + len).ok_or(formerr)?;
        key[klen] = len as u8;
        for (dst, src) in key[klen + 1..klen + 1 + len].iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        klen += 1 + len;
        pos += 1 + len;
        if len == 0 {
            break;
        }
    }
    let qtype = be16(b, pos).ok_or(formerr)?;
    let qclass = be16(b, pos + 2).ok_or(formerr)?;
    let question_end = pos + 4;
    // Walk the other sections only to find the OPT record; each record consumes at least
    // 11 bytes, so the walk is bounded by the message length whatever the counts say.
    let mut edns = None;
    let mut pos = question_end;
    for i in 0..(an as usize + ns as usize + ar as usize) {
        let name_start = pos;
        pos = skip_name(b, pos).ok_or(formerr)?;
        let rtype = be16(b, pos).ok_or(formerr)?;
        let class = be16(b, pos + 2).ok_or(formerr)?;
        let ttl_hi = be16(b, pos + 4).ok_or(formerr)?;
        let ttl_lo = be16(b, pos + 6).ok_or(formerr)?;
        let rdlen = be16(b, pos + 8).ok_or(formerr)? as usize;
        pos += 10;
        if pos + rdlen > b.len() {
            return Err(formerr);
        }
        pos += rdlen;
        if rtype == TYPE_OPT {
            // RFC 6891 §6.1.1: one OPT, in the additional section, owned by the root.
            let in_additional = i >= an as usize + ns as usize;
            if edns.is_some() || !in_additional || b[name_start] != 0 {
                return Err(formerr);
            }
            edns = Some(Edns {
                udp_size: class,
                version: (ttl_hi & 0xFF) as u8,
                dnssec_ok: ttl_lo & 0x8000 != 0,
            });
        }
    }
    Ok(ParsedQuery {
        id,
        opcode,
        recursion_desired: b[2] & 0x01 != 0,
        checking_disabled: b[3] & 0x10 != 0,
        question_end,
        qtype,
        qclass,
        key: NameKey { buf: key, len: klen as u8 },
        edns,
    })
}

/// Encodes a presentation-form name (`"web.frontend."`) as a wire-form key: lower-cased,
/// trailing dot optional. `None` for empty labels or over-long names.
pub fn encode_name(name: &str, lowercase: bool) -> Option<Vec<u8>> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        if lowercase {
            out.extend(label.bytes().map(|c| c.to_ascii_lowercase()));
        } else {
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    (out.len() <= MAX_NAME_LEN).then_some(out)
}

/// Renders wire-form bytes as a dotted name (for logs and errors).
pub fn display_wire(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut pos = 0;
    while let Some(&len) = wire.get(pos) {
        if len == 0 {
            break;
        }
        let label = wire.get(pos + 1..pos + 1 + len as usize).unwrap_or(&[]);
        s.push_str(&String::from_utf8_lossy(label));
        s.push('.');
        pos += 1 + len as usize;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// Iterates the labels of a wire-form name (without the root label).
pub fn labels(wire: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let len = *wire.get(pos)? as usize;
        if len == 0 {
            return None;
        }
        let l = wire.get(pos + 1..pos + 1 + len)?;
        pos += 1 + len;
        Some(l)
    })
}

/// Writes a response header. `flags_from` supplies opcode/RD/CD of the query.
fn put_header(
    out: &mut Vec<u8>,
    id: u16,
    opcode: u8,
    rd: bool,
    cd: bool,
    rc: u8,
    counts: [u16; 4],
) {
    out.extend_from_slice(&id.to_be_bytes());
    // QR=1, opcode, AA=0, TC=0, RD copied.
    out.push(0x80 | (opcode << 3) | rd as u8);
    // RA=1, CD copied, rcode.
    out.push(0x80 | ((cd as u8) << 4) | (rc & 0x0F));
    for c in counts {
        out.extend_from_slice(&c.to_be_bytes());
    }
}

/// Appends our OPT record (extended rcode bits in the TTL).
fn put_opt(out: &mut Vec<u8>, ext_rcode: u8) {
    out.push(0);
    out.extend_from_slice(&TYPE_OPT.to_be_bytes());
    out.extend_from_slice(&OUR_UDP_SIZE.to_be_bytes());
    out.extend_from_slice(&[ext_rcode, 0, 0, 0, 0, 0]);
}

const OPT_LEN: usize = 11;

/// Writes a header-only error reply (FORMERR/NOTIMP for a query that could not be parsed).
pub fn write_header_error(out: &mut Vec<u8>, id: u16, opcode: u8, rc: u8) {
    out.clear();
    put_header(out, id, opcode, false, false, rc, [0, 0, 0, 0]);
}

/// Writes a reply carrying only the question (and our OPT if the client used EDNS) with
/// rcode `rc`; `truncated` sets TC. Used for NODATA, SERVFAIL, REFUSED and BADVERS.
pub fn write_rcode(out: &mut Vec<u8>, q: &ParsedQuery, query: &[u8], rc: u16, truncated: bool) {
    out.clear();
    let ar = q.edns.is_some() as u16;
    put_header(
        out,
        q.id,
        q.opcode,
        q.recursion_desired,
        q.checking_disabled,
        (rc & 0x0F) as u8,
        [1, 0, 0, ar],
    );
    if truncated {
        out[2] |= 0x02;
    }
    out.extend_from_slice(&query[HEADER_LEN..q.question_end]);
    if q.edns.is_some() {
        put_opt(out, (rc >> 4) as u8);
    }
}

/// One record of a local answer.
#[derive(Debug, Clone, Copy)]
pub enum Rdata<'a> {
    /// An A or AAAA address.
    Addr(IpAddr),
    /// A PTR target given as label sequences written one after the other, then the root.
    Ptr(&'a [u8], &'a [u8]),
}

impl Rdata<'_> {
    fn wire_len(&self) -> usize {
        match self {
            Rdata::Addr(IpAddr::V4(_)) => 4,
            Rdata::Addr(IpAddr::V6(_)) => 16,
            Rdata::Ptr(a, b) => a.len() + b.len() + 1,
        }
    }
}

/// Writes a NOERROR answer with `records` (question name compressed to offset 12), keeping
/// only whole records that fit in `max_size` and setting TC if any had to be left out.
pub fn write_answer<'a>(
    out: &mut Vec<u8>,
    q: &ParsedQuery,
    query: &[u8],
    ttl: u32,
    max_size: usize,
    records: impl Iterator<Item = Rdata<'a>>,
) {
    write_rcode(out, q, query, 0, false);
    // Re-open the message after the question: the OPT record (if any) goes last.
    out.truncate(q.question_end);
    let reserve = if q.edns.is_some() { OPT_LEN } else { 0 };
    let mut count: u16 = 0;
    let mut truncated = false;
    for rd in records {
        let rr_len = 12 + rd.wire_len();
        if out.len() + rr_len + reserve > max_size || count == u16::MAX {
            truncated = true;
            break;
        }
        out.extend_from_slice(&[0xC0, 0x0C]);
        let rtype = match rd {
            Rdata::Addr(IpAddr::V4(_)) => TYPE_A,
            Rdata::Addr(IpAddr::V6(_)) => TYPE_AAAA,
            Rdata::Ptr(..) => TYPE_PTR,
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&CLASS_IN.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(rd.wire_len() as u16).to_be_bytes());
        match rd {
            Rdata::Addr(IpAddr::V4(a)) => out.extend_from_slice(&a.octets()),
            Rdata::Addr(IpAddr::V6(a)) => out.extend_from_slice(&a.octets()),
            Rdata::Ptr(a, b) => {
                out.extend_from_slice(a);
                out.extend_from_slice(b);
                out.push(0);
            }
        }
        count += 1;
    }
    out[6..8].copy_from_slice(&count.to_be_bytes());
    if truncated {
        out[2] |= 0x02;
    }
    if q.edns.is_some() {
        put_opt(out, 0);
    }
}

/// Parses a reverse-lookup name (`4.3.2.1.in-addr.arpa.` or the 32-nibble `ip6.arpa.`
/// form) into an address.
pub fn ptr_to_ip(key: &[u8]) -> Option<IpAddr> {
    let labels: Vec<&[u8]> = labels(key).collect();
    match labels.as_slice() {
        [d, c, b, a, inaddr, arpa] if *inaddr == b"in-addr" && *arpa == b"arpa" => {
            let mut o = [0u8; 4];
            for (dst, l) in o.iter_mut().zip([a, b, c, d]) {
                let s = std::str::from_utf8(l).ok()?;
                // Reject leading zeros/signs so that one address has one name.
                if s.len() > 1 && s.starts_with('0') {
                    return None;
                }
                *dst = s.parse().ok()?;
            }
            Some(IpAddr::from(o))
        }
        [nibbles @ .., ip6, arpa] if nibbles.len() == 32 && *ip6 == b"ip6" && *arpa == b"arpa" => {
            let mut v: u128 = 0;
            for l in nibbles.iter().rev() {
                let [c] = l else { return None };
                let d = (*c as char).to_digit(16)?;
                v = (v << 4) | d as u128;
            }
            Some(IpAddr::from(v.to_be_bytes()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut b = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, edns.is_some() as u8];
        b.extend(encode_name(name, false).unwrap());
        b.extend(qtype.to_be_bytes());
        b.extend(CLASS_IN.to_be_bytes());
        if let Some(sz) = edns {
            b.extend([0, 0, 41]);
            b.extend(sz.to_be_bytes());
            b.extend([0, 0, 0x80, 0, 0, 0]);
        }
        b
    }

    #[test]
    fn parses_simple_query_and_lowercases() {
        let b = query("Web.Example", TYPE_A, None);
        let q = parse_query(&b).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(q.qtype, TYPE_A);
        assert!(q.recursion_desired);
        assert_eq!(q.key.as_bytes(), b"\x03web\x07example\x00");
        assert_eq!(q.edns, None);
        assert_eq!(q.max_udp_size(), 512);
    }

    #[test]
    fn parses_edns() {
        let b = query("a", TYPE_AAAA, Some(1232));
        let q = parse_query(&b).unwrap();
        assert_eq!(q.edns, Some(Edns { udp_size: 1232, version: 0, dnssec_ok: true }));
        assert_eq!(q.max_udp_size(), 1232);
        let b = query("a", TYPE_AAAA, Some(100));
        assert_eq!(parse_query(&b).unwrap().max_udp_size(), 512);
    }

    #[test]
    fn rejects_bad_shapes() {
        assert_eq!(parse_query(&[]).unwrap_err(), QueryError::Drop);
        assert!(matches!(
            parse_query(b"InvalidQuery\n"),
            Err(QueryError::NotImp { id: 0x496e, .. })
        ));
        let mut b = query("a", TYPE_A, None);
        b[2] |= 0x80;
        assert_eq!(parse_query(&b).unwrap_err(), QueryError::Drop);
        let mut b = query("a", TYPE_A, None);
        b[5] = 2;
        assert!(matches!(parse_query(&b), Err(QueryError::FormErr { .. })));
        let mut b = query("a", TYPE_A, None);
        b[5] = 0;
        assert!(matches!(parse_query(&b), Err(QueryError::FormErr { .. })));
        // Compression pointer in the question.
        let b = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1];
        assert!(matches!(parse_query(&b), Err(QueryError::FormErr { .. })));
        // Truncated question.
        let b = query("abc", TYPE_A, None);
        assert!(matches!(parse_query(&b[..b.len() - 1]), Err(QueryError::FormErr { .. })));
        // ARCOUNT claims a record that is not there.
        let mut b = query("abc", TYPE_A, None);
        b[11] = 200;
        assert!(matches!(parse_query(&b), Err(QueryError::FormErr { .. })));
    }

    #[test]
    fn name_encoding() {
        assert_eq!(encode_name("A.b.", true).unwrap(), b"\x01a\x01b\x00");
        assert_eq!(encode_name("A.b", false).unwrap(), b"\x01A\x01b\x00");
        assert!(encode_name("", true).is_none());
        assert!(encode_name("a..b", true).is_none());
        assert!(encode_name(&"x".repeat(64), true).is_none());
        assert!(encode_name(&["abcdefghi"; 30].join("."), true).is_none());
        assert_eq!(display_wire(b"\x01a\x01b\x00"), "a.b.");
    }

    #[test]
    fn answer_truncates_whole_records() {
        let b = query("a", TYPE_A, None);
        let q = parse_query(&b).unwrap();
        let mut out = Vec::new();
        let addrs = (0..100u8).map(|i| Rdata::Addr(IpAddr::from([10, 0, 0, i])));
        write_answer(&mut out, &q, &b, 600, 512, addrs);
        assert!(out.len() <= 512);
        assert_eq!(out[2] & 0x02, 0x02, "TC set");
        let an = u16::from_be_bytes([out[6], out[7]]) as usize;
        assert_eq!(out.len(), b.len() + an * 16);
    }

    #[test]
    fn reverse_names() {
        let k = encode_name("4.3.2.10.in-addr.arpa", true).unwrap();
        assert_eq!(ptr_to_ip(&k), Some("10.2.3.4".parse().unwrap()));
        let k = encode_name("04.3.2.10.in-addr.arpa", true).unwrap();
        assert_eq!(ptr_to_ip(&k), None);
        let ip: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        let nibbles: Vec<String> =
            format!("{:032x}", u128::from(ip)).chars().rev().map(|c| c.to_string()).collect();
        let k = encode_name(&format!("{}.ip6.arpa", nibbles.join(".")), true).unwrap();
        assert_eq!(ptr_to_ip(&k), Some(IpAddr::V6(ip)));
        assert_eq!(ptr_to_ip(&encode_name("example.com", true).unwrap()), None);
    }
}
