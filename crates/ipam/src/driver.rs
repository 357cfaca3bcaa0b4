//! The IPAM driver seam, as libnetwork's `ipamapi.Ipam`: a network's pools at create, its
//! addresses at endpoint join. The built-in driver ([`DefaultIpam`]) is this crate's pure
//! allocator; the registry ([`IpamRegistry`]) holds drivers by name, so remote IPAM plugins
//! can join it later.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use cove_model::{Error, IpamPool, Result};

use crate::{PoolSpec, PoolState};

/// One pool as a user asked for it (`--subnet`, `--ip-range`, `--gateway`,
/// `--aux-address`): parsed ([`PoolRequest::parse`]), not yet validated ([`validate_pool`]:
/// a subnet may still have host bits set, a gateway lie outside it).
///
/// [`validate_pool`]: crate::validate_pool
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolRequest {
    /// `Subnet`, as given.
    pub subnet: Option<IpNet>,
    /// `IPRange`, as given.
    pub ip_range: Option<IpNet>,
    /// `Gateway`.
    pub gateway: Option<IpAddr>,
    /// `AuxiliaryAddresses` as `(name, ip)`.
    pub aux_addresses: Vec<(String, IpAddr)>,
}

/// What a new network asks of its IPAM driver.
#[derive(Debug, Clone, Copy)]
pub struct PoolsRequest<'a> {
    /// The pools the user gave (may be empty).
    pub pools: &'a [PoolRequest],
    /// The network has IPv6.
    pub enable_ipv6: bool,
    /// The daemon's default address pools.
    pub default_pools: &'a [PoolSpec],
    /// Prefixes taken, each with what takes it ("network web", "a host route").
    pub in_use: &'a [(String, IpNet)],
}

/// An IPAM driver. Pure: the controller persists its state ([`PoolState`]).
pub trait IpamDriver: Send + Sync + fmt::Debug {
    /// Its name (`default`).
    fn name(&self) -> &str;

    /// The pools of a new network, resolved (subnet and gateway concrete): what the user
    /// gave, validated, and free subnets for what they did not. Never overlapping `in_use`.
    fn request_pools(&self, req: &PoolsRequest<'_>) -> Result<Vec<IpamPool>>;

    /// An address of `pool` for an endpoint: `preferred` (a static `--ip`) or the next free
    /// one.
    fn request_address(&self, pool: &mut PoolState, preferred: Option<IpAddr>) -> Result<IpAddr>;

    /// Give an address back.
    fn release_address(&self, pool: &mut PoolState, addr: IpAddr);
}

/// Docker's default IPAM: pools from `--default-address-pool` (or Docker's defaults),
/// lowest free address first.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultIpam;

/// The name of the built-in IPAM driver.
pub const DEFAULT_IPAM: &str = "default";

impl IpamDriver for DefaultIpam {
    fn name(&self) -> &str {
        DEFAULT_IPAM
    }

    fn request_pools(&self, req: &PoolsRequest<'_>) -> Result<Vec<IpamPool>> {
        let mut pools = vec![];
        for c in req.pools {
            let subnet = c.subnet.ok_or_else(|| {
                Error::invalid("IPAM config has an ip-range, gateway or aux-address but no subnet")
            })?;
            pools.push(crate::validate_pool(subnet, c.ip_range, c.gateway, &c.aux_addresses)?);
        }
        crate::validate_pools_together(&pools)?;
        if pools.iter().any(|p| p.subnet.addr().is_ipv6()) && !req.enable_ipv6 {
            return Err(Error::invalid(
                "an IPv6 subnet was given but IPv6 is not enabled on the network (use --ipv6)",
            ));
        }
        crate::check_no_overlap(&pools, req.in_use)?;
        let used: Vec<IpNet> = req.in_use.iter().map(|(_, s)| *s).collect();
        if !pools.iter().any(|p| p.subnet.addr().is_ipv4()) {
            let subnet = crate::choose_subnet(req.default_pools, &used, false)?;
            pools.insert(0, crate::validate_pool(subnet, None, None, &[])?);
        }
        if req.enable_ipv6 && !pools.iter().any(|p| p.subnet.addr().is_ipv6()) {
            let subnet = crate::choose_subnet(req.default_pools, &used, true)?;
            pools.push(crate::validate_pool(subnet, None, None, &[])?);
        }
        Ok(pools)
    }

    fn request_address(&self, pool: &mut PoolState, preferred: Option<IpAddr>) -> Result<IpAddr> {
        pool.request(preferred)
    }

    fn release_address(&self, pool: &mut PoolState, addr: IpAddr) {
        pool.release(addr);
    }
}

/// IPAM drivers by name.
#[derive(Debug, Clone)]
pub struct IpamRegistry {
    drivers: BTreeMap<String, Arc<dyn IpamDriver>>,
}

impl Default for IpamRegistry {
    /// The built-in driver only.
    fn default() -> Self {
        let mut r = IpamRegistry { drivers: BTreeMap::new() };
        r.register(Arc::new(DefaultIpam));
        r
    }
}

impl IpamRegistry {
    /// Add (or replace) a driver under its name.
    pub fn register(&mut self, driver: Arc<dyn IpamDriver>) {
        self.drivers.insert(driver.name().to_string(), driver);
    }

    /// The driver users call `name` (empty: `default`); unknown names are Docker's 404.
    pub fn get(&self, name: &str) -> Result<&Arc<dyn IpamDriver>> {
        let name = if name.is_empty() { DEFAULT_IPAM } else { name };
        self.drivers.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.drivers.keys().map(String::as_str).collect();
            Error::not_found(format!(
                "IPAM driver \"{name}\" not found (supported: {})",
                known.join(", ")
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(pools: &'a [PoolRequest], in_use: &'a [(String, IpNet)]) -> PoolsRequest<'a> {
        PoolsRequest { pools, enable_ipv6: false, default_pools: &[], in_use }
    }

    #[test]
    fn default_driver_chooses_a_free_subnet_and_refuses_overlaps() {
        let d = DefaultIpam;
        let taken = [("network a".to_string(), "172.17.0.0/16".parse().unwrap())];
        let specs = crate::effective_pools(&[]);
        let pools = d
            .request_pools(&PoolsRequest {
                pools: &[],
                enable_ipv6: false,
                default_pools: &specs,
                in_use: &taken,
            })
            .unwrap();
        assert_eq!(pools.len(), 1);
        assert_ne!(pools[0].subnet.to_string(), "172.17.0.0/16");
        let mine =
            [PoolRequest { subnet: Some("172.17.1.0/24".parse().unwrap()), ..Default::default() }];
        let e = d.request_pools(&req(&mine, &taken)).unwrap_err();
        assert!(e.message.contains("network a"), "{}", e.message);
    }

    #[test]
    fn addresses_come_and_go_through_the_driver() {
        let d = DefaultIpam;
        let pools = d
            .request_pools(&req(
                &[PoolRequest {
                    subnet: Some("10.9.0.0/30".parse().unwrap()),
                    ..Default::default()
                }],
                &[],
            ))
            .unwrap();
        let mut s = PoolState::new(&pools[0]);
        let a = d.request_address(&mut s, None).unwrap();
        assert!(d.request_address(&mut s, None).is_err(), "a /30 with a gateway has one address");
        d.release_address(&mut s, a);
        assert_eq!(d.request_address(&mut s, None).unwrap(), a);
    }

    #[test]
    fn registry_names_unknown_drivers() {
        let r = IpamRegistry::default();
        assert_eq!(r.get("").unwrap().name(), "default");
        let e = r.get("infoblox").unwrap_err();
        assert_eq!(e.kind, cove_model::ErrorKind::NotFound);
        assert_eq!(e.message, "IPAM driver \"infoblox\" not found (supported: default)");
    }
}
