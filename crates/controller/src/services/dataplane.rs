//! What a host programs for services, derived from the cluster's records: one
//! load-balancing entry per (service, network) in the firewall (its VIP balanced over the
//! tasks that serve, in nftables: `cove_firewall::ServiceLb`, ADR 0020), and the VIP as a
//! `/32` on the network's bridge, so containers reach it through the host. Every host has
//! the same entries (a VIP works from any host), with its own tasks marked local.
//!
//! Order of a change: the firewall's elements first, then a new VIP address (traffic to
//! it is handled as soon as it exists); a removed VIP's address first, then its elements;
//! and UDP flows pinned to a backend that left are forgotten once it is out of the
//! firewall (kube-proxy's `CleanStaleEntries`), so their next datagram picks a live one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use cove_drivers::plan::{Netns, Op};
use cove_firewall::{Backend, IngressPort, ServiceLb, ServicePort};
use cove_model::{PublishMode, Result, ServiceRecord, TaskRecord};
use ipnet::IpNet;
use tracing::{debug, warn};

use crate::state::State;
use crate::Controller;

/// What this host programs for services.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServicePlane {
    /// The load-balancing entries, sorted by id.
    pub(crate) lbs: Vec<ServiceLb>,
    /// VIP addresses by (bridge, address/32 or /128).
    pub(crate) vips: BTreeSet<(String, IpNet)>,
    /// The node addresses' kernel objects ([`super::nodeaddr`]): this node's macvlans,
    /// the other nodes' forwarding and neighbour entries.
    pub(crate) node_ops: Vec<Op>,
}

impl ServicePlane {
    /// Every backend address, for finding the ones that left.
    fn backends(&self) -> BTreeSet<IpAddr> {
        self.lbs.iter().flat_map(|l| l.backends.iter().map(|b| b.ip)).collect()
    }

    /// The plane's kernel objects as ops (what the reconcile loop also wants).
    pub(crate) fn kernel_ops(&self) -> Vec<Op> {
        let vips = self.vips.iter().map(|(link, addr)| add_vip(link, *addr));
        self.node_ops.iter().cloned().chain(vips).collect()
    }
}

fn add_vip(link: &str, addr: IpNet) -> Op {
    Op::AddAddress { netns: Netns::Host, link: link.to_string(), addr }
}

/// 12 hex digits naming a (service, network) entry's chains (FNV-1a, 48 bits).
fn entry_id(service: &str, network: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in service.bytes().chain([0]).chain(network.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// The label that keeps a service's routing mesh to the receiving node's own tasks (the
/// client's address is always kept; a node without one refuses), as Kubernetes'
/// `externalTrafficPolicy: Local`.
pub const INGRESS_POLICY_LABEL: &str = "com.cove.service.ingress-policy";

/// The plan's inputs besides the records: the bridges of the networks this host has
/// (network id → bridge) and this node's addresses on mesh networks.
pub(crate) struct HostView<'a> {
    /// This node's id.
    pub(crate) me: &'a str,
    /// Network id → bridge.
    pub(crate) bridges: &'a BTreeMap<String, String>,
    /// Network id → this node's address there (SNAT source of mesh traffic).
    pub(crate) snat: &'a BTreeMap<String, IpAddr>,
}

/// The plane for this host, from the cluster's services and tasks. Pure.
pub(crate) fn plan(
    services: &HashMap<String, ServiceRecord>,
    tasks: &[TaskRecord],
    host: &HostView<'_>,
) -> ServicePlane {
    let (bridges, me) = (host.bridges, host.me);
    let mut out = ServicePlane::default();
    let mut ids: Vec<&String> = services.keys().collect();
    ids.sort();
    for id in ids {
        let svc = &services[id];
        let serving: Vec<&TaskRecord> =
            tasks.iter().filter(|t| t.service_id == svc.id && t.is_serving()).collect();
        let ports: Vec<ServicePort> = {
            let mut p: Vec<ServicePort> = svc
                .plan
                .ports
                .iter()
                .map(|p| ServicePort { proto: p.proto, port: p.target })
                .collect();
            p.sort();
            p.dedup();
            p
        };
        for (i, net) in svc.plan.networks.iter().enumerate() {
            let net_id = net.network_id.to_string();
            let Some(bridge) = bridges.get(&net_id) else { continue };
            let vips: Vec<IpAddr> = svc
                .vips
                .iter()
                .filter(|v| v.network_id == net.network_id)
                .map(|v| v.addr.addr())
                .collect();
            // The routing mesh leads to the service's first network.
            let ingress: Vec<IngressPort> = if i == 0 {
                svc.plan
                    .ports
                    .iter()
                    .filter(|p| p.mode == PublishMode::Ingress)
                    .filter_map(|p| {
                        p.published.map(|published| IngressPort {
                            proto: p.proto,
                            published,
                            target: p.target,
                        })
                    })
                    .collect()
            } else {
                vec![]
            };
            if vips.is_empty() && ingress.is_empty() {
                continue;
            }
            let backends: Vec<Backend> = serving
                .iter()
                .filter_map(|t| {
                    let ip = t.address_on(&net.network_id)?;
                    Some(Backend { ip, local: t.node_id.as_deref() == Some(me) })
                })
                .collect();
            for vip in &vips {
                let len = if vip.is_ipv4() { 32 } else { 128 };
                out.vips.insert((bridge.clone(), IpNet::new(*vip, len).expect("host prefix")));
            }
            // Without this node's address on the network (not taken yet), the mesh sends
            // to this node's own tasks only.
            let snat = host.snat.get(&net_id).copied().filter(|a| a.is_ipv4());
            let local_policy =
                svc.plan.labels.get(INGRESS_POLICY_LABEL).is_some_and(|v| v == "local");
            out.lbs.push(ServiceLb {
                id: entry_id(&svc.id, &net_id),
                vips,
                ports: ports.clone(),
                backends,
                ingress_snat: snat.filter(|_| !ingress.is_empty()),
                local_only: local_policy || snat.is_none(),
                ingress,
            });
        }
    }
    out.lbs.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// The services' DNS records by (network id, record id) (see `agent::service_records`).
pub(crate) type ServiceNames = BTreeMap<(String, String), cove_dns::EndpointNames>;

/// What this host programs and answers for services, from the cluster's records and its
/// own part of them ([`Controller::host_parts`]): the plane and the DNS records.
pub(crate) fn service_view(
    services: &HashMap<String, ServiceRecord>,
    tasks: &[TaskRecord],
    addrs: &[cove_model::NodeAddress],
    me: &str,
    bridges: &BTreeMap<String, String>,
    node_ops: Vec<Op>,
) -> (ServicePlane, ServiceNames) {
    let snat: BTreeMap<String, IpAddr> = addrs
        .iter()
        .filter(|a| a.node == me)
        .map(|a| (a.network_id.to_string(), a.addr.addr()))
        .collect();
    let mut p = plan(services, tasks, &HostView { me, bridges, snat: &snat });
    p.node_ops = node_ops;
    (p, super::agent::service_records(services, tasks))
}

impl Controller {
    /// This host's part of the services' view, read under the state lock: the bridges of
    /// its networks, and the kernel objects of the node addresses.
    pub(crate) fn host_parts(
        &self,
        st: &State,
        addrs: &[cove_model::NodeAddress],
        nodes: &BTreeMap<String, cove_model::NodeRecord>,
        me: &str,
    ) -> (BTreeMap<String, String>, Vec<Op>) {
        (self.service_bridges(st), self.node_address_ops(st, addrs, nodes, me))
    }

    /// The bridge of every network this host has, by network id.
    pub(crate) fn service_bridges(&self, st: &State) -> BTreeMap<String, String> {
        st.networks
            .values()
            .filter_map(|n| {
                let rules = self.drivers.of(n).ok()?.firewall(n, false)?;
                Some((n.id.to_string(), rules.bridge))
            })
            .collect()
    }

    /// At start, before the first reconcile and firewall write: the plane and the DNS
    /// records as the cluster's records have them, so a restarted daemon keeps its VIPs,
    /// node addresses, load balancers and service names instead of dropping them until
    /// its first agent round. Best effort: with
    /// the cluster store down, the plane comes with the first round that reaches it.
    pub(crate) fn restore_service_plane(&self, st: &State) {
        let Some(c) = self.cluster() else { return };
        let read = || -> Result<(ServicePlane, ServiceNames)> {
            let services: HashMap<String, ServiceRecord> =
                c.store.list::<ServiceRecord>(cove_store::Table::Services)?.into_iter().collect();
            let tasks: Vec<TaskRecord> = c
                .store
                .list::<TaskRecord>(cove_store::Table::Tasks)?
                .into_iter()
                .map(|(_, t)| t)
                .collect();
            let addrs: Vec<cove_model::NodeAddress> = c
                .store
                .list(cove_store::Table::NodeAddresses)?
                .into_iter()
                .map(|(_, a)| a)
                .collect();
            let nodes: BTreeMap<String, cove_model::NodeRecord> =
                c.store.list(cove_store::Table::NodeStates)?.into_iter().collect();
            let me = c.node.id.as_str();
            let (bridges, node_ops) = self.host_parts(st, &addrs, &nodes, me);
            Ok(service_view(&services, &tasks, &addrs, me, &bridges, node_ops))
        };
        match read() {
            Ok((p, names)) => {
                self.plan_services(&[], &p.lbs);
                *crate::lock(&self.service_plane) = p;
                self.dns_services(&names);
            }
            Err(e) => warn!(error = %e, "services' data plane not restored at start"),
        }
    }

    /// Add kernel objects one by one, best effort: one that exists already (a daemon that
    /// restarted finds its objects) is what was wanted; a failure is logged and the
    /// reconcile loop tries again.
    async fn add_objects(&self, ops: &[Op], what: &str) {
        for e in self.kernel.teardown(ops).await {
            if e.kind() != cove_model::ErrorKind::Conflict {
                warn!(error = %e, "could not add {what}");
            }
        }
    }

    /// Bring this host's service plane in line with `want`: firewall elements, VIP
    /// addresses, stale UDP flows.
    pub(crate) async fn apply_service_plane(&self, want: ServicePlane) -> Result<()> {
        let had = crate::lock(&self.service_plane).clone();
        if had == want {
            return Ok(());
        }
        let new_nodes: Vec<Op> =
            want.node_ops.iter().filter(|o| !had.node_ops.contains(o)).cloned().collect();
        let gone_nodes: Vec<Op> = had
            .node_ops
            .iter()
            .rev()
            .filter(|o| !want.node_ops.contains(o))
            .filter_map(Op::inverse)
            .collect();
        let gone_vips: Vec<Op> = had
            .vips
            .difference(&want.vips)
            .map(|(link, addr)| Op::DelAddress {
                netns: Netns::Host,
                link: link.clone(),
                addr: *addr,
            })
            .collect();
        let new_vips: Vec<Op> =
            want.vips.difference(&had.vips).map(|(link, addr)| add_vip(link, *addr)).collect();
        for e in self.kernel.teardown(&gone_vips).await {
            warn!(error = %e, "could not remove a service's virtual IP");
        }
        // A node address first: the firewall SNATs to it.
        self.add_objects(&new_nodes, "a node address").await;
        *crate::lock(&self.service_plane) = want.clone();
        self.plan_services(&had.lbs, &want.lbs);
        self.apply_pending().await?;
        self.add_objects(&new_vips, "a service's virtual IP").await;
        for e in self.kernel.teardown(&gone_nodes).await {
            warn!(error = %e, "could not remove a node address's objects");
        }
        for ip in had.backends().difference(&want.backends()) {
            match self.kernel.forget_flows_to(*ip).await {
                Ok(n) if n > 0 => {
                    debug!(backend = %ip, flows = n, "stale flows to a removed backend forgotten")
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(backend = %ip, error = %cove_model::Error::from(e), "could not forget flows to a removed backend")
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_model::{
        EndpointMode, NetworkId, Proto, ServiceMode, ServiceNetwork, ServicePlan,
        ServicePort as Port, ServiceVip, TaskState, TaskTemplate,
    };

    /// A network id from a short name (`n1` → `aaa…a1`).
    fn nid(n: &str) -> NetworkId {
        NetworkId::parse(&format!("{:a>64}", &n[1..])).unwrap()
    }

    fn svc(id: &str, net: &str, vip: Option<&str>) -> ServiceRecord {
        ServiceRecord {
            id: id.into(),
            version: 1,
            task_version: 1,
            created_at: String::new(),
            updated_at: String::new(),
            spec: serde_json::Value::Null,
            previous_spec: None,
            plan: ServicePlan {
                name: id.into(),
                task: TaskTemplate { image: "bb".into(), ..Default::default() },
                mode: ServiceMode::Replicated { replicas: 2 },
                networks: vec![ServiceNetwork { network_id: nid(net), aliases: vec![] }],
                endpoint_mode: if vip.is_some() { EndpointMode::Vip } else { EndpointMode::Dnsrr },
                ..Default::default()
            },
            vips: vip
                .map(|v| vec![ServiceVip { network_id: nid(net), addr: v.parse().unwrap() }])
                .unwrap_or_default(),
        }
    }

    fn task(id: &str, svc: &str, node: &str, net: &str, ip: &str, state: TaskState) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            service_id: svc.into(),
            slot: 1,
            node_id: Some(node.into()),
            desired: TaskState::Running,
            state,
            message: String::new(),
            err: None,
            spec_version: 1,
            container_id: None,
            exit_code: None,
            addresses: vec![(nid(net), ip.parse().unwrap())],
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn serving_tasks_become_backends_and_vips_go_on_the_bridge() {
        let services: HashMap<String, ServiceRecord> =
            [("web".to_string(), svc("web", "n1", Some("10.0.9.5/24")))].into();
        let tasks = [
            task("t1", "web", "a", "n1", "10.0.9.6/24", TaskState::Running),
            task("t2", "web", "b", "n1", "10.0.9.7/24", TaskState::Running),
            task("t3", "web", "b", "n1", "10.0.9.8/24", TaskState::Starting),
        ];
        let bridges: BTreeMap<String, String> =
            [(nid("n1").to_string(), "ov-n1".to_string())].into();
        let none = BTreeMap::new();
        let host = |me| HostView { me, bridges: &bridges, snat: &none };
        let p = plan(&services, &tasks, &host("a"));
        assert_eq!(p.lbs.len(), 1);
        let lb = &p.lbs[0];
        assert_eq!(lb.vips, ["10.0.9.5".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            lb.backends,
            [
                Backend { ip: "10.0.9.6".parse().unwrap(), local: true },
                Backend { ip: "10.0.9.7".parse().unwrap(), local: false }
            ]
        );
        assert!(lb.ports.is_empty(), "no declared ports: every port");
        assert_eq!(p.vips, [("ov-n1".to_string(), "10.0.9.5/32".parse().unwrap())].into());
        assert_eq!(lb.id.len(), 12);
        // A network this host lacks gets nothing; a dnsrr service without ports neither.
        let nobridge = BTreeMap::new();
        let away = HostView { me: "a", bridges: &nobridge, snat: &none };
        assert!(plan(&services, &tasks, &away).lbs.is_empty());
        let rr: HashMap<String, ServiceRecord> = [("rr".to_string(), svc("rr", "n1", None))].into();
        assert!(plan(&rr, &[], &host("a")).lbs.is_empty());
    }

    #[test]
    fn declared_ports_limit_the_vip_and_ingress_ports_publish() {
        let mut s = svc("web", "n1", Some("10.0.9.5/24"));
        s.plan.ports = vec![
            Port {
                proto: Proto::Tcp,
                target: 80,
                published: Some(8080),
                mode: PublishMode::Ingress,
            },
            Port { proto: Proto::Tcp, target: 81, published: Some(8081), mode: PublishMode::Host },
        ];
        let services: HashMap<String, ServiceRecord> = [("web".to_string(), s)].into();
        let bridges: BTreeMap<String, String> =
            [(nid("n1").to_string(), "ov-n1".to_string())].into();
        let none = BTreeMap::new();
        let lb =
            &plan(&services, &[], &HostView { me: "a", bridges: &bridges, snat: &none }).lbs[0];
        assert_eq!(
            lb.ports,
            [
                ServicePort { proto: Proto::Tcp, port: 80 },
                ServicePort { proto: Proto::Tcp, port: 81 }
            ]
        );
        assert_eq!(lb.ingress, [IngressPort { proto: Proto::Tcp, published: 8080, target: 80 }]);
        assert!(lb.local_only, "no node address yet: local tasks only");
        // With this node's address, remote tasks too, SNAT'ed to it.
        let snat: BTreeMap<String, IpAddr> =
            [(nid("n1").to_string(), "10.0.9.200".parse().unwrap())].into();
        let lb =
            &plan(&services, &[], &HostView { me: "a", bridges: &bridges, snat: &snat }).lbs[0];
        assert!(!lb.local_only);
        assert_eq!(lb.ingress_snat, Some("10.0.9.200".parse().unwrap()));
    }
}
