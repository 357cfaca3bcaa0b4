//! etcd's compaction: a watch from before it fails with `Compacted`; a watch still catching
//! up when it happens ends with a `Compacted` event.

use cove_store::{Store, StoreError, Txn, TxnOp, WatchEvent};

use crate::backend;

fn put(key: &str, value: &str) -> Txn {
    Txn::new().and_then(TxnOp::put(key, value))
}

#[test]
fn watch_from_a_compacted_revision_fails_with_compacted() {
    let Some(b) = backend() else { return };
    let store = b.connect(b.config());
    let first = store.txn(put("k", "0")).unwrap().revision;
    for i in 1..5 {
        store.txn(put("k", &i.to_string())).unwrap();
    }
    let last = b.etcd.revision();
    b.etcd.compact(last - 1);
    // etcd keeps `last - 1` on: in cove_store's terms, `last - 2` is the newest dropped.
    let e = store.watch("", first).unwrap_err();
    assert_eq!(e, StoreError::Compacted { compact_revision: last - 2 });
    assert_eq!(
        e.to_string(),
        format!("state store: history up to revision {} is compacted", last - 2)
    );
    assert!(matches!(store.watch("k", last - 2), Err(StoreError::Compacted { .. })));
    // From the compaction point on, history is there.
    let mut w = store.watch("", last - 1).unwrap();
    let mut revs = Vec::new();
    while revs.len() < 2 {
        revs.extend(w.blocking_recv().and_then(|e| e.revision()));
    }
    assert_eq!(revs, [last - 1, last]);
    // The re-list recipe works.
    let r = store.range("").unwrap();
    assert_eq!(r.kvs.len(), 1);
    let mut w = store.watch("", r.revision + 1).unwrap();
    let next = store.txn(put("k", "x")).unwrap().revision;
    assert_eq!(w.blocking_recv().and_then(|e| e.revision()), Some(next));
}

/// etcd replays at most 1,000 revisions per 100 ms to a watch catching up; compacting under
/// it cancels it, and the watch ends with `Compacted`.
#[test]
fn a_watch_catching_up_ends_with_compacted_when_history_goes() {
    let Some(b) = backend() else { return };
    let store = b.connect(b.config().with_watch_buffer(100_000));
    let first = store.txn(put("k", "start")).unwrap().revision;
    // History that takes etcd several 100 ms rounds to replay.
    for i in 0..3000 {
        store.txn(put("k", &i.to_string())).unwrap();
    }
    let last = b.etcd.revision();
    let mut w = store.watch("", first).unwrap();
    b.etcd.compact(last);
    let mut seen = 0usize;
    let end = loop {
        match w.blocking_recv() {
            Some(e) if e.is_final() => break Some(e),
            Some(_) => seen += 1,
            None => break None,
        }
    };
    eprintln!("{seen} events before the end: {end:?}");
    match end {
        Some(WatchEvent::Compacted { compact_revision }) => {
            assert_eq!(compact_revision, last - 1);
            assert!(seen < 3001, "it was cut off before the end of history");
        }
        other => panic!("expected Compacted, got {other:?} after {seen} events"),
    }
}
