//! State store: a revisioned key-value [`Store`] with etcd v3 semantics, its backends, and
//! typed [`Records`] on top.
//!
//! - [`Store`] (module `kv`): get, range by prefix, compare-then-write transactions and
//!   watches, with etcd's revisions and versions, so a cluster backend (etcd) can replace
//!   the local one without changing callers. Calls are synchronous and may block briefly
//!   (`docs/adr/0008-store-trait.md`).
//! - [`RedbStore`]: the local backend, one redb file; [`MemStore`]: the same in memory, for
//!   tests. Both share one in-memory core (an index of each key's revisions and version,
//!   history ring, watchers); redb keeps the values on disk and serves reads from there,
//!   the memory backend keeps them beside the index. The etcd backend is the crate
//!   `cove-etcd`.
//! - [`Leases`] (module `lease`): etcd's leases (grant, keep-alive, revoke; keys put with
//!   [`TxnOp::PutWithLease`] vanish with their lease), on `MemStore` with a clock tests
//!   drive, and [`KeepAlive`] to keep one alive in the background. `RedbStore` has none.
//! - [`Records`]: JSON records by [`Table`], written in atomic [`Batch`]es that may carry
//!   conditions (create-if-absent, unchanged-since-revision).
//!
//! Key layout:
//!
//! | key                              | value                                   |
//! |----------------------------------|-----------------------------------------|
//! | `networks/<network id>`          | `NetworkRecord` JSON                    |
//! | `endpoints/<endpoint id>`        | `EndpointRecord` JSON                   |
//! | `containers/<container id>`      | `ContainerRecord` JSON                  |
//! | `ipam/<network id>/<address>`    | address reservation, created if absent  |
#![warn(missing_docs)]

#[cfg(feature = "conformance")]
pub mod conformance;
mod engine;
mod kv;
mod lease;
mod mem;
mod records;
mod redb_store;

pub use engine::Limits;
pub use kv::{
    CmpOp, Compare, CompareTarget, KeyValue, Range, Store, StoreError, Txn, TxnOp, TxnResponse,
    Watch, WatchEvent,
};
pub use lease::{KeepAlive, Lease, LeaseId, LeaseLost, Leases};
pub use mem::MemStore;
pub use records::{Batch, Records, Table};
pub use redb_store::RedbStore;
