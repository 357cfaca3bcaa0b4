//! `EtcdStore` against a real etcd (privileged: each test starts etcd in a network
//! namespace of its own, `cove_testkit::Etcd`): the `Store` contract every backend runs, and
//! what only a cluster store has (deadlines, compaction, lease expiry, reconnects).
//! Skipped when etcd is not installed, unless `COVE_REQUIRE_ETCD` is set.

mod compaction;
mod leases;
mod tls;
mod unavailable;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cove_etcd::{EtcdConfig, EtcdStore};
use cove_store::conformance::{Backend, Subject};
use cove_store::{Limits, Store};
use cove_testkit::{current_test_name, print_skip, Etcd};

/// One etcd per test; each fresh store is a new client on a new key prefix.
#[derive(Debug)]
pub struct EtcdBackend {
    pub etcd: Etcd,
    seq: AtomicUsize,
}

impl EtcdBackend {
    /// A config for this etcd on a prefix no other store of the test uses.
    pub fn config(&self) -> EtcdConfig {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        EtcdConfig::new(self.etcd.endpoint().parse().unwrap())
            .with_prefix(format!("/cove-test/{n}/"))
    }

    /// A client made in etcd's network namespace (its thread stays there).
    pub fn connect(&self, config: EtcdConfig) -> Arc<EtcdStore> {
        Arc::new(self.etcd.run_in_netns(|| EtcdStore::connect(config)).unwrap())
    }
}

impl Backend for EtcdBackend {
    fn name(&self) -> String {
        format!("etcd {}", self.etcd.endpoint())
    }
    fn fresh(&self, limits: Limits) -> Subject {
        let store = self.connect(self.config().with_watch_buffer(limits.watch_buffer));
        let base = store.range("").unwrap().revision;
        // Events reach a watch over the network: wait this long for unexpected extra ones.
        Subject::new(store.clone(), base, Duration::from_millis(100)).with_leases(store)
    }
    fn bounded_history(&self) -> bool {
        false
    }
}

/// An etcd for the current test, or `None` (printed why) when etcd is not installed.
pub fn backend() -> Option<EtcdBackend> {
    let test = current_test_name("etcd");
    if let Some(why) = Etcd::missing() {
        print_skip(&test, &why);
        return None;
    }
    Some(EtcdBackend { etcd: Etcd::start(&test), seq: AtomicUsize::new(0) })
}

mod contract {
    use super::backend;
    // Each case is a few dozen round trips to etcd; 16 keep the test under half a minute.
    cove_store::conformance_tests!(backend, model_cases = 16);
}
