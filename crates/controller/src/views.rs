//! Requests the controller takes and the views it returns; the API turns them into
//! Docker's JSON shapes.

use std::collections::BTreeMap;

use cove_model::{
    ContainerConfig, ContainerRecord, EndpointRecord, EndpointSettings, HostConfig, NetworkRecord,
};

/// One `IPAM.Config` entry as the user gave it (strings: validated by the IPAM driver),
/// the IPAM driver's own request type.
pub use cove_ipam::PoolRequest as IpamConfigRequest;

/// `POST /networks/create`, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkCreate {
    /// Network name.
    pub name: String,
    /// Driver name (empty = bridge).
    pub driver: String,
    /// `--internal`.
    pub internal: bool,
    /// `--attachable`.
    pub attachable: bool,
    /// `--ipv6`.
    pub enable_ipv6: bool,
    /// IPAM driver name (empty = default).
    pub ipam_driver: String,
    /// IPAM driver options.
    pub ipam_options: BTreeMap<String, String>,
    /// IPAM pools.
    pub ipam_config: Vec<IpamConfigRequest>,
    /// Driver options (`-o`).
    pub options: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

/// A network and the endpoints on it.
#[derive(Debug, Clone)]
pub struct NetworkView {
    /// The stored record.
    pub record: NetworkRecord,
    /// Endpoints on it with the name of their container.
    pub endpoints: Vec<(EndpointRecord, String)>,
    /// Where it lives: `local` or `global` (Docker's `Scope`).
    pub scope: &'static str,
    /// The hosts with endpoints on it, by name and tunnel address (global networks only;
    /// Docker's `Peers`).
    pub peers: Vec<(String, std::net::IpAddr)>,
    /// An encrypted network's encryption: protocol, peers, handshakes, bytes.
    pub encryption: Option<crate::EncryptionView>,
}

/// `POST /containers/create`, decoded.
#[derive(Debug, Clone)]
pub struct ContainerCreate {
    /// `?name=` (None: generated).
    pub name: Option<String>,
    /// Configuration; `config.image` is the image reference to resolve.
    pub config: ContainerConfig,
    /// Host configuration; `network_mode_name` is resolved by the controller.
    pub host_config: HostConfig,
    /// `NetworkingConfig.EndpointsConfig`: network reference and settings.
    pub endpoints: Vec<(String, EndpointSettings)>,
}

/// A container with its live endpoints.
#[derive(Debug, Clone)]
pub struct ContainerView {
    /// The stored record.
    pub record: ContainerRecord,
    /// `(network record, endpoint if the container is running)` in connect order.
    pub networks: Vec<(NetworkRecord, Option<EndpointRecord>)>,
}
