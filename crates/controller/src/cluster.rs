//! Membership of a cluster: global networks and their endpoints, shared through the
//! cluster store (etcd) with every other host.
//!
//! Intent goes to the cluster store first, in one transaction per intent: a global
//! network with its name, its VXLAN id and its subnets (each created only if absent, so
//! two hosts can never take the same one), an endpoint with its addresses (the same:
//! global IPAM by compare-and-swap, no shared bitmap key). Every host follows the store
//! with one watch and brings its own state in line by listing and diffing, so a missed or
//! compacted event can never leave anything stale: global networks are mirrored into the
//! local store (a restart without the cluster keeps the data plane), the other hosts'
//! endpoints become peers (forwarding and neighbour entries, through the same
//! desired-state diff as everything else), and this host's endpoints the cluster has but
//! the host does not (a crash between the two writes) are withdrawn.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use cove_drivers::{Scope, Underlay};
use cove_ipam::PoolState;
use cove_model::{
    ClusterEndpoint, EndpointId, EndpointRecord, Error, ErrorKind, NetworkRecord, NodeRecord,
    PeerRecord, Result,
};
use cove_store::{Batch, KeepAlive, LeaseLost, Leases, Records, Table};

use crate::lock;
use crate::state::{address_keys, delete_endpoint, reserve_addresses, State};
use crate::Controller;

/// How many times an endpoint's address is tried again when another host took it first.
const ADDRESS_TRIES: usize = 64;
/// How often the cluster is listed even without a watch event (and a release that could
/// not reach the store is tried again).
const RESYNC_EVERY: Duration = Duration::from_secs(5);
/// How long watch events must stop before the host syncs (a burst is one sync).
const SETTLE: Duration = Duration::from_millis(20);
/// How often a node whose lease lapsed tries to register again.
const REGISTER_RETRY: Duration = Duration::from_secs(1);
/// How many times a sync reads the cluster again because a local write overtook it,
/// before it reads under the state lock.
const READ_TRIES: usize = 3;

/// The cluster's records a sync works from.
struct ClusterView {
    networks: BTreeMap<String, NetworkRecord>,
    nodes: HashMap<String, NodeRecord>,
    /// The nodes whose liveness key is there (their daemons keep their leases alive).
    live: BTreeSet<String>,
    endpoints: Vec<ClusterEndpoint>,
}

/// A write that brings the cluster in line with this host's endpoints.
enum ClusterWrite {
    /// Take an endpoint this host no longer has out of the cluster.
    Withdraw(Batch),
    /// Put an endpoint the cluster lost back, if its addresses are still free.
    Publish(ClusterEndpoint),
}

/// How long a host starting with an id whose liveness another address holds watches that
/// liveness's lease: longer than a keep-alive interval (TTL / 3), so that a daemon keeping
/// it alive is seen doing so.
const CLONE_WATCH: Duration = Duration::from_secs(4);

/// How long a node stays listed as up after its last keep-alive.
pub const NODE_TTL: Duration = Duration::from_secs(10);

/// This host's membership of a cluster, as the daemon configures it.
#[derive(Debug, Clone)]
pub struct ClusterSeam {
    /// The cluster store's records (keys relative to the cluster's prefix).
    pub store: Records,
    /// The store as the flags named it (`etcd://203.0.113.2:2379`), for `GET /info`.
    /// Empty for a single host's own cluster of one ([`ClusterSeam::is_local`]).
    pub url: String,
    /// The cluster store's leases (node liveness), where it has them.
    pub leases: Option<Arc<dyn Leases>>,
    /// This host.
    pub node: NodeRecord,
    /// How this host reaches the others.
    pub underlay: Underlay,
    /// Encrypted overlay networks (`None`: this node has no tunnel, and refuses them).
    pub encryption: Option<crate::encryption::EncryptionSeam>,
}

impl ClusterSeam {
    /// Whether this is a single host's own cluster of one: no cluster store, the host's
    /// own records (services and attachable overlay networks work, as on a one-node swarm).
    pub fn is_local(&self) -> bool {
        self.url.is_empty()
    }
}

/// A node of the cluster, as `node ls` shows it.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Its lasting record.
    pub node: NodeRecord,
    /// Its liveness key is there (its daemon keeps its lease alive).
    pub up: bool,
    /// It is this host.
    pub this: bool,
}

/// The next event of a watch of the cluster store, or never while there is none.
pub(crate) async fn next_event(
    watch: &mut Option<cove_store::Watch>,
) -> Option<cove_store::WatchEvent> {
    match watch.as_mut() {
        Some(w) => w.recv().await,
        None => std::future::pending().await,
    }
}

/// Let a burst of watch events settle: wait `settle`, then drop what arrived meanwhile
/// (the round that follows reads the store whole).
pub(crate) async fn settle_burst(watch: &mut Option<cove_store::Watch>, settle: Duration) {
    tokio::time::sleep(settle).await;
    if let Some(w) = watch.as_mut() {
        while let Ok(Some(_)) = tokio::time::timeout(Duration::ZERO, w.recv()).await {}
    }
}

/// Whether the cluster store answered (a refusal, such as an address taken, is an answer).
fn answered<T>(r: &Result<T>) -> bool {
    !matches!(r, Err(e) if e.kind == ErrorKind::Unavailable)
}

impl Controller {
    /// The cluster this host is in, if any.
    pub(crate) fn cluster(&self) -> Option<&ClusterSeam> {
        self.cluster.as_ref()
    }

    /// Whether this host is a node of a cluster (of one, without a cluster store).
    pub fn in_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// The cluster store and this node's address, as `GET /info` reports them
    /// (`ClusterStore`, `ClusterAdvertise`).
    pub fn cluster_info(&self) -> Option<(String, String)> {
        self.cluster()
            .filter(|c| !c.is_local())
            .map(|c| (c.url.clone(), c.node.advertise.to_string()))
    }

    /// Whether `net` lives in the cluster store (its driver's scope is global).
    pub(crate) fn is_global(&self, net: &NetworkRecord) -> bool {
        self.drivers.of(net).is_ok_and(|d| d.capability().scope == Scope::Global)
    }

    fn cluster_or_unavailable(&self, what: &str) -> Result<&ClusterSeam> {
        self.cluster().ok_or_else(|| {
            Error::unavailable(format!(
                "{what} needs a cluster: start the daemon with --cluster-store and --cluster-advertise"
            ))
        })
    }

    /// Fail at once, and without the state lock, when the cluster store does not answer:
    /// called before an operation on global networks takes the lock, so that with etcd
    /// down it fails within the store's deadline (503 naming the store) while every
    /// other request, local networks' included, goes on. A store that stops between this
    /// check and the operation still fails it, only later. Without a cluster, the
    /// operation itself says what is missing.
    pub(crate) fn cluster_reachable(&self, what: &str) -> Result<()> {
        let Some(c) = self.cluster() else { return Ok(()) };
        c.store.revision().map(drop).map_err(|e| e.context(what))
    }

    /// [`Controller::cluster_reachable`] if container `id` is on a global network.
    pub(crate) async fn cluster_reachable_for(&self, id: &str) -> Result<()> {
        if self.cluster().is_none() {
            return Ok(());
        }
        let global = {
            let st = self.state.lock().await;
            let nets = st.containers.get(id).map(|c| c.networks.clone()).unwrap_or_default();
            nets.iter().find_map(|(n, _)| st.networks.get(n).filter(|n| self.is_global(n)).cloned())
        };
        match global {
            Some(net) => self.cluster_reachable(&format!("network {}", net.name)),
            None => Ok(()),
        }
    }

    /// Register this host in the cluster: its lasting record (`node-state/`, what peers
    /// program its endpoints with, also while it is down) and its liveness (`nodes/`, bound
    /// to a lease kept alive from here: the node is listed down once that lapses).
    pub(crate) fn cluster_register(&self) -> Result<()> {
        let Some(c) = self.cluster() else { return Ok(()) };
        // With its tunnel, when it has one: peers take its key and address from here.
        let node = self.this_node().unwrap_or_else(|| c.node.clone());
        let mut b = Batch::new();
        b.put(Table::NodeStates, &c.node.id, &node);
        match &c.leases {
            Some(leases) => {
                let lease = leases.grant(NODE_TTL)?;
                let live = NodeRecord { lease: Some(lease.id.0), ..node };
                b.put_with_lease(Table::Nodes, &c.node.id, &live, lease.id);
                c.store.commit(b)?;
                let keep = KeepAlive::start(leases.clone(), lease);
                if let Some(old) = lock(&self.node_lease).replace(keep) {
                    old.stop();
                }
            }
            None => {
                b.put(Table::Nodes, &c.node.id, &node);
                c.store.commit(b)?;
            }
        }
        info!(node = %c.node.id, advertise = %c.node.advertise, "joined the cluster");
        Ok(())
    }

    /// Refuse to join as a node another running daemon is: a data root copied from another
    /// host carries its node id, and two hosts with one id would take each other's
    /// endpoints. The id's liveness held at another address is that, or this host before
    /// it moved: a daemon that keeps the liveness's lease alive is the first (409, naming
    /// the file to remove), a lease that only runs down the second (joined after
    /// [`CLONE_WATCH`]).
    pub(crate) async fn check_node_id_unused(&self) -> Result<()> {
        let Some(c) = self.cluster() else { return Ok(()) };
        let Some(leases) = &c.leases else { return Ok(()) };
        let Some(live) = c.store.get::<NodeRecord>(Table::Nodes, &c.node.id)? else {
            return Ok(());
        };
        let Some(lease) = live.lease.filter(|_| live.advertise != c.node.advertise) else {
            return Ok(());
        };
        let lease = cove_store::LeaseId(lease);
        let Some(before) = leases.time_to_live(lease)? else { return Ok(()) };
        info!(
            node = %c.node.id,
            at = %live.advertise,
            "this node id is live at another address; waiting to see whether a daemon keeps it alive"
        );
        tokio::time::sleep(CLONE_WATCH).await;
        let Some(after) = leases.time_to_live(lease)? else { return Ok(()) };
        // Left alone, the lease would have run down by CLONE_WATCH (TTLs are whole seconds).
        if after + Duration::from_secs(1) >= before {
            return Err(Error::conflict(format!(
                "node id {} is in use by the running host {} at {}: was this data root copied from it? \
                 Remove {} and start again to give this host an id of its own",
                c.node.id,
                live.hostname,
                live.advertise,
                self.cfg.data_root.join("node-id").display()
            )));
        }
        Ok(())
    }

    /// Whether this node's liveness lapsed (etcd unreachable longer than the TTL): then it
    /// registers again.
    fn node_lease_lost(&self) -> bool {
        let Some(c) = self.cluster() else { return false };
        c.leases.is_some() && lock(&self.node_lease).as_ref().is_none_or(|k| k.lost().is_some())
    }

    /// The cluster's nodes, with whether each is up.
    pub async fn node_list(&self) -> Result<Vec<NodeView>> {
        let c = self.cluster_or_unavailable("listing nodes")?;
        let up: BTreeSet<String> =
            c.store.list::<NodeRecord>(Table::Nodes)?.into_iter().map(|(id, _)| id).collect();
        Ok(c.store
            .list::<NodeRecord>(Table::NodeStates)?
            .into_iter()
            .map(|(id, node)| NodeView { up: up.contains(&id), this: id == c.node.id, node })
            .collect())
    }

    /// Forget a node that is down for good (by id, id prefix, hostname or tunnel address):
    /// its endpoints and their addresses leave the cluster, and every host drops them.
    /// Refused (409) for a node that is up.
    pub async fn node_remove(&self, reference: &str) -> Result<()> {
        let c = self.cluster_or_unavailable("removing a node")?;
        let nodes = self.node_list().await?;
        let matching: Vec<&NodeView> = nodes
            .iter()
            .filter(|n| {
                n.node.id == reference
                    || n.node.hostname == reference
                    || n.node.advertise.to_string() == reference
                    || n.node.id.starts_with(reference)
            })
            .collect();
        let n = match matching.as_slice() {
            [n] => *n,
            [] => return Err(Error::not_found(format!("node {reference} not found"))),
            _ => return Err(Error::invalid(format!("node {reference} is ambiguous"))),
        };
        if n.up {
            return Err(Error::conflict(format!(
                "node {} ({}) is up: stop its daemon first",
                n.node.hostname, n.node.id
            )));
        }
        let mut b = Batch::new();
        b.delete(Table::NodeStates, &n.node.id);
        for (_, e) in c.store.list::<ClusterEndpoint>(Table::Endpoints)? {
            if e.node == n.node.id {
                delete_endpoint(&mut b, &e.endpoint);
            }
        }
        c.store.commit(b)?;
        info!(node = %n.node.hostname, "node removed from the cluster");
        self.cluster_nudge.notify_one();
        Ok(())
    }

    // ---- networks -----------------------------------------------------------------------

    /// Publish a new global network: its record, name, VXLAN id and subnets in one
    /// transaction, each created only if absent. Returns the record with the id the
    /// cluster assigned.
    pub(crate) fn cluster_create_network(&self, net: NetworkRecord) -> Result<NetworkRecord> {
        let c = self.cluster_or_unavailable(&format!("overlay network {}", net.name))?;
        let driver = self.drivers.of(&net)?.clone();
        let mut net = net;
        if let Some(seg) = driver.segment(&net.config) {
            let taken: BTreeSet<u32> = c
                .store
                .list::<String>(Table::Segments)?
                .into_iter()
                .filter_map(|(k, _)| k.parse().ok())
                .collect();
            let vni =
                match seg.requested {
                    Some(v) if taken.contains(&v) => {
                        return Err(Error::conflict(format!(
                            "VXLAN id {v} is already used by another network of the cluster"
                        )))
                    }
                    Some(v) => v,
                    None => (seg.range.0..=seg.range.1).find(|v| !taken.contains(v)).ok_or_else(
                        || Error::unavailable("no free VXLAN id left in the cluster".to_string()),
                    )?,
                };
            net.config = driver.with_segment(net.config, vni);
        }
        let mut b = Batch::new();
        b.require_absent(Table::Networks, &net.id);
        b.require_absent(Table::NetworkNames, &net.name);
        b.put(Table::Networks, &net.id, &net);
        b.put(Table::NetworkNames, &net.name, &net.id);
        if let Some(vni) = driver.segment_of(&net) {
            b.require_absent(Table::Segments, &vni.to_string());
            b.put(Table::Segments, &vni.to_string(), &net.id);
        }
        for pool in &net.ipam {
            b.require_absent(Table::Pools, &pool.subnet.to_string());
            b.put(Table::Pools, &pool.subnet.to_string(), &net.id);
        }
        c.store.commit(b).map_err(|e| match e.kind {
            ErrorKind::Conflict if e.message.contains("network-names/") => {
                Error::conflict(format!("network with name {} already exists", net.name))
            }
            ErrorKind::Conflict if e.message.contains("pools/") => Error::conflict(format!(
                "the subnet of network {} overlaps a network of the cluster ({})",
                net.name, e.message
            )),
            _ => e.context(format!("create network {} in the cluster", net.name)),
        })?;
        self.cluster_wrote();
        Ok(net)
    }

    /// Withdraw a global network from the cluster: refused while any host has an
    /// endpoint on it (named, with their hosts).
    pub(crate) fn cluster_remove_network(&self, net: &NetworkRecord) -> Result<()> {
        let c = self.cluster_or_unavailable(&format!("overlay network {}", net.name))?;
        let eps: Vec<ClusterEndpoint> = c
            .store
            .list::<ClusterEndpoint>(Table::Endpoints)?
            .into_iter()
            .map(|(_, e)| e)
            .filter(|e| e.endpoint.network_id == net.id)
            .collect();
        if !eps.is_empty() {
            let nodes: HashMap<String, NodeRecord> =
                c.store.list::<NodeRecord>(Table::Nodes)?.into_iter().collect();
            let who: Vec<String> = eps
                .iter()
                .map(|e| {
                    let host = nodes.get(&e.node).map_or(e.node.as_str(), |n| n.hostname.as_str());
                    format!("{} on {host}", e.container_name)
                })
                .collect();
            return Err(Error::forbidden(format!(
                "error while removing network: network {} id {} has active endpoints ({})",
                net.name,
                net.id,
                who.join(", ")
            )));
        }
        let driver = self.drivers.of(net)?;
        let mut b = Batch::new();
        b.delete(Table::Networks, &net.id);
        b.delete(Table::NetworkNames, &net.name);
        if let Some(vni) = driver.segment_of(net) {
            b.delete(Table::Segments, &vni.to_string());
        }
        for pool in &net.ipam {
            b.delete(Table::Pools, &pool.subnet.to_string());
        }
        c.store.commit(b)?;
        self.cluster_wrote();
        Ok(())
    }

    // ---- endpoints ----------------------------------------------------------------------

    /// Reserve a new endpoint of a global network in the cluster: its record and its
    /// addresses, created only if absent. An address another host took first is marked
    /// used here, and `allocate` is asked for the next one (bounded).
    pub(crate) fn cluster_reserve(
        &self,
        st: &mut State,
        net: &NetworkRecord,
        container_name: &str,
        mut allocate: impl FnMut(&mut State) -> Result<EndpointRecord>,
    ) -> Result<EndpointRecord> {
        if !self.is_global(net) {
            return allocate(st);
        }
        let c = self.cluster_or_unavailable(&format!("overlay network {}", net.name))?;
        // A network this host cannot carry (its underlay's MTU is too small) has no
        // datapath here: refuse its endpoints, naming why, before reserving anything.
        self.drivers
            .of(net)?
            .network_ops(net, &self.plan_context())
            .map_err(|e| self.explain_encryption(e))?;
        for _ in 0..ADDRESS_TRIES {
            let ep = allocate(st)?;
            let record = ClusterEndpoint {
                node: c.node.id.clone(),
                container_name: container_name.to_string(),
                endpoint: ep.clone(),
            };
            let mut b = Batch::new();
            b.put(Table::Endpoints, &ep.id, &record);
            reserve_addresses(&mut b, &ep);
            match c.store.commit(b) {
                Ok(_) => {
                    self.cluster_wrote();
                    return Ok(ep);
                }
                // Another host holds the address: it stays marked used in the local pool.
                Err(e) if e.kind == ErrorKind::Conflict => {
                    debug!(network = %net.name, error = %e, "address taken by another host");
                    let asked = st
                        .containers
                        .values()
                        .find(|c| c.name == container_name)
                        .and_then(|c| c.networks.iter().find(|(n, _)| *n == net.id))
                        .is_some_and(|(_, s)| s.ipv4_address.is_some() || s.ipv6_address.is_some());
                    if asked {
                        return Err(Error::conflict(format!(
                            "the address of {container_name} on network {} is in use on another host",
                            net.name
                        )));
                    }
                }
                Err(e) => {
                    crate::sandbox::release_ipam(&self.ipam, st, &ep);
                    return Err(e.context(format!("network {}", net.name)));
                }
            }
        }
        Err(Error::unavailable(format!(
            "network {}: address pool contended ({ADDRESS_TRIES} addresses taken by other hosts first)",
            net.name
        )))
    }

    // ---- following the cluster ----------------------------------------------------------

    /// Read what a sync works from. Takes no lock: with the store slow or down, local
    /// requests must not wait for it.
    fn cluster_read(&self, c: &ClusterSeam) -> Result<ClusterView> {
        let started = std::time::Instant::now();
        let view = Self::cluster_list(c);
        self.metrics.cluster_request("list", started.elapsed(), answered(&view));
        if let Ok(v) = &view {
            let ready = v.nodes.keys().filter(|id| v.live.contains(*id)).count();
            self.metrics.cluster_nodes(ready as u64, (v.nodes.len() - ready) as u64);
        }
        view
    }

    fn cluster_list(c: &ClusterSeam) -> Result<ClusterView> {
        Ok(ClusterView {
            live: c.store.list::<NodeRecord>(Table::Nodes)?.into_iter().map(|(id, _)| id).collect(),
            networks: c.store.list::<NetworkRecord>(Table::Networks)?.into_iter().collect(),
            // Every node that joined, up or not: a node cut from etcd keeps its containers
            // and their addresses, so the data plane to them stays (until `node rm`).
            nodes: c.store.list::<NodeRecord>(Table::NodeStates)?.into_iter().collect(),
            endpoints: c
                .store
                .list::<ClusterEndpoint>(Table::Endpoints)?
                .into_iter()
                .map(|(_, e)| e)
                .collect(),
        })
    }

    /// Bring the local view in line with the cluster: global networks (mirrored into the
    /// local store), peers (other hosts' endpoints), and this host's endpoints in the
    /// cluster (withdrawn when the host no longer has them, published when the cluster
    /// lost them). Reads and writes the cluster store under the state lock: for the
    /// daemon's start; the loop uses [`Controller::cluster_round`]. Returns whether the
    /// host's desired kernel state changed.
    pub(crate) fn cluster_sync(&self, st: &mut State) -> Result<bool> {
        let Some(c) = self.cluster() else { return Ok(false) };
        let view = self.cluster_read(c)?;
        let (changed, writes) = self.cluster_apply(st, c, view)?;
        self.cluster_write(c, writes);
        Ok(changed)
    }

    /// Apply `view` to the host's state (and the local store); returns whether the
    /// desired kernel state changed, and the writes that bring the cluster in line with
    /// this host's endpoints (for [`Controller::cluster_write`], after the lock).
    fn cluster_apply(
        &self,
        st: &mut State,
        c: &ClusterSeam,
        view: ClusterView,
    ) -> Result<(bool, Vec<ClusterWrite>)> {
        let ClusterView { networks, nodes, endpoints, .. } = view;
        let mut changed = false;
        let mut local = Batch::new();
        // Their tunnel addresses too: decrypted VXLAN comes from those.
        let addrs: BTreeSet<IpAddr> = nodes
            .values()
            .flat_map(|n| {
                std::iter::once(n.advertise).chain(n.tunnel.as_ref().map(|t| t.tunnel_ip))
            })
            .collect();
        if addrs != st.cluster_nodes {
            st.cluster_nodes = addrs;
            changed = true;
        }

        // Networks.
        let ctx = self.plan_context();
        for net in networks.values() {
            if st.networks.get(net.id.as_str()) == Some(net) {
                continue;
            }
            info!(network = %net.name, "global network from the cluster");
            if let Err(e) = self.drivers.of(net).and_then(|d| d.network_ops(net, &ctx)) {
                warn!(network = %net.name, error = %e, "this host cannot carry the network");
            }
            local.put(Table::Networks, &net.id, net);
            for pool in &net.ipam {
                st.pools
                    .entry((net.id.to_string(), pool.subnet.addr().is_ipv6()))
                    .or_insert_with(|| PoolState::new(pool));
            }
            st.networks.insert(net.id.clone(), net.clone());
            self.dns_network_added(net);
            changed = true;
        }
        let gone: Vec<NetworkRecord> = st
            .networks
            .values()
            .filter(|n| self.is_global(n) && !networks.contains_key(n.id.as_str()))
            .filter(|n| st.endpoints_of_network(&n.id).is_empty())
            .cloned()
            .collect();
        for net in gone {
            info!(network = %net.name, "global network removed from the cluster");
            local.delete(Table::Networks, &net.id);
            st.networks.remove(&net.id);
            st.pools.retain(|(n, _), _| *n != net.id);
            self.dns_network_removed(&net.id);
            changed = true;
        }

        // Peers: other hosts' endpoints on networks this host knows.
        let mut peers: BTreeMap<EndpointId, PeerRecord> = BTreeMap::new();
        for e in endpoints.iter().filter(|e| e.node != c.node.id) {
            let Some(node) = nodes.get(&e.node) else { continue };
            if !st.networks.contains_key(e.network_id().as_str()) {
                continue;
            }
            peers.insert(
                e.endpoint.id.clone(),
                PeerRecord {
                    endpoint: e.clone(),
                    host: node.advertise,
                    host_name: node.hostname.clone(),
                    tunnel: node.tunnel.as_ref().map(|t| t.tunnel_ip),
                },
            );
        }
        if peers != st.peers {
            for (id, p) in &peers {
                if st.peers.get(id) != Some(p) {
                    local.put(Table::Peers, id, p);
                    self.dns_peer_added(st, p);
                }
            }
            for id in st.peers.keys().filter(|id| !peers.contains_key(*id)) {
                local.delete(Table::Peers, id);
                self.dns_endpoint_removed(&st.peers[id].endpoint.endpoint);
            }
            st.peers = peers;
            changed = true;
        }
        self.sync_global_pools(st);
        self.store.commit(local)?;
        self.encryption_peers(st, &nodes, &endpoints);

        // This host's endpoints.
        let mut writes = vec![];
        let mine: BTreeSet<&EndpointId> =
            endpoints.iter().filter(|e| e.node == c.node.id).map(|e| &e.endpoint.id).collect();
        for e in endpoints.iter().filter(|e| e.node == c.node.id) {
            if st.endpoints.contains_key(e.endpoint.id.as_str()) {
                continue;
            }
            let mut b = Batch::new();
            delete_endpoint(&mut b, &e.endpoint);
            debug!(endpoint = %e.endpoint.id.short(), "withdrawing an endpoint from the cluster");
            writes.push(ClusterWrite::Withdraw(b));
        }
        for ep in st.endpoints.values().filter(|e| !mine.contains(&e.id)) {
            let Some(net) = st.networks.get(ep.network_id.as_str()) else { continue };
            if !self.is_global(net) {
                continue;
            }
            let name = st
                .containers
                .get(ep.container_id.as_str())
                .map_or_else(String::new, |c| c.name.clone());
            writes.push(ClusterWrite::Publish(ClusterEndpoint {
                node: c.node.id.clone(),
                container_name: name,
                endpoint: ep.clone(),
            }));
        }
        Ok((changed, writes))
    }

    /// Make the pools of global networks hold exactly the addresses of this host's
    /// endpoints and its peers, as a restart would ([`State::load`]). An address marked
    /// used because another host's reservation won (or this host's own, not yet withdrawn)
    /// is free again once nobody holds it, also when this host never saw its holder as a
    /// peer; a peer's address handed on to a new peer stays used.
    fn sync_global_pools(&self, st: &mut State) {
        let mut held: HashMap<(String, bool), BTreeSet<IpAddr>> = HashMap::new();
        let peers = st.peers.values().map(|p| &p.endpoint.endpoint);
        for ep in st.endpoints.values().chain(peers) {
            let v4 = ep.ipv4.map(|a| (false, IpAddr::V4(a.addr())));
            let v6 = ep.ipv6.map(|a| (true, IpAddr::V6(a.addr())));
            for (v6, a) in v4.into_iter().chain(v6) {
                held.entry((ep.network_id.to_string(), v6)).or_default().insert(a);
            }
        }
        for (net, a) in lock(&self.cluster_reserved).iter() {
            held.entry((net.clone(), a.is_ipv6())).or_default().insert(*a);
        }
        let empty = BTreeSet::new();
        for ((net, v6), pool) in st.pools.iter_mut() {
            if !st.networks.get(net.as_str()).is_some_and(|n| self.is_global(n)) {
                continue;
            }
            let want = held.get(&(net.clone(), *v6)).unwrap_or(&empty);
            let stale: Vec<IpAddr> = pool.allocated().filter(|a| !want.contains(a)).collect();
            for a in stale {
                debug!(network = %net, address = %a, "address free again in the cluster");
                pool.release(a);
            }
            for a in want {
                pool.restore(*a);
            }
        }
    }

    /// Write what [`Controller::cluster_apply`] found this host's endpoints need: a write
    /// that fails is retried by a later sync, which finds the same difference.
    fn cluster_write(&self, c: &ClusterSeam, writes: Vec<ClusterWrite>) {
        for w in writes {
            let started = std::time::Instant::now();
            let done = match w {
                ClusterWrite::Withdraw(b) => c.store.commit(b).map(drop),
                ClusterWrite::Publish(record) => self.cluster_publish(c, &record),
            };
            self.metrics.cluster_request("write", started.elapsed(), answered(&done));
            if let Err(err) = done {
                warn!(error = %err, "could not bring this host's endpoints in line with the cluster");
            }
        }
    }

    /// Publish an endpoint the cluster lost (it was written while the store was down, or
    /// removed while this host was cut off) with the addresses it holds here: each address
    /// key is taken only if it is free or already this endpoint's, compared and swapped, so
    /// a host that comes back can never take an address another host was given meanwhile.
    /// Such an endpoint stays this host's only, reported once.
    fn cluster_publish(&self, c: &ClusterSeam, record: &ClusterEndpoint) -> Result<()> {
        let ep = &record.endpoint;
        let mut b = Batch::new();
        b.require_absent(Table::Endpoints, &ep.id);
        b.put(Table::Endpoints, &ep.id, record);
        for key in address_keys(ep) {
            let held = c.store.get_with_revision::<EndpointId>(Table::Ipam, &key)?;
            match held {
                Some((other, _)) if other != ep.id => {
                    if lock(&self.cluster_conflicts).insert(ep.id.clone()) {
                        warn!(
                            container = %record.container_name,
                            address = %key,
                            holder = %other.short(),
                            "not publishing an endpoint: another host's endpoint holds its address in the cluster"
                        );
                    }
                    return Ok(());
                }
                Some((_, revision)) => b.require_revision(Table::Ipam, &key, revision),
                None => b.require_absent(Table::Ipam, &key),
            };
            b.put(Table::Ipam, &key, &ep.id);
        }
        c.store.commit(b)?;
        lock(&self.cluster_conflicts).remove(&ep.id);
        Ok(())
    }

    /// Note a write of this host to the cluster's networks or endpoints (made under the
    /// state lock): a sync that read the cluster before it reads again.
    fn cluster_wrote(&self) {
        self.cluster_writes.fetch_add(1, Ordering::SeqCst);
    }

    /// One round: sync with the cluster and, when the desired state changed, reconcile the
    /// host's objects. The cluster is read and written without the state lock (etcd
    /// stopped makes each call wait out its deadline; local requests must not wait with
    /// it); a read that a local write of this host overtook is read again.
    pub(crate) async fn cluster_round(&self) -> Result<()> {
        let Some(c) = self.cluster() else { return Ok(()) };
        // A tunnel that could not start for want of the store: now its record and the
        // datapath of encrypted networks follow.
        let tunnel_up = self.encryption_retry().await;
        if tunnel_up && !self.node_lease_lost() {
            self.cluster_register()?;
        }
        if self.node_lease_lost() {
            warn!("this node's liveness in the cluster lapsed; registering again");
            self.check_node_id_unused().await?;
            self.cluster_register()?;
        }
        let mut tries = 0;
        let (mut st, view) = loop {
            let before = self.cluster_writes.load(Ordering::SeqCst);
            let view = self.cluster_read(c)?;
            let st = self.state.lock().await;
            tries += 1;
            if self.cluster_writes.load(Ordering::SeqCst) == before || tries == READ_TRIES {
                // Past the tries (a host busy writing), read under the lock.
                let view = if tries == READ_TRIES { self.cluster_read(c)? } else { view };
                break (st, view);
            }
        };
        let (changed, writes) = self.cluster_apply(&mut st, c, view)?;
        if changed || tunnel_up {
            self.reconcile_host(&st).await?;
            self.sync_firewall_later(&st);
        }
        drop(st);
        self.cluster_write(c, writes);
        Ok(())
    }

    /// Follow the cluster store: one prefix watch (re-listed after every burst of
    /// events), a periodic sync as a safety net, and a nudge after local changes. A lost
    /// node lease wakes the loop at once, and registering again is retried every second
    /// until it succeeds, so a host whose control plane comes back is up again in a
    /// second or so.
    pub(crate) fn spawn_cluster_loop(self: &Arc<Self>) {
        let Some(c) = self.cluster().cloned() else { return };
        let weak = Arc::downgrade(self);
        let nudge = self.cluster_nudge.clone();
        let mut lost = self.node_lease_watch();
        let mut wait = if self.node_lease_lost() { REGISTER_RETRY } else { RESYNC_EVERY };
        tokio::spawn(async move {
            let mut watch = None;
            loop {
                if watch.is_none() {
                    watch = c
                        .store
                        .store()
                        .watch("", 0)
                        .map_err(|e| warn!(error = %e, "could not watch the cluster store"))
                        .ok();
                }
                tokio::select! {
                    ev = next_event(&mut watch) => {
                        match ev {
                            Some(cove_store::WatchEvent::Lagged) | None => {
                                watch = None;
                                if let Some(ctl) = weak.upgrade() {
                                    ctl.metrics.cluster_watch_resync();
                                }
                            }
                            Some(_) => {}
                        }
                        settle_burst(&mut watch, SETTLE).await;
                    }
                    _ = async { match lost.as_mut() { Some(rx) => { let _ = rx.wait_for(Option::is_some).await; } None => std::future::pending().await } } => {
                        lost = None;
                    }
                    _ = nudge.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                let Some(ctl) = weak.upgrade() else { return };
                if let Err(e) = ctl.cluster_round().await {
                    warn!(error = %e, "could not sync with the cluster");
                }
                // Registered (again): follow the new lease. Still lost: try again soon.
                wait = if ctl.node_lease_lost() { REGISTER_RETRY } else { RESYNC_EVERY };
                if lost.is_none() && !ctl.node_lease_lost() {
                    lost = ctl.node_lease_watch();
                }
            }
        });
    }

    /// This node's current liveness lease, while it holds one.
    pub(crate) fn node_lease_id(&self) -> Option<cove_store::LeaseId> {
        lock(&self.node_lease).as_ref().filter(|k| k.lost().is_none()).map(|k| k.lease().id)
    }

    /// A channel that turns `Some` when this node's current lease is lost.
    fn node_lease_watch(&self) -> Option<tokio::sync::watch::Receiver<Option<LeaseLost>>> {
        lock(&self.node_lease).as_ref().map(KeepAlive::subscribe)
    }
}
