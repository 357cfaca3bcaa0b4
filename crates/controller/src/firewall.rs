//! The firewall: derive it from the controller's state, apply it (the whole ruleset at start
//! and after an outside flush; only set/map element changes otherwise), and restore it
//! when someone else deletes or flushes it.
//!
//! The plan is kept per container ([`FirewallPlan`]): a change computes the elements of the
//! containers it touched (the state's maps record which, see `tracked`), never the whole
//! host, so an attach costs the same with 10 containers or 2,000.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use tracing::{info, warn};

use cove_drivers::Registry;
use cove_firewall::{
    ElementDelta, EndpointRules, FirewallModel, LinkRule, NetworkRules, PublishedPort, ServiceLb,
    VxlanGuard,
};
use cove_metrics::{FirewallWrite, RestoreCause};
use cove_model::{Error, NetworkMode, Result, Status};

use crate::state::State;
use crate::Controller;

/// Whether the kernel holds what the plan last wrote (held while a firewall transaction
/// runs, so writes stay in order).
#[derive(Debug, Default)]
pub(crate) struct FirewallState {
    known: bool,
}

/// What [`Controller::take_pending`] hands over to write.
enum Write {
    /// The whole ruleset, for `nft -f -`.
    Full(String),
    /// The queued element changes, merged in order.
    Elements(ElementDelta),
}

/// One container's share of the firewall: its ports on bridges and its published ports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Share {
    endpoints: Vec<EndpointRules>,
    published: Vec<PublishedPort>,
    /// Its legacy links through icc=false (as the linker).
    links: Vec<LinkRule>,
}

impl Share {
    fn is_empty(&self) -> bool {
        self.endpoints.is_empty() && self.published.is_empty() && self.links.is_empty()
    }
}

/// The firewall as last computed (per network and per container), and the element changes
/// computed but not yet written, oldest first. Computed under the state lock, so changes
/// queue in the order they happened; written by whoever applies next.
#[derive(Debug, Default)]
pub(crate) struct FirewallPlan {
    built: bool,
    networks: Vec<NetworkRules>,
    drop_foreign_forwarding: bool,
    vxlan: Option<VxlanGuard>,
    encryption: Option<cove_firewall::EncryptionGuard>,
    shares: HashMap<String, Share>,
    /// The host is in a cluster: the services' scaffolding exists.
    service_lb: bool,
    /// The services' load balancing ([`crate::services::dataplane`]).
    services: Vec<ServiceLb>,
    pending: Vec<ElementDelta>,
    /// A rule changed or the kernel's state is unknown: write the whole ruleset next.
    full: bool,
}

impl FirewallPlan {
    /// The whole model (for a full write).
    fn model(&self) -> FirewallModel {
        let mut ids: Vec<&String> = self.shares.keys().collect();
        ids.sort();
        let mut m = FirewallModel {
            networks: self.networks.clone(),
            drop_foreign_forwarding: self.drop_foreign_forwarding,
            vxlan: self.vxlan.clone(),
            service_lb: self.service_lb,
            services: self.services.clone(),
            encryption: self.encryption.clone(),
            ..FirewallModel::default()
        };
        for id in ids {
            let s = &self.shares[id];
            m.endpoints.extend(s.endpoints.iter().cloned());
            m.published.extend(s.published.iter().cloned());
            m.links.extend(s.links.iter().cloned());
        }
        m
    }
}

/// The firewall's view of every network it guards. Pure.
fn networks(st: &State, drivers: &Registry, v6: bool) -> Vec<NetworkRules> {
    st.networks.values().filter_map(|n| drivers.of(n).ok()?.firewall(n, v6)).collect()
}

/// Container `id`'s share of the firewall. Pure; touches only that container's records.
fn share(st: &State, drivers: &Registry, id: &str, v6: bool) -> Share {
    let eps = st.endpoints_of_container(id);
    let mut s = Share::default();
    for ep in &eps {
        let Some(net) = st.networks.get(&ep.network_id) else { continue };
        let Ok(driver) = drivers.of(net) else { continue };
        s.endpoints.extend(driver.firewall_endpoint(net, ep, v6));
    }
    let Some(c) = st.containers.get(id) else { return s };
    s.links = crate::links::firewall_links(st, drivers, c);
    if c.state.status != Status::Running
        || c.host_config.network_mode != NetworkMode::Sandbox
        || c.state.ports.is_empty()
    {
        return s;
    }
    // Published ports lead to the endpoint that carries the default route, as in Docker:
    // the first one on a network that is not internal.
    let Some(ep) = eps.iter().find(|e| st.networks.get(&e.network_id).is_some_and(|n| !n.internal))
    else {
        return s;
    };
    let Some(rules) =
        st.networks.get(&ep.network_id).and_then(|n| drivers.of(n).ok()?.firewall(n, v6))
    else {
        return s;
    };
    let bridge = rules.bridge;
    for b in &c.state.ports {
        let proto = b.protocol;
        let host_ip = b.host_ip.filter(|ip| !ip.is_unspecified());
        let wants = |v6_addr: bool| match b.host_ip {
            Some(ip) => ip.is_ipv6() == v6_addr,
            None => true,
        };
        let mut publish = |container_ip: IpAddr| {
            s.published.push(PublishedPort {
                proto,
                host_ip,
                host_port: b.host_port,
                container_ip,
                container_port: b.container_port,
                bridge: bridge.clone(),
            })
        };
        if let (Some(v4), true) = (ep.ipv4, wants(false)) {
            publish(IpAddr::V4(v4.addr()));
        }
        if let (Some(a6), true, true) = (ep.ipv6, wants(true), v6) {
            publish(IpAddr::V6(a6.addr()));
        }
    }
    s
}

/// Every container's non-empty share, computed from scratch (containers with a record and
/// containers with endpoints).
fn all_shares(st: &State, drivers: &Registry, v6: bool) -> HashMap<String, Share> {
    let mut ids: Vec<&str> = st.containers.keys().map(|id| id.as_str()).collect();
    ids.extend(st.endpoints.values().map(|e| e.container_id.as_str()));
    ids.sort();
    ids.dedup();
    ids.into_iter()
        .map(|id| (id.to_string(), share(st, drivers, id, v6)))
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

impl Controller {
    /// Bring the plan in line with the state: recompute the networks (when one changed)
    /// and the shares of the containers that changed since the last call, and queue the
    /// element changes. Call with the state lock held, after every change.
    /// Who may send this host VXLAN: every node of its cluster (those it knows of now,
    /// and the hosts of the peers it mirrors, so a restart without the cluster store keeps
    /// the tunnels open).
    fn vxlan_guard(&self, st: &State) -> Option<VxlanGuard> {
        let c = self.cluster()?;
        let mut peers: std::collections::BTreeSet<std::net::IpAddr> =
            st.cluster_nodes.iter().copied().collect();
        peers.extend(st.peers.values().map(|p| p.host));
        peers.insert(c.node.advertise);
        Some(VxlanGuard { port: c.underlay.port, peers: peers.into_iter().collect() })
    }

    fn plan_changes(&self, st: &State) -> bool {
        if !self.cfg.firewall {
            return false;
        }
        let changes = st.take_changes();
        let v6 = self.cfg.firewall6;
        let own_forwarding = self.fw_forwarding.load(std::sync::atomic::Ordering::Relaxed);
        let mut plan = self.fw_plan.lock().expect("firewall plan lock");
        if !plan.built {
            plan.networks = networks(st, &self.drivers, v6);
            plan.shares = all_shares(st, &self.drivers, v6);
            plan.drop_foreign_forwarding = own_forwarding;
            plan.vxlan = self.vxlan_guard(st);
            plan.service_lb = self.cluster().is_some();
            plan.encryption = self.encryption_guard(st);
            plan.built = true;
            plan.full = true;
            plan.pending.clear();
            return true;
        }
        let new_networks =
            if changes.networks { networks(st, &self.drivers, v6) } else { plan.networks.clone() };
        let vxlan = self.vxlan_guard(st);
        let encryption = self.encryption_guard(st);
        let mut before = FirewallModel {
            networks: plan.networks.clone(),
            drop_foreign_forwarding: plan.drop_foreign_forwarding,
            vxlan: plan.vxlan.clone(),
            service_lb: plan.service_lb,
            encryption: plan.encryption.clone(),
            ..FirewallModel::default()
        };
        let mut after = FirewallModel {
            networks: new_networks.clone(),
            drop_foreign_forwarding: own_forwarding,
            vxlan: vxlan.clone(),
            service_lb: plan.service_lb,
            encryption: encryption.clone(),
            ..FirewallModel::default()
        };
        // A container's links name another container's bridge port: when that one starts or
        // stops, its linkers' shares change too.
        let mut changed = changes.containers.clone();
        changed.extend(crate::links::linkers_of(st, &changes.containers));
        for id in &changed {
            let new = share(st, &self.drivers, id, v6);
            let old = plan.shares.remove(id).unwrap_or_default();
            if old != new {
                before.endpoints.extend(old.endpoints);
                before.published.extend(old.published);
                before.links.extend(old.links);
                after.endpoints.extend(new.endpoints.iter().cloned());
                after.published.extend(new.published.iter().cloned());
                after.links.extend(new.links.iter().cloned());
            }
            if !new.is_empty() {
                plan.shares.insert(id.clone(), new);
            }
        }
        plan.networks = new_networks;
        plan.drop_foreign_forwarding = own_forwarding;
        plan.vxlan = vxlan.clone();
        plan.encryption = encryption.clone();
        // Debug builds (every test run) check the incremental plan against one computed
        // from scratch.
        #[cfg(debug_assertions)]
        {
            let scratch = FirewallPlan {
                networks: networks(st, &self.drivers, v6),
                drop_foreign_forwarding: own_forwarding,
                vxlan,
                encryption,
                shares: all_shares(st, &self.drivers, v6),
                service_lb: plan.service_lb,
                services: plan.services.clone(),
                ..FirewallPlan::default()
            };
            assert_eq!(
                cove_firewall::render(&plan.model()),
                cove_firewall::render(&scratch.model()),
                "the incremental firewall plan drifted from the state"
            );
        }
        match cove_firewall::element_delta(&before, &after) {
            Some(d) if d.is_empty() => {}
            Some(d) => plan.pending.push(d),
            None => {
                plan.full = true;
                plan.pending.clear();
            }
        }
        true
    }

    /// Queue the change of the services' load balancing from `old` to `new` (only the
    /// entries that differ go into the delta: a task start costs its service's chains and
    /// elements, whatever the number of services). Written by the next
    /// [`Controller::apply_pending`].
    pub(crate) fn plan_services(&self, old: &[ServiceLb], new: &[ServiceLb]) {
        if !self.cfg.firewall {
            return;
        }
        let mut plan = self.fw_plan.lock().expect("firewall plan lock");
        plan.services = new.to_vec();
        if !plan.built {
            return;
        }
        let before = FirewallModel {
            service_lb: plan.service_lb,
            services: old.iter().filter(|o| !new.contains(o)).cloned().collect(),
            ..FirewallModel::default()
        };
        let after = FirewallModel {
            service_lb: plan.service_lb,
            services: new.iter().filter(|n| !old.contains(n)).cloned().collect(),
            ..FirewallModel::default()
        };
        match cove_firewall::element_delta(&before, &after) {
            Some(d) if d.is_empty() => {}
            Some(d) => plan.pending.push(d),
            None => {
                plan.full = true;
                plan.pending.clear();
            }
        }
    }

    /// Bring the firewall in line with the state now (for changes that add access or
    /// protections: they must be in place before the caller goes on).
    #[tracing::instrument(level = "debug", name = "firewall.sync", skip_all)]
    pub(crate) async fn sync_firewall(&self, st: &State) -> Result<()> {
        if !self.plan_changes(st) {
            return Ok(());
        }
        self.apply_pending().await
    }

    /// Bring the firewall in line with the state soon, without waiting (for removals: the
    /// interfaces involved are already gone or down, so nothing opens meanwhile; this keeps
    /// an `nft` run off the detach path).
    pub(crate) fn sync_firewall_later(&self, st: &State) {
        if !self.plan_changes(st) {
            return;
        }
        let Some(ctl) = self.me.get().and_then(|w| w.upgrade()) else { return };
        tokio::spawn(async move {
            if let Err(e) = ctl.apply_pending().await {
                warn!(error = %e, "firewall update failed");
            }
        });
    }

    /// The next write: the queued element changes in one transaction, or the whole ruleset
    /// when the kernel's state is unknown or a rule changed.
    fn take_pending(&self, known: bool) -> Option<Write> {
        let mut plan = self.fw_plan.lock().expect("firewall plan lock");
        if plan.full || !known {
            plan.full = false;
            plan.pending.clear();
            return Some(Write::Full(cove_firewall::render(&plan.model())));
        }
        if plan.pending.is_empty() {
            return None;
        }
        Some(Write::Elements(plan.pending.drain(..).collect()))
    }

    /// Write what the plan queued. Whoever gets here first writes every change queued so
    /// far, in order; a refused delta falls back to the whole ruleset.
    #[tracing::instrument(level = "debug", name = "firewall.apply", skip_all)]
    pub(crate) async fn apply_pending(&self) -> Result<()> {
        let mut fw = self.fw.lock().await;
        let Some(write) = self.take_pending(fw.known) else { return Ok(()) };
        let full = matches!(write, Write::Full(_));
        let started = std::time::Instant::now();
        let mut applied = match &write {
            Write::Full(text) => self.firewall.apply_ruleset(text).await,
            Write::Elements(delta) => self.firewall.apply_delta(delta).await,
        };
        let kind = if full { FirewallWrite::Full } else { FirewallWrite::Elements };
        self.metrics.firewall_sync(kind, started.elapsed(), applied.is_ok());
        if let (Err(e), false) = (&applied, full) {
            warn!(error = %e, "firewall delta refused; applying the whole ruleset");
            self.metrics.firewall_restore(RestoreCause::DeltaRefused);
            let Some(Write::Full(text)) = self.take_pending(false) else {
                unreachable!("a full write is always there")
            };
            let started = std::time::Instant::now();
            applied = self.firewall.apply_ruleset(&text).await;
            self.metrics.firewall_sync(FirewallWrite::Full, started.elapsed(), applied.is_ok());
        }
        match applied {
            Ok(()) => {
                fw.known = true;
                Ok(())
            }
            Err(e) => {
                // Unknown state: the next write is the whole ruleset.
                fw.known = false;
                Err(Error::from(e).context("program the firewall"))
            }
        }
    }

    /// Rewrite the whole ruleset from the state (after an outside flush).
    pub(crate) async fn restore_firewall(&self) {
        let st = self.state.lock().await;
        self.fw.lock().await.known = false;
        match self.sync_firewall(&st).await {
            Ok(()) => info!("firewall restored after an outside change"),
            Err(e) => warn!(error = %e, "could not restore the firewall"),
        }
    }

    /// Turn forwarding on if it is off (and remember that Cove did, so the firewall drops
    /// forwarding between the host's other interfaces, as Docker does).
    pub(crate) async fn enable_forwarding(&self) -> Result<()> {
        if !self.cfg.firewall || !self.cfg.ip_forward {
            return Ok(());
        }
        let marker = self.cfg.exec_root.join("forwarding-enabled-by-cove");
        if !self.sysctl_on("net/ipv4/ip_forward", false) {
            self.write_host_sysctl("net/ipv4/ip_forward").await?;
            let _ = std::fs::write(&marker, "1\n");
            info!("enabled net.ipv4.ip_forward");
        }
        self.fw_forwarding.store(marker.exists(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Turn IPv6 forwarding on once a network has IPv6 (as Docker does; not before, since
    /// it changes how the host itself treats router advertisements).
    pub(crate) async fn enable_forwarding6(&self) -> Result<()> {
        if !self.cfg.firewall || !self.cfg.firewall6 || !self.cfg.ip_forward {
            return Ok(());
        }
        if !self.sysctl_on("net/ipv6/conf/all/forwarding", true) {
            self.write_host_sysctl("net/ipv6/conf/all/forwarding").await?;
            info!("enabled net.ipv6.conf.all.forwarding");
        }
        Ok(())
    }

    /// Whether a boolean sysctl of the host is `1` (`unreadable` when it cannot be read).
    fn sysctl_on(&self, key: &str, unreadable: bool) -> bool {
        self.kernel.read_sysctl(key).map(|v| v == "1").unwrap_or(unreadable)
    }

    /// Set a boolean sysctl of the host to `1`, through the executor.
    async fn write_host_sysctl(&self, key: &str) -> Result<()> {
        let op = cove_drivers::plan::Op::Sysctl {
            netns: cove_drivers::plan::Netns::Host,
            key: key.to_string(),
            value: "1".into(),
        };
        self.kernel
            .apply(&[op])
            .await
            .map_err(|e| Error::unavailable(format!("enable {}: {e}", key.replace('/', "."))))
    }

    /// Restore the firewall whenever someone else deletes or flushes any of it.
    pub(crate) fn spawn_firewall_watch(self: &Arc<Self>) -> Result<()> {
        if !self.cfg.firewall {
            return Ok(());
        }
        let tables = [
            format!("inet {}", cove_firewall::names::INET_TABLE),
            format!("bridge {}", cove_firewall::names::BRIDGE_TABLE),
            format!("netdev {}", cove_firewall::names::NETDEV_TABLE),
        ];
        let refs: Vec<&str> = tables.iter().map(String::as_str).collect();
        let mut changes = self.firewall.watch_foreign_changes(&refs).map_err(Error::from)?;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while changes.recv().await.is_some() {
                // Coalesce a burst (a firewall reload is many transactions).
                while changes.try_recv().is_ok() {}
                let Some(ctl) = weak.upgrade() else { return };
                warn!("the firewall was changed from outside; restoring it");
                ctl.metrics.firewall_restore(RestoreCause::OutsideChange);
                ctl.restore_firewall().await;
            }
        });
        Ok(())
    }
}
