//! Leases with etcd's semantics: [`Leases`] grants a lease with a time to live, keep-alives
//! refresh it, and when it expires or is revoked every key put with it
//! ([`TxnOp::PutWithLease`](crate::TxnOp::PutWithLease)) is deleted, all in one revision.
//! [`KeepAlive`] refreshes a lease in the background and reports when it is lost.

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::kv::StoreError;

/// A lease's id, as etcd numbers them (positive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // etcd and etcdctl show lease ids in hex.
        write!(f, "{:x}", self.0)
    }
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Its id, for puts and keep-alives.
    pub id: LeaseId,
    /// The time to live it was granted (etcd may raise a short one to its minimum) and that
    /// each keep-alive restores.
    pub ttl: Duration,
}

/// Leases of a store (etcd's Lease API). Calls block like [`crate::Store`]'s.
pub trait Leases: Send + Sync + fmt::Debug {
    /// Grant a lease that expires `ttl` from now unless kept alive. etcd counts in whole
    /// seconds: `ttl` is rounded up, and at least 1 s.
    fn grant(&self, ttl: Duration) -> Result<Lease, StoreError>;
    /// Restore the lease's full time to live; returns it. [`StoreError::LeaseNotFound`]
    /// once the lease has expired or was revoked (its keys are gone then).
    fn keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError>;
    /// End the lease now and delete its keys (one revision, if it had any).
    /// [`StoreError::LeaseNotFound`] if it does not exist.
    fn revoke(&self, id: LeaseId) -> Result<(), StoreError>;
    /// How long the lease has left; `None` if it does not exist (expired or revoked).
    fn time_to_live(&self, id: LeaseId) -> Result<Option<Duration>, StoreError>;
}

/// The TTL in whole seconds, rounded up, at least 1 (etcd's unit).
pub(crate) fn ttl_secs(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}

/// Why a [`KeepAlive`] stopped keeping its lease alive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseLost {
    /// The lease.
    pub id: LeaseId,
    /// What happened: the store said it does not exist, or no keep-alive got through for a
    /// whole TTL (then it has expired, as far as this process can tell).
    pub reason: String,
}

impl fmt::Display for LeaseLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lease {} lost: {}", self.id, self.reason)
    }
}

#[derive(Debug, Default)]
struct Shared {
    stop: bool,
    lost: Option<LeaseLost>,
}

/// Keeps a lease alive from a background thread: a keep-alive every `interval` (default a
/// third of the TTL, as etcd's clients do), retried on errors. It reports loss once, and
/// stops, when the store says the lease is gone or when no keep-alive succeeded for a whole
/// TTL. Dropping it (or [`KeepAlive::stop`]) stops the keep-alives without revoking: the
/// lease then expires after its TTL.
#[derive(Debug)]
pub struct KeepAlive {
    lease: Lease,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    lost_rx: watch::Receiver<Option<LeaseLost>>,
    thread: Option<JoinHandle<()>>,
}

impl KeepAlive {
    /// Keep `lease` alive every TTL / 3.
    pub fn start(leases: Arc<dyn Leases>, lease: Lease) -> KeepAlive {
        Self::with_interval(leases, lease, lease.ttl / 3)
    }

    /// Keep `lease` alive every `interval` (clamped to at least 10 ms).
    pub fn with_interval(leases: Arc<dyn Leases>, lease: Lease, interval: Duration) -> KeepAlive {
        let interval = interval.max(Duration::from_millis(10));
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let (lost_tx, lost_rx) = watch::channel(None);
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("lease-{}", lease.id))
            .spawn(move || run(leases.as_ref(), lease, interval, &s, &lost_tx))
            .expect("cannot spawn a lease keep-alive thread");
        KeepAlive { lease, shared, lost_rx, thread: Some(thread) }
    }

    /// The lease kept alive.
    pub fn lease(&self) -> Lease {
        self.lease
    }

    /// Why the lease was lost, once it has been.
    pub fn lost(&self) -> Option<LeaseLost> {
        self.lock().lost.clone()
    }

    /// Block until the lease is lost or `timeout` passes.
    pub fn wait_lost(&self, timeout: Duration) -> Option<LeaseLost> {
        let (lock, cv) = &*self.shared;
        let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |s| s.lost.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        guard.lost.clone()
    }

    /// A channel that turns `Some` when the lease is lost, for async callers
    /// (`rx.wait_for(Option::is_some).await`).
    pub fn subscribe(&self) -> watch::Receiver<Option<LeaseLost>> {
        self.lost_rx.clone()
    }

    /// Stop keeping the lease alive (it is not revoked) and wait for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn halt(&mut self) {
        self.lock().stop = true;
        self.shared.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.halt();
    }
}

fn run(
    leases: &dyn Leases,
    lease: Lease,
    interval: Duration,
    shared: &(Mutex<Shared>, Condvar),
    lost_tx: &watch::Sender<Option<LeaseLost>>,
) {
    let (lock, cv) = shared;
    let mut last_ok = Instant::now();
    loop {
        {
            let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
            let (guard, _) = cv
                .wait_timeout_while(guard, interval, |s| !s.stop)
                .unwrap_or_else(PoisonError::into_inner);
            if guard.stop {
                return;
            }
        }
        let reason = match leases.keep_alive(lease.id) {
            Ok(_) => {
                last_ok = Instant::now();
                continue;
            }
            Err(StoreError::LeaseNotFound(_)) => {
                "the store has no such lease (it expired or was revoked)".to_string()
            }
            // A store that cannot be reached may have let the lease expire: after a whole
            // TTL without a successful keep-alive, assume it has (etcd would have).
            Err(e) if last_ok.elapsed() >= lease.ttl => {
                format!("no keep-alive succeeded for {:?}: {e}", lease.ttl)
            }
            Err(e) => {
                tracing::warn!(lease = %lease.id, error = %e, "lease keep-alive failed; retrying");
                continue;
            }
        };
        let lost = LeaseLost { id: lease.id, reason };
        tracing::warn!(%lost, "lease lost");
        // Subscribers first: whoever learns of the loss from `lost()` or `wait_lost` must
        // find the channel already changed.
        let _ = lost_tx.send(Some(lost.clone()));
        lock.lock().unwrap_or_else(PoisonError::into_inner).lost = Some(lost);
        cv.notify_all();
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_secs(Duration::ZERO), 1);
        assert_eq!(ttl_secs(Duration::from_millis(1)), 1);
        assert_eq!(ttl_secs(Duration::from_secs(2)), 2);
        assert_eq!(ttl_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn lease_ids_show_in_hex_as_etcdctl_does() {
        assert_eq!(LeaseId(0x694d7f0c3b8a4f11).to_string(), "694d7f0c3b8a4f11");
    }
}
