//! Between `cove_store`'s types and etcd's: keys under the prefix, compares, ops, key-values
//! and errors.

use cove_store::{CmpOp, Compare, CompareTarget, KeyValue, LeaseId, StoreError, Txn, TxnOp};
use etcd_client::{
    Compare as EtcdCompare, CompareOp, DeleteOptions, Error as EtcdError, PutOptions,
    Txn as EtcdTxn, TxnOp as EtcdTxnOp,
};
use tonic::Code;

/// Keys as callers name them, and as etcd stores them (with the prefix).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_string() }
    }

    /// The etcd key of `key`.
    pub(crate) fn abs(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.prefix).into_bytes()
    }

    /// The caller's key of the etcd key `raw`.
    pub(crate) fn rel(&self, raw: &[u8]) -> Result<String, StoreError> {
        let shown = || String::from_utf8_lossy(raw).into_owned();
        let rest = raw.strip_prefix(self.prefix.as_bytes()).ok_or_else(|| StoreError::Corrupt {
            key: shown(),
            reason: format!("outside the store's prefix {:?}", self.prefix),
        })?;
        String::from_utf8(rest.to_vec()).map_err(|_| StoreError::Corrupt {
            key: shown(),
            reason: "the key is not UTF-8".into(),
        })
    }

    /// A `cove_store` key-value from etcd's.
    pub(crate) fn kv(&self, kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: self.rel(kv.key())?,
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            version: kv.version(),
        })
    }

    /// etcd's transaction for `txn` (which the caller has validated).
    pub(crate) fn txn(&self, txn: &Txn) -> EtcdTxn {
        let compares: Vec<EtcdCompare> = txn.compares.iter().map(|c| self.compare(c)).collect();
        let ops = |ops: &[TxnOp]| -> Vec<EtcdTxnOp> { ops.iter().map(|o| self.op(o)).collect() };
        EtcdTxn::new().when(compares).and_then(ops(&txn.success)).or_else(ops(&txn.failure))
    }

    fn compare(&self, c: &Compare) -> EtcdCompare {
        let op = match c.op {
            CmpOp::Equal => CompareOp::Equal,
            CmpOp::NotEqual => CompareOp::NotEqual,
            CmpOp::Less => CompareOp::Less,
            CmpOp::Greater => CompareOp::Greater,
        };
        let key = self.abs(&c.key);
        match &c.target {
            CompareTarget::Version(v) => EtcdCompare::version(key, op, *v),
            CompareTarget::CreateRevision(r) => EtcdCompare::create_revision(key, op, *r),
            CompareTarget::ModRevision(r) => EtcdCompare::mod_revision(key, op, *r),
            CompareTarget::Value(v) => EtcdCompare::value(key, op, v.clone()),
        }
    }

    fn op(&self, op: &TxnOp) -> EtcdTxnOp {
        match op {
            TxnOp::Put { key, value } => EtcdTxnOp::put(self.abs(key), value.clone(), None),
            TxnOp::PutWithLease { key, value, lease } => EtcdTxnOp::put(
                self.abs(key),
                value.clone(),
                Some(PutOptions::new().with_lease(lease.0)),
            ),
            TxnOp::Delete { key } => EtcdTxnOp::delete(self.abs(key), None),
            TxnOp::DeletePrefix { prefix } => {
                EtcdTxnOp::delete(self.abs(prefix), Some(DeleteOptions::new().with_prefix()))
            }
        }
    }
}

/// etcd's messages for errors that need more than their gRPC code (etcd 3.4
/// `rpctypes`).
const LEASE_NOT_FOUND: &str = "requested lease not found";
const COMPACTED: &str = "required revision has been compacted";
const FUTURE_REV: &str = "required revision is a future revision";
const INVALID_TXN: [&str; 4] = [
    "duplicate key given in txn request",
    "too many operations in txn request",
    "request is too large",
    "key is not provided",
];

/// The gRPC status inside an etcd client error, if it has one.
fn status(e: &EtcdError) -> Option<&tonic::Status> {
    match e {
        EtcdError::GRpcStatus(s) => Some(s),
        _ => None,
    }
}

/// Whether etcd said the revision asked for is compacted.
pub(crate) fn is_compacted(e: &EtcdError) -> bool {
    status(e).is_some_and(|s| s.message().contains(COMPACTED))
}

/// Whether etcd said the revision asked for is in the future.
pub(crate) fn is_future_revision(e: &EtcdError) -> bool {
    status(e).is_some_and(|s| s.message().contains(FUTURE_REV))
}

/// The `StoreError` for an etcd client error; `lease` is the lease the request named, for
/// "lease not found".
pub(crate) fn error(store: &str, e: &EtcdError, lease: Option<LeaseId>) -> StoreError {
    let unreachable = |cause: String| StoreError::Unreachable { store: store.to_string(), cause };
    let lease_gone = || StoreError::LeaseNotFound(lease.unwrap_or(LeaseId(0)));
    match e {
        EtcdError::GRpcStatus(s) => {
            let msg = s.message();
            let plain = msg.strip_prefix("etcdserver: ").unwrap_or(msg).to_string();
            if msg.contains(LEASE_NOT_FOUND) {
                lease_gone()
            } else if INVALID_TXN.iter().any(|m| msg.contains(m)) {
                StoreError::InvalidTxn(plain)
            } else {
                match s.code() {
                    // Transport failures, timeouts and "no leader", "leader changed",
                    // "request timed out", "too many requests" (all Unavailable): the store
                    // cannot serve now.
                    Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Unknown => {
                        let why = if msg.is_empty() { format!("{:?}", s.code()) } else { plain };
                        unreachable(with_sources(why, s))
                    }
                    _ => StoreError::Unavailable(format!("cluster store {store}: {plain}")),
                }
            }
        }
        EtcdError::TransportError(t) => unreachable(with_sources(t.to_string(), t)),
        EtcdError::IoError(io) => unreachable(with_sources(io.to_string(), io)),
        EtcdError::LeaseKeepAliveError(m) if m.contains("not found") => lease_gone(),
        other => StoreError::Unavailable(format!("cluster store {store}: {other}")),
    }
}

/// `first` and the messages of `e`'s sources ("tcp connect error: Connection refused (os
/// error 111)"): transport errors keep the useful part in their sources.
pub(crate) fn with_sources(first: String, e: &dyn std::error::Error) -> String {
    let mut out = first;
    let mut cur = e.source();
    while let Some(src) = cur {
        let m = src.to_string();
        if !m.is_empty() && !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = src.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_get_and_lose_the_prefix() {
        let k = Keys::new("/cove/v1/");
        assert_eq!(k.abs("networks/n1"), b"/cove/v1/networks/n1");
        assert_eq!(k.abs(""), b"/cove/v1/");
        assert_eq!(k.rel(b"/cove/v1/networks/n1").unwrap(), "networks/n1");
        let e = k.rel(b"/other/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "state store: record /other/x is corrupt: outside the store's prefix \"/cove/v1/\""
        );
        assert!(matches!(k.rel(b"/cove/v1/\xff"), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn errors_map_to_store_errors() {
        let store = "etcd://203.0.113.2:2379";
        let grpc = |code, msg: &str| EtcdError::GRpcStatus(tonic::Status::new(code, msg));
        assert_eq!(
            error(
                store,
                &grpc(Code::NotFound, "etcdserver: requested lease not found"),
                Some(LeaseId(5))
            ),
            StoreError::LeaseNotFound(LeaseId(5))
        );
        assert_eq!(
            error(
                store,
                &grpc(Code::InvalidArgument, "etcdserver: duplicate key given in txn request"),
                None
            ),
            StoreError::InvalidTxn("duplicate key given in txn request".into())
        );
        let e = error(store, &grpc(Code::Unavailable, "etcdserver: no leader"), None);
        assert_eq!(e.to_string(), "cluster store etcd://203.0.113.2:2379 unreachable: no leader");
        let e = error(store, &grpc(Code::PermissionDenied, "etcdserver: permission denied"), None);
        assert_eq!(
            e.to_string(),
            "state store: cluster store etcd://203.0.113.2:2379: permission denied"
        );
        let c = grpc(Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted");
        assert!(is_compacted(&c) && !is_future_revision(&c));
    }
}
