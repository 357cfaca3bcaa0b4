//! Leases in real time: a key put with a 2 s lease is gone after it expires, and stays
//! while `KeepAlive` refreshes it.

use std::time::{Duration, Instant};

use cove_store::{KeepAlive, Leases, Store, Txn, TxnOp, WatchEvent};

use crate::backend;

#[test]
fn a_leased_key_vanishes_without_keep_alive_and_stays_with_it() {
    let Some(b) = backend() else { return };
    let store = b.connect(b.config());
    let dies = store.grant(Duration::from_secs(2)).unwrap();
    let kept = store.grant(Duration::from_secs(2)).unwrap();
    assert_eq!((dies.ttl, kept.ttl), (Duration::from_secs(2), Duration::from_secs(2)));
    let t = Txn::new()
        .and_then(TxnOp::put_with_lease("nodes/dies", "1", dies.id))
        .and_then(TxnOp::put_with_lease("nodes/kept", "1", kept.id));
    let t0 = Instant::now();
    store.txn(t).unwrap();
    let ka = KeepAlive::start(store.clone(), kept);
    let mut w = store.watch("nodes/", 0).unwrap();
    while store.get("nodes/dies").unwrap().is_some() {
        assert!(t0.elapsed() < Duration::from_secs(6), "the key outlived its lease");
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = t0.elapsed();
    eprintln!("nodes/dies gone after {gone:?}");
    assert!(gone >= Duration::from_millis(1500), "{gone:?}");
    match w.blocking_recv() {
        Some(WatchEvent::Delete { key, .. }) => assert_eq!(key, "nodes/dies"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.time_to_live(dies.id).unwrap(), None);
    // Twice the TTL later, the kept key is still there.
    std::thread::sleep(Duration::from_secs(4).saturating_sub(t0.elapsed()));
    assert!(store.get("nodes/kept").unwrap().is_some());
    assert_eq!(ka.lost(), None);
    // Without keep-alives it goes too.
    ka.stop();
    let t1 = Instant::now();
    while store.get("nodes/kept").unwrap().is_some() {
        assert!(t1.elapsed() < Duration::from_secs(6), "the key outlived its lease");
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("nodes/kept gone {:?} after the keep-alives stopped", t1.elapsed());
}

#[test]
fn keep_alive_reports_a_revoked_lease() {
    let Some(b) = backend() else { return };
    let store = b.connect(b.config());
    let lease = store.grant(Duration::from_secs(10)).unwrap();
    let ka = KeepAlive::with_interval(store.clone(), lease, Duration::from_millis(100));
    store.revoke(lease.id).unwrap();
    let lost = ka.wait_lost(Duration::from_secs(5)).expect("loss reported");
    assert_eq!(lost.id, lease.id);
    assert!(lost.reason.contains("expired or was revoked"), "{lost}");
}
