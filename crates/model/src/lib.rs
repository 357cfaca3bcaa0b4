//! The Container Network Model vocabulary shared by every Cove crate.
//!
//! Pure data: no I/O, no async runtime, no kernel access. Records here are what the
//! controller persists in the store and what drivers and IPAM plan from.
#![warn(missing_docs)]

pub mod cluster;
pub mod container;
pub mod error;
pub mod id;
pub mod network;
pub mod port;
pub mod service;

pub use cluster::{ClusterEndpoint, NodeRecord, PeerRecord, TunnelRecord};
pub use container::*;
pub use error::{Error, ErrorKind, Result};
pub use id::*;
pub use network::*;
pub use port::{ParsePortSpecError, ParseProtoError, PortSpec, Proto};
pub use service::{
    new_object_id, Constraint, ConstraintKey, EndpointMode, NodeAddress, NodeFacts, PublishMode,
    ServiceMode, ServiceNetwork, ServicePlan, ServicePort, ServiceRecord, ServiceVip, TaskRecord,
    TaskState, TaskTemplate,
};
