//! Services: a spec run as tasks over the cluster's nodes, behind one name.
//!
//! A service lives in the cluster store (`services/<id>`, its name in `service-names/`,
//! its virtual IPs as address reservations of their networks, all in one transaction).
//! The leader's orchestrator ([`orchestrate`]) turns services into tasks (`tasks/<id>`),
//! each assigned to a node; every node's agent ([`agent`]) runs the containers of the
//! tasks assigned to it and reports their state. Every host derives its load balancing
//! and DNS records from the same records.

pub(crate) mod agent;
pub(crate) mod dataplane;
pub mod leader;
pub(crate) mod nodeaddr;
pub(crate) mod orchestrate;

use std::collections::BTreeSet;

use cove_model::{
    EndpointMode, Error, ErrorKind, NetworkRecord, PublishMode, Result, ServicePlan, ServiceRecord,
    ServiceVip, TaskRecord,
};
use cove_store::{Batch, Table};
use tracing::info;

use crate::cluster::ClusterSeam;
use crate::Controller;

/// How many times a VIP is tried again when another host took the address first.
const VIP_TRIES: usize = 64;
/// How long a network removal waits for the tasks leaving it: their stop timeout, the
/// drain before it, and some slack.
const LEAVING_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// Where swarmkit picks published ports that were not given.
const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// A service as the API hands it in: the client's spec, what Cove parsed from it, and
/// its networks by the names or ids the client used.
#[derive(Debug, Clone)]
pub struct ServiceRequest {
    /// The spec as sent (returned verbatim by inspect).
    pub spec: serde_json::Value,
    /// What Cove acts on; `networks` is filled in from `networks` below.
    pub plan: ServicePlan,
    /// `(network reference, aliases)`, in order.
    pub networks: Vec<(String, Vec<String>)>,
}

/// Whether `name` can be a service name, as swarmkit checks it
/// (`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`, at most 63): `docker stack` names its services
/// `<stack>_<name>`.
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        && !matches!(b[0], b'-' | b'_')
        && !matches!(b[b.len() - 1], b'-' | b'_')
}

impl Controller {
    fn services_cluster(&self) -> Result<&ClusterSeam> {
        self.cluster().ok_or_else(|| {
            Error::unavailable(
                "services need a cluster: this node is not part of one (start the daemon with \
                 --cluster-store and --cluster-advertise)",
            )
        })
    }

    /// Every service.
    pub fn service_list(&self) -> Result<Vec<ServiceRecord>> {
        let c = self.services_cluster()?;
        Ok(c.store.list::<ServiceRecord>(Table::Services)?.into_iter().map(|(_, s)| s).collect())
    }

    /// A service by id, name or unique id prefix. An id or a name is one or two key
    /// reads; only a prefix lists the services.
    pub fn service_get(&self, reference: &str) -> Result<ServiceRecord> {
        let c = self.services_cluster()?;
        if let Some(s) = c.store.get::<ServiceRecord>(Table::Services, reference)? {
            return Ok(s);
        }
        if let Some(id) = c.store.get::<String>(Table::ServiceNames, reference)? {
            if let Some(s) = c.store.get::<ServiceRecord>(Table::Services, &id)? {
                return Ok(s);
            }
        }
        let all = self.service_list()?;
        if let Some(s) = all.iter().find(|s| s.id == reference || s.plan.name == reference) {
            return Ok(s.clone());
        }
        let mut by_prefix = all.into_iter().filter(|s| s.id.starts_with(reference));
        match (by_prefix.next(), by_prefix.next()) {
            (Some(s), None) if !reference.is_empty() => Ok(s),
            (Some(_), Some(_)) => Err(Error::not_found(format!(
                "service {reference} is ambiguous (more than one service has that id prefix)"
            ))),
            _ => Err(Error::not_found(format!("service {reference} not found"))),
        }
    }

    /// Every task (of every service, on every node).
    pub fn task_list(&self) -> Result<Vec<TaskRecord>> {
        let c = self.services_cluster()?;
        Ok(c.store.list::<TaskRecord>(Table::Tasks)?.into_iter().map(|(_, t)| t).collect())
    }

    /// A task by id or unique id prefix.
    pub fn task_get(&self, reference: &str) -> Result<TaskRecord> {
        let all = self.task_list()?;
        if let Some(t) = all.iter().find(|t| t.id == reference) {
            return Ok(t.clone());
        }
        let mut m =
            all.into_iter().filter(|t| !reference.is_empty() && t.id.starts_with(reference));
        match (m.next(), m.next()) {
            (Some(t), None) => Ok(t),
            _ => Err(Error::not_found(format!("task {reference} not found"))),
        }
    }

    /// Create a service: its record, its name and its VIPs in one transaction. The
    /// orchestrator then gives it tasks.
    pub async fn service_create(&self, req: ServiceRequest) -> Result<ServiceRecord> {
        let c = self.services_cluster()?.clone();
        let name = req.plan.name.clone();
        if !valid_name(&name) {
            return Err(Error::invalid(format!(
                "invalid service name {name:?}: a service name must be valid as a DNS name \
                 component (letters, digits and '-', at most 63)"
            )));
        }
        let mut plan = req.plan;
        plan.networks = self.service_networks(&req.networks).await?;
        let others = self.service_list()?;
        check_plan(&plan, &others)?;
        if plan.networks.is_empty() && has_ingress_ports(&plan) {
            // As Docker's: a service that publishes through the routing mesh without a
            // network of its own gets the `ingress` network.
            let id = self.ingress_network().await?;
            plan.networks.push(cove_model::ServiceNetwork { network_id: id, aliases: vec![] });
        }
        assign_published_ports(&mut plan, &others);
        let now = crate::now();
        let mut svc = ServiceRecord {
            id: cove_model::new_object_id(),
            version: 1,
            task_version: 1,
            created_at: now.clone(),
            updated_at: now,
            spec: req.spec,
            previous_spec: None,
            plan,
            vips: vec![],
        };
        for _ in 0..VIP_TRIES {
            // A VIP another host took stays marked used in the pool: the next try gets
            // another address.
            svc.vips = vec![];
            svc.vips = self.allocate_vips(&svc).await?;
            let mut b = Batch::new();
            b.require_absent(Table::ServiceNames, &name);
            b.put(Table::ServiceNames, &name, &svc.id);
            b.put(Table::Services, &svc.id, &svc);
            reserve_vips(&mut b, &svc);
            match c.store.commit(b) {
                Ok(_) => {
                    info!(service = %name, id = %svc.id, "service created");
                    self.services_nudge();
                    return Ok(svc);
                }
                Err(e) if e.kind == ErrorKind::Conflict => {
                    if c.store.get::<String>(Table::ServiceNames, &name)?.is_some() {
                        return Err(Error::conflict(format!(
                            "name conflicts with an existing object: service {name} already exists"
                        )));
                    }
                    // A VIP another host took first: try the next address.
                }
                Err(e) => return Err(e.context(format!("service {name}"))),
            }
        }
        Err(Error::unavailable(format!(
            "service {name}: no free virtual IP after {VIP_TRIES} tries"
        )))
    }

    /// Update a service to a new spec, if `version` is still its version (optimistic
    /// concurrency, as swarmkit's).
    pub async fn service_update(
        &self,
        reference: &str,
        version: u64,
        req: ServiceRequest,
    ) -> Result<ServiceRecord> {
        let c = self.services_cluster()?.clone();
        let (old, revision) = {
            let svc = self.service_get(reference)?;
            let got = c.store.get_with_revision::<ServiceRecord>(Table::Services, &svc.id)?;
            got.ok_or_else(|| Error::not_found(format!("service {reference} not found")))?
        };
        if old.version != version {
            return Err(Error::internal("update out of sequence"));
        }
        let mut plan = req.plan;
        if plan.name != old.plan.name {
            return Err(Error::invalid(format!(
                "service {}: renaming a service is not supported",
                old.plan.name
            )));
        }
        plan.networks = self.service_networks(&req.networks).await?;
        if plan.networks.is_empty() && has_ingress_ports(&plan) {
            let id = self.ingress_network().await?;
            plan.networks.push(cove_model::ServiceNetwork { network_id: id, aliases: vec![] });
        }
        let others: Vec<ServiceRecord> =
            self.service_list()?.into_iter().filter(|s| s.id != old.id).collect();
        check_plan(&plan, &others)?;
        // Published ports keep the numbers they were given.
        for p in plan.ports.iter_mut().filter(|p| p.published.is_none()) {
            p.published = old
                .plan
                .ports
                .iter()
                .find(|o| o.proto == p.proto && o.target == p.target && o.mode == p.mode)
                .and_then(|o| o.published);
        }
        assign_published_ports(&mut plan, &others);
        let replaces_tasks = old.spec.get("TaskTemplate") != req.spec.get("TaskTemplate")
            || old.plan.endpoint_mode != plan.endpoint_mode
            || host_mode_ports(&old.plan) != host_mode_ports(&plan);
        let mut svc = ServiceRecord {
            version: old.version + 1,
            task_version: if replaces_tasks { old.version + 1 } else { old.task_version },
            updated_at: crate::now(),
            previous_spec: Some(old.spec.clone()),
            spec: req.spec,
            plan,
            ..old.clone()
        };
        // VIPs stay on the networks the service keeps, and come and go with the others.
        let keep: Vec<ServiceVip> = old
            .vips
            .iter()
            .filter(|v| {
                svc.plan.endpoint_mode == EndpointMode::Vip
                    && svc.plan.networks.iter().any(|n| n.network_id == v.network_id)
            })
            .cloned()
            .collect();
        svc.vips = keep.clone();
        for _ in 0..VIP_TRIES {
            svc.vips = keep.clone();
            let mut fresh = self.allocate_vips(&svc).await?;
            fresh.retain(|v| !keep.iter().any(|k| k.network_id == v.network_id));
            svc.vips = keep.iter().cloned().chain(fresh.iter().cloned()).collect();
            let mut b = Batch::new();
            b.require_revision(Table::Services, &svc.id, revision);
            b.put(Table::Services, &svc.id, &svc);
            for v in old.vips.iter().filter(|v| !keep.contains(v)) {
                b.delete(Table::Ipam, &vip_key(v));
            }
            for v in &fresh {
                b.require_absent(Table::Ipam, &vip_key(v));
                b.put(Table::Ipam, &vip_key(v), &format!("vip:{}", svc.id));
            }
            match c.store.commit(b) {
                Ok(_) => {
                    info!(service = %svc.plan.name, version = svc.version, "service updated");
                    self.services_nudge();
                    return Ok(svc);
                }
                Err(e) if e.kind == ErrorKind::Conflict => {
                    let now = c.store.get::<ServiceRecord>(Table::Services, &svc.id)?;
                    if now.is_none_or(|n| n.version != version) {
                        return Err(Error::internal("update out of sequence"));
                    }
                }
                Err(e) => return Err(e.context(format!("service {}", svc.plan.name))),
            }
        }
        Err(Error::unavailable(format!(
            "service {}: no free virtual IP after {VIP_TRIES} tries",
            svc.plan.name
        )))
    }

    /// Remove a service: its record, name and VIPs go at once; its tasks are shut down by
    /// the orchestrator and their containers removed by their nodes.
    pub async fn service_remove(&self, reference: &str) -> Result<()> {
        let c = self.services_cluster()?.clone();
        let svc = self.service_get(reference)?;
        let mut b = Batch::new();
        b.delete(Table::Services, &svc.id);
        b.delete(Table::ServiceNames, &svc.plan.name);
        for v in &svc.vips {
            b.delete(Table::Ipam, &vip_key(v));
        }
        c.store.commit(b).map_err(|e| e.context(format!("service {}", svc.plan.name)))?;
        info!(service = %svc.plan.name, id = %svc.id, "service removed");
        self.services_nudge();
        Ok(())
    }

    /// The networks of a service, resolved: they must exist and be the cluster's.
    async fn service_networks(
        &self,
        refs: &[(String, Vec<String>)],
    ) -> Result<Vec<cove_model::ServiceNetwork>> {
        let st = self.state.lock().await;
        let mut out: Vec<cove_model::ServiceNetwork> = Vec::new();
        for (reference, aliases) in refs {
            let net = st.network(reference)?;
            if !self.is_global(net) {
                return Err(Error::invalid(format!(
                    "The network {} cannot be used with services. Only networks scoped to the \
                     swarm can be used, such as those created with the overlay driver.",
                    net.name
                )));
            }
            if out.iter().any(|n| n.network_id == net.id) {
                return Err(Error::invalid(format!(
                    "service networks: network {} is attached more than once",
                    net.name
                )));
            }
            out.push(cove_model::ServiceNetwork {
                network_id: net.id.clone(),
                aliases: aliases.clone(),
            });
        }
        Ok(out)
    }

    /// A VIP on each of the service's networks that lacks one (VIP mode), from the
    /// network's pool; committed by the caller, created only if absent.
    async fn allocate_vips(&self, svc: &ServiceRecord) -> Result<Vec<ServiceVip>> {
        if svc.plan.endpoint_mode != EndpointMode::Vip {
            return Ok(vec![]);
        }
        let mut st = self.state.lock().await;
        let mut out = svc.vips.clone();
        for n in &svc.plan.networks {
            if out.iter().any(|v| v.network_id == n.network_id) {
                continue;
            }
            let net: NetworkRecord =
                st.networks.get(&n.network_id).cloned().ok_or_else(|| {
                    Error::not_found(format!("network {} not found", n.network_id))
                })?;
            if net.pool_v4().is_none() {
                continue;
            }
            let state = st.pool_mut(&net.id, false).ok_or_else(|| {
                Error::internal(format!("network {} has no IPv4 pool state", net.name))
            })?;
            let addr = self
                .request_pool_v4(&net, state)
                .map_err(|e| e.context(format!("virtual IP on network {}", net.name)))?;
            out.push(ServiceVip { network_id: net.id.clone(), addr });
        }
        Ok(out)
    }

    /// Before a cluster network goes: refuse while a service uses it (409, naming the
    /// service, as swarmkit does), and wait for the tasks that are leaving it (a service
    /// just removed, `docker stack rm`) to be gone, up to their stop timeout, so that
    /// removing a stack's services and then its network works.
    pub(crate) async fn network_free_of_services(&self, network: &str) -> Result<()> {
        let Some(c) = self.cluster().cloned() else { return Ok(()) };
        let id = {
            let st = self.state.lock().await;
            st.network(network)?.id.clone()
        };
        if let Some(s) = self
            .service_list()?
            .into_iter()
            .find(|s| s.plan.networks.iter().any(|n| n.network_id == id))
        {
            return Err(Error::conflict(format!(
                "network {network} is in use by service {} ({})",
                s.plan.name, s.id
            )));
        }
        let leaving = || -> Result<bool> {
            Ok(c.store
                .list::<TaskRecord>(Table::Tasks)?
                .iter()
                .any(|(_, t)| !t.state.is_terminal() && t.addresses.iter().any(|(n, _)| *n == id)))
        };
        let deadline = std::time::Instant::now() + LEAVING_WAIT;
        while leaving()? && std::time::Instant::now() < deadline {
            self.services_nudge();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Docker's `ingress` network (an overlay named `ingress`), created the first time a
    /// service publishes through the routing mesh without a network of its own.
    async fn ingress_network(&self) -> Result<cove_model::NetworkId> {
        if let Ok(v) = self.network_get(INGRESS_NETWORK).await {
            return Ok(v.record.id.clone());
        }
        let req = crate::NetworkCreate {
            name: INGRESS_NETWORK.into(),
            driver: "overlay".into(),
            labels: [("com.docker.swarm.internal".to_string(), "true".to_string())].into(),
            ..Default::default()
        };
        match self.network_create(req).await {
            Ok(id) => {
                info!("created the ingress network");
                Ok(id)
            }
            // Another host made it first.
            Err(e) if e.kind == ErrorKind::Conflict => {
                Ok(self.network_get(INGRESS_NETWORK).await?.record.id.clone())
            }
            Err(e) => Err(e.context("create the ingress network")),
        }
    }

    /// The next free IPv4 address of a network's pool (whose state is `state`), with the
    /// pool's prefix length, for a cluster-wide reservation (a VIP, a node address). It
    /// stays marked used in the local pool: the cluster's reservation is what counts, and
    /// the next sync of the pools agrees with it.
    pub(crate) fn request_pool_v4(
        &self,
        net: &NetworkRecord,
        state: &mut cove_ipam::PoolState,
    ) -> Result<ipnet::IpNet> {
        let prefix = net
            .pool_v4()
            .ok_or_else(|| Error::internal(format!("network {} has no IPv4 pool", net.name)))?
            .subnet
            .prefix_len();
        let addr = self.ipam.get(&net.ipam_driver)?.request_address(state, None)?;
        Ok(ipnet::IpNet::new(addr, prefix).expect("the pool's prefix is valid"))
    }

    /// Wake the orchestrator and this node's agent.
    pub(crate) fn services_nudge(&self) {
        self.services_wake.notify_one();
    }
}

/// The address reservation key of a VIP (the same keys endpoints reserve theirs with).
pub(crate) fn vip_key(v: &ServiceVip) -> String {
    format!("{}/{}", v.network_id, v.addr.addr())
}

fn reserve_vips(b: &mut Batch, svc: &ServiceRecord) {
    for v in &svc.vips {
        b.require_absent(Table::Ipam, &vip_key(v));
        b.put(Table::Ipam, &vip_key(v), &format!("vip:{}", svc.id));
    }
}

/// What no service spec may ask for, checked against the other services.
fn check_plan(plan: &ServicePlan, others: &[ServiceRecord]) -> Result<()> {
    if plan.task.image.is_empty() {
        return Err(Error::invalid("ContainerSpec: image reference must be provided"));
    }
    let mut seen = BTreeSet::new();
    for p in &plan.ports {
        if plan.endpoint_mode == EndpointMode::Dnsrr && p.mode == PublishMode::Ingress {
            return Err(Error::invalid(
                "EndpointSpec: port published with ingress mode can't be used with dnsrr mode",
            ));
        }
        if let Some(published) = p.published {
            if !seen.insert((p.proto, published)) {
                return Err(Error::invalid(format!(
                    "EndpointSpec: duplicate published ports provided ({published}/{})",
                    p.proto.as_str()
                )));
            }
            if p.mode == PublishMode::Ingress {
                let clash = others.iter().find(|o| {
                    o.plan.ports.iter().any(|q| {
                        q.mode == PublishMode::Ingress
                            && q.proto == p.proto
                            && q.published == Some(published)
                    })
                });
                if let Some(o) = clash {
                    return Err(Error::invalid(format!(
                        "port '{published}' is already in use by service '{}' ({}) as an ingress port",
                        o.plan.name, o.id
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Give every ingress port without a published number one from swarmkit's dynamic range.
fn assign_published_ports(plan: &mut ServicePlan, others: &[ServiceRecord]) {
    let mut used: BTreeSet<(cove_model::Proto, u16)> = others
        .iter()
        .flat_map(|o| o.plan.ports.iter())
        .chain(plan.ports.iter())
        .filter_map(|p| p.published.map(|n| (p.proto, n)))
        .collect();
    for p in
        plan.ports.iter_mut().filter(|p| p.published.is_none() && p.mode == PublishMode::Ingress)
    {
        if let Some(n) = DYNAMIC_PORTS.clone().find(|n| !used.contains(&(p.proto, *n))) {
            used.insert((p.proto, n));
            p.published = Some(n);
        }
    }
}

/// The name of Docker's routing-mesh network.
pub const INGRESS_NETWORK: &str = "ingress";

fn has_ingress_ports(plan: &ServicePlan) -> bool {
    plan.ports.iter().any(|p| p.mode == PublishMode::Ingress)
}

fn host_mode_ports(plan: &ServicePlan) -> Vec<cove_model::ServicePort> {
    plan.ports.iter().filter(|p| p.mode == PublishMode::Host).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_are_dns_labels() {
        assert!(valid_name("web"));
        assert!(valid_name("st_web"));
        assert!(valid_name("a-b"));
        assert!(!valid_name(""));
        assert!(!valid_name("-web"));
        assert!(!valid_name("web-"));
        assert!(!valid_name("we b"));
        assert!(!valid_name("web.1"));
        assert!(!valid_name(&"a".repeat(64)));
    }
}
