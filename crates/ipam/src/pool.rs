//! Address allocation inside one pool.

use crate::addr::{bounds, family_name, from_bits, net_is_v6, to_bits, width};
use cove_model::{Error, IpamPool};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Allocation state of one pool, persisted by the controller (JSON: addresses as strings).
///
/// Never handed out: the subnet's network address (both families, when the subnet holds more
/// than two addresses), the IPv4 broadcast address (likewise), the gateway and the auxiliary
/// addresses. Those are *reserved*, not *allocated*: they do not count in
/// [`allocated_count`](Self::allocated_count). Dynamic addresses come from the ip-range when
/// there is one, else the whole subnet, lowest free first (Docker's default, non-serial mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    subnet: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip_range: Option<IpNet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    aux_addresses: BTreeMap<String, IpAddr>,
    #[serde(default)]
    allocated: BTreeSet<IpAddr>,
}

/// Why an address cannot be handed out.
enum Reserved<'a> {
    Network,
    Broadcast,
    Gateway,
    Aux(&'a str),
}

impl PoolState {
    /// The empty state of a (validated) pool: nothing allocated.
    pub fn new(pool: &IpamPool) -> PoolState {
        PoolState {
            subnet: pool.subnet.trunc(),
            ip_range: pool.ip_range.map(|r| r.trunc()),
            gateway: pool.gateway,
            aux_addresses: pool.aux_addresses.clone(),
            allocated: BTreeSet::new(),
        }
    }

    /// The pool's subnet.
    pub fn subnet(&self) -> IpNet {
        self.subnet
    }

    /// The sub-range dynamic addresses come from, if any.
    pub fn ip_range(&self) -> Option<IpNet> {
        self.ip_range
    }

    /// The gateway (reserved, never allocated).
    pub fn gateway(&self) -> Option<IpAddr> {
        self.gateway
    }

    /// Whether `addr` lies in the subnet (and is of its family).
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.subnet.contains(&addr)
    }

    /// The allocated addresses, ascending.
    pub fn allocated(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.allocated.iter().copied()
    }

    /// Whether `addr` is reserved: network or broadcast address, gateway, auxiliary address.
    pub fn is_reserved(&self, addr: IpAddr) -> bool {
        self.reserved(addr).is_some()
    }

    fn v6(&self) -> bool {
        net_is_v6(&self.subnet)
    }

    fn reserved(&self, addr: IpAddr) -> Option<Reserved<'_>> {
        // Subnets of one or two addresses (/31, /32, /127, /128) are all hosts (RFC 3021, 6164).
        let roomy = self.subnet.prefix_len() + 2 <= width(self.v6());
        if roomy && addr == self.subnet.network() {
            return Some(Reserved::Network);
        }
        if roomy && !self.v6() && addr == self.subnet.broadcast() {
            return Some(Reserved::Broadcast);
        }
        if self.gateway == Some(addr) {
            return Some(Reserved::Gateway);
        }
        self.aux_addresses.iter().find(|(_, a)| **a == addr).map(|(name, _)| Reserved::Aux(name))
    }

    fn taken(&self, n: u128) -> bool {
        let addr = from_bits(self.v6(), n);
        self.allocated.contains(&addr) || self.is_reserved(addr)
    }

    /// Allocate an address. With `preferred` (a static `--ip`), exactly that address: it must
    /// be inside the subnet, though not necessarily inside the ip-range (as in Docker), must not
    /// be the network or broadcast address (400), the gateway or an auxiliary address (409), nor
    /// already allocated (409 "Address already in use"). Without, the lowest free address of the
    /// ip-range (or subnet); 503 when there is none.
    ///
    /// The dynamic search probes at most `allocated + reserved + 1` addresses, so it is cheap
    /// even in an IPv6 /64.
    pub fn request(&mut self, preferred: Option<IpAddr>) -> Result<IpAddr, Error> {
        match preferred {
            Some(addr) => self.request_static(addr),
            None => self.request_dynamic(),
        }
    }

    fn request_static(&mut self, addr: IpAddr) -> Result<IpAddr, Error> {
        let subnet = self.subnet;
        if !self.contains(addr) {
            return Err(Error::invalid(format!(
                "requested address {addr} is outside the subnet {subnet}"
            )));
        }
        match self.reserved(addr) {
            Some(Reserved::Network) => {
                return Err(Error::invalid(format!(
                    "requested address {addr} is the network address of subnet {subnet}"
                )))
            }
            Some(Reserved::Broadcast) => {
                return Err(Error::invalid(format!(
                    "requested address {addr} is the broadcast address of subnet {subnet}"
                )))
            }
            Some(Reserved::Gateway) => {
                return Err(Error::conflict(format!(
                    "Address already in use: {addr} is the gateway of subnet {subnet}"
                )))
            }
            Some(Reserved::Aux(name)) => {
                return Err(Error::conflict(format!(
                    "Address already in use: {addr} is reserved as auxiliary address {name}"
                )))
            }
            None => {}
        }
        if !self.allocated.insert(addr) {
            return Err(Error::conflict(format!("Address already in use: {addr}")));
        }
        Ok(addr)
    }

    fn request_dynamic(&mut self) -> Result<IpAddr, Error> {
        let (s_lo, s_hi) = bounds(&self.subnet);
        let (lo, hi) = match self.ip_range {
            Some(r) => {
                let (r_lo, r_hi) = bounds(&r);
                (r_lo.max(s_lo), r_hi.min(s_hi))
            }
            None => (s_lo, s_hi),
        };
        // Each failed probe is a distinct taken address, so this loop runs at most
        // allocated + reserved + 1 times.
        let mut n = lo;
        while n <= hi {
            if !self.taken(n) {
                let addr = from_bits(self.v6(), n);
                self.allocated.insert(addr);
                return Ok(addr);
            }
            match n.checked_add(1) {
                Some(next) => n = next,
                None => break,
            }
        }
        Err(Error::unavailable(format!(
            "no available {} addresses on this network's address pools: {} ({})",
            family_name(self.v6()),
            self.subnet,
            self.fullness(lo, hi)
        )))
    }

    /// What fills the addresses `lo..=hi` (the range dynamic addresses come from), for the
    /// exhaustion message: `5 in use, gateway 10.0.0.1`, `range 10.0.0.128/30: 4 in use`.
    fn fullness(&self, lo: u128, hi: u128) -> String {
        let within = |a: &IpAddr| (lo..=hi).contains(&to_bits(*a));
        let mut parts =
            vec![format!("{} in use", self.allocated.iter().filter(|a| within(a)).count())];
        if let Some(gw) = self.gateway.filter(within) {
            parts.push(format!("gateway {gw}"));
        }
        let aux = self.aux_addresses.values().filter(|a| within(a)).count();
        if aux > 0 {
            parts.push(format!("{aux} auxiliary"));
        }
        let parts = parts.join(", ");
        match self.ip_range {
            Some(r) => format!("range {r}: {parts}"),
            None => parts,
        }
    }

    /// Release `addr`. Releasing an address that is not allocated is a no-op.
    pub fn release(&mut self, addr: IpAddr) {
        self.allocated.remove(&addr);
    }

    /// Whether `addr` is allocated (reserved addresses are not).
    pub fn is_allocated(&self, addr: IpAddr) -> bool {
        self.allocated.contains(&addr)
    }

    /// Number of allocated addresses (reserved ones not counted).
    pub fn allocated_count(&self) -> usize {
        self.allocated.len()
    }

    /// Addresses still free for dynamic allocation: those of the ip-range (or the subnet)
    /// that are neither allocated nor reserved (Docker's `DynamicIPsAvailable`), saturating
    /// at `u128::MAX` for a /0.
    pub fn free_count(&self) -> u128 {
        let range = self.ip_range.unwrap_or(self.subnet);
        let (lo, hi) = bounds(&range);
        let size = (hi - lo).saturating_add(1);
        let mut reserved: BTreeSet<IpAddr> = [self.subnet.network(), self.subnet.broadcast()]
            .into_iter()
            .chain(self.gateway)
            .chain(self.aux_addresses.values().copied())
            .collect();
        reserved.retain(|a| range.contains(a) && self.is_reserved(*a) && !self.is_allocated(*a));
        let allocated = self.allocated.iter().filter(|a| range.contains(*a)).count();
        size.saturating_sub(reserved.len() as u128).saturating_sub(allocated as u128)
    }

    /// Mark `addr` allocated without any check (rebuilding state from endpoint records on
    /// restart). Returns false if it was already allocated.
    pub fn restore(&mut self, addr: IpAddr) -> bool {
        self.allocated.insert(addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::to_bits;
    use crate::validate::validate_pool;
    use cove_model::ErrorKind;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn state(
        subnet: &str,
        range: Option<&str>,
        gw: Option<&str>,
        aux: &[(&str, &str)],
    ) -> PoolState {
        let aux: Vec<(String, String)> =
            aux.iter().map(|(n, a)| (n.to_string(), a.to_string())).collect();
        let r = crate::PoolRequest::parse(Some(subnet), range, gw, &aux).unwrap();
        PoolState::new(
            &validate_pool(r.subnet.unwrap(), r.ip_range, r.gateway, &r.aux_addresses).unwrap(),
        )
    }

    fn take(s: &mut PoolState, n: usize) -> Vec<IpAddr> {
        (0..n).map(|_| s.request(None).unwrap()).collect()
    }

    #[test]
    fn dynamic_v4_skips_reserved() {
        let mut s = state("10.0.0.0/24", None, None, &[("printer", "10.0.0.3")]);
        let got = take(&mut s, 3);
        assert_eq!(got, vec![ip("10.0.0.2"), ip("10.0.0.4"), ip("10.0.0.5")]);
        assert_eq!(s.allocated_count(), 3);
        assert!(!s.is_allocated(ip("10.0.0.1")));
        assert!(s.is_reserved(ip("10.0.0.1")) && s.is_reserved(ip("10.0.0.0")));
        assert!(s.is_reserved(ip("10.0.0.255")) && s.is_reserved(ip("10.0.0.3")));
        // Lowest free first: a released address is reused.
        s.release(ip("10.0.0.4"));
        assert_eq!(s.request(None).unwrap(), ip("10.0.0.4"));
    }

    #[test]
    fn free_count_is_the_dynamic_range_less_reserved_and_allocated() {
        // 256 less network, broadcast, gateway and the printer.
        let mut s = state("10.0.0.0/24", None, None, &[("printer", "10.0.0.3")]);
        assert_eq!(s.free_count(), 252);
        take(&mut s, 3);
        assert_eq!(s.free_count(), 249);
        // A range: only its addresses count; a static address outside it takes none.
        let mut s = state("10.1.0.0/16", Some("10.1.1.0/24"), Some("10.1.0.1"), &[]);
        assert_eq!(s.free_count(), 256);
        s.request(Some(ip("10.1.7.7"))).unwrap();
        assert_eq!(s.free_count(), 256);
        s.request(None).unwrap();
        assert_eq!(s.free_count(), 255);
        // IPv6 /64: 2^64 less the network address (subnet-router anycast) and the gateway.
        let s = state("fd00:1::/64", None, None, &[]);
        assert_eq!(s.free_count(), (1u128 << 64) - 2);
    }

    #[test]
    fn dynamic_uses_the_range() {
        let mut s = state("10.0.0.0/24", Some("10.0.0.128/30"), None, &[]);
        let got = take(&mut s, 4);
        assert_eq!(
            got,
            vec![ip("10.0.0.128"), ip("10.0.0.129"), ip("10.0.0.130"), ip("10.0.0.131")]
        );
        let err = s.request(None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(
            err.message,
            "no available IPv4 addresses on this network's address pools: 10.0.0.0/24 \
             (range 10.0.0.128/30: 4 in use)"
        );
        // Static addresses outside the range but inside the subnet are fine.
        assert_eq!(s.request(Some(ip("10.0.0.7"))).unwrap(), ip("10.0.0.7"));
        // A range at the end of the subnet never yields the broadcast address.
        let mut s = state("10.0.0.0/24", Some("10.0.0.252/30"), None, &[]);
        assert_eq!(take(&mut s, 3), vec![ip("10.0.0.252"), ip("10.0.0.253"), ip("10.0.0.254")]);
        assert!(s.request(None).is_err());
    }

    #[test]
    fn smallest_v4_subnet() {
        let mut s = state("192.168.9.0/30", None, None, &[]);
        assert_eq!(s.request(None).unwrap(), ip("192.168.9.2"));
        assert_eq!(s.request(None).unwrap_err().kind, ErrorKind::Unavailable);
        // /31 and /32 states (not produced by validation) use every address.
        let pool = IpamPool {
            subnet: "10.0.0.0/31".parse().unwrap(),
            ip_range: None,
            gateway: None,
            aux_addresses: BTreeMap::new(),
        };
        let mut s = PoolState::new(&pool);
        assert_eq!(take(&mut s, 2), vec![ip("10.0.0.0"), ip("10.0.0.1")]);
    }

    #[test]
    fn static_rules() {
        let mut s = state(
            "10.0.0.0/24",
            Some("10.0.0.0/25"),
            Some("10.0.0.254"),
            &[("printer", "10.0.0.9")],
        );
        s.request(Some(ip("10.0.0.20"))).unwrap();
        let cases = [
            (
                "10.0.1.5",
                ErrorKind::InvalidInput,
                "requested address 10.0.1.5 is outside the subnet 10.0.0.0/24",
            ),
            (
                "fd00::5",
                ErrorKind::InvalidInput,
                "requested address fd00::5 is outside the subnet 10.0.0.0/24",
            ),
            (
                "10.0.0.0",
                ErrorKind::InvalidInput,
                "requested address 10.0.0.0 is the network address of subnet 10.0.0.0/24",
            ),
            (
                "10.0.0.255",
                ErrorKind::InvalidInput,
                "requested address 10.0.0.255 is the broadcast address of subnet 10.0.0.0/24",
            ),
            (
                "10.0.0.254",
                ErrorKind::Conflict,
                "Address already in use: 10.0.0.254 is the gateway of subnet 10.0.0.0/24",
            ),
            (
                "10.0.0.9",
                ErrorKind::Conflict,
                "Address already in use: 10.0.0.9 is reserved as auxiliary address printer",
            ),
            ("10.0.0.20", ErrorKind::Conflict, "Address already in use: 10.0.0.20"),
        ];
        for (addr, kind, want) in cases {
            let err = s.request(Some(ip(addr))).unwrap_err();
            assert_eq!((err.kind, err.message.as_str()), (kind, want));
        }
        assert_eq!(s.allocated_count(), 1);
        // Outside the range, inside the subnet: allowed. The old default gateway .1 is free.
        assert_eq!(s.request(Some(ip("10.0.0.200"))).unwrap(), ip("10.0.0.200"));
        assert_eq!(s.request(None).unwrap(), ip("10.0.0.1"));
        // Dynamic allocation skips static addresses.
        s.request(Some(ip("10.0.0.2"))).unwrap();
        assert_eq!(s.request(None).unwrap(), ip("10.0.0.3"));
    }

    #[test]
    fn release_and_restore() {
        let mut s = state("10.0.0.0/24", None, None, &[]);
        let a = s.request(None).unwrap();
        s.release(a);
        s.release(a);
        s.release(ip("192.0.2.1"));
        assert_eq!(s.allocated_count(), 0);
        assert!(s.restore(ip("10.0.0.7")));
        assert!(!s.restore(ip("10.0.0.7")));
        assert!(s.is_allocated(ip("10.0.0.7")));
        assert_eq!(s.allocated().collect::<Vec<_>>(), vec![ip("10.0.0.7")]);
        assert_eq!(s.request(Some(ip("10.0.0.7"))).unwrap_err().kind, ErrorKind::Conflict);
    }

    #[test]
    fn ipv6_in_a_64() {
        let mut s = state("fd00:1::/64", None, None, &[]);
        assert_eq!(s.gateway(), Some(ip("fd00:1::1")));
        let got = take(&mut s, 1000);
        assert_eq!(got[0], ip("fd00:1::2"));
        assert_eq!(got[999], from_bits(true, to_bits(ip("fd00:1::2")) + 999));
        s.release(ip("fd00:1::100"));
        assert_eq!(s.request(None).unwrap(), ip("fd00:1::100"));
        // Static anywhere in the /64, including the last address (no broadcast in IPv6).
        let last = ip("fd00:1::ffff:ffff:ffff:ffff");
        assert_eq!(s.request(Some(last)).unwrap(), last);
        let err = s.request(Some(ip("fd00:1::"))).unwrap_err();
        assert_eq!(
            err.message,
            "requested address fd00:1:: is the network address of subnet fd00:1::/64"
        );
        assert_eq!(s.subnet(), "fd00:1::/64".parse::<IpNet>().unwrap());
    }

    #[test]
    fn exhaustion_names_the_subnet_and_what_fills_it() {
        let mut s = state("10.0.11.0/29", None, Some("10.0.11.1"), &[("printer", "10.0.11.6")]);
        take(&mut s, 4);
        let err = s.request(None).unwrap_err();
        assert_eq!(
            err.message,
            "no available IPv4 addresses on this network's address pools: 10.0.11.0/29 \
             (4 in use, gateway 10.0.11.1, 1 auxiliary)"
        );
    }

    #[test]
    fn ipv6_exhaustion_at_the_top_of_the_space() {
        let mut s = state("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124", None, None, &[]);
        let got = take(&mut s, 14);
        assert_eq!(got[13], ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        let err = s.request(None).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Unavailable);
        assert_eq!(err.message, "no available IPv6 addresses on this network's address pools: ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124 (14 in use, gateway ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff1)");
    }

    #[test]
    fn json_round_trip() {
        let mut s = state("10.0.0.0/24", Some("10.0.0.0/25"), None, &[("a", "10.0.0.9")]);
        take(&mut s, 3);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"10.0.0.2\""), "{json}");
        let back: PoolState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let minimal: PoolState = serde_json::from_str(r#"{"subnet":"fd00::/64"}"#).unwrap();
        assert_eq!(minimal.allocated_count(), 0);
        assert_eq!(minimal.ip_range(), None);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Dynamic,
        Static(u8),
        Release(u8),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Dynamic),
            2 => (0u8..20).prop_map(Op::Static),
            2 => (0u8..20).prop_map(Op::Release),
        ]
    }

    fn v4(off: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, off))
    }

    proptest! {
        #[test]
        fn never_double_allocates(
            range in prop_oneof![Just(None), Just(Some("10.0.0.0/29")), Just(Some("10.0.0.8/29")), Just(Some("10.0.0.4/30"))],
            ops in prop::collection::vec(arb_op(), 0..80),
        ) {
            let mut s = state("10.0.0.0/28", range, None, &[("aux", "10.0.0.5")]);
            let subnet = s.subnet();
            let dyn_range = s.ip_range().unwrap_or(subnet);
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Dynamic => match s.request(None) {
                        Ok(a) => {
                            prop_assert!(model.insert(a), "{a} handed out twice");
                            prop_assert!(dyn_range.contains(&a), "{a} outside {dyn_range}");
                            prop_assert!(!s.is_reserved(a));
                        }
                        Err(e) => {
                            prop_assert_eq!(e.kind, ErrorKind::Unavailable);
                            // Really exhausted: every range address is taken or reserved.
                            prop_assert!(dyn_range.hosts().chain([dyn_range.network(), dyn_range.broadcast()])
                                .all(|a| model.contains(&a) || s.is_reserved(a)));
                        }
                    },
                    Op::Static(off) => {
                        let a = v4(off);
                        match s.request(Some(a)) {
                            Ok(got) => {
                                prop_assert_eq!(got, a);
                                prop_assert!(model.insert(a), "{a} handed out twice");
                                prop_assert!(subnet.contains(&a) && !s.is_reserved(a));
                            }
                            Err(_) => prop_assert!(model.contains(&a) || s.is_reserved(a) || !subnet.contains(&a)),
                        }
                    }
                    Op::Release(off) => {
                        s.release(v4(off));
                        model.remove(&v4(off));
                    }
                }
                prop_assert_eq!(s.allocated_count(), model.len());
                prop_assert_eq!(s.allocated().collect::<BTreeSet<_>>(), model.clone());
            }
        }

        #[test]
        fn release_then_request_round_trips(n in 1usize..120, pick in any::<prop::sample::Index>(), v6 in any::<bool>()) {
            let mut s = if v6 { state("fd00:5::/64", None, None, &[]) } else { state("10.1.0.0/24", None, None, &[]) };
            let got = take(&mut s, n);
            let a = got[pick.index(n)];
            s.release(a);
            prop_assert!(!s.is_allocated(a));
            prop_assert_eq!(s.request(Some(a)).unwrap(), a);
            prop_assert_eq!(s.allocated_count(), n);
            prop_assert_eq!(s.request(Some(a)).unwrap_err().kind, ErrorKind::Conflict);
        }

        #[test]
        fn ipv6_static_and_dynamic_stay_inside(statics in prop::collection::vec(any::<u64>(), 0..40), dynamics in 0usize..40) {
            let mut s = state("fd00:7::/64", Some("fd00:7::/96"), None, &[]);
            let base = to_bits(ip("fd00:7::"));
            let mut seen = BTreeSet::new();
            for off in statics {
                let a = from_bits(true, base + u128::from(off));
                if s.request(Some(a)).is_ok() {
                    prop_assert!(seen.insert(a));
                }
            }
            for _ in 0..dynamics {
                let a = s.request(None).unwrap();
                prop_assert!(seen.insert(a));
                prop_assert!("fd00:7::/96".parse::<IpNet>().unwrap().contains(&a));
                prop_assert!(!s.is_reserved(a));
            }
            prop_assert_eq!(s.allocated_count(), seen.len());
        }
    }
}
