//! Services and their tasks, as the cluster store keeps them: what a user asked for (a
//! service: an image run N times, or once per node, behind one name) and what the
//! orchestrator made of it (tasks: one container each, on one node).
//!
//! The vocabulary is swarmkit's, because the clients are Docker's (`docker service`,
//! `docker stack`, docker-py): a service has a spec with a version that every update bumps,
//! a task has a slot (replicated mode) or a node (global mode), a desired state the
//! orchestrator sets and an observed state its node reports.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{NetworkId, Proto};

/// A service (`services/<id>` in the cluster store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// 25 lowercase alphanumerics, as swarmkit's ids.
    pub id: String,
    /// `Version.Index`: bumped by every update; an update must name the current one.
    pub version: u64,
    /// The version whose task template the tasks must run: bumped only by updates that
    /// change what a task's container is (a scale is not one), so only those replace
    /// tasks.
    #[serde(default)]
    pub task_version: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The spec as the client sent it, returned verbatim by inspect (fields Cove does not
    /// interpret included).
    pub spec: serde_json::Value,
    /// The spec before the last update (`PreviousSpec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_spec: Option<serde_json::Value>,
    /// What Cove acts on, parsed from `spec` once, at the API.
    pub plan: ServicePlan,
    /// The service's virtual IP on each of its networks (VIP mode only).
    #[serde(default)]
    pub vips: Vec<ServiceVip>,
}

/// The parts of a service spec Cove acts on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServicePlan {
    /// `Spec.Name`.
    pub name: String,
    /// `Spec.Labels`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// What each task runs.
    pub task: TaskTemplate,
    /// Replicated with a count, or global.
    pub mode: ServiceMode,
    /// Networks the tasks join, in order (ids once the API resolved them).
    #[serde(default)]
    pub networks: Vec<ServiceNetwork>,
    /// VIP or DNS round robin.
    pub endpoint_mode: EndpointMode,
    /// Published ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Placement constraints: every one must hold on a node for a task to go there.
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

/// What each task of a service runs (`Spec.TaskTemplate.ContainerSpec`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskTemplate {
    /// Image reference.
    pub image: String,
    /// `Command` (replaces the image's entrypoint when not empty).
    #[serde(default)]
    pub command: Vec<String>,
    /// `Args` (replace the image's cmd when not empty).
    #[serde(default)]
    pub args: Vec<String>,
    /// `KEY=value`.
    #[serde(default)]
    pub env: Vec<String>,
    /// Container labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `Hostname` (may hold Go templates such as `{{.Task.Name}}`; Cove expands the
    /// common ones).
    #[serde(default)]
    pub hostname: String,
    /// `Dir`.
    #[serde(default)]
    pub dir: String,
}

/// Replicated (a number of tasks spread over the nodes) or global (one per node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceMode {
    /// `--mode replicated --replicas N`.
    Replicated {
        /// How many tasks should run.
        replicas: u64,
    },
    /// `--mode global`: one task on every node that satisfies the constraints.
    Global,
}

impl Default for ServiceMode {
    fn default() -> Self {
        ServiceMode::Replicated { replicas: 1 }
    }
}

/// `Spec.EndpointSpec.Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// The service name resolves to one virtual IP, balanced over the tasks.
    #[default]
    Vip,
    /// The service name resolves to the tasks' addresses.
    Dnsrr,
}

impl EndpointMode {
    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointMode::Vip => "vip",
            EndpointMode::Dnsrr => "dnsrr",
        }
    }
}

/// A network a service's tasks join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceNetwork {
    /// The network's id.
    pub network_id: NetworkId,
    /// Extra DNS names of the tasks on it.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// How a published port is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishMode {
    /// On every node (the routing mesh), balanced over every task.
    #[default]
    Ingress,
    /// Only on the nodes that run a task, to that task.
    Host,
}

impl PublishMode {
    /// Docker's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PublishMode::Ingress => "ingress",
            PublishMode::Host => "host",
        }
    }
}

/// A published port of a service (`Spec.EndpointSpec.Ports[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePort {
    /// Transport protocol.
    pub proto: Proto,
    /// The port the tasks listen on.
    pub target: u16,
    /// The port on the nodes (None: one is picked, from 30000 up, as swarmkit does).
    pub published: Option<u16>,
    /// Routing mesh or host.
    pub mode: PublishMode,
}

/// A placement constraint (`node.hostname==h2`, `node.labels.zone!=a`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    /// What is compared.
    pub key: ConstraintKey,
    /// `==` (true) or `!=` (false).
    pub equal: bool,
    /// The value compared with.
    pub value: String,
}

/// The node attributes a constraint can name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConstraintKey {
    /// `node.id`.
    NodeId,
    /// `node.hostname`.
    Hostname,
    /// `node.role` (every Cove node is a manager).
    Role,
    /// `node.platform.os`.
    Os,
    /// `node.platform.arch`.
    Arch,
    /// `node.labels.<name>` / `engine.labels.<name>`.
    Label(String),
}

/// Why a constraint could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintError(pub String);

impl fmt::Display for ConstraintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Constraint {
    type Err = ConstraintError;

    /// Swarmkit's syntax: `<key> == <value>` or `<key> != <value>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, equal, value) = if let Some((k, v)) = s.split_once("==") {
            (k, true, v)
        } else if let Some((k, v)) = s.split_once("!=") {
            (k, false, v)
        } else {
            return Err(ConstraintError(format!(
                "constraint expected one operator from ==, != (got {s:?})"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if value.is_empty() {
            return Err(ConstraintError(format!("constraint {s:?} has no value")));
        }
        let lower = key.to_ascii_lowercase();
        let key = match lower.as_str() {
            "node.id" => ConstraintKey::NodeId,
            "node.hostname" => ConstraintKey::Hostname,
            "node.role" => ConstraintKey::Role,
            "node.platform.os" => ConstraintKey::Os,
            "node.platform.arch" => ConstraintKey::Arch,
            _ => match lower
                .strip_prefix("node.labels.")
                .or_else(|| lower.strip_prefix("engine.labels."))
            {
                Some(_) => ConstraintKey::Label(key[key.find("labels.").unwrap_or(0) + 7..].into()),
                None => {
                    return Err(ConstraintError(format!(
                        "constraint {s:?}: unsupported key {key:?} (node.id, node.hostname, \
                         node.role, node.platform.os, node.platform.arch, node.labels.<name>)"
                    )))
                }
            },
        };
        Ok(Constraint { key, equal, value: value.to_string() })
    }
}

/// What a constraint is matched against.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    /// The node's id.
    pub id: &'a str,
    /// Its hostname.
    pub hostname: &'a str,
    /// Its labels.
    pub labels: &'a BTreeMap<String, String>,
}

impl Constraint {
    /// Whether the constraint holds on a node.
    pub fn holds(&self, node: NodeFacts<'_>) -> bool {
        let actual = match &self.key {
            ConstraintKey::NodeId => Some(node.id),
            ConstraintKey::Hostname => Some(node.hostname),
            ConstraintKey::Role => Some("manager"),
            ConstraintKey::Os => Some("linux"),
            ConstraintKey::Arch => Some(std::env::consts::ARCH),
            ConstraintKey::Label(l) => node.labels.get(l).map(String::as_str),
        };
        // Swarmkit compares case-insensitively, and `!=` holds for a missing label.
        let same = actual.is_some_and(|a| a.eq_ignore_ascii_case(&self.value));
        same == self.equal
    }
}

/// A service's virtual IP on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceVip {
    /// The network.
    pub network_id: NetworkId,
    /// The address, with the network's prefix length (Docker shows `10.0.9.5/24`).
    pub addr: IpNet,
}

/// A node's own address on a network that carries routing-mesh traffic
/// (`node-addresses/<network id>/<node id>` in the cluster store, its address reserved
/// with the network's other addresses): the source address remote tasks see for mesh
/// traffic this node forwards to them, so their replies come back to it. It has a MAC of
/// its own (the network's bridge has the anycast gateway's), which the other nodes
/// program like an endpoint of this node's (Docker's per-node `lb-<network>` endpoint).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeAddress {
    /// The network.
    pub network_id: NetworkId,
    /// The node.
    pub node: String,
    /// The address, with the network's prefix length.
    pub addr: IpNet,
    /// Its MAC.
    pub mac: crate::MacAddr,
}

/// A task's state, in swarmkit's order: a task only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Created by the orchestrator.
    New,
    /// Waiting for a node (none satisfies the constraints, or none has room).
    Pending,
    /// Given to a node.
    Assigned,
    /// The node accepted it.
    Accepted,
    /// The node prepares its container.
    Preparing,
    /// The container is being started.
    Starting,
    /// The container runs.
    Running,
    /// The container exited with status 0.
    Complete,
    /// Stopped because it was asked to.
    Shutdown,
    /// The container exited with another status, or could not start.
    Failed,
    /// The node could not run it (no such image, ...).
    Rejected,
    /// Its node is gone.
    Orphaned,
}

impl TaskState {
    /// Swarmkit's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// Whether the task is over: it will never run (again).
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }
}

/// A task (`tasks/<id>` in the cluster store): one container of a service, on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// 25 lowercase alphanumerics.
    pub id: String,
    /// The service.
    pub service_id: String,
    /// Replicated mode: 1..=N. Global mode: 0 (the node is the slot).
    pub slot: u64,
    /// The node it is assigned to (None while pending).
    #[serde(default)]
    pub node_id: Option<String>,
    /// What the orchestrator wants: `running` or `shutdown`.
    pub desired: TaskState,
    /// What the node reported last.
    pub state: TaskState,
    /// Swarmkit's `Status.Message` (`started`, `assigned`, `shutdown`).
    #[serde(default)]
    pub message: String,
    /// Swarmkit's `Status.Err`, for failed and rejected tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
    /// The service version the task runs.
    pub spec_version: u64,
    /// The container, once the node created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Its exit code, once it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Its addresses on the service's networks, once it runs.
    #[serde(default)]
    pub addresses: Vec<(NetworkId, IpNet)>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: when `state` last changed.
    pub updated_at: String,
}

impl TaskRecord {
    /// Docker's task name: `<service>.<slot>` (global mode: `<service>.<node id>`).
    pub fn name(&self, service: &str) -> String {
        match (&self.node_id, self.slot) {
            (Some(node), 0) => format!("{service}.{node}"),
            (_, slot) => format!("{service}.{slot}"),
        }
    }

    /// The container's name: `<service>.<slot>.<task id>`, as Docker names it.
    pub fn container_name(&self, service: &str) -> String {
        format!("{}.{}", self.name(service), self.id)
    }

    /// Whether the task should be a load-balancing backend: it runs and is meant to.
    pub fn is_serving(&self) -> bool {
        self.state == TaskState::Running && self.desired == TaskState::Running
    }

    /// Its address on a network, if it has one.
    pub fn address_on(&self, network: &NetworkId) -> Option<IpAddr> {
        self.addresses.iter().find(|(n, _)| n == network).map(|(_, a)| a.addr())
    }
}

/// A new swarmkit-style id: 25 characters of `[0-9a-z]`.
pub fn new_object_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..25).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(labels: &'a BTreeMap<String, String>) -> NodeFacts<'a> {
        NodeFacts { id: "n1", hostname: "h2", labels }
    }

    #[test]
    fn constraints_parse_and_match_like_swarmkit() {
        let mut labels = BTreeMap::new();
        labels.insert("zone".to_string(), "A".to_string());
        let holds = |s: &str| s.parse::<Constraint>().unwrap().holds(facts(&labels));
        assert!(holds("node.hostname==h2"));
        assert!(holds("node.hostname == H2"));
        assert!(!holds("node.hostname!=h2"));
        assert!(holds("node.labels.zone==a"));
        assert!(holds("node.labels.rack!=x"), "!= holds for a missing label");
        assert!(!holds("node.labels.rack==x"));
        assert!(holds("node.role==manager"));
        assert!(holds("node.platform.os==linux"));
        let e = "node.hostname=h2".parse::<Constraint>().unwrap_err();
        assert!(e.0.contains("==, !="), "{e}");
        let e = "node.color==red".parse::<Constraint>().unwrap_err();
        assert!(e.0.contains("unsupported key"), "{e}");
        assert!("node.hostname==".parse::<Constraint>().is_err());
    }

    #[test]
    fn label_keys_keep_their_case() {
        let c: Constraint = "node.labels.Zone==a".parse().unwrap();
        assert_eq!(c.key, ConstraintKey::Label("Zone".into()));
    }

    #[test]
    fn task_names_follow_docker() {
        let t = TaskRecord {
            id: "abc".into(),
            service_id: "s".into(),
            slot: 2,
            node_id: Some("n1".into()),
            desired: TaskState::Running,
            state: TaskState::Running,
            message: String::new(),
            err: None,
            spec_version: 1,
            container_id: None,
            exit_code: None,
            addresses: vec![],
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert_eq!(t.name("web"), "web.2");
        assert_eq!(t.container_name("web"), "web.2.abc");
        let g = TaskRecord { slot: 0, ..t };
        assert_eq!(g.name("web"), "web.n1");
        assert!(TaskState::Failed.is_terminal() && !TaskState::Running.is_terminal());
        assert_eq!(new_object_id().len(), 25);
    }
}
