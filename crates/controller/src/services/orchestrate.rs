//! The orchestrator's plan: from the services, their tasks and the nodes, the task
//! changes that bring the cluster to what the services ask for. Pure: the leader reads the
//! cluster store, calls [`plan`], and writes what it returns (each write conditional on the
//! task being unchanged since it was read, so a node's concurrent report is never lost).
//!
//! Swarmkit's rules, reduced to what Cove serves:
//! - replicated mode: slots 1..=N each hold one task meant to run; a task that ended
//!   (failed, rejected, complete, orphaned) is replaced in its slot after a restart delay;
//!   slots above N are shut down;
//! - global mode: one task per ready node that satisfies the constraints;
//! - a task whose node has been down longer than the grace period is orphaned and
//!   replaced elsewhere;
//! - placement spreads a service's tasks over the eligible nodes (fewest of its tasks,
//!   then fewest tasks overall), honours constraints, never puts two tasks publishing one
//!   host-mode port on a node, and avoids a node that rejected the slot when another one
//!   can take it;
//! - an update replaces tasks running an older spec one at a time (parallelism 1),
//!   starting the next once the previous replacement runs;
//! - ended tasks are kept for history, the newest [`HISTORY`] per slot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use cove_model::{NodeFacts, PublishMode, ServiceMode, ServiceRecord, TaskRecord, TaskState};

/// Ended tasks kept per slot (swarmkit's `TaskHistoryRetentionLimit` default).
pub const HISTORY: usize = 5;
/// How long a slot waits after its task ended before it gets a new one (swarmkit's
/// default restart delay).
pub const RESTART_DELAY: Duration = Duration::from_secs(5);

/// A node as the orchestrator sees it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Its id.
    pub id: String,
    /// Its hostname.
    pub hostname: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its liveness key is there.
    pub ready: bool,
    /// It has been down longer than the grace period: its tasks are orphaned.
    pub gone: bool,
}

/// One change to the cluster's tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskChange {
    /// A new task (created only if absent).
    Create(TaskRecord),
    /// A changed task (written only if unchanged since read).
    Update(TaskRecord),
    /// A task to forget (deleted only if unchanged since read).
    Delete(String),
}

/// What [`plan`] works from.
#[derive(Clone, Copy)]
pub struct Snapshot<'a> {
    /// Every service.
    pub services: &'a [ServiceRecord],
    /// Every task.
    pub tasks: &'a [TaskRecord],
    /// Every node that ever joined.
    pub nodes: &'a [NodeInfo],
    /// Now, RFC 3339 (written into the records).
    pub now: &'a str,
    /// How long ago each task last changed (by id), for the restart delay.
    pub age: &'a dyn Fn(&TaskRecord) -> Duration,
}

/// The task changes that bring the cluster in line with its services.
pub fn plan(s: Snapshot<'_>) -> Vec<TaskChange> {
    let mut out = Vec::new();
    let services: HashMap<&str, &ServiceRecord> =
        s.services.iter().map(|svc| (svc.id.as_str(), svc)).collect();
    let nodes: HashMap<&str, &NodeInfo> = s.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut load = Load::default();

    // Tasks of removed services, and tasks on nodes that are gone.
    for t in s.tasks {
        let node_gone = t.node_id.as_deref().is_some_and(|n| nodes.get(n).is_none_or(|n| n.gone));
        if !services.contains_key(t.service_id.as_str()) {
            if t.state.is_terminal() || t.node_id.is_none() || node_gone {
                out.push(TaskChange::Delete(t.id.clone()));
            } else if t.desired != TaskState::Shutdown {
                out.push(TaskChange::Update(shut_down(t, s.now)));
            }
        } else if node_gone && !t.state.is_terminal() {
            let mut o = shut_down(t, s.now);
            o.state = TaskState::Orphaned;
            o.message = "node is down".into();
            out.push(TaskChange::Update(o));
        }
    }
    // What the changes above leave, for the per-service pass (None: deleted); those tasks
    // get no other change this round.
    let first: HashMap<&str, Option<&TaskRecord>> = out
        .iter()
        .filter_map(|c| match c {
            TaskChange::Update(t) => Some((t.id.as_str(), Some(t))),
            TaskChange::Delete(id) => Some((id.as_str(), None)),
            TaskChange::Create(_) => None,
        })
        .collect();
    let tasks: Vec<TaskRecord> = s
        .tasks
        .iter()
        .filter_map(|t| first.get(t.id.as_str()).copied().unwrap_or(Some(t)).cloned())
        .collect();
    let changed: BTreeSet<String> = first.keys().map(|id| id.to_string()).collect();
    for t in &tasks {
        load.set(t);
    }

    let mut svcs: Vec<&ServiceRecord> = s.services.iter().collect();
    svcs.sort_by(|a, b| a.id.cmp(&b.id));
    for svc in svcs {
        let mine: Vec<&TaskRecord> = tasks.iter().filter(|t| t.service_id == svc.id).collect();
        let mut changes = match svc.plan.mode {
            ServiceMode::Replicated { replicas } => replicated(svc, replicas, &mine, s, &mut load),
            ServiceMode::Global => global(svc, &mine, s, &mut load),
        };
        changes.extend(history(&mine, &changes));
        for c in changes {
            let id = match &c {
                TaskChange::Update(t) => Some(&t.id),
                TaskChange::Delete(id) => Some(id),
                TaskChange::Create(_) => None,
            };
            // One change per task per round: the earlier pass wins.
            if id.is_none_or(|id| !changed.contains(id)) {
                out.push(c);
            }
        }
    }
    out
}

/// How many tasks meant to run each node holds, overall and per service, and which
/// host-mode ports it publishes.
#[derive(Default)]
struct Load {
    total: HashMap<String, usize>,
    per_service: HashMap<(String, String), usize>,
    host_ports: HashMap<String, BTreeSet<(cove_model::Proto, u16)>>,
    /// The tasks counted already.
    counted: BTreeSet<String>,
}

impl Load {
    /// Count a task meant to run on its node.
    fn set(&mut self, t: &TaskRecord) {
        let Some(node) = &t.node_id else { return };
        if t.desired != TaskState::Running || t.state.is_terminal() {
            return;
        }
        if !self.counted.insert(t.id.clone()) {
            return;
        }
        *self.total.entry(node.clone()).or_default() += 1;
        *self.per_service.entry((node.clone(), t.service_id.clone())).or_default() += 1;
    }

    fn add_ports(&mut self, node: &str, svc: &ServiceRecord) {
        let ports = self.host_ports.entry(node.to_string()).or_default();
        ports.extend(host_ports(svc));
    }
}

fn host_ports(svc: &ServiceRecord) -> impl Iterator<Item = (cove_model::Proto, u16)> + '_ {
    svc.plan
        .ports
        .iter()
        .filter(|p| p.mode == PublishMode::Host)
        .filter_map(|p| p.published.map(|pp| (p.proto, pp)))
}

fn shut_down(t: &TaskRecord, now: &str) -> TaskRecord {
    let mut o = t.clone();
    o.desired = TaskState::Shutdown;
    if o.node_id.is_none() || o.state < TaskState::Assigned {
        o.state = TaskState::Shutdown;
        o.message = "shutdown".into();
    }
    o.updated_at = now.to_string();
    o
}

fn new_task(svc: &ServiceRecord, slot: u64, node: Option<String>, now: &str) -> TaskRecord {
    TaskRecord {
        id: cove_model::new_object_id(),
        service_id: svc.id.clone(),
        slot,
        node_id: node,
        desired: TaskState::Running,
        state: TaskState::New,
        message: "created".into(),
        err: None,
        spec_version: svc.task_version,
        container_id: None,
        exit_code: None,
        addresses: vec![],
        created_at: now.to_string(),
        updated_at: now.to_string(),
    }
}

/// The node a new task of `svc` goes to, or why there is none.
fn place(
    svc: &ServiceRecord,
    s: Snapshot<'_>,
    load: &Load,
    avoid: &BTreeSet<String>,
) -> std::result::Result<String, String> {
    let eligible: Vec<&NodeInfo> = s
        .nodes
        .iter()
        .filter(|n| n.ready && !n.gone)
        .filter(|n| {
            let facts = NodeFacts { id: &n.id, hostname: &n.hostname, labels: &n.labels };
            svc.plan.constraints.iter().all(|c| c.holds(facts))
        })
        .collect();
    if eligible.is_empty() {
        return Err(if svc.plan.constraints.is_empty() {
            "no suitable node (no node is ready)".into()
        } else {
            format!(
                "no suitable node (scheduling constraints not satisfied on {} node{})",
                s.nodes.len(),
                if s.nodes.len() == 1 { "" } else { "s" }
            )
        });
    }
    let wanted: BTreeSet<_> = host_ports(svc).collect();
    let free: Vec<&NodeInfo> = eligible
        .into_iter()
        .filter(|n| load.host_ports.get(&n.id).is_none_or(|used| used.is_disjoint(&wanted)))
        .collect();
    if free.is_empty() {
        let n = s.nodes.iter().filter(|n| n.ready).count();
        return Err(format!(
            "no suitable node (host-mode port already in use on {n} node{})",
            if n == 1 { "" } else { "s" }
        ));
    }
    let preferred: Vec<&NodeInfo> =
        free.iter().copied().filter(|n| !avoid.contains(&n.id)).collect();
    let pool = if preferred.is_empty() { free } else { preferred };
    let score = |n: &NodeInfo| {
        (
            load.per_service.get(&(n.id.clone(), svc.id.clone())).copied().unwrap_or(0),
            load.total.get(&n.id).copied().unwrap_or(0),
            n.id.clone(),
        )
    };
    Ok(pool.into_iter().min_by_key(|n| score(n)).map(|n| n.id.clone()).unwrap_or_default())
}

/// A task for `slot` placed (Assigned) or waiting (Pending), counted in `load`.
fn assign(
    svc: &ServiceRecord,
    slot: u64,
    s: Snapshot<'_>,
    load: &mut Load,
    avoid: &BTreeSet<String>,
) -> TaskRecord {
    let mut t = new_task(svc, slot, None, s.now);
    match place(svc, s, load, avoid) {
        Ok(node) => {
            t.node_id = Some(node.clone());
            t.state = TaskState::Assigned;
            t.message = "assigned".into();
            load.set(&t);
            load.add_ports(&node, svc);
        }
        Err(why) => {
            t.state = TaskState::Pending;
            t.message = "pending task scheduling".into();
            t.err = Some(why);
        }
    }
    t
}

fn replicated(
    svc: &ServiceRecord,
    replicas: u64,
    mine: &[&TaskRecord],
    s: Snapshot<'_>,
    load: &mut Load,
) -> Vec<TaskChange> {
    let mut out = Vec::new();
    // Host-mode ports of this service's live tasks are taken on their nodes.
    for t in mine.iter().filter(|t| t.desired == TaskState::Running && !t.state.is_terminal()) {
        if let Some(n) = &t.node_id {
            load.add_ports(n, svc);
        }
    }
    let mut slots: BTreeMap<u64, Vec<&TaskRecord>> = BTreeMap::new();
    for t in mine {
        slots.entry(t.slot).or_default().push(t);
    }
    // An update replaces one task at a time: only when every live task runs.
    let mut may_replace = mine
        .iter()
        .filter(|t| t.desired == TaskState::Running)
        .all(|t| t.state == TaskState::Running);
    for slot in 1..=replicas {
        let tasks = slots.get(&slot).cloned().unwrap_or_default();
        let live: Vec<&&TaskRecord> =
            tasks.iter().filter(|t| t.desired == TaskState::Running).collect();
        let avoid: BTreeSet<String> = tasks
            .iter()
            .filter(|t| t.state == TaskState::Rejected)
            .filter_map(|t| t.node_id.clone())
            .collect();
        match live.as_slice() {
            [] => {
                // The slot's last task ended: wait out the restart delay.
                let last_ended =
                    tasks.iter().filter(|t| t.state.is_terminal()).max_by_key(|t| &t.updated_at);
                // A rejection moves on to another node at once when there is one.
                let elsewhere = || place(svc, s, load, &avoid).is_ok_and(|n| !avoid.contains(&n));
                let waiting = last_ended.is_some_and(|t| {
                    t.state != TaskState::Shutdown
                        && (s.age)(t) < RESTART_DELAY
                        && !(t.state == TaskState::Rejected && elsewhere())
                });
                if !waiting {
                    out.push(TaskChange::Create(assign(svc, slot, s, load, &avoid)));
                }
            }
            [t, rest @ ..] => {
                for extra in rest {
                    out.push(TaskChange::Update(shut_down(extra, s.now)));
                }
                if t.state.is_terminal() {
                    // Ended while meant to run: shut it down now, replace it after the delay.
                    out.push(TaskChange::Update(shut_down(t, s.now)));
                } else if t.state == TaskState::Pending {
                    if let Ok(node) = place(svc, s, load, &avoid) {
                        let mut o = (**t).clone();
                        o.node_id = Some(node.clone());
                        o.state = TaskState::Assigned;
                        o.message = "assigned".into();
                        o.err = None;
                        o.updated_at = s.now.to_string();
                        load.set(&o);
                        load.add_ports(&node, svc);
                        out.push(TaskChange::Update(o));
                    }
                } else if t.spec_version < svc.task_version && may_replace {
                    may_replace = false;
                    out.push(TaskChange::Update(shut_down(t, s.now)));
                    out.push(TaskChange::Create(assign(svc, slot, s, load, &BTreeSet::new())));
                }
            }
        }
    }
    let above = slots.range(replicas + 1..).flat_map(|(_, tasks)| tasks);
    for t in above.filter(|t| t.desired == TaskState::Running) {
        out.push(TaskChange::Update(shut_down(t, s.now)));
    }
    out
}

fn global(
    svc: &ServiceRecord,
    mine: &[&TaskRecord],
    s: Snapshot<'_>,
    load: &mut Load,
) -> Vec<TaskChange> {
    let mut out = Vec::new();
    for n in s.nodes.iter().filter(|n| !n.gone) {
        let facts = NodeFacts { id: &n.id, hostname: &n.hostname, labels: &n.labels };
        let fits = svc.plan.constraints.iter().all(|c| c.holds(facts));
        let on_node: Vec<&&TaskRecord> = mine
            .iter()
            .filter(|t| {
                t.node_id.as_deref() == Some(n.id.as_str()) && t.desired == TaskState::Running
            })
            .collect();
        if !fits {
            out.extend(on_node.iter().map(|t| TaskChange::Update(shut_down(t, s.now))));
            continue;
        }
        match on_node.as_slice() {
            [] if n.ready => {
                let last_ended = mine
                    .iter()
                    .filter(|t| {
                        t.node_id.as_deref() == Some(n.id.as_str()) && t.state.is_terminal()
                    })
                    .max_by_key(|t| &t.updated_at);
                let waiting = last_ended
                    .is_some_and(|t| t.state != TaskState::Shutdown && (s.age)(t) < RESTART_DELAY);
                if !waiting {
                    let mut t = new_task(svc, 0, Some(n.id.clone()), s.now);
                    t.state = TaskState::Assigned;
                    t.message = "assigned".into();
                    load.set(&t);
                    out.push(TaskChange::Create(t));
                }
            }
            [] => {}
            [t, rest @ ..] => {
                for extra in rest {
                    out.push(TaskChange::Update(shut_down(extra, s.now)));
                }
                if t.state.is_terminal() {
                    out.push(TaskChange::Update(shut_down(t, s.now)));
                } else if t.spec_version < svc.task_version {
                    out.push(TaskChange::Update(shut_down(t, s.now)));
                    let mut nt = new_task(svc, 0, Some(n.id.clone()), s.now);
                    nt.state = TaskState::Assigned;
                    nt.message = "assigned".into();
                    out.push(TaskChange::Create(nt));
                }
            }
        }
    }
    // Tasks on nodes that left the cluster for good.
    for t in mine.iter().filter(|t| t.desired == TaskState::Running) {
        let known = t.node_id.as_deref().is_some_and(|id| s.nodes.iter().any(|n| n.id == id));
        if !known {
            out.push(TaskChange::Update(shut_down(t, s.now)));
        }
    }
    out
}

/// Ended tasks beyond the newest [`HISTORY`] per slot (global: per node), once their
/// node has taken their container away (state shut down, or never placed).
fn history(mine: &[&TaskRecord], changes: &[TaskChange]) -> Vec<TaskChange> {
    let touched: BTreeSet<&str> = changes
        .iter()
        .filter_map(|c| match c {
            TaskChange::Update(t) => Some(t.id.as_str()),
            _ => None,
        })
        .collect();
    let mut by_slot: BTreeMap<(u64, Option<&str>), Vec<&TaskRecord>> = BTreeMap::new();
    for t in mine {
        if t.desired == TaskState::Shutdown
            && t.state.is_terminal()
            && !touched.contains(t.id.as_str())
        {
            let node = if t.slot == 0 { t.node_id.as_deref() } else { None };
            by_slot.entry((t.slot, node)).or_default().push(t);
        }
    }
    let mut out = Vec::new();
    for (_, mut ended) in by_slot {
        ended.sort_by(|a, b| b.updated_at.cmp(&a.updated_at));
        out.extend(ended.into_iter().skip(HISTORY).map(|t| TaskChange::Delete(t.id.clone())));
    }
    out
}

#[cfg(test)]
#[path = "orchestrate_tests.rs"]
mod tests;
