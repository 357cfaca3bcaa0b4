//! Sandboxes and endpoints: allocate addresses, plan and apply the joins of a container's
//! network namespace, release them when it stops.

use std::net::IpAddr;
use std::path::PathBuf;
use tracing::{debug, warn};

use cove_drivers::plan::Op;
use cove_model::{
    ContainerId, ContainerRecord, EndpointId, EndpointRecord, EndpointSettings, Error, MacAddr,
    NetworkMode, NetworkRecord, Result,
};
use cove_store::Batch;

use cove_drivers::NetworkDriver;
use cove_ipam::IpamRegistry;

use crate::etc_files;
use crate::state::{delete_endpoint, ifindex, put_endpoint, State};
use crate::Controller;

/// Release an endpoint's addresses back to its network's pools, through the network's
/// IPAM driver.
pub(crate) fn release_ipam(ipam: &IpamRegistry, st: &mut State, ep: &EndpointRecord) {
    let driver = st.networks.get(&ep.network_id).and_then(|n| ipam.get(&n.ipam_driver).ok());
    let Some(driver) = driver.cloned() else { return };
    if let Some(v4) = ep.ipv4 {
        if let Some(p) = st.pool_mut(&ep.network_id, false) {
            driver.release_address(p, IpAddr::V4(v4.addr()));
        }
    }
    if let Some(v6) = ep.ipv6 {
        if let Some(p) = st.pool_mut(&ep.network_id, true) {
            driver.release_address(p, IpAddr::V6(v6.addr()));
        }
    }
}

/// Allocate addresses and names for one endpoint (in memory only).
fn allocate_endpoint(
    st: &mut State,
    ipam: &IpamRegistry,
    driver: &dyn NetworkDriver,
    container_id: &ContainerId,
    net: &NetworkRecord,
    settings: &EndpointSettings,
    ifname: String,
) -> Result<EndpointRecord> {
    let id = EndpointId::random();
    let mut ep = EndpointRecord {
        host_ifname: driver.endpoint_host_ifname(&id),
        id,
        network_id: net.id.clone(),
        container_id: container_id.clone(),
        ifname,
        mac: MacAddr([0; 6]),
        ipv4: None,
        ipv6: None,
        gateway4: None,
        gateway6: None,
        aliases: settings.aliases.clone(),
    };
    let addresses = ipam.get(&net.ipam_driver)?.clone();
    if let Some(pool) = net.pool_v4() {
        let state = st.pool_mut(&net.id, false).ok_or_else(|| {
            Error::internal(format!("network {} has no IPv4 pool state", net.name))
        })?;
        let addr = addresses
            .request_address(state, settings.ipv4_address)
            .map_err(|e| e.context(format!("network {}", net.name)))?;
        let IpAddr::V4(a) = addr else { unreachable!("the IPv4 pool returns IPv4 addresses") };
        ep.ipv4 = Some(ipnet::Ipv4Net::new(a, pool.subnet.prefix_len()).expect("valid prefix"));
        ep.gateway4 = pool.gateway.and_then(|g| match g {
            IpAddr::V4(g) => Some(g),
            IpAddr::V6(_) => None,
        });
    }
    if let (true, Some(pool)) = (net.enable_ipv6, net.pool_v6()) {
        let res = st
            .pool_mut(&net.id, true)
            .ok_or_else(|| Error::internal(format!("network {} has no IPv6 pool state", net.name)))
            .and_then(|s| addresses.request_address(s, settings.ipv6_address));
        let addr = match res {
            Ok(a) => a,
            Err(e) => {
                release_ipam(ipam, st, &ep);
                return Err(e.context(format!("network {}", net.name)));
            }
        };
        let IpAddr::V6(a) = addr else { unreachable!("the IPv6 pool returns IPv6 addresses") };
        ep.ipv6 = Some(ipnet::Ipv6Net::new(a, pool.subnet.prefix_len()).expect("valid prefix"));
        ep.gateway6 = pool.gateway.and_then(|g| match g {
            IpAddr::V6(g) => Some(g),
            IpAddr::V4(_) => None,
        });
    }
    ep.mac = settings
        .mac_address
        .or_else(|| ep.ipv4.map(|v4| MacAddr::from_ipv4(v4.addr())))
        .unwrap_or_else(MacAddr::random);
    Ok(ep)
}

/// Whether an endpoint can carry the sandbox's default route.
fn provides_gateway(st: &State, ep: &EndpointRecord) -> bool {
    st.networks
        .get(&ep.network_id)
        .is_some_and(|n| !n.internal && (ep.gateway4.is_some() || ep.gateway6.is_some()))
}

impl Controller {
    /// Path of a container's sandbox network namespace.
    pub(crate) fn sandbox_path(&self, container_id: &str) -> PathBuf {
        self.cfg.exec_root.join("netns").join(cove_model::short_id(container_id))
    }

    /// Build the sandbox of a container about to start: its network namespace and every
    /// endpoint, persisted before the kernel is touched. Returns the netns path (None for
    /// host mode). On failure nothing is left behind.
    #[tracing::instrument(level = "debug", name = "sandbox.setup", skip_all)]
    pub(crate) async fn setup_sandbox(
        &self,
        st: &mut State,
        c: &ContainerRecord,
    ) -> Result<Option<PathBuf>> {
        match &c.host_config.network_mode {
            NetworkMode::Host => return Ok(None),
            NetworkMode::Container(target) => {
                let t = st
                    .containers
                    .get(target.as_str())
                    .ok_or_else(|| Error::not_found(format!("No such container: {target}")))?;
                if t.state.status != cove_model::Status::Running || t.state.sandbox_key.is_empty() {
                    return Err(Error::conflict(format!(
                        "cannot join network namespace of a non running container: {}",
                        t.name
                    )));
                }
                return Ok(Some(PathBuf::from(&t.state.sandbox_key)));
            }
            NetworkMode::None | NetworkMode::Sandbox => {}
        }
        let path = self.sandbox_path(&c.id);
        let mut eps = vec![];
        if c.host_config.network_mode == NetworkMode::Sandbox {
            for (i, (net_id, settings)) in c.networks.iter().enumerate() {
                let net = match st.networks.get(net_id) {
                    Some(n) => n.clone(),
                    None => {
                        for ep in &eps {
                            release_ipam(&self.ipam, st, ep);
                        }
                        return Err(Error::not_found(format!("network {net_id} not found")));
                    }
                };
                let allocated = self.drivers.of(&net).and_then(|d| {
                    self.cluster_reserve(st, &net, &c.name, |st| {
                        allocate_endpoint(
                            st,
                            &self.ipam,
                            d.as_ref(),
                            &c.id,
                            &net,
                            settings,
                            format!("eth{i}"),
                        )
                    })
                });
                match allocated {
                    Ok(ep) => eps.push(ep),
                    Err(e) => {
                        for ep in &eps {
                            release_ipam(&self.ipam, st, ep);
                        }
                        return Err(e);
                    }
                }
            }
        }
        let mut batch = Batch::new();
        for ep in &eps {
            put_endpoint(&mut batch, ep);
        }
        let undo_ipam = |st: &mut State, eps: &[EndpointRecord]| {
            for ep in eps {
                release_ipam(&self.ipam, st, ep);
            }
        };
        if let Err(e) = self.store.commit(batch) {
            undo_ipam(st, &eps);
            return Err(e);
        }
        let result = async {
            self.kernel.create_netns(&path).await.map_err(Error::from)?;
            let mut ops: Vec<Op> = vec![];
            for ep in &eps {
                let net = &st.networks[&ep.network_id];
                ops.extend(self.drivers.of(net)?.join_ops(net, ep, &path)?);
            }
            if let Some(gw) = eps.iter().find(|e| provides_gateway(st, e)) {
                let net = &st.networks[&gw.network_id];
                ops.extend(self.drivers.of(net)?.gateway_ops(net, gw, &path));
            }
            self.kernel.apply(&ops).await.map_err(Error::from)
        }
        .await;
        if let Err(e) = result {
            if let Err(re) = self.kernel.remove_netns(&path).await {
                warn!(error = %re, "rollback: could not remove sandbox");
            }
            undo_ipam(st, &eps);
            let mut b = Batch::new();
            for ep in &eps {
                delete_endpoint(&mut b, ep);
                self.cluster_nudge.notify_one();
            }
            if let Err(se) = self.store.commit(b) {
                warn!(error = %se, "rollback: could not delete endpoint records");
            }
            return Err(e.context(format!("start container {}", c.name)));
        }
        for ep in eps {
            debug!(endpoint = %cove_model::short_id(&ep.id), ifname = %ep.ifname, "endpoint joined");
            st.endpoints.insert(ep.id.clone(), ep);
        }
        Ok(Some(path))
    }

    /// Release a stopped container's sandbox: unmount its netns (the kernel reaps the veth
    /// pairs) and free its endpoints. Keeps going past errors and logs them.
    #[tracing::instrument(level = "debug", name = "sandbox.release", skip_all)]
    pub(crate) async fn release_sandbox(&self, st: &mut State, c: &ContainerRecord) {
        self.kernel.release_ports(&c.id);
        // First: the resolver's sockets would keep the namespace (and its veths) alive.
        self.dns_detach(st, c);
        if matches!(c.host_config.network_mode, NetworkMode::Sandbox | NetworkMode::None) {
            let path = self.sandbox_path(&c.id);
            if let Err(e) = self.kernel.remove_netns(&path).await {
                warn!(container = %c.name, error = %e, "could not remove sandbox netns");
            }
        }
        let eps: Vec<EndpointRecord> =
            st.endpoints_of_container(&c.id).into_iter().cloned().collect();
        // The host's neighbour entries for the endpoints, before their records: a crash in
        // between leaves records, and the next start releases them again.
        let ops: Vec<Op> = eps
            .iter()
            .filter_map(|ep| st.networks.get(&ep.network_id).map(|n| (n, ep)))
            .filter_map(|(n, ep)| self.drivers.of(n).and_then(|d| d.release_ops(n, ep)).ok())
            .flatten()
            .collect();
        for e in self.kernel.teardown(&ops).await {
            warn!(container = %c.name, error = %e, "could not remove a neighbour entry");
        }
        let mut b = Batch::new();
        for ep in &eps {
            delete_endpoint(&mut b, ep);
            self.cluster_nudge.notify_one();
        }
        if let Err(e) = self.store.commit(b) {
            warn!(container = %c.name, error = %e, "could not delete endpoint records");
        }
        for ep in eps {
            release_ipam(&self.ipam, st, &ep);
            st.endpoints.remove(&ep.id);
        }
        self.dns_unlink(st, c);
    }

    /// Join one more network in a running container's sandbox.
    #[tracing::instrument(level = "debug", name = "sandbox.join", skip_all)]
    pub(crate) async fn join_network(
        &self,
        st: &mut State,
        c: &ContainerRecord,
        net_id: &str,
        settings: &EndpointSettings,
    ) -> Result<()> {
        let path = PathBuf::from(&c.state.sandbox_key);
        let existing: Vec<EndpointRecord> =
            st.endpoints_of_container(&c.id).into_iter().cloned().collect();
        let next = existing.iter().map(|e| ifindex(&e.ifname) + 1).max().unwrap_or(0);
        let net = st.networks[net_id].clone();
        let driver = self.drivers.of(&net)?.clone();
        let ep = self.cluster_reserve(st, &net, &c.name, |st| {
            allocate_endpoint(
                st,
                &self.ipam,
                driver.as_ref(),
                &c.id,
                &net,
                settings,
                format!("eth{next}"),
            )
        })?;
        let mut b = Batch::new();
        put_endpoint(&mut b, &ep);
        if let Err(e) = self.store.commit(b) {
            release_ipam(&self.ipam, st, &ep);
            return Err(e);
        }
        let mut ops = match driver.join_ops(&net, &ep, &path) {
            Ok(ops) => ops,
            Err(e) => {
                release_ipam(&self.ipam, st, &ep);
                let mut b = Batch::new();
                delete_endpoint(&mut b, &ep);
                self.cluster_nudge.notify_one();
                if let Err(se) = self.store.commit(b) {
                    warn!(error = %se, "rollback: could not delete endpoint record");
                }
                return Err(e);
            }
        };
        if !existing.iter().any(|e| provides_gateway(st, e)) && provides_gateway(st, &ep) {
            ops.extend(driver.gateway_ops(&net, &ep, &path));
        }
        // The firewall elements (anti-spoofing for the new port) and the links are
        // independent: program both at once, so the cost is the slower of the two.
        st.endpoints.insert(ep.id.clone(), ep.clone());
        let (kernel, firewall) = tokio::join!(self.kernel.apply(&ops), self.sync_firewall(st));
        let failed = match (kernel, firewall) {
            (Err(e), _) => Some(Error::from(e)),
            (Ok(()), Err(e)) => {
                // join_ops planned this network's ops, so leave_ops plans them too.
                let ops = driver.leave_ops(&net, &ep, &path).unwrap_or_default();
                let errors = self.kernel.teardown(&ops).await;
                for e in errors {
                    warn!(error = %e, "rollback: could not retire the new interface");
                }
                Some(e)
            }
            (Ok(()), Ok(())) => None,
        };
        if let Some(e) = failed {
            st.endpoints.remove(&ep.id);
            release_ipam(&self.ipam, st, &ep);
            let mut b = Batch::new();
            delete_endpoint(&mut b, &ep);
            self.cluster_nudge.notify_one();
            if let Err(se) = self.store.commit(b) {
                warn!(error = %se, "rollback: could not delete endpoint record");
            }
            self.sync_firewall_later(st);
            return Err(e.context(format!("connect {} to {}", c.name, net.name)));
        }
        self.refresh_hosts(st, c);
        Ok(())
    }

    /// Leave one network in a running container's sandbox; moves the default route to the
    /// next eligible endpoint if this one carried it.
    #[tracing::instrument(level = "debug", name = "sandbox.leave", skip_all)]
    ///
    /// The records go first, in one transaction with `updated` (the container's record
    /// without the network), then the kernel's objects: a crash in between leaves links no
    /// record owns, which the next reconciliation removes, never a record without its
    /// interface.
    pub(crate) async fn leave_network(
        &self,
        st: &mut State,
        c: &ContainerRecord,
        net_id: &str,
        updated: &ContainerRecord,
    ) -> Result<()> {
        let path = PathBuf::from(&c.state.sandbox_key);
        let eps: Vec<EndpointRecord> =
            st.endpoints_of_container(&c.id).into_iter().cloned().collect();
        let mut b = Batch::new();
        b.put(cove_store::Table::Containers, &updated.id, updated);
        let Some(ep) = eps.iter().find(|e| e.network_id == net_id).cloned() else {
            return self.store.commit(b).map(drop);
        };
        let was_gateway = eps.iter().find(|e| provides_gateway(st, e)).map(|e| e.id.clone());
        let net = &st.networks[&ep.network_id];
        let ops = self.drivers.of(net)?.leave_ops(net, &ep, &path)?;
        delete_endpoint(&mut b, &ep);
        self.cluster_nudge.notify_one();
        self.store.commit(b)?;
        for e in self.kernel.teardown(&ops).await {
            // Disconnected as far as the records go: reconciliation takes what is left.
            warn!(container = %c.name, error = %e, "could not remove the interface of a disconnected endpoint");
        }
        self.dns_endpoint_removed(&ep);
        release_ipam(&self.ipam, st, &ep);
        st.endpoints.remove(&ep.id);
        if was_gateway.as_deref() == Some(ep.id.as_str()) {
            if let Some(next) = eps.iter().find(|e| e.id != ep.id && provides_gateway(st, e)) {
                let net = &st.networks[&next.network_id];
                let ops = match self.drivers.of(net) {
                    Ok(d) => d.gateway_ops(net, next, &path),
                    Err(_) => vec![],
                };
                if let Err(e) = self.kernel.apply(&ops).await {
                    warn!(container = %c.name, error = %e, "could not move the default route");
                }
            }
        }
        self.refresh_hosts(st, c);
        Ok(())
    }

    /// The container's addresses, for `/etc/hosts`.
    pub(crate) fn own_addresses(st: &State, container_id: &str) -> Vec<IpAddr> {
        let eps = st.endpoints_of_container(container_id);
        let v4 = eps.iter().filter_map(|e| e.ipv4.map(|a| IpAddr::V4(a.addr())));
        let v6 = eps.iter().filter_map(|e| e.ipv6.map(|a| IpAddr::V6(a.addr())));
        v4.chain(v6).collect()
    }

    /// The default bridge's gateway, which `host-gateway` stands for.
    pub(crate) fn host_gateway(st: &State) -> Option<IpAddr> {
        st.networks
            .values()
            .find(|n| n.builtin && n.name == cove_model::DEFAULT_NETWORK)
            .and_then(|n| n.pool_v4())
            .and_then(|p| p.gateway)
    }

    /// Generate `/etc/hosts` for a container.
    pub(crate) fn hosts_for(st: &State, c: &ContainerRecord) -> Result<String> {
        let mut extra =
            etc_files::parse_extra_hosts(&c.host_config.extra_hosts, Self::host_gateway(st))?;
        // Links after `--add-host`, as Docker orders its extra hosts.
        extra.extend(Self::link_hosts(st, c));
        // Containers sharing another's stack list that container's addresses.
        let owner = match &c.host_config.network_mode {
            NetworkMode::Container(t) => t.as_str(),
            _ => c.id.as_str(),
        };
        Ok(etc_files::hosts_file(
            &c.config.hostname,
            &c.config.domainname,
            &Self::own_addresses(st, owner),
            &extra,
        ))
    }

    /// Rewrite a running container's `/etc/hosts` after its addresses changed.
    pub(crate) fn refresh_hosts(&self, st: &State, c: &ContainerRecord) {
        match Self::hosts_for(st, c) {
            Ok(h) => {
                if let Err(e) = self.runtime.write_etc_file(&c.id, "hosts", &h) {
                    warn!(container = %c.name, error = %e, "could not update /etc/hosts");
                }
            }
            Err(e) => warn!(container = %c.name, error = %e, "could not generate /etc/hosts"),
        }
    }

    /// Generate `/etc/resolv.conf` for a container from the daemon's own: the embedded
    /// resolver for containers on user-defined networks, the host's servers otherwise. A
    /// container sharing another's stack gets that container's.
    pub(crate) fn resolv_for(st: &State, c: &ContainerRecord) -> String {
        let owner = match &c.host_config.network_mode {
            NetworkMode::Container(t) => st.containers.get(t.as_str()).unwrap_or(c),
            _ => c,
        };
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let dns = etc_files::DnsSettings {
            servers: &owner.host_config.dns,
            search: &owner.host_config.dns_search,
            options: &owner.host_config.dns_options,
        };
        if crate::dns::dns_enabled(st, owner) {
            return etc_files::resolv_conf_internal(&host, &dns);
        }
        let ipv6 = st.endpoints_of_container(&owner.id).iter().any(|e| e.ipv6.is_some());
        etc_files::resolv_conf(&host, &dns, ipv6)
    }

    /// Rewrite a running container's `/etc/resolv.conf` (after it joined or left the last
    /// user-defined network, which switches the embedded resolver on or off).
    pub(crate) fn refresh_resolv(&self, st: &State, c: &ContainerRecord) {
        if let Err(e) = self.runtime.write_etc_file(&c.id, "resolv.conf", &Self::resolv_for(st, c))
        {
            warn!(container = %c.name, error = %e, "could not update /etc/resolv.conf");
        }
    }
}
