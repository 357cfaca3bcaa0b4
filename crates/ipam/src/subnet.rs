//! Address pools (`--default-address-pool`) and choosing a free subnet from them.

use crate::addr::{bounds, family_name, make_net, net_is_v6, width};
use cove_model::Error;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One `--default-address-pool base=CIDR,size=N` entry: `base` is split into subnets of
/// prefix length `size`, handed out in ascending order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// The block subnets are carved from (host bits zero).
    pub base: IpNet,
    /// Prefix length of each subnet handed out (`>= base.prefix_len()`).
    pub size: u8,
}

impl PoolSpec {
    fn new(base: &str, size: u8) -> Self {
        // Only called with the literals below, which are valid prefixes.
        let base = base.parse().unwrap_or_else(|_| unreachable!("bad built-in pool {base}"));
        Self { base, size }
    }
}

/// Docker's local-scope IPv4 default pools (libnetwork `ipamutils`), in this order:
///
/// 1. `172.17.0.0/16`, `172.18.0.0/16`, `172.19.0.0/16`, `172.20.0.0/14`, `172.24.0.0/14`,
///    `172.28.0.0/14`, all split into /16s: that is 172.17.0.0/16 .. 172.31.0.0/16 ascending;
/// 2. `192.168.0.0/16` split into /20s: 192.168.0.0/20, 192.168.16.0/20, ..., 192.168.240.0/20.
pub fn default_pools_v4() -> Vec<PoolSpec> {
    vec![
        PoolSpec::new("172.17.0.0/16", 16),
        PoolSpec::new("172.18.0.0/16", 16),
        PoolSpec::new("172.19.0.0/16", 16),
        PoolSpec::new("172.20.0.0/14", 16),
        PoolSpec::new("172.24.0.0/14", 16),
        PoolSpec::new("172.28.0.0/14", 16),
        PoolSpec::new("192.168.0.0/16", 20),
    ]
}

/// Docker's global-scope default pools (libnetwork `ipamutils`): `10.0.0.0/8` split into
/// /24s for IPv4, and the local IPv6 default. Overlay networks draw from these, so they
/// never take the local bridges' 172.17-31 ranges.
pub fn default_global_pools() -> Vec<PoolSpec> {
    let mut pools = vec![PoolSpec::new("10.0.0.0/8", 24)];
    pools.extend(default_pools_v6());
    pools
}

/// Docker's local-scope IPv6 default pool (Docker 27+): `fd00::/48` split into /64s.
pub fn default_pools_v6() -> Vec<PoolSpec> {
    vec![PoolSpec::new("fd00::/48", 64)]
}

/// Docker's local default pools: the IPv4 pools of [`default_pools_v4`] in their order
/// (172.17.0.0/16 .. 172.31.0.0/16, then 192.168.0.0/16 in /20 steps), followed by the IPv6
/// pool of [`default_pools_v6`]. [`choose_subnet`] only looks at the requested family, so the
/// IPv6 entry does not change IPv4 choices.
pub fn default_pools() -> Vec<PoolSpec> {
    let mut pools = default_pools_v4();
    pools.extend(default_pools_v6());
    pools
}

/// The pools to allocate from given the configured `--default-address-pool` entries: the
/// configured ones in their order, and for a family with no configured entry, that family's
/// defaults (as Docker does, so configuring only IPv4 pools keeps the IPv6 default).
pub fn effective_pools(configured: &[PoolSpec]) -> Vec<PoolSpec> {
    let mut pools = configured.to_vec();
    if !configured.iter().any(|p| !net_is_v6(&p.base)) {
        pools.extend(default_pools_v4());
    }
    if !configured.iter().any(|p| net_is_v6(&p.base)) {
        pools.extend(default_pools_v6());
    }
    pools
}

/// Parse one `--default-address-pool` value, `base=172.80.0.0/16,size=24` (keys in any order,
/// both required). The base must have its host bits zero and `size` must lie between the base's
/// prefix length and the family's width (32 or 128). Errors are 400s naming the bad text.
pub fn parse_pool_spec(s: &str) -> Result<PoolSpec, Error> {
    let bad = |why: String| Error::invalid(format!("invalid default address pool \"{s}\": {why}"));
    let mut base: Option<IpNet> = None;
    let mut size: Option<u8> = None;
    for field in s.split(',') {
        let field = field.trim();
        let Some((key, value)) = field.split_once('=') else {
            return Err(bad(format!("field \"{field}\" must be a key=value pair")));
        };
        match key.trim() {
            "base" => {
                if base.is_some() {
                    return Err(bad("base given more than once".into()));
                }
                let value = value.trim();
                let net: IpNet = value
                    .parse()
                    .map_err(|_| bad(format!("base \"{value}\" is not a CIDR block")))?;
                if net != net.trunc() {
                    return Err(bad(format!("base {value} should be {}", net.trunc())));
                }
                base = Some(net);
            }
            "size" => {
                if size.is_some() {
                    return Err(bad("size given more than once".into()));
                }
                let value = value.trim();
                size = Some(
                    value
                        .parse()
                        .map_err(|_| bad(format!("size \"{value}\" is not a prefix length")))?,
                );
            }
            other => return Err(bad(format!("unknown key \"{other}\" (expected base, size)"))),
        }
    }
    let base = base.ok_or_else(|| bad("base is required".into()))?;
    let size = size.ok_or_else(|| bad("size is required".into()))?;
    let max = width(net_is_v6(&base));
    if size < base.prefix_len() || size > max {
        return Err(bad(format!(
            "size {size} must be between the base's prefix length {} and {max}",
            base.prefix_len()
        )));
    }
    Ok(PoolSpec { base, size })
}

/// Whether two prefixes share at least one address (never across families).
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    if net_is_v6(a) != net_is_v6(b) {
        return false;
    }
    let (a_lo, a_hi) = bounds(a);
    let (b_lo, b_hi) = bounds(b);
    a_lo <= b_hi && b_lo <= a_hi
}

/// The first subnet, in pool order and ascending inside each pool, of prefix length `size`
/// that overlaps nothing in `in_use` (other networks' subnets and the host's routes). Only the
/// pools and `in_use` entries of the requested family (`v6`) are considered. Zero-length
/// prefixes in `in_use` (default routes) are ignored: they would overlap everything. Pools
/// whose `size` is out of bounds are skipped.
///
/// Cost is O(pools × in_use²) at worst, independent of how many subnets a pool holds, so
/// IPv6 pools with 2^56 candidates are fine.
pub fn choose_subnet(pools: &[PoolSpec], in_use: &[IpNet], v6: bool) -> Result<IpNet, Error> {
    let used: Vec<(u128, u128)> =
        in_use.iter().filter(|n| net_is_v6(n) == v6 && n.prefix_len() > 0).map(bounds).collect();
    pools
        .iter()
        .filter(|p| net_is_v6(&p.base) == v6)
        .find_map(|p| first_free(p, &used))
        .ok_or_else(|| {
            Error::unavailable(format!(
                "could not find an available, non-overlapping {} address pool among the defaults to assign to the network",
                family_name(v6)
            ))
        })
}

/// The first subnet of `pool` overlapping none of `used` (inclusive address ranges).
fn first_free(pool: &PoolSpec, used: &[(u128, u128)]) -> Option<IpNet> {
    let v6 = net_is_v6(&pool.base);
    let w = width(v6);
    if pool.size < pool.base.prefix_len() || pool.size > w {
        return None;
    }
    let (lo, hi) = bounds(&pool.base);
    let host_bits = u32::from(w - pool.size);
    // Addresses in one candidate, minus one (the candidate's host mask).
    let mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
    let mut start = lo;
    loop {
        let end = start | mask;
        // Of everything overlapping this candidate, the one reaching furthest: the next
        // candidate starts after it, so each `used` entry is jumped over at most once.
        let blocked = used.iter().filter(|(a, b)| *a <= end && start <= *b).map(|(_, b)| *b).max();
        let Some(blocked_to) = blocked else {
            return make_net(v6, start, pool.size);
        };
        let past = end.max(blocked_to);
        if past >= hi {
            return None;
        }
        // Align up to the next candidate boundary.
        start = (past + 1).checked_add(mask)? & !mask;
        if start > hi {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_model::ErrorKind;
    use proptest::prelude::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| net(s)).collect()
    }

    #[test]
    fn default_order_matches_docker() {
        let pools = default_pools();
        let mut used = Vec::new();
        let mut got = Vec::new();
        while let Ok(n) = choose_subnet(&pools, &used, false) {
            got.push(n);
            used.push(n);
        }
        let mut want: Vec<IpNet> = (17..=31).map(|b| net(&format!("172.{b}.0.0/16"))).collect();
        want.extend((0..16).map(|i| net(&format!("192.168.{}.0/20", i * 16))));
        assert_eq!(got, want);
        let err = choose_subnet(&pools, &used, false).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(
            err.message,
            "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network"
        );
    }

    #[test]
    fn choose_subnet_cases() {
        let all_172: Vec<String> = (17..=31).map(|b| format!("172.{b}.0.0/16")).collect();
        let all_172: Vec<&str> = all_172.iter().map(String::as_str).collect();
        let mut all_plus_first_192 = all_172.clone();
        all_plus_first_192.push("192.168.0.0/20");
        let cases: &[(&[&str], &str)] = &[
            (&[], "172.17.0.0/16"),
            (&["172.17.0.0/16"], "172.18.0.0/16"),
            // A host route inside 172.18/16 makes the whole /16 unusable.
            (&["172.17.0.0/16", "172.18.5.0/24"], "172.19.0.0/16"),
            // A big route covering several candidates is jumped over in one go.
            (&["172.16.0.0/12"], "192.168.0.0/20"),
            (&all_172, "192.168.0.0/20"),
            (&all_plus_first_192, "192.168.16.0/20"),
            (&["192.168.1.0/24", "172.16.0.0/12"], "192.168.16.0/20"),
            // Default routes and other families are ignored.
            (&["0.0.0.0/0", "fd00::/8"], "172.17.0.0/16"),
        ];
        for (used, want) in cases {
            let got = choose_subnet(&default_pools(), &nets(used), false).unwrap();
            assert_eq!(got, net(want), "in use {used:?}");
        }
    }

    #[test]
    fn choose_subnet_v6() {
        let pools = default_pools();
        assert_eq!(choose_subnet(&pools, &[], true).unwrap(), net("fd00::/64"));
        let used = nets(&["fd00::/64", "fd00:0:0:1::/64", "fd00:0:0:3::1/128"]);
        assert_eq!(choose_subnet(&pools, &used, true).unwrap(), net("fd00:0:0:2::/64"));
        // Every /64 but the last one taken, described by two entries: found without iterating.
        let used = nets(&["fd00::/49", "fd00:0:0:8000::/50", "fd00:0:0:c000::/51"]);
        let rest = choose_subnet(&pools, &used, true).unwrap();
        assert_eq!(rest, net("fd00:0:0:e000::/64"));
        let err = choose_subnet(&pools, &nets(&["fd00::/48"]), true).unwrap_err();
        assert!(err.message.contains("non-overlapping IPv6 address pool"), "{}", err.message);
        // A whole-space pool with the top of the space in use.
        let top = [PoolSpec { base: net("::/0"), size: 1 }];
        assert_eq!(choose_subnet(&top, &nets(&["::/1"]), true).unwrap(), net("8000::/1"));
        assert!(choose_subnet(&top, &nets(&["::/1", "ffff::/16"]), true).is_err());
    }

    #[test]
    fn choose_subnet_skips_bad_specs_and_other_family() {
        let pools = [
            PoolSpec { base: net("10.0.0.0/16"), size: 8 },
            PoolSpec { base: net("fd00::/48"), size: 64 },
            PoolSpec { base: net("10.1.0.0/16"), size: 24 },
        ];
        assert_eq!(choose_subnet(&pools, &[], false).unwrap(), net("10.1.0.0/24"));
    }

    #[test]
    fn effective_pools_fall_back_per_family() {
        assert_eq!(effective_pools(&[]), default_pools());
        let v4 = parse_pool_spec("base=10.10.0.0/16,size=24").unwrap();
        let mut want = vec![v4.clone()];
        want.extend(default_pools_v6());
        assert_eq!(effective_pools(std::slice::from_ref(&v4)), want);
        let v6 = parse_pool_spec("base=fd42::/48,size=64").unwrap();
        let mut want = vec![v6.clone()];
        want.extend(default_pools_v4());
        assert_eq!(effective_pools(std::slice::from_ref(&v6)), want);
    }

    #[test]
    fn parse_pool_spec_ok() {
        let want = PoolSpec { base: net("172.80.0.0/16"), size: 24 };
        assert_eq!(parse_pool_spec("base=172.80.0.0/16,size=24").unwrap(), want);
        assert_eq!(parse_pool_spec("size=24,base=172.80.0.0/16").unwrap(), want);
        assert_eq!(parse_pool_spec(" base = 172.80.0.0/16 , size = 24 ").unwrap(), want);
        assert_eq!(parse_pool_spec("base=10.0.0.0/8,size=8").unwrap().size, 8);
        assert_eq!(parse_pool_spec("base=10.0.0.0/8,size=32").unwrap().size, 32);
        assert_eq!(parse_pool_spec("base=fd00::/48,size=128").unwrap().size, 128);
    }

    #[test]
    fn parse_pool_spec_errors() {
        let cases = [
            ("", "field \"\" must be a key=value pair"),
            ("base=10.0.0.0/8", "size is required"),
            ("size=24", "base is required"),
            ("base=10.0.0.0/8,size=24,color=red", "unknown key \"color\" (expected base, size)"),
            ("base=10.0.0.0/8,base=11.0.0.0/8,size=24", "base given more than once"),
            ("base=10.0.0.0/8,size=24,size=25", "size given more than once"),
            ("base=10.0.0.0,size=24", "base \"10.0.0.0\" is not a CIDR block"),
            ("base=banana,size=24", "base \"banana\" is not a CIDR block"),
            ("base=10.1.0.0/8,size=24", "base 10.1.0.0/8 should be 10.0.0.0/8"),
            ("base=10.0.0.0/8,size=x", "size \"x\" is not a prefix length"),
            ("base=10.0.0.0/8,size=-1", "size \"-1\" is not a prefix length"),
            (
                "base=10.0.0.0/16,size=8",
                "size 8 must be between the base's prefix length 16 and 32",
            ),
            (
                "base=10.0.0.0/16,size=33",
                "size 33 must be between the base's prefix length 16 and 32",
            ),
            (
                "base=fd00::/48,size=129",
                "size 129 must be between the base's prefix length 48 and 128",
            ),
        ];
        for (input, why) in cases {
            let err = parse_pool_spec(input).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{input}");
            assert_eq!(err.message, format!("invalid default address pool \"{input}\": {why}"));
        }
    }

    #[test]
    fn overlaps_cases() {
        let cases = [
            ("10.0.0.0/8", "10.1.0.0/16", true),
            ("10.1.0.0/16", "10.0.0.0/8", true),
            ("10.0.0.0/24", "10.0.1.0/24", false),
            ("10.0.0.0/24", "10.0.0.255/32", true),
            ("0.0.0.0/0", "1.2.3.4/32", true),
            ("10.0.0.0/8", "::/0", false),
            ("fd00::/64", "fd00:0:0:1::/64", false),
            ("fd00::/48", "fd00:0:0:5::/64", true),
        ];
        for (a, b, want) in cases {
            assert_eq!(overlaps(&net(a), &net(b)), want, "{a} {b}");
        }
    }

    /// Brute force: every candidate of every pool of the family, in order.
    fn brute(pools: &[PoolSpec], used: &[IpNet], v6: bool) -> Option<IpNet> {
        for p in pools.iter().filter(|p| net_is_v6(&p.base) == v6) {
            if p.size < p.base.prefix_len() {
                continue;
            }
            let Ok(subnets) = p.base.subnets(p.size) else { continue };
            for c in subnets {
                if !used.iter().any(|u| u.prefix_len() > 0 && overlaps(&c, u)) {
                    return Some(c);
                }
            }
        }
        None
    }

    fn arb_v4_net() -> impl Strategy<Value = IpNet> {
        // Concentrated on the default pools' space and 10/8, so collisions are frequent.
        let base = prop_oneof![
            (16u32..32).prop_map(|b| (172u32 << 24) | (b << 16)),
            Just(192u32 << 24 | 168 << 16),
            Just(10u32 << 24),
        ];
        (base, any::<u16>(), 8u8..=30).prop_map(|(base, low, len)| {
            IpNet::new(std::net::Ipv4Addr::from(base | u32::from(low)).into(), len).unwrap().trunc()
        })
    }

    proptest! {
        #[test]
        fn choose_subnet_never_overlaps(used in prop::collection::vec(arb_v4_net(), 0..12)) {
            let pools = default_pools();
            let got = choose_subnet(&pools, &used, false).ok();
            if let Some(n) = got {
                prop_assert!(!used.iter().any(|u| overlaps(&n, u)), "{n} overlaps {used:?}");
            }
            prop_assert_eq!(got, brute(&pools, &used, false));
        }

        #[test]
        fn choose_subnet_matches_brute_force_on_small_pools(
            used in prop::collection::vec(arb_v4_net(), 0..12),
            size in 16u8..=22,
            base_len in 12u8..=16,
        ) {
            let pools = [
                PoolSpec { base: net(&format!("10.0.0.0/{base_len}")), size: size.max(base_len) },
                PoolSpec { base: net("172.16.0.0/12"), size },
            ];
            let got = choose_subnet(&pools, &used, false).ok();
            if let Some(n) = got {
                prop_assert!(!used.iter().any(|u| overlaps(&n, u)));
            }
            prop_assert_eq!(got, brute(&pools, &used, false));
        }
    }
}
