//! Container records: configuration as created, and runtime state.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::{ContainerId, MacAddr, NetworkId, Proto};

/// How a container's sandbox is provided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "mode", content = "target")]
pub enum NetworkMode {
    /// Its own sandbox, attached to the networks in `ContainerRecord::networks`.
    Sandbox,
    /// The host's network stack.
    Host,
    /// Its own sandbox with only loopback.
    None,
    /// Shares the sandbox of another container (by id).
    Container(String),
}

impl NetworkMode {
    /// The modes named after Docker's built-in `host` and `none` networks
    /// (`--network host`, `--network none`).
    pub fn of_builtin_network(name: &str) -> Option<NetworkMode> {
        match name {
            "host" => Some(NetworkMode::Host),
            "none" => Some(NetworkMode::None),
            _ => None,
        }
    }
}

/// What a container asked for on one network; endpoints are (re)created from this at start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSettings {
    /// `--ip`.
    pub ipv4_address: Option<IpAddr>,
    /// `--ip6`.
    pub ipv6_address: Option<IpAddr>,
    /// `--mac-address`.
    pub mac_address: Option<MacAddr>,
    /// `--network-alias` / `--alias`.
    pub aliases: Vec<String>,
    /// `network connect --link name[:alias]` (user-defined networks), as given.
    #[serde(default)]
    pub links: Vec<String>,
}

/// A published port (`-p`), kept in the record for the firewall layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortBinding {
    /// Container port.
    pub container_port: u16,
    /// Its protocol (stored as `"tcp"`, `"udp"` or `"sctp"`).
    pub protocol: Proto,
    /// Host address (None = all).
    pub host_ip: Option<IpAddr>,
    /// Host port (0 = ephemeral).
    pub host_port: u16,
}

/// A container's configuration, fixed at create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// Image id.
    pub image_id: String,
    /// Image reference as the user typed it.
    pub image: String,
    /// Entrypoint (may be empty).
    pub entrypoint: Vec<String>,
    /// Command.
    pub cmd: Vec<String>,
    /// `KEY=value` environment.
    pub env: Vec<String>,
    /// Working directory inside the container.
    pub working_dir: String,
    /// `--hostname` (default: the short id).
    pub hostname: String,
    /// `--domainname`.
    pub domainname: String,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Allocate a terminal (recorded for API parity).
    pub tty: bool,
    /// Keep stdin open (recorded for API parity).
    pub open_stdin: bool,
    /// Exposed ports as Docker keys (`80/tcp`).
    pub exposed_ports: Vec<String>,
}

/// Host-side configuration, fixed at create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostConfig {
    /// Sandbox mode.
    pub network_mode: NetworkMode,
    /// The network mode as the user typed it (`bridge`, `host`, `container:web`, `mynet`).
    pub network_mode_name: String,
    /// `--dns`.
    pub dns: Vec<String>,
    /// `--dns-search`.
    pub dns_search: Vec<String>,
    /// `--dns-option`.
    pub dns_options: Vec<String>,
    /// `--add-host name:ip`.
    pub extra_hosts: Vec<String>,
    /// `--rm`.
    pub auto_remove: bool,
    /// `-p`.
    pub port_bindings: Vec<PortBinding>,
    /// `-P`.
    pub publish_all_ports: bool,
    /// `--link name:alias`.
    pub links: Vec<String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            network_mode: NetworkMode::Sandbox,
            network_mode_name: "bridge".into(),
            dns: vec![],
            dns_search: vec![],
            dns_options: vec![],
            extra_hosts: vec![],
            auto_remove: false,
            port_bindings: vec![],
            publish_all_ports: false,
            links: vec![],
        }
    }
}

/// Lifecycle status, with Docker's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, never started.
    Created,
    /// Its process is running.
    Running,
    /// Its process exited.
    Exited,
    /// Being removed.
    Removing,
    /// Start failed in a way that left it unusable.
    Dead,
}

impl Status {
    /// Docker's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Exited => "exited",
            Self::Removing => "removing",
            Self::Dead => "dead",
        }
    }
}

/// Runtime state of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    /// Lifecycle status.
    pub status: Status,
    /// Pid of the container's init process while running.
    pub pid: u32,
    /// Exit code of the last run.
    pub exit_code: i32,
    /// RFC 3339 start time of the last run (Docker's zero time if never).
    pub started_at: String,
    /// RFC 3339 end time of the last run.
    pub finished_at: String,
    /// Path of the sandbox's network namespace while running (empty otherwise).
    pub sandbox_key: String,
    /// Error of the last failed start.
    pub error: String,
    /// Published ports of the current run, with the host ports actually bound.
    #[serde(default)]
    pub ports: Vec<PortBinding>,
}

/// Docker's zero time, used for times that have not happened.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Default for ContainerState {
    fn default() -> Self {
        Self {
            status: Status::Created,
            pid: 0,
            exit_code: 0,
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            sandbox_key: String::new(),
            error: String::new(),
            ports: vec![],
        }
    }
}

/// A container, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64-hex id.
    pub id: ContainerId,
    /// Unique name (without Docker's leading `/`).
    pub name: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// Configuration.
    pub config: ContainerConfig,
    /// Host configuration.
    pub host_config: HostConfig,
    /// Networks (by id) in connect order, with what was asked on each.
    pub networks: Vec<(NetworkId, EndpointSettings)>,
    /// Runtime state.
    pub state: ContainerState,
}
