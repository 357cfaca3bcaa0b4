//! The `Store` trait: a revisioned key-value store with etcd v3 semantics.
//!
//! Keys are UTF-8 strings, values bytes. Every successful write transaction bumps one
//! store-wide revision; each key remembers the revision that created it, the revision that
//! last modified it, and how many times it was written since it was created. Transactions
//! are compare-then-write ([`Txn`]); watches replay recent history and then follow live
//! changes ([`Store::watch`]). See `docs/adr/0008-store-trait.md`.

use std::collections::BTreeSet;
use std::fmt;

use cove_model::{Error, ErrorKind};
use tokio::sync::mpsc;

use crate::lease::LeaseId;

/// One key as stored, with etcd's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The revision of the write that created the key (since it last did not exist).
    pub create_revision: i64,
    /// The revision of the write that last modified the key.
    pub mod_revision: i64,
    /// How many times the key was written since it was created: 1 after the create.
    pub version: i64,
}

/// The keys under a prefix, sorted by key, and the store's revision they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The keys, sorted.
    pub kvs: Vec<KeyValue>,
    /// The store's revision at the read; watch from `revision + 1` to follow on.
    pub revision: i64,
}

/// How a [`Compare`] relates the key's field to the given value (`field <op> value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `field == value`.
    Equal,
    /// `field != value`.
    NotEqual,
    /// `field < value`.
    Less,
    /// `field > value`.
    Greater,
}

impl CmpOp {
    fn holds<T: Ord + ?Sized>(self, field: &T, value: &T) -> bool {
        match self {
            CmpOp::Equal => field == value,
            CmpOp::NotEqual => field != value,
            CmpOp::Less => field < value,
            CmpOp::Greater => field > value,
        }
    }
}

/// Which field of a key a [`Compare`] looks at, and the value it is compared with.
///
/// An absent key has version, create revision and mod revision 0. A value compare on an
/// absent key never holds (as in etcd, which cannot tell a missing value from an empty one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CompareTarget {
    /// The key's version.
    Version(i64),
    /// The key's create revision.
    CreateRevision(i64),
    /// The key's mod revision.
    ModRevision(i64),
    /// The key's value, compared bytewise.
    Value(Vec<u8>),
}

/// A condition on one key, checked when a [`Txn`] runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Compare {
    /// The key looked at.
    pub key: String,
    /// The field and the value it is compared with.
    pub target: CompareTarget,
    /// The relation that must hold.
    pub op: CmpOp,
}

impl Compare {
    /// `key`'s field `target` must relate to the target's value by `op`.
    pub fn new(key: impl Into<String>, op: CmpOp, target: CompareTarget) -> Self {
        Self { key: key.into(), target, op }
    }
    /// The key does not exist (version == 0).
    pub fn absent(key: impl Into<String>) -> Self {
        Self::new(key, CmpOp::Equal, CompareTarget::Version(0))
    }
    /// The key exists (version > 0).
    pub fn exists(key: impl Into<String>) -> Self {
        Self::new(key, CmpOp::Greater, CompareTarget::Version(0))
    }
    /// The key was last modified at `revision` (0: the key does not exist).
    pub fn mod_revision(key: impl Into<String>, revision: i64) -> Self {
        Self::new(key, CmpOp::Equal, CompareTarget::ModRevision(revision))
    }
    /// The key's version relates to `version` by `op`.
    pub fn version(key: impl Into<String>, op: CmpOp, version: i64) -> Self {
        Self::new(key, op, CompareTarget::Version(version))
    }
    /// The key's create revision relates to `revision` by `op`.
    pub fn create_revision(key: impl Into<String>, op: CmpOp, revision: i64) -> Self {
        Self::new(key, op, CompareTarget::CreateRevision(revision))
    }
    /// The key's value relates to `value` by `op` (never holds for an absent key).
    pub fn value(key: impl Into<String>, op: CmpOp, value: impl Into<Vec<u8>>) -> Self {
        Self::new(key, op, CompareTarget::Value(value.into()))
    }

    /// Whether the compare holds for the key's current state (`None`: absent).
    pub fn holds(&self, kv: Option<&KeyValue>) -> bool {
        let (version, create, modified) =
            kv.map_or((0, 0, 0), |kv| (kv.version, kv.create_revision, kv.mod_revision));
        match &self.target {
            CompareTarget::Version(v) => self.op.holds(&version, v),
            CompareTarget::CreateRevision(r) => self.op.holds(&create, r),
            CompareTarget::ModRevision(r) => self.op.holds(&modified, r),
            CompareTarget::Value(v) => kv.is_some_and(|kv| self.op.holds(kv.value.as_slice(), v)),
        }
    }
}

/// One write of a transaction.
///
/// A put binds its key to no lease ([`TxnOp::Put`]) or to one ([`TxnOp::PutWithLease`]):
/// as in etcd, a put replaces the key's lease, so a plain put of a leased key detaches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TxnOp {
    /// Create or replace `key`, bound to no lease.
    Put {
        /// The key (not empty).
        key: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Delete `key`; an absent key is no change.
    Delete {
        /// The key.
        key: String,
    },
    /// Delete every key starting with `prefix` (`""`: every key).
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
    /// Create or replace `key`, bound to `lease`: the key is deleted when the lease expires
    /// or is revoked ([`crate::Leases`]). The transaction fails with
    /// [`StoreError::LeaseNotFound`] if this op runs and the lease no longer exists.
    PutWithLease {
        /// The key (not empty).
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// The lease the key lives as long as.
        lease: LeaseId,
    },
}

impl TxnOp {
    /// A put.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put { key: key.into(), value: value.into() }
    }
    /// A put of a key that lives as long as `lease`.
    pub fn put_with_lease(
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        TxnOp::PutWithLease { key: key.into(), value: value.into(), lease }
    }
    /// A delete of one key.
    pub fn delete(key: impl Into<String>) -> Self {
        TxnOp::Delete { key: key.into() }
    }
    /// A delete of every key under a prefix.
    pub fn delete_prefix(prefix: impl Into<String>) -> Self {
        TxnOp::DeletePrefix { prefix: prefix.into() }
    }
    /// The key a put writes (`None` for deletes).
    pub fn put_key(&self) -> Option<&str> {
        match self {
            TxnOp::Put { key, .. } | TxnOp::PutWithLease { key, .. } => Some(key),
            TxnOp::Delete { .. } | TxnOp::DeletePrefix { .. } => None,
        }
    }
    /// The lease a put binds its key to.
    pub fn lease(&self) -> Option<LeaseId> {
        match self {
            TxnOp::PutWithLease { lease, .. } => Some(*lease),
            _ => None,
        }
    }
}

/// A transaction: if every compare holds, the success ops run, else the failure ops.
///
/// As in etcd, one op list may not write a key twice: a key may not be put twice, nor put
/// and deleted (by `Delete` or a covering `DeletePrefix`); overlapping deletes are fine.
/// Such a transaction is refused with [`StoreError::InvalidTxn`], whichever branch would
/// run: etcd checks both op lists before it looks at the compares ([`Txn::validate`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold for the success branch.
    pub compares: Vec<Compare>,
    /// Writes when every compare holds.
    pub success: Vec<TxnOp>,
    /// Writes when some compare does not hold.
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction (it reads the current revision and writes nothing).
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a condition.
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }
    /// Add a write to the success branch.
    pub fn and_then(mut self, op: TxnOp) -> Self {
        self.success.push(op);
        self
    }
    /// Add a write to the failure branch.
    pub fn or_else(mut self, op: TxnOp) -> Self {
        self.failure.push(op);
        self
    }
    /// Refuse a transaction etcd would refuse: either op list puts an empty key, puts a key
    /// twice, or puts a key it also deletes. Every backend calls this before anything else.
    pub fn validate(&self) -> Result<(), StoreError> {
        check_ops(&self.success)?;
        check_ops(&self.failure)
    }
    /// Every lease the transaction's puts bind keys to (both branches).
    pub fn leases(&self) -> impl Iterator<Item = LeaseId> + '_ {
        self.success.iter().chain(&self.failure).filter_map(TxnOp::lease)
    }
}

/// Refuse an op list that writes one key twice, as etcd does: puts must not overlap each
/// other nor any delete.
fn check_ops(ops: &[TxnOp]) -> Result<(), StoreError> {
    let mut puts = BTreeSet::new();
    for key in ops.iter().filter_map(TxnOp::put_key) {
        if key.is_empty() {
            return Err(StoreError::InvalidTxn("put of an empty key".into()));
        }
        if !puts.insert(key) {
            return Err(StoreError::InvalidTxn(format!("key {key} is put twice")));
        }
    }
    for op in ops {
        let hit = match op {
            TxnOp::Put { .. } | TxnOp::PutWithLease { .. } => None,
            TxnOp::Delete { key } => puts.get(key.as_str()),
            TxnOp::DeletePrefix { prefix } => {
                puts.range(prefix.as_str()..).find(|k| k.starts_with(prefix.as_str()))
            }
        };
        if let Some(key) = hit {
            return Err(StoreError::InvalidTxn(format!("key {key} is put and deleted")));
        }
    }
    Ok(())
}

/// What a transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (the success branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction: unchanged if it wrote nothing.
    pub revision: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// A key was created or modified; its new state (`mod_revision` is the change's revision).
    Put(KeyValue),
    /// A key was deleted at `revision`.
    Delete {
        /// The deleted key.
        key: String,
        /// The revision of the delete.
        revision: i64,
    },
    /// The watcher fell too far behind and was cut off; this is its last event. Re-list
    /// (`Store::range`) and watch again from the list's revision + 1.
    Lagged,
    /// The store dropped history the watch still needed (a cluster store compacted while
    /// the watch was reconnecting or catching up); this is its last event. Re-list and
    /// watch again, as after [`StoreError::Compacted`].
    Compacted {
        /// The newest revision whose changes are no longer kept.
        compact_revision: i64,
    },
}

impl WatchEvent {
    /// The revision of the change (`None` for the last events, `Lagged` and `Compacted`).
    pub fn revision(&self) -> Option<i64> {
        match self {
            WatchEvent::Put(kv) => Some(kv.mod_revision),
            WatchEvent::Delete { revision, .. } => Some(*revision),
            WatchEvent::Lagged | WatchEvent::Compacted { .. } => None,
        }
    }
    /// The key changed (`None` for the last events, `Lagged` and `Compacted`).
    pub fn key(&self) -> Option<&str> {
        match self {
            WatchEvent::Put(kv) => Some(&kv.key),
            WatchEvent::Delete { key, .. } => Some(key),
            WatchEvent::Lagged | WatchEvent::Compacted { .. } => None,
        }
    }
    /// Whether this is a watch's last event: the caller must re-list and watch again.
    pub fn is_final(&self) -> bool {
        matches!(self, WatchEvent::Lagged | WatchEvent::Compacted { .. })
    }
}

/// The changes under a prefix, in revision order: first the history asked for, then live.
///
/// The channel is bounded and writers never wait for it: a watcher that falls a buffer
/// behind gets [`WatchEvent::Lagged`] as its last event. The stream ends (`None`) after a
/// last event (`Lagged`, `Compacted`) or when the store is dropped.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<WatchEvent>,
}

impl Watch {
    /// A watch reading `rx` (for backends outside this crate). Its sender must keep the
    /// contract above: revision order, a last event when cut off, never blocking a writer.
    pub fn new(rx: mpsc::Receiver<WatchEvent>) -> Self {
        Self { rx }
    }
    /// The next change; `None` once the watch has ended.
    pub async fn recv(&mut self) -> Option<WatchEvent> {
        self.rx.recv().await
    }
    /// The next change, blocking the thread (not for use inside an async runtime).
    pub fn blocking_recv(&mut self) -> Option<WatchEvent> {
        self.rx.blocking_recv()
    }
    /// The next change if one is queued.
    pub fn try_recv(&mut self) -> Result<WatchEvent, mpsc::error::TryRecvError> {
        self.rx.try_recv()
    }
    /// The underlying receiver.
    pub fn into_receiver(self) -> mpsc::Receiver<WatchEvent> {
        self.rx
    }
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be read or written right now (I/O error, disk full, lost quorum).
    #[error("state store: {0}")]
    Unavailable(String),
    /// The revisions asked for are no longer kept; re-list and watch from the list's
    /// revision + 1.
    #[error("state store: history up to revision {compact_revision} is compacted")]
    Compacted {
        /// The newest revision whose changes are no longer kept.
        compact_revision: i64,
    },
    /// A stored entry cannot be decoded.
    #[error("state store: record {key} is corrupt: {reason}")]
    Corrupt {
        /// The entry's key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The transaction writes a key twice (a caller bug).
    #[error("state store: invalid transaction: {0}")]
    InvalidTxn(String),
    /// A cluster store did not answer within its deadline, or cannot be connected to.
    #[error("cluster store {store} unreachable: {cause}")]
    Unreachable {
        /// The store as configured (`etcd://203.0.113.2:2379`).
        store: String,
        /// What failed (`no answer within 5s`, `connection refused`).
        cause: String,
    },
    /// The lease does not exist: it expired, was revoked, or was never granted.
    #[error("state store: lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
    /// The backend cannot do this (leases on the local store).
    #[error("state store: {0} is not supported by this store")]
    Unsupported(String),
}

impl StoreError {
    /// The error's kind, for the API.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Unavailable(_)
            | StoreError::Compacted { .. }
            | StoreError::Unreachable { .. } => ErrorKind::Unavailable,
            StoreError::LeaseNotFound(_) => ErrorKind::NotFound,
            StoreError::Unsupported(_) => ErrorKind::NotImplemented,
            StoreError::Corrupt { .. } | StoreError::InvalidTxn(_) => ErrorKind::Internal,
        }
    }
    pub(crate) fn unavailable(e: impl fmt::Display) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}

/// A revisioned key-value store with etcd v3 semantics.
///
/// Methods are synchronous and may block the calling thread briefly: the local backends
/// wait for a disk sync, a cluster backend for a network round trip (ADR 0008). Writes are
/// atomic and durable when `txn` returns.
pub trait Store: Send + Sync + fmt::Debug {
    /// One key.
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;
    /// Every key starting with `prefix` (`""`: every key), sorted, with the current revision.
    fn range(&self, prefix: &str) -> Result<Range, StoreError>;
    /// Run a transaction atomically and durably.
    fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError>;
    /// Follow the changes of keys under `prefix` from `start_revision` on (`<= 0`: from the
    /// next write). Fails with [`StoreError::Compacted`] if changes at `start_revision` are
    /// no longer kept.
    fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watch, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(version: i64, create: i64, modified: i64, value: &[u8]) -> KeyValue {
        KeyValue {
            key: "k".into(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: modified,
            version,
        }
    }

    #[test]
    fn compares_on_an_absent_key_see_zeroes() {
        assert!(Compare::absent("k").holds(None));
        assert!(!Compare::exists("k").holds(None));
        assert!(Compare::mod_revision("k", 0).holds(None));
        assert!(Compare::create_revision("k", CmpOp::Less, 1).holds(None));
        assert!(!Compare::value("k", CmpOp::Equal, b"".to_vec()).holds(None));
        assert!(!Compare::value("k", CmpOp::NotEqual, b"x".to_vec()).holds(None));
    }

    #[test]
    fn compares_on_a_present_key() {
        let k = kv(3, 2, 7, b"b");
        assert!(Compare::exists("k").holds(Some(&k)));
        assert!(!Compare::absent("k").holds(Some(&k)));
        assert!(Compare::mod_revision("k", 7).holds(Some(&k)));
        assert!(!Compare::mod_revision("k", 6).holds(Some(&k)));
        assert!(Compare::version("k", CmpOp::Greater, 2).holds(Some(&k)));
        assert!(!Compare::version("k", CmpOp::Less, 3).holds(Some(&k)));
        assert!(Compare::version("k", CmpOp::NotEqual, 4).holds(Some(&k)));
        assert!(Compare::create_revision("k", CmpOp::Equal, 2).holds(Some(&k)));
        assert!(Compare::value("k", CmpOp::Greater, b"a".to_vec()).holds(Some(&k)));
        assert!(Compare::value("k", CmpOp::Less, b"ba".to_vec()).holds(Some(&k)));
        assert!(Compare::value("k", CmpOp::Equal, b"b".to_vec()).holds(Some(&k)));
    }

    #[test]
    fn errors_have_kinds_and_lowercase_messages() {
        let e =
            Error::from(StoreError::Corrupt { key: "networks/n1".into(), reason: "eof".into() });
        assert_eq!(e.kind, ErrorKind::Internal);
        assert_eq!(e.message, "state store: record networks/n1 is corrupt: eof");
        let e = Error::from(StoreError::Compacted { compact_revision: 4 });
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(e.message, "state store: history up to revision 4 is compacted");
        assert_eq!(StoreError::unavailable("disk full").kind(), ErrorKind::Unavailable);
        let e = Error::from(StoreError::Unreachable {
            store: "etcd://203.0.113.2:2379".into(),
            cause: "no answer within 5s".into(),
        });
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert_eq!(
            e.message,
            "cluster store etcd://203.0.113.2:2379 unreachable: no answer within 5s"
        );
        let e = Error::from(StoreError::LeaseNotFound(LeaseId(7)));
        assert_eq!(
            (e.kind, e.message.as_str()),
            (ErrorKind::NotFound, "state store: lease 7 not found (expired or revoked)")
        );
        assert_eq!(StoreError::Unsupported("leases".into()).kind(), ErrorKind::NotImplemented);
    }

    #[test]
    fn ops_that_write_a_key_twice_are_refused_in_either_branch() {
        let bad = [
            vec![TxnOp::put("a", "1"), TxnOp::put("a", "2")],
            vec![TxnOp::put("a", "1"), TxnOp::delete("a")],
            vec![TxnOp::delete("a"), TxnOp::put("a", "1")],
            vec![TxnOp::put("a/b", "1"), TxnOp::delete_prefix("a/")],
            vec![TxnOp::put("", "1")],
            vec![TxnOp::put_with_lease("a", "1", LeaseId(1)), TxnOp::put("a", "2")],
            vec![TxnOp::put_with_lease("a/x", "1", LeaseId(1)), TxnOp::delete_prefix("")],
        ];
        for ops in bad {
            assert!(matches!(check_ops(&ops), Err(StoreError::InvalidTxn(_))), "{ops:?}");
            let failure = Txn { failure: ops.clone(), ..Txn::new() };
            assert!(matches!(failure.validate(), Err(StoreError::InvalidTxn(_))), "{ops:?}");
            let success = Txn { success: ops.clone(), ..Txn::new() };
            assert!(matches!(success.validate(), Err(StoreError::InvalidTxn(_))), "{ops:?}");
        }
        let good = [
            vec![TxnOp::put("a", "1"), TxnOp::put("b", "2")],
            vec![TxnOp::delete("a"), TxnOp::delete_prefix("a"), TxnOp::delete("a")],
            vec![TxnOp::put("b", "1"), TxnOp::delete_prefix("a")],
            vec![TxnOp::put_with_lease("b", "1", LeaseId(1)), TxnOp::delete_prefix("a")],
        ];
        for ops in good {
            assert_eq!(check_ops(&ops), Ok(()), "{ops:?}");
        }
    }
}
