//! Pure network drivers: typed options in, desired kernel operations out.
//!
//! Drivers never touch the kernel. They implement [`NetworkDriver`] and return
//! [`plan::Op`] lists that `cove-kernel`'s executor applies (create: stop at the first
//! failure and roll back; delete: keep going). The controller holds them in a [`Registry`]
//! by name and never names one itself.
#![warn(missing_docs)]

pub mod bridge;
pub mod builtin;
pub mod driver;
pub mod overlay;
pub mod plan;
pub mod registry;

pub use builtin::{builtin_networks, BuiltinNetwork, BuiltinPool, DefaultNetworkFlags};
pub use driver::{
    Capability, Claim, NetworkDriver, NetworkRequest, Peer, PlanContext, Scope, SegmentRequest,
    Underlay,
};
pub use registry::Registry;

/// The driver a network gets when none is named (Docker's default).
pub const DEFAULT_DRIVER: &str = "bridge";
