//! Controller configuration, resolved by the daemon from flags and the config file.

use cove_ipam::PoolSpec;
use ipnet::IpNet;
use std::path::PathBuf;

/// What the daemon tells the controller at start.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Persistent state root (`--data-root`).
    pub data_root: PathBuf,
    /// Runtime state root (`--exec-root`).
    pub exec_root: PathBuf,
    /// `--bip`: the default bridge's gateway address with prefix length.
    pub bip: Option<IpNet>,
    /// `--fixed-cidr`: the default bridge's dynamic range.
    pub fixed_cidr: Option<IpNet>,
    /// `--default-address-pool` entries (empty: Docker's defaults).
    pub default_address_pools: Vec<PoolSpec>,
    /// `--mtu` for the default bridge and the default for new networks.
    pub mtu: u32,
    /// `--iptables`: program the firewall.
    pub firewall: bool,
    /// `--ip6tables`: program its IPv6 half.
    pub firewall6: bool,
    /// `--ip-forward`: turn IP forwarding on if it is off.
    pub ip_forward: bool,
    /// `--cgroup-parent`: the cgroup (in every hierarchy) the containers' cgroups go under.
    pub cgroup_parent: String,
    /// `--icc`: containers on the default bridge may talk to each other (with `false`, only
    /// through links, to the linked container's exposed ports).
    pub icc: bool,
    /// How often the host's network objects are compared with what Cove wants and
    /// repaired (zero: only at start).
    pub reconcile_interval: std::time::Duration,
    /// What the metrics expose (`--metrics-per-endpoint`).
    pub metrics: cove_metrics::Options,
    /// How long a node may stay down before its tasks are rescheduled elsewhere
    /// (`--node-down-grace`).
    pub node_down_grace: std::time::Duration,
    /// How long a task leaves the load balancers before its container is stopped, so that
    /// every host stops sending it new connections first (`--task-drain`).
    pub task_drain: std::time::Duration,
}

/// The default of [`ControllerConfig::node_down_grace`].
pub const NODE_DOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);
/// The default of [`ControllerConfig::task_drain`].
pub const TASK_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);
