//! `POST /networks/create`, `/networks/{id}/connect`, `/networks/{id}/disconnect`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::de::nullable;

/// `NetworkCreateRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkCreateRequest {
    /// The network's name (required).
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    /// Ignored by the API: duplicate names always fail (API >= 1.44). The CLI sends `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_duplicate: Option<bool>,
    /// The driver (`""` is the default, bridge).
    #[serde(default, deserialize_with = "nullable")]
    pub driver: String,
    /// `""` or `local`; Cove has no other scope.
    #[serde(default, deserialize_with = "nullable")]
    pub scope: String,
    /// Restrict external access.
    #[serde(default, deserialize_with = "nullable")]
    pub internal: bool,
    /// Manual container attachment (swarm).
    #[serde(default, deserialize_with = "nullable")]
    pub attachable: bool,
    /// A swarm routing-mesh network: refused by Cove.
    #[serde(default, deserialize_with = "nullable")]
    pub ingress: bool,
    /// A configuration-only network: refused by Cove.
    #[serde(default, deserialize_with = "nullable")]
    pub config_only: bool,
    /// The config-only network to take the configuration from: refused by Cove.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_from: Option<ConfigReference>,
    /// Address management.
    #[serde(rename = "IPAM", default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    /// `false` is refused by Cove.
    #[serde(rename = "EnableIPv4", default, skip_serializing_if = "Option::is_none")]
    pub enable_ipv4: Option<bool>,
    /// Dual stack.
    #[serde(rename = "EnableIPv6", default, skip_serializing_if = "Option::is_none")]
    pub enable_ipv6: Option<bool>,
    /// Driver options.
    #[serde(default, deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
    /// User labels.
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
}

/// `ConfigReference`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigReference {
    /// The config-only network.
    #[serde(default, deserialize_with = "nullable")]
    pub network: String,
}

/// `IPAM`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    /// The IPAM driver (`default`).
    #[serde(default, deserialize_with = "nullable")]
    pub driver: String,
    /// IPAM driver options.
    #[serde(default, deserialize_with = "nullable")]
    pub options: BTreeMap<String, String>,
    /// One entry per subnet.
    #[serde(default, deserialize_with = "nullable")]
    pub config: Vec<IpamConfig>,
}

/// `IPAMConfig`: one subnet; `""` (or absent, or `null`) means not given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    /// CIDR.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub subnet: String,
    /// The sub-range to allocate from (CIDR).
    #[serde(
        rename = "IPRange",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub ip_range: String,
    /// The gateway address.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// Reserved addresses by name.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "BTreeMap::is_empty")]
    pub auxiliary_addresses: BTreeMap<String, String>,
}

/// `EndpointSettings` as a request gives it (network connect, container create).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointSettings {
    /// Static addresses.
    #[serde(rename = "IPAMConfig", default, skip_serializing_if = "Option::is_none")]
    pub ipam_config: Option<EndpointIpamConfig>,
    /// Network-scoped aliases.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// `""` for a generated address.
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    /// Legacy links (`container[:alias]`).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Driver options of the endpoint (not used by Cove).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
}

/// `EndpointIPAMConfig`: `""` means none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointIpamConfig {
    /// A static IPv4 address.
    #[serde(
        rename = "IPv4Address",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv4_address: String,
    /// A static IPv6 address.
    #[serde(
        rename = "IPv6Address",
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub ipv6_address: String,
}

/// `NetworkConnectRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkConnectRequest {
    /// The container's id or name.
    #[serde(default, deserialize_with = "nullable")]
    pub container: String,
    /// The endpoint asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_config: Option<EndpointSettings>,
}

/// `NetworkDisconnectRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkDisconnectRequest {
    /// The container's id or name.
    #[serde(default, deserialize_with = "nullable")]
    pub container: String,
    /// Disconnect even when the container is gone.
    #[serde(default, deserialize_with = "nullable")]
    pub force: bool,
}
