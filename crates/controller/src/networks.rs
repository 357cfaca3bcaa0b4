//! Network lifecycle: create, list, inspect, remove, prune, connect, disconnect.

use ipnet::IpNet;
use tracing::{info, warn};

use cove_drivers::{BuiltinNetwork, Claim, NetworkRequest, PlanContext};
use cove_ipam::{PoolState, PoolsRequest};
use cove_model::{
    ContainerId, EndpointSettings, Error, NetworkId, NetworkMode, NetworkRecord, Result,
};
use cove_plan::HostState;
use cove_store::{Batch, Table};

use crate::state::State;
use crate::{Controller, NetworkCreate, NetworkView};

/// Validate a network name (Docker accepts the container-name alphabet).
fn validate_network_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("network name must not be empty"));
    }
    cove_model::validate_name("network", name)
}

/// Who asks for a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin<'a> {
    /// A user, through the API.
    User,
    /// The daemon, for a built-in network, with the device name it asks for.
    Builtin(Option<&'a str>),
}

/// What the host has that a new network must not collide with, asked of the kernel before
/// planning (planning itself asks nothing).
#[derive(Debug, Default)]
pub(crate) struct HostFacts {
    /// Destination prefixes of the host's routes.
    pub(crate) routes: Vec<IpNet>,
}

/// Subnets in use by other networks and routes the host already has, for IPAM.
fn subnets_in_use(st: &State, facts: &HostFacts) -> Vec<(String, IpNet)> {
    let mut used: Vec<(String, IpNet)> = st
        .networks
        .values()
        .flat_map(|n| n.ipam.iter().map(move |p| (format!("network {}", n.name), p.subnet)))
        .collect();
    let ours: Vec<IpNet> = used.iter().map(|(_, s)| *s).collect();
    for route in &facts.routes {
        // Our own networks' connected routes are already listed as networks.
        if !ours.contains(route) {
            used.push(("a host route".to_string(), *route));
        }
    }
    used
}

impl Controller {
    /// The settings plans depend on.
    pub(crate) fn plan_context(&self) -> PlanContext {
        PlanContext {
            firewall: self.cfg.firewall,
            firewall6: self.cfg.firewall6,
            underlay: self.underlay(),
        }
    }

    /// This host's underlay, with its tunnel address while encryption can be enforced.
    pub(crate) fn underlay(&self) -> Option<cove_drivers::Underlay> {
        self.cluster().map(|c| cove_drivers::Underlay { tunnel: self.tunnel_ip(), ..c.underlay })
    }

    /// The host's facts a network plan needs (one route dump; no link listing).
    #[tracing::instrument(level = "debug", name = "network.facts", skip_all)]
    pub(crate) async fn host_facts(&self) -> Result<HostFacts> {
        Ok(HostFacts { routes: self.kernel.route_prefixes().await.map_err(Error::from)? })
    }

    /// Build a validated network record from the request and the host's facts. Pure: no
    /// kernel question, no store write. Returns the kernel names the network claims, which
    /// the caller checks on the host ([`Controller::check_claims`]).
    #[tracing::instrument(level = "debug", name = "network.plan", skip_all)]
    pub(crate) fn plan_network(
        &self,
        st: &State,
        req: &NetworkCreate,
        id: NetworkId,
        origin: Origin<'_>,
        facts: &HostFacts,
    ) -> Result<(NetworkRecord, Vec<Claim>)> {
        validate_network_name(&req.name)?;
        if st.networks.values().any(|n| n.name == req.name) {
            return Err(Error::conflict(format!("network with name {} already exists", req.name)));
        }
        let driver = self.drivers.get(&req.driver)?;
        let cap = driver.capability();
        if origin == Origin::User && cap.builtin_only {
            return Err(Error::forbidden(format!(
                "only one instance of \"{}\" network is allowed",
                driver.name()
            )));
        }
        let ipam_driver = self.ipam.get(&req.ipam_driver)?;
        if !cap.ipam && !req.ipam_config.is_empty() {
            return Err(Error::invalid(format!(
                "the {} driver takes no options or IPAM configuration",
                driver.name()
            )));
        }
        let config = driver
            .validate(&NetworkRequest {
                id: &id,
                options: &req.options,
                default_mtu: self.cfg.mtu,
                device: match origin {
                    Origin::Builtin(device) => device,
                    Origin::User => None,
                },
                underlay: self.underlay(),
            })
            .map_err(|e| self.explain_encryption(e))?;
        let claims = driver.claims(&config);
        for claim in &claims {
            if let Some(other) = st
                .networks
                .values()
                .find(|n| self.drivers.of(n).is_ok_and(|d| d.claims(&n.config).contains(claim)))
            {
                return Err(Error::conflict(format!(
                    "{} {} is already used by network {}",
                    claim.what, claim.link, other.name
                )));
            }
        }
        // IPAM options are kept and shown by inspect; the default driver, like Docker's,
        // acts on none of them.
        let ipam = if cap.ipam {
            let default_pools = match cap.scope {
                cove_drivers::Scope::Global => cove_ipam::default_global_pools(),
                cove_drivers::Scope::Local => {
                    cove_ipam::effective_pools(&self.cfg.default_address_pools)
                }
            };
            ipam_driver.request_pools(&PoolsRequest {
                pools: &req.ipam_config,
                enable_ipv6: req.enable_ipv6,
                default_pools: &default_pools,
                in_use: &subnets_in_use(st, facts),
            })?
        } else {
            vec![]
        };
        let net = NetworkRecord {
            id,
            name: req.name.clone(),
            driver: driver.name().to_string(),
            created: crate::now(),
            enable_ipv6: req.enable_ipv6,
            internal: req.internal,
            attachable: req.attachable,
            ipam_driver: ipam_driver.name().to_string(),
            ipam_options: req.ipam_options.clone(),
            ipam,
            options: req.options.clone(),
            labels: req.labels.clone(),
            config,
            builtin: origin != Origin::User,
        };
        Ok((net, claims))
    }

    /// The names a new network claims must not exist on the host yet. A link of that name
    /// the reaper has not deleted yet (a removed network's bridge) is reaped first.
    pub(crate) async fn check_claims(&self, claims: &[Claim]) -> Result<()> {
        let mut reaped = false;
        for claim in claims {
            let mut exists = self.kernel.link_exists(&claim.link).await.map_err(Error::from)?;
            if exists && !reaped {
                self.kernel.reap_condemned().await.map_err(Error::from)?;
                reaped = true;
                exists = self.kernel.link_exists(&claim.link).await.map_err(Error::from)?;
            }
            if exists {
                return Err(Error::conflict(format!(
                    "{} {} is already used by an existing interface on the host",
                    claim.what, claim.link
                )));
            }
        }
        Ok(())
    }

    /// Plan a network from a request and check its claims on the host.
    pub(crate) async fn prepare_network(
        &self,
        st: &State,
        req: &NetworkCreate,
        origin: Origin<'_>,
    ) -> Result<NetworkRecord> {
        let facts = self.host_facts().await?;
        let (net, claims) = self.plan_network(st, req, NetworkId::random(), origin, &facts)?;
        self.check_claims(&claims).await?;
        Ok(net)
    }

    /// Store the record (intent first), then create its kernel objects and its firewall
    /// elements; roll everything back if the kernel or the firewall refuses.
    #[tracing::instrument(level = "debug", name = "network.install", skip_all)]
    pub(crate) async fn install_network(&self, st: &mut State, net: NetworkRecord) -> Result<()> {
        // IPv6 forwarding first: refused, there is nothing to undo yet.
        if net.enable_ipv6 {
            self.enable_forwarding6()
                .await
                .map_err(|e| e.context(format!("create network {}", net.name)))?;
        }
        let mut b = Batch::new();
        b.put(Table::Networks, &net.id, &net);
        self.store.commit(b)?;
        let plan = self.drivers.of(&net)?.network_ops(&net, &self.plan_context())?;
        let desired = HostState::from_ops(&plan);
        let ops = cove_plan::diff(&desired, &HostState::default());
        if let Err(e) = self.kernel.apply(&ops).await {
            self.forget_network_record(&net);
            return Err(Error::from(e).context(format!("create network {}", net.name)));
        }
        for pool in &net.ipam {
            st.pools
                .insert((net.id.to_string(), pool.subnet.addr().is_ipv6()), PoolState::new(pool));
        }
        st.networks.insert(net.id.clone(), net.clone());
        if let Err(e) = self.sync_firewall(st).await {
            // Not guarded, not usable: the network goes again, all of it.
            st.networks.remove(&net.id);
            st.pools.retain(|(n, _), _| *n != net.id);
            let undo = cove_plan::diff(&HostState::default(), &desired);
            for ke in self.kernel.teardown(&undo).await {
                warn!(network = %net.name, error = %ke, "rollback: could not remove the network");
            }
            self.forget_network_record(&net);
            self.sync_firewall_later(st);
            return Err(e.context(format!("create network {}", net.name)));
        }
        info!(network = %net.name, id = %cove_model::short_id(&net.id), "network created");
        self.dns_network_added(&net);
        Ok(())
    }

    /// Roll back the record of a network that could not be created.
    fn forget_network_record(&self, net: &NetworkRecord) {
        let mut b = Batch::new();
        b.delete(Table::Networks, &net.id);
        if let Err(se) = self.store.commit(b) {
            warn!(network = %net.name, error = %se, "could not roll back network record");
        }
    }

    /// Create a network; returns its id.
    #[tracing::instrument(name = "network.create", skip_all, fields(name = %req.name))]
    pub async fn network_create(&self, req: NetworkCreate) -> Result<NetworkId> {
        let _timer = self.metrics.network_action_timer("create");
        if self
            .drivers
            .get(&req.driver)
            .is_ok_and(|d| d.capability().scope == cove_drivers::Scope::Global)
        {
            self.cluster_reachable(&format!("create network {}", req.name))?;
        }
        let mut st = self.state.lock().await;
        let mut net = self.prepare_network(&st, &req, Origin::User).await?;
        let global = self.is_global(&net);
        if global {
            net = self.cluster_create_network(net)?;
        }
        let id = net.id.clone();
        if let Err(e) = self.install_network(&mut st, net.clone()).await {
            if global {
                if let Err(ce) = self.cluster_remove_network(&net) {
                    warn!(network = %net.name, error = %ce, "rollback: could not remove the network from the cluster");
                }
            }
            return Err(e);
        }
        self.network_event(&st.networks[id.as_str()], "create", None);
        Ok(id)
    }

    fn view(&self, st: &State, net: &NetworkRecord) -> NetworkView {
        let endpoints = st
            .endpoints_of_network(&net.id)
            .into_iter()
            .map(|e| {
                let name =
                    st.containers.get(&e.container_id).map(|c| c.name.clone()).unwrap_or_default();
                (e.clone(), name)
            })
            .collect();
        let scope = self.drivers.of(net).map_or("local", |d| d.capability().scope.as_str());
        let mut peers: Vec<(String, std::net::IpAddr)> = st
            .peers
            .values()
            .filter(|p| p.endpoint.endpoint.network_id == net.id)
            .map(|p| (p.host_name.clone(), p.host))
            .collect();
        if let Some(c) = self.cluster().filter(|_| !st.endpoints_of_network(&net.id).is_empty()) {
            peers.push((c.node.hostname.clone(), c.node.advertise));
        }
        peers.sort();
        peers.dedup();
        let encryption = self.encryption_view(st, net);
        NetworkView { record: net.clone(), endpoints, scope, peers, encryption }
    }

    /// Every network.
    pub async fn network_list(&self) -> Vec<NetworkView> {
        let st = self.state.lock().await;
        st.networks.values().map(|n| self.view(&st, n)).collect()
    }

    /// One network by name, id or unique id prefix.
    pub async fn network_get(&self, reference: &str) -> Result<NetworkView> {
        let st = self.state.lock().await;
        let net = st.network(reference)?;
        Ok(self.view(&st, net))
    }

    async fn remove_network_locked(&self, st: &mut State, id: &str) -> Result<()> {
        let net = st.networks[id].clone();
        if net.builtin {
            return Err(Error::forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                net.name
            )));
        }
        // A global network's endpoints are in the cluster (this host's too): the check there
        // names them all, with their hosts.
        if self.is_global(&net) {
            self.cluster_remove_network(&net)?;
        } else if !st.endpoints_of_network(id).is_empty() {
            return Err(Error::forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                net.name, net.id
            )));
        }
        // Everything of the network goes: its addresses at once (its subnet is free for the
        // next network before this answers), its bridge condemned and deleted by the
        // executor's reaper, off this path (a new network claiming its name reaps it first).
        let plan = self.drivers.of(&net)?.network_ops(&net, &self.plan_context())?;
        let ops = cove_plan::diff(&HostState::default(), &HostState::from_ops(&plan));
        let errors = self.kernel.teardown(&ops).await;
        if !errors.is_empty() {
            let msgs: Vec<String> = errors.into_iter().map(|e| Error::from(e).message).collect();
            return Err(Error::internal(format!(
                "remove network {}: {}",
                net.name,
                msgs.join("; ")
            )));
        }
        // Stopped containers forget the network, so they start without it.
        let mut b = Batch::new();
        b.delete(Table::Networks, id);
        let mut changed = vec![];
        for c in st.containers.values() {
            if c.networks.iter().any(|(n, _)| n == id) {
                let mut c = c.clone();
                c.networks.retain(|(n, _)| n != id);
                b.put(Table::Containers, &c.id, &c);
                changed.push(c);
            }
        }
        self.store.commit(b)?;
        for c in changed {
            st.containers.insert(c.id.clone(), c);
        }
        st.networks.remove(id);
        st.pools.retain(|(n, _), _| n != id);
        self.dns_network_removed(id);
        self.network_event(&net, "destroy", None);
        info!(network = %net.name, "network removed");
        self.sync_firewall_later(st);
        Ok(())
    }

    /// Remove a network (refused for built-ins and networks with active endpoints).
    #[tracing::instrument(name = "network.remove", skip(self))]
    pub async fn network_remove(&self, reference: &str) -> Result<()> {
        let _timer = self.metrics.network_action_timer("remove");
        let global = {
            let st = self.state.lock().await;
            st.network(reference).ok().filter(|n| self.is_global(n)).map(|n| n.name.clone())
        };
        if let Some(name) = global {
            self.cluster_reachable(&format!("remove network {name}"))?;
            self.network_free_of_services(&name).await?;
        }
        let mut st = self.state.lock().await;
        let id = st.network_id(reference)?;
        self.remove_network_locked(&mut st, &id).await
    }

    /// Remove every unused, non-built-in network `select` accepts; returns their names.
    pub async fn network_prune(
        &self,
        select: &(dyn Fn(&NetworkRecord) -> bool + Send + Sync),
    ) -> Result<Vec<String>> {
        let mut st = self.state.lock().await;
        let candidates: Vec<(NetworkId, String)> = st
            .networks
            .values()
            .filter(|n| !n.builtin && select(n))
            .filter(|n| st.endpoints_of_network(&n.id).is_empty())
            .filter(|n| {
                !st.containers.values().any(|c| c.networks.iter().any(|(id, _)| *id == n.id))
            })
            .map(|n| (n.id.clone(), n.name.clone()))
            .collect();
        let mut removed = vec![];
        for (id, name) in candidates {
            match self.remove_network_locked(&mut st, &id).await {
                Ok(()) => removed.push(name),
                Err(e) => warn!(network = %name, error = %e, "prune: could not remove network"),
            }
        }
        Ok(removed)
    }

    /// The container a connect or disconnect is about, after checking, without the state
    /// lock, that the cluster store answers when the network is global (a store that is
    /// down must not hold every other request behind its deadline).
    async fn endpoint_change_target(
        &self,
        network: &str,
        container: &str,
        verb: &str,
        preposition: &str,
    ) -> Result<ContainerId> {
        let (id, global) = {
            let st = self.state.lock().await;
            let global =
                st.network(network).ok().filter(|n| self.is_global(n)).map(|n| n.name.clone());
            (st.container_id(container)?, global)
        };
        if let Some(name) = global {
            self.cluster_reachable(&format!("{verb} {container} {preposition} {name}"))?;
        }
        Ok(id)
    }

    /// Connect a container (running or not) to a network.
    #[tracing::instrument(name = "network.connect", skip(self, settings))]
    pub async fn network_connect(
        &self,
        network: &str,
        container: &str,
        settings: EndpointSettings,
    ) -> Result<()> {
        let _timer = self.metrics.network_action_timer("connect");
        let id = self.endpoint_change_target(network, container, "connect", "to").await?;
        let _own = self.container_lock(&id).lock_owned().await;
        let mut st = self.state.lock().await;
        let net = st.network(network)?.clone();
        let c = st.container(container)?.clone();
        if c.host_config.network_mode != NetworkMode::Sandbox {
            return Err(Error::invalid(format!(
                "container {} shares the network stack of {}: it cannot be connected to another network",
                c.name, c.host_config.network_mode_name
            )));
        }
        if !self.drivers.of(&net)?.capability().endpoints {
            return Err(Error::invalid(format!(
                "container cannot be connected to network {}: a container on its own network stack cannot join the {} network",
                net.name, net.driver
            )));
        }
        if c.networks.iter().any(|(n, _)| *n == net.id) {
            return Err(Error::forbidden(format!(
                "endpoint with name {} already exists in network {}",
                c.name, net.name
            )));
        }
        check_endpoint_settings(&net, &settings)?;
        // Checked as `--link` is; kept as given (Docker's inspect shows them so).
        crate::links::check_at_create(&st, &c.name, &NetworkMode::Sandbox, &settings.links)?;
        let mut updated = c.clone();
        updated.networks.push((net.id.clone(), settings.clone()));
        if c.state.status == cove_model::Status::Running {
            self.join_network(&mut st, &updated, &net.id, &settings).await?;
        }
        let mut b = Batch::new();
        b.put(Table::Containers, &updated.id, &updated);
        self.store.commit(b)?;
        st.containers.insert(updated.id.clone(), updated.clone());
        if updated.state.status == cove_model::Status::Running {
            self.dns_after_change(&st, &updated).await;
        }
        self.network_event(&net, "connect", Some(&updated.id));
        Ok(())
    }

    /// Disconnect a container from a network.
    #[tracing::instrument(name = "network.disconnect", skip(self))]
    pub async fn network_disconnect(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> Result<()> {
        let _ = force;
        let _timer = self.metrics.network_action_timer("disconnect");
        let id = self.endpoint_change_target(network, container, "disconnect", "from").await?;
        let _own = self.container_lock(&id).lock_owned().await;
        let mut st = self.state.lock().await;
        let net = st.network(network)?.clone();
        let c = st.container(container)?.clone();
        if !c.networks.iter().any(|(n, _)| *n == net.id) {
            return Err(Error::not_found(format!(
                "container {} is not connected to network {}",
                c.name, net.name
            )));
        }
        if net.builtin && !self.drivers.of(&net)?.capability().endpoints {
            return Err(Error::invalid(format!(
                "container {} cannot be disconnected from the {} network: change its network mode instead",
                c.name, net.name
            )));
        }
        let mut updated = c.clone();
        updated.networks.retain(|(n, _)| *n != net.id);
        if c.state.status == cove_model::Status::Running {
            self.leave_network(&mut st, &c, &net.id, &updated).await?;
        } else {
            let mut b = Batch::new();
            b.put(Table::Containers, &updated.id, &updated);
            self.store.commit(b)?;
        }
        st.containers.insert(updated.id.clone(), updated.clone());
        if updated.state.status == cove_model::Status::Running {
            self.dns_after_change(&st, &updated).await;
        }
        self.sync_firewall_later(&st);
        self.network_event(&net, "disconnect", Some(&updated.id));
        Ok(())
    }
}

/// Checks on `--ip`, `--ip6`, `--alias` that Docker makes before anything is allocated.
pub(crate) fn check_endpoint_settings(net: &NetworkRecord, s: &EndpointSettings) -> Result<()> {
    let user_subnet = !net.builtin;
    if (s.ipv4_address.is_some() || s.ipv6_address.is_some()) && !user_subnet {
        return Err(Error::invalid(
            "user specified IP address is supported on user defined networks only",
        ));
    }
    if !s.aliases.is_empty() && net.builtin {
        return Err(Error::invalid(
            "network-scoped alias is supported only for containers in user defined networks",
        ));
    }
    if !s.links.is_empty() && net.builtin {
        return Err(Error::invalid("links are only supported for user-defined networks"));
    }
    for (addr, v6) in [(s.ipv4_address, false), (s.ipv6_address, true)] {
        let Some(addr) = addr else { continue };
        if addr.is_ipv6() != v6 {
            return Err(Error::invalid(format!(
                "invalid {} address {addr}",
                if v6 { "IPv6" } else { "IPv4" }
            )));
        }
        let pool = if v6 { net.pool_v6() } else { net.pool_v4() };
        match pool {
            Some(p) if p.subnet.contains(&addr) => {}
            Some(p) => {
                return Err(Error::invalid(format!(
                    "requested address {addr} is outside the subnet {} of network {}",
                    p.subnet, net.name
                )))
            }
            None => {
                return Err(Error::invalid(format!(
                    "network {} has no {} subnet for address {addr}",
                    net.name,
                    if v6 { "IPv6" } else { "IPv4" }
                )))
            }
        }
    }
    for a in &s.aliases {
        if a.is_empty() || a.len() > 253 || a.split('.').any(|l| l.is_empty() || l.len() > 63) {
            return Err(Error::invalid(format!("invalid alias \"{a}\": not a valid DNS name")));
        }
    }
    Ok(())
}

/// The request that creates a built-in network (see `cove_drivers::builtin_networks`).
pub(crate) fn builtin_request(b: &BuiltinNetwork) -> NetworkCreate {
    NetworkCreate {
        name: b.name.into(),
        driver: b.driver.into(),
        options: b.options.clone(),
        ipam_config: b
            .pools
            .iter()
            .map(|p| crate::IpamConfigRequest {
                subnet: Some(p.subnet),
                ip_range: p.ip_range,
                gateway: p.gateway,
                aux_addresses: vec![],
            })
            .collect(),
        ..Default::default()
    }
}
