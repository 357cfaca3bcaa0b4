//! Container lifecycle: create, start, stop, kill, restart, remove, wait, list, logs.

use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use cove_model::{ContainerId, ContainerRecord, Error, NetworkMode, PortSpec, Result, Status};
use cove_runtime::{LogEntry, RunState};
use cove_store::{Batch, Table};

use crate::create::bundle_spec;
use crate::state::State;
use crate::{etc_files, ContainerView, Controller};

/// How many runc starts run at once: each is tens of ms, partly waiting on the kernel, so a
/// few overlap well on two cores; more would only queue inside the kernel.
pub(crate) const RUNC_POOL: usize = 4;

/// Docker's `wait` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    /// Return at once if not running, else at the next exit.
    NotRunning,
    /// Return at the next exit, even if not running now.
    NextExit,
    /// Return when the container is removed.
    Removed,
}

/// A container exited (and maybe was removed), or was removed.
#[derive(Debug, Clone)]
pub(crate) struct ExitEvent {
    id: ContainerId,
    code: i32,
    removed: bool,
}

impl Controller {
    /// Persist one container record.
    pub(crate) fn save_container(&self, st: &mut State, c: ContainerRecord) -> Result<()> {
        let mut b = Batch::new();
        b.put(Table::Containers, &c.id, &c);
        self.store.commit(b)?;
        st.containers.insert(c.id.clone(), c);
        Ok(())
    }

    /// Start; `Ok(false)` when it was already running (HTTP 304).
    ///
    /// The network is set up under the state lock (a few ms); runc's start (tens of ms)
    /// runs outside it, in a bounded pool, so starts of different containers overlap. The
    /// container's own lock is held throughout: a stop, rm or network change of the same
    /// container waits for the start to finish. Meanwhile its record is provisionally
    /// running in memory (the firewall and the resolver know it; the store does not).
    #[tracing::instrument(name = "container.start", skip(self))]
    pub async fn container_start(&self, reference: &str) -> Result<bool> {
        let id = self.state.lock().await.container_id(reference)?;
        let _own = self.container_lock(&id).lock_owned().await;
        self.cluster_reachable_for(&id)
            .await
            .map_err(|e| e.context(format!("start container {reference}")))?;
        let Some((c, started, bundle_net)) = self.prepare_start(&id, reference).await? else {
            return Ok(false);
        };
        let result = self.run_container(&c.id, bundle_net).await;
        let mut st = self.state.lock().await;
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => {
                self.abort_start(&mut st, &c).await;
                let _ = self.runtime.cleanup(&c.id);
                let mut failed = c.clone();
                failed.state.error = e.message.clone();
                failed.state.exit_code = 127;
                let _ = self.save_container(&mut st, failed);
                return Err(e.context(format!("start container {}", c.name)));
            }
        };
        let mut started = started;
        started.state.status = Status::Running;
        started.state.pid = pid;
        started.state.exit_code = 0;
        started.state.error.clear();
        started.state.started_at = crate::now();
        let run = started.state.started_at.clone();
        if let Err(e) = self.save_container(&mut st, started) {
            // Never acknowledge a start the store does not know: stop the process again.
            let _ = self.runtime.kill(&c.id, libc::SIGKILL);
            return Err(e.context(format!("start container {}", c.name)));
        }
        self.sandbox_events(&st, &c, "connect");
        self.container_event(&c, "start", &[]);
        self.refresh_linkers(&st, &c.id).await;
        drop(st);
        self.spawn_monitor(c.id.clone(), run);
        info!(container = %c.name, pid, "container started");
        Ok(true)
    }

    /// Everything of a start but the process, under the state lock: the sandbox and its
    /// endpoints, the host ports, the firewall, the resolver, the generated files. Returns
    /// the record as it was, as it will be once running, and the sandbox to run in; `None`
    /// when it already runs. On failure nothing is left.
    async fn prepare_start(
        &self,
        id: &str,
        reference: &str,
    ) -> Result<Option<(ContainerRecord, ContainerRecord, Option<std::path::PathBuf>)>> {
        let mut st = self.state.lock().await;
        let c = st
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found(format!("No such container: {reference}")))?;
        if c.state.status == Status::Running {
            return Ok(None);
        }
        // Links are checked before anything is set up, so a refused start leaves nothing.
        Self::link_targets(&st, &c)
            .map_err(|e| e.context(format!("start container {}", c.name)))?;
        let netns = self.setup_sandbox(&mut st, &c).await?;
        let ports = match self.reserve_ports(&st, &c) {
            Ok(p) => p,
            Err(e) => {
                self.release_sandbox(&mut st, &c).await;
                return Err(e.context(format!("start container {}", c.name)));
            }
        };
        let mut started = c.clone();
        started.state.ports = ports;
        started.state.sandbox_key =
            netns.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        // The firewall learns the endpoints (anti-spoofing) and ports before the process
        // runs: the record is provisionally running in memory until the start is settled.
        let mut provisional = started.clone();
        provisional.state.status = Status::Running;
        st.containers.insert(c.id.clone(), provisional);
        if let Err(e) = self.sync_firewall(&st).await {
            self.abort_start(&mut st, &c).await;
            return Err(e.context(format!("start container {}", c.name)));
        }
        // The resolver answers before the process runs.
        let files = match self.dns_sync(&st, &started).await {
            Ok(()) => self.write_run_files(&st, &c, &started),
            Err(e) => Err(e),
        };
        if let Err(e) = files {
            self.abort_start(&mut st, &c).await;
            return Err(e.context(format!("start container {}", c.name)));
        }
        let bundle_net = match &c.host_config.network_mode {
            NetworkMode::Host => None,
            _ => netns,
        };
        Ok(Some((c, started, bundle_net)))
    }

    /// The files of this run: hosts, resolv.conf and hostname, or the whole bundle when
    /// links put the linked containers' current addresses into the environment.
    fn write_run_files(
        &self,
        st: &State,
        c: &ContainerRecord,
        started: &ContainerRecord,
    ) -> Result<()> {
        let hosts = Self::hosts_for(st, started)?;
        let resolv = Self::resolv_for(st, started);
        if c.host_config.links.is_empty() {
            self.runtime.write_etc_file(&c.id, "hosts", &hosts)?;
            self.runtime.write_etc_file(&c.id, "resolv.conf", &resolv)?;
            self.runtime.write_etc_file(
                &c.id,
                "hostname",
                &etc_files::hostname_file(&c.config.hostname),
            )
        } else {
            let mut with_env = c.clone();
            with_env.config.env = Self::env_with_links(st, started);
            self.runtime.create_bundle(&bundle_spec(&with_env, &hosts, &resolv))
        }
    }

    /// Undo a start that will not happen: the record as it was, the sandbox released, the
    /// firewall without it.
    async fn abort_start(&self, st: &mut State, c: &ContainerRecord) {
        st.containers.insert(c.id.clone(), c.clone());
        self.release_sandbox(st, c).await;
        if let Err(e) = self.sync_firewall(st).await {
            warn!(container = %c.name, error = %e, "rollback: could not update the firewall");
        }
    }

    /// runc's start, outside every lock, at most [`RUNC_POOL`] at once.
    async fn run_container(&self, id: &str, netns: Option<std::path::PathBuf>) -> Result<u32> {
        let _slot = self
            .runc_pool
            .acquire()
            .await
            .map_err(|_| Error::unavailable("the daemon is shutting down"))?;
        let (rt, id) = (self.runtime.clone(), id.to_string());
        let op = crate::failpoints::current();
        tokio::task::spawn_blocking(move || {
            crate::failpoints::OpHandle::enter(op, || rt.start(&id, netns.as_deref()))
        })
        .await
        .map_err(|e| Error::internal(format!("runtime start task failed: {e}")))?
    }

    /// The lock of one container: held by whatever changes its run or its networks, taken
    /// before the state lock (never after it).
    pub(crate) fn container_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.container_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(id.to_string()).or_default().clone()
    }

    /// The ports a container publishes: `-p` bindings and, with `-P`, every exposed port
    /// not bound explicitly (on an ephemeral host port).
    pub(crate) fn port_bindings(c: &ContainerRecord) -> Vec<cove_model::PortBinding> {
        let mut all = c.host_config.port_bindings.clone();
        if c.host_config.publish_all_ports {
            for key in &c.config.exposed_ports {
                let Ok(PortSpec { port, proto }) = key.parse() else { continue };
                if !all.iter().any(|b| b.container_port == port && b.protocol == proto) {
                    all.push(cove_model::PortBinding {
                        container_port: port,
                        protocol: proto,
                        host_ip: None,
                        host_port: 0,
                    });
                }
            }
        }
        all
    }

    /// Reserve the host ports of a container about to start.
    fn reserve_ports(
        &self,
        st: &State,
        c: &ContainerRecord,
    ) -> Result<Vec<cove_model::PortBinding>> {
        let bindings = Self::port_bindings(c);
        if bindings.is_empty() {
            return Ok(vec![]);
        }
        if c.host_config.network_mode != NetworkMode::Sandbox {
            return Ok(vec![]);
        }
        let has_v6 = Self::own_addresses(st, &c.id).iter().any(|a| a.is_ipv6());
        // A network's `host_binding_ipv4` is the default host address of its ports (the
        // network of the gateway endpoint, which published ports lead to).
        let default_ip = c
            .networks
            .iter()
            .filter_map(|(id, _)| st.networks.get(id))
            .find(|n| !n.internal)
            .and_then(|n| self.drivers.of(n).ok()?.default_binding_ip(n));
        let bindings: Vec<_> = bindings
            .into_iter()
            .map(|b| cove_model::PortBinding { host_ip: b.host_ip.or(default_ip), ..b })
            .collect();
        self.kernel.reserve_ports(&c.id, &bindings, has_v6)
    }

    /// Watch a run of a container and clean up after it when it exits.
    pub(crate) fn spawn_monitor(&self, id: ContainerId, run: String) {
        let Some(ctl) = self.me.get().and_then(|w| w.upgrade()) else { return };
        tokio::spawn(async move {
            let code = ctl.runtime.wait(&id).await;
            ctl.on_exit(&id, &run, code).await;
        });
    }

    /// A run ended: free its sandbox, record the exit, honour `--rm`.
    async fn on_exit(self: &Arc<Self>, id: &str, run: &str, code: i32) {
        let mut st = self.state.lock().await;
        let Some(c) = st.containers.get(id).cloned() else { return };
        if c.state.status != Status::Running || c.state.started_at != run {
            return;
        }
        self.release_sandbox(&mut st, &c).await;
        if let Err(e) = self.runtime.cleanup(id) {
            warn!(container = %c.name, error = %e, "runtime cleanup failed");
        }
        let mut ended = c.clone();
        ended.state.status = Status::Exited;
        ended.state.pid = 0;
        ended.state.exit_code = code;
        ended.state.finished_at = crate::now();
        ended.state.sandbox_key.clear();
        ended.state.ports.clear();
        info!(container = %c.name, code, "container exited");
        self.sandbox_events(&st, &c, "disconnect");
        self.container_event(&c, "die", &[("exitCode", &code.to_string())]);
        st.containers.insert(c.id.clone(), ended.clone());
        self.sync_firewall_later(&st);
        if c.host_config.auto_remove {
            self.delete_container(&mut st, &ended);
        } else {
            if let Err(e) = self.save_container(&mut st, ended) {
                warn!(container = %c.name, error = %e, "could not record exit");
            }
            let _ = self.exits.send(ExitEvent { id: c.id.clone(), code, removed: false });
        }
    }

    fn delete_container(&self, st: &mut State, c: &ContainerRecord) {
        let mut b = Batch::new();
        b.delete(Table::Containers, &c.id);
        if let Err(e) = self.store.commit(b) {
            warn!(container = %c.name, error = %e, "could not delete container record");
            return;
        }
        if let Err(e) = self.runtime.remove(&c.id) {
            warn!(container = %c.name, error = %e, "could not remove container files");
        }
        st.containers.remove(c.id.as_str());
        self.container_locks.lock().unwrap_or_else(|p| p.into_inner()).remove(c.id.as_str());
        self.container_event(c, "destroy", &[]);
        let _ =
            self.exits.send(ExitEvent { id: c.id.clone(), code: c.state.exit_code, removed: true });
        info!(container = %c.name, "container removed");
    }

    async fn status_of(&self, id: &str) -> Option<(Status, i32)> {
        let st = self.state.lock().await;
        st.containers.get(id).map(|c| (c.state.status, c.state.exit_code))
    }

    /// Wait until the container is no longer running, up to `limit`.
    async fn wait_not_running(&self, id: &str, limit: Option<Duration>) -> bool {
        let start = std::time::Instant::now();
        loop {
            match self.status_of(id).await {
                Some((Status::Running, _)) => {}
                _ => return true,
            }
            if limit.is_some_and(|l| start.elapsed() >= l) {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stop (SIGTERM, then SIGKILL after `timeout` seconds, default 10); `Ok(false)` when
    /// it was not running (HTTP 304).
    #[tracing::instrument(name = "container.stop", skip(self))]
    pub async fn container_stop(&self, reference: &str, timeout: Option<i64>) -> Result<bool> {
        let id = self.state.lock().await.container_id(reference)?;
        let _own = self.container_lock(&id).lock_owned().await;
        let id = {
            let st = self.state.lock().await;
            let c = st.container(reference)?;
            if c.state.status != Status::Running {
                return Ok(false);
            }
            c.id.clone()
        };
        let grace = Duration::from_secs(timeout.unwrap_or(10).clamp(0, 3600) as u64);
        if let Err(e) = self.runtime.kill(&id, libc::SIGTERM) {
            warn!(error = %e, "SIGTERM failed");
        }
        self.container_event_by_id(&id, "kill", &[("signal", "15")]).await;
        if !self.wait_not_running(&id, Some(grace)).await {
            let _ = self.runtime.kill(&id, libc::SIGKILL);
            self.container_event_by_id(&id, "kill", &[("signal", "9")]).await;
            if !self.wait_not_running(&id, Some(Duration::from_secs(30))).await {
                return Err(Error::internal(format!(
                    "container {reference} did not stop after SIGKILL"
                )));
            }
        }
        self.container_event_by_id(&id, "stop", &[]).await;
        Ok(true)
    }

    /// Stop (if running) then start.
    pub async fn container_restart(&self, reference: &str, timeout: Option<i64>) -> Result<()> {
        self.container_stop(reference, timeout).await?;
        self.container_start(reference).await?;
        self.container_event_by_id(reference, "restart", &[]).await;
        Ok(())
    }

    /// Send a signal to a running container.
    pub async fn container_kill(&self, reference: &str, signal: i32) -> Result<()> {
        let st = self.state.lock().await;
        let c = st.container(reference)?;
        if c.state.status != Status::Running {
            return Err(Error::conflict(format!(
                "Cannot kill container: {reference}: container {} is not running",
                c.id
            )));
        }
        self.runtime.kill(&c.id, signal)?;
        self.container_event(c, "kill", &[("signal", &signal.to_string())]);
        Ok(())
    }

    /// Remove; a running container needs `force`.
    #[tracing::instrument(name = "container.remove", skip(self))]
    pub async fn container_remove(&self, reference: &str, force: bool) -> Result<()> {
        let id = self.state.lock().await.container_id(reference)?;
        let own = self.container_lock(&id);
        let _own = own.lock().await;
        let id = {
            let st = self.state.lock().await;
            let c = st.container(reference)?;
            if c.state.status == Status::Running && !force {
                return Err(Error::conflict(format!(
                    "cannot remove container \"/{}\": container is running: stop the container before removing or force remove",
                    c.name
                )));
            }
            if let Some(user) = st.containers.values().find(|o| {
                o.state.status == Status::Running
                    && o.host_config.network_mode == NetworkMode::Container(c.id.to_string())
            }) {
                return Err(Error::conflict(format!(
                    "cannot remove container \"/{}\": container {} shares its network namespace",
                    c.name, user.name
                )));
            }
            c.id.clone()
        };
        if force && self.runtime.kill(&id, libc::SIGKILL).is_ok() {
            self.container_event_by_id(&id, "kill", &[("signal", "9")]).await;
            self.wait_not_running(&id, Some(Duration::from_secs(30))).await;
        }
        let mut st = self.state.lock().await;
        let Some(c) = st.containers.get(&id).cloned() else { return Ok(()) };
        if c.state.status == Status::Running {
            return Err(Error::internal(format!("container {} did not stop", c.name)));
        }
        let _ = self.runtime.cleanup(&id);
        self.release_sandbox(&mut st, &c).await;
        self.delete_container(&mut st, &c);
        Ok(())
    }

    /// Wait until the container is not running; its exit code.
    pub async fn container_wait(&self, reference: &str) -> Result<i32> {
        self.container_wait_until(reference, WaitCondition::NotRunning).await
    }

    /// Wait for `condition`; the exit code of the run that ended.
    pub async fn container_wait_until(
        &self,
        reference: &str,
        condition: WaitCondition,
    ) -> Result<i32> {
        let (id, mut events) = {
            let st = self.state.lock().await;
            let c = st.container(reference)?;
            if condition == WaitCondition::NotRunning && c.state.status != Status::Running {
                return Ok(c.state.exit_code);
            }
            (c.id.clone(), self.exits.subscribe())
        };
        loop {
            match events.recv().await {
                Ok(ev) if ev.id == id && (ev.removed || condition != WaitCondition::Removed) => {
                    return Ok(ev.code)
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Missed events: fall back to the record.
                    let st = self.state.lock().await;
                    match st.containers.get(&id) {
                        None if condition == WaitCondition::Removed => return Ok(0),
                        None => {
                            return Err(Error::not_found(format!("No such container: {reference}")))
                        }
                        Some(c)
                            if c.state.status != Status::Running
                                && condition == WaitCondition::NotRunning =>
                        {
                            return Ok(c.state.exit_code)
                        }
                        Some(_) => events = self.exits.subscribe(),
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Err(Error::unavailable("daemon is shutting down"))
                }
            }
        }
    }

    fn container_view(st: &State, c: &ContainerRecord) -> ContainerView {
        let eps = st.endpoints_of_container(&c.id);
        let networks = c
            .networks
            .iter()
            .filter_map(|(nid, _)| st.networks.get(nid))
            .map(|n| (n.clone(), eps.iter().find(|e| e.network_id == n.id).map(|e| (*e).clone())))
            .collect();
        ContainerView { record: c.clone(), networks }
    }

    /// Every container.
    pub async fn container_list(&self) -> Vec<ContainerView> {
        let st = self.state.lock().await;
        let mut v: Vec<ContainerView> =
            st.containers.values().map(|c| Self::container_view(&st, c)).collect();
        v.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        v
    }

    /// One container by name, id or unique id prefix.
    pub async fn container_get(&self, reference: &str) -> Result<ContainerView> {
        let st = self.state.lock().await;
        let c = st.container(reference)?;
        Ok(Self::container_view(&st, c))
    }

    /// Log entries, followed until exit when `follow`.
    pub async fn container_logs(
        &self,
        reference: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<tokio::sync::mpsc::Receiver<LogEntry>> {
        let id = self.state.lock().await.container_id(reference)?;
        self.runtime.logs(&id, follow, tail)
    }

    /// Output of the container's next run (or of the current one, from now on), until that
    /// run exits. Subscribes before returning, so a client that attaches and then starts a
    /// container that exits at once (and is removed, with `--rm`) still gets all of it.
    pub async fn container_attach(
        &self,
        reference: &str,
    ) -> Result<tokio::sync::mpsc::Receiver<LogEntry>> {
        let (id, mut events, mut follower) = {
            let st = self.state.lock().await;
            let id = st.container_id(reference)?;
            (id.clone(), self.exits.subscribe(), self.runtime.log_follower(&id)?)
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                let done = tokio::select! {
                    ev = events.recv() => match ev {
                        Ok(ev) => ev.id == id,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => false,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => true,
                    },
                    _ = tick.tick() => false,
                };
                // The shim writes all output before the exit is recorded: one more read
                // after the exit event drains it.
                for e in follower.read_new() {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
                if done || tx.is_closed() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// A connect records the endpoint, programs the kernel, then adds the network to the
    /// container's record: an endpoint of a running container whose record does not list
    /// its network is a connect the daemon died in. It did not answer, so it is undone:
    /// what it programmed goes, and its record and addresses with it.
    async fn roll_back_interrupted_connects(&self, st: &mut State, c: &ContainerRecord) {
        let listed =
            |ep: &&cove_model::EndpointRecord| c.networks.iter().any(|(n, _)| *n == ep.network_id);
        let interrupted: Vec<cove_model::EndpointRecord> = st
            .endpoints_of_container(&c.id)
            .into_iter()
            .filter(|ep| !listed(ep))
            .cloned()
            .collect();
        let path = std::path::PathBuf::from(&c.state.sandbox_key);
        for ep in interrupted {
            warn!(container = %c.name, network = %ep.network_id.short(), "undoing a connect the daemon died in");
            let ops = st
                .networks
                .get(&ep.network_id)
                .and_then(|n| self.drivers.of(n).and_then(|d| d.leave_ops(n, &ep, &path)).ok())
                .unwrap_or_default();
            for e in self.kernel.teardown(&ops).await {
                warn!(container = %c.name, error = %e, "could not remove an interrupted connect's interface");
            }
            let mut b = cove_store::Batch::new();
            crate::state::delete_endpoint(&mut b, &ep);
            self.cluster_nudge.notify_one();
            if let Err(e) = self.store.commit(b) {
                warn!(container = %c.name, error = %e, "could not delete an interrupted connect's endpoint");
                continue;
            }
            crate::sandbox::release_ipam(&self.ipam, st, &ep);
            st.endpoints.remove(&ep.id);
        }
    }

    /// Reconcile one stored container with the runtime after a daemon restart.
    pub(crate) async fn recover_container(&self, st: &mut State, c: &ContainerRecord) {
        match (c.state.status, self.runtime.state(&c.id)) {
            (Status::Running, RunState::Running { pid }) => {
                self.roll_back_interrupted_connects(st, c).await;
                let mut c2 = c.clone();
                c2.state.pid = pid;
                // Hold the same host ports again (they were freed with the old daemon).
                let held = self.kernel.reserve_ports(
                    &c.id,
                    &c.state.ports,
                    Self::own_addresses(st, &c.id).iter().any(|a| a.is_ipv6()),
                );
                if let Err(e) = held {
                    warn!(container = %c.name, error = %e, "could not reserve its published ports again");
                }
                let run = c2.state.started_at.clone();
                let _ = self.save_container(st, c2);
                self.spawn_monitor(c.id.clone(), run);
            }
            (Status::Running, other) => {
                let (code, finished) = match other {
                    RunState::Exited { code, finished_at } => (code, finished_at),
                    _ => (255, crate::now()),
                };
                self.release_sandbox(st, c).await;
                let _ = self.runtime.cleanup(&c.id);
                let mut ended = c.clone();
                ended.state.status = Status::Exited;
                ended.state.exit_code = code;
                ended.state.pid = 0;
                ended.state.finished_at = finished;
                ended.state.sandbox_key.clear();
                ended.state.ports.clear();
                if c.host_config.auto_remove {
                    self.delete_container(st, c);
                } else {
                    let _ = self.save_container(st, ended);
                }
            }
            _ => {
                // Not running: anything left from an interrupted start goes.
                if !st.endpoints_of_container(&c.id).is_empty() {
                    self.release_sandbox(st, c).await;
                }
            }
        }
    }
}
