//! `POST /containers/create`: Docker's `Config`, `HostConfig` and `NetworkingConfig`, the
//! subset Cove reads (and what the CLI sends).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::de::{is_false, nullable, str_or_vec};
use crate::network::EndpointSettings;

/// The create body: `ContainerConfig` with `HostConfig` and `NetworkingConfig` in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerCreateRequest {
    /// The host name.
    #[serde(default, deserialize_with = "nullable")]
    pub hostname: String,
    /// The NIS domain name.
    #[serde(default, deserialize_with = "nullable")]
    pub domainname: String,
    /// Sent by the CLI, not read by the API.
    #[serde(skip_deserializing)]
    pub user: String,
    /// Sent by the CLI, not read by the API.
    #[serde(skip_deserializing)]
    pub attach_stdin: bool,
    /// Sent by the CLI, not read by the API.
    #[serde(skip_deserializing)]
    pub attach_stdout: bool,
    /// Sent by the CLI, not read by the API.
    #[serde(skip_deserializing)]
    pub attach_stderr: bool,
    /// Ports exposed (`80/tcp`); the values are empty objects.
    #[serde(default, deserialize_with = "nullable")]
    pub exposed_ports: BTreeMap<String, EmptyObject>,
    /// Allocate a TTY.
    #[serde(default, deserialize_with = "nullable")]
    pub tty: bool,
    /// Keep stdin open.
    #[serde(default, deserialize_with = "nullable")]
    pub open_stdin: bool,
    /// Sent by the CLI, not read by the API.
    #[serde(skip_deserializing)]
    pub stdin_once: bool,
    /// `K=V` entries.
    #[serde(default, deserialize_with = "nullable")]
    pub env: Vec<String>,
    /// `null` (the image's), a string or a list.
    #[serde(default, deserialize_with = "str_or_vec")]
    pub cmd: Option<Vec<String>>,
    /// The image reference.
    #[serde(default, deserialize_with = "nullable")]
    pub image: String,
    /// The working directory.
    #[serde(default, deserialize_with = "nullable")]
    pub working_dir: String,
    /// `null` (the image's), a string or a list.
    #[serde(default, deserialize_with = "str_or_vec")]
    pub entrypoint: Option<Vec<String>>,
    /// User labels.
    #[serde(default, deserialize_with = "nullable")]
    pub labels: BTreeMap<String, String>,
    /// The MAC address of the network the mode names (deprecated in Docker; the CLI puts
    /// it in the endpoint).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
    /// No networking at all (network mode `none`).
    #[serde(default, deserialize_with = "nullable", skip_serializing_if = "is_false")]
    pub network_disabled: bool,
    /// The host-side configuration.
    #[serde(default, deserialize_with = "nullable")]
    pub host_config: HostConfig,
    /// The networks to connect and their endpoint settings.
    #[serde(default, deserialize_with = "nullable")]
    pub networking_config: NetworkingConfig,
}

/// `HostConfig`: the networking part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `default`, `bridge`, `host`, `none`, `container:<id>` or a network's name.
    #[serde(default, deserialize_with = "nullable")]
    pub network_mode: String,
    /// Port key (`80/tcp`) to its host bindings; `null` or `[]` is an ephemeral port.
    #[serde(default, deserialize_with = "nullable")]
    pub port_bindings: BTreeMap<String, Option<Vec<PortBinding>>>,
    /// Publish every exposed port on an ephemeral port.
    #[serde(default, deserialize_with = "nullable")]
    pub publish_all_ports: bool,
    /// Legacy links (`container[:alias]`).
    #[serde(default, deserialize_with = "nullable")]
    pub links: Vec<String>,
    /// DNS servers.
    #[serde(default, deserialize_with = "nullable")]
    pub dns: Vec<String>,
    /// resolv.conf options.
    #[serde(default, deserialize_with = "nullable")]
    pub dns_options: Vec<String>,
    /// DNS search domains.
    #[serde(default, deserialize_with = "nullable")]
    pub dns_search: Vec<String>,
    /// `host:ip` entries for /etc/hosts.
    #[serde(default, deserialize_with = "nullable")]
    pub extra_hosts: Vec<String>,
    /// Remove the container when it exits.
    #[serde(default, deserialize_with = "nullable")]
    pub auto_remove: bool,
}

/// `PortBinding`: `""` is every address / an ephemeral port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// The host address (`""`: all; an IPv6 one may be in brackets).
    #[serde(default, deserialize_with = "nullable")]
    pub host_ip: String,
    /// The host port.
    #[serde(default, deserialize_with = "nullable")]
    pub host_port: String,
}

/// `NetworkingConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkingConfig {
    /// Network name to the endpoint's settings (`null` for the defaults).
    #[serde(default, deserialize_with = "nullable")]
    pub endpoints_config: BTreeMap<String, Option<EndpointSettings>>,
}

/// The `{}` of Docker's sets (`ExposedPorts`): serialized as an empty object; any JSON
/// value is accepted and dropped when decoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        s.serialize_map(Some(0))?.end()
    }
}

impl<'de> Deserialize<'de> for EmptyObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Read as a value (not skipped), as the API always has: the same nesting limit.
        serde_json::Value::deserialize(d).map(|_| EmptyObject)
    }
}
