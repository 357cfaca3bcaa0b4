//! Pure network-driver planners: typed options in, desired kernel operations out.
//!
//! Drivers never touch the kernel. They return [`plan::Op`] lists that `cove-kernel`'s
//! executor applies (create: stop at the first failure and roll back; delete: keep going).
#![warn(missing_docs)]

pub mod bridge;
pub mod plan;
