//! Validation of user-given pool configuration (`--subnet`, `--ip-range`, `--gateway`,
//! `--aux-address`) and of a network's pools against each other and other networks.
//!
//! Messages follow Docker's (`api/types/network` `ValidateIPAM`) where Docker has one.

use crate::addr::{bounds, family_name, from_bits, net_is_v6};
use crate::subnet::overlaps;
use crate::PoolRequest;
use cove_model::{Error, IpamPool};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Longest IPv4 prefix accepted for a subnet: a /30 still holds two host addresses.
const MAX_V4_PREFIX: u8 = 30;
/// Longest IPv6 prefix accepted for a subnet.
const MAX_V6_PREFIX: u8 = 126;

/// Split one `--aux-address` value `name=ip` into its name and address text (both trimmed;
/// the address is checked by [`validate_pool`]).
pub fn parse_aux_address(s: &str) -> Result<(String, String), Error> {
    match s.split_once('=') {
        Some((name, ip)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), ip.trim().to_string()))
        }
        _ => Err(Error::invalid(format!("invalid auxiliary address {s}: expected name=address"))),
    }
}

impl PoolRequest {
    /// A pool as the API or the CLI gives it: each field's syntax is checked here, once, at
    /// the edge (a 400 naming the bad text); whether the values fit together is
    /// [`validate_pool`]'s check. Empty strings count as absent, as in Docker's API.
    pub fn parse(
        subnet: Option<&str>,
        ip_range: Option<&str>,
        gateway: Option<&str>,
        aux: &[(String, String)],
    ) -> Result<PoolRequest, Error> {
        fn given(s: Option<&str>) -> Option<&str> {
            s.map(str::trim).filter(|s| !s.is_empty())
        }
        let cidr = |what: &str, s: &str| {
            s.parse::<IpNet>().map_err(|_| {
                Error::invalid(format!("invalid {what} {s}: invalid CIDR block notation"))
            })
        };
        let subnet = given(subnet).map(|s| cidr("subnet", s)).transpose()?;
        let ip_range = given(ip_range).map(|s| cidr("ip-range", s)).transpose()?;
        let gateway = given(gateway)
            .map(|g| {
                g.parse::<IpAddr>()
                    .map_err(|_| Error::invalid(format!("invalid gateway {g}: invalid address")))
            })
            .transpose()?;
        let mut aux_addresses = Vec::with_capacity(aux.len());
        for (name, value) in aux {
            if name.is_empty() {
                return Err(Error::invalid(format!(
                    "invalid auxiliary address ={value}: missing name"
                )));
            }
            let addr = value.trim().parse::<IpAddr>().map_err(|_| {
                Error::invalid(format!("invalid auxiliary address {name}: invalid address"))
            })?;
            aux_addresses.push((name.clone(), addr));
        }
        Ok(PoolRequest { subnet, ip_range, gateway, aux_addresses })
    }
}

/// Validate one user pool (its fields parsed by [`PoolRequest::parse`]; `aux` holds
/// `(name, address)` pairs).
///
/// Checks, each a 400 naming the bad value: the subnet's host bits, an IPv4 prefix of at
/// most /30 and IPv6 of at most /126 (room for hosts); the ip-range's family, size, host
/// bits, inside the subnet; the gateway's family, inside the subnet, neither the network
/// address nor (IPv4) the broadcast address; auxiliary addresses' family, inside the subnet,
/// unique names. The first problem found is reported.
///
/// Without a gateway the first host address (network + 1) becomes the gateway: bridge networks
/// always have one.
pub fn validate_pool(
    subnet: IpNet,
    ip_range: Option<IpNet>,
    gateway: Option<IpAddr>,
    aux: &[(String, IpAddr)],
) -> Result<IpamPool, Error> {
    let net = check_subnet(subnet)?;
    let v6 = net_is_v6(&net);
    let ip_range = ip_range.map(|r| check_range(r, &net)).transpose()?;
    let gateway = match gateway {
        Some(g) => {
            let addr = check_address(g, &net)
                .map_err(|why| Error::invalid(format!("invalid gateway {g}: {why}")))?;
            if addr == net.network() {
                return Err(Error::invalid(format!(
                    "invalid gateway {g}: it is the network address of subnet {net}"
                )));
            }
            if !v6 && addr == net.broadcast() {
                return Err(Error::invalid(format!(
                    "invalid gateway {g}: it is the broadcast address of subnet {net}"
                )));
            }
            addr
        }
        None => from_bits(v6, bounds(&net).0 + 1),
    };
    let mut aux_addresses = BTreeMap::new();
    for (name, value) in aux {
        let bad = |why: &str| Error::invalid(format!("invalid auxiliary address {name}: {why}"));
        if name.is_empty() {
            return Err(Error::invalid(format!(
                "invalid auxiliary address ={value}: missing name"
            )));
        }
        let addr = check_address(*value, &net).map_err(|why| bad(&why))?;
        if aux_addresses.insert(name.clone(), addr).is_some() {
            return Err(bad("duplicate name"));
        }
    }
    Ok(IpamPool { subnet: net, ip_range, gateway: Some(gateway), aux_addresses })
}

fn check_subnet(raw: IpNet) -> Result<IpNet, Error> {
    let bad = |why: String| Error::invalid(format!("invalid subnet {raw}: {why}"));
    let net = raw.trunc();
    if raw != net {
        return Err(bad(format!("it should be {net}")));
    }
    let max = if net_is_v6(&net) { MAX_V6_PREFIX } else { MAX_V4_PREFIX };
    if net.prefix_len() > max {
        return Err(bad(format!(
            "{} subnets need a prefix length of at most /{max} to leave room for host addresses",
            family_name(net_is_v6(&net))
        )));
    }
    Ok(net)
}

fn check_range(raw: IpNet, subnet: &IpNet) -> Result<IpNet, Error> {
    let bad = |why: String| Error::invalid(format!("invalid ip-range {raw}: {why}"));
    let v6 = net_is_v6(subnet);
    if net_is_v6(&raw) != v6 {
        return Err(bad(format!("parent subnet is an {} block", family_name(v6))));
    }
    if raw.prefix_len() < subnet.prefix_len() {
        return Err(bad(format!("CIDR block is bigger than its parent subnet {subnet}")));
    }
    let net = raw.trunc();
    if raw != net {
        return Err(bad(format!("it should be {net}")));
    }
    if !overlaps(subnet, &net) {
        return Err(bad(format!("parent subnet {subnet} doesn't contain ip-range")));
    }
    Ok(net)
}

/// Check an address that must lie in `subnet`; the error is Docker's reason text.
fn check_address(addr: IpAddr, subnet: &IpNet) -> Result<IpAddr, String> {
    let v6 = net_is_v6(subnet);
    if addr.is_ipv6() != v6 {
        return Err(format!("parent subnet is an {} block", family_name(v6)));
    }
    if !subnet.contains(&addr) {
        return Err(format!("parent subnet {subnet} doesn't contain this address"));
    }
    Ok(addr)
}

/// Check the pools of one network against each other: no two may overlap, and there may be
/// at most one IPv4 and one IPv6 pool. (Docker accepts several pools per family; Cove gives
/// each endpoint one address per family, so it refuses more with a 400 rather than ignore them.)
pub fn validate_pools_together(pools: &[IpamPool]) -> Result<(), Error> {
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            if overlaps(&a.subnet, &b.subnet) {
                return Err(Error::invalid(format!(
                    "invalid pool request: subnet {} overlaps subnet {} of the same network",
                    b.subnet, a.subnet
                )));
            }
        }
    }
    for v6 in [false, true] {
        let mut same = pools.iter().filter(|p| net_is_v6(&p.subnet) == v6);
        if let (Some(first), Some(second)) = (same.next(), same.next()) {
            return Err(Error::invalid(format!(
                "only one {} subnet per network is supported (got {} and {})",
                family_name(v6),
                first.subnet,
                second.subnet
            )));
        }
    }
    Ok(())
}

/// Check `pools` against subnets already in use (`(owner, subnet)`, the owner as it should
/// read in the message, e.g. "network web" or "a host route"):
/// an overlap is Docker's 403 "Pool overlaps with other one on this address space", with the
/// subnets and the other network named.
pub fn check_no_overlap(pools: &[IpamPool], in_use: &[(String, IpNet)]) -> Result<(), Error> {
    for pool in pools {
        if let Some((name, other)) = in_use.iter().find(|(_, n)| overlaps(&pool.subnet, n)) {
            return Err(Error::forbidden(format!(
                "Pool overlaps with other one on this address space: {} overlaps {other} of {name}",
                pool.subnet
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_model::ErrorKind;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn aux(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, a)| (n.to_string(), a.to_string())).collect()
    }

    fn pool(subnet: &str) -> IpamPool {
        validate_pool(subnet, None, None, &[]).unwrap()
    }

    /// Parse as the edge does, then validate.
    fn validate_pool(
        subnet: &str,
        range: Option<&str>,
        gw: Option<&str>,
        aux: &[(String, String)],
    ) -> Result<IpamPool, Error> {
        let r = PoolRequest::parse(Some(subnet), range, gw, aux)?;
        super::validate_pool(r.subnet.expect("a subnet"), r.ip_range, r.gateway, &r.aux_addresses)
    }

    #[test]
    fn valid_pools_resolve() {
        let p = validate_pool(
            "10.0.0.0/8",
            Some("10.10.0.0/16"),
            Some("10.10.0.1"),
            &aux(&[("DefaultGatewayIPv4", "10.10.0.1"), ("printer", "10.0.0.9")]),
        )
        .unwrap();
        assert_eq!(p.subnet, net("10.0.0.0/8"));
        assert_eq!(p.ip_range, Some(net("10.10.0.0/16")));
        assert_eq!(p.gateway, Some(ip("10.10.0.1")));
        assert_eq!(p.aux_addresses.len(), 2);
        assert_eq!(p.aux_addresses["printer"], ip("10.0.0.9"));

        // Default gateway: first host address; empty strings count as absent.
        let p = validate_pool("172.20.0.0/16", Some(""), Some(""), &[]).unwrap();
        assert_eq!(p.gateway, Some(ip("172.20.0.1")));
        assert_eq!(p.ip_range, None);
        assert_eq!(pool("192.168.1.0/30").gateway, Some(ip("192.168.1.1")));
        assert_eq!(pool("fd00:1::/64").gateway, Some(ip("fd00:1::1")));
        assert_eq!(pool("fd00:1::/126").gateway, Some(ip("fd00:1::1")));

        // Edges that are allowed: last host address as gateway, range equal to the subnet.
        let p = validate_pool("10.0.0.0/24", Some("10.0.0.0/24"), Some("10.0.0.254"), &[]).unwrap();
        assert_eq!(p.gateway, Some(ip("10.0.0.254")));
        // IPv6 has no broadcast address: the last address may be the gateway.
        let p =
            validate_pool("fd00::/64", Some("fd00::/80"), Some("fd00::ffff:ffff:ffff:ffff"), &[])
                .unwrap();
        assert_eq!(p.gateway, Some(ip("fd00::ffff:ffff:ffff:ffff")));
    }

    #[test]
    fn validation_errors() {
        type Case<'a> =
            (&'a str, Option<&'a str>, Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            ("10.0.0.0", None, None, &[], "invalid subnet 10.0.0.0: invalid CIDR block notation"),
            ("10.0.0.0/33", None, None, &[], "invalid subnet 10.0.0.0/33: invalid CIDR block notation"),
            ("banana/8", None, None, &[], "invalid subnet banana/8: invalid CIDR block notation"),
            ("10.0.0.1/8", None, None, &[], "invalid subnet 10.0.0.1/8: it should be 10.0.0.0/8"),
            ("10.10.10.0/8", None, None, &[], "invalid subnet 10.10.10.0/8: it should be 10.0.0.0/8"),
            ("fd00::1/64", None, None, &[], "invalid subnet fd00::1/64: it should be fd00::/64"),
            ("10.0.0.0/31", None, None, &[], "invalid subnet 10.0.0.0/31: IPv4 subnets need a prefix length of at most /30 to leave room for host addresses"),
            ("10.0.0.1/32", None, None, &[], "invalid subnet 10.0.0.1/32: IPv4 subnets need a prefix length of at most /30 to leave room for host addresses"),
            ("fd00::/127", None, None, &[], "invalid subnet fd00::/127: IPv6 subnets need a prefix length of at most /126 to leave room for host addresses"),
            ("10.0.0.0/8", Some("foobar"), None, &[], "invalid ip-range foobar: invalid CIDR block notation"),
            ("10.0.0.0/8", Some("fd00::/64"), None, &[], "invalid ip-range fd00::/64: parent subnet is an IPv4 block"),
            ("fd00::/64", Some("10.0.0.0/24"), None, &[], "invalid ip-range 10.0.0.0/24: parent subnet is an IPv6 block"),
            ("10.10.10.0/24", Some("10.0.0.0/8"), None, &[], "invalid ip-range 10.0.0.0/8: CIDR block is bigger than its parent subnet 10.10.10.0/24"),
            ("10.0.0.0/8", Some("10.10.10.0/16"), None, &[], "invalid ip-range 10.10.10.0/16: it should be 10.10.0.0/16"),
            ("10.0.0.0/8", Some("192.168.0.0/24"), None, &[], "invalid ip-range 192.168.0.0/24: parent subnet 10.0.0.0/8 doesn't contain ip-range"),
            ("10.0.0.0/8", None, Some("1001.10.5.3"), &[], "invalid gateway 1001.10.5.3: invalid address"),
            ("10.0.0.0/8", None, Some("10.0.0.0/8"), &[], "invalid gateway 10.0.0.0/8: invalid address"),
            ("10.0.0.0/8", None, Some("fd00::1"), &[], "invalid gateway fd00::1: parent subnet is an IPv4 block"),
            ("fd00::/64", None, Some("10.0.0.1"), &[], "invalid gateway 10.0.0.1: parent subnet is an IPv6 block"),
            ("10.0.0.0/8", None, Some("192.168.0.1"), &[], "invalid gateway 192.168.0.1: parent subnet 10.0.0.0/8 doesn't contain this address"),
            ("10.0.0.0/24", None, Some("10.0.0.0"), &[], "invalid gateway 10.0.0.0: it is the network address of subnet 10.0.0.0/24"),
            ("10.0.0.0/24", None, Some("10.0.0.255"), &[], "invalid gateway 10.0.0.255: it is the broadcast address of subnet 10.0.0.0/24"),
            ("fd00::/64", None, Some("fd00::"), &[], "invalid gateway fd00::: it is the network address of subnet fd00::/64"),
            ("10.0.0.0/8", None, None, &[("host1", "dummy")], "invalid auxiliary address host1: invalid address"),
            ("10.0.0.0/8", None, None, &[("host1", "fd00::1")], "invalid auxiliary address host1: parent subnet is an IPv4 block"),
            ("10.0.0.0/8", None, None, &[("DefaultGatewayIPv4", "192.168.0.1")], "invalid auxiliary address DefaultGatewayIPv4: parent subnet 10.0.0.0/8 doesn't contain this address"),
            ("10.0.0.0/8", None, None, &[("a", "10.0.0.5"), ("a", "10.0.0.6")], "invalid auxiliary address a: duplicate name"),
            ("10.0.0.0/8", None, None, &[("", "10.0.0.5")], "invalid auxiliary address =10.0.0.5: missing name"),
        ];
        for (subnet, range, gw, aux_pairs, want) in cases {
            let err = validate_pool(subnet, *range, *gw, &aux(aux_pairs)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{want}");
            assert_eq!(err.message, *want);
        }
    }

    #[test]
    fn aux_address_parsing() {
        assert_eq!(
            parse_aux_address("host1=10.0.0.5").unwrap(),
            ("host1".into(), "10.0.0.5".into())
        );
        assert_eq!(parse_aux_address(" a = fd00::5 ").unwrap(), ("a".into(), "fd00::5".into()));
        for bad in ["10.0.0.5", "=10.0.0.5", ""] {
            let err = parse_aux_address(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput);
            assert_eq!(
                err.message,
                format!("invalid auxiliary address {bad}: expected name=address")
            );
        }
    }

    #[test]
    fn pools_together() {
        assert!(validate_pools_together(&[]).is_ok());
        assert!(validate_pools_together(&[pool("10.0.0.0/24"), pool("fd00::/64")]).is_ok());
        let cases = [
            (vec![pool("10.0.0.0/16"), pool("10.0.1.0/24")], "invalid pool request: subnet 10.0.1.0/24 overlaps subnet 10.0.0.0/16 of the same network"),
            (vec![pool("fd00::/48"), pool("fd00::/64")], "invalid pool request: subnet fd00::/64 overlaps subnet fd00::/48 of the same network"),
            (vec![pool("10.0.0.0/24"), pool("fd00::/64"), pool("10.0.1.0/24")], "only one IPv4 subnet per network is supported (got 10.0.0.0/24 and 10.0.1.0/24)"),
            (vec![pool("fd00::/64"), pool("fd01::/64")], "only one IPv6 subnet per network is supported (got fd00::/64 and fd01::/64)"),
        ];
        for (pools, want) in cases {
            let err = validate_pools_together(&pools).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput);
            assert_eq!(err.message, want);
        }
    }

    #[test]
    fn overlap_with_other_networks() {
        let in_use = vec![
            ("network bridge".to_string(), net("172.17.0.0/16")),
            ("network web".to_string(), net("fd00::/64")),
        ];
        assert!(check_no_overlap(&[pool("172.18.0.0/16"), pool("fd01::/64")], &in_use).is_ok());
        assert!(check_no_overlap(&[], &in_use).is_ok());
        let cases = [
            (pool("172.17.5.0/24"), "Pool overlaps with other one on this address space: 172.17.5.0/24 overlaps 172.17.0.0/16 of network bridge"),
            (pool("172.16.0.0/12"), "Pool overlaps with other one on this address space: 172.16.0.0/12 overlaps 172.17.0.0/16 of network bridge"),
            (pool("fd00::/48"), "Pool overlaps with other one on this address space: fd00::/48 overlaps fd00::/64 of network web"),
        ];
        for (p, want) in cases {
            let err = check_no_overlap(&[pool("10.0.0.0/24"), p], &in_use).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Forbidden);
            assert_eq!(err.message, want);
        }
    }
}
