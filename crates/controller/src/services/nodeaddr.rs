//! Node addresses on routing-mesh networks ([`NodeAddress`]): every node takes one on
//! each network that carries a service's published ports, while it does, and gives it
//! back afterwards. Locally it is a macvlan on the network's bridge (`lb<id12>`, a MAC of
//! its own: the bridge's is the anycast gateway's, the same on every host) holding the
//! address; the other nodes program it as they program a remote endpoint (forwarding and
//! neighbour entries to this node), so a task that gets mesh traffic from this node,
//! SNAT'ed to this address, replies to this node, which un-NATs it back to the client.

use std::collections::{BTreeMap, BTreeSet};

use cove_drivers::plan::{Netns, Op, OWNED_LINK_GROUP};
use cove_model::{
    ContainerId, EndpointId, EndpointRecord, ErrorKind, MacAddr, NetworkId, NodeAddress,
    NodeRecord, Result, ServiceRecord,
};
use cove_store::{Batch, Table};
use ipnet::IpNet;
use tracing::{debug, info};

use crate::cluster::ClusterSeam;
use crate::state::State;
use crate::Controller;

/// The networks that carry routing-mesh traffic: the first network of every service with
/// a port published in ingress mode.
pub(crate) fn mesh_networks<'a>(
    services: impl Iterator<Item = &'a ServiceRecord>,
) -> BTreeSet<NetworkId> {
    services
        .filter(|s| s.plan.ports.iter().any(|p| p.mode == cove_model::PublishMode::Ingress))
        .filter_map(|s| s.plan.networks.first().map(|n| n.network_id.clone()))
        .collect()
}

fn key(network: &str, node: &str) -> String {
    format!("{network}/{node}")
}

fn ipam_key(a: &NodeAddress) -> String {
    format!("{}/{}", a.network_id, a.addr.addr())
}

/// The macvlan holding this node's address on a network: `lb` and 12 hex of its id.
pub(crate) fn link_name(network: &NetworkId) -> String {
    format!("lb{}", network.short())
}

impl Controller {
    /// Take an address on every mesh network this host has and lacks one on, and give
    /// back those on networks that no longer carry mesh traffic. Returns every node's
    /// addresses.
    pub(crate) async fn sync_node_addresses(
        &self,
        c: &ClusterSeam,
        mesh: &BTreeSet<NetworkId>,
    ) -> Result<Vec<NodeAddress>> {
        let me = &c.node.id;
        let all: Vec<NodeAddress> = c
            .store
            .list::<NodeAddress>(Table::NodeAddresses)?
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        for a in all.iter().filter(|a| &a.node == me && !mesh.contains(&a.network_id)) {
            let mut b = Batch::new();
            b.delete(Table::NodeAddresses, &key(&a.network_id, me));
            b.delete(Table::Ipam, &ipam_key(a));
            c.store.commit(b)?;
            info!(network = %a.network_id.short(), addr = %a.addr, "node address given back");
        }
        let have: BTreeSet<&NetworkId> =
            all.iter().filter(|a| &a.node == me).map(|a| &a.network_id).collect();
        for net in mesh.iter().filter(|n| !have.contains(n)) {
            self.take_node_address(c, net).await?;
        }
        Ok(c.store.list::<NodeAddress>(Table::NodeAddresses)?.into_iter().map(|(_, a)| a).collect())
    }

    async fn take_node_address(&self, c: &ClusterSeam, net: &NetworkId) -> Result<()> {
        for _ in 0..64 {
            let addr = {
                let mut st = self.state.lock().await;
                let Some(n) = st.networks.get(net.as_str()).cloned() else { return Ok(()) };
                if n.pool_v4().is_none() {
                    return Ok(());
                }
                let Some(state) = st.pool_mut(net, false) else { return Ok(()) };
                self.request_pool_v4(&n, state)?
            };
            let mac = match addr.addr() {
                std::net::IpAddr::V4(v4) => MacAddr::from_ipv4(v4),
                std::net::IpAddr::V6(_) => MacAddr::random(),
            };
            let rec = NodeAddress { network_id: net.clone(), node: c.node.id.clone(), addr, mac };
            let mut b = Batch::new();
            b.require_absent(Table::NodeAddresses, &key(net, &c.node.id));
            b.require_absent(Table::Ipam, &ipam_key(&rec));
            b.put(Table::Ipam, &ipam_key(&rec), &format!("node:{}", c.node.id));
            b.put(Table::NodeAddresses, &key(net, &c.node.id), &rec);
            match c.store.commit(b) {
                Ok(_) => {
                    info!(network = %net.short(), addr = %addr, "node address taken for the routing mesh");
                    return Ok(());
                }
                // Another host took that address first: the next one.
                Err(e) if e.kind == ErrorKind::Conflict => {
                    debug!(addr = %addr, "node address taken by another host");
                }
                Err(e) => return Err(e),
            }
        }
        Err(cove_model::Error::unavailable(format!(
            "network {}: no free address for this node's routing-mesh address",
            net.short()
        )))
    }

    /// The kernel objects of the node addresses: this node's macvlans with their
    /// addresses, and the other nodes' addresses as peers (forwarding and neighbour
    /// entries to their hosts), on the networks this host has.
    pub(crate) fn node_address_ops(
        &self,
        st: &State,
        addrs: &[NodeAddress],
        nodes: &BTreeMap<String, NodeRecord>,
        me: &str,
    ) -> Vec<Op> {
        let mut ops = Vec::new();
        let mut sorted: Vec<&NodeAddress> = addrs.iter().collect();
        sorted.sort();
        for a in sorted {
            let Some(net) = st.networks.get(a.network_id.as_str()) else { continue };
            let Ok(driver) = self.drivers.of(net) else { continue };
            if a.node == me {
                let Some(rules) = driver.firewall(net, false) else { continue };
                let link = link_name(&a.network_id);
                let host =
                    IpNet::new(a.addr.addr(), if a.addr.addr().is_ipv4() { 32 } else { 128 })
                        .expect("a host prefix");
                ops.extend([
                    Op::CreateMacvlan {
                        name: link.clone(),
                        group: OWNED_LINK_GROUP,
                        parent: rules.bridge,
                        mac: a.mac,
                        // It only receives (replies to SNAT'ed mesh traffic; what this
                        // node sends leaves through the bridge): any MTU the bridge
                        // allows will do, and no overlay's is below IPv6's minimum.
                        mtu: 1280,
                    },
                    // Replies arrive here from tasks whose route is the bridge's.
                    Op::Sysctl {
                        netns: Netns::Host,
                        key: format!("net/ipv4/conf/{link}/rp_filter"),
                        value: "2".into(),
                    },
                    Op::AddAddress { netns: Netns::Host, link: link.clone(), addr: host },
                    Op::SetUp { netns: Netns::Host, link },
                ]);
                continue;
            }
            let Some(node) = nodes.get(&a.node) else { continue };
            let Ok(container_id) = ContainerId::parse(&a.node) else { continue };
            let ep = EndpointRecord {
                id: EndpointId::random(),
                network_id: a.network_id.clone(),
                container_id,
                ifname: "lb".into(),
                host_ifname: None,
                mac: a.mac,
                ipv4: match a.addr {
                    IpNet::V4(v4) => Some(v4),
                    IpNet::V6(_) => None,
                },
                ipv6: match a.addr {
                    IpNet::V6(v6) => Some(v6),
                    IpNet::V4(_) => None,
                },
                gateway4: None,
                gateway6: None,
                aliases: vec![],
            };
            let peer = cove_drivers::Peer {
                endpoint: &ep,
                host: node.advertise,
                tunnel: node.tunnel.as_ref().map(|t| t.tunnel_ip),
            };
            if let Ok(p) = driver.peer_ops(net, peer) {
                ops.extend(p);
            }
        }
        ops
    }
}
