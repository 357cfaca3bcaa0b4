//! One behaviour per test, on both backends.

use cove_store::{
    CmpOp, Compare, KeyValue, Limits, StoreError, Txn, TxnOp, TxnResponse, WatchEvent,
};

use crate::{backends, backends_with, drain};

fn put(key: &str, value: &str) -> Txn {
    Txn::new().and_then(TxnOp::put(key, value))
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value.into(),
        create_revision: create,
        mod_revision: modified,
        version,
    }
}

fn done(succeeded: bool, revision: i64) -> TxnResponse {
    TxnResponse { succeeded, revision }
}

#[test]
fn puts_and_deletes_keep_etcd_revisions_and_versions() {
    for b in backends() {
        let s = &b.store;
        assert_eq!(s.range("").unwrap().revision, 1, "{}", b.name);
        assert_eq!(s.get("a").unwrap(), None);
        assert_eq!(s.txn(put("a", "1")).unwrap(), done(true, 2));
        assert_eq!(s.get("a").unwrap(), Some(kv("a", "1", 2, 2, 1)));
        assert_eq!(s.txn(put("a", "2")).unwrap(), done(true, 3));
        assert_eq!(s.get("a").unwrap(), Some(kv("a", "2", 2, 3, 2)));
        // Putting the same value is still a modification.
        assert_eq!(s.txn(put("a", "2")).unwrap(), done(true, 4));
        assert_eq!(s.get("a").unwrap(), Some(kv("a", "2", 2, 4, 3)));
        assert_eq!(s.txn(Txn::new().and_then(TxnOp::delete("a"))).unwrap(), done(true, 5));
        assert_eq!(s.get("a").unwrap(), None, "{}", b.name);
        // A re-created key starts over.
        assert_eq!(s.txn(put("a", "3")).unwrap(), done(true, 6));
        assert_eq!(s.get("a").unwrap(), Some(kv("a", "3", 6, 6, 1)));
    }
}

#[test]
fn one_txn_is_one_revision() {
    for b in backends() {
        let s = &b.store;
        let t = Txn::new().and_then(TxnOp::put("a", "1")).and_then(TxnOp::put("b", "1"));
        assert_eq!(s.txn(t).unwrap(), done(true, 2));
        let t = Txn::new().and_then(TxnOp::put("a", "2")).and_then(TxnOp::delete("b"));
        assert_eq!(s.txn(t).unwrap(), done(true, 3));
        let r = s.range("").unwrap();
        assert_eq!(r.kvs, vec![kv("a", "2", 2, 3, 2)], "{}", b.name);
        assert_eq!(r.revision, 3);
    }
}

#[test]
fn range_is_by_prefix_and_sorted() {
    for b in backends() {
        let s = &b.store;
        for k in ["b", "a/2", "a/1", "a", "ab", "a/1/x"] {
            s.txn(put(k, k)).unwrap();
        }
        let keys = |p: &str| -> Vec<String> {
            s.range(p).unwrap().kvs.into_iter().map(|kv| kv.key).collect()
        };
        assert_eq!(keys(""), ["a", "a/1", "a/1/x", "a/2", "ab", "b"], "{}", b.name);
        assert_eq!(keys("a/"), ["a/1", "a/1/x", "a/2"]);
        assert_eq!(keys("a/1"), ["a/1", "a/1/x"]);
        assert_eq!(keys("c"), Vec::<String>::new());
        assert_eq!(s.range("a/").unwrap().revision, 7);
    }
}

#[test]
fn writing_nothing_does_not_bump_the_revision() {
    for b in backends() {
        let s = &b.store;
        s.txn(put("a", "1")).unwrap();
        assert_eq!(s.txn(Txn::new()).unwrap(), done(true, 2), "{}", b.name);
        assert_eq!(s.txn(Txn::new().and_then(TxnOp::delete("zz"))).unwrap(), done(true, 2));
        assert_eq!(s.txn(Txn::new().and_then(TxnOp::delete_prefix("z"))).unwrap(), done(true, 2));
        let failed = Txn::new().when(Compare::absent("a")).and_then(TxnOp::put("b", "1"));
        assert_eq!(s.txn(failed).unwrap(), done(false, 2));
        assert_eq!(s.get("b").unwrap(), None);
        assert_eq!(s.range("").unwrap().revision, 2);
    }
}

#[test]
fn failed_compares_run_the_failure_branch() {
    for b in backends() {
        let s = &b.store;
        s.txn(put("a", "1")).unwrap();
        let t = Txn::new()
            .when(Compare::exists("a"))
            .when(Compare::exists("missing"))
            .and_then(TxnOp::put("ok", "1"))
            .or_else(TxnOp::put("fallback", "1"))
            .or_else(TxnOp::delete("a"));
        assert_eq!(s.txn(t).unwrap(), done(false, 3), "{}", b.name);
        assert_eq!(s.get("ok").unwrap(), None);
        assert_eq!(s.get("a").unwrap(), None);
        assert_eq!(s.get("fallback").unwrap(), Some(kv("fallback", "1", 3, 3, 1)));
    }
}

#[test]
fn every_compare_target_and_op() {
    for b in backends() {
        let s = &b.store;
        s.txn(put("k", "m")).unwrap(); // rev 2
        s.txn(put("k", "m")).unwrap(); // rev 3: create 2, mod 3, version 2
        let cases = [
            (Compare::absent("k"), false),
            (Compare::exists("k"), true),
            (Compare::absent("other"), true),
            (Compare::exists("other"), false),
            (Compare::mod_revision("k", 3), true),
            (Compare::mod_revision("k", 2), false),
            (Compare::mod_revision("other", 0), true),
            (Compare::version("k", CmpOp::Equal, 2), true),
            (Compare::version("k", CmpOp::NotEqual, 2), false),
            (Compare::version("k", CmpOp::Less, 3), true),
            (Compare::version("k", CmpOp::Greater, 2), false),
            (Compare::create_revision("k", CmpOp::Equal, 2), true),
            (Compare::create_revision("k", CmpOp::Greater, 1), true),
            (Compare::create_revision("k", CmpOp::Less, 2), false),
            (Compare::create_revision("other", CmpOp::Equal, 0), true),
            (Compare::value("k", CmpOp::Equal, "m"), true),
            (Compare::value("k", CmpOp::Less, "n"), true),
            (Compare::value("k", CmpOp::Greater, "n"), false),
            (Compare::value("other", CmpOp::NotEqual, "m"), false),
        ];
        for (c, holds) in cases {
            let resp = s.txn(Txn::new().when(c.clone())).unwrap();
            assert_eq!(resp.succeeded, holds, "{} {c:?}", b.name);
            assert_eq!(resp.revision, 3);
        }
    }
}

#[test]
fn delete_prefix_deletes_exactly_the_prefix() {
    for b in backends() {
        let s = &b.store;
        for k in ["net/1", "net/1/a", "net/2", "net2", "other"] {
            s.txn(put(k, "v")).unwrap();
        }
        let mut w = s.watch("", 7).unwrap();
        let t = Txn::new().and_then(TxnOp::delete_prefix("net/")).and_then(TxnOp::delete("net/2"));
        assert_eq!(s.txn(t).unwrap(), done(true, 7), "{}", b.name);
        let keys: Vec<_> = s.range("").unwrap().kvs.into_iter().map(|kv| kv.key).collect();
        assert_eq!(keys, ["net2", "other"]);
        let deleted: Vec<_> = drain(&mut w)
            .into_iter()
            .map(|e| match e {
                WatchEvent::Delete { key, revision: 7 } => key,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(deleted, ["net/1", "net/1/a", "net/2"]);
    }
}

#[test]
fn a_txn_writing_a_key_twice_is_refused_and_writes_nothing() {
    for b in backends() {
        let s = &b.store;
        s.txn(put("a/1", "v")).unwrap();
        let t = Txn::new().and_then(TxnOp::put("b", "1")).and_then(TxnOp::put("b", "2"));
        assert!(matches!(s.txn(t), Err(StoreError::InvalidTxn(_))), "{}", b.name);
        let t = Txn::new().and_then(TxnOp::delete_prefix("a/")).and_then(TxnOp::put("a/2", "1"));
        assert!(matches!(s.txn(t), Err(StoreError::InvalidTxn(_))));
        // Only the branch that runs is checked.
        let t = Txn::new()
            .when(Compare::absent("a/1"))
            .and_then(TxnOp::put("b", "1"))
            .and_then(TxnOp::put("b", "2"));
        assert_eq!(s.txn(t).unwrap(), done(false, 2));
        assert_eq!(s.range("").unwrap().kvs.len(), 1);
    }
}

#[test]
fn watch_replays_from_a_past_revision_then_follows() {
    for b in backends() {
        let s = &b.store;
        s.txn(put("net/a", "1")).unwrap(); // 2
        s.txn(put("other", "1")).unwrap(); // 3
        s.txn(put("net/a", "2")).unwrap(); // 4
        s.txn(Txn::new().and_then(TxnOp::delete("net/a"))).unwrap(); // 5
        let mut w = s.watch("net/", 3).unwrap();
        let mut all = s.watch("", 1).unwrap();
        let mut live = s.watch("net/", 0).unwrap();
        let mut future = s.watch("net/", 7).unwrap();
        s.txn(put("net/b", "1")).unwrap(); // 6
        s.txn(put("net/c", "1")).unwrap(); // 7
        let expect = vec![
            WatchEvent::Put(kv("net/a", "2", 2, 4, 2)),
            WatchEvent::Delete { key: "net/a".into(), revision: 5 },
            WatchEvent::Put(kv("net/b", "1", 6, 6, 1)),
            WatchEvent::Put(kv("net/c", "1", 7, 7, 1)),
        ];
        assert_eq!(drain(&mut w), expect, "{}", b.name);
        let revs: Vec<_> = drain(&mut all).iter().filter_map(WatchEvent::revision).collect();
        assert_eq!(revs, [2, 3, 4, 5, 6, 7]);
        assert_eq!(drain(&mut live), expect[2..]);
        assert_eq!(drain(&mut future), expect[3..]);
    }
}

#[test]
fn watch_from_compacted_history_fails() {
    let limits = Limits { history: 3, watch_buffer: 16, ..Limits::default() };
    for b in backends_with(limits) {
        let s = &b.store;
        for i in 0..5 {
            s.txn(put("k", &i.to_string())).unwrap(); // revisions 2..=6
        }
        // Revisions 4, 5 and 6 are kept; 3 was the last dropped.
        let e = s.watch("", 3).unwrap_err();
        assert_eq!(e, StoreError::Compacted { compact_revision: 3 }, "{}", b.name);
        assert!(matches!(s.watch("k", 1), Err(StoreError::Compacted { .. })));
        let mut w = s.watch("", 4).unwrap();
        let revs: Vec<_> = drain(&mut w).iter().filter_map(WatchEvent::revision).collect();
        assert_eq!(revs, [4, 5, 6]);
        // The re-list recipe: range, then watch from its revision + 1.
        let r = s.range("").unwrap();
        assert!(s.watch("", r.revision + 1).is_ok());
    }
}

#[test]
fn history_is_bounded_by_bytes_too() {
    // Each change holds key "k" and a 9-byte value: 10 bytes; 35 bytes keep three changes.
    let limits = Limits { history: 100, history_bytes: 35, ..Limits::default() };
    for b in backends_with(limits) {
        let s = &b.store;
        for i in 0..5 {
            s.txn(put("k", &format!("value-00{i}"))).unwrap(); // revisions 2..=6
        }
        let e = s.watch("", 3).unwrap_err();
        assert_eq!(e, StoreError::Compacted { compact_revision: 3 }, "{}", b.name);
        let mut w = s.watch("", 4).unwrap();
        let revs: Vec<_> = drain(&mut w).iter().filter_map(WatchEvent::revision).collect();
        assert_eq!(revs, [4, 5, 6], "{}", b.name);
    }
}

#[test]
fn a_lagging_watcher_is_cut_off_without_blocking_writers() {
    let limits = Limits { history: 100, watch_buffer: 4, ..Limits::default() };
    for b in backends_with(limits) {
        let s = &b.store;
        let mut slow = s.watch("", 0).unwrap();
        let mut fine = s.watch("", 0).unwrap();
        let mut got = Vec::new();
        for i in 0..10 {
            s.txn(put("k", &i.to_string())).unwrap();
            got.extend(drain(&mut fine));
        }
        assert_eq!(got.len(), 10, "{}", b.name);
        let events = drain(&mut slow);
        assert_eq!(events.len(), 4);
        assert_eq!(
            events[..3].iter().filter_map(WatchEvent::revision).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(events[3], WatchEvent::Lagged);
        assert_eq!(slow.blocking_recv(), None, "the watch ends after Lagged");
        // A dropped watcher is forgotten, and writes go on.
        drop(fine);
        assert_eq!(s.txn(put("k", "x")).unwrap().revision, 12);
    }
}

#[test]
fn a_watch_ends_when_the_store_is_dropped() {
    for b in backends() {
        let mut w = b.store.watch("", 0).unwrap();
        drop(b);
        assert_eq!(w.blocking_recv(), None);
    }
}
