//! Starts of different containers overlap (runc runs outside the state lock); the same
//! container's operations are ordered by its own lock.

use std::sync::Arc;
use std::time::Duration;

use super::{ctr, host};

/// Two starts whose runtime starts each wait until both are in the runtime at once: they
/// can only finish if the second start is not held behind the first one's runc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_starts_are_in_the_runtime_at_the_same_time() {
    let h = host().await;
    let a = h.ctl.container_create(ctr("a", "bridge")).await.unwrap();
    let b = h.ctl.container_create(ctr("b", "bridge")).await.unwrap();
    h.runtime.model().start_gate = Some(Arc::new(std::sync::Barrier::new(2)));
    let both = async { tokio::join!(h.ctl.container_start(&a), h.ctl.container_start(&b)) };
    // A generous bound: serial starts never get there (each waits for the other forever).
    let (ra, rb) = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .expect("the starts were serialised: the second never reached the runtime");
    assert!(ra.unwrap() && rb.unwrap());
    h.runtime.model().start_gate = None;
    for id in [&a, &b] {
        assert!(h.runtime.running(id));
        let v = h.ctl.container_get(id).await.unwrap();
        assert_eq!(v.record.state.status, cove_model::Status::Running);
        assert!(v.networks[0].1.is_some(), "{id} has no endpoint");
    }
    // Distinct addresses, although both were planned before either ran.
    let ip = |id: &str| {
        let h = h.clone();
        let id = id.to_string();
        async move { h.ctl.container_get(&id).await.unwrap().networks[0].1.clone().unwrap().ipv4 }
    };
    assert_ne!(ip(&a).await, ip(&b).await);
}

/// A stop of a container that is starting waits for the start, then stops what started:
/// no start is acknowledged for a container that is then left half-stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_start_waits_for_it_then_stops_the_container() {
    let h = host().await;
    let a = h.ctl.container_create(ctr("a", "bridge")).await.unwrap();
    let gate = Arc::new(std::sync::Barrier::new(2));
    h.runtime.model().start_gate = Some(gate.clone());
    let ctl = h.ctl.clone();
    let id = a.clone();
    let start = tokio::spawn(async move { ctl.container_start(&id).await });
    // Until the start's network part is done (the record is provisionally running) and
    // runc waits at the gate.
    for _ in 0..5000 {
        let status = h.ctl.container_get(&a).await.unwrap().record.state.status;
        if status == cove_model::Status::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let ctl = h.ctl.clone();
    let id = a.clone();
    let stop = tokio::spawn(async move { ctl.container_stop(&id, Some(1)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!stop.is_finished(), "the stop did not wait for the start");
    // Let runc go on: the start finishes, then the stop.
    tokio::task::spawn_blocking(move || gate.wait()).await.unwrap();
    assert!(start.await.unwrap().unwrap());
    assert!(stop.await.unwrap().unwrap(), "the stop found nothing running");
    let v = h.ctl.container_get(&a).await.unwrap();
    assert_eq!(v.record.state.status, cove_model::Status::Exited);
    assert!(h.kernel.model().netns.is_empty(), "the sandbox stayed");
}
