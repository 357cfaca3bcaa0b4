//! Upstream servers from a `resolv.conf`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};

/// Extracts the `nameserver` entries of a resolv.conf as port-53 socket addresses, in
/// order and without duplicates. The resolver forwards from the daemon's (the host's)
/// network namespace, so loopback servers are kept: `127.0.0.53` is the host's
/// systemd-resolved, reachable from there, as Docker does for the host's servers
/// (moby `TransformForIntNS` marks every server read from the host's file `HostLoopback`,
/// dialled from the host's namespace). Skipped:
///
/// - the unspecified address (glibc reads it as "localhost"; nothing is bound to it);
/// - IPv6 link-local servers without a numeric zone (`fe80::1%2` is kept with scope id 2;
///   `fe80::1%eth0` or a bare `fe80::1` cannot be used without resolving an interface
///   name, which belongs to the caller);
/// - malformed lines.
///
/// The resolver's own address (127.0.0.11) is listed if present; [`crate::Resolver`] never
/// forwards to it. Comments start with `#` or `;`.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next().and_then(parse_server) else {
            continue;
        };
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

fn parse_server(s: &str) -> Option<SocketAddr> {
    let (host, zone) = match s.split_once('%') {
        Some((h, z)) => (h, Some(z)),
        None => (s, None),
    };
    let ip: IpAddr = host.parse().ok()?;
    if ip.is_unspecified() {
        return None;
    }
    match ip {
        IpAddr::V4(v4) => zone.is_none().then(|| SocketAddr::from((v4, 53))),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return (!v4.is_unspecified() && zone.is_none())
                    .then(|| SocketAddr::from((v4, 53)));
            }
            let link_local = is_link_local(&v6);
            let scope = match zone {
                Some(z) => z.parse::<u32>().ok()?,
                None if link_local => return None,
                None => 0,
            };
            Some(SocketAddr::V6(SocketAddrV6::new(v6, 53, 0, scope)))
        }
    }
}

fn is_link_local(v6: &Ipv6Addr) -> bool {
    v6.segments()[0] & 0xffc0 == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_filters() {
        let text = "\
# generated
search example.com
nameserver 127.0.0.53
nameserver 192.0.2.1 # office
nameserver 192.0.2.1
;nameserver 192.0.2.9
nameserver ::1
nameserver 0.0.0.0
nameserver 2001:db8::53
nameserver fe80::1%eth0
nameserver fe80::2%3
nameserver fe80::3
nameserver ::ffff:127.0.0.1
nameserver ::ffff:198.51.100.7
nameserver bogus
nameserver
options ndots:0
nameserver 127.0.0.11
nameserver 203.0.113.5
";
        let got: Vec<String> =
            upstreams_from_resolv_conf(text).iter().map(|a| a.to_string()).collect();
        assert_eq!(
            got,
            [
                "127.0.0.53:53",
                "192.0.2.1:53",
                "[::1]:53",
                "[2001:db8::53]:53",
                "[fe80::2%3]:53",
                "127.0.0.1:53",
                "198.51.100.7:53",
                "127.0.0.11:53",
                "203.0.113.5:53"
            ]
        );
    }

    #[test]
    fn empty() {
        assert!(upstreams_from_resolv_conf("").is_empty());
        assert!(upstreams_from_resolv_conf("nameserver 0.0.0.0\nnameserver ::\n").is_empty());
    }

    #[test]
    fn host_loopback_only() {
        // A host with only systemd-resolved's stub: forwarded to from the host's namespace.
        let got = upstreams_from_resolv_conf("nameserver 127.0.0.53\noptions edns0\n");
        assert_eq!(got, [SocketAddr::from(([127, 0, 0, 53], 53))]);
    }
}
