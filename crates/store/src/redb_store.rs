//! `RedbStore`: the store persisted in one embedded `redb` file.
//!
//! Two tables: `kv` maps each key to an envelope (format byte, create revision, mod
//! revision and version as little-endian `i64`, then the value), and `meta` holds the
//! current revision under `revision`, written in the same transaction as the keys. The
//! shared engine holds every key's bookkeeping (not its value) for transactions, and the
//! recent changes for watches; reads are served by a redb read transaction, a snapshot of
//! the keys and the revision together. History is not persisted: after an open, watches
//! from before the open's revision get `Compacted`.
//!
//! A file written before the `Store` trait (tables `networks`, `endpoints`, `containers`,
//! `ipam` of JSON records) is migrated at open, in one write transaction, to keys
//! `<table>/<key>`.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::time::Duration;

use redb::{
    Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction,
};

use crate::engine::{Change, Engine, Limits, Meta, Values, INITIAL_REVISION};
use crate::kv::{KeyValue, Range, Store, StoreError, Txn, TxnResponse, Watch};
use crate::lease::{Lease, LeaseId, Leases};

const KV: TableDefinition<'static, &'static str, &'static [u8]> = TableDefinition::new("kv");
const META: TableDefinition<'static, &'static str, i64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// The tables of the layout before the `Store` trait; each record moves to `<table>/<key>`.
const LEGACY_TABLES: [&str; 4] = ["networks", "endpoints", "containers", "ipam"];

const FORMAT: u8 = 1;
const HEADER: usize = 1 + 3 * 8;

fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + kv.value.len());
    out.push(FORMAT);
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode(key: &str, bytes: &[u8]) -> Result<KeyValue, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt { key: key.into(), reason: reason.into() };
    if bytes.len() < HEADER {
        return Err(corrupt("envelope too short"));
    }
    if bytes[0] != FORMAT {
        return Err(corrupt(&format!("unknown envelope format {}", bytes[0])));
    }
    let field = |i: usize| {
        let at = 1 + 8 * i;
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        i64::from_le_bytes(b)
    };
    Ok(KeyValue {
        key: key.into(),
        value: bytes[HEADER..].to_vec(),
        create_revision: field(0),
        mod_revision: field(1),
        version: field(2),
    })
}

/// A [`Store`] persisted in a redb file. One per file: redb locks it.
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    engine: Engine,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Open (or create) the store at `path`, with default limits.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, Limits::default())
    }

    /// Open (or create) the store at `path`, migrating a file of the old layout.
    pub fn open_with(path: &Path, limits: Limits) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(StoreError::unavailable)?;
        }
        let db = Database::create(path).map_err(StoreError::unavailable)?;
        let txn = db.begin_write().map_err(StoreError::unavailable)?;
        let (index, revision) = load(&txn)?;
        txn.commit().map_err(StoreError::unavailable)?;
        // The changes up to this revision were not kept; a store never written has none.
        let compact = if revision > INITIAL_REVISION { revision } else { 0 };
        let engine = Engine::new(index, Values::Backend, revision, compact, limits);
        Ok(Self { db, path: path.to_path_buf(), engine })
    }

    /// The value of `key` as last committed.
    fn value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(key)?.map(|kv| kv.value))
    }

    fn persist(&self, changes: &[Change], revision: i64) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(StoreError::unavailable)?;
        {
            let mut kv = txn.open_table(KV).map_err(StoreError::unavailable)?;
            for change in changes {
                match change {
                    Change::Put(new, _) => {
                        kv.insert(new.key.as_str(), encode(new).as_slice())
                            .map_err(StoreError::unavailable)?;
                    }
                    Change::Delete(key) => {
                        kv.remove(key.as_str()).map_err(StoreError::unavailable)?;
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(StoreError::unavailable)?;
            meta.insert(REVISION, revision).map_err(StoreError::unavailable)?;
        }
        txn.commit().map_err(StoreError::unavailable)
    }
}

/// Create the tables, migrate legacy ones, and read every key's bookkeeping and the
/// revision.
fn load(txn: &WriteTransaction) -> Result<(BTreeMap<String, Meta>, i64), StoreError> {
    let mut kv = txn.open_table(KV).map_err(StoreError::unavailable)?;
    let mut meta = txn.open_table(META).map_err(StoreError::unavailable)?;
    let mut revision = match meta.get(REVISION).map_err(StoreError::unavailable)? {
        Some(r) => r.value(),
        None => INITIAL_REVISION,
    };
    let legacy: Vec<String> = txn
        .list_tables()
        .map_err(StoreError::unavailable)?
        .map(|t| t.name().to_string())
        .filter(|name| LEGACY_TABLES.contains(&name.as_str()))
        .collect();
    if !legacy.is_empty() {
        let mut records = Vec::new();
        for name in &legacy {
            let def: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(name);
            let table = txn.open_table(def).map_err(StoreError::unavailable)?;
            for item in table.iter().map_err(StoreError::unavailable)? {
                let (k, v) = item.map_err(StoreError::unavailable)?;
                records.push((format!("{name}/{}", k.value()), v.value().to_vec()));
            }
        }
        if !records.is_empty() {
            revision += 1;
            for (key, value) in records {
                let old = match kv.get(key.as_str()).map_err(StoreError::unavailable)? {
                    Some(old) => Some(decode(&key, old.value())?),
                    None => None,
                };
                let new = KeyValue {
                    create_revision: old.as_ref().map_or(revision, |o| o.create_revision),
                    mod_revision: revision,
                    version: old.as_ref().map_or(1, |o| o.version + 1),
                    key,
                    value,
                };
                kv.insert(new.key.as_str(), encode(&new).as_slice())
                    .map_err(StoreError::unavailable)?;
            }
            meta.insert(REVISION, revision).map_err(StoreError::unavailable)?;
        }
        for name in &legacy {
            let def: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(name);
            txn.delete_table(def).map_err(StoreError::unavailable)?;
        }
        tracing::info!(tables = ?legacy, revision, "state store: migrated records to keys");
    }
    let mut index = BTreeMap::new();
    for item in kv.iter().map_err(StoreError::unavailable)? {
        let (k, v) = item.map_err(StoreError::unavailable)?;
        let entry = decode(k.value(), v.value())?;
        index.insert(entry.key.clone(), Meta::of(&entry));
    }
    Ok((index, revision))
}

impl Store for RedbStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::unavailable)?;
        let kv = txn.open_table(KV).map_err(StoreError::unavailable)?;
        match kv.get(key).map_err(StoreError::unavailable)? {
            Some(v) => Ok(Some(decode(key, v.value())?)),
            None => Ok(None),
        }
    }
    fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        // One read transaction: the keys and the revision are of the same commit.
        let txn = self.db.begin_read().map_err(StoreError::unavailable)?;
        let meta = txn.open_table(META).map_err(StoreError::unavailable)?;
        let revision = match meta.get(REVISION).map_err(StoreError::unavailable)? {
            Some(r) => r.value(),
            None => INITIAL_REVISION,
        };
        let kv = txn.open_table(KV).map_err(StoreError::unavailable)?;
        let bounds: (Bound<&str>, Bound<&str>) = (Bound::Included(prefix), Bound::Unbounded);
        let mut kvs = Vec::new();
        for item in kv.range::<&str>(bounds).map_err(StoreError::unavailable)? {
            let (k, v) = item.map_err(StoreError::unavailable)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            kvs.push(decode(k.value(), v.value())?);
        }
        Ok(Range { kvs, revision })
    }
    fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        if txn.leases().next().is_some() {
            return Err(unsupported());
        }
        self.engine.txn(
            &txn,
            |key| self.value(key),
            |changes, revision| self.persist(changes, revision),
        )
    }
    fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watch, StoreError> {
        self.engine.watch(prefix, start_revision)
    }
}

fn unsupported() -> StoreError {
    StoreError::Unsupported("a lease (the local store keeps keys until deleted)".into())
}

/// The local store has no leases: a single host has no peers to outlive.
impl Leases for RedbStore {
    fn grant(&self, _ttl: Duration) -> Result<Lease, StoreError> {
        Err(unsupported())
    }
    fn keep_alive(&self, _id: LeaseId) -> Result<Duration, StoreError> {
        Err(unsupported())
    }
    fn revoke(&self, _id: LeaseId) -> Result<(), StoreError> {
        Err(unsupported())
    }
    fn time_to_live(&self, _id: LeaseId) -> Result<Option<Duration>, StoreError> {
        Err(unsupported())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Compare, TxnOp, WatchEvent};

    #[test]
    fn envelope_round_trips_and_rejects_garbage() {
        let kv = KeyValue {
            key: "a".into(),
            value: b"{}".to_vec(),
            create_revision: 2,
            mod_revision: i64::MAX,
            version: 7,
        };
        assert_eq!(decode("a", &encode(&kv)), Ok(kv));
        assert!(matches!(decode("a", b"short"), Err(StoreError::Corrupt { .. })));
        let mut bad = encode(&KeyValue {
            key: "a".into(),
            value: vec![],
            create_revision: 1,
            mod_revision: 1,
            version: 1,
        });
        bad[0] = 9;
        let e = decode("a", &bad).unwrap_err();
        assert_eq!(e.to_string(), "state store: record a is corrupt: unknown envelope format 9");
    }

    #[test]
    fn reopen_keeps_keys_revisions_and_versions_but_not_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.redb");
        let (before, range) = {
            let s = RedbStore::open(&path).unwrap();
            assert_eq!(s.range("").unwrap().revision, 1);
            s.txn(Txn::new().and_then(TxnOp::put("a", "1")).and_then(TxnOp::put("b", "1")))
                .unwrap();
            s.txn(Txn::new().and_then(TxnOp::put("a", "2"))).unwrap();
            s.txn(Txn::new().and_then(TxnOp::delete("b"))).unwrap();
            // A fresh store never lost history.
            let mut w = s.watch("", 1).unwrap();
            assert!(matches!(w.try_recv(), Ok(WatchEvent::Put(_))));
            (s.get("a").unwrap().unwrap(), s.range("").unwrap())
        };
        assert_eq!((before.create_revision, before.mod_revision, before.version), (2, 3, 2));
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.get("a").unwrap(), Some(before));
        assert_eq!(s.range("").unwrap(), range);
        assert_eq!(range.revision, 4);
        assert_eq!(s.watch("", 2).unwrap_err(), StoreError::Compacted { compact_revision: 4 });
        assert_eq!(s.watch("", 4).unwrap_err(), StoreError::Compacted { compact_revision: 4 });
        let mut w = s.watch("", 5).unwrap();
        let r =
            s.txn(Txn::new().when(Compare::exists("a")).and_then(TxnOp::put("a", "3"))).unwrap();
        assert_eq!(r.revision, 5);
        match w.try_recv().unwrap() {
            WatchEvent::Put(kv) => assert_eq!((kv.key.as_str(), kv.version), ("a", 3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn leases_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("s.redb")).unwrap();
        let e = s.grant(Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "state store: a lease (the local store keeps keys until deleted) is not supported by this store"
        );
        let t = Txn::new().when(Compare::exists("x")).or_else(TxnOp::put_with_lease(
            "k",
            "v",
            LeaseId(1),
        ));
        assert!(matches!(s.txn(t), Err(StoreError::Unsupported(_))));
        assert_eq!(s.range("").unwrap().revision, 1);
    }

    #[test]
    fn old_layout_migrates_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cove.redb");
        {
            // The layout written before the Store trait: one table of JSON per kind.
            let db = Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            for (table, key, json) in [
                ("networks", "n1", r#"{"name":"one"}"#),
                ("networks", "n2", r#"{"name":"two"}"#),
                ("endpoints", "e1", r#"{"net":"n1"}"#),
                ("containers", "c1", r#"{"name":"web"}"#),
            ] {
                let def: TableDefinition<'_, &str, &[u8]> = TableDefinition::new(table);
                txn.open_table(def).unwrap().insert(key, json.as_bytes()).unwrap();
            }
            let ipam: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("ipam");
            txn.open_table(ipam).unwrap();
            txn.commit().unwrap();
        }
        {
            let s = RedbStore::open(&path).unwrap();
            let r = s.range("").unwrap();
            assert_eq!(r.revision, 2);
            let keys: Vec<_> = r.kvs.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(keys, ["containers/c1", "endpoints/e1", "networks/n1", "networks/n2"]);
            let n1 = s.get("networks/n1").unwrap().unwrap();
            assert_eq!(n1.value, br#"{"name":"one"}"#);
            assert_eq!((n1.create_revision, n1.mod_revision, n1.version), (2, 2, 1));
        }
        // The old tables are gone, so a second open migrates nothing.
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.range("").unwrap().revision, 2);
        assert_eq!(s.range("").unwrap().kvs.len(), 4);
        drop(s);
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let mut names: Vec<String> =
            txn.list_tables().unwrap().map(|t| t.name().to_string()).collect();
        names.sort();
        assert_eq!(names, ["kv", "meta"]);
    }
}
