//! Random transactions on a store and on a small reference model written here, which must
//! agree on every response, on the final keys, and on what watchers (live and replayed) see.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

use crate::conformance::{Backend, Subject};
use crate::{
    CmpOp, Compare, CompareTarget, KeyValue, Limits, StoreError, Txn, TxnOp, TxnResponse,
    WatchEvent,
};

const KEYS: [&str; 5] = ["a", "a/b", "a/c", "ab", "b"];
const PREFIXES: [&str; 5] = ["", "a", "a/", "b", "c"];
const VALUES: [&str; 4] = ["", "x", "y", "z"];

/// etcd's rules, written plainly: a map, a counter, and the events so far.
#[derive(Debug, Default)]
pub struct Model {
    kvs: BTreeMap<String, KeyValue>,
    revision: i64,
    events: Vec<WatchEvent>,
}

impl Model {
    /// An empty model at `revision`.
    pub fn new(revision: i64) -> Self {
        Self { revision, ..Self::default() }
    }

    fn holds(&self, c: &Compare) -> bool {
        let kv = self.kvs.get(&c.key);
        let field = |f: fn(&KeyValue) -> i64| kv.map(f).unwrap_or(0);
        let ord = match &c.target {
            CompareTarget::Version(v) => field(|kv| kv.version).cmp(v),
            CompareTarget::CreateRevision(r) => field(|kv| kv.create_revision).cmp(r),
            CompareTarget::ModRevision(r) => field(|kv| kv.mod_revision).cmp(r),
            CompareTarget::Value(v) => match kv {
                Some(kv) => kv.value.cmp(v),
                None => return false,
            },
        };
        match c.op {
            CmpOp::Equal => ord.is_eq(),
            CmpOp::NotEqual => ord.is_ne(),
            CmpOp::Less => ord.is_lt(),
            CmpOp::Greater => ord.is_gt(),
        }
    }

    /// Whether an op list writes a key twice.
    fn clashes(ops: &[TxnOp]) -> bool {
        ops.iter().enumerate().any(|(i, op)| {
            let Some(key) = op.put_key() else { return false };
            ops.iter().enumerate().any(|(j, other)| match other {
                TxnOp::Put { key: k, .. } | TxnOp::PutWithLease { key: k, .. } => {
                    i != j && k == key
                }
                TxnOp::Delete { key: k } => k == key,
                TxnOp::DeletePrefix { prefix } => key.starts_with(prefix.as_str()),
            })
        })
    }

    /// `None`: either op list writes a key twice (etcd checks both).
    pub fn txn(&mut self, t: &Txn) -> Option<TxnResponse> {
        if Self::clashes(&t.success) || Self::clashes(&t.failure) {
            return None;
        }
        let succeeded = t.compares.iter().all(|c| self.holds(c));
        let ops = if succeeded { &t.success } else { &t.failure };
        let rev = self.revision + 1;
        let mut changed = false;
        for op in ops {
            match op {
                TxnOp::Put { key, value } | TxnOp::PutWithLease { key, value, .. } => {
                    let kv = match self.kvs.get(key) {
                        Some(old) => KeyValue {
                            value: value.clone(),
                            mod_revision: rev,
                            version: old.version + 1,
                            ..old.clone()
                        },
                        None => KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision: rev,
                            mod_revision: rev,
                            version: 1,
                        },
                    };
                    self.kvs.insert(key.clone(), kv.clone());
                    self.events.push(WatchEvent::Put(kv));
                    changed = true;
                }
                TxnOp::Delete { key } => {
                    if self.kvs.remove(key).is_some() {
                        self.events.push(WatchEvent::Delete { key: key.clone(), revision: rev });
                        changed = true;
                    }
                }
                TxnOp::DeletePrefix { prefix } => {
                    let gone: Vec<String> = self
                        .kvs
                        .keys()
                        .filter(|k| k.starts_with(prefix.as_str()))
                        .cloned()
                        .collect();
                    for key in gone {
                        self.kvs.remove(&key);
                        self.events.push(WatchEvent::Delete { key, revision: rev });
                        changed = true;
                    }
                }
            }
        }
        if changed {
            self.revision = rev;
        }
        Some(TxnResponse { succeeded, revision: self.revision })
    }
}

fn key() -> impl Strategy<Value = String> {
    prop::sample::select(&KEYS[..]).prop_map(str::to_string)
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(&VALUES[..]).prop_map(|v| v.as_bytes().to_vec())
}

fn op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(key, value)| TxnOp::Put { key, value }),
        2 => key().prop_map(|key| TxnOp::Delete { key }),
        1 => prop::sample::select(&PREFIXES[..])
            .prop_map(|p| TxnOp::DeletePrefix { prefix: p.to_string() }),
    ]
}

fn compare() -> impl Strategy<Value = Compare> {
    let op = prop::sample::select(vec![CmpOp::Equal, CmpOp::NotEqual, CmpOp::Less, CmpOp::Greater]);
    let target = prop_oneof![
        (0i64..4).prop_map(CompareTarget::Version),
        (0i64..12).prop_map(CompareTarget::CreateRevision),
        (0i64..12).prop_map(CompareTarget::ModRevision),
        value().prop_map(CompareTarget::Value),
    ];
    (key(), op, target).prop_map(|(key, op, target)| Compare { key, target, op })
}

/// A random transaction; its revisions in compares are numbered as a fresh local store
/// numbers them (map them with [`Subject::rev`]).
pub fn txn() -> impl Strategy<Value = Txn> {
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op(), 0..4),
        prop::collection::vec(op(), 0..3),
    )
        .prop_map(|(compares, success, failure)| Txn { compares, success, failure })
}

/// `t` with its compared revisions in `s`'s numbering.
fn renumber(s: &Subject, t: &Txn) -> Txn {
    let mut t = t.clone();
    for c in &mut t.compares {
        match &mut c.target {
            CompareTarget::CreateRevision(r) | CompareTarget::ModRevision(r) => *r = s.rev(*r),
            CompareTarget::Version(_) | CompareTarget::Value(_) => {}
        }
    }
    t
}

/// Run `txns` on the fresh store `s` and on the model; they must agree.
pub fn check(s: &Subject, txns: &[Txn]) -> Result<(), TestCaseError> {
    let store = &s.store;
    let mut model = Model::new(s.rev(1));
    let mut live = store.watch("", s.rev(1)).unwrap();
    let mut live_a = store.watch("a/", 0).unwrap();
    for t in txns {
        let t = renumber(s, t);
        let got = store.txn(t.clone());
        match model.txn(&t) {
            Some(want) => prop_assert_eq!(got, Ok(want), "{:?}", t),
            None => prop_assert!(matches!(got, Err(StoreError::InvalidTxn(_))), "{got:?}"),
        }
    }
    let range = store.range("").unwrap();
    prop_assert_eq!(range.revision, model.revision);
    prop_assert_eq!(range.kvs, model.kvs.values().cloned().collect::<Vec<_>>());
    for k in KEYS {
        prop_assert_eq!(store.get(k).unwrap(), model.kvs.get(k).cloned());
    }
    prop_assert_eq!(&s.collect(&mut live, model.events.len()), &model.events);
    let mut replay = store.watch("", s.rev(1)).unwrap();
    prop_assert_eq!(&s.collect(&mut replay, model.events.len()), &model.events);
    let under_a: Vec<_> = model
        .events
        .iter()
        .filter(|e| e.key().is_some_and(|k| k.starts_with("a/")))
        .cloned()
        .collect();
    prop_assert_eq!(s.collect(&mut live_a, under_a.len()), under_a);
    Ok(())
}

/// `cases` random sequences of up to 30 transactions, each on a fresh store of `b`.
/// Failures are saved beside `source_file` (in `proptest-regressions/`) and replayed first.
pub fn run(b: &dyn Backend, cases: u32, source_file: &'static str) {
    let config = Config {
        cases,
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(txn(), 1..30), |txns| {
        check(&b.fresh(Limits::default()), &txns)
    });
    if let Err(e) = result {
        panic!("{}: the store disagrees with the model: {e}", b.name());
    }
}
