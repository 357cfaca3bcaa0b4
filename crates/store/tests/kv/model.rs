//! Random transactions on every backend and on a small reference model written here, which
//! must agree on every response, on the final keys, and on what a watcher sees.

use std::collections::BTreeMap;

use cove_store::{
    CmpOp, Compare, CompareTarget, KeyValue, Store, StoreError, Txn, TxnOp, TxnResponse, WatchEvent,
};
use proptest::prelude::*;

use crate::{backends, drain};

const KEYS: [&str; 5] = ["a", "a/b", "a/c", "ab", "b"];
const PREFIXES: [&str; 5] = ["", "a", "a/", "b", "c"];
const VALUES: [&str; 4] = ["", "x", "y", "z"];

/// etcd's rules, written plainly: a map, a counter, and the events so far.
#[derive(Default)]
struct Model {
    kvs: BTreeMap<String, KeyValue>,
    revision: i64,
    events: Vec<WatchEvent>,
}

impl Model {
    fn new() -> Self {
        Self { revision: 1, ..Self::default() }
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

    /// `None`: the op list writes a key twice.
    fn txn(&mut self, t: &Txn) -> Option<TxnResponse> {
        let succeeded = t.compares.iter().all(|c| self.holds(c));
        let ops = if succeeded { &t.success } else { &t.failure };
        for (i, op) in ops.iter().enumerate() {
            let TxnOp::Put { key, .. } = op else { continue };
            for (j, other) in ops.iter().enumerate() {
                let clash = match other {
                    TxnOp::Put { key: k, .. } => i != j && k == key,
                    TxnOp::Delete { key: k } => k == key,
                    TxnOp::DeletePrefix { prefix } => key.starts_with(prefix.as_str()),
                };
                if clash {
                    return None;
                }
            }
        }
        let rev = self.revision + 1;
        let mut changed = false;
        for op in ops {
            match op {
                TxnOp::Put { key, value } => {
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

fn txn() -> impl Strategy<Value = Txn> {
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op(), 0..4),
        prop::collection::vec(op(), 0..3),
    )
        .prop_map(|(compares, success, failure)| Txn { compares, success, failure })
}

fn check(name: &str, store: &dyn Store, txns: &[Txn]) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    let mut live = store.watch("", 1).unwrap();
    let mut live_a = store.watch("a/", 0).unwrap();
    for t in txns {
        let got = store.txn(t.clone());
        match model.txn(t) {
            Some(want) => prop_assert_eq!(got, Ok(want), "{} {:?}", name, t),
            None => prop_assert!(matches!(got, Err(StoreError::InvalidTxn(_))), "{name} {got:?}"),
        }
    }
    let range = store.range("").unwrap();
    prop_assert_eq!(range.revision, model.revision);
    prop_assert_eq!(range.kvs, model.kvs.values().cloned().collect::<Vec<_>>());
    for k in KEYS {
        prop_assert_eq!(store.get(k).unwrap(), model.kvs.get(k).cloned());
    }
    prop_assert_eq!(&drain(&mut live), &model.events, "{}", name);
    let mut replay = store.watch("", 1).unwrap();
    prop_assert_eq!(&drain(&mut replay), &model.events, "{}", name);
    let under_a: Vec<_> = model
        .events
        .iter()
        .filter(|e| e.key().is_some_and(|k| k.starts_with("a/")))
        .cloned()
        .collect();
    prop_assert_eq!(drain(&mut live_a), under_a);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn backends_agree_with_the_model(txns in prop::collection::vec(txn(), 1..30)) {
        for b in backends() {
            check(b.name, b.store.as_ref(), &txns)?;
        }
    }
}
