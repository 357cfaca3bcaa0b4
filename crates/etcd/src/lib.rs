//! The etcd v3 backend of [`cove_store::Store`], with leases ([`cove_store::Leases`]).
//!
//! [`EtcdStore`] keeps Cove's keys under a prefix (`/cove/v1/` by default) of an etcd
//! cluster, so callers use the same relative keys as with the local store. It speaks etcd's
//! v3 gRPC API through `etcd-client` (tested against etcd 3.4).
//!
//! - **Synchronous over async.** The `Store` trait is synchronous; the client is async. The
//!   store runs the client on a thread of its own with its own current-thread tokio runtime
//!   and hands each request over a channel. A caller on a multi-thread runtime's worker
//!   waits inside `block_in_place`, so the runtime's other tasks move on; elsewhere it just
//!   blocks. The client thread (and so its sockets) is in the network namespace of the
//!   thread that called [`EtcdStore::connect`].
//! - **Deadlines.** Every request has one (default 5 s, [`EtcdConfig::deadline`]); past it,
//!   or when etcd cannot be connected to, the call fails with
//!   [`StoreError::Unreachable`](cove_store::StoreError::Unreachable) ("cluster store
//!   etcd://203.0.113.2:2379 unreachable: ..."), kind `Unavailable` (HTTP 503). A request
//!   that timed out may still have been applied by etcd.
//! - **Connecting** is lazy: [`EtcdStore::connect`] only fails for a bad configuration (a TLS
//!   file that cannot be read, holds no certificate or key, or a key that is not the
//!   certificate's: the message names the option and the path); a store that is down shows
//!   in the first request.
//! - **TLS** (Docker's `kv.cacertfile`, `kv.certfile`, `kv.keyfile`): when a request fails
//!   in a way that may be TLS, one TLS 1.2 handshake of the store's own says why (etcd's
//!   certificate not signed by `kv.cacertfile`, this host's certificate refused or missing,
//!   etcd not speaking TLS, or speaking it to a client without): see module `tls`.
//! - **Watches** survive reconnects and end with `Compacted` when etcd dropped history they
//!   still need: see module `watch`.
//! - **Leases** map one to one onto etcd's; etcd counts TTLs in whole seconds and raises
//!   short ones to its minimum (2 s with default timing).

mod config;
mod convert;
mod runner;
mod tls;
mod watch;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cove_store::{
    KeyValue, Lease, LeaseId, Leases, Range, Store, StoreError, Txn, TxnResponse, Watch,
};
use etcd_client::{ConnectOptions, GetOptions};

pub use config::{
    ClusterUrl, ConfigError, Endpoint, EtcdConfig, TlsFiles, DEFAULT_PORT, OPT_CACERT, OPT_CERT,
    OPT_KEY,
};

use convert::Keys;
use runner::Runner;

/// Range responses may be large (every record of a cluster); tonic's default is 4 MiB.
const MAX_MESSAGE: usize = 256 << 20;

/// A [`Store`] (and [`Leases`]) in an etcd v3 cluster. See the crate docs.
pub struct EtcdStore {
    runner: Runner,
    keys: Keys,
    prefix: String,
    watch_buffer: usize,
    /// The TTL each lease granted here was given, which a keep-alive restores.
    granted: Mutex<HashMap<LeaseId, Duration>>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("store", &self.runner.store)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// A store for `config`. Nothing is sent to etcd yet; fails only when the configuration
    /// cannot work (a TLS file unreadable, without a certificate or key, or a key that is
    /// not the certificate's).
    pub fn connect(config: EtcdConfig) -> Result<EtcdStore, ConfigError> {
        let store = config.url.to_string();
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.deadline)
            .with_keep_alive(config.keepalive.0, config.keepalive.1)
            .with_keep_alive_while_idle(true);
        let endpoints = config.url.endpoints();
        let diagnosis = match &config.tls {
            Some(files) => {
                let (tls, probe) = tls::load(&store, files)?;
                options = options.with_tls(tls);
                tls::Diagnosis::new(endpoints, Some((files, probe)))
            }
            None => tls::Diagnosis::new(endpoints, None),
        }
        .map_err(|e| ConfigError(format!("cluster store {store}: {}", e.0)))?;
        let urls = config.url.grpc_urls(config.tls.is_some());
        let runner = Runner::start(store, urls, options, config.deadline, diagnosis)?;
        Ok(EtcdStore {
            runner,
            keys: Keys::new(&config.prefix),
            prefix: config.prefix,
            watch_buffer: config.watch_buffer,
            granted: Mutex::new(HashMap::new()),
        })
    }

    /// The store as configured (`etcd://host:port,...`), as messages name it.
    pub fn url(&self) -> &str {
        &self.runner.store
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// One round trip to etcd: its current revision (cluster-wide, not only this prefix's).
    pub fn ping(&self) -> Result<i64, StoreError> {
        let store = self.runner.store.clone();
        self.runner.call(move |mut c| async move {
            let status = c.status().await.map_err(|e| convert::error(&store, &e, None))?;
            Ok(status.header().map_or(0, |h| h.revision()))
        })
    }

    fn err(&self) -> impl Fn(etcd_client::Error) -> StoreError + Send + Clone + 'static {
        let store = self.runner.store.clone();
        move |e| convert::error(&store, &e, None)
    }
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let (abs, keys, err) = (self.keys.abs(key), self.keys.clone(), self.err());
        self.runner.call(move |mut c| async move {
            let resp = c.get(abs, None).await.map_err(err)?;
            resp.kvs().first().map(|kv| keys.kv(kv)).transpose()
        })
    }

    fn range(&self, prefix: &str) -> Result<Range, StoreError> {
        let (abs, keys, err) = (self.keys.abs(prefix), self.keys.clone(), self.err());
        self.runner.call(move |c| async move {
            let mut kv = c.kv_client().max_decoding_message_size(MAX_MESSAGE);
            let resp = kv.get(abs, Some(GetOptions::new().with_prefix())).await.map_err(err)?;
            let kvs = resp.kvs().iter().map(|kv| keys.kv(kv)).collect::<Result<_, _>>()?;
            Ok(Range { kvs, revision: resp.header().map_or(0, |h| h.revision()) })
        })
    }

    fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        // Refuse what etcd would refuse, with the same messages as the local stores.
        txn.validate()?;
        let etcd_txn = self.keys.txn(&txn);
        // etcd does not say which lease is missing; a transaction rarely names two.
        let lease = txn.leases().next();
        let store = self.runner.store.clone();
        self.runner.call(move |c| async move {
            let mut kv = c.kv_client().max_encoding_message_size(MAX_MESSAGE);
            let resp = kv.txn(etcd_txn).await.map_err(|e| convert::error(&store, &e, lease))?;
            Ok(TxnResponse {
                succeeded: resp.succeeded(),
                revision: resp.header().map_or(0, |h| h.revision()),
            })
        })
    }

    fn watch(&self, prefix: &str, start_revision: i64) -> Result<Watch, StoreError> {
        let spec = watch::Spec {
            keys: self.keys.clone(),
            prefix: prefix.to_string(),
            store: self.runner.store.clone(),
            buffer: self.watch_buffer,
            deadline: self.runner.deadline,
        };
        self.runner.call(move |c| watch::open(c, spec, start_revision))
    }
}

impl Leases for EtcdStore {
    fn grant(&self, ttl: Duration) -> Result<Lease, StoreError> {
        let secs = i64::try_from(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
            .unwrap_or(i64::MAX)
            .max(1);
        let err = self.err();
        let lease = self.runner.call(move |mut c| async move {
            let resp = c.lease_grant(secs, None).await.map_err(err)?;
            Ok(Lease {
                id: LeaseId(resp.id()),
                ttl: Duration::from_secs(resp.ttl().max(0).unsigned_abs()),
            })
        })?;
        self.granted.lock().unwrap_or_else(PoisonError::into_inner).insert(lease.id, lease.ttl);
        Ok(lease)
    }

    fn keep_alive(&self, id: LeaseId) -> Result<Duration, StoreError> {
        let store = self.runner.store.clone();
        self.runner.call(move |mut c| async move {
            // One request on a keep-alive stream; etcd answers with the restored TTL, which
            // the client checks (TTL 0: no such lease) before handing the stream over.
            c.lease_keep_alive(id.0).await.map_err(|e| convert::error(&store, &e, Some(id)))?;
            Ok(())
        })?;
        let known = self.granted.lock().unwrap_or_else(PoisonError::into_inner).get(&id).copied();
        match known {
            Some(ttl) => Ok(ttl),
            // Granted elsewhere: ask.
            None => self.granted_ttl(id),
        }
    }

    fn revoke(&self, id: LeaseId) -> Result<(), StoreError> {
        let store = self.runner.store.clone();
        self.runner.call(move |mut c| async move {
            c.lease_revoke(id.0).await.map_err(|e| convert::error(&store, &e, Some(id)))?;
            Ok(())
        })?;
        self.granted.lock().unwrap_or_else(PoisonError::into_inner).remove(&id);
        Ok(())
    }

    fn time_to_live(&self, id: LeaseId) -> Result<Option<Duration>, StoreError> {
        let store = self.runner.store.clone();
        self.runner.call(move |mut c| async move {
            let resp = c
                .lease_time_to_live(id.0, None)
                .await
                .map_err(|e| convert::error(&store, &e, Some(id)))?;
            // etcd answers -1 for a lease it does not have.
            Ok((resp.ttl() >= 0).then(|| Duration::from_secs(resp.ttl().unsigned_abs())))
        })
    }
}

impl EtcdStore {
    fn granted_ttl(&self, id: LeaseId) -> Result<Duration, StoreError> {
        let store = self.runner.store.clone();
        self.runner.call(move |mut c| async move {
            let resp = c
                .lease_time_to_live(id.0, None)
                .await
                .map_err(|e| convert::error(&store, &e, Some(id)))?;
            if resp.ttl() < 0 {
                return Err(StoreError::LeaseNotFound(id));
            }
            Ok(Duration::from_secs(resp.granted_ttl().max(0).unsigned_abs()))
        })
    }
}
