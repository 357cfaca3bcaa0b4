//! What hosts of a cluster share through the cluster store: who they are, and the
//! endpoints they hold on global networks.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::{EndpointRecord, NetworkId};

/// One host of the cluster (`nodes/<id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's id, kept in its data root across restarts.
    pub id: String,
    /// Its hostname, for people.
    pub hostname: String,
    /// The address other hosts tunnel to (`--cluster-advertise`).
    pub advertise: IpAddr,
    /// In its liveness key only: the lease that key is bound to, so that a host starting
    /// with the same id can tell whether a daemon still keeps it alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<i64>,
    /// The daemon's `--label`s: what `node.labels.<name>` constraints match.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// An endpoint on a global network as the cluster knows it (`endpoints/<endpoint id>`):
/// whose it is, and the names other hosts' resolvers answer for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterEndpoint {
    /// The node whose container it is.
    pub node: String,
    /// The container's name.
    pub container_name: String,
    /// The endpoint.
    pub endpoint: EndpointRecord,
}

impl ClusterEndpoint {
    /// The network it is on.
    pub fn network_id(&self) -> &NetworkId {
        &self.endpoint.network_id
    }
}

/// An endpoint of another host, with the address of that host: what this host programs
/// to reach it (`peers/<endpoint id>` in the local store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The endpoint, as the cluster has it.
    pub endpoint: ClusterEndpoint,
    /// Its host's tunnel address.
    pub host: IpAddr,
    /// Its host's name (`docker network inspect`'s `Peers`).
    #[serde(default)]
    pub host_name: String,
}
