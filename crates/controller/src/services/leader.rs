//! The orchestrator's seat: one node of the cluster is the leader, elected through the
//! cluster store (a key created only if absent and bound to the leader's node lease, so
//! it vanishes when the leader's daemon dies or loses the store), and only the leader
//! writes task assignments. Every node runs the loop and takes the seat when it is free.
//! A cluster store without leases (a single host's own store) has one node, always the
//! leader.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cove_model::{NodeRecord, Result, ServiceRecord, TaskRecord};
use cove_store::{Batch, Table};
use tracing::{debug, info, warn};

use super::orchestrate::{self, NodeInfo, Snapshot, TaskChange};
use crate::cluster::ClusterSeam;
use crate::Controller;

/// The leader key's name in [`Table::Leader`].
const SEAT: &str = "orchestrator";
/// How often the orchestrator and the agent look even without an event.
pub(crate) const TICK: Duration = Duration::from_secs(1);
/// How long watch events must stop before a round (a burst is one round).
const SETTLE: Duration = Duration::from_millis(10);

/// What the leader remembers between rounds.
#[derive(Debug, Default)]
pub(crate) struct LeaderMemory {
    /// When each node was first seen down.
    down_since: HashMap<String, Instant>,
    /// Whether this node held the seat in the last round (for the log).
    leading: bool,
}

impl Controller {
    /// Whether this node is the leader, taking the seat if it is free.
    fn take_seat(&self, c: &ClusterSeam) -> Result<bool> {
        let Some(lease) = self.node_lease_id() else {
            // No leases: a single host's own store, with one node.
            return Ok(c.leases.is_none());
        };
        if let Some(holder) = c.store.get::<String>(Table::Leader, SEAT)? {
            return Ok(holder == c.node.id);
        }
        let mut b = Batch::new();
        b.require_absent(Table::Leader, SEAT);
        b.put_with_lease(Table::Leader, SEAT, &c.node.id, lease);
        match c.store.commit(b) {
            Ok(_) => Ok(true),
            Err(e) if e.kind == cove_model::ErrorKind::Conflict => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The id of the leader's node, if there is one.
    pub fn leader_id(&self) -> Option<String> {
        let c = self.cluster()?;
        if c.leases.is_none() {
            return Some(c.node.id.clone());
        }
        c.store.get::<String>(Table::Leader, SEAT).ok().flatten()
    }

    /// One orchestrator round, if this node leads.
    pub(crate) async fn orchestrate_round(&self, mem: &mut LeaderMemory) -> Result<()> {
        let Some(c) = self.cluster().cloned() else { return Ok(()) };
        let leading = self.take_seat(&c)?;
        if leading != mem.leading {
            info!(node = %c.node.id, leading, "orchestrator seat");
            mem.leading = leading;
        }
        if !leading {
            mem.down_since.clear();
            return Ok(());
        }
        let services: Vec<ServiceRecord> =
            c.store.list::<ServiceRecord>(Table::Services)?.into_iter().map(|(_, s)| s).collect();
        let tasks: Vec<TaskRecord> =
            c.store.list::<TaskRecord>(Table::Tasks)?.into_iter().map(|(_, t)| t).collect();
        let nodes = self.node_infos(&c, mem)?;
        let now_wall = chrono::Utc::now();
        let age = |t: &TaskRecord| {
            chrono::DateTime::parse_from_rfc3339(&t.updated_at)
                .ok()
                .and_then(|u| (now_wall - u.with_timezone(&chrono::Utc)).to_std().ok())
                .unwrap_or(Duration::MAX)
        };
        let now = crate::now();
        let changes = orchestrate::plan(Snapshot {
            services: &services,
            tasks: &tasks,
            nodes: &nodes,
            now: &now,
            age: &age,
        });
        if changes.is_empty() {
            return Ok(());
        }
        debug!(changes = changes.len(), "orchestrator round");
        let read: HashMap<&str, &TaskRecord> = tasks.iter().map(|t| (t.id.as_str(), t)).collect();
        for change in changes {
            if let Err(e) = write_change(&c, &read, change) {
                // Someone wrote first (a node's report): the next round plans again.
                debug!(error = %e, "task change not written");
            }
        }
        Ok(())
    }

    /// Every node that ever joined, with whether it is ready and whether it has been
    /// down longer than the grace period.
    fn node_infos(&self, c: &ClusterSeam, mem: &mut LeaderMemory) -> Result<Vec<NodeInfo>> {
        let live: BTreeSet<String> =
            c.store.list::<NodeRecord>(Table::Nodes)?.into_iter().map(|(id, _)| id).collect();
        let all = c.store.list::<NodeRecord>(Table::NodeStates)?;
        let now = Instant::now();
        mem.down_since.retain(|id, _| !live.contains(id));
        Ok(all
            .into_iter()
            .map(|(id, n)| {
                let ready = live.contains(&id);
                let gone = !ready
                    && now.duration_since(*mem.down_since.entry(id.clone()).or_insert(now))
                        >= self.cfg.node_down_grace;
                NodeInfo { id, hostname: n.hostname, labels: n.labels, ready, gone }
            })
            .collect())
    }

    /// Run the orchestrator and this node's agent: on every change of services, tasks or
    /// nodes in the cluster store, on a nudge, and every [`TICK`].
    pub(crate) fn spawn_services_loop(self: &Arc<Self>) {
        let Some(c) = self.cluster().cloned() else { return };
        let weak = Arc::downgrade(self);
        let wake = self.services_wake.clone();
        tokio::spawn(async move {
            let mut mem = LeaderMemory::default();
            let mut agent = super::agent::AgentMemory::default();
            let mut watch = None;
            // The first round at once: a restarted daemon catches up without waiting.
            wake.notify_one();
            loop {
                if watch.is_none() {
                    watch = c
                        .store
                        .store()
                        .watch("", 0)
                        .map_err(
                            |e| warn!(error = %e, "services: could not watch the cluster store"),
                        )
                        .ok();
                }
                tokio::select! {
                    ev = crate::cluster::next_event(&mut watch) => {
                        match ev {
                            Some(cove_store::WatchEvent::Lagged) | None => watch = None,
                            Some(ev) if !relevant(&ev) => continue,
                            Some(_) => {}
                        }
                        crate::cluster::settle_burst(&mut watch, SETTLE).await;
                    }
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(TICK) => {}
                }
                let Some(ctl) = weak.upgrade() else { return };
                if let Err(e) = ctl.orchestrate_round(&mut mem).await {
                    warn!(error = %e, "orchestrator round failed");
                }
                if let Err(e) = ctl.agent_round(&mut agent).await {
                    warn!(error = %e, "task agent round failed");
                }
            }
        });
    }
}

/// Whether a watch event concerns services: services, tasks, nodes or the leader seat.
fn relevant(ev: &cove_store::WatchEvent) -> bool {
    ev.key().is_none_or(|k| {
        [Table::Services, Table::Tasks, Table::Nodes, Table::NodeStates, Table::Leader]
            .iter()
            .any(|t| k.starts_with(&t.prefix()))
    })
}

/// Write one change, only if the task is as the plan read it.
fn write_change(
    c: &ClusterSeam,
    read: &HashMap<&str, &TaskRecord>,
    change: TaskChange,
) -> Result<()> {
    let mut b = Batch::new();
    match change {
        TaskChange::Create(t) => {
            b.require_absent(Table::Tasks, &t.id);
            b.put(Table::Tasks, &t.id, &t);
        }
        TaskChange::Update(t) => {
            let rev = unchanged(c, read, &t.id)?;
            b.require_revision(Table::Tasks, &t.id, rev);
            b.put(Table::Tasks, &t.id, &t);
        }
        TaskChange::Delete(id) => {
            let rev = unchanged(c, read, &id)?;
            b.require_revision(Table::Tasks, &id, rev);
            b.delete(Table::Tasks, &id);
        }
    }
    c.store.commit(b).map(drop)
}

/// The task's current revision, if it is still what the plan read.
fn unchanged(c: &ClusterSeam, read: &HashMap<&str, &TaskRecord>, id: &str) -> Result<i64> {
    let (now, rev) = c
        .store
        .get_with_revision::<TaskRecord>(Table::Tasks, id)?
        .ok_or_else(|| cove_model::Error::conflict(format!("task {id} is gone")))?;
    if read.get(id).is_some_and(|r| **r == now) {
        Ok(rev)
    } else {
        Err(cove_model::Error::conflict(format!("task {id} changed since it was read")))
    }
}

/// What `GET /info` and `GET /swarm` say about the cluster.
#[derive(Debug, Clone)]
pub struct SwarmView {
    /// The cluster's id.
    pub cluster_id: String,
    /// When the cluster was created (RFC 3339).
    pub created_at: String,
    /// This node.
    pub node: NodeRecord,
    /// The leader's node id, if there is a leader.
    pub leader: Option<String>,
    /// Every node that ever joined.
    pub nodes: usize,
}

/// The cluster's identity (`cluster/id`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ClusterIdentity {
    id: String,
    created_at: String,
}

impl Controller {
    /// The cluster as `docker info` shows it; None when this host is in no cluster.
    pub fn swarm_view(&self) -> Result<Option<SwarmView>> {
        let Some(c) = self.cluster() else { return Ok(None) };
        let identity = match c.store.get::<ClusterIdentity>(Table::Cluster, "id")? {
            Some(i) => i,
            None => {
                let fresh =
                    ClusterIdentity { id: cove_model::new_object_id(), created_at: crate::now() };
                let mut b = Batch::new();
                b.require_absent(Table::Cluster, "id");
                b.put(Table::Cluster, "id", &fresh);
                match c.store.commit(b) {
                    Ok(_) => fresh,
                    // Another node created it first.
                    Err(e) if e.kind == cove_model::ErrorKind::Conflict => c
                        .store
                        .get::<ClusterIdentity>(Table::Cluster, "id")?
                        .ok_or_else(|| cove_model::Error::internal("cluster id vanished"))?,
                    Err(e) => return Err(e),
                }
            }
        };
        let nodes = c.store.list::<NodeRecord>(Table::NodeStates)?.len();
        Ok(Some(SwarmView {
            cluster_id: identity.id,
            created_at: identity.created_at,
            node: c.node.clone(),
            leader: self.leader_id(),
            nodes,
        }))
    }
}
