//! `MemStore`: the store's semantics in memory, for tests and as a fake, with leases on a
//! clock tests can drive.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::engine::{Engine, Limits, Values, INITIAL_REVISION};
use crate::kv::{KeyValue, Range, Store, StoreError, Txn, TxnResponse, Watch};
use crate::lease::{Lease, LeaseId, Leases};

/// A [`Store`] kept in memory only: nothing survives a drop. Never compacted until its
/// history overflows.
///
/// Leases ([`Leases`]) run on the store's clock: real time plus whatever
/// [`MemStore::advance`] added. Expired leases are revoked (their keys deleted, watchers
/// told) at the next call on the store or at `advance`, not by a timer: a store nobody
/// calls keeps expired keys until somebody looks.
#[derive(Debug)]
pub struct MemStore {
    engine: Engine,
    start: Instant,
    /// Time added by `advance`.
    skew: Mutex<Duration>,
}

impl MemStore {
    /// An empty store at revision 1, with default limits.
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }
    /// An empty store keeping `limits.history` changes for watches.
    pub fn with_limits(limits: Limits) -> Self {
        Self {
            engine: Engine::new(
                BTreeMap::new(),
                Values::InMemory(HashMap::new()),
                INITIAL_REVISION,
                0,
                limits,
            ),
            start: Instant::now(),
            skew: Mutex::new(Duration::ZERO),
        }
    }

    /// Move the store's clock forward by `by`, and revoke the leases that expire by then.
    pub fn advance(&self, by: Duration) {
        *self.skew.lock().unwrap_or_else(PoisonError::into_inner) += by;
        self.expire();
    }

    /// The store's clock: time since it was made, plus every `advance`.
    fn now(&self) -> Duration {
        self.start.elapsed() + *self.skew.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn expire(&self) {
        self.engine.expire(self.now());
    }
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

impl Store for MemStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.expire();
        Ok(self.engine.get(key))
    }
    fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        self.expire();
        Ok(self.engine.range(prefix))
    }
    fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.expire();
        self.engine.txn(&txn, |_| Ok(None), |_, _| Ok(()))
    }
    fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watch, StoreError> {
        self.expire();
        self.engine.watch(prefix, start_revision)
    }
}

impl Leases for MemStore {
    fn grant(&self, ttl: Duration) -> Result<Lease, StoreError> {
        self.expire();
        Ok(self.engine.grant(ttl, self.now()))
    }
    fn keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError> {
        self.expire();
        self.engine.keep_alive(id, self.now())
    }
    fn revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        self.expire();
        self.engine.revoke(id)
    }
    fn time_to_live(&self, id: LeaseId) -> Result<Option<Duration>, StoreError> {
        self.expire();
        Ok(self.engine.time_to_live(id, self.now()))
    }
}
