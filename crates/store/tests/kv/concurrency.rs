//! Writers on several threads: compare-and-swap loses no update, create-if-absent has one
//! winner.

use std::sync::Barrier;

use cove_store::{Compare, Txn, TxnOp};

use crate::backends;

#[test]
fn cas_increments_lose_no_update() {
    const THREADS: usize = 4;
    const EACH: usize = 50;
    for b in backends() {
        let s = &b.store;
        std::thread::scope(|scope| {
            for _ in 0..THREADS {
                scope.spawn(|| {
                    for _ in 0..EACH {
                        loop {
                            let (n, at) = match s.get("counter").unwrap() {
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
                            if s.txn(t).unwrap().succeeded {
                                break;
                            }
                        }
                    }
                });
            }
        });
        let kv = s.get("counter").unwrap().unwrap();
        let total = THREADS * EACH;
        assert_eq!(kv.value, total.to_string().into_bytes(), "{}", b.name);
        assert_eq!(kv.version, total as i64);
        // Exactly one revision per successful increment; failed compares wrote nothing.
        assert_eq!(s.range("").unwrap().revision, 1 + total as i64);
    }
}

#[test]
fn racing_creates_have_one_winner() {
    const ROUNDS: usize = 25;
    for b in backends() {
        let s = &b.store;
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
                                let won = s.txn(t).unwrap().succeeded;
                                if won {
                                    assert_eq!(s.get(&key).unwrap().unwrap().value, me.as_bytes());
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
            assert!(wins[0][round] ^ wins[1][round], "{} round {round}: {wins:?}", b.name);
        }
        assert_eq!(s.range("ipam/").unwrap().kvs.len(), ROUNDS);
    }
}
