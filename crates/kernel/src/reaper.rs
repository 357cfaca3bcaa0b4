//! The background reaper of condemned links.
//!
//! Deleting a link holds the kernel's RTNL lock through RCU grace periods (~26–41 ms here),
//! and every other link operation on the host waits meanwhile. So a detach does not delete
//! its veth pair: it condemns the host end ([`Op::Condemn`](cove_drivers::plan::Op), a move
//! to [`RETIRED_LINK_GROUP`]), and this reaper deletes the whole group in one request, one
//! grace period for however many links are waiting, once the executor has been idle for
//! [`QUIET`], and at the latest [`MAX_WAIT`] after the first one was condemned (a host
//! that never goes quiet still gets its links back within a second).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cove_drivers::plan::RETIRED_LINK_GROUP;
use rtnetlink::Handle;
use tracing::{debug, warn};

use crate::error::Cause;

/// How long the executor must have been idle before the reaper deletes.
pub(crate) const QUIET: Duration = Duration::from_millis(50);
/// How long a condemned link waits at most.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(500);

/// Delete every condemned link now. No condemned link is not an error.
pub(crate) async fn reap(host: &Handle) -> Result<(), Cause> {
    match crate::ops::delete_group(host, RETIRED_LINK_GROUP).await {
        Err(c) if c.is_gone() => Ok(()),
        other => other,
    }
}

/// Shared between the executor (which reports activity and condemnations) and the reaper
/// task.
#[derive(Debug)]
pub(crate) struct Reaper {
    start: Instant,
    /// Milliseconds since `start` of the last executor activity.
    last_activity: AtomicU64,
    /// Executor calls in progress.
    busy: AtomicUsize,
    wake: Arc<tokio::sync::Notify>,
}

/// Marks the executor busy while alive.
#[derive(Debug)]
pub(crate) struct Busy<'a>(&'a Reaper);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Reaper {
    /// A reaper whose task runs on `rt` and deletes through `host`.
    pub(crate) fn spawn(rt: &tokio::runtime::Handle, host: Handle) -> Arc<Reaper> {
        let r = Arc::new(Reaper {
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            wake: Arc::new(tokio::sync::Notify::new()),
        });
        let (weak, wake) = (Arc::downgrade(&r), r.wake.clone());
        rt.spawn(async move {
            loop {
                wake.notified().await;
                // The executor is gone: nothing to reap for any more.
                let Some(r) = weak.upgrade() else { return };
                r.wait_for_quiet().await;
                match reap(&host).await {
                    Ok(()) => debug!("reaped condemned links"),
                    Err(c) => warn!(error = %c, "could not delete condemned links"),
                }
            }
        });
        r
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_activity.store(self.now_ms(), Ordering::Release);
    }

    /// The executor starts a call.
    pub(crate) fn busy(&self) -> Busy<'_> {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self)
    }

    /// A link was condemned: reap soon.
    pub(crate) fn notify(&self) {
        self.wake.notify_one();
    }

    /// Until the executor has been idle for [`QUIET`], or [`MAX_WAIT`] passed.
    async fn wait_for_quiet(&self) {
        let deadline = Instant::now() + MAX_WAIT;
        loop {
            let idle = Duration::from_millis(
                self.now_ms().saturating_sub(self.last_activity.load(Ordering::Acquire)),
            );
            let quiet = self.busy.load(Ordering::Acquire) == 0 && idle >= QUIET;
            let now = Instant::now();
            if quiet || now >= deadline {
                return;
            }
            let wait = QUIET.saturating_sub(idle).max(Duration::from_millis(5));
            tokio::time::sleep(wait.min(deadline - now)).await;
        }
    }
}
