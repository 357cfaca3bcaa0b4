//! `MemStore`: the store's semantics in memory, for tests and as a fake.

use std::collections::BTreeMap;

use crate::engine::{Engine, Limits, INITIAL_REVISION};
use crate::kv::{KeyValue, Range, Store, StoreError, Txn, TxnResponse, Watch};

/// A [`Store`] kept in memory only: nothing survives a drop. Never compacted until its
/// history overflows.
#[derive(Debug)]
pub struct MemStore {
    engine: Engine,
}

impl MemStore {
    /// An empty store at revision 1, with default limits.
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }
    /// An empty store keeping `limits.history` changes for watches.
    pub fn with_limits(limits: Limits) -> Self {
        Self { engine: Engine::new(BTreeMap::new(), INITIAL_REVISION, 0, limits) }
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Store for MemStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.engine.get(key))
    }
    fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        Ok(self.engine.range(prefix))
    }
    fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.engine.txn(&txn, |_, _| Ok(()))
    }
    fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watch, StoreError> {
        self.engine.watch(prefix, start_revision)
    }
}
