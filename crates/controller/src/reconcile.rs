//! Start-up: built-in networks, and reconciling the kernel and the runtime with the store.
//! Objects of live containers stay; objects whose owner is gone are removed.

use std::collections::HashSet;
use std::path::PathBuf;
use tracing::{info, warn};

use cove_drivers::plan::{Netns, Op, OWNED_LINK_GROUP};
use cove_drivers::{builtin_networks, DefaultNetworkFlags, NetworkRequest};
use cove_model::{Error, Result};

use crate::networks::{builtin_request, Origin};
use crate::state::State;
use crate::Controller;

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

        // 3. Host links Cove made (its link group says so) that no record owns, and links
        //    condemned by detaches the reaper did not get to before the daemon stopped.
        let mut owned: HashSet<String> =
            st.endpoints.values().filter_map(|e| e.host_ifname.clone()).collect();
        for net in st.networks.values() {
            let driver = self.drivers.of(net)?;
            owned.extend(driver.claims(&net.config).into_iter().map(|c| c.link));
        }
        let links = self.kernel.links().await.map_err(Error::from)?;
        let mut stale = vec![];
        for l in &links {
            if l.group == OWNED_LINK_GROUP && !owned.contains(&l.name) {
                warn!(link = %l.name, "removing orphaned link");
                stale.push(Op::DeleteLink { netns: Netns::Host, name: l.name.clone() });
            }
        }
        for e in self.kernel.teardown(&stale).await {
            warn!(error = %e, "could not remove orphaned link");
        }
        if let Err(e) = self.kernel.reap_condemned().await {
            warn!(error = %e, "could not remove condemned links");
        }

        // 4. Networks: (re)create what is missing; applying is idempotent.
        let present: HashSet<&str> = links.iter().map(|l| l.name.as_str()).collect();
        for net in st.networks.values() {
            let mut ops = self.drivers.of(net)?.network_ops(net, &self.plan_context())?;
            ops.retain(|o| o.created_host_link().is_none_or(|l| !present.contains(l)));
            self.kernel
                .apply(&ops)
                .await
                .map_err(|e| Error::from(e).context(format!("restore network {}", net.name)))?;
            if net.enable_ipv6 {
                self.enable_forwarding6().await?;
            }
        }
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
