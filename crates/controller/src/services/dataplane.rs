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
}

impl ServicePlane {
    /// Every backend address, for finding the ones that left.
    fn backends(&self) -> BTreeSet<IpAddr> {
        self.lbs.iter().flat_map(|l| l.backends.iter().map(|b| b.ip)).collect()
    }

    /// The VIP addresses as kernel ops (what the reconcile loop also wants).
    pub(crate) fn address_ops(&self) -> Vec<Op> {
        self.vips.iter().map(|(link, addr)| add_vip(link, *addr)).collect()
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

/// The plane for this host (`me`), from the cluster's services and tasks and the bridges
/// of the networks the host has (`bridges`: network id → bridge). Pure.
pub(crate) fn plan(
    services: &HashMap<String, ServiceRecord>,
    tasks: &[TaskRecord],
    bridges: &BTreeMap<String, String>,
    me: &str,
) -> ServicePlane {
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
            out.lbs.push(ServiceLb {
                id: entry_id(&svc.id, &net_id),
                vips,
                ports: ports.clone(),
                backends,
                ingress,
                // No node address on the network yet: the routing mesh sends to this
                // host's own tasks only (the client's address is kept).
                ingress_snat: None,
                local_only: true,
            });
        }
    }
    out.lbs.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

impl Controller {
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

    /// Bring this host's service plane in line with `want`: firewall elements, VIP
    /// addresses, stale UDP flows.
    pub(crate) async fn apply_service_plane(&self, want: ServicePlane) -> Result<()> {
        let had =
            self.service_plane.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if had == want {
            return Ok(());
        }
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
        *self.service_plane.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
            want.clone();
        self.plan_services(&had.lbs, &want.lbs);
        self.apply_pending().await?;
        if !new_vips.is_empty() {
            self.kernel.apply(&new_vips).await.map_err(cove_model::Error::from)?;
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
        let p = plan(&services, &tasks, &bridges, "a");
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
        assert!(plan(&services, &tasks, &BTreeMap::new(), "a").lbs.is_empty());
        let rr: HashMap<String, ServiceRecord> = [("rr".to_string(), svc("rr", "n1", None))].into();
        assert!(plan(&rr, &[], &bridges, "a").lbs.is_empty());
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
        let lb = &plan(&services, &[], &bridges, "a").lbs[0];
        assert_eq!(
            lb.ports,
            [
                ServicePort { proto: Proto::Tcp, port: 80 },
                ServicePort { proto: Proto::Tcp, port: 81 }
            ]
        );
        assert_eq!(lb.ingress, [IngressPort { proto: Proto::Tcp, published: 8080, target: 80 }]);
        assert!(lb.local_only);
    }
}
