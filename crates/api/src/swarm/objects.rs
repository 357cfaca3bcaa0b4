//! Services, tasks, nodes and the cluster in the JSON shapes of Docker's Swarm API
//! (API 1.41-1.50), the fields Docker's CLI, `docker stack` and docker-py read.

use std::collections::HashMap;

use cove_controller::{NodeView, SwarmView};
use cove_model::{EndpointMode, ServiceMode, ServiceRecord, TaskRecord, TaskState};
use serde_json::{json, Value};

use crate::VERSION;

/// Go's zero time, for fields Cove has no value for.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Counts of a service's tasks (`ServiceStatus`).
pub(crate) fn service_status(svc: &ServiceRecord, tasks: &[TaskRecord]) -> Value {
    let mine = || tasks.iter().filter(|t| t.service_id == svc.id);
    let running = mine().filter(|t| t.is_serving()).count();
    let desired = match svc.plan.mode {
        ServiceMode::Replicated { replicas } => replicas as usize,
        ServiceMode::Global => mine().filter(|t| t.desired == TaskState::Running).count(),
    };
    let completed = mine().filter(|t| t.state == TaskState::Complete).count();
    json!({ "RunningTasks": running, "DesiredTasks": desired, "CompletedTasks": completed })
}

/// A service (`GET /services/{id}`); with `status`, its `ServiceStatus` too.
pub(crate) fn service(svc: &ServiceRecord, tasks: Option<&[TaskRecord]>) -> Value {
    let ports: Vec<Value> = svc
        .plan
        .ports
        .iter()
        .map(|p| {
            json!({
                "Protocol": p.proto.as_str(),
                "TargetPort": p.target,
                "PublishedPort": p.published.unwrap_or(0),
                "PublishMode": p.mode.as_str(),
            })
        })
        .collect();
    let spec_ports = svc.spec.get("EndpointSpec").and_then(|e| e.get("Ports")).cloned();
    let vips: Vec<Value> = svc
        .vips
        .iter()
        .map(|v| json!({ "NetworkID": v.network_id.to_string(), "Addr": v.addr.to_string() }))
        .collect();
    let mut endpoint = json!({
        "Spec": { "Mode": svc.plan.endpoint_mode.as_str() },
    });
    if let Some(p) = spec_ports.filter(|p| !p.is_null()) {
        endpoint["Spec"]["Ports"] = p;
    }
    if !ports.is_empty() {
        endpoint["Ports"] = Value::Array(ports);
    }
    if svc.plan.endpoint_mode == EndpointMode::Vip && !vips.is_empty() {
        endpoint["VirtualIPs"] = Value::Array(vips);
    }
    let mut out = json!({
        "ID": svc.id,
        "Version": { "Index": svc.version },
        "CreatedAt": svc.created_at,
        "UpdatedAt": svc.updated_at,
        "Spec": svc.spec,
        "Endpoint": endpoint,
    });
    if let Some(prev) = &svc.previous_spec {
        out["PreviousSpec"] = prev.clone();
    }
    if let Some(tasks) = tasks {
        out["ServiceStatus"] = service_status(svc, tasks);
    }
    out
}

/// A task (`GET /tasks/{id}`).
pub(crate) fn task(t: &TaskRecord, services: &HashMap<String, ServiceRecord>) -> Value {
    let svc = services.get(&t.service_id);
    let spec = svc.and_then(|s| s.spec.get("TaskTemplate")).cloned().unwrap_or(json!({}));
    let mut status = json!({
        "Timestamp": t.updated_at,
        "State": t.state.as_str(),
        "Message": t.message,
        "ContainerStatus": {
            "ContainerID": t.container_id.clone().unwrap_or_default(),
            "PID": 0,
            "ExitCode": t.exit_code.unwrap_or(0),
        },
        "PortStatus": {},
    });
    if let Some(err) = &t.err {
        status["Err"] = Value::String(err.clone());
    }
    let attachments: Vec<Value> = t
        .addresses
        .iter()
        .map(|(n, a)| json!({ "Network": { "ID": n.to_string() }, "Addresses": [a.to_string()] }))
        .collect();
    let mut out = json!({
        "ID": t.id,
        "Version": { "Index": 1 },
        "CreatedAt": t.created_at,
        "UpdatedAt": t.updated_at,
        "Labels": {},
        "Spec": spec,
        "ServiceID": t.service_id,
        "Status": status,
        "DesiredState": t.desired.as_str(),
        "NetworksAttachments": attachments,
    });
    if t.slot > 0 {
        out["Slot"] = json!(t.slot);
    }
    if let Some(n) = &t.node_id {
        out["NodeID"] = Value::String(n.clone());
    }
    if let Some(s) = svc {
        out["ServiceAnnotations"] = json!({ "Name": s.plan.name });
    }
    out
}

/// Go's name of the architecture (`x86_64` as the engine reports a node's).
fn arch() -> &'static str {
    std::env::consts::ARCH
}

/// A node (`GET /nodes/{id}`). Every Cove node is a manager (any node serves the whole
/// API); the leader is the orchestrator's.
pub(crate) fn node(n: &NodeView, leader: Option<&str>) -> Value {
    let is_leader = leader == Some(n.node.id.as_str());
    let mut manager = json!({
        "Reachability": if n.up { "reachable" } else { "unreachable" },
        "Addr": format!("{}:2377", n.node.advertise),
    });
    if is_leader {
        manager["Leader"] = Value::Bool(true);
    }
    json!({
        "ID": n.node.id,
        "Version": { "Index": 1 },
        "CreatedAt": ZERO_TIME,
        "UpdatedAt": ZERO_TIME,
        "Spec": { "Labels": n.node.labels, "Role": "manager", "Availability": "active" },
        "Description": {
            "Hostname": n.node.hostname,
            "Platform": { "Architecture": arch(), "OS": "linux" },
            "Resources": {},
            "Engine": { "EngineVersion": VERSION, "Labels": n.node.labels, "Plugins": [] },
            "TLSInfo": {},
        },
        "Status": {
            "State": if n.up { "ready" } else { "down" },
            "Addr": n.node.advertise.to_string(),
        },
        "ManagerStatus": manager,
    })
}

/// The cluster's spec, as swarmkit's defaults (Cove has no knobs for these).
fn cluster_spec() -> Value {
    json!({
        "Name": "default",
        "Labels": {},
        "Orchestration": { "TaskHistoryRetentionLimit": cove_controller::TASK_HISTORY },
        "Raft": {
            "SnapshotInterval": 10000,
            "KeepOldSnapshots": 0,
            "LogEntriesForSlowFollowers": 500,
            "ElectionTick": 10,
            "HeartbeatTick": 1,
        },
        "Dispatcher": { "HeartbeatPeriod": 5_000_000_000u64 },
        "CAConfig": { "NodeCertExpiry": 7_776_000_000_000_000u64 },
        "TaskDefaults": {},
        "EncryptionConfig": { "AutoLockManagers": false },
    })
}

/// `GET /swarm`.
pub(crate) fn swarm(v: &SwarmView) -> Value {
    json!({
        "ID": v.cluster_id,
        "Version": { "Index": 1 },
        "CreatedAt": v.created_at,
        "UpdatedAt": v.created_at,
        "Spec": cluster_spec(),
        "TLSInfo": {},
        "RootRotationInProgress": false,
        "DefaultAddrPool": ["10.0.0.0/8"],
        "SubnetSize": 24,
        "DataPathPort": 4789,
        "JoinTokens": { "Worker": "", "Manager": "" },
    })
}

/// `Swarm` of `GET /info`.
pub(crate) fn info(v: Option<&SwarmView>) -> Value {
    let Some(v) = v else {
        return json!({
            "NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive",
            "ControlAvailable": false, "Error": "", "RemoteManagers": null,
        });
    };
    let mut cluster = swarm(v);
    if let Some(o) = cluster.as_object_mut() {
        o.remove("JoinTokens");
    }
    let managers: Vec<Value> = v
        .leader
        .iter()
        .map(|id| json!({ "NodeID": id, "Addr": format!("{}:2377", v.node.advertise) }))
        .collect();
    json!({
        "NodeID": v.node.id,
        "NodeAddr": v.node.advertise.to_string(),
        "LocalNodeState": "active",
        "ControlAvailable": true,
        "Error": "",
        "RemoteManagers": managers,
        "Nodes": v.nodes,
        "Managers": v.nodes,
        "Cluster": cluster,
    })
}
