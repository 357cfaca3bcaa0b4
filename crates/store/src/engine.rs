//! The in-memory core both backends share: the key index, the revision, the ring of recent
//! changes, the live watchers, and leases. A backend that persists (redb) hands
//! [`Engine::txn`] a function that writes the changes durably; they are applied in memory
//! only after it succeeds, so memory never runs ahead of disk. Leases live in memory only:
//! the persisting backend refuses them before they reach the engine, and their expiry is
//! driven by the caller's clock (`now`, time since some fixed start).
//!
//! The index keeps each key's bookkeeping ([`Meta`]: revisions and version), which is all a
//! transaction's plan and most compares need. Values are kept only by an engine made with
//! [`Values::InMemory`] (the memory backend, which has nowhere else to keep them); a
//! persisting backend keeps them on disk and serves reads from there, and hands
//! [`Engine::txn`] a way to read one for a value compare. A host of 2,000 containers holds
//! some 3 KiB per container record: a second copy of every value in memory, beside the
//! controller's decoded records, was memory for nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::kv::{
    CompareTarget, KeyValue, Range, StoreError, Txn, TxnOp, TxnResponse, Watch, WatchEvent,
};
use crate::lease::{ttl_secs, Lease, LeaseId};

/// The revision of a store nobody has written to (as etcd's); the first write is 2.
pub(crate) const INITIAL_REVISION: i64 = 1;

/// How much history and buffering a store keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How many recent changes are kept for watches from a past revision.
    pub history: usize,
    /// How many bytes of keys and values those changes may hold: a host of 2,000
    /// containers rewrites kilobyte-sized records all the time, and 10,000 of them were
    /// half the daemon's memory.
    pub history_bytes: usize,
    /// How many live changes may queue for one watcher before it is cut off as lagged.
    pub watch_buffer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { history: 10_000, history_bytes: 1 << 20, watch_buffer: 1024 }
    }
}

/// A key's bookkeeping, as etcd keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Meta {
    /// The revision that created the key.
    pub(crate) create_revision: i64,
    /// The revision that last modified it.
    pub(crate) mod_revision: i64,
    /// Writes since it was created.
    pub(crate) version: i64,
}

impl Meta {
    /// The bookkeeping of `kv`.
    pub(crate) fn of(kv: &KeyValue) -> Self {
        Self {
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }

    fn with(self, key: &str, value: Vec<u8>) -> KeyValue {
        KeyValue {
            key: key.to_string(),
            value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
        }
    }
}

/// Where the values of the keys are kept.
#[derive(Debug)]
pub(crate) enum Values {
    /// Here, by key: the engine serves reads ([`Engine::get`], [`Engine::range`]).
    InMemory(HashMap<String, Vec<u8>>),
    /// In the backend, which serves reads itself.
    Backend,
}

/// What one key looks like after a write transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// The key's new state, and the lease it is bound to now.
    Put(KeyValue, Option<LeaseId>),
    /// The key is gone.
    Delete(String),
}

/// What an event of the history costs in memory, roughly: its key and value.
fn event_bytes(event: &WatchEvent) -> usize {
    match event {
        WatchEvent::Put(kv) => kv.key.len() + kv.value.len(),
        WatchEvent::Delete { key, .. } => key.len(),
        _ => 0,
    }
}

#[derive(Debug)]
struct LeaseEntry {
    ttl: Duration,
    /// When it expires, on the caller's clock.
    expires: Duration,
    keys: BTreeSet<String>,
}

#[derive(Debug)]
struct Watcher {
    prefix: String,
    start_revision: i64,
    tx: mpsc::Sender<WatchEvent>,
}

impl Watcher {
    /// Queue `event` if the watcher wants it; false once the watcher is gone or cut off.
    fn offer(&self, event: &WatchEvent) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        let wanted = event.revision().is_some_and(|r| r >= self.start_revision)
            && event.key().is_some_and(|k| k.starts_with(&self.prefix));
        if !wanted {
            return true;
        }
        // The last slot is kept for `Lagged`, so the cut-off is always seen. We are the only
        // sender, so the capacity can only grow between the check and the send.
        if self.tx.capacity() > 1 {
            self.tx.try_send(event.clone()).is_ok()
        } else {
            let _ = self.tx.try_send(WatchEvent::Lagged);
            false
        }
    }
}

#[derive(Debug)]
struct State {
    index: BTreeMap<String, Meta>,
    values: Values,
    revision: i64,
    /// The newest revision whose changes are no longer all in `history`.
    compact_revision: i64,
    history: VecDeque<WatchEvent>,
    /// Bytes of keys and values in `history`.
    history_bytes: usize,
    watchers: Vec<Watcher>,
    leases: BTreeMap<LeaseId, LeaseEntry>,
    /// The lease each leased key is bound to.
    key_leases: HashMap<String, LeaseId>,
    last_lease: i64,
}

/// The shared core: see the module docs.
#[derive(Debug)]
pub(crate) struct Engine {
    limits: Limits,
    /// Held for a whole write transaction: compares, persistence and apply are one step.
    writer: Mutex<()>,
    state: RwLock<State>,
}

impl Engine {
    /// An engine over `index` (with its `values`) at `revision`, with history from
    /// `compact_revision + 1` on (none kept yet).
    pub(crate) fn new(
        index: BTreeMap<String, Meta>,
        values: Values,
        revision: i64,
        compact_revision: i64,
        limits: Limits,
    ) -> Self {
        let state = State {
            index,
            values,
            revision,
            compact_revision,
            history: VecDeque::new(),
            history_bytes: 0,
            watchers: Vec::new(),
            leases: BTreeMap::new(),
            key_leases: HashMap::new(),
            last_lease: 0,
        };
        Self { limits, writer: Mutex::new(()), state: RwLock::new(state) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // State is only mutated by `apply`, which cannot panic half-way; a poisoned lock
        // still guards a consistent state.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// One key, from an engine that keeps its values ([`Values::InMemory`]).
    pub(crate) fn get(&self, key: &str) -> Option<KeyValue> {
        let st = self.read();
        let meta = st.index.get(key)?;
        Some(meta.with(key, st.value(key)))
    }

    /// The keys under `prefix`, from an engine that keeps its values
    /// ([`Values::InMemory`]).
    pub(crate) fn range(&self, prefix: &str) -> Range {
        let st = self.read();
        let kvs = st
            .index
            .range::<str, _>(from(prefix))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, meta)| meta.with(k, st.value(k)))
            .collect();
        Range { kvs, revision: st.revision }
    }

    /// Run `txn`; `persist` must make the changes (at the new revision) durable before they
    /// are applied in memory and published. It is not called when nothing changes. A
    /// backend that keeps the values ([`Values::Backend`]) reads one for a value compare
    /// with `value_of` (called with the writer lock held: the backend is at the engine's
    /// revision).
    pub(crate) fn txn(
        &self,
        txn: &Txn,
        value_of: impl Fn(&str) -> Result<Option<Vec<u8>>, StoreError>,
        persist: impl FnOnce(&[Change], i64) -> Result<(), StoreError>,
    ) -> Result<TxnResponse, StoreError> {
        txn.validate()?;
        let _writing = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let (succeeded, changes, revision) = {
            let st = self.read();
            let mut succeeded = true;
            for c in &txn.compares {
                let kv = match st.index.get(&c.key) {
                    None => None,
                    // Only a value compare needs the value.
                    Some(meta) => Some(match (&c.target, &st.values) {
                        (CompareTarget::Value(_), Values::InMemory(v)) => {
                            meta.with(&c.key, v.get(&c.key).cloned().unwrap_or_default())
                        }
                        (CompareTarget::Value(_), Values::Backend) => {
                            meta.with(&c.key, value_of(&c.key)?.unwrap_or_default())
                        }
                        _ => meta.with(&c.key, Vec::new()),
                    }),
                };
                if !c.holds(kv.as_ref()) {
                    succeeded = false;
                    break;
                }
            }
            let ops = if succeeded { &txn.success } else { &txn.failure };
            // As etcd: only the branch that runs needs its leases to exist.
            if let Some(gone) =
                ops.iter().filter_map(TxnOp::lease).find(|l| !st.leases.contains_key(l))
            {
                return Err(StoreError::LeaseNotFound(gone));
            }
            let next = st.revision + 1;
            (succeeded, plan(&st.index, ops, next), st.revision)
        };
        if changes.is_empty() {
            return Ok(TxnResponse { succeeded, revision });
        }
        let next = revision + 1;
        persist(&changes, next)?;
        self.apply(changes, next);
        Ok(TxnResponse { succeeded, revision: next })
    }

    fn apply(&self, changes: Vec<Change>, revision: i64) {
        let mut st = self.write();
        let st = &mut *st;
        st.revision = revision;
        for change in changes {
            let (key, lease) = match &change {
                Change::Put(kv, lease) => (&kv.key, *lease),
                Change::Delete(key) => (key, None),
            };
            // A put replaces the key's lease; a delete ends it.
            if let Some(old) = st.key_leases.remove(key) {
                if let Some(l) = st.leases.get_mut(&old) {
                    l.keys.remove(key);
                }
            }
            if let Some(new) = lease {
                if let Some(l) = st.leases.get_mut(&new) {
                    l.keys.insert(key.clone());
                    st.key_leases.insert(key.clone(), new);
                }
            }
            let event = match change {
                Change::Put(kv, _) => {
                    st.index.insert(kv.key.clone(), Meta::of(&kv));
                    if let Values::InMemory(v) = &mut st.values {
                        v.insert(kv.key.clone(), kv.value.clone());
                    }
                    WatchEvent::Put(kv)
                }
                Change::Delete(key) => {
                    st.index.remove(&key);
                    if let Values::InMemory(v) = &mut st.values {
                        v.remove(&key);
                    }
                    WatchEvent::Delete { key, revision }
                }
            };
            st.watchers.retain(|w| w.offer(&event));
            st.history_bytes += event_bytes(&event);
            st.history.push_back(event);
            while st.history.len() > self.limits.history
                || st.history_bytes > self.limits.history_bytes
            {
                let Some(old) = st.history.pop_front() else { break };
                st.history_bytes -= event_bytes(&old);
                st.compact_revision = old.revision().unwrap_or(st.compact_revision);
            }
        }
    }

    pub(crate) fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watch, StoreError> {
        let mut st = self.write();
        let start = if start_revision <= 0 { st.revision + 1 } else { start_revision };
        if start <= st.compact_revision {
            return Err(StoreError::Compacted { compact_revision: st.compact_revision });
        }
        let past: Vec<&WatchEvent> = st
            .history
            .iter()
            .filter(|e| e.revision().is_some_and(|r| r >= start))
            .filter(|e| e.key().is_some_and(|k| k.starts_with(prefix)))
            .collect();
        // Room for the whole replay on top of the live buffer: catching up never lags.
        let (tx, rx) = mpsc::channel(past.len() + self.limits.watch_buffer.max(2));
        for e in past {
            // Cannot fail: the channel is new and has room for every past event.
            let _ = tx.try_send(e.clone());
        }
        st.watchers.push(Watcher { prefix: prefix.to_string(), start_revision: start, tx });
        Ok(Watch::new(rx))
    }
}

impl Engine {
    /// Grant a lease expiring `ttl` (whole seconds, as etcd) after `now`.
    pub(crate) fn grant(&self, ttl: Duration, now: Duration) -> Lease {
        let ttl = Duration::from_secs(ttl_secs(ttl).unsigned_abs());
        let _writing = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut st = self.write();
        st.last_lease += 1;
        let id = LeaseId(st.last_lease);
        st.leases.insert(id, LeaseEntry { ttl, expires: now + ttl, keys: BTreeSet::new() });
        Lease { id, ttl }
    }

    /// Restore the lease's full TTL from `now` (expire first: an expired lease is gone).
    pub(crate) fn keep_alive(&self, id: LeaseId, now: Duration) -> Result<Duration, StoreError> {
        let mut st = self.write();
        let lease = st.leases.get_mut(&id).ok_or(StoreError::LeaseNotFound(id))?;
        lease.expires = now + lease.ttl;
        Ok(lease.ttl)
    }

    /// What the lease has left at `now`.
    pub(crate) fn time_to_live(&self, id: LeaseId, now: Duration) -> Option<Duration> {
        self.read().leases.get(&id).map(|l| l.expires.saturating_sub(now))
    }

    /// End the lease and delete its keys in one revision (none if it had no keys).
    pub(crate) fn revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        let _writing = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let (changes, next) = {
            let mut st = self.write();
            let lease = st.leases.remove(&id).ok_or(StoreError::LeaseNotFound(id))?;
            // etcd deletes a lease's keys in key order.
            let changes: Vec<Change> = lease.keys.into_iter().map(Change::Delete).collect();
            (changes, st.revision + 1)
        };
        if !changes.is_empty() {
            self.apply(changes, next);
        }
        Ok(())
    }

    /// Revoke every lease expired at `now`, oldest first, each in its own revision.
    pub(crate) fn expire(&self, now: Duration) {
        let expired: Vec<(Duration, LeaseId)> = {
            let st = self.read();
            st.leases
                .iter()
                .filter(|(_, l)| l.expires <= now)
                .map(|(id, l)| (l.expires, *id))
                .collect()
        };
        let mut expired = expired;
        expired.sort();
        for (_, id) in expired {
            // Another caller may have expired or revoked it meanwhile: fine.
            let _ = self.revoke(id);
        }
    }
}

/// Every key from `prefix` on, for a `BTreeMap<String, _>` range.
fn from(prefix: &str) -> (Bound<&str>, Bound<&str>) {
    (Bound::Included(prefix), Bound::Unbounded)
}

impl State {
    /// A key's value as an engine that keeps values has it (empty otherwise).
    fn value(&self, key: &str) -> Vec<u8> {
        match &self.values {
            Values::InMemory(v) => v.get(key).cloned().unwrap_or_default(),
            Values::Backend => {
                debug_assert!(false, "the backend serves the values of this engine");
                Vec::new()
            }
        }
    }
}

/// The changes `ops` (checked) make to `index` at `revision`, in op order.
fn plan(index: &BTreeMap<String, Meta>, ops: &[TxnOp], revision: i64) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut deleted = BTreeSet::new();
    for op in ops {
        match op {
            TxnOp::Put { key, value } | TxnOp::PutWithLease { key, value, .. } => {
                let old = index.get(key);
                let kv = KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: old.map_or(revision, |o| o.create_revision),
                    mod_revision: revision,
                    version: old.map_or(1, |o| o.version + 1),
                };
                changes.push(Change::Put(kv, op.lease()));
            }
            TxnOp::Delete { key } => {
                if index.contains_key(key) && deleted.insert(key.clone()) {
                    changes.push(Change::Delete(key.clone()));
                }
            }
            TxnOp::DeletePrefix { prefix } => {
                for key in index
                    .range::<str, _>(from(prefix))
                    .map(|(k, _)| k)
                    .take_while(|k| k.starts_with(prefix.as_str()))
                {
                    if deleted.insert(key.clone()) {
                        changes.push(Change::Delete(key.clone()));
                    }
                }
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_deletes_delete_once() {
        let mut index = BTreeMap::new();
        for k in ["a", "a/b", "b"] {
            index.insert(k.to_string(), Meta { create_revision: 2, mod_revision: 2, version: 1 });
        }
        let ops = [TxnOp::delete("a/b"), TxnOp::delete_prefix("a"), TxnOp::delete("zz")];
        assert_eq!(
            plan(&index, &ops, 3),
            vec![Change::Delete("a/b".into()), Change::Delete("a".into())]
        );
    }
}
