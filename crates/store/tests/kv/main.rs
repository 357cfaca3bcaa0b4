//! The `Store` contract, checked on every backend: each op and compare, revisions and
//! versions, watches, a reference model under random transactions, and concurrent writers.

mod concurrency;
mod conformance;
mod model;

use std::sync::Arc;

use cove_store::{Limits, MemStore, RedbStore, Store, WatchEvent};
use tempfile::TempDir;

/// A store under test; the temp dir lives as long as the store.
#[derive(Debug)]
pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    _dir: Option<TempDir>,
}

pub fn backends() -> Vec<Backend> {
    backends_with(Limits::default())
}

pub fn backends_with(limits: Limits) -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open_with(&dir.path().join("store.redb"), limits).unwrap();
    vec![
        Backend { name: "mem", store: Arc::new(MemStore::with_limits(limits)), _dir: None },
        Backend { name: "redb", store: Arc::new(redb), _dir: Some(dir) },
    ]
}

/// Every event queued on a watch right now.
pub fn drain(w: &mut cove_store::Watch) -> Vec<WatchEvent> {
    std::iter::from_fn(|| w.try_recv().ok()).collect()
}
