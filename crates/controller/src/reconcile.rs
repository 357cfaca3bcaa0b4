//! Start-up: built-in networks, and reconciling the kernel and the runtime with the store.
//! Objects of live containers stay; objects whose owner is gone are removed.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::Duration;
use tracing::{debug, info, warn};

use std::sync::Arc;

use cove_drivers::{builtin_networks, DefaultNetworkFlags, NetworkRequest};
use cove_model::{Error, Result};
use cove_plan::{HostState, LinkKind};

use crate::networks::{builtin_request, Origin};
use crate::state::State;
use crate::Controller;

/// How long link removals must stop before the reconciliation they trigger runs.
const EVENT_SETTLE: Duration = Duration::from_millis(200);

/// Keep the sysctls worth comparing: host-wide ones, and per-link ones of bridges only.
fn keep_bridge_sysctls(desired: &mut HostState) {
    let bridges: HashSet<String> = desired
        .links
        .iter()
        .filter(|(_, l)| matches!(l.kind, LinkKind::Bridge { .. }))
        .map(|(n, _)| n.clone())
        .collect();
    desired.sysctls.retain(|k, _| sysctl_link(k).is_none_or(|l| bridges.contains(l)));
}

/// Make `desired` what `observed` has of the links `held` and of the ports enslaved to
/// them (with their addresses, neighbour and forwarding entries, port flags): the diff then
/// neither repairs nor removes them.
fn hold(desired: &mut HostState, observed: &HostState, held: &BTreeSet<String>) {
    if held.is_empty() {
        return;
    }
    let links: BTreeSet<&String> = observed
        .links
        .iter()
        .filter(|(n, l)| held.contains(*n) || l.master.as_ref().is_some_and(|m| held.contains(m)))
        .map(|(n, _)| n)
        .collect();
    for name in &links {
        desired.links.insert((*name).clone(), observed.links[*name].clone());
    }
    let on = |link: &String| links.contains(link);
    desired.addresses.extend(observed.addresses.iter().filter(|(l, _)| on(l)).cloned());
    desired.neighbours.extend(
        observed.neighbours.iter().filter(|((l, _), _)| on(l)).map(|(k, v)| (k.clone(), *v)),
    );
    desired.loopback6.extend(observed.loopback6.iter().filter(|l| on(l)).cloned());
    desired
        .port_flags
        .extend(observed.port_flags.iter().filter(|(l, _)| on(l)).map(|(k, v)| (k.clone(), *v)));
    desired
        .fdb_self
        .extend(observed.fdb_self.iter().filter(|((l, _), _)| on(l)).map(|(k, v)| (k.clone(), *v)));
    desired.fdb_master.extend(observed.fdb_master.iter().filter(|(l, _)| on(l)).cloned());
}

/// The link a per-link sysctl key names (`net/ipv6/conf/<link>/disable_ipv6`).
fn sysctl_link(key: &str) -> Option<&str> {
    let mut parts = key.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("net"), Some(_), Some("conf"), Some(link)) => Some(link),
        _ => None,
    }
}

impl Controller {
    /// Bring the kernel and the runtime in line with the store.
    pub(crate) async fn reconcile(&self, st: &mut State) -> Result<()> {
        // 1. Containers: live ones keep their sandboxes, dead ones release them.
        let containers: Vec<_> = st.containers.values().cloned().collect();
        for c in &containers {
            self.recover_container(st, c).await;
        }
        // Endpoints whose container no longer exists.
        let orphans: Vec<_> = st
            .endpoints
            .values()
            .filter(|e| !st.containers.contains_key(&e.container_id))
            .cloned()
            .collect();
        if !orphans.is_empty() {
            let mut b = cove_store::Batch::new();
            for e in &orphans {
                crate::state::delete_endpoint(&mut b, e);
                st.endpoints.remove(&e.id);
            }
            self.store.commit(b)?;
            *st = State { pools: Default::default(), ..std::mem::take(st) };
            let fresh = State::load(&self.store)?;
            st.pools = fresh.pools;
        }

        // 2. Sandbox namespaces nobody owns.
        let live: HashSet<PathBuf> = st
            .containers
            .values()
            .filter(|c| c.state.status == cove_model::Status::Running)
            .map(|c| self.sandbox_path(&c.id))
            .collect();
        if let Ok(dir) = std::fs::read_dir(self.cfg.exec_root.join("netns")) {
            for entry in dir.flatten() {
                let p = entry.path();
                if !live.contains(&p) {
                    warn!(netns = %p.display(), "removing orphaned sandbox");
                    if let Err(e) = self.kernel.remove_netns(&p).await {
                        warn!(netns = %p.display(), error = %e, "could not remove orphaned sandbox");
                    }
                }
            }
        }

        // 3. The host's objects: what the records want against what the kernel has. Links
        //    Cove made (its link group says so) that no record owns go, missing ones come
        //    back (`cove_plan::diff`), and the links detaches condemned are deleted. Those
        //    a crash left condemned go first: a removal that died before its record went
        //    condemned a link the record still wants, which must come back.
        if let Err(e) = self.kernel.reap_condemned().await {
            warn!(error = %e, "could not remove condemned links");
        }
        self.reconcile_host(st).await?;
        if let Err(e) = self.kernel.reap_condemned().await {
            warn!(error = %e, "could not remove condemned links");
        }
        // One host-wide sysctl, whichever networks have IPv6.
        if let Some(net) = st.networks.values().find(|n| n.enable_ipv6) {
            self.enable_forwarding6()
                .await
                .map_err(|e| e.context(format!("restore network {}", net.name)))?;
        }
        Ok(())
    }

    /// The host's objects as the records want them: every network's, and the host side of
    /// every endpoint (its bridge port, hairpin, neighbour entries). Per-link sysctls are
    /// compared for bridges only: a host with 2,000 containers has 2,000 bridge ports,
    /// whose one sysctl is written once with the port, and every `/proc/sys` read in a
    /// namespace-rich host is slow.
    ///
    /// A network this host cannot plan (an overlay network whose MTU its underlay cannot
    /// carry, or one restored without the cluster) is left out with its endpoints and
    /// peers, and its links are returned: what the host has of them is held as it is
    /// ([`hold`]). One such network must not stop the repair of all the others, nor the
    /// daemon's start.
    fn desired_host(&self, st: &State) -> Result<(HostState, BTreeSet<String>)> {
        let ctx = self.plan_context();
        let mut s = HostState::default();
        let mut held = BTreeSet::new();
        let mut unplanned = HashSet::new();
        for net in st.networks.values() {
            let driver = self.drivers.of(net)?;
            match driver.network_ops(net, &ctx) {
                Ok(ops) => ops.iter().for_each(|op| s.add(op)),
                Err(e) => {
                    debug!(network = %net.name, error = %e, "network not planned on this host");
                    held.extend(driver.claims(&net.config).into_iter().map(|c| c.link));
                    unplanned.insert(net.id.as_str());
                }
            }
        }
        for ep in st.endpoints.values() {
            if unplanned.contains(ep.network_id.as_str()) {
                continue;
            }
            let Some(net) = st.networks.get(&ep.network_id) else { continue };
            let sandbox = self.sandbox_path(&ep.container_id);
            for op in self.drivers.of(net)?.join_ops(net, ep, &sandbox)? {
                s.add(&op);
            }
        }
        for p in st.peers.values() {
            if unplanned.contains(p.endpoint.network_id().as_str()) {
                continue;
            }
            let Some(net) = st.networks.get(p.endpoint.network_id().as_str()) else { continue };
            let peer = cove_drivers::Peer {
                endpoint: &p.endpoint.endpoint,
                host: p.host,
                tunnel: p.tunnel,
            };
            for op in self.drivers.of(net)?.peer_ops(net, peer)? {
                s.add(&op);
            }
        }
        // Services' VIPs on the bridges of their networks, node addresses.
        let plane = crate::lock(&self.service_plane);
        for op in plane.kernel_ops() {
            s.add(&op);
        }
        drop(plane);
        keep_bridge_sysctls(&mut s);
        Ok((s, held))
    }

    async fn desired_and_observed(&self, st: &State) -> Result<(HostState, HostState)> {
        let (mut desired, held) = self.desired_host(st)?;
        let observed = self.observe(&desired).await?;
        hold(&mut desired, &observed, &held);
        Ok((desired, observed))
    }

    async fn observe(&self, desired: &HostState) -> Result<HostState> {
        let keys: Vec<String> = desired.sysctls.keys().cloned().collect();
        self.kernel.observe_host(&keys).await.map_err(Error::from)
    }

    /// Compare the host's objects with the records and repair the difference, best
    /// effort (every op is tried; failures are logged). Returns how many ops it took.
    #[tracing::instrument(level = "debug", name = "reconcile.host", skip_all)]
    pub(crate) async fn reconcile_host(&self, st: &State) -> Result<usize> {
        let (desired, observed) = self.desired_and_observed(st).await?;
        Ok(self.repair(&desired, &observed).await)
    }

    async fn repair(&self, desired: &HostState, observed: &HostState) -> usize {
        let ops = cove_plan::diff(desired, observed);
        for op in &ops {
            warn!(op = %op, "the host differs from the records; repairing");
            self.metrics.reconcile_fix(cove_metrics::labels::variant(&format!("{op:?}")));
        }
        for e in self.kernel.teardown(&ops).await {
            warn!(error = %e, "could not repair the host");
        }
        ops.len()
    }

    /// One round of the timer's reconciliation. The kernel is observed without the state
    /// lock (dumping 2,000 links takes long enough to stall every request behind it); if
    /// the records changed meanwhile the observation may be of a host in transition, so
    /// the round is skipped and the next one tries again.
    #[tracing::instrument(level = "debug", name = "reconcile.tick", skip_all)]
    pub(crate) async fn reconcile_tick(&self) -> Result<Option<usize>> {
        let ((mut desired, held), revision) = {
            let st = self.state.lock().await;
            (self.desired_host(&st)?, self.store.revision()?)
        };
        let observed = self.observe(&desired).await?;
        hold(&mut desired, &observed, &held);
        self.encryption_route_guard().await;
        let _st = self.state.lock().await;
        if self.store.revision()? != revision {
            return Ok(None);
        }
        Ok(Some(self.repair(&desired, &observed).await))
    }

    /// Reconcile the host's objects on a timer, and soon after a link of Cove's vanishes
    /// without Cove deleting it, so what someone else deletes or changes (a bridge deleted
    /// by hand, a port taken off its bridge) comes back.
    pub(crate) fn spawn_reconcile_loop(self: &Arc<Self>) -> Result<()> {
        let every = self.cfg.reconcile_interval;
        if every.is_zero() {
            return Ok(());
        }
        let mut removals = self.kernel.owned_link_removals().map_err(Error::from)?;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut wait = every;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    Some(()) = removals.recv() => {
                        // Let a burst (a namespace with many links going) settle first.
                        tokio::time::sleep(EVENT_SETTLE).await;
                        while removals.try_recv().is_ok() {}
                    }
                }
                let Some(ctl) = weak.upgrade() else { return };
                wait = every;
                match ctl.reconcile_tick().await {
                    Ok(Some(0)) => {}
                    Ok(Some(n)) => info!(ops = n, "repaired the host's network objects"),
                    // A busy host: look again soon rather than a whole interval later.
                    Ok(None) => wait = every.min(Duration::from_secs(1)),
                    Err(e) => warn!(error = %e, "could not reconcile the host"),
                }
            }
        });
        Ok(())
    }

    /// Create the built-in networks that do not exist yet. Existing ones take the options
    /// the daemon's flags give them now (`--icc`, as dockerd does at every start); their
    /// subnets stay.
    pub(crate) async fn ensure_builtins(&self, st: &mut State) -> Result<()> {
        let flags = DefaultNetworkFlags {
            bip: self.cfg.bip,
            fixed_cidr: self.cfg.fixed_cidr,
            icc: self.cfg.icc,
        };
        for b in builtin_networks(&flags) {
            if let Some(existing) = st.networks.values().find(|n| n.name == b.name) {
                if existing.options != b.options {
                    let mut net = existing.clone();
                    net.config = self.drivers.of(&net)?.validate(&NetworkRequest {
                        underlay: None,
                        id: &net.id,
                        options: &b.options,
                        default_mtu: self.cfg.mtu,
                        device: b.device,
                    })?;
                    net.options = b.options.clone();
                    info!(network = %net.name, "the daemon's flags changed the network's options");
                    let mut batch = cove_store::Batch::new();
                    batch.put(cove_store::Table::Networks, &net.id, &net);
                    self.store.commit(batch)?;
                    st.networks.insert(net.id.clone(), net);
                    continue;
                }
                if let (Some(want), Some(pool)) = (b.pools.first(), existing.pool_v4()) {
                    if pool.subnet != want.subnet {
                        warn!(
                            network = %existing.name,
                            subnet = %pool.subnet,
                            wanted = %want.subnet,
                            "--bip/--fixed-cidr differ from the existing default network; keeping its subnet"
                        );
                    }
                }
                continue;
            }
            let req = builtin_request(&b);
            let net = self.prepare_network(st, &req, Origin::Builtin(b.device)).await?;
            self.install_network(st, net).await?;
            info!(network = %b.name, "built-in network created");
        }
        Ok(())
    }
}
