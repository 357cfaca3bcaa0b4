//! Start-up: built-in networks, and reconciling the kernel and the runtime with the store.
//! Objects of live containers stay; objects whose owner is gone are removed.

use std::collections::HashSet;
use std::path::PathBuf;
use tracing::{info, warn};

use cove_drivers::bridge;
use cove_drivers::plan::{Netns, Op};
use cove_model::{DriverKind, Error, Result};

use crate::networks::builtin_requests;
use crate::state::State;
use crate::Controller;

/// Whether a host link name follows one of Cove's own patterns (so it may be removed when
/// no record owns it). Anything else on the host is never touched.
fn is_cove_link(name: &str, kind: Option<&str>) -> bool {
    let hexy = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    match kind {
        Some("veth") => name.strip_prefix("cv").is_some_and(|r| r.len() == 12 && hexy(r)),
        Some("bridge") => {
            name == crate::networks::DEFAULT_BRIDGE_DEVICE
                || name.strip_prefix("br-").is_some_and(|r| r.len() == 12 && hexy(r))
        }
        _ => false,
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
                b.delete(cove_store::Table::Endpoints, &e.id);
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

        // 3. Host links of ours that no record owns.
        let bridges: HashSet<String> = st
            .networks
            .values()
            .filter_map(|n| n.bridge.as_ref().map(|b| b.name.clone()))
            .collect();
        let veths: HashSet<String> = st.endpoints.values().map(|e| e.host_ifname.clone()).collect();
        let links = self.kernel.links().await.map_err(Error::from)?;
        let mut stale = vec![];
        for l in &links {
            let owned = bridges.contains(&l.name) || veths.contains(&l.name);
            if !owned && is_cove_link(&l.name, l.kind.as_deref()) {
                warn!(link = %l.name, "removing orphaned link");
                stale.push(Op::DeleteLink { netns: Netns::Host, name: l.name.clone() });
            }
        }
        for e in self.kernel.teardown(&stale).await {
            warn!(error = %e, "could not remove orphaned link");
        }

        // 4. Networks: (re)create what is missing; applying is idempotent.
        let present: HashSet<String> = links.iter().map(|l| l.name.clone()).collect();
        for net in st.networks.values() {
            if net.driver != DriverKind::Bridge {
                continue;
            }
            let mut ops = bridge::network_ops(net, self.cfg.firewall, self.cfg.firewall6)?;
            if present.contains(&net.bridge.as_ref().map(|b| b.name.clone()).unwrap_or_default()) {
                ops.retain(|o| !matches!(o, Op::CreateBridge { .. }));
            }
            self.kernel
                .apply(&ops)
                .await
                .map_err(|e| Error::from(e).context(format!("restore network {}", net.name)))?;
            if net.enable_ipv6 {
                self.enable_forwarding6()?;
            }
        }
        Ok(())
    }

    /// Create the built-in networks that do not exist yet.
    pub(crate) async fn ensure_builtins(&self, st: &mut State) -> Result<()> {
        for (req, device) in builtin_requests(self.cfg.bip, self.cfg.fixed_cidr, self.cfg.icc) {
            if let Some(existing) = st.networks.values().find(|n| n.name == req.name) {
                // `--icc` is the daemon's to say at every start, as with dockerd.
                if let Some(b) = existing.bridge.as_ref().filter(|b| b.enable_icc != self.cfg.icc) {
                    let mut net = existing.clone();
                    if let Some(nb) = net.bridge.as_mut() {
                        nb.enable_icc = self.cfg.icc;
                    }
                    if let Some(v) = net.options.get_mut(cove_drivers::bridge::keys::ICC) {
                        *v = self.cfg.icc.to_string();
                    }
                    info!(network = %net.name, icc = self.cfg.icc, was = b.enable_icc, "--icc changed");
                    let mut batch = cove_store::Batch::new();
                    batch.put(cove_store::Table::Networks, &net.id, &net);
                    self.store.commit(batch)?;
                    st.networks.insert(net.id.clone(), net);
                    continue;
                }
                if let (Some(bip), Some(pool)) = (self.cfg.bip, existing.pool_v4()) {
                    if pool.subnet != bip.trunc() {
                        warn!(
                            network = %existing.name,
                            subnet = %pool.subnet,
                            bip = %bip,
                            "--bip differs from the existing default bridge; keeping its subnet"
                        );
                    }
                }
                continue;
            }
            let net = self.plan_network(st, &req, cove_model::new_id(), true, device).await?;
            self.install_network(st, net).await?;
            info!(network = %req.name, "built-in network created");
        }
        Ok(())
    }
}
