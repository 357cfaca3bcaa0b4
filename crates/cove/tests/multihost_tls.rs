//! Mutual TLS to etcd end to end, with Docker's option names (`--cluster-store-opt
//! kv.cacertfile= / kv.certfile= / kv.keyfile=`): etcd in the netlab's `kv` node serves only
//! `https://203.0.113.2:2379` and only to clients whose certificate its CA signed
//! (`Etcd::start_in_tls`). Two hosts with the right files carry an overlay network between
//! their containers; a third host, given wrong files one way after another, is refused by
//! etcd or refuses etcd: its daemon runs (as with a store that is down at start) and answers
//! every cluster operation with a 503 naming the store, TLS and the option at fault, while
//! etcd's log shows each refused handshake from that host (the requests reached etcd). A
//! file that cannot work stops the daemon at start, naming the option and the path. With
//! the right files the same host then joins.

use std::net::IpAddr;
use std::path::Path;

use cove_testkit::{require_etcd, require_root, Etcd, EtcdCerts, FakeHost, Netlab};

mod common;
use common::multihost::{eventually, inspect, FLAGS};

/// The daemon flags of a cluster host whose store options are `opts` (`{addr}`: the host's
/// underlay address).
fn flags(opts: &[String]) -> Vec<String> {
    let mut f: Vec<String> = FLAGS.iter().map(|s| s.to_string()).collect();
    for o in opts {
        f.extend(["--cluster-store-opt".to_string(), o.clone()]);
    }
    f
}

fn opt(name: &str, path: &Path) -> String {
    format!("{name}={}", path.display())
}

/// etcd's refused handshakes once its log has settled (it logs each a moment after the
/// client saw it): unchanged for 300 ms, or 5 s.
fn settled_rejections(etcd: &Etcd) -> Vec<String> {
    let t0 = std::time::Instant::now();
    let mut last = etcd.rejected_connections();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = etcd.rejected_connections();
        if now.len() == last.len() || t0.elapsed() > std::time::Duration::from_secs(5) {
            return now;
        }
        last = now;
    }
}

/// etcd's refused handshakes from `addr`: the ones after the first `skip`, once one
/// contains `what` (up to 5 s).
fn refused_from(etcd: &Etcd, addr: &str, skip: usize, what: &str) -> Vec<String> {
    let from_addr = || -> Vec<String> {
        etcd.rejected_connections()
            .into_iter()
            .filter(|r| r.starts_with(&format!("{addr}:")))
            .skip(skip)
            .collect()
    };
    eventually(5, || from_addr().iter().any(|r| r.contains(what)));
    from_addr()
}

/// Every cluster operation of `h` fails with a 503 (the CLI's error) whose message starts
/// with `want`; local ones work.
#[track_caller]
fn cluster_operations_fail(h: &FakeHost, want: &str) {
    let body = r#"{"Name":"ovx","Driver":"overlay","IPAM":{"Config":[{"Subnet":"10.0.77.0/24"}]}}"#;
    let (code, body) = h.api("POST", "/networks/create", Some(body));
    assert_eq!(code, 503, "{body}");
    assert!(body.contains(want), "network create:\n got {body}\nwant {want}");
    let ls = h.cove(&["node", "ls"]);
    ls.fails();
    eprintln!("cove node ls: {}", ls.stderr.trim());
    assert!(ls.stderr.contains(want), "node ls:\n got {}\nwant {want}", ls.stderr);
    // The daemon itself serves: local networks and containers are as ever.
    h.cove(&["network", "create", "-d", "bridge", "local1"]).ok();
    h.cove(&["network", "rm", "local1"]).ok();
}

#[test]
fn multihost_mutual_tls_to_etcd() {
    require_root();
    require_etcd!(tls);
    let test = "multihost_mutual_tls";
    let cove = Path::new(env!("CARGO_BIN_EXE_cove"));
    let mut lab = Netlab::with_hosts(test, cove, 3);
    let etcd = Etcd::start_in_tls(test, &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    assert_eq!(etcd.client_url(), "https://203.0.113.2:2379");
    let good: EtcdCerts = etcd.certs().clone();
    let other: EtcdCerts = etcd.untrusted_certs("other");
    // The files are on the host's /tmp, which the fake hosts see at the same paths.
    for h in ["h1", "h3"] {
        let paths = [&good.ca, &good.cert, &good.key, &other.ca, &other.cert, &other.key];
        let script: Vec<String> =
            paths.iter().map(|p| format!("test -r {}", p.display())).collect();
        lab.host(h).sh_ok(&script.join(" && "));
    }

    // ---- Positive control: h1 and h2 with the right files --------------------------------
    let good_flags = flags(&good.store_opts());
    let good_flags: Vec<&str> = good_flags.iter().map(String::as_str).collect();
    lab.start_daemons(&["h1", "h2"], &good_flags);
    for h in ["h1", "h2"] {
        lab.host(h).import_busybox("bb");
    }
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let ready = |h: &FakeHost, n: usize| {
        let out = h.cove(&["node", "ls"]);
        out.success() && out.stdout.lines().filter(|l| l.contains("Ready")).count() == n
    };
    assert!(eventually(10, || ready(h1, 2)), "{}", h1.cove(&["node", "ls"]).stdout);
    let id = h1
        .cove(&["network", "create", "-d", "overlay", "--subnet", "10.0.42.0/24", "ov"])
        .ok()
        .out()
        .to_string();
    assert!(
        eventually(5, || h2.cove(&["network", "ls", "--no-trunc"]).stdout.contains(&id)),
        "h2 never listed ov"
    );
    let script =
        "mkdir -p /www && echo hello-over-tls > /www/index.html && exec httpd -f -p 80 -h /www";
    h2.cove(&["run", "-d", "--network", "ov", "--name", "web", "bb", "sh", "-c", script]).ok();
    h1.cove(&["run", "-d", "--network", "ov", "--name", "cli", "bb", "sleep", "600"]).ok();
    let web_ip = inspect(h2, "web", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}");
    assert!(web_ip.starts_with("10.0.42."), "{web_ip}");
    let fetch = format!("timeout 3 wget -q -O- http://{web_ip}/");
    assert!(
        eventually(20, || h1
            .cove(&["exec", "cli", "sh", "-c", &fetch])
            .stdout
            .contains("hello-over-tls")),
        "cli on h1 never fetched from web on h2 across the overlay"
    );
    // The records are in etcd (read with the trusted client's files), and etcd refused
    // nothing so far.
    let keys = etcd.etcdctl(&["get", "--prefix", "/cove/v1/", "--keys-only"]).ok().stdout.clone();
    assert!(keys.contains(&format!("/cove/v1/networks/{id}")), "{keys}");
    assert!(etcd.rejected_connections().is_empty(), "{:?}", etcd.rejected_connections());

    // ---- h3 with wrong files: refused one way or the other --------------------------------
    let store = "cluster store etcd://203.0.113.2:2379 unreachable: ";
    let cases: [(&str, Vec<String>, String, &str); 3] = [
        (
            "no client certificate (only kv.cacertfile)",
            vec![opt("kv.cacertfile", &good.ca)],
            format!(
                "{store}TLS: etcd at 203.0.113.2:2379 refused the handshake (alert \
                 BadCertificate): it requires a client certificate and none is configured \
                 (--cluster-store-opt kv.certfile=… kv.keyfile=…)"
            ),
            "tls: client didn't provide a certificate",
        ),
        (
            "a client certificate another CA signed",
            vec![
                opt("kv.cacertfile", &good.ca),
                opt("kv.certfile", &other.cert),
                opt("kv.keyfile", &other.key),
            ],
            format!(
                "{store}TLS: etcd at 203.0.113.2:2379 refused this host's client certificate \
                 kv.certfile={} (alert BadCertificate): it must be signed by a CA etcd trusts \
                 (etcd's --trusted-ca-file)",
                other.cert.display()
            ),
            "tls: failed to verify client certificate: x509: certificate signed by unknown \
             authority",
        ),
        (
            "a CA that did not sign etcd's certificate",
            vec![
                opt("kv.cacertfile", &other.ca),
                opt("kv.certfile", &good.cert),
                opt("kv.keyfile", &good.key),
            ],
            format!(
                "{store}TLS: etcd's certificate at 203.0.113.2:2379 is not signed by the CA in \
                 kv.cacertfile={} (unknown issuer)",
                other.ca.display()
            ),
            "remote error: tls: unknown certificate authority",
        ),
    ];
    let h3_addr = "203.0.113.13";
    for (what, opts, want, etcd_says) in &cases {
        let f: Vec<String> = flags(opts).iter().map(|a| a.replace("{addr}", h3_addr)).collect();
        let before = settled_rejections(&etcd).iter().filter(|r| r.starts_with(h3_addr)).count();
        let h3 = lab.host_mut("h3");
        // The daemon starts (a store that refuses it is as one that is down: it may come
        // round), says why at start, and fails every cluster operation naming it.
        h3.try_start_daemon(&f.iter().map(String::as_str).collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{what}: the daemon did not start: {e}"));
        let h3 = lab.host("h3");
        cluster_operations_fail(h3, want);
        let log = h3.daemon_log();
        let start = log.rfind("==== netlab: starting").unwrap_or(0);
        assert!(
            log[start..].contains("could not sync with the cluster at start")
                && log[start..].contains(&want[store.len()..]),
            "{what}: the daemon's log does not say why:\n{}",
            &log[start..]
        );
        // The requests reached etcd, which saw this host's handshakes fail so.
        let refused = refused_from(&etcd, h3_addr, before, etcd_says);
        eprintln!("{what}: etcd refused {refused:#?}");
        assert!(
            refused.iter().any(|r| r.contains(etcd_says)),
            "{what}: etcd did not refuse {h3_addr} with {etcd_says:?}: {refused:?}"
        );
        // The others never see h3.
        assert!(!lab.host("h1").cove(&["node", "ls"]).ok().stdout.contains(h3_addr));
        let log = lab.host("h3").daemon_log();
        let warnings = log[start..].lines().filter(|l| l.contains("WARN")).count();
        eprintln!("{what}: {warnings} warnings in the daemon's log, the first:");
        for l in log[start..].lines().filter(|l| l.contains("WARN")).take(2) {
            eprintln!("  {l}");
        }
        lab.host_mut("h3").stop_daemon();
    }

    // ---- Files that cannot work: the daemon refuses to start -----------------------------
    let missing = etcd.dir().join("tls/missing.pem");
    let bad_files: [(Vec<String>, String); 2] = [
        (
            vec![opt("kv.cacertfile", &missing)],
            format!(
                "cove daemon: cluster store etcd://203.0.113.2:2379: kv.cacertfile={}: cannot \
                 read it: No such file or directory (os error 2)",
                missing.display()
            ),
        ),
        (
            vec![
                opt("kv.cacertfile", &good.ca),
                opt("kv.certfile", &good.cert),
                opt("kv.keyfile", &other.key),
            ],
            format!(
                "cove daemon: cluster store etcd://203.0.113.2:2379: kv.certfile={} and \
                 kv.keyfile={} do not go together: the key is not the certificate's",
                good.cert.display(),
                other.key.display()
            ),
        ),
    ];
    // (After the last refused daemon's handshakes are all in etcd's log.)
    let before = settled_rejections(&etcd).len();
    for (opts, want) in &bad_files {
        let f: Vec<String> = flags(opts).iter().map(|a| a.replace("{addr}", h3_addr)).collect();
        let e = lab
            .host_mut("h3")
            .try_start_daemon(&f.iter().map(String::as_str).collect::<Vec<_>>())
            .expect_err("the daemon started with a TLS file that cannot work");
        assert!(e.contains("exited (exit status: 1)"), "{e}");
        assert!(e.contains(want.as_str()), "got:\n{e}\nwant: {want}");
    }
    // Nothing was sent.
    let after = settled_rejections(&etcd);
    assert_eq!(after.len(), before, "{:?}", &after[before..]);

    // ---- With the right files, the same host joins -------------------------------------
    let f: Vec<String> = good_flags.iter().map(|a| a.replace("{addr}", h3_addr)).collect();
    lab.host_mut("h3").start_daemon(&f.iter().map(String::as_str).collect::<Vec<_>>());
    let (h1, h3) = (lab.host("h1"), lab.host("h3"));
    assert!(eventually(10, || ready(h1, 3)), "{}", h1.cove(&["node", "ls"]).stdout);
    assert!(
        eventually(5, || h3.cove(&["network", "ls", "--no-trunc"]).stdout.contains(&id)),
        "h3 never listed ov"
    );
    // And everything goes (a host withdraws its released endpoints lazily: wait for it).
    lab.host("h1").cove(&["rm", "-f", "cli"]).ok();
    lab.host("h2").cove(&["rm", "-f", "web"]).ok();
    assert!(
        eventually(10, || h1.cove(&["network", "rm", "ov"]).status == 0),
        "ov could not be removed once empty: {}",
        h1.cove(&["network", "rm", "ov"]).stderr
    );
    let names =
        |h: &FakeHost| h.cove(&["network", "ls", "--format", "{{.Name}}"]).ok().stdout.clone();
    assert!(eventually(5, || !names(h3).lines().any(|l| l == "ov")), "{}", names(h3));
}
