//! Label values from bounded sets: whatever a client or an upstream sends, a label takes
//! one of a few values, so the number of series stays bounded.

/// An HTTP method as a label: the standard ones by name, anything else `other`.
pub fn method(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// A DNS response code by its RFC name (`NOERROR`, `NXDOMAIN`, ...); others `other`.
pub fn rcode(rc: u16) -> &'static str {
    match rc {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        16 => "BADVERS",
        _ => "other",
    }
}

/// A DNS query type by its name, for the types clients ask for; others `other`.
pub fn qtype(t: u16) -> &'static str {
    match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => "other",
    }
}

/// `CreateBridge` (an enum variant's name) as `create_bridge`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        }
    }
    out
}

/// The variant name of an enum value's `Debug` output (`CreateBridge { .. }` gives
/// `create_bridge`): a bounded label for a value of a closed enum.
pub fn variant(debug: &str) -> String {
    let end = debug.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(debug.len());
    snake_case(&debug[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_bounded_sets() {
        assert_eq!(method("GET"), "GET");
        assert_eq!(method("BREW"), "other");
        assert_eq!(rcode(3), "NXDOMAIN");
        assert_eq!(rcode(11), "other");
        assert_eq!(qtype(28), "AAAA");
        assert_eq!(qtype(4242), "other");
        assert_eq!(variant("CreateBridge { name: \"br-x\" }"), "create_bridge");
        assert_eq!(variant("SetUp"), "set_up");
        assert_eq!(variant("FdbSelf(..)"), "fdb_self");
    }
}
