//! Container lifecycle: create, start, stop, kill, restart, remove, wait, list, logs.

use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

use cove_model::{
    ContainerRecord, ContainerState, EndpointSettings, Error, NetworkMode, Result, Status,
};
use cove_runtime::{BundleNetwork, BundleSpec, LogEntry, RunState};
use cove_store::{Batch, Table};

use crate::networks::{check_endpoint_settings, DEFAULT_BRIDGE};
use crate::state::State;
use crate::{etc_files, ContainerCreate, ContainerView, Controller};

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fervent", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "quiet", "sharp", "tender", "vivid", "witty",
];
const NAMES: &[&str] = &[
    "babbage", "cerf", "curie", "dijkstra", "hopper", "kahn", "lamport", "lovelace", "metcalfe",
    "perlman", "postel", "ritchie", "shannon", "thompson", "torvalds", "turing",
];

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
    id: String,
    code: i32,
    removed: bool,
}

/// A Docker-style `adjective_name`, unique among existing containers.
fn generate_name(st: &State) -> String {
    loop {
        let a = ADJECTIVES[rand_index(ADJECTIVES.len())];
        let n = NAMES[rand_index(NAMES.len())];
        let name = format!("{a}_{n}");
        let name = if st.containers.values().any(|c| c.name == name) {
            format!("{name}{}", rand_index(100))
        } else {
            name
        };
        if !st.containers.values().any(|c| c.name == name) {
            return name;
        }
    }
}

fn rand_index(n: usize) -> usize {
    let id = cove_model::new_id();
    usize::from_str_radix(&id[..8], 16).unwrap_or(0) % n
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

    /// Create a container; returns its id.
    pub async fn container_create(&self, req: ContainerCreate) -> Result<String> {
        let image = self.runtime.find_image(&req.config.image)?;
        let mut st = self.state.lock().await;
        let name = match &req.name {
            Some(n) if !n.is_empty() => {
                let n = n.strip_prefix('/').unwrap_or(n).to_string();
                cove_model::validate_name("container", &n)?;
                if let Some(other) = st.containers.values().find(|c| c.name == n) {
                    return Err(Error::conflict(format!(
                        "Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                        other.id
                    )));
                }
                n
            }
            _ => generate_name(&st),
        };
        let id = cove_model::new_id();
        let mut host_config = req.host_config.clone();
        let mut config = req.config.clone();
        config.image_id = image.id.clone();
        if config.entrypoint.is_empty() && config.cmd.is_empty() {
            config.entrypoint = image.entrypoint.clone();
            config.cmd = image.cmd.clone();
        } else if config.entrypoint.is_empty() && !req.config.cmd.is_empty() {
            config.entrypoint = image.entrypoint.clone();
        }
        if config.entrypoint.is_empty() && config.cmd.is_empty() {
            return Err(Error::invalid("no command specified"));
        }
        let mut env = image.env.clone();
        env.extend(config.env.iter().cloned());
        config.env = env;
        if config.working_dir.is_empty() {
            config.working_dir = image.working_dir.clone();
        }
        for p in &image.exposed_ports {
            if !config.exposed_ports.contains(p) {
                config.exposed_ports.push(p.clone());
            }
        }

        // Resolve the network mode and the endpoints asked for.
        let mode_name = match host_config.network_mode_name.as_str() {
            "" | "default" => DEFAULT_BRIDGE.to_string(),
            other => other.to_string(),
        };
        host_config.network_mode_name = mode_name.clone();
        let mut networks: Vec<(String, EndpointSettings)> = vec![];
        let mut extra = req.endpoints.clone();
        let take_settings = |extra: &mut Vec<(String, EndpointSettings)>, keys: &[&str]| {
            extra
                .iter()
                .position(|(k, _)| keys.contains(&k.as_str()))
                .map(|i| extra.remove(i).1)
                .unwrap_or_default()
        };
        let conflicting = |what: &str| {
            Error::invalid(format!("conflicting options: {what} and the network mode"))
        };
        if let Some(target) = mode_name.strip_prefix("container:") {
            let t = st.container(target)?.clone();
            if t.id == id {
                return Err(Error::invalid("cannot join own network namespace"));
            }
            // Clients key the endpoint settings by the mode itself; empty ones mean nothing.
            let s = take_settings(&mut extra, &[mode_name.as_str()]);
            if s != EndpointSettings::default() {
                return Err(conflicting("ip, mac-address or alias"));
            }
            if !extra.is_empty() {
                return Err(conflicting("network endpoints"));
            }
            if !config.hostname.is_empty() {
                return Err(conflicting("hostname"));
            }
            if !host_config.dns.is_empty() || !host_config.extra_hosts.is_empty() {
                return Err(conflicting("dns or add-host"));
            }
            config.hostname = t.config.hostname.clone();
            host_config.network_mode = NetworkMode::Container(t.id.clone());
        } else if mode_name == "host" || mode_name == "none" {
            let net = st.network(&mode_name)?.clone();
            let s = take_settings(&mut extra, &[mode_name.as_str(), net.id.as_str()]);
            if s.mac_address.is_some() {
                return Err(conflicting("mac-address"));
            }
            if s.ipv4_address.is_some() || s.ipv6_address.is_some() || !s.aliases.is_empty() {
                return Err(conflicting("ip or alias"));
            }
            if !extra.is_empty() {
                return Err(Error::invalid(format!(
                    "container cannot be connected to other networks with network mode {mode_name}"
                )));
            }
            host_config.network_mode =
                if mode_name == "host" { NetworkMode::Host } else { NetworkMode::None };
            networks.push((net.id.clone(), EndpointSettings::default()));
            if mode_name == "host" && config.hostname.is_empty() {
                config.hostname = nix::unistd::gethostname()
                    .ok()
                    .and_then(|h| h.into_string().ok())
                    .unwrap_or_else(|| "localhost".into());
            }
        } else {
            let net = st.network(&mode_name)?.clone();
            if net.driver != cove_model::DriverKind::Bridge {
                return Err(Error::invalid(format!("network {mode_name} cannot be used here")));
            }
            let s = take_settings(
                &mut extra,
                &[mode_name.as_str(), net.id.as_str(), net.name.as_str()],
            );
            check_endpoint_settings(&net, &s)?;
            networks.push((net.id.clone(), s));
            host_config.network_mode = NetworkMode::Sandbox;
            for (r, s) in extra {
                let n = st.network(&r)?.clone();
                if n.driver != cove_model::DriverKind::Bridge {
                    return Err(Error::invalid(format!(
                        "container cannot be connected to network {} together with others",
                        n.name
                    )));
                }
                if networks.iter().any(|(id, _)| *id == n.id) {
                    return Err(Error::invalid(format!("network {} given twice", n.name)));
                }
                check_endpoint_settings(&n, &s)?;
                networks.push((n.id.clone(), s));
            }
        }
        if config.hostname.is_empty() {
            config.hostname = cove_model::short_id(&id).to_string();
        }
        etc_files::parse_extra_hosts(&host_config.extra_hosts, Self::host_gateway(&st))?;
        if !host_config.links.is_empty() {
            return Err(Error::not_implemented("--link is not supported yet"));
        }
        // Refused rather than recorded: a port that looks published but is not reachable
        // would be worse than a clear error.
        if !host_config.port_bindings.is_empty()
            || (host_config.publish_all_ports && !config.exposed_ports.is_empty())
        {
            return Err(Error::not_implemented(
                "publishing ports (-p/-P) is not supported yet: it comes with Cove's firewall",
            ));
        }

        let record = ContainerRecord {
            id: id.clone(),
            name: name.clone(),
            created: crate::now(),
            config,
            host_config,
            networks,
            state: ContainerState::default(),
        };
        self.runtime.create_bundle(&bundle_spec(
            &record,
            &Self::hosts_for(&st, &record)?,
            &Self::resolv_for(&st, &record),
        ))?;
        if let Err(e) = self.save_container(&mut st, record) {
            let _ = self.runtime.remove(&id);
            return Err(e);
        }
        info!(container = %name, id = %cove_model::short_id(&id), "container created");
        Ok(id)
    }

    /// Start; `Ok(false)` when it was already running (HTTP 304).
    pub async fn container_start(&self, reference: &str) -> Result<bool> {
        let mut st = self.state.lock().await;
        let c = st.container(reference)?.clone();
        if c.state.status == Status::Running {
            return Ok(false);
        }
        let netns = self.setup_sandbox(&mut st, &c).await?;
        let mut started = c.clone();
        started.state.sandbox_key =
            netns.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let result = (|| {
            self.runtime.write_etc_file(&c.id, "hosts", &Self::hosts_for(&st, &started)?)?;
            self.runtime.write_etc_file(&c.id, "resolv.conf", &Self::resolv_for(&st, &started))?;
            self.runtime.write_etc_file(
                &c.id,
                "hostname",
                &etc_files::hostname_file(&c.config.hostname),
            )?;
            let bundle_net = match &c.host_config.network_mode {
                NetworkMode::Host => None,
                _ => netns.as_deref(),
            };
            self.runtime.start(&c.id, bundle_net)
        })();
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => {
                self.release_sandbox(&mut st, &c).await;
                let _ = self.runtime.cleanup(&c.id);
                let mut failed = c.clone();
                failed.state.error = e.message.clone();
                failed.state.exit_code = 127;
                let _ = self.save_container(&mut st, failed);
                return Err(e.context(format!("start container {}", c.name)));
            }
        };
        started.state.status = Status::Running;
        started.state.pid = pid;
        started.state.exit_code = 0;
        started.state.error.clear();
        started.state.started_at = crate::now();
        let run = started.state.started_at.clone();
        self.save_container(&mut st, started)?;
        drop(st);
        self.spawn_monitor(c.id.clone(), run);
        info!(container = %c.name, pid, "container started");
        Ok(true)
    }

    /// Watch a run of a container and clean up after it when it exits.
    pub(crate) fn spawn_monitor(&self, id: String, run: String) {
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
        info!(container = %c.name, code, "container exited");
        if c.host_config.auto_remove {
            self.delete_container(&mut st, &ended);
        } else {
            if let Err(e) = self.save_container(&mut st, ended) {
                warn!(container = %c.name, error = %e, "could not record exit");
            }
            let _ = self.exits.send(ExitEvent { id: id.to_string(), code, removed: false });
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
        st.containers.remove(&c.id);
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
    pub async fn container_stop(&self, reference: &str, timeout: Option<i64>) -> Result<bool> {
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
        if !self.wait_not_running(&id, Some(grace)).await {
            let _ = self.runtime.kill(&id, libc::SIGKILL);
            if !self.wait_not_running(&id, Some(Duration::from_secs(30))).await {
                return Err(Error::internal(format!(
                    "container {reference} did not stop after SIGKILL"
                )));
            }
        }
        Ok(true)
    }

    /// Stop (if running) then start.
    pub async fn container_restart(&self, reference: &str, timeout: Option<i64>) -> Result<()> {
        self.container_stop(reference, timeout).await?;
        self.container_start(reference).await.map(|_| ())
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
        self.runtime.kill(&c.id, signal)
    }

    /// Remove; a running container needs `force`.
    pub async fn container_remove(&self, reference: &str, force: bool) -> Result<()> {
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
                    && o.host_config.network_mode == NetworkMode::Container(c.id.clone())
            }) {
                return Err(Error::conflict(format!(
                    "cannot remove container \"/{}\": container {} shares its network namespace",
                    c.name, user.name
                )));
            }
            c.id.clone()
        };
        if force {
            let _ = self.runtime.kill(&id, libc::SIGKILL);
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

    /// Reconcile one stored container with the runtime after a daemon restart.
    pub(crate) async fn recover_container(&self, st: &mut State, c: &ContainerRecord) {
        match (c.state.status, self.runtime.state(&c.id)) {
            (Status::Running, RunState::Running { pid }) => {
                let mut c2 = c.clone();
                c2.state.pid = pid;
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

/// The runtime's bundle spec for a container record.
pub(crate) fn bundle_spec(c: &ContainerRecord, hosts: &str, resolv: &str) -> BundleSpec {
    let mut args = c.config.entrypoint.clone();
    args.extend(c.config.cmd.iter().cloned());
    BundleSpec {
        id: c.id.clone(),
        image_id: c.config.image_id.clone(),
        args,
        env: c.config.env.clone(),
        cwd: if c.config.working_dir.is_empty() {
            "/".into()
        } else {
            c.config.working_dir.clone()
        },
        hostname: c.config.hostname.clone(),
        domainname: c.config.domainname.clone(),
        hosts: hosts.to_string(),
        resolv_conf: resolv.to_string(),
        network: match c.host_config.network_mode {
            NetworkMode::Host => BundleNetwork::Host,
            _ => BundleNetwork::Sandbox,
        },
    }
}
