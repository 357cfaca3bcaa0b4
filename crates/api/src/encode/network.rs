//! Docker's network object (`GET /networks`, `GET /networks/{id}`).

use std::collections::BTreeMap;

use cove_controller::NetworkView;
use cove_model::{EndpointRecord, IpamPool, NetworkRecord};
use serde::Serialize;

/// `Network` / `NetworkInspect`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Network {
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) created: String,
    pub(crate) scope: &'static str,
    pub(crate) driver: String,
    #[serde(rename = "EnableIPv4")]
    pub(crate) enable_ipv4: bool,
    #[serde(rename = "EnableIPv6")]
    pub(crate) enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub(crate) ipam: Ipam,
    pub(crate) internal: bool,
    pub(crate) attachable: bool,
    pub(crate) ingress: bool,
    pub(crate) config_from: ConfigFrom,
    pub(crate) config_only: bool,
    pub(crate) containers: BTreeMap<String, NetworkContainer>,
    pub(crate) options: BTreeMap<String, String>,
    pub(crate) labels: BTreeMap<String, String>,
    /// Hosts with endpoints on a global network (Docker fills it for swarm-scope ones).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) peers: Vec<Peer>,
    /// Cove's: an encrypted network's encryption (inspect only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) encryption: Option<Encryption>,
}

/// Cove's `Encryption` of an encrypted overlay network.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Encryption {
    /// `wireguard`.
    pub(crate) protocol: &'static str,
    /// This node's public key (absent when its tunnel is not running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) public_key: Option<String>,
    /// Why this host cannot carry the network, if it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    pub(crate) peers: Vec<EncryptionPeer>,
}

/// One peer of an encrypted network.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptionPeer {
    pub(crate) node: String,
    pub(crate) endpoint: String,
    pub(crate) public_key: String,
    /// RFC 3339; empty before the first handshake.
    pub(crate) last_handshake: String,
    pub(crate) rx_bytes: u64,
    pub(crate) tx_bytes: u64,
}

fn encryption(e: &cove_controller::EncryptionView) -> Encryption {
    Encryption {
        protocol: e.protocol,
        public_key: e.public_key.clone(),
        error: e.refusal.clone(),
        peers: e
            .peers
            .iter()
            .map(|p| EncryptionPeer {
                node: p.node.clone(),
                endpoint: p.endpoint.to_string(),
                public_key: p.public_key.clone(),
                last_handshake: p
                    .last_handshake
                    .map(|t| {
                        chrono::DateTime::<chrono::Utc>::from(t)
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    })
                    .unwrap_or_default(),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
            })
            .collect(),
    }
}

/// One `Peers` entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Peer {
    pub(crate) name: String,
    #[serde(rename = "IP")]
    pub(crate) ip: String,
}

/// `IPAM`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    pub(crate) driver: String,
    pub(crate) options: BTreeMap<String, String>,
    pub(crate) config: Vec<IpamConfig>,
}

/// One `IPAM.Config` entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    pub(crate) subnet: String,
    #[serde(rename = "IPRange", skip_serializing_if = "Option::is_none")]
    pub(crate) ip_range: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gateway: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) auxiliary_addresses: BTreeMap<String, String>,
}

/// `ConfigFrom`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigFrom {
    pub(crate) network: String,
}

/// One entry of `Containers`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkContainer {
    pub(crate) name: String,
    #[serde(rename = "EndpointID")]
    pub(crate) endpoint_id: String,
    pub(crate) mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub(crate) ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub(crate) ipv6_address: String,
}

fn ipam_config(p: &IpamPool) -> IpamConfig {
    IpamConfig {
        subnet: p.subnet.to_string(),
        ip_range: p.ip_range.map(|r| r.to_string()),
        gateway: p.gateway.map(|g| g.to_string()),
        auxiliary_addresses: p
            .aux_addresses
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    }
}

fn container(ep: &EndpointRecord, name: &str) -> NetworkContainer {
    NetworkContainer {
        name: name.to_owned(),
        endpoint_id: ep.id.to_string(),
        mac_address: ep.mac.to_string(),
        ipv4_address: ep.ipv4.map(|a| a.to_string()).unwrap_or_default(),
        ipv6_address: ep.ipv6.map(|a| a.to_string()).unwrap_or_default(),
    }
}

/// The network object of a record, with `Containers` filled from `endpoints`.
pub fn network(
    r: &NetworkRecord,
    endpoints: &[(EndpointRecord, String)],
    scope: &'static str,
) -> Network {
    Network {
        name: r.name.clone(),
        id: r.id.to_string(),
        created: r.created.clone(),
        scope,
        driver: r.driver.clone(),
        enable_ipv4: true,
        enable_ipv6: r.enable_ipv6,
        ipam: Ipam {
            driver: if r.ipam_driver.is_empty() { "default".into() } else { r.ipam_driver.clone() },
            options: r.ipam_options.clone(),
            config: r.ipam.iter().map(ipam_config).collect(),
        },
        internal: r.internal,
        attachable: r.attachable,
        // The network services publishing through the routing mesh get when they name
        // none (created by the daemon, labelled as swarmkit labels its own).
        ingress: r.name == "ingress"
            && r.labels.get("com.docker.swarm.internal").is_some_and(|v| v == "true"),
        config_from: ConfigFrom { network: String::new() },
        config_only: false,
        containers: endpoints
            .iter()
            .map(|(ep, name)| (ep.container_id.to_string(), container(ep, name)))
            .collect(),
        options: r.options.clone(),
        labels: r.labels.clone(),
        peers: vec![],
        encryption: None,
    }
}

/// `GET /networks/{id}`: with its containers.
pub fn inspect(v: &NetworkView) -> Network {
    let mut n = network(&v.record, &v.endpoints, v.scope);
    n.peers =
        v.peers.iter().map(|(name, ip)| Peer { name: name.clone(), ip: ip.to_string() }).collect();
    n.encryption = v.encryption.as_ref().map(encryption);
    n
}

/// `GET /networks` entries: `Containers` is `{}`, as Docker has it since API 1.28.
pub fn summary(v: &NetworkView) -> Network {
    network(&v.record, &[], v.scope)
}
