//! The network-driver seam: what the controller asks of a driver, and nothing else.
//!
//! A driver turns a network's typed configuration ([`DriverConfig`]) and its records into
//! kernel operations; it never touches the kernel, the store or the clock, so every driver
//! is unit-tested without root. The controller holds drivers by name in a [`Registry`]
//! (crate::Registry) and never names one: whatever differs between a bridge, the host's
//! stack, a null sandbox (and later macvlan, overlay, or a plugin out of process) is a
//! method here.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use cove_firewall::{EndpointRules, NetworkRules};
use cove_model::{DriverConfig, EndpointRecord, NetworkRecord, Result};

use crate::plan::Op;

/// Where a driver's networks live, as libnetwork's `DataScope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One host.
    Local,
    /// Every host of a cluster.
    Global,
}

impl Scope {
    /// Docker's name (`local`, `global`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

/// What a driver can do: the controller's only source for driver-dependent decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Where its networks live.
    pub scope: Scope,
    /// Containers join its networks with an endpoint in a sandbox of their own (false for
    /// `host` and `null`, which are network modes rather than networks to connect to).
    pub endpoints: bool,
    /// Only the daemon creates its one network (`host`, `null`): users cannot.
    pub builtin_only: bool,
    /// Its networks have IPAM pools (subnets, gateways, addresses).
    pub ipam: bool,
}

/// The driver's view of a network being created.
#[derive(Debug, Clone, Copy)]
pub struct NetworkRequest<'a> {
    /// The new network's id.
    pub id: &'a str,
    /// The `-o` options, as given.
    pub options: &'a BTreeMap<String, String>,
    /// The daemon's default MTU (`--mtu`).
    pub default_mtu: u32,
    /// The device name the daemon asks for (its default network), if any.
    pub device: Option<&'a str>,
    /// This host's place in a cluster, if it is in one.
    pub underlay: Option<Underlay>,
}

/// How this host reaches the other hosts of its cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Underlay {
    /// The address other hosts send this host's tunnelled traffic to
    /// (`--cluster-advertise`).
    pub advertise: IpAddr,
    /// The MTU of the interface that address is on.
    pub mtu: u32,
    /// The UDP port of the tunnels, the same on every host (`--data-path-port`).
    pub port: u16,
    /// This host's address in the encrypted tunnel (`cvwg0`), while the tunnel runs and
    /// its guards are in place: encrypted networks use it as their VXLAN source. `None`:
    /// this host cannot carry encrypted networks.
    pub tunnel: Option<IpAddr>,
}

/// Daemon settings a plan depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanContext {
    /// The firewall is on (`--iptables`).
    pub firewall: bool,
    /// Its IPv6 half is on (`--ip6tables`).
    pub firewall6: bool,
    /// This host's place in a cluster, if it is in one.
    pub underlay: Option<Underlay>,
}

/// A cluster-wide number a network needs (a VXLAN network identifier), allocated by the
/// controller in the cluster store before the network exists anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentRequest {
    /// The number the user asked for, if any (`vxlanid_list`).
    pub requested: Option<u32>,
    /// The range to allocate from (inclusive).
    pub range: (u32, u32),
}

/// An endpoint on another host of the cluster, as the local host must know it.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// The endpoint.
    pub endpoint: &'a EndpointRecord,
    /// The address of its host (`--cluster-advertise` there).
    pub host: IpAddr,
    /// Its host's tunnel address, if its host has a tunnel: the only destination an
    /// encrypted network may send to.
    pub tunnel: Option<IpAddr>,
}

/// A kernel name a network's configuration takes for itself: no other network may take it,
/// and it must not exist on the host before the network is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// What the name is, for messages ("bridge name").
    pub what: &'static str,
    /// The link name in the daemon's namespace.
    pub link: String,
}

/// A network driver: typed configuration in, kernel operations out. Pure.
///
/// Methods that only some drivers need have defaults that do nothing, so `host` and `null`
/// stay a few lines each.
pub trait NetworkDriver: Send + Sync + fmt::Debug {
    /// The name users give with `-d` (`bridge`, `host`, `null`).
    fn name(&self) -> &str;

    /// What it can do.
    fn capability(&self) -> Capability;

    /// The user's `-o` options as a typed configuration. Unknown options and bad values are
    /// `InvalidInput` errors naming them: a typo must never silently change nothing.
    fn validate(&self, req: &NetworkRequest<'_>) -> Result<DriverConfig>;

    /// The kernel names `config` takes for itself (see [`Claim`]).
    fn claims(&self, _config: &DriverConfig) -> Vec<Claim> {
        vec![]
    }

    /// Host-side operations that make the network exist (a bridge with its addresses): the
    /// network's part of the host's desired state. The controller diffs that state against
    /// the kernel's (`cove_plan::diff`) at create, at remove (everything of it goes) and
    /// whenever it reconciles.
    fn network_ops(&self, _net: &NetworkRecord, _ctx: &PlanContext) -> Result<Vec<Op>> {
        Ok(vec![])
    }

    /// The host-side interface a new endpoint gets, if the driver keeps one. Derived from
    /// the endpoint's id (random, never reused), because the kernel may still be reaping
    /// an earlier interface of the same name.
    fn endpoint_host_ifname(&self, _endpoint_id: &str) -> Option<String> {
        None
    }

    /// Objects of one endpoint joining the sandbox whose namespace is mounted at
    /// `sandbox`: its interface, addresses, neighbours. Not the default route
    /// ([`NetworkDriver::gateway_ops`]).
    fn join_ops(&self, net: &NetworkRecord, ep: &EndpointRecord, sandbox: &Path)
        -> Result<Vec<Op>>;

    /// The sandbox's default routes through `ep`, for the one endpoint chosen to carry them.
    fn gateway_ops(&self, _net: &NetworkRecord, _ep: &EndpointRecord, _sandbox: &Path) -> Vec<Op> {
        vec![]
    }

    /// Taking one endpoint out of a running sandbox (network disconnect).
    fn leave_ops(
        &self,
        _net: &NetworkRecord,
        _ep: &EndpointRecord,
        _sandbox: &Path,
    ) -> Result<Vec<Op>> {
        Ok(vec![])
    }

    /// What must go from the host when an endpoint goes (its sandbox goes with the
    /// sandbox's namespace).
    fn release_ops(&self, _net: &NetworkRecord, _ep: &EndpointRecord) -> Result<Vec<Op>> {
        Ok(vec![])
    }

    /// The network's part of the firewall, if the firewall guards it.
    fn firewall(&self, _net: &NetworkRecord, _v6: bool) -> Option<NetworkRules> {
        None
    }

    /// One endpoint's part of the firewall (its port's anti-spoofing), if any.
    fn firewall_endpoint(
        &self,
        _net: &NetworkRecord,
        _ep: &EndpointRecord,
        _v6: bool,
    ) -> Option<EndpointRules> {
        None
    }

    /// The host address ports published through this network bind to by default.
    fn default_binding_ip(&self, _net: &NetworkRecord) -> Option<IpAddr> {
        None
    }

    /// The cluster-wide number `config` needs, if any (global drivers).
    fn segment(&self, _config: &DriverConfig) -> Option<SegmentRequest> {
        None
    }

    /// `config` with the number the cluster assigned it.
    fn with_segment(&self, config: DriverConfig, _segment: u32) -> DriverConfig {
        config
    }

    /// The number a network holds in the cluster, if any (to free it).
    fn segment_of(&self, _net: &NetworkRecord) -> Option<u32> {
        None
    }

    /// Whether `config` asks for its traffic between hosts to be encrypted (`--opt
    /// encrypted`): the controller then refuses the network, and its endpoints, on a host
    /// that cannot enforce it, and guards its segment ([`NetworkDriver::segment_of`]) in
    /// the firewall.
    fn encrypted(&self, _config: &DriverConfig) -> bool {
        false
    }

    /// What this host needs to reach an endpoint on another host (forwarding and
    /// neighbour entries): the peer's part of the host's desired state.
    fn peer_ops(&self, _net: &NetworkRecord, _peer: Peer<'_>) -> Result<Vec<Op>> {
        Ok(vec![])
    }
}
