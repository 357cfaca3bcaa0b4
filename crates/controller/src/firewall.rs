//! The firewall: derive the model from the controller's state, apply it (the whole
//! ruleset at start and after an outside flush; only set/map element changes otherwise),
//! and restore it when someone else deletes or flushes it.

use std::net::IpAddr;
use std::sync::Arc;
use tracing::{info, warn};

use cove_firewall::{EndpointRules, FirewallModel, NetworkRules, Proto, PublishedPort};
use cove_model::{DriverKind, Error, NetworkMode, Result, Status};

use crate::state::State;
use crate::Controller;

/// What the controller last applied, and the `nft -i` session deltas go through.
#[derive(Debug, Default)]
pub(crate) struct FirewallState {
    applied: Option<Arc<FirewallModel>>,
    session: Option<cove_kernel::nft::NftSession>,
}

impl FirewallState {
    /// Run a delta through the long-lived session (started on first use, restarted if it
    /// died).
    async fn run_delta(
        &mut self,
        delta: &str,
    ) -> std::result::Result<(), cove_kernel::KernelError> {
        // The session takes one line per transaction: only element changes qualify. A
        // delta that rewrites rules is a whole ruleset, which needs `nft -f`.
        let elements_only = delta
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .all(|l| l.starts_with("add element ") || l.starts_with("delete element "));
        if !elements_only {
            return cove_kernel::nft::apply(delta).await;
        }
        if !self.session.as_mut().is_some_and(|s| s.alive()) {
            self.session = Some(cove_kernel::nft::NftSession::spawn()?);
        }
        let session = self.session.as_mut().expect("just ensured");
        let result = session.run(delta).await;
        if result.is_err() && !session.alive() {
            self.session = None;
        }
        result
    }
}

/// The newest model computed (under the state lock), with its generation: appliers always
/// write the newest one, so a slow background apply can never undo a newer state.
#[derive(Debug, Default)]
pub(crate) struct LatestModel {
    generation: u64,
    // Shared, not copied: the model holds every endpoint and port of the host.
    model: Option<Arc<FirewallModel>>,
}

fn proto(p: &str) -> Option<Proto> {
    match p {
        "tcp" => Some(Proto::Tcp),
        "udp" => Some(Proto::Udp),
        "sctp" => Some(Proto::Sctp),
        _ => None,
    }
}

/// The firewall model of the current state. Pure.
pub(crate) fn model(st: &State, drop_foreign_forwarding: bool, v6: bool) -> FirewallModel {
    let mut networks = vec![];
    for n in st.networks.values().filter(|n| n.driver == DriverKind::Bridge) {
        let Some(b) = &n.bridge else { continue };
        let subnets4 = n.ipam.iter().filter_map(|p| match p.subnet {
            ipnet::IpNet::V4(s) => Some(s),
            ipnet::IpNet::V6(_) => None,
        });
        let subnets6 = n.ipam.iter().filter_map(|p| match p.subnet {
            ipnet::IpNet::V6(s) if v6 && n.enable_ipv6 => Some(s),
            _ => None,
        });
        networks.push(NetworkRules {
            bridge: b.name.clone(),
            subnets4: subnets4.collect(),
            subnets6: subnets6.collect(),
            internal: n.internal,
            icc: b.enable_icc,
            masquerade: b.enable_ip_masquerade,
        });
    }
    let bridge_of = |net_id: &str| {
        st.networks.get(net_id).and_then(|n| n.bridge.as_ref()).map(|b| b.name.clone())
    };
    let mut endpoints = vec![];
    for ep in st.endpoints.values() {
        let Some(bridge) = bridge_of(&ep.network_id) else { continue };
        endpoints.push(EndpointRules {
            bridge,
            host_ifname: ep.host_ifname.clone(),
            mac: ep.mac,
            ipv4: ep.ipv4.map(|a| a.addr()),
            ipv6: if v6 { ep.ipv6.map(|a| a.addr()) } else { None },
        });
    }
    // One pass over the endpoints, not one per container: the model is rebuilt on every
    // change, so it must stay linear in the number of containers.
    let mut by_container: std::collections::HashMap<&str, Vec<&cove_model::EndpointRecord>> =
        std::collections::HashMap::new();
    for ep in st.endpoints.values() {
        by_container.entry(ep.container_id.as_str()).or_default().push(ep);
    }
    let mut published = vec![];
    for c in st.containers.values() {
        if c.state.status != Status::Running
            || c.host_config.network_mode != NetworkMode::Sandbox
            || c.state.ports.is_empty()
        {
            continue;
        }
        // Published ports lead to the endpoint that carries the default route, as in
        // Docker: the first one on a network that is not internal.
        let mut eps = by_container.get(c.id.as_str()).cloned().unwrap_or_default();
        eps.sort_by_key(|e| crate::state::ifindex(&e.ifname));
        let Some(ep) =
            eps.iter().find(|e| st.networks.get(&e.network_id).is_some_and(|n| !n.internal))
        else {
            continue;
        };
        let Some(bridge) = bridge_of(&ep.network_id) else { continue };
        for b in &c.state.ports {
            let Some(proto) = proto(&b.protocol) else { continue };
            let host_ip = b.host_ip.filter(|ip| !ip.is_unspecified());
            let wants = |v6_addr: bool| match b.host_ip {
                Some(ip) => ip.is_ipv6() == v6_addr,
                None => true,
            };
            if let (Some(v4), true) = (ep.ipv4, wants(false)) {
                published.push(PublishedPort {
                    proto,
                    host_ip,
                    host_port: b.host_port,
                    container_ip: IpAddr::V4(v4.addr()),
                    container_port: b.container_port,
                    bridge: bridge.clone(),
                });
            }
            if let (Some(a6), true, true) = (ep.ipv6, wants(true), v6) {
                published.push(PublishedPort {
                    proto,
                    host_ip,
                    host_port: b.host_port,
                    container_ip: IpAddr::V6(a6.addr()),
                    container_port: b.container_port,
                    bridge: bridge.clone(),
                });
            }
        }
    }
    FirewallModel { networks, endpoints, published, drop_foreign_forwarding }
}

impl Controller {
    /// Record the model of the current state as the newest (call with the state lock held).
    fn note_latest(&self, st: &State) -> bool {
        if !self.cfg.firewall {
            return false;
        }
        let own_forwarding = self.fw_forwarding.load(std::sync::atomic::Ordering::Relaxed);
        let m = model(st, own_forwarding, self.cfg.firewall6);
        let mut latest = self.fw_latest.lock().expect("firewall model lock");
        latest.generation += 1;
        latest.model = Some(Arc::new(m));
        true
    }

    /// Bring the firewall in line with the state now (for changes that add access or
    /// protections: they must be in place before the caller goes on).
    pub(crate) async fn sync_firewall(&self, st: &State) -> Result<()> {
        if !self.note_latest(st) {
            return Ok(());
        }
        self.apply_latest().await
    }

    /// Bring the firewall in line with the state soon, without waiting (for removals: the
    /// interfaces involved are already gone or down, so nothing opens meanwhile; this keeps
    /// an `nft` run off the detach path).
    pub(crate) fn sync_firewall_later(&self, st: &State) {
        if !self.note_latest(st) {
            return;
        }
        let Some(ctl) = self.me.get().and_then(|w| w.upgrade()) else { return };
        tokio::spawn(async move {
            if let Err(e) = ctl.apply_latest().await {
                warn!(error = %e, "firewall update failed");
            }
        });
    }

    /// Write the newest model: element changes only, or the whole ruleset when nothing was
    /// applied yet (or nft refuses a delta).
    async fn apply_latest(&self) -> Result<()> {
        let mut fw = self.fw.lock().await;
        let Some(new) = self.fw_latest.lock().expect("firewall model lock").model.clone() else {
            return Ok(());
        };
        if fw.applied.as_ref().is_some_and(|a| Arc::ptr_eq(a, &new) || **a == *new) {
            return Ok(());
        }
        let delta = fw.applied.as_ref().map(|old| cove_firewall::render_delta(old, &new));
        let applied = match delta {
            Some(d) => match fw.run_delta(&d).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    warn!(error = %e, "firewall delta refused; applying the whole ruleset");
                    cove_kernel::nft::apply(&cove_firewall::render(&new)).await
                }
            },
            None => cove_kernel::nft::apply(&cove_firewall::render(&new)).await,
        };
        match applied {
            Ok(()) => {
                fw.applied = Some(new);
                Ok(())
            }
            Err(e) => {
                // Unknown state: the next sync writes everything.
                fw.applied = None;
                Err(Error::from(e).context("program the firewall"))
            }
        }
    }

    /// Rewrite the whole ruleset from the state (after an outside flush).
    pub(crate) async fn restore_firewall(&self) {
        let st = self.state.lock().await;
        self.fw.lock().await.applied = None;
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
        let path = "/proc/sys/net/ipv4/ip_forward";
        let on = std::fs::read_to_string(path).map(|v| v.trim() == "1").unwrap_or(false);
        if !on {
            std::fs::write(path, "1")
                .map_err(|e| Error::unavailable(format!("enable net.ipv4.ip_forward: {e}")))?;
            let _ = std::fs::write(&marker, "1\n");
            info!("enabled net.ipv4.ip_forward");
        }
        self.fw_forwarding.store(marker.exists(), std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Turn IPv6 forwarding on once a network has IPv6 (as Docker does; not before, since
    /// it changes how the host itself treats router advertisements).
    pub(crate) fn enable_forwarding6(&self) -> Result<()> {
        if !self.cfg.firewall || !self.cfg.firewall6 || !self.cfg.ip_forward {
            return Ok(());
        }
        let path = "/proc/sys/net/ipv6/conf/all/forwarding";
        let on = std::fs::read_to_string(path).map(|v| v.trim() == "1").unwrap_or(true);
        if !on {
            std::fs::write(path, "1").map_err(|e| {
                Error::unavailable(format!("enable net.ipv6.conf.all.forwarding: {e}"))
            })?;
            info!("enabled net.ipv6.conf.all.forwarding");
        }
        Ok(())
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
        let mut changes = cove_kernel::nft::watch_foreign_changes(&refs).map_err(Error::from)?;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while changes.recv().await.is_some() {
                // Coalesce a burst (a firewall reload is many transactions).
                while changes.try_recv().is_ok() {}
                let Some(ctl) = weak.upgrade() else { return };
                warn!("the firewall was changed from outside; restoring it");
                ctl.restore_firewall().await;
            }
        });
        Ok(())
    }
}
