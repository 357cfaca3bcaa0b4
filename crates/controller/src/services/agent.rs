//! A node's agent: runs the containers of the tasks the orchestrator assigned to this
//! node, and reports their state back into the task records.
//!
//! Each round compares the tasks assigned here with the containers that carry a task
//! label (`com.docker.swarm.task.id`), so a restarted daemon re-adopts the containers that
//! kept running and never starts a task twice:
//! - a task meant to run without a container gets one (created, started, reported
//!   `running` with its addresses, or `rejected` / `failed` with the reason);
//! - a running task whose container exited is reported `complete` or `failed`;
//! - a task meant to stop is first taken out of service (its record says so, and every
//!   host's load balancers drop it), then, after [`crate::ControllerConfig::task_drain`],
//!   its container is stopped and removed, and the task reported `shutdown`;
//! - a container whose task is gone or belongs elsewhere is removed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use cove_model::{
    ContainerConfig, EndpointMode, EndpointSettings, ErrorKind, HostConfig, PortBinding,
    PublishMode, Result, ServiceRecord, Status, TaskRecord, TaskState,
};
use cove_store::{Batch, Table};
use tracing::{debug, info, warn};

use crate::cluster::ClusterSeam;
use crate::lock;
use crate::{ContainerCreate, ContainerView, Controller};

/// Docker's task labels.
pub(crate) const LABEL_TASK_ID: &str = "com.docker.swarm.task.id";
const LABEL_TASK_NAME: &str = "com.docker.swarm.task.name";
const LABEL_SERVICE_ID: &str = "com.docker.swarm.service.id";
const LABEL_SERVICE_NAME: &str = "com.docker.swarm.service.name";
const LABEL_NODE_ID: &str = "com.docker.swarm.node.id";
/// How long a task's container gets to stop before it is killed (Docker's default
/// stop grace period).
const STOP_TIMEOUT: i64 = 10;

/// What the agent does for one task.
enum Work {
    /// Create (or adopt) and start its container.
    Run(Box<ServiceRecord>),
    /// Stop and remove its container.
    Stop,
    /// Remove its stopped container.
    Remove,
}

/// Write what a node observed of a task into its record: the observed fields only, onto
/// the record as it is now (the orchestrator may have changed what it wants meanwhile),
/// only if nobody wrote in between (else read again, a few times).
fn report(c: &ClusterSeam, observed: TaskRecord) {
    for _ in 0..4 {
        let now = match c.store.get_with_revision::<TaskRecord>(Table::Tasks, &observed.id) {
            Ok(Some(now)) => now,
            // Forgotten meanwhile: nothing to report to.
            Ok(None) => return,
            Err(e) => {
                warn!(task = %observed.id, error = %e, "could not read a task to report its state");
                return;
            }
        };
        let (mut t, rev) = now;
        if t.state.is_terminal() {
            return;
        }
        t.state = observed.state;
        t.message = observed.message.clone();
        t.err = observed.err.clone();
        t.container_id = observed.container_id.clone();
        t.exit_code = observed.exit_code;
        t.addresses = observed.addresses.clone();
        t.updated_at = crate::now();
        let mut b = Batch::new();
        b.require_revision(Table::Tasks, &t.id, rev);
        b.put(Table::Tasks, &t.id, &t);
        match c.store.commit(b) {
            Ok(_) => {
                debug!(task = %t.id, state = t.state.as_str(), "task state reported");
                return;
            }
            Err(e) if e.kind == ErrorKind::Conflict => continue,
            Err(e) => {
                warn!(task = %t.id, error = %e, "could not report a task's state");
                return;
            }
        }
    }
}

/// What the agent remembers between rounds.
#[derive(Debug, Default)]
pub(crate) struct AgentMemory {
    /// Tasks whose container is being started, stopped or removed.
    busy: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// When each task was first seen meant to stop (its drain started).
    draining: HashMap<String, Instant>,
}

impl Controller {
    /// One agent round: this node's tasks and containers brought in line.
    pub(crate) async fn agent_round(self: &Arc<Self>, mem: &mut AgentMemory) -> Result<()> {
        let Some(c) = self.cluster().cloned() else { return Ok(()) };
        let me = c.node.id.clone();
        let all_tasks: Vec<TaskRecord> =
            c.store.list::<TaskRecord>(Table::Tasks)?.into_iter().map(|(_, t)| t).collect();
        let tasks: Vec<&TaskRecord> =
            all_tasks.iter().filter(|t| t.node_id.as_deref() == Some(me.as_str())).collect();
        let services: HashMap<String, ServiceRecord> =
            c.store.list::<ServiceRecord>(Table::Services)?.into_iter().collect();
        let containers: BTreeMap<String, ContainerView> = self
            .container_list()
            .await
            .into_iter()
            .filter_map(|v| v.record.config.labels.get(LABEL_TASK_ID).cloned().map(|t| (t, v)))
            .collect();
        mem.draining.retain(|id, _| tasks.iter().any(|t| &t.id == id));
        // The load balancers, then the names: a task is reachable through the VIP before
        // its name appears, and the service resolves before its first task's process
        // starts.
        let mesh = super::nodeaddr::mesh_networks(services.values());
        let addrs = match self.sync_node_addresses(&c, &mesh).await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "could not take this node's routing-mesh addresses");
                c.store
                    .list::<cove_model::NodeAddress>(Table::NodeAddresses)?
                    .into_iter()
                    .map(|(_, a)| a)
                    .collect()
            }
        };
        // VIPs and node addresses stay used in the local pools (see `sync_global_pools`).
        let reserved = services
            .values()
            .flat_map(|s| s.vips.iter().map(|v| (v.network_id.to_string(), v.addr.addr())))
            .chain(addrs.iter().map(|a| (a.network_id.to_string(), a.addr.addr())))
            .collect();
        *lock(&self.cluster_reserved) = reserved;
        let nodes: BTreeMap<String, cove_model::NodeRecord> =
            c.store.list(Table::NodeStates)?.into_iter().collect();
        let (bridges, node_ops) = {
            let st = self.state.lock().await;
            self.host_parts(&st, &addrs, &nodes, &me)
        };
        let (plane, want) =
            super::dataplane::service_view(&services, &all_tasks, &addrs, &me, &bridges, node_ops);
        if let Err(e) = self.apply_service_plane(plane).await {
            warn!(error = %e, "could not program the services' load balancing");
        }
        self.dns_services(&want);

        for task in tasks.iter().copied() {
            let container = containers.get(&task.id).cloned();
            let work = match (task.desired, task.state) {
                (TaskState::Running, s) if s < TaskState::Running => {
                    let Some(svc) = services.get(&task.service_id).cloned() else { continue };
                    Work::Run(Box::new(svc))
                }
                (TaskState::Running, TaskState::Running) => {
                    if let Some(t) = exited(task, container.as_ref()) {
                        report(&c, t);
                    }
                    continue;
                }
                (TaskState::Shutdown, s) if !s.is_terminal() => {
                    let since = *mem.draining.entry(task.id.clone()).or_insert_with(Instant::now);
                    if since.elapsed() < self.cfg.task_drain {
                        continue;
                    }
                    Work::Stop
                }
                (TaskState::Shutdown, _) => match container {
                    Some(_) => Work::Remove,
                    None => continue,
                },
                _ => continue,
            };
            // One piece of work per task at a time, off the round: a container that takes
            // its stop timeout to die must not hold up the others.
            if !lock(&mem.busy).insert(task.id.clone()) {
                continue;
            }
            let (ctl, c, task, busy) = (self.clone(), c.clone(), task.clone(), mem.busy.clone());
            tokio::spawn(async move {
                let done = match work {
                    Work::Run(svc) => Some(ctl.run_task(&c, &svc, &task, container.as_ref()).await),
                    Work::Stop => ctl.stop_task(&task, container.as_ref()).await,
                    Work::Remove => {
                        if let Some(v) = &container {
                            ctl.remove_task_container(&v.record.id).await;
                        }
                        None
                    }
                };
                if let Some(t) = done {
                    report(&c, t);
                }
                lock(&busy).remove(&task.id);
                ctl.services_nudge();
            });
        }
        // Containers of tasks that are gone, or not this node's.
        for (task_id, v) in &containers {
            if !tasks.iter().any(|t| &t.id == task_id) && !lock(&mem.busy).contains(task_id) {
                info!(task = %task_id, container = %v.record.name, "removing the container of a task that is gone");
                self.remove_task_container(&v.record.id).await;
            }
        }
        Ok(())
    }

    /// Create and start a task's container (or adopt the one it has); the task as it
    /// should be reported.
    async fn run_task(
        &self,
        c: &ClusterSeam,
        svc: &ServiceRecord,
        task: &TaskRecord,
        container: Option<&ContainerView>,
    ) -> TaskRecord {
        let mut t = task.clone();
        let id = match container {
            Some(v) => v.record.id.to_string(),
            None => match self.container_create(task_container(c, svc, task)).await {
                Ok(id) => id.to_string(),
                Err(e) => {
                    let rejected =
                        e.kind == ErrorKind::NotFound && e.message.contains("No such image");
                    t.state = if rejected { TaskState::Rejected } else { TaskState::Failed };
                    t.message = if rejected { "preparing".into() } else { "starting".into() };
                    t.err = Some(e.message);
                    warn!(task = %t.id, service = %svc.plan.name, error = ?t.err, "task could not be created");
                    return t;
                }
            },
        };
        t.container_id = Some(id.clone());
        if let Err(e) = self.container_start(&id).await {
            t.state = TaskState::Failed;
            t.message = "starting".into();
            t.err = Some(e.message);
            return t;
        }
        match self.container_get(&id).await {
            Ok(v) => {
                t.addresses = v
                    .networks
                    .iter()
                    .filter_map(|(n, ep)| {
                        ep.as_ref().and_then(|e| e.ipv4).map(|a| (n.id.clone(), a.into()))
                    })
                    .collect();
                t.state = TaskState::Running;
                t.message = "started".into();
                t.err = None;
                info!(task = %t.id, service = %svc.plan.name, "task running");
            }
            Err(e) => {
                t.state = TaskState::Failed;
                t.err = Some(e.message);
            }
        }
        t
    }

    /// Stop and remove a task's container; the task as it should be reported.
    async fn stop_task(
        &self,
        task: &TaskRecord,
        container: Option<&ContainerView>,
    ) -> Option<TaskRecord> {
        let mut t = task.clone();
        if let Some(v) = container {
            if let Err(e) = self.container_stop(&v.record.id, Some(STOP_TIMEOUT)).await {
                warn!(task = %t.id, error = %e, "could not stop a task's container");
                return None;
            }
            t.exit_code =
                self.container_get(&v.record.id).await.ok().map(|v| v.record.state.exit_code);
            self.remove_task_container(&v.record.id).await;
            // Its endpoints leave the cluster before the task is reported shut down, so
            // whoever waits for the task (a network removal after `docker stack rm`)
            // finds the network free, not holding endpoints the next sync would withdraw.
            if let Err(e) = self.cluster_round().await {
                warn!(task = %t.id, error = %e, "could not withdraw a task's endpoints at once");
            }
        }
        t.state = TaskState::Shutdown;
        t.message = "shutdown".into();
        Some(t)
    }

    async fn remove_task_container(&self, id: &str) {
        if let Err(e) = self.container_remove(id, true).await {
            if e.kind != ErrorKind::NotFound {
                warn!(container = %id, error = %e, "could not remove a task's container");
            }
        }
    }
}

/// The DNS records of the services, by `(network id, record id)`: each VIP answers the
/// service's name; each task that runs and is meant to answers `tasks.<service>` (and the
/// service's name in dnsrr mode). Derived from the cluster's records, so every host
/// answers the same, and a task meant to stop leaves the names before its container stops.
pub(crate) fn service_records(
    services: &HashMap<String, ServiceRecord>,
    tasks: &[TaskRecord],
) -> BTreeMap<(String, String), cove_dns::EndpointNames> {
    let mut out = BTreeMap::new();
    let addr = |a: std::net::IpAddr| match a {
        std::net::IpAddr::V4(v4) => (Some(v4), None),
        std::net::IpAddr::V6(v6) => (None, Some(v6)),
    };
    for s in services.values() {
        for v in &s.vips {
            let (ipv4, ipv6) = addr(v.addr.addr());
            let id = format!("vip/{}", s.id);
            let names = cove_dns::EndpointNames {
                endpoint_id: id.clone(),
                container_name: s.plan.name.clone(),
                ipv4,
                ipv6,
                ..Default::default()
            };
            out.insert((v.network_id.to_string(), id), names);
        }
    }
    for t in tasks.iter().filter(|t| t.is_serving()) {
        let Some(s) = services.get(&t.service_id) else { continue };
        let mut aliases = vec![format!("tasks.{}", s.plan.name)];
        if s.plan.endpoint_mode == EndpointMode::Dnsrr {
            aliases.push(s.plan.name.clone());
        }
        for (net, a) in &t.addresses {
            let (ipv4, ipv6) = addr(a.addr());
            let id = format!("task/{}", t.id);
            let names = cove_dns::EndpointNames {
                endpoint_id: id.clone(),
                aliases: aliases.clone(),
                ipv4,
                ipv6,
                ..Default::default()
            };
            out.insert((net.to_string(), id), names);
        }
    }
    out
}

/// A running task whose container is gone or exited, as it should be reported.
fn exited(task: &TaskRecord, container: Option<&ContainerView>) -> Option<TaskRecord> {
    let mut t = task.clone();
    match container {
        Some(v) if v.record.state.status == Status::Running => return None,
        Some(v) => {
            let code = v.record.state.exit_code;
            t.exit_code = Some(code);
            if code == 0 {
                t.state = TaskState::Complete;
                t.message = "finished".into();
            } else {
                t.state = TaskState::Failed;
                t.message = "failed".into();
                t.err = Some(format!("task: non-zero exit ({code})"));
            }
        }
        None => {
            t.state = TaskState::Failed;
            t.message = "failed".into();
            t.err = Some("the task's container is gone".into());
        }
    }
    Some(t)
}

/// The container of a task: the service's template, Docker's labels, the service's
/// networks with the names the embedded DNS answers for its tasks.
fn task_container(c: &ClusterSeam, svc: &ServiceRecord, task: &TaskRecord) -> ContainerCreate {
    let tpl = &svc.plan.task;
    let name = &svc.plan.name;
    let mut labels = tpl.labels.clone();
    labels.insert(LABEL_TASK_ID.into(), task.id.clone());
    labels.insert(LABEL_TASK_NAME.into(), task.container_name(name));
    labels.insert(LABEL_SERVICE_ID.into(), svc.id.clone());
    labels.insert(LABEL_SERVICE_NAME.into(), name.clone());
    labels.insert(LABEL_NODE_ID.into(), c.node.id.clone());
    if let Some(ns) = svc.plan.labels.get("com.docker.stack.namespace") {
        labels.insert("com.docker.stack.namespace".into(), ns.clone());
    }
    let endpoints: Vec<(String, EndpointSettings)> = svc
        .plan
        .networks
        .iter()
        .map(|n| {
            let settings = EndpointSettings { aliases: n.aliases.clone(), ..Default::default() };
            (n.network_id.to_string(), settings)
        })
        .collect();
    let network_mode_name =
        endpoints.first().map(|(n, _)| n.clone()).unwrap_or_else(|| "bridge".to_string());
    let port_bindings = svc
        .plan
        .ports
        .iter()
        .filter(|p| p.mode == PublishMode::Host)
        .map(|p| PortBinding {
            container_port: p.target,
            protocol: p.proto,
            host_ip: None,
            host_port: p.published.unwrap_or(0),
        })
        .collect();
    let hostname = tpl
        .hostname
        .replace("{{.Task.Name}}", &task.container_name(name))
        .replace("{{.Task.ID}}", &task.id)
        .replace("{{.Task.Slot}}", &task.slot.to_string())
        .replace("{{.Service.Name}}", name)
        .replace("{{.Service.ID}}", &svc.id)
        .replace("{{.Node.ID}}", &c.node.id)
        .replace("{{.Node.Hostname}}", &c.node.hostname);
    ContainerCreate {
        name: Some(task.container_name(name)),
        config: ContainerConfig {
            image: tpl.image.clone(),
            entrypoint: tpl.command.clone(),
            cmd: tpl.args.clone(),
            env: tpl.env.clone(),
            working_dir: tpl.dir.clone(),
            hostname,
            labels,
            ..Default::default()
        },
        host_config: HostConfig { network_mode_name, port_bindings, ..Default::default() },
        endpoints,
    }
}
