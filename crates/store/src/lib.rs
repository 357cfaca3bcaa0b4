//! State store: typed tables of JSON records in an embedded `redb` database.
//!
//! Every write is one atomic, durable transaction ([`Batch`]), so a crash leaves either the
//! whole intent or none of it. Key layout (documented in `docs/design.md`):
//!
//! | table        | key                         | value                        |
//! |--------------|-----------------------------|------------------------------|
//! | `networks`   | network id                  | `NetworkRecord` JSON         |
//! | `endpoints`  | endpoint id                 | `EndpointRecord` JSON        |
//! | `containers` | container id                | `ContainerRecord` JSON       |
//! | `ipam`       | `<network id>/v4` or `/v6`  | `PoolState` JSON             |
#![warn(missing_docs)]

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::sync::Arc;

use cove_model::Error;

/// The tables Cove keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// Network records.
    Networks,
    /// Endpoint records.
    Endpoints,
    /// Container records.
    Containers,
    /// IPAM pool states.
    Ipam,
}

impl Table {
    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        TableDefinition::new(match self {
            Table::Networks => "networks",
            Table::Endpoints => "endpoints",
            Table::Containers => "containers",
            Table::Ipam => "ipam",
        })
    }
    const ALL: [Table; 4] = [Table::Networks, Table::Endpoints, Table::Containers, Table::Ipam];
}

/// A set of writes committed atomically.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<(Table, String, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }
    /// Put `value` as JSON under `key`.
    pub fn put<T: Serialize>(&mut self, table: Table, key: &str, value: &T) -> &mut Self {
        let bytes = serde_json::to_vec(value).expect("records always serialize");
        self.ops.push((table, key.to_string(), Some(bytes)));
        self
    }
    /// Delete `key` (absent keys are fine).
    pub fn delete(&mut self, table: Table, key: &str) -> &mut Self {
        self.ops.push((table, key.to_string(), None));
        self
    }
    /// Whether the batch has no writes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The embedded store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!("state store: {e}"))
}

impl Store {
    /// Open (or create) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, Error> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(store_err)?;
        }
        let db = Database::create(path).map_err(store_err)?;
        let txn = db.begin_write().map_err(store_err)?;
        for t in Table::ALL {
            txn.open_table(t.def()).map_err(store_err)?;
        }
        txn.commit().map_err(store_err)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Commit a batch atomically and durably.
    #[tracing::instrument(level = "debug", name = "store.commit", skip_all)]
    pub fn commit(&self, batch: Batch) -> Result<(), Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(store_err)?;
        {
            for (table, key, value) in &batch.ops {
                let mut t = txn.open_table(table.def()).map_err(store_err)?;
                match value {
                    Some(v) => {
                        t.insert(key.as_str(), v.as_slice()).map_err(store_err)?;
                    }
                    None => {
                        t.remove(key.as_str()).map_err(store_err)?;
                    }
                }
            }
        }
        txn.commit().map_err(store_err)
    }

    /// Every record of a table, decoded. A record that fails to decode is an error naming it.
    pub fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<(String, T)>, Error> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let t = txn.open_table(table.def()).map_err(store_err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(store_err)? {
            let (k, v) = item.map_err(store_err)?;
            let value = serde_json::from_slice(v.value())
                .map_err(|e| store_err(format!("record {} is corrupt: {e}", k.value())))?;
            out.push((k.value().to_string(), value));
        }
        Ok(out)
    }

    /// One record, decoded.
    pub fn get<T: DeserializeOwned>(&self, table: Table, key: &str) -> Result<Option<T>, Error> {
        let txn = self.db.begin_read().map_err(store_err)?;
        let t = txn.open_table(table.def()).map_err(store_err)?;
        match t.get(key).map_err(store_err)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| store_err(format!("record {key} is corrupt: {e}"))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_atomic_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = Store::open(&path).unwrap();
            let mut b = Batch::new();
            b.put(Table::Networks, "n1", &"one").put(Table::Ipam, "n1/v4", &vec![1, 2]);
            s.commit(b).unwrap();
            let mut b = Batch::new();
            b.delete(Table::Ipam, "n1/v4").delete(Table::Ipam, "absent");
            s.commit(b).unwrap();
        }
        let s = Store::open(&path).unwrap();
        let nets: Vec<(String, String)> = s.list(Table::Networks).unwrap();
        assert_eq!(nets, vec![("n1".to_string(), "one".to_string())]);
        assert_eq!(s.get::<Vec<u8>>(Table::Ipam, "n1/v4").unwrap(), None);
        assert_eq!(s.get::<String>(Table::Networks, "n1").unwrap().as_deref(), Some("one"));
    }

    #[test]
    fn corrupt_record_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut b = Batch::new();
        b.put(Table::Containers, "c1", &"not a number");
        s.commit(b).unwrap();
        let e = s.list::<u32>(Table::Containers).unwrap_err();
        assert!(e.message.contains("record c1 is corrupt"), "{}", e.message);
    }
}
