//! The `Store` contract as a reusable test suite (feature `conformance`), so every backend
//! (memory, redb, etcd) runs the same checks: each op and compare, revisions and versions,
//! watches, leases, a reference model under random transactions, and concurrent writers.
//!
//! A backend implements [`Backend`], which makes fresh empty stores ([`Subject`]s); the
//! macro [`conformance_tests!`](crate::conformance_tests) turns the suite into one `#[test]`
//! per check. A cluster store cannot start at revision 1 nor deliver watch events before
//! `txn` returns, so the suite numbers revisions as a fresh local store would and maps them
//! ([`Subject::rev`]), and waits for events ([`Subject::collect`]).
//!
//! ```ignore
//! fn backend() -> Option<MyBackend> { Some(MyBackend::new()) } // None: skipped
//! cove_store::conformance_tests!(backend, model_cases = 96);
//! ```

pub mod cases;
pub mod model;

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use proptest;

use crate::{Leases, Limits, Store, Watch, WatchEvent};

/// How long [`Subject::collect`] waits for an expected event.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// Makes fresh, empty stores of one backend.
pub trait Backend {
    /// The backend's name, for messages.
    fn name(&self) -> String;
    /// A store with no keys that nothing else writes to while the test runs. `limits`
    /// bound its history and watch buffers as far as the backend has such bounds.
    fn fresh(&self, limits: Limits) -> Subject;
    /// Whether `Limits::history` bounds the history kept for watches (a local store) rather
    /// than compaction by the operator (etcd).
    fn bounded_history(&self) -> bool {
        true
    }
}

/// One store under test.
pub struct Subject {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Its leases, if the backend has them.
    pub leases: Option<Arc<dyn Leases>>,
    /// The store's revision when it was made: what a fresh local store numbers 1.
    pub base: i64,
    /// How long a change may take to reach a watch after `txn` returns (zero: it is queued
    /// before `txn` returns).
    pub delivery: Duration,
    /// Whatever must live as long as the store (a temp dir).
    _keep: Box<dyn Any>,
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("store", &self.store)
            .field("base", &self.base)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

impl Subject {
    /// A store at `base` whose watch events arrive within `delivery`.
    pub fn new(store: Arc<dyn Store>, base: i64, delivery: Duration) -> Self {
        Self { store, leases: None, base, delivery, _keep: Box::new(()) }
    }
    /// With leases.
    pub fn with_leases(mut self, leases: Arc<dyn Leases>) -> Self {
        self.leases = Some(leases);
        self
    }
    /// Keep `keep` alive as long as the subject.
    pub fn keeping(mut self, keep: impl Any) -> Self {
        self._keep = Box::new(keep);
        self
    }
    /// The revision a fresh local store would number `n`, in this store's numbering (0 stays
    /// 0: "no revision").
    pub fn rev(&self, n: i64) -> i64 {
        if n == 0 {
            0
        } else {
            self.base - 1 + n
        }
    }
    /// The leases, which the test needs.
    #[track_caller]
    pub fn leases(&self) -> &Arc<dyn Leases> {
        self.leases.as_ref().expect("this backend has no leases")
    }
    /// `n` events from `w` (waiting for each as long as a backend may take), then whatever
    /// else arrives within the delivery time: a test comparing the result with `n` expected
    /// events also sees extra ones.
    #[track_caller]
    pub fn collect(&self, w: &mut Watch, n: usize) -> Vec<WatchEvent> {
        let mut out = Vec::new();
        let deadline = Instant::now() + EVENT_WAIT;
        while out.len() < n && Instant::now() < deadline {
            match w.try_recv() {
                Ok(e) => out.push(e),
                Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => return out,
                Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                    if self.delivery.is_zero() {
                        return out;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        if !self.delivery.is_zero() {
            std::thread::sleep(self.delivery);
        }
        out.extend(std::iter::from_fn(|| w.try_recv().ok()));
        out
    }
}

/// One `#[test]` per check of the suite, for the backend that `$make()` returns (`None`:
/// the backend is not available and the function has said why; the test passes).
/// `model_cases` is the number of random cases of the model test (real round trips for a
/// cluster store: keep it moderate there).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path, model_cases = $cases:expr) => {
        $crate::conformance_tests!(@each $make;
            puts_and_deletes_keep_etcd_revisions_and_versions,
            one_txn_is_one_revision,
            range_is_by_prefix_and_sorted,
            writing_nothing_does_not_bump_the_revision,
            failed_compares_run_the_failure_branch,
            every_compare_target_and_op,
            delete_prefix_deletes_exactly_the_prefix,
            a_txn_writing_a_key_twice_is_refused_in_either_branch,
            watch_replays_from_a_past_revision_then_follows,
            watch_from_compacted_history_fails,
            history_is_bounded_by_bytes_too,
            a_lagging_watcher_is_cut_off_without_blocking_writers,
            a_watch_ends_when_the_store_is_dropped,
            cas_increments_lose_no_update,
            racing_creates_have_one_winner,
            leased_keys_go_with_their_lease_in_one_revision,
            a_put_with_a_missing_lease_fails_and_writes_nothing,
            lease_bookkeeping,
        );
        #[test]
        fn backend_agrees_with_the_model() {
            if let Some(b) = $make() {
                $crate::conformance::model::run(&b, $cases, file!());
            }
        }
    };
    (@each $make:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                if let Some(b) = $make() {
                    $crate::conformance::cases::$case(&b);
                }
            }
        )*
    };
}
