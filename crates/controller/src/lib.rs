//! Orchestration: user intent goes to the store first, then planners and IPAM compute the
//! desired kernel objects and the kernel executor applies them. On start the controller
//! reconciles the kernel and the runtime with what the store says.
#![warn(missing_docs)]

mod cluster;
mod config;
mod containers;
mod create;
mod dns;
mod encryption;
mod etc_files;
mod events;
mod exec;
pub mod failpoints;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
mod firewall;
mod images;
mod links;
mod metrics;
mod networks;
mod real;
mod reconcile;
mod sandbox;
pub mod seams;
mod services;
mod state;
mod tracked;
mod views;

pub use cluster::{ClusterSeam, NodeView, NODE_TTL};
pub use config::{ControllerConfig, NODE_DOWN_GRACE, TASK_DRAIN};
pub use containers::WaitCondition;
pub use cove_runtime::{ImageInfo, LogEntry, Stream};
pub use encryption::{
    EncryptionPeer, EncryptionSeam, EncryptionSettings, EncryptionView, TUNNEL_DEVICE,
};
pub use events::{Event, EventType};
pub use exec::{ExecRequest, ExecView};
pub use real::RealTunnels;
pub use services::leader::SwarmView;
pub use services::orchestrate::HISTORY as TASK_HISTORY;
pub use services::ServiceRequest;
pub use views::{ContainerCreate, ContainerView, IpamConfigRequest, NetworkCreate, NetworkView};

use std::sync::{Arc, OnceLock, Weak};
use tokio::sync::Mutex;

use cove_model::Error;
use cove_store::Records;

pub use seams::Seams;

/// The controller: one per daemon, shared by every API request.
#[derive(Debug)]
pub struct Controller {
    cfg: ControllerConfig,
    /// The network drivers, by name.
    drivers: cove_drivers::Registry,
    /// The IPAM drivers, by name.
    ipam: cove_ipam::IpamRegistry,
    kernel: Arc<dyn seams::Kernel>,
    runtime: Arc<dyn seams::Runtime>,
    firewall: Arc<dyn seams::Firewall>,
    store: Records,
    state: Mutex<state::State>,
    execs: std::sync::Mutex<exec::ExecTable>,
    /// The firewall as last applied (held while an `nft` transaction runs).
    fw: Mutex<firewall::FirewallState>,
    /// The firewall plan: per network and per container, and the changes not yet written.
    fw_plan: std::sync::Mutex<firewall::FirewallPlan>,
    /// Cove turned forwarding on itself.
    fw_forwarding: std::sync::atomic::AtomicBool,
    /// One lock per container (see `Controller::container_lock`).
    container_locks: std::sync::Mutex<std::collections::HashMap<String, Arc<Mutex<()>>>>,
    /// Slots for runc starts running at once.
    runc_pool: tokio::sync::Semaphore,
    /// A weak handle to itself, for background tasks (container monitors).
    me: OnceLock<Weak<Controller>>,
    /// The cluster this host is in, if any.
    cluster: Option<cluster::ClusterSeam>,
    /// This node's liveness lease, kept alive in the background.
    node_lease: std::sync::Mutex<Option<cove_store::KeepAlive>>,
    /// Wakes the cluster loop after a local change the cluster must hear of.
    cluster_nudge: Arc<tokio::sync::Notify>,
    /// Wakes the orchestrator and the task agent after a change of services.
    services_wake: Arc<tokio::sync::Notify>,
    /// Addresses of global networks the cluster holds besides endpoints (services' VIPs,
    /// nodes' addresses): kept used in the local pools, `(network id, address)`.
    cluster_reserved: std::sync::Mutex<std::collections::BTreeSet<(String, std::net::IpAddr)>>,
    /// What this host programs for services (load balancing, VIP addresses).
    service_plane: std::sync::Mutex<services::dataplane::ServicePlane>,
    /// Counts this host's writes to the cluster's networks and endpoints (see
    /// `Controller::cluster_round`).
    cluster_writes: std::sync::atomic::AtomicU64,
    /// This host's endpoints whose address another host holds in the cluster (they are
    /// not published; reported once each).
    cluster_conflicts: std::sync::Mutex<std::collections::BTreeSet<cove_model::EndpointId>>,
    /// Container exits and removals, for `wait` conditions. Sent with the state lock held,
    /// so a waiter that subscribes under the lock cannot miss one.
    exits: tokio::sync::broadcast::Sender<containers::ExitEvent>,
    /// The embedded DNS resolver and the sandboxes it serves.
    dns: dns::Dns,
    /// Docker's event stream (`GET /events`).
    events: events::EventBus,
    /// Prometheus metrics (`cove daemon --metrics-addr`).
    metrics: Arc<cove_metrics::Metrics>,
    /// This node's encrypted tunnel, as far as the controller knows it.
    enc: std::sync::Mutex<encryption::EncState>,
}

/// Shared handle to the controller.
pub type SharedController = Arc<Controller>;

/// A std mutex's guard, poisoned or not: a panic elsewhere must not take the daemon's
/// bookkeeping down with it.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Now, as Docker prints times: RFC 3339 with nanoseconds, UTC.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl Controller {
    /// Open the store, create the built-in networks, reconcile kernel and runtime state:
    /// the daemon's controller, on the real kernel and runtime.
    pub async fn start(cfg: ControllerConfig) -> cove_model::Result<SharedController> {
        Self::start_in_cluster(cfg, None).await
    }

    /// [`Controller::start`], as a host of a cluster when `cluster` is given.
    pub async fn start_in_cluster(
        cfg: ControllerConfig,
        cluster: Option<ClusterSeam>,
    ) -> cove_model::Result<SharedController> {
        std::fs::create_dir_all(&cfg.data_root)
            .map_err(|e| Error::unavailable(format!("create state directories: {e}")))?;
        cove_kernel::Kernel::prepare_netns_dir(&cfg.exec_root.join("netns"))
            .map_err(Error::from)?;
        let store = Records::open(&cfg.data_root.join("cove.redb"))?;
        let runtime = cove_runtime::Runtime::new(&cfg.data_root, &cfg.exec_root)?
            .with_cgroup_parent(&cfg.cgroup_parent)?;
        let kernel = real::RealKernel::new().await.map_err(Error::from)?;
        let seams = Seams {
            kernel: Arc::new(kernel),
            runtime: Arc::new(runtime),
            firewall: Arc::new(real::RealFirewall::default()),
            store,
            cluster,
        };
        Self::start_with(cfg, seams).await
    }

    /// [`Controller::start`] on the given seams (the tests' fakes).
    pub async fn start_with(
        cfg: ControllerConfig,
        seams: Seams,
    ) -> cove_model::Result<SharedController> {
        failpoints::scope("start", Self::start_on(cfg, failpoints::wrap(seams))).await
    }

    async fn start_on(cfg: ControllerConfig, seams: Seams) -> cove_model::Result<SharedController> {
        let store = seams.store;
        let cluster = seams.cluster;
        let state = state::State::load(&store)?;
        let metrics = Arc::new(cove_metrics::Metrics::new(cfg.metrics));
        if cluster.as_ref().is_some_and(|c| !c.is_local()) {
            metrics.set_in_cluster();
        }
        let ctl = Arc::new(Controller {
            cfg,
            drivers: cove_drivers::Registry::builtin(),
            ipam: cove_ipam::IpamRegistry::default(),
            kernel: seams.kernel,
            runtime: seams.runtime,
            firewall: seams.firewall,
            store,
            state: Mutex::new(state),
            execs: std::sync::Mutex::new(exec::ExecTable::default()),
            fw: Mutex::new(firewall::FirewallState::default()),
            fw_plan: std::sync::Mutex::new(firewall::FirewallPlan::default()),
            fw_forwarding: std::sync::atomic::AtomicBool::new(false),
            container_locks: Default::default(),
            runc_pool: tokio::sync::Semaphore::new(containers::RUNC_POOL),
            me: OnceLock::new(),
            cluster,
            node_lease: std::sync::Mutex::new(None),
            cluster_nudge: Arc::new(tokio::sync::Notify::new()),
            services_wake: Arc::new(tokio::sync::Notify::new()),
            service_plane: Default::default(),
            cluster_reserved: Default::default(),
            cluster_writes: std::sync::atomic::AtomicU64::new(0),
            cluster_conflicts: std::sync::Mutex::default(),
            exits: tokio::sync::broadcast::channel(1024).0,
            dns: dns::Dns::new(metrics.dns().clone()),
            events: events::EventBus::default(),
            metrics,
            enc: std::sync::Mutex::default(),
        });
        let _ = ctl.me.set(Arc::downgrade(&ctl));
        // Before anything of the cluster: a copied data root must not join as its origin.
        match ctl.check_node_id_unused().await {
            Err(e) if e.kind == cove_model::ErrorKind::Conflict => return Err(e),
            Err(e) => tracing::warn!(error = %e, "could not check this node's id in the cluster"),
            Ok(()) => {}
        }
        {
            let mut st = ctl.state.lock().await;
            // Forwarding first: whether Cove turned it on is part of the firewall model.
            ctl.enable_forwarding().await?;
            // The tunnel before registering: the node's record carries its key.
            ctl.encryption_start().await;
            // The cluster first, best effort: without it, the mirrored global networks and
            // peers keep the data plane as it was.
            if let Err(e) = ctl.cluster_register().and_then(|()| ctl.cluster_sync(&mut st)) {
                tracing::warn!(error = %e, "could not sync with the cluster at start");
            }
            ctl.restore_service_plane(&st);
            ctl.reconcile(&mut st).await?;
            ctl.ensure_builtins(&mut st).await?;
            ctl.sync_firewall(&st).await?;
            // Adopted containers answer names again without being recreated.
            ctl.dns_restore(&st).await;
        }
        ctl.spawn_firewall_watch()?;
        ctl.spawn_reconcile_loop()?;
        ctl.spawn_cluster_loop();
        ctl.spawn_services_loop();
        ctl.spawn_key_rotation();
        Ok(ctl)
    }

    /// Finish what the daemon left to background work before it exits: links it
    /// condemned (a removed network's bridge, a detached container's veth) are deleted now,
    /// so that a daemon stopped right after a removal leaves nothing of what it removed.
    pub async fn shutdown(&self) {
        if let Err(e) = self.kernel.reap_condemned().await {
            tracing::warn!(error = %Error::from(e), "could not delete condemned links at shutdown");
        }
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &ControllerConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests;
