//! The `Store` contract (`cove_store::conformance`) on the local backends, and their leases.

mod leases;

use std::sync::Arc;
use std::time::Duration;

use cove_store::conformance::{Backend, Subject};
use cove_store::{Limits, MemStore, RedbStore};

/// In memory, with leases.
#[derive(Debug)]
pub struct Mem;

impl Backend for Mem {
    fn name(&self) -> String {
        "mem".into()
    }
    fn fresh(&self, limits: Limits) -> Subject {
        let store = Arc::new(MemStore::with_limits(limits));
        Subject::new(store.clone(), 1, Duration::ZERO).with_leases(store)
    }
}

/// A redb file in a temp dir.
#[derive(Debug)]
pub struct Redb;

impl Backend for Redb {
    fn name(&self) -> String {
        "redb".into()
    }
    fn fresh(&self, limits: Limits) -> Subject {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open_with(&dir.path().join("store.redb"), limits).unwrap();
        Subject::new(Arc::new(store), 1, Duration::ZERO).keeping(dir)
    }
}

mod mem {
    fn backend() -> Option<super::Mem> {
        Some(super::Mem)
    }
    cove_store::conformance_tests!(backend, model_cases = 96);
}

mod redb {
    fn backend() -> Option<super::Redb> {
        Some(super::Redb)
    }
    cove_store::conformance_tests!(backend, model_cases = 96);
}
