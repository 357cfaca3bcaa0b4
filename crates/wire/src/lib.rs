//! Docker Engine API request bodies, as plain serde structs shared by both ends of the wire:
//! the API decodes into them (then validates and converts them to the controller's
//! requests), the CLI builds and serializes them.
//!
//! Field names are Docker's. Decoding keeps the API's leniency: every field may be absent
//! or `null` (its default), unknown fields are ignored, Docker's `StrSlice` takes a string
//! or a list. Fields that only the CLI sends and the API does not read are
//! `skip_deserializing`, so the API ignores them as it ignores any unknown field. Encoding
//! leaves out what the CLI never sent (`skip_serializing_if`), so the requests on the wire
//! stay as they were.

pub mod de;

mod container;
mod exec;
mod network;

pub use container::{
    ContainerCreateRequest, EmptyObject, HostConfig, NetworkingConfig, PortBinding,
};
pub use exec::{ExecCreateRequest, ExecStartRequest};
pub use network::{
    ConfigReference, EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkDisconnectRequest,
};

#[cfg(test)]
mod tests;
