//! Typed records over a [`Store`]: JSON values under `<table>/<id>` keys, written in
//! batches that commit as one transaction.

use std::path::Path;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use cove_model::Error;

use crate::kv::{Compare, KeyValue, Store, StoreError, Txn, TxnOp};
use crate::mem::MemStore;
use crate::redb_store::RedbStore;

/// The kinds of record Cove keeps; each is a key prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Network records: `networks/<network id>`.
    Networks,
    /// Endpoint records: `endpoints/<endpoint id>`.
    Endpoints,
    /// Container records: `containers/<container id>`.
    Containers,
    /// Address reservations: `ipam/<network id>/<address>`, created only if absent.
    Ipam,
    /// Hosts of the cluster that are up: `nodes/<node id>`, bound to the node's lease
    /// (cluster store).
    Nodes,
    /// Every host that ever joined, up or down: `node-state/<node id>` (cluster store).
    NodeStates,
    /// Cluster-wide network names: `network-names/<name>` = the network's id.
    NetworkNames,
    /// VXLAN network identifiers in use: `vni/<vni>` = the network's id.
    Segments,
    /// Subnets of global networks: `pools/<subnet>` = the network's id.
    Pools,
    /// Endpoints of other hosts on global networks, mirrored from the cluster store into
    /// the local one so the data plane is rebuilt after a restart without the cluster:
    /// `peers/<endpoint id>`.
    Peers,
    /// Services (cluster store): `services/<service id>`.
    Services,
    /// Cluster-wide service names: `service-names/<name>` = the service's id, created
    /// only if absent.
    ServiceNames,
    /// Tasks of services (cluster store): `tasks/<task id>`.
    Tasks,
    /// The orchestrator's leadership (cluster store): `leader/<role>` = the node id,
    /// bound to the leader's lease.
    Leader,
    /// Facts about the cluster itself (cluster store): `cluster/id` = its id, created by
    /// the first node that asks.
    Cluster,
    /// Nodes' own addresses on routing-mesh networks (cluster store):
    /// `node-addresses/<network id>/<node id>`.
    NodeAddresses,
}

impl Table {
    /// The table's name, the first segment of its keys.
    pub fn name(self) -> &'static str {
        match self {
            Table::Networks => "networks",
            Table::Endpoints => "endpoints",
            Table::Containers => "containers",
            Table::Ipam => "ipam",
            Table::Nodes => "nodes",
            Table::NodeStates => "node-state",
            Table::NetworkNames => "network-names",
            Table::Segments => "vni",
            Table::Pools => "pools",
            Table::Peers => "peers",
            Table::Services => "services",
            Table::ServiceNames => "service-names",
            Table::Tasks => "tasks",
            Table::Leader => "leader",
            Table::Cluster => "cluster",
            Table::NodeAddresses => "node-addresses",
        }
    }
    /// The prefix of every key of the table (`networks/`).
    pub fn prefix(self) -> String {
        format!("{}/", self.name())
    }
    /// The store key of record `id` (`networks/<id>`).
    pub fn key(self, id: &str) -> String {
        format!("{}/{id}", self.name())
    }
}

/// A set of writes, and the conditions they need, committed as one transaction.
///
/// Writes to one key replace each other: the last put or delete of a key wins.
#[derive(Debug, Default)]
pub struct Batch {
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Put `value` as JSON under `key`.
    pub fn put<T: Serialize>(&mut self, table: Table, key: &str, value: &T) -> &mut Self {
        let bytes = serde_json::to_vec(value).expect("records always serialize");
        self.push(TxnOp::Put { key: table.key(key), value: bytes })
    }
    /// Put `value` under `key`, bound to `lease`: it goes when the lease expires.
    pub fn put_with_lease<T: Serialize>(
        &mut self,
        table: Table,
        key: &str,
        value: &T,
        lease: crate::LeaseId,
    ) -> &mut Self {
        let bytes = serde_json::to_vec(value).expect("records always serialize");
        self.push(TxnOp::put_with_lease(table.key(key), bytes, lease))
    }
    /// Delete `key` (absent keys are fine).
    pub fn delete(&mut self, table: Table, key: &str) -> &mut Self {
        self.push(TxnOp::Delete { key: table.key(key) })
    }
    /// Commit only if `key` does not exist.
    pub fn require_absent(&mut self, table: Table, key: &str) -> &mut Self {
        self.compares.push(Compare::absent(table.key(key)));
        self
    }
    /// Commit only if `key` was last modified at `revision` (0: it does not exist).
    pub fn require_revision(&mut self, table: Table, key: &str, revision: i64) -> &mut Self {
        self.compares.push(Compare::mod_revision(table.key(key), revision));
        self
    }
    /// Whether the batch has no writes and no conditions.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.compares.is_empty()
    }

    fn push(&mut self, op: TxnOp) -> &mut Self {
        self.ops.retain(|o| op_key(o) != op_key(&op));
        self.ops.push(op);
        self
    }
}

fn op_key(op: &TxnOp) -> &str {
    match op {
        TxnOp::Put { key, .. } | TxnOp::PutWithLease { key, .. } | TxnOp::Delete { key } => key,
        TxnOp::DeletePrefix { prefix } => prefix,
    }
}

/// Typed records over a shared [`Store`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Records {
    store: Arc<dyn Store>,
}

impl Records {
    /// Records over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Records in a redb file at `path`, created if missing (and migrated from the old
    /// layout).
    pub fn open(path: &Path) -> Result<Self, Error> {
        Ok(Self::new(Arc::new(RedbStore::open(path)?)))
    }

    /// Records in memory only.
    pub fn in_memory() -> Self {
        Self::new(Arc::new(MemStore::new()))
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The store's current revision: it changes with every write, so a reader can tell
    /// whether anything was written between two points.
    pub fn revision(&self) -> Result<i64, Error> {
        // A range nothing matches answers with the revision alone (etcd's header does too).
        Ok(self.store.range("\u{10ffff}")?.revision)
    }

    /// Commit a batch atomically and durably; the store's revision after it. A condition
    /// that does not hold is a `Conflict` naming its key, and nothing is written.
    #[tracing::instrument(level = "debug", name = "store.commit", skip_all)]
    pub fn commit(&self, batch: Batch) -> Result<i64, Error> {
        let Batch { compares, ops } = batch;
        let txn = Txn { compares: compares.clone(), success: ops, failure: Vec::new() };
        let resp = self.store.txn(txn)?;
        if resp.succeeded {
            return Ok(resp.revision);
        }
        // Name the first condition that fails now; it may have changed since, so fall back
        // to naming them all.
        for c in &compares {
            if !c.holds(self.store.get(&c.key)?.as_ref()) {
                return Err(conflict(c));
            }
        }
        let keys: Vec<&str> = compares.iter().map(|c| c.key.as_str()).collect();
        Err(Error::conflict(format!("state store: {} changed concurrently", keys.join(", "))))
    }

    /// Every record of a table, sorted by key, decoded. A record that fails to decode is an
    /// error naming it.
    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, Error> {
        let prefix = table.prefix();
        let range = self.store.range(&prefix)?;
        range.kvs.iter().map(|kv| Ok((kv.key[prefix.len()..].to_string(), decode(kv)?))).collect()
    }

    /// One record, decoded.
    pub fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, Error> {
        Ok(self.get_with_revision(table, key)?.map(|(v, _)| v))
    }

    /// One record, decoded, with the revision that last modified it (for
    /// [`Batch::require_revision`]).
    pub fn get_with_revision<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<(T, i64)>, Error> {
        match self.store.get(&table.key(key))? {
            Some(kv) => Ok(Some((decode(&kv)?, kv.mod_revision))),
            None => Ok(None),
        }
    }
}

fn decode<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, Error> {
    serde_json::from_slice(&kv.value)
        .map_err(|e| StoreError::Corrupt { key: kv.key.clone(), reason: e.to_string() }.into())
}

fn conflict(c: &Compare) -> Error {
    use crate::kv::{CmpOp, CompareTarget};
    let key = &c.key;
    let message = match (&c.target, c.op) {
        (CompareTarget::Version(0), CmpOp::Equal) => format!("{key} already exists"),
        (CompareTarget::ModRevision(0), CmpOp::Equal) => format!("{key} already exists"),
        (CompareTarget::ModRevision(r), CmpOp::Equal) => {
            format!("{key} changed since revision {r}")
        }
        _ => format!("{key} changed concurrently"),
    };
    Error::conflict(format!("state store: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_model::ErrorKind;

    #[test]
    fn batch_is_atomic_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = Records::open(&path).unwrap();
            let mut b = Batch::new();
            b.put(Table::Networks, "n1", &"one").put(Table::Ipam, "n1/10.0.0.2", &vec![1, 2]);
            assert_eq!(s.commit(b).unwrap(), 2);
            let mut b = Batch::new();
            b.delete(Table::Ipam, "n1/10.0.0.2").delete(Table::Ipam, "absent");
            assert_eq!(s.commit(b).unwrap(), 3);
            assert_eq!(s.commit(Batch::new()).unwrap(), 3);
        }
        let s = Records::open(&path).unwrap();
        let nets: Vec<(String, String)> = s.list(Table::Networks).unwrap();
        assert_eq!(nets, vec![("n1".to_string(), "one".to_string())]);
        assert_eq!(s.get::<Vec<u8>>(Table::Ipam, "n1/10.0.0.2").unwrap(), None);
        assert_eq!(s.get::<String>(Table::Networks, "n1").unwrap().as_deref(), Some("one"));
    }

    #[test]
    fn corrupt_record_is_a_named_error() {
        let s = Records::in_memory();
        let mut b = Batch::new();
        b.put(Table::Containers, "c1", &"not a number");
        s.commit(b).unwrap();
        let e = s.list::<u32>(Table::Containers).unwrap_err();
        assert!(e.message.contains("record containers/c1 is corrupt"), "{}", e.message);
    }

    #[test]
    fn later_writes_to_a_key_replace_earlier_ones() {
        let s = Records::in_memory();
        let mut b = Batch::new();
        b.put(Table::Networks, "n1", &1).delete(Table::Networks, "n1").put(
            Table::Networks,
            "n2",
            &2,
        );
        b.put(Table::Networks, "n2", &3);
        s.commit(b).unwrap();
        assert_eq!(s.list::<u32>(Table::Networks).unwrap(), vec![("n2".to_string(), 3)]);
        let mut b = Batch::new();
        b.delete(Table::Networks, "n2").put(Table::Networks, "n2", &4);
        s.commit(b).unwrap();
        assert_eq!(s.get::<u32>(Table::Networks, "n2").unwrap(), Some(4));
    }

    #[test]
    fn conditions_make_a_conflict_naming_the_key() {
        let s = Records::in_memory();
        let mut b = Batch::new();
        b.require_absent(Table::Ipam, "n1/10.0.0.2").put(Table::Ipam, "n1/10.0.0.2", &"e1").put(
            Table::Endpoints,
            "e1",
            &"ep",
        );
        let rev = s.commit(b).unwrap();

        let mut b = Batch::new();
        b.require_absent(Table::Ipam, "n1/10.0.0.2").put(Table::Ipam, "n1/10.0.0.2", &"e2").put(
            Table::Endpoints,
            "e2",
            &"ep",
        );
        let e = s.commit(b).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(e.message, "state store: ipam/n1/10.0.0.2 already exists");
        assert_eq!(s.get::<String>(Table::Endpoints, "e2").unwrap(), None);

        let (_, at) = s.get_with_revision::<String>(Table::Endpoints, "e1").unwrap().unwrap();
        assert_eq!(at, rev);
        let mut b = Batch::new();
        b.require_revision(Table::Endpoints, "e1", at).put(Table::Endpoints, "e1", &"v2");
        s.commit(b).unwrap();
        let mut b = Batch::new();
        b.require_revision(Table::Endpoints, "e1", at).put(Table::Endpoints, "e1", &"v3");
        let e = s.commit(b).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(e.message, format!("state store: endpoints/e1 changed since revision {at}"));
        assert_eq!(s.get::<String>(Table::Endpoints, "e1").unwrap().as_deref(), Some("v2"));
    }
}
