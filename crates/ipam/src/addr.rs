//! Address arithmetic on `u128`, shared by both families.
//!
//! An IPv4 address is its 32-bit value widened to `u128`; an IPv6 address is its 128-bit
//! value. Callers always know the family, so the two never mix.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The numeric value of an address.
pub(crate) fn to_bits(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of family `v6` with numeric value `n` (truncated to 32 bits for IPv4).
pub(crate) fn from_bits(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        IpAddr::V4(Ipv4Addr::from(n as u32))
    }
}

/// Address width in bits of family `v6`.
pub(crate) fn width(v6: bool) -> u8 {
    if v6 {
        128
    } else {
        32
    }
}

/// The family's name as Docker writes it.
pub(crate) fn family_name(v6: bool) -> &'static str {
    if v6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

/// Whether `n` is an IPv6 prefix.
pub(crate) fn net_is_v6(n: &IpNet) -> bool {
    matches!(n, IpNet::V6(_))
}

/// First and last address of `n` (host bits ignored).
pub(crate) fn bounds(n: &IpNet) -> (u128, u128) {
    (to_bits(n.network()), to_bits(n.broadcast()))
}

/// The prefix of family `v6` starting at `start` with length `prefix`, host bits cleared.
pub(crate) fn make_net(v6: bool, start: u128, prefix: u8) -> Option<IpNet> {
    IpNet::new(from_bits(v6, start), prefix).ok().map(|n| n.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_both_families() {
        for a in ["0.0.0.0", "10.1.2.3", "255.255.255.255", "::", "fd00::1", "ffff::ffff"] {
            let a: IpAddr = a.parse().unwrap();
            assert_eq!(from_bits(a.is_ipv6(), to_bits(a)), a);
        }
    }

    #[test]
    fn bounds_of_prefixes() {
        let n: IpNet = "10.0.0.0/24".parse().unwrap();
        assert_eq!(bounds(&n), (0x0a00_0000, 0x0a00_00ff));
        let n: IpNet = "::/0".parse().unwrap();
        assert_eq!(bounds(&n), (0, u128::MAX));
        assert_eq!(make_net(false, 0x0a00_0001, 24), Some("10.0.0.0/24".parse().unwrap()));
        assert_eq!(make_net(false, 0, 33), None);
    }
}
