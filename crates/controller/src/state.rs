//! In-memory view of the store, kept write-through: every change is committed to the store
//! in one batch first, then applied here.

use std::collections::{BTreeMap, HashMap};

use cove_ipam::PoolState;
use cove_model::{
    ContainerId, ContainerRecord, EndpointId, EndpointRecord, Error, NetworkId, NetworkRecord,
    PeerRecord, Result,
};
use cove_store::{Batch, Records, Table};

use crate::tracked::{Changes, Touches, Tracked};

/// Everything the controller knows, guarded by one async mutex.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) networks: Tracked<NetworkRecord>,
    pub(crate) endpoints: Tracked<EndpointRecord>,
    pub(crate) containers: Tracked<ContainerRecord>,
    /// IPAM state per `(network id, is_v6)`, derived from endpoint records at start, so an
    /// address is never allocated twice and never leaked across a crash.
    pub(crate) pools: HashMap<(String, bool), PoolState>,
    /// Other hosts' endpoints on global networks (mirrored from the cluster store).
    pub(crate) peers: BTreeMap<EndpointId, PeerRecord>,
    /// The tunnel addresses of the cluster's nodes (for the VXLAN guard).
    pub(crate) cluster_nodes: std::collections::BTreeSet<std::net::IpAddr>,
}

impl State {
    /// Load every record and rebuild IPAM allocations from the endpoints.
    pub(crate) fn load(store: &Records) -> Result<Self> {
        let mut s = State {
            networks: by_id(store.list::<NetworkRecord>(Table::Networks)?, |r| &r.id),
            endpoints: by_id(store.list::<EndpointRecord>(Table::Endpoints)?, |r| &r.id),
            containers: by_id(store.list::<ContainerRecord>(Table::Containers)?, |r| &r.id),
            pools: HashMap::new(),
            peers: store
                .list::<PeerRecord>(Table::Peers)?
                .into_iter()
                .map(|(_, p)| (p.endpoint.endpoint.id.clone(), p))
                .collect(),
            cluster_nodes: Default::default(),
        };
        for net in s.networks.values() {
            for pool in &net.ipam {
                s.pools.insert(
                    (net.id.to_string(), pool.subnet.addr().is_ipv6()),
                    PoolState::new(pool),
                );
            }
        }
        let peers = s.peers.values().map(|p| &p.endpoint.endpoint);
        for ep in s.endpoints.values().chain(peers) {
            mark_used(&mut s.pools, ep);
        }
        Ok(s)
    }

    /// Resolve a network reference (name, id, unique id prefix).
    pub(crate) fn network_id(&self, reference: &str) -> Result<NetworkId> {
        let id = cove_model::resolve(
            "network",
            reference,
            self.networks.values().map(|n| (n.id.as_str(), n.name.as_str())),
        )?;
        Ok(self.networks[id.as_str()].id.clone())
    }

    /// Resolve a network reference to its record.
    pub(crate) fn network(&self, reference: &str) -> Result<&NetworkRecord> {
        let id = self.network_id(reference)?;
        Ok(&self.networks[&id])
    }

    /// Resolve a container reference (name with or without `/`, id, unique id prefix).
    pub(crate) fn container_id(&self, reference: &str) -> Result<ContainerId> {
        let r = reference.strip_prefix('/').unwrap_or(reference);
        let id = cove_model::resolve(
            "container",
            r,
            self.containers.values().map(|c| (c.id.as_str(), c.name.as_str())),
        )
        .map_err(|e| match e.kind {
            cove_model::ErrorKind::NotFound => {
                Error::not_found(format!("No such container: {reference}"))
            }
            _ => e,
        })?;
        Ok(self.containers[id.as_str()].id.clone())
    }

    /// Resolve a container reference to its record.
    pub(crate) fn container(&self, reference: &str) -> Result<&ContainerRecord> {
        let id = self.container_id(reference)?;
        Ok(&self.containers[&id])
    }

    /// Endpoints of a container, in interface order.
    pub(crate) fn endpoints_of_container(&self, container_id: &str) -> Vec<&EndpointRecord> {
        let mut eps: Vec<_> = self.endpoints.in_group(container_id).collect();
        eps.sort_by_key(|e| ifindex(&e.ifname));
        eps
    }

    /// What changed (containers, networks) since the last call: the firewall's input.
    pub(crate) fn take_changes(&self) -> Changes {
        let mut c = self.containers.take_changes();
        c.merge(self.endpoints.take_changes());
        c.merge(self.networks.take_changes());
        c
    }

    /// Endpoints on a network.
    pub(crate) fn endpoints_of_network(&self, network_id: &str) -> Vec<&EndpointRecord> {
        self.endpoints.values().filter(|e| e.network_id == network_id).collect()
    }

    /// The pool of a network for one family.
    pub(crate) fn pool_mut(&mut self, network_id: &str, v6: bool) -> Option<&mut PoolState> {
        self.pools.get_mut(&(network_id.to_string(), v6))
    }
}

/// Records keyed by their own id (a record's key in the store is its id).
fn by_id<V: Touches>(records: Vec<(String, V)>, id: impl Fn(&V) -> &V::Key) -> Tracked<V> {
    records.into_iter().map(|(_, r)| (id(&r).clone(), r)).collect()
}

/// Mark `ep`'s addresses used in `pools` (a record found at start, another host's).
fn mark_used(pools: &mut HashMap<(String, bool), PoolState>, ep: &EndpointRecord) {
    if let Some(v4) = ep.ipv4 {
        if let Some(p) = pools.get_mut(&(ep.network_id.to_string(), false)) {
            p.restore(v4.addr().into());
        }
    }
    if let Some(v6) = ep.ipv6 {
        if let Some(p) = pools.get_mut(&(ep.network_id.to_string(), true)) {
            p.restore(v6.addr().into());
        }
    }
}

/// The store keys of an endpoint's addresses (`ipam/<network id>/<address>`, valued with
/// the endpoint's id): reserved only if absent, in the same transaction as the endpoint's
/// record, so no two endpoints can hold one address even where the in-memory pools are not
/// the only writer (a cluster store shared by several hosts).
pub(crate) fn address_keys(ep: &EndpointRecord) -> impl Iterator<Item = String> + '_ {
    let v4 = ep.ipv4.map(|a| a.addr().to_string());
    let v6 = ep.ipv6.map(|a| a.addr().to_string());
    v4.into_iter().chain(v6).map(move |a| format!("{}/{a}", ep.network_id))
}

/// Put an endpoint's record and reserve its addresses, in one batch.
pub(crate) fn put_endpoint(b: &mut Batch, ep: &EndpointRecord) {
    b.put(Table::Endpoints, &ep.id, ep);
    reserve_addresses(b, ep);
}

/// Reserve an endpoint's addresses: keys valued with its id, created only if absent.
pub(crate) fn reserve_addresses(b: &mut Batch, ep: &EndpointRecord) {
    for key in address_keys(ep) {
        b.require_absent(Table::Ipam, &key);
        b.put(Table::Ipam, &key, &ep.id);
    }
}

/// Delete an endpoint's record and free its addresses, in one batch.
pub(crate) fn delete_endpoint(b: &mut Batch, ep: &EndpointRecord) {
    b.delete(Table::Endpoints, &ep.id);
    for key in address_keys(ep) {
        b.delete(Table::Ipam, &key);
    }
}

/// The number in `ethN`, for ordering.
pub(crate) fn ifindex(ifname: &str) -> u32 {
    ifname.trim_start_matches("eth").parse().unwrap_or(u32::MAX)
}
