//! One behaviour per check. Revisions are written as a fresh local store numbers them and
//! mapped with [`Subject::rev`].

use std::sync::Barrier;

use crate::conformance::{Backend, Subject};
use crate::{
    CmpOp, Compare, KeyValue, LeaseId, Limits, StoreError, Txn, TxnOp, TxnResponse, WatchEvent,
};

fn fresh(b: &dyn Backend) -> Subject {
    b.fresh(Limits::default())
}

fn put(key: &str, value: &str) -> Txn {
    Txn::new().and_then(TxnOp::put(key, value))
}

fn kv(s: &Subject, key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: s.rev(create),
        mod_revision: s.rev(modified),
        version,
    }
}

fn done(s: &Subject, succeeded: bool, revision: i64) -> TxnResponse {
    TxnResponse { succeeded, revision: s.rev(revision) }
}

fn keys(s: &Subject, prefix: &str) -> Vec<String> {
    s.store.range(prefix).unwrap().kvs.into_iter().map(|kv| kv.key).collect()
}

/// Put, modify, delete and re-create a key: etcd's revisions and versions.
pub fn puts_and_deletes_keep_etcd_revisions_and_versions(b: &dyn Backend) {
    let s = &fresh(b);
    let st = &s.store;
    assert_eq!(st.range("").unwrap().revision, s.rev(1), "{}", b.name());
    assert_eq!(st.get("a").unwrap(), None);
    assert_eq!(st.txn(put("a", "1")).unwrap(), done(s, true, 2));
    assert_eq!(st.get("a").unwrap(), Some(kv(s, "a", "1", 2, 2, 1)));
    assert_eq!(st.txn(put("a", "2")).unwrap(), done(s, true, 3));
    assert_eq!(st.get("a").unwrap(), Some(kv(s, "a", "2", 2, 3, 2)));
    // Putting the same value is still a modification.
    assert_eq!(st.txn(put("a", "2")).unwrap(), done(s, true, 4));
    assert_eq!(st.get("a").unwrap(), Some(kv(s, "a", "2", 2, 4, 3)));
    assert_eq!(st.txn(Txn::new().and_then(TxnOp::delete("a"))).unwrap(), done(s, true, 5));
    assert_eq!(st.get("a").unwrap(), None, "{}", b.name());
    // A re-created key starts over.
    assert_eq!(st.txn(put("a", "3")).unwrap(), done(s, true, 6));
    assert_eq!(st.get("a").unwrap(), Some(kv(s, "a", "3", 6, 6, 1)));
}

/// Several writes in one transaction share one revision.
pub fn one_txn_is_one_revision(b: &dyn Backend) {
    let s = &fresh(b);
    let st = &s.store;
    let t = Txn::new().and_then(TxnOp::put("a", "1")).and_then(TxnOp::put("b", "1"));
    assert_eq!(st.txn(t).unwrap(), done(s, true, 2));
    let t = Txn::new().and_then(TxnOp::put("a", "2")).and_then(TxnOp::delete("b"));
    assert_eq!(st.txn(t).unwrap(), done(s, true, 3));
    let r = st.range("").unwrap();
    assert_eq!(r.kvs, vec![kv(s, "a", "2", 2, 3, 2)], "{}", b.name());
    assert_eq!(r.revision, s.rev(3));
}

/// `range` returns exactly the keys under the prefix, sorted.
pub fn range_is_by_prefix_and_sorted(b: &dyn Backend) {
    let s = &fresh(b);
    for k in ["b", "a/2", "a/1", "a", "ab", "a/1/x"] {
        s.store.txn(put(k, k)).unwrap();
    }
    assert_eq!(keys(s, ""), ["a", "a/1", "a/1/x", "a/2", "ab", "b"], "{}", b.name());
    assert_eq!(keys(s, "a/"), ["a/1", "a/1/x", "a/2"]);
    assert_eq!(keys(s, "a/1"), ["a/1", "a/1/x"]);
    assert_eq!(keys(s, "c"), Vec::<String>::new());
    assert_eq!(s.store.range("a/").unwrap().revision, s.rev(7));
}

/// Transactions that change nothing leave the revision alone.
pub fn writing_nothing_does_not_bump_the_revision(b: &dyn Backend) {
    let s = &fresh(b);
    let st = &s.store;
    st.txn(put("a", "1")).unwrap();
    assert_eq!(st.txn(Txn::new()).unwrap(), done(s, true, 2), "{}", b.name());
    assert_eq!(st.txn(Txn::new().and_then(TxnOp::delete("zz"))).unwrap(), done(s, true, 2));
    assert_eq!(st.txn(Txn::new().and_then(TxnOp::delete_prefix("z"))).unwrap(), done(s, true, 2));
    let failed = Txn::new().when(Compare::absent("a")).and_then(TxnOp::put("b", "1"));
    assert_eq!(st.txn(failed).unwrap(), done(s, false, 2));
    assert_eq!(st.get("b").unwrap(), None);
    assert_eq!(st.range("").unwrap().revision, s.rev(2));
}

/// A compare that fails runs the failure ops.
pub fn failed_compares_run_the_failure_branch(b: &dyn Backend) {
    let s = &fresh(b);
    let st = &s.store;
    st.txn(put("a", "1")).unwrap();
    let t = Txn::new()
        .when(Compare::exists("a"))
        .when(Compare::exists("missing"))
        .and_then(TxnOp::put("ok", "1"))
        .or_else(TxnOp::put("fallback", "1"))
        .or_else(TxnOp::delete("a"));
    assert_eq!(st.txn(t).unwrap(), done(s, false, 3), "{}", b.name());
    assert_eq!(st.get("ok").unwrap(), None);
    assert_eq!(st.get("a").unwrap(), None);
    assert_eq!(st.get("fallback").unwrap(), Some(kv(s, "fallback", "1", 3, 3, 1)));
}

/// Every compare target with every relation, on a present and an absent key.
pub fn every_compare_target_and_op(b: &dyn Backend) {
    let s = &fresh(b);
    let st = &s.store;
    st.txn(put("k", "m")).unwrap(); // rev 2
    st.txn(put("k", "m")).unwrap(); // rev 3: create 2, mod 3, version 2
    let cases = [
        (Compare::absent("k"), false),
        (Compare::exists("k"), true),
        (Compare::absent("other"), true),
        (Compare::exists("other"), false),
        (Compare::mod_revision("k", s.rev(3)), true),
        (Compare::mod_revision("k", s.rev(2)), false),
        (Compare::mod_revision("other", 0), true),
        (Compare::version("k", CmpOp::Equal, 2), true),
        (Compare::version("k", CmpOp::NotEqual, 2), false),
        (Compare::version("k", CmpOp::Less, 3), true),
        (Compare::version("k", CmpOp::Greater, 2), false),
        (Compare::create_revision("k", CmpOp::Equal, s.rev(2)), true),
        (Compare::create_revision("k", CmpOp::Greater, s.rev(1)), true),
        (Compare::create_revision("k", CmpOp::Less, s.rev(2)), false),
        (Compare::create_revision("other", CmpOp::Equal, 0), true),
        (Compare::value("k", CmpOp::Equal, "m"), true),
        (Compare::value("k", CmpOp::Less, "n"), true),
        (Compare::value("k", CmpOp::Greater, "n"), false),
        (Compare::value("other", CmpOp::NotEqual, "m"), false),
    ];
    for (c, holds) in cases {
        let resp = st.txn(Txn::new().when(c.clone())).unwrap();
        assert_eq!(resp.succeeded, holds, "{} {c:?}", b.name());
        assert_eq!(resp.revision, s.rev(3));
    }
}

/// `DeletePrefix` deletes the keys under the prefix and nothing else, each once.
pub fn delete_prefix_deletes_exactly_the_prefix(b: &dyn Backend) {
    let s = &fresh(b);
    let st = &s.store;
    for k in ["net/1", "net/1/a", "net/2", "net2", "other"] {
        st.txn(put(k, "v")).unwrap();
    }
    let mut w = st.watch("", s.rev(7)).unwrap();
    let t = Txn::new().and_then(TxnOp::delete_prefix("net/")).and_then(TxnOp::delete("net/2"));
    assert_eq!(st.txn(t).unwrap(), done(s, true, 7), "{}", b.name());
    assert_eq!(keys(s, ""), ["net2", "other"]);
    let deleted: Vec<_> = s
        .collect(&mut w, 3)
        .into_iter()
        .map(|e| match e {
            WatchEvent::Delete { key, revision } if revision == s.rev(7) => key,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(deleted, ["net/1", "net/1/a", "net/2"]);
}

/// A key written twice in either op list is refused, as etcd refuses it, and nothing is
/// written.
pub fn a_txn_writing_a_key_twice_is_refused_in_either_branch(b: &dyn Backend) {
    let s = &fresh(b);
    let st = &s.store;
    st.txn(put("a/1", "v")).unwrap();
    let t = Txn::new().and_then(TxnOp::put("b", "1")).and_then(TxnOp::put("b", "2"));
    assert!(matches!(st.txn(t), Err(StoreError::InvalidTxn(_))), "{}", b.name());
    let t = Txn::new().and_then(TxnOp::delete_prefix("a/")).and_then(TxnOp::put("a/2", "1"));
    assert!(matches!(st.txn(t), Err(StoreError::InvalidTxn(_))));
    // etcd checks both branches before it evaluates the compares.
    let t = Txn::new()
        .when(Compare::absent("a/1"))
        .and_then(TxnOp::put("b", "1"))
        .and_then(TxnOp::put("b", "2"));
    assert!(matches!(st.txn(t), Err(StoreError::InvalidTxn(_))), "{}", b.name());
    let t = Txn::new()
        .when(Compare::exists("a/1"))
        .and_then(TxnOp::put("c", "1"))
        .or_else(TxnOp::put("b", "1"))
        .or_else(TxnOp::delete("b"));
    assert!(matches!(st.txn(t), Err(StoreError::InvalidTxn(_))), "{}", b.name());
    assert_eq!(keys(s, ""), ["a/1"]);
    assert_eq!(st.range("").unwrap().revision, s.rev(2));
}

/// A watch replays the history from its start revision, then follows live changes.
pub fn watch_replays_from_a_past_revision_then_follows(b: &dyn Backend) {
    let s = &fresh(b);
    let st = &s.store;
    st.txn(put("net/a", "1")).unwrap(); // 2
    st.txn(put("other", "1")).unwrap(); // 3
    st.txn(put("net/a", "2")).unwrap(); // 4
    st.txn(Txn::new().and_then(TxnOp::delete("net/a"))).unwrap(); // 5
    let mut w = st.watch("net/", s.rev(3)).unwrap();
    let mut all = st.watch("", s.rev(1)).unwrap();
    let mut live = st.watch("net/", 0).unwrap();
    let mut future = st.watch("net/", s.rev(7)).unwrap();
    st.txn(put("net/b", "1")).unwrap(); // 6
    st.txn(put("net/c", "1")).unwrap(); // 7
    let expect = vec![
        WatchEvent::Put(kv(s, "net/a", "2", 2, 4, 2)),
        WatchEvent::Delete { key: "net/a".into(), revision: s.rev(5) },
        WatchEvent::Put(kv(s, "net/b", "1", 6, 6, 1)),
        WatchEvent::Put(kv(s, "net/c", "1", 7, 7, 1)),
    ];
    assert_eq!(s.collect(&mut w, 4), expect, "{}", b.name());
    let revs: Vec<_> = s.collect(&mut all, 6).iter().filter_map(WatchEvent::revision).collect();
    assert_eq!(revs, [2, 3, 4, 5, 6, 7].map(|r| s.rev(r)));
    assert_eq!(s.collect(&mut live, 2), expect[2..]);
    assert_eq!(s.collect(&mut future, 1), expect[3..]);
}

/// A watch from before the kept history fails with `Compacted` (local stores, whose
/// history is bounded by `Limits::history`; etcd's compaction has a test of its own).
pub fn watch_from_compacted_history_fails(b: &dyn Backend) {
    if !b.bounded_history() {
        eprintln!("{}: history is compacted by the operator, not bounded; tested apart", b.name());
        return;
    }
    let s = &b.fresh(Limits { history: 3, watch_buffer: 16, ..Limits::default() });
    let st = &s.store;
    for i in 0..5 {
        st.txn(put("k", &i.to_string())).unwrap(); // revisions 2..=6
    }
    // Revisions 4, 5 and 6 are kept; 3 was the last dropped.
    let e = st.watch("", s.rev(3)).unwrap_err();
    assert_eq!(e, StoreError::Compacted { compact_revision: s.rev(3) }, "{}", b.name());
    assert!(matches!(st.watch("k", s.rev(1)), Err(StoreError::Compacted { .. })));
    let mut w = st.watch("", s.rev(4)).unwrap();
    let revs: Vec<_> = s.collect(&mut w, 3).iter().filter_map(WatchEvent::revision).collect();
    assert_eq!(revs, [4, 5, 6].map(|r| s.rev(r)));
    // The re-list recipe: range, then watch from its revision + 1.
    let r = st.range("").unwrap();
    assert!(st.watch("", r.revision + 1).is_ok());
}

/// The kept history is bounded by bytes too (local stores): kilobyte-sized records
/// rewritten all the time must not hold the daemon's memory.
pub fn history_is_bounded_by_bytes_too(b: &dyn Backend) {
    if !b.bounded_history() {
        eprintln!("{}: history is compacted by the operator, not bounded; tested apart", b.name());
        return;
    }
    // Each change holds key "k" and a 9-byte value: 10 bytes; 35 bytes keep three changes.
    let s = &b.fresh(Limits { history: 100, history_bytes: 35, ..Limits::default() });
    let st = &s.store;
    for i in 0..5 {
        st.txn(put("k", &format!("value-00{i}"))).unwrap(); // revisions 2..=6
    }
    let e = st.watch("", s.rev(3)).unwrap_err();
    assert_eq!(e, StoreError::Compacted { compact_revision: s.rev(3) }, "{}", b.name());
    let mut w = st.watch("", s.rev(4)).unwrap();
    let revs: Vec<_> = s.collect(&mut w, 3).iter().filter_map(WatchEvent::revision).collect();
    assert_eq!(revs, [4, 5, 6].map(|r| s.rev(r)), "{}", b.name());
}

/// A watcher that does not keep up is cut off with `Lagged`; writers never wait.
pub fn a_lagging_watcher_is_cut_off_without_blocking_writers(b: &dyn Backend) {
    let s = &b.fresh(Limits { history: 100, watch_buffer: 4, ..Limits::default() });
    let st = &s.store;
    let mut slow = st.watch("", 0).unwrap();
    let mut fine = st.watch("", 0).unwrap();
    let mut got = Vec::new();
    for i in 0..10 {
        st.txn(put("k", &i.to_string())).unwrap();
        got.extend(s.collect(&mut fine, 1));
    }
    assert_eq!(got.len(), 10, "{}", b.name());
    let events = s.collect(&mut slow, 4);
    assert_eq!(events.len(), 4, "{}: {events:?}", b.name());
    assert_eq!(
        events[..3].iter().filter_map(WatchEvent::revision).collect::<Vec<_>>(),
        [2, 3, 4].map(|r| s.rev(r))
    );
    assert_eq!(events[3], WatchEvent::Lagged);
    assert_eq!(slow.blocking_recv(), None, "the watch ends after Lagged");
    // A dropped watcher is forgotten, and writes go on.
    drop(fine);
    assert_eq!(st.txn(put("k", "x")).unwrap().revision, s.rev(12));
}

/// Dropping the store ends its watches.
pub fn a_watch_ends_when_the_store_is_dropped(b: &dyn Backend) {
    let s = fresh(b);
    let mut w = s.store.watch("", 0).unwrap();
    drop(s);
    assert_eq!(w.blocking_recv(), None, "{}", b.name());
}

/// Compare-and-swap increments from several threads lose no update.
pub fn cas_increments_lose_no_update(b: &dyn Backend) {
    const THREADS: usize = 4;
    const EACH: usize = 50;
    let s = &fresh(b);
    let st = &s.store;
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                for _ in 0..EACH {
                    loop {
                        let (n, at) = match st.get("counter").unwrap() {
                            Some(kv) => {
                                let n: usize =
                                    String::from_utf8(kv.value).unwrap().parse().unwrap();
                                (n, kv.mod_revision)
                            }
                            None => (0, 0),
                        };
                        let t = Txn::new()
                            .when(Compare::mod_revision("counter", at))
                            .and_then(TxnOp::put("counter", (n + 1).to_string()));
                        if st.txn(t).unwrap().succeeded {
                            break;
                        }
                    }
                }
            });
        }
    });
    let kv = st.get("counter").unwrap().unwrap();
    let total = THREADS * EACH;
    assert_eq!(kv.value, total.to_string().into_bytes(), "{}", b.name());
    assert_eq!(kv.version, total as i64);
    // Exactly one revision per successful increment; failed compares wrote nothing.
    assert_eq!(st.range("").unwrap().revision, s.rev(1) + total as i64);
}

/// Two threads racing to create the same keys: one winner each time.
pub fn racing_creates_have_one_winner(b: &dyn Backend) {
    const ROUNDS: usize = 25;
    let s = &fresh(b);
    let st = &s.store;
    let barrier = Barrier::new(2);
    let wins: Vec<Vec<bool>> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["left", "right"]
            .into_iter()
            .map(|me| {
                let barrier = &barrier;
                scope.spawn(move || {
                    (0..ROUNDS)
                        .map(|round| {
                            let key = format!("ipam/n1/10.0.0.{round}");
                            barrier.wait();
                            let t = Txn::new()
                                .when(Compare::absent(&key))
                                .and_then(TxnOp::put(&key, me));
                            let won = st.txn(t).unwrap().succeeded;
                            if won {
                                assert_eq!(st.get(&key).unwrap().unwrap().value, me.as_bytes());
                            }
                            won
                        })
                        .collect()
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for round in 0..ROUNDS {
        assert!(wins[0][round] ^ wins[1][round], "{} round {round}: {wins:?}", b.name());
    }
    assert_eq!(st.range("ipam/").unwrap().kvs.len(), ROUNDS);
}

/// Keys put with a lease are deleted when it is revoked, in one revision; a later plain
/// put detaches a key from its lease.
pub fn leased_keys_go_with_their_lease_in_one_revision(b: &dyn Backend) {
    let s = &fresh(b);
    let Some(leases) = s.leases.clone() else {
        eprintln!("{}: no leases", b.name());
        return;
    };
    let st = &s.store;
    let lease = leases.grant(std::time::Duration::from_secs(60)).unwrap();
    let t = Txn::new()
        .and_then(TxnOp::put_with_lease("nodes/a", "1", lease.id))
        .and_then(TxnOp::put_with_lease("nodes/b", "1", lease.id))
        .and_then(TxnOp::put("nodes/c", "1"));
    assert_eq!(st.txn(t).unwrap(), done(s, true, 2), "{}", b.name());
    assert_eq!(st.txn(put("nodes/b", "2")).unwrap(), done(s, true, 3));
    let mut w = st.watch("", 0).unwrap();
    leases.revoke(lease.id).unwrap();
    assert_eq!(
        s.collect(&mut w, 1),
        [WatchEvent::Delete { key: "nodes/a".into(), revision: s.rev(4) }],
        "{}",
        b.name()
    );
    assert_eq!(keys(s, ""), ["nodes/b", "nodes/c"]);
    assert_eq!(st.range("").unwrap().revision, s.rev(4));
    assert_eq!(leases.time_to_live(lease.id).unwrap(), None);
    assert_eq!(leases.keep_alive(lease.id), Err(StoreError::LeaseNotFound(lease.id)));
    assert_eq!(leases.revoke(lease.id), Err(StoreError::LeaseNotFound(lease.id)));
}

/// A put naming a lease that does not exist fails the transaction when its branch runs.
pub fn a_put_with_a_missing_lease_fails_and_writes_nothing(b: &dyn Backend) {
    let s = &fresh(b);
    let Some(leases) = s.leases.clone() else {
        eprintln!("{}: no leases", b.name());
        return;
    };
    let st = &s.store;
    let lease = leases.grant(std::time::Duration::from_secs(60)).unwrap();
    leases.revoke(lease.id).unwrap();
    let t = Txn::new()
        .and_then(TxnOp::put("plain", "1"))
        .and_then(TxnOp::put_with_lease("leased", "1", lease.id));
    assert_eq!(st.txn(t), Err(StoreError::LeaseNotFound(lease.id)), "{}", b.name());
    let never = LeaseId(0x0bad_cafe);
    let t = Txn::new().and_then(TxnOp::put_with_lease("leased", "1", never));
    assert_eq!(st.txn(t), Err(StoreError::LeaseNotFound(never)));
    // The branch that does not run may name any lease.
    let t = Txn::new()
        .when(Compare::absent("plain"))
        .and_then(TxnOp::put("plain", "1"))
        .or_else(TxnOp::put_with_lease("leased", "1", never));
    assert_eq!(st.txn(t).unwrap(), done(s, true, 2));
    assert_eq!(keys(s, ""), ["plain"]);
}

/// Grant, time to live, keep-alive; revoking a lease without keys writes nothing.
pub fn lease_bookkeeping(b: &dyn Backend) {
    let s = &fresh(b);
    let Some(leases) = s.leases.clone() else {
        eprintln!("{}: no leases", b.name());
        return;
    };
    let one = leases.grant(std::time::Duration::from_millis(2500)).unwrap();
    let two = leases.grant(std::time::Duration::from_secs(30)).unwrap();
    assert_ne!(one.id, two.id);
    // Whole seconds, rounded up (etcd may raise a short TTL to its minimum).
    assert!(one.ttl >= std::time::Duration::from_secs(3), "{one:?}");
    assert_eq!(two.ttl, std::time::Duration::from_secs(30));
    let left = leases.time_to_live(two.id).unwrap().unwrap();
    assert!(left <= two.ttl && left >= std::time::Duration::from_secs(28), "{left:?}");
    assert_eq!(leases.keep_alive(two.id).unwrap(), two.ttl);
    leases.revoke(two.id).unwrap();
    leases.revoke(one.id).unwrap();
    assert_eq!(s.store.range("").unwrap().revision, s.rev(1), "{}", b.name());
}
