//! Watches: an etcd watch stream per [`Watch`], followed by a task on the client thread
//! that turns etcd's events into `WatchEvent`s and reconnects when the stream breaks.
//!
//! - Opening: a watch from a past revision first reads at that revision, so a compacted
//!   start fails at once with `StoreError::Compacted` (etcd itself would only cancel the
//!   watch a moment after creating it). The call returns once etcd has created the watch:
//!   every write after it returns is seen. A watch from "now" (`<= 0`) starts after the
//!   revision etcd reports at creation.
//! - Following: events in revision order; progress notifications move the resume point
//!   forward while nothing under the prefix changes.
//! - Reconnecting: when the stream ends or fails (etcd restarted, connection lost, HTTP/2
//!   keep-alive timed out), the task re-creates the watch from the revision after the last
//!   one delivered, retrying with backoff (0.1 s doubling to 5 s) for as long as the
//!   consumer holds the `Watch`. No event is lost or repeated.
//! - If etcd compacted the history the watch still needs (during a reconnect, or while a
//!   slow watch caught up), the watch ends with `WatchEvent::Compacted`: re-list and watch
//!   again. A consumer that falls `watch_buffer` events behind gets `WatchEvent::Lagged`, as
//!   with the local stores. Dropping the store ends every watch (`None`).
//!
//! Revisions: etcd reports the oldest revision it still has (`compact_revision` in its watch
//! response, watching from it works); `cove_store` reports the newest one it no longer has,
//! one less.

use std::time::Duration;

use cove_store::{StoreError, Watch, WatchEvent};
use etcd_client::{Client, EventType, GetOptions, WatchOptions, WatchStream};
use tokio::sync::mpsc;

use crate::convert::{self, Keys};

/// What a watch follows.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub keys: Keys,
    pub prefix: String,
    pub store: String,
    pub buffer: usize,
    pub deadline: Duration,
}

/// How long to wait for etcd to say how far it compacted before guessing.
const COMPACT_WAIT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Open a watch from `start` (`<= 0`: after the current revision) and start following it.
pub(crate) async fn open(mut client: Client, spec: Spec, start: i64) -> Result<Watch, StoreError> {
    let abs = spec.keys.abs(&spec.prefix);
    if start > 0 {
        let at = GetOptions::new().with_prefix().with_revision(start).with_count_only();
        match client.get(abs.clone(), Some(at)).await {
            Ok(_) => {}
            Err(e) if convert::is_future_revision(&e) => {}
            Err(e) if convert::is_compacted(&e) => {
                return Err(compacted_at(&mut client, &spec, start).await);
            }
            Err(e) => return Err(convert::error(&spec.store, &e, None)),
        }
    }
    let (stream, next) = create(&mut client, &spec, start).await?;
    let (tx, rx) = mpsc::channel(spec.buffer.max(2));
    tokio::spawn(follow(client, spec, stream, next, tx));
    Ok(Watch::new(rx))
}

/// Create etcd's watch from `start` and wait until it is created; the stream and the first
/// revision it will deliver.
async fn create(
    client: &mut Client,
    spec: &Spec,
    start: i64,
) -> Result<(WatchStream, i64), StoreError> {
    let err = |e: etcd_client::Error| convert::error(&spec.store, &e, None);
    let mut options = WatchOptions::new().with_prefix().with_progress_notify();
    if start > 0 {
        options = options.with_start_revision(start);
    }
    let mut stream = client.watch(spec.keys.abs(&spec.prefix), Some(options)).await.map_err(err)?;
    let Some(first) = stream.message().await.map_err(err)? else {
        return Err(convert::error(
            &spec.store,
            &etcd_client::Error::WatchError("the watch stream ended before it started".into()),
            None,
        ));
    };
    if first.compact_revision() > 0 {
        return Err(StoreError::Compacted { compact_revision: first.compact_revision() - 1 });
    }
    if !first.created() || first.canceled() {
        let why = first.cancel_reason().to_string();
        return Err(StoreError::Unavailable(format!(
            "cluster store {}: watch not created: {why}",
            spec.store
        )));
    }
    let next = if start > 0 { start } else { first.header().map_or(0, |h| h.revision()) + 1 };
    Ok((stream, next))
}

/// How far etcd compacted, asked by watching from `start` (etcd cancels such a watch with
/// the number); `start` itself if it does not say in time.
async fn compacted_at(client: &mut Client, spec: &Spec, start: i64) -> StoreError {
    let ask = async {
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut stream = client.watch(spec.keys.abs(&spec.prefix), Some(options)).await.ok()?;
        while let Ok(Some(resp)) = stream.message().await {
            if resp.compact_revision() > 0 {
                return Some(resp.compact_revision() - 1);
            }
        }
        None
    };
    let compact_revision = tokio::time::timeout(COMPACT_WAIT, ask).await.ok().flatten();
    StoreError::Compacted { compact_revision: compact_revision.unwrap_or(start) }
}

/// Queue `event` for the consumer; false when the watch must end (consumer gone, or cut off
/// as lagged: the last slot is kept for `Lagged`).
fn offer(tx: &mpsc::Sender<WatchEvent>, event: WatchEvent) -> bool {
    if tx.capacity() > 1 {
        tx.try_send(event).is_ok()
    } else {
        let _ = tx.try_send(WatchEvent::Lagged);
        false
    }
}

/// Follow `stream`, reconnecting from `next` when it breaks, until the consumer goes away
/// or the watch ends (lagged, compacted).
async fn follow(
    mut client: Client,
    spec: Spec,
    mut stream: WatchStream,
    mut next: i64,
    tx: mpsc::Sender<WatchEvent>,
) {
    loop {
        let why = loop {
            let msg = tokio::select! {
                _ = tx.closed() => return,
                msg = stream.message() => msg,
            };
            let resp = match msg {
                Ok(Some(resp)) => resp,
                Ok(None) => break "the stream ended".to_string(),
                Err(e) => break e.to_string(),
            };
            if resp.compact_revision() > 0 {
                let _ = tx.try_send(WatchEvent::Compacted {
                    compact_revision: resp.compact_revision() - 1,
                });
                return;
            }
            if resp.canceled() {
                break format!("etcd canceled it: {}", resp.cancel_reason());
            }
            if resp.events().is_empty() {
                // A progress notification: everything up to its revision was delivered.
                if !resp.created() {
                    next = next.max(resp.header().map_or(0, |h| h.revision()) + 1);
                }
                continue;
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let event = match ev.event_type() {
                    EventType::Put => spec.keys.kv(kv).map(WatchEvent::Put),
                    EventType::Delete => spec
                        .keys
                        .rel(kv.key())
                        .map(|key| WatchEvent::Delete { key, revision: kv.mod_revision() }),
                };
                match event {
                    Ok(event) => {
                        if !offer(&tx, event) {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(store = %spec.store, error = %e, "watch: skipping a key")
                    }
                }
                next = next.max(kv.mod_revision() + 1);
            }
        };
        tracing::warn!(store = %spec.store, why, next, "watch interrupted; re-creating it");
        let mut backoff = BACKOFF_MIN;
        stream = loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            match tokio::time::timeout(spec.deadline, create(&mut client, &spec, next)).await {
                Ok(Ok((s, _))) => break s,
                Ok(Err(StoreError::Compacted { compact_revision })) => {
                    let _ = tx.try_send(WatchEvent::Compacted { compact_revision });
                    return;
                }
                Ok(Err(e)) => tracing::debug!(store = %spec.store, error = %e, "watch: retrying"),
                Err(_) => tracing::debug!(store = %spec.store, "watch: re-create timed out"),
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        };
        tracing::info!(store = %spec.store, next, "watch re-created");
    }
}
