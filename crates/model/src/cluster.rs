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
    /// Its tunnel for encrypted overlay networks, once it has one. Absent in records of
    /// nodes without encryption (older daemons, a tunnel that could not start): such a
    /// node is never a peer of an encrypted network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelRecord>,
}

/// A node's end of the encrypted tunnels: what a peer needs to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRecord {
    /// Its static public key, in `wg`'s base64 form.
    pub wg_pubkey: String,
    /// Its tunnel address (one address of the cluster's tunnel pool).
    pub tunnel_ip: IpAddr,
    /// Where its tunnel receives (`<advertise>:51820`).
    pub wg_endpoint: std::net::SocketAddr,
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
    /// Its host's tunnel address, when its host has a tunnel: encrypted networks send to
    /// it, never to `host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_before_encryption_still_parse() {
        let old = r#"{"id":"n1","hostname":"h1","advertise":"203.0.113.11"}"#;
        let n: NodeRecord = serde_json::from_str(old).unwrap();
        assert_eq!(n.tunnel, None);
        // And without a tunnel nothing new is written, so older daemons read ours.
        assert_eq!(serde_json::to_string(&n).unwrap(), old);
        let with = NodeRecord {
            tunnel: Some(TunnelRecord {
                wg_pubkey: "k".into(),
                tunnel_ip: "10.255.0.1".parse().unwrap(),
                wg_endpoint: "203.0.113.11:51820".parse().unwrap(),
            }),
            ..n
        };
        let back: NodeRecord =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back, with);
    }
}
