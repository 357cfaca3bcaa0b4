//! The etcd client's own thread: a current-thread tokio runtime that owns the async
//! `etcd_client::Client` and runs each request handed over a channel, so that the
//! synchronous `Store` methods can be called from any thread (daemon workers included).

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use cove_store::StoreError;
use etcd_client::{Client, ConnectOptions};
use tokio::runtime::RuntimeFlavor;
use tokio::sync::mpsc;

use crate::config::ConfigError;
use crate::tls::Diagnosis;

type Job = Box<dyn FnOnce(Client) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// How much longer than the deadline a caller waits for the client thread itself (it
/// enforces the deadline; this only guards against the thread being stuck).
const GRACE: Duration = Duration::from_secs(1);

/// The client thread and how to reach it.
#[derive(Debug)]
pub(crate) struct Runner {
    jobs: Option<mpsc::UnboundedSender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// The store as configured (`etcd://...`), for messages.
    pub(crate) store: String,
    pub(crate) deadline: Duration,
    /// Says why a request could not reach etcd, when it may be TLS.
    diagnosis: Arc<Diagnosis>,
}

impl Runner {
    /// Start the client thread and connect (lazily: no request reaches etcd yet, so a
    /// store that is down does not stop its user from starting). The thread, and every
    /// thread and socket it makes, is in the caller's network namespace.
    pub(crate) fn start(
        store: String,
        urls: Vec<String>,
        options: ConnectOptions,
        deadline: Duration,
        diagnosis: Diagnosis,
    ) -> Result<Runner, ConfigError> {
        let (jobs, mut rx) = mpsc::unbounded_channel::<Job>();
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("etcd-client".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cannot start its runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(async move {
                    let client = match Client::connect(&urls, Some(options)).await {
                        Ok(c) => c,
                        Err(e) => {
                            let _ =
                                ready_tx.send(Err(crate::convert::with_sources(e.to_string(), &e)));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job(client.clone()));
                    }
                });
                // Dropping the runtime here ends the watch tasks: their watches see `None`.
            })
            .map_err(|e| {
                ConfigError(format!("cluster store {store}: cannot start a thread: {e}"))
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ConfigError(format!("cluster store {store}: {e}"))),
            Err(_) => {
                return Err(ConfigError(format!("cluster store {store}: client thread died")))
            }
        }
        Ok(Runner {
            jobs: Some(jobs),
            thread: Some(thread),
            store,
            deadline,
            diagnosis: Arc::new(diagnosis),
        })
    }

    /// A `StoreError::Unreachable` naming this store.
    pub(crate) fn unreachable(&self, cause: impl Into<String>) -> StoreError {
        unreachable(&self.store, cause)
    }

    /// Run `f` on the client thread within the deadline and wait for its result. When it
    /// fails as unreachable in a way that may be TLS, the cause says what a probe found
    /// (within the same deadline).
    pub(crate) fn call<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (reply_tx, reply_rx) = std_mpsc::sync_channel(1);
        let (deadline, store) = (self.deadline, self.store.clone());
        let diagnosis = Arc::clone(&self.diagnosis);
        let job: Job = Box::new(move |client| {
            Box::pin(async move {
                let work = async {
                    match f(client).await {
                        Err(StoreError::Unreachable { store, cause })
                            if Diagnosis::worth_probing(&cause) =>
                        {
                            let cause = diagnosis.explain(cause).await;
                            Err(StoreError::Unreachable { store, cause })
                        }
                        r => r,
                    }
                };
                let result = match tokio::time::timeout(deadline, work).await {
                    Ok(r) => r,
                    Err(_) => Err(unreachable(&store, format!("no answer within {deadline:?}"))),
                };
                let _ = reply_tx.send(result);
            })
        });
        let jobs = self.jobs.as_ref().ok_or_else(|| self.unreachable("client closed"))?;
        jobs.send(job).map_err(|_| self.unreachable("client thread is gone"))?;
        match blocking(|| reply_rx.recv_timeout(deadline + GRACE)) {
            Ok(r) => r,
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                Err(self.unreachable(format!("client thread gave no answer within {deadline:?}")))
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                Err(self.unreachable("client thread is gone"))
            }
        }
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop; its runtime, and every watch task, go
        // with it.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn unreachable(store: &str, cause: impl Into<String>) -> StoreError {
    StoreError::Unreachable { store: store.to_string(), cause: cause.into() }
}

/// Run the blocking `f`, telling a multi-thread tokio runtime first when called from one of
/// its workers, so it moves its other tasks elsewhere meanwhile. Never on a current-thread
/// runtime (`block_in_place` panics there): that thread just waits.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
