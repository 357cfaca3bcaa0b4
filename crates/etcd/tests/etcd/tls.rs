//! Mutual TLS to etcd (Docker's `kv.cacertfile`, `kv.certfile`, `kv.keyfile`), against an
//! etcd that serves TLS and requires client certificates (`Etcd::start_tls`): the trusted
//! client works; every way of getting it wrong fails with a message naming the store, TLS
//! and the option at fault, the same way every time, and etcd's log shows the refused
//! handshakes (the calls reached it); bad files are refused before anything is sent.

use std::path::Path;
use std::time::{Duration, Instant};

use cove_etcd::{EtcdConfig, EtcdStore};
use cove_model::ErrorKind;
use cove_store::{Leases, Store, StoreError, Txn, TxnOp, WatchEvent};
use cove_testkit::{current_test_name, print_skip, Etcd, EtcdCerts};

const DEADLINE: Duration = Duration::from_secs(2);

/// A TLS etcd for the current test, or `None` (printed why) when etcd or openssl is not
/// installed.
fn tls_etcd() -> Option<Etcd> {
    let test = current_test_name("etcd");
    if let Some(why) = Etcd::missing_tls() {
        print_skip(&test, &why);
        return None;
    }
    Some(Etcd::start_tls(&test))
}

/// etcd's refused connections once its log has settled (it logs a refusal a moment after
/// the client saw it): unchanged for 300 ms, or 5 s.
fn settled_rejections(etcd: &Etcd) -> Vec<String> {
    let t0 = Instant::now();
    let mut last = etcd.rejected_connections();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = etcd.rejected_connections();
        if now.len() == last.len() || t0.elapsed() > Duration::from_secs(5) {
            return now;
        }
        last = now;
    }
}

fn opt(name: &str, path: &Path) -> String {
    format!("{name}={}", path.display())
}

/// A store for `etcd` with the `--cluster-store-opt` values `opts`, made in its namespace.
fn connect(etcd: &Etcd, opts: &[String]) -> Result<EtcdStore, String> {
    let config = EtcdConfig::from_flags(&etcd.endpoint(), opts).map_err(|e| e.0)?;
    let config = config.with_deadline(DEADLINE).with_prefix("/tls-test/");
    etcd.run_in_netns(|| EtcdStore::connect(config)).map_err(|e| e.0)
}

#[test]
fn a_client_with_trusted_certificates_uses_the_store_over_tls() {
    let Some(etcd) = tls_etcd() else { return };
    let store = connect(&etcd, &etcd.certs().store_opts()).unwrap();
    let mut w = store.watch("k", 0).unwrap();
    let rev = store.txn(Txn::new().and_then(TxnOp::put("k", "1"))).unwrap().revision;
    assert_eq!(store.get("k").unwrap().unwrap().value, b"1");
    match w.blocking_recv() {
        Some(WatchEvent::Put(kv)) => assert_eq!((kv.key.as_str(), kv.mod_revision), ("k", rev)),
        other => panic!("{other:?}"),
    }
    let lease = store.grant(Duration::from_secs(5)).unwrap();
    assert!(store.time_to_live(lease.id).unwrap().is_some());
    store.revoke(lease.id).unwrap();
    // etcdctl (the fixture's trusted client) sees the same key.
    etcd.etcdctl(&["get", "/tls-test/k", "--print-value-only"]).ok().stdout_has("1");
    assert!(etcd.rejected_connections().is_empty(), "{:?}", etcd.rejected_connections());
}

/// Each refusal, twice (the same message both times: TLS 1.3 alone reports a refused client
/// certificate as an alert, a broken pipe or a closed connection, by timing), with the
/// handshakes etcd refused in its log: the request's, and the diagnosis's (a TLS 1.2
/// handshake with the same files; without TLS, one without a client certificate).
#[test]
fn each_tls_refusal_names_the_store_tls_and_the_option() {
    let Some(etcd) = tls_etcd() else { return };
    let c = etcd.certs().clone();
    let other: EtcdCerts = etcd.untrusted_certs("other");
    let store = "cluster store etcd://127.0.0.1:2379 unreachable: ";
    let cases: [(&str, Vec<String>, String, &[&str]); 4] = [
        (
            "no client certificate",
            vec![opt("kv.cacertfile", &c.ca)],
            format!(
                "{store}TLS: etcd at 127.0.0.1:2379 refused the handshake (alert \
                 BadCertificate): it requires a client certificate and none is configured \
                 (--cluster-store-opt kv.certfile=… kv.keyfile=…); the request failed with: "
            ),
            &["tls: client didn't provide a certificate"],
        ),
        (
            "a client certificate another CA signed",
            vec![
                opt("kv.cacertfile", &c.ca),
                opt("kv.certfile", &other.cert),
                opt("kv.keyfile", &other.key),
            ],
            format!(
                "{store}TLS: etcd at 127.0.0.1:2379 refused this host's client certificate \
                 kv.certfile={} (alert BadCertificate): it must be signed by a CA etcd trusts \
                 (etcd's --trusted-ca-file); the request failed with: ",
                other.cert.display()
            ),
            &["tls: failed to verify client certificate: x509: certificate signed by unknown \
               authority"],
        ),
        (
            "a CA that did not sign etcd's certificate",
            vec![
                opt("kv.cacertfile", &other.ca),
                opt("kv.certfile", &c.cert),
                opt("kv.keyfile", &c.key),
            ],
            format!(
                "{store}TLS: etcd's certificate at 127.0.0.1:2379 is not signed by the CA in \
                 kv.cacertfile={} (unknown issuer); the request failed with: ",
                other.ca.display()
            ),
            &["remote error: tls: unknown certificate authority"],
        ),
        (
            "no TLS at all",
            vec![],
            format!(
                "{store}etcd at 127.0.0.1:2379 serves TLS and no TLS is configured: give \
                 --cluster-store-opt kv.cacertfile=… (and kv.certfile=…, kv.keyfile=… if etcd \
                 requires client certificates); the request failed with: "
            ),
            &[
                "tls: first record does not look like a TLS handshake",
                "tls: client didn't provide a certificate",
            ],
        ),
    ];
    for (what, opts, want, etcd_says) in cases {
        let before = settled_rejections(&etcd).len();
        let s = connect(&etcd, &opts).unwrap_or_else(|e| panic!("{what}: connect: {e}"));
        for attempt in 1..=2 {
            let t0 = Instant::now();
            let e = s.range("").unwrap_err();
            eprintln!("{what} ({attempt}), after {:?}: {e}", t0.elapsed());
            assert!(matches!(e, StoreError::Unreachable { .. }), "{what}: {e:?}");
            assert_eq!(e.kind(), ErrorKind::Unavailable);
            assert!(e.to_string().starts_with(&want), "{what}:\n got {e}\nwant {want}...");
            assert!(t0.elapsed() < DEADLINE, "{what}: {:?}", t0.elapsed());
        }
        // The writes fail the same way.
        let e = s.txn(Txn::new().and_then(TxnOp::put("x", "1"))).unwrap_err();
        assert!(e.to_string().starts_with(&want), "{what}: {e}");
        let rejected = settled_rejections(&etcd);
        let new = &rejected[before..];
        assert!(
            new.iter().any(|r| r.contains(etcd_says[0]))
                && new.iter().all(|r| etcd_says.iter().any(|s| r.contains(s))),
            "{what}: etcd refused {new:?}, expected {etcd_says:?}"
        );
    }
    // Nothing was written, and the trusted client still gets in.
    etcd.etcdctl(&["get", "/tls-test/x"]).ok();
    assert!(etcd.etcdctl(&["get", "--prefix", "/tls-test/"]).ok().stdout.is_empty());
}

/// A TLS client of a plain etcd is told etcd does not speak TLS.
#[test]
fn a_tls_client_of_a_plain_etcd_is_told_it_does_not_speak_tls() {
    let Some(tls) = tls_etcd() else { return };
    let plain = Etcd::start(&current_test_name("etcd"));
    let s = connect(&plain, &tls.certs().store_opts()).unwrap();
    let e = s.get("k").unwrap_err();
    // etcd closes the connection: the probe reads the end of it, or a reset.
    let (want, then) = (
        "cluster store etcd://127.0.0.1:2379 unreachable: TLS: etcd at 127.0.0.1:2379 does not \
         speak TLS (",
        "); without TLS, give no --cluster-store-opt kv.cacertfile; the request failed with: ",
    );
    let e = e.to_string();
    eprintln!("{e}");
    assert!(e.starts_with(want) && e.contains(then), "{e}");
    assert!(e.contains("tls handshake eof") || e.contains("Connection reset by peer"), "{e}");
}

/// A file that cannot work is refused when the store is made, naming the option and the
/// path; nothing reaches etcd.
#[test]
fn bad_tls_files_are_refused_at_connect_naming_the_option_and_the_path() {
    let Some(etcd) = tls_etcd() else { return };
    let c = etcd.certs().clone();
    let other = etcd.untrusted_certs("other");
    let missing = etcd.dir().join("nope.pem");
    let garbage = etcd.dir().join("tls/openssl.cnf");
    let store = "cluster store etcd://127.0.0.1:2379: ";
    let p = |p: &Path| p.display().to_string();
    let cases: [(Vec<String>, String); 5] = [
        (
            vec![opt("kv.cacertfile", &missing)],
            format!(
                "{store}kv.cacertfile={}: cannot read it: No such file or directory (os error 2)",
                p(&missing)
            ),
        ),
        (
            vec![
                opt("kv.cacertfile", &c.ca),
                opt("kv.certfile", &c.cert),
                opt("kv.keyfile", &missing),
            ],
            format!("{store}kv.keyfile={}: cannot read it: No such file", p(&missing)),
        ),
        (
            vec![opt("kv.cacertfile", &garbage)],
            format!(
                "{store}kv.cacertfile={}: no certificate in it (expected PEM, -----BEGIN \
                 CERTIFICATE-----)",
                p(&garbage)
            ),
        ),
        (
            vec![
                opt("kv.cacertfile", &c.ca),
                opt("kv.certfile", &c.cert),
                opt("kv.keyfile", &c.cert),
            ],
            format!(
                "{store}kv.keyfile={}: no private key in it (expected PEM: PKCS#8, PKCS#1 or \
                 SEC1)",
                p(&c.cert)
            ),
        ),
        (
            vec![
                opt("kv.cacertfile", &c.ca),
                opt("kv.certfile", &c.cert),
                opt("kv.keyfile", &other.key),
            ],
            format!(
                "{store}kv.certfile={} and kv.keyfile={} do not go together: the key is not the \
                 certificate's",
                p(&c.cert),
                p(&other.key)
            ),
        ),
    ];
    for (opts, want) in cases {
        let e = connect(&etcd, &opts).unwrap_err();
        assert!(e.starts_with(&want), "{opts:?}:\n got {e}\nwant {want}...");
    }
    assert!(etcd.rejected_connections().is_empty(), "{:?}", etcd.rejected_connections());
}
