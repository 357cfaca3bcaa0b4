//! A store that does not answer: calls fail within the deadline naming the store, and work
//! again once it answers; watches reconnect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cove_etcd::{EtcdConfig, EtcdStore};
use cove_model::ErrorKind;
use cove_store::{Store, StoreError, Txn, TxnOp, WatchEvent};

use crate::backend;

const DEADLINE: Duration = Duration::from_secs(2);

/// One store call whose result does not matter, only whether and how it fails.
type Call<'a> = Box<dyn Fn() -> Result<(), StoreError> + 'a>;

fn put(key: &str, value: &str) -> Txn {
    Txn::new().and_then(TxnOp::put(key, value))
}

#[track_caller]
fn assert_unreachable(e: &StoreError, store: &str) {
    assert!(matches!(e, StoreError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&format!("cluster store {store} unreachable: ")), "{e}");
    assert_eq!(e.kind(), ErrorKind::Unavailable);
}

#[test]
fn a_paused_store_fails_within_the_deadline_naming_it_and_recovers() {
    let Some(b) = backend() else { return };
    let store = b.connect(b.config().with_deadline(DEADLINE));
    store.txn(put("a", "1")).unwrap();
    let url = b.etcd.endpoint();
    assert_eq!(url, "etcd://127.0.0.1:2379");
    b.etcd.pause();
    let calls: [(&str, Call<'_>); 4] = [
        ("txn", Box::new(|| store.txn(put("b", "1")).map(drop))),
        ("get", Box::new(|| store.get("a").map(drop))),
        ("range", Box::new(|| store.range("").map(drop))),
        ("watch", Box::new(|| store.watch("", 0).map(drop))),
    ];
    for (what, call) in &calls {
        let t0 = Instant::now();
        let e = call().unwrap_err();
        let took = t0.elapsed();
        eprintln!("{what} failed after {took:?}: {e}");
        assert_unreachable(&e, &url);
        // It waited for the deadline (a lower bound a loaded machine cannot break); how
        // much longer it took is reported above, not asserted.
        assert!(took >= DEADLINE, "{what} gave up before the deadline: {took:?}");
    }
    b.etcd.resume();
    let t0 = Instant::now();
    store.txn(put("c", "1")).unwrap();
    eprintln!("first txn after resume took {:?}", t0.elapsed());
    assert!(store.get("c").unwrap().is_some());
    // A request that timed out reached etcd's socket before it stopped; etcd may still apply
    // it when it resumes. Which one happened is reported, not asserted (see ADR 0014).
    eprintln!("the timed-out put of b applied after resume: {}", store.get("b").unwrap().is_some());
}

#[test]
fn a_store_nobody_listens_on_is_unreachable() {
    let Some(b) = backend() else { return };
    let config = EtcdConfig::new("etcd://127.0.0.1:2999".parse().unwrap()).with_deadline(DEADLINE);
    let store = b.etcd.run_in_netns(|| EtcdStore::connect(config)).unwrap();
    let t0 = Instant::now();
    let e = store.range("").unwrap_err();
    eprintln!("failed after {:?}: {e}", t0.elapsed());
    assert_unreachable(&e, "etcd://127.0.0.1:2999");
    assert!(e.to_string().contains("Connection refused"), "{e}");
    assert!(t0.elapsed() <= DEADLINE + Duration::from_secs(1));
}

/// A call blocked on etcd from a multi-thread runtime's worker lets the runtime run its
/// other tasks meanwhile (block_in_place), even with a single worker; on a current-thread
/// runtime it just blocks (no panic).
#[test]
fn a_blocked_call_does_not_starve_the_runtime_it_is_called_from() {
    let Some(b) = backend() else { return };
    let store = b.connect(b.config().with_deadline(DEADLINE));
    b.etcd.pause();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = {
        let ticks = ticks.clone();
        rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let s = store.clone();
    let err = rt
        .block_on(async move { tokio::spawn(async move { s.txn(put("x", "1")) }).await.unwrap() });
    assert!(err.is_err());
    let n = ticks.load(Ordering::Relaxed);
    assert!(n >= 50, "the runtime's other task ran {n} times in {DEADLINE:?}");
    ticker.abort();
    b.etcd.resume();
    let current = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s = store.clone();
    let got = current.block_on(async move { s.get("x") });
    assert!(got.is_ok(), "{got:?}");
}

/// A watch whose connection dies (etcd stopped past the HTTP/2 keep-alive) reconnects from
/// where it was: nothing lost, nothing repeated.
#[test]
fn a_watch_survives_a_dead_connection() {
    let Some(b) = backend() else { return };
    let config = b
        .config()
        .with_deadline(DEADLINE)
        .with_keepalive(Duration::from_millis(500), Duration::from_millis(500));
    let store = b.connect(config.clone());
    let writer = b.connect(config);
    let mut w = store.watch("", 0).unwrap();
    let r1 = writer.txn(put("k", "1")).unwrap().revision;
    b.etcd.pause();
    // Past the keep-alive: the client drops the connection and the watch starts retrying.
    std::thread::sleep(Duration::from_secs(3));
    b.etcd.resume();
    let r2 = writer.txn(put("k", "2")).unwrap().revision;
    let r3 = writer.txn(Txn::new().and_then(TxnOp::delete("k"))).unwrap().revision;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < 3 && Instant::now() < deadline {
        match w.try_recv() {
            Ok(e) => got.push(e),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let revs: Vec<_> = got.iter().map(|e| (e.key().map(str::to_string), e.revision())).collect();
    let k = Some("k".to_string());
    assert_eq!(revs, [(k.clone(), Some(r1)), (k.clone(), Some(r2)), (k, Some(r3))]);
    assert!(matches!(got[2], WatchEvent::Delete { .. }));
    std::thread::sleep(Duration::from_millis(200));
    assert!(w.try_recv().is_err(), "no event twice");
}
