//! Leases on `MemStore`'s clock, and the keep-alive helper.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cove_store::{
    KeepAlive, Lease, LeaseId, Leases, MemStore, Store, StoreError, Txn, TxnOp, WatchEvent,
};

fn put_leased(s: &MemStore, key: &str, lease: LeaseId) -> i64 {
    s.txn(Txn::new().and_then(TxnOp::put_with_lease(key, "v", lease))).unwrap().revision
}

#[test]
fn keys_vanish_when_their_lease_expires_on_the_clock() {
    let s = MemStore::new();
    let lease = s.grant(Duration::from_secs(10)).unwrap();
    assert_eq!(lease.ttl, Duration::from_secs(10));
    assert_eq!(put_leased(&s, "nodes/n1", lease.id), 2);
    let mut w = s.watch("nodes/", 0).unwrap();
    s.advance(Duration::from_secs(9));
    assert!(s.get("nodes/n1").unwrap().is_some());
    assert_eq!(s.keep_alive(lease.id).unwrap(), Duration::from_secs(10));
    s.advance(Duration::from_secs(9));
    assert!(s.get("nodes/n1").unwrap().is_some(), "a keep-alive restores the full TTL");
    s.advance(Duration::from_secs(2));
    // Expired at `advance`: the watcher has heard already.
    assert_eq!(w.try_recv().unwrap(), WatchEvent::Delete { key: "nodes/n1".into(), revision: 3 });
    assert_eq!(s.get("nodes/n1").unwrap(), None);
    assert_eq!(s.time_to_live(lease.id).unwrap(), None);
    assert_eq!(s.keep_alive(lease.id), Err(StoreError::LeaseNotFound(lease.id)));
}

#[test]
fn each_expired_lease_is_one_revision() {
    let s = MemStore::new();
    let short = s.grant(Duration::from_secs(5)).unwrap();
    let long = s.grant(Duration::from_secs(7)).unwrap();
    let t = Txn::new()
        .and_then(TxnOp::put_with_lease("a", "1", short.id))
        .and_then(TxnOp::put_with_lease("b", "1", short.id))
        .and_then(TxnOp::put_with_lease("c", "1", long.id));
    assert_eq!(s.txn(t).unwrap().revision, 2);
    let mut w = s.watch("", 0).unwrap();
    s.advance(Duration::from_secs(8));
    let revs: Vec<_> = std::iter::from_fn(|| w.try_recv().ok())
        .map(|e| (e.key().unwrap().to_string(), e.revision().unwrap()))
        .collect();
    assert_eq!(revs, [("a".into(), 3), ("b".into(), 3), ("c".into(), 4)]);
}

#[test]
fn moving_a_key_to_another_lease_detaches_it_from_the_first() {
    let s = MemStore::new();
    let one = s.grant(Duration::from_secs(5)).unwrap();
    let two = s.grant(Duration::from_secs(50)).unwrap();
    put_leased(&s, "k", one.id);
    put_leased(&s, "k", two.id);
    s.advance(Duration::from_secs(6));
    assert!(s.get("k").unwrap().is_some(), "k moved to the longer lease");
    s.revoke(two.id).unwrap();
    assert_eq!(s.get("k").unwrap(), None);
}

#[test]
fn keep_alive_helper_keeps_a_lease_and_stopping_lets_it_expire() {
    let s = Arc::new(MemStore::new());
    let lease = s.grant(Duration::from_secs(1)).unwrap();
    put_leased(&s, "nodes/n1", lease.id);
    let ka = KeepAlive::with_interval(s.clone(), lease, Duration::from_millis(50));
    // Real time runs past the TTL; the helper refreshes it.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(s.get("nodes/n1").unwrap().is_some());
    assert_eq!(ka.lost(), None);
    ka.stop();
    s.advance(Duration::from_secs(2));
    assert_eq!(s.get("nodes/n1").unwrap(), None);
}

#[test]
fn keep_alive_helper_reports_a_revoked_lease() {
    let s = Arc::new(MemStore::new());
    let lease = s.grant(Duration::from_secs(30)).unwrap();
    let ka = KeepAlive::with_interval(s.clone(), lease, Duration::from_millis(20));
    let mut rx = ka.subscribe();
    s.revoke(lease.id).unwrap();
    let lost = ka.wait_lost(Duration::from_secs(5)).expect("loss reported");
    assert_eq!(lost.id, lease.id);
    assert!(lost.reason.contains("expired or was revoked"), "{lost}");
    assert!(rx.borrow_and_update().is_some());
}

/// A store that never answers.
#[derive(Debug, Default)]
struct Down {
    calls: AtomicUsize,
}

impl Leases for Down {
    fn grant(&self, _: Duration) -> Result<Lease, StoreError> {
        unreachable!()
    }
    fn keep_alive(&self, _: LeaseId) -> Result<Duration, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Err(StoreError::Unreachable {
            store: "etcd://203.0.113.2:2379".into(),
            cause: "no answer within 5s".into(),
        })
    }
    fn revoke(&self, _: LeaseId) -> Result<(), StoreError> {
        unreachable!()
    }
    fn time_to_live(&self, _: LeaseId) -> Result<Option<Duration>, StoreError> {
        unreachable!()
    }
}

#[test]
fn keep_alive_helper_gives_up_after_a_ttl_without_success() {
    let down = Arc::new(Down::default());
    let lease = Lease { id: LeaseId(9), ttl: Duration::from_millis(300) };
    let t0 = Instant::now();
    let ka = KeepAlive::with_interval(down.clone(), lease, Duration::from_millis(20));
    let lost = ka.wait_lost(Duration::from_secs(5)).expect("loss reported");
    assert!(t0.elapsed() >= lease.ttl, "{:?}", t0.elapsed());
    assert!(lost.reason.contains("cluster store etcd://203.0.113.2:2379 unreachable"), "{lost}");
    assert!(down.calls.load(Ordering::Relaxed) >= 3, "retried before giving up");
}
