//! Pure IPAM: address pools, subnet choice, address allocation.
//!
//! Everything here is pure computation over addresses and prefixes: no I/O, no clock, no
//! async runtime. The controller owns persistence (a [`PoolState`] is serialized as JSON) and
//! feeds in the facts this crate cannot know (other networks' subnets, the host's routes).
//!
//! - [`subnet`]: `--default-address-pool` specs, Docker's default pools and choosing a free
//!   subnet for a network created without `--subnet`.
//! - [`validate`]: checking user-given `--subnet/--ip-range/--gateway/--aux-address`, a
//!   network's pools against each other and against other networks.
//! - [`pool`]: per-pool address allocation (`--ip` static addresses and dynamic ones).
//! - [`driver`]: the IPAM driver seam ([`IpamDriver`]), the built-in driver behind it, and
//!   the registry of drivers by name.
#![warn(missing_docs)]

mod addr;
pub mod driver;
pub mod pool;
pub mod subnet;
pub mod validate;

pub use driver::{DefaultIpam, IpamDriver, IpamRegistry, PoolRequest, PoolsRequest, DEFAULT_IPAM};
pub use pool::PoolState;
pub use subnet::{
    choose_subnet, default_global_pools, default_pools, default_pools_v4, default_pools_v6,
    effective_pools, overlaps, parse_pool_spec, PoolSpec,
};
pub use validate::{check_no_overlap, parse_aux_address, validate_pool, validate_pools_together};
