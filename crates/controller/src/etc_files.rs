//! The generated `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` of a container, as
//! Docker writes them. Pure functions.

use std::net::IpAddr;

use cove_model::{Error, Result};

/// `/etc/hostname`.
pub(crate) fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// `/etc/hosts`: Docker's fixed header, `--add-host` entries, then the container's own
/// addresses with its hostname (and `hostname.domainname` first when a domain is set).
pub(crate) fn hosts_file(
    hostname: &str,
    domainname: &str,
    own: &[IpAddr],
    extra: &[(String, IpAddr)],
) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    for (name, ip) in extra {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    let names = if domainname.is_empty() {
        hostname.to_string()
    } else {
        format!("{hostname}.{domainname} {hostname}")
    };
    for ip in own {
        s.push_str(&format!("{ip}\t{names}\n"));
    }
    s
}

/// Parse `--add-host name:ip` entries (`host-gateway` becomes `host_gateway`).
pub(crate) fn parse_extra_hosts(
    entries: &[String],
    host_gateway: Option<IpAddr>,
) -> Result<Vec<(String, IpAddr)>> {
    entries
        .iter()
        .map(|e| {
            // The address may be IPv6 with colons: split at the first ':' (or '=').
            let (name, ip) = e.split_once(['=', ':']).ok_or_else(|| {
                Error::invalid(format!("invalid extra host \"{e}\": expected name:ip"))
            })?;
            if name.is_empty() {
                return Err(Error::invalid(format!("invalid extra host \"{e}\": empty name")));
            }
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            let addr = if ip == "host-gateway" {
                host_gateway.ok_or_else(|| {
                    Error::invalid(
                        "host-gateway is not available: the default bridge has no gateway",
                    )
                })?
            } else {
                ip.parse().map_err(|_| {
                    Error::invalid(format!(
                        "invalid extra host \"{e}\": \"{ip}\" is not an IP address"
                    ))
                })?
            };
            Ok((name.to_string(), addr))
        })
        .collect()
}

/// `--hostname` / `--domainname`: DNS-name characters only, so that neither can break the
/// lines of `/etc/hosts` it is written into.
pub(crate) fn check_host_name(what: &str, v: &str) -> Result<()> {
    let ok = v.len() <= 255
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if ok {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "invalid {what} \"{}\": only letters, digits, '-', '_' and '.' are allowed",
        v.escape_debug()
    )))
}

/// DNS settings of one container.
#[derive(Debug, Default, Clone)]
pub(crate) struct DnsSettings<'a> {
    pub(crate) servers: &'a [String],
    pub(crate) search: &'a [String],
    pub(crate) options: &'a [String],
}

/// `/etc/resolv.conf` from the host's, without loopback resolvers (unreachable from a
/// container), overridden by `--dns*`. Like Docker, falls back to public resolvers when no
/// usable nameserver remains.
pub(crate) fn resolv_conf(host: &str, dns: &DnsSettings<'_>, ipv6: bool) -> String {
    let (mut servers, mut search, mut options) = parse_host_resolv(host);
    if !dns.servers.is_empty() {
        servers = dns.servers.to_vec();
    }
    if !dns.search.is_empty() {
        search = dns.search.iter().filter(|s| s.as_str() != ".").cloned().collect();
    }
    if !dns.options.is_empty() {
        options = dns.options.to_vec();
    }
    if servers.is_empty() {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
        if ipv6 {
            servers.extend(["2001:4860:4860::8888".into(), "2001:4860:4860::8844".into()]);
        }
    }
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// The host's resolv.conf split into nameservers (non-loopback), search domains and options.
fn parse_host_resolv(host: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut servers, mut search, mut options) = (vec![], vec![], vec![]);
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(ip) = words.next() {
                    let loopback = ip.parse::<IpAddr>().map(|a| a.is_loopback()).unwrap_or(false);
                    if !loopback {
                        servers.push(ip.to_string());
                    }
                }
            }
            Some("search") | Some("domain") => search = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    (servers, search, options)
}

/// `/etc/resolv.conf` of a container that uses the embedded resolver: `nameserver
/// 127.0.0.11` only (the real servers, the host's or `--dns`, are the resolver's
/// upstreams), the host's search domains unless `--dns-search`, the host's options unless
/// `--dns-option`, and `ndots:0` unless the user gave an ndots option (Docker replaces a
/// host's ndots: names without dots must reach the resolver unchanged).
pub(crate) fn resolv_conf_internal(host: &str, dns: &DnsSettings<'_>) -> String {
    let (_, mut search, mut options) = parse_host_resolv(host);
    if !dns.search.is_empty() {
        search = dns.search.iter().filter(|s| s.as_str() != ".").cloned().collect();
    }
    let is_ndots = |o: &String| o.starts_with("ndots:");
    if dns.options.is_empty() {
        options.retain(|o| !is_ndots(o));
    } else {
        options = dns.options.to_vec();
    }
    if !options.iter().any(is_ndots) {
        options.push("ndots:0".into());
    }
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    out.push_str(&format!("nameserver {}\n", cove_dns::EMBEDDED_DNS_IP));
    out.push_str(&format!("options {}\n", options.join(" ")));
    out
}

/// Checks `--dns`, `--dns-search` and `--dns-option` as Docker does (and more strictly
/// where a value would otherwise corrupt resolv.conf), naming the bad value.
pub(crate) fn check_dns_settings(dns: &DnsSettings<'_>) -> Result<()> {
    for s in dns.servers {
        if s.parse::<IpAddr>().is_err() {
            return Err(Error::invalid(format!("invalid --dns server \"{s}\": not an IP address")));
        }
    }
    for d in dns.search {
        let ok = d == "."
            || (d.len() <= 255
                && d.trim_start_matches('.').split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                }));
        if !ok {
            return Err(Error::invalid(format!(
                "invalid --dns-search domain \"{d}\": not a valid domain name"
            )));
        }
    }
    for o in dns.options {
        let ok = !o.is_empty() && o.bytes().all(|b| b.is_ascii_graphic());
        let ndots_ok = match o.strip_prefix("ndots:") {
            Some(n) => n.parse::<u8>().is_ok(),
            None => true,
        };
        if !ok || !ndots_ok {
            return Err(Error::invalid(format!(
                "invalid --dns-option \"{}\": options are single words such as ndots:2 or edns0",
                o.escape_debug()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_has_header_extra_and_own_names() {
        let h = hosts_file(
            "web",
            "example.org",
            &["172.18.0.2".parse().unwrap()],
            &[("db".into(), "192.0.2.9".parse().unwrap())],
        );
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("192.0.2.9\tdb\n"));
        assert!(h.ends_with("172.18.0.2\tweb.example.org web\n"));
    }

    #[test]
    fn extra_hosts_parse_v6_and_host_gateway() {
        let gw = Some("172.17.0.1".parse().unwrap());
        let e = parse_extra_hosts(
            &["a:2001:db8::1".into(), "b:host-gateway".into(), "c=[::1]".into()],
            gw,
        )
        .unwrap();
        assert_eq!(e[0].1.to_string(), "2001:db8::1");
        assert_eq!(e[1].1.to_string(), "172.17.0.1");
        assert_eq!(e[2].1.to_string(), "::1");
        assert!(parse_extra_hosts(&["nocolon".into()], gw).is_err());
        assert!(parse_extra_hosts(&["x:notanip".into()], gw).is_err());
    }

    #[test]
    fn resolv_conf_drops_loopback_and_honours_overrides() {
        let host =
            "nameserver 127.0.0.53\nnameserver 198.51.100.53\nsearch corp.example\noptions edns0\n";
        let r = resolv_conf(host, &DnsSettings::default(), false);
        assert_eq!(r, "search corp.example\nnameserver 198.51.100.53\noptions edns0\n");
        let servers = vec!["203.0.113.1".to_string()];
        let opts = vec!["ndots:2".to_string()];
        let r = resolv_conf(
            host,
            &DnsSettings { servers: &servers, search: &[], options: &opts },
            false,
        );
        assert_eq!(r, "search corp.example\nnameserver 203.0.113.1\noptions ndots:2\n");
        let r = resolv_conf("nameserver 127.0.0.1\n", &DnsSettings::default(), false);
        assert_eq!(r, "nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }

    #[test]
    fn internal_resolv_conf_points_at_the_resolver_and_sets_ndots() {
        let host = "nameserver 198.51.100.53\nsearch corp.example\noptions edns0 ndots:3\n";
        let r = resolv_conf_internal(host, &DnsSettings::default());
        assert_eq!(r, "search corp.example\nnameserver 127.0.0.11\noptions edns0 ndots:0\n");
        let opts = vec!["ndots:2".to_string()];
        let search = vec!["a.example".to_string()];
        let r = resolv_conf_internal(
            host,
            &DnsSettings { servers: &[], search: &search, options: &opts },
        );
        assert_eq!(r, "search a.example\nnameserver 127.0.0.11\noptions ndots:2\n");
    }

    #[test]
    fn bad_dns_settings_are_refused() {
        let ok = |s: &[&str], d: &[&str], o: &[&str]| {
            let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
            let (s, d, o) = (v(s), v(d), v(o));
            check_dns_settings(&DnsSettings { servers: &s, search: &d, options: &o }).is_ok()
        };
        assert!(ok(&["192.0.2.1", "2001:db8::1"], &["example.com", "."], &["ndots:2", "edns0"]));
        assert!(!ok(&["dns.example"], &[], &[]));
        assert!(!ok(&[], &["bad domain"], &[]));
        assert!(!ok(&[], &[], &["ndots:2\nnameserver 6.6.6.6"]));
        assert!(!ok(&[], &[], &[""]));
        assert!(!ok(&[], &[], &["ndots:x"]));
    }
}
