//! Tests of the `Etcd` fixture (privileged: run as root). Skipped when etcd is not
//! installed, unless `COVE_REQUIRE_ETCD` is set.

use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use cove_testkit::{ns_inode, require_etcd, require_root, Etcd, FakeHost};

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn etcd_runs_in_a_namespace_of_its_own_and_goes_on_drop() {
    require_etcd!();
    require_root();
    let t0 = Instant::now();
    let etcd = Etcd::start("etcd_own_namespace");
    eprintln!("etcd healthy after {:?}", t0.elapsed());
    assert_eq!(etcd.endpoint(), "etcd://127.0.0.1:2379");
    assert_eq!(etcd.client_url(), "http://127.0.0.1:2379");
    let pid = etcd.pid();
    let own = ns_inode("self", "net").unwrap();
    assert_eq!(ns_inode(&pid.to_string(), "net"), Some(etcd.netns_inode()));
    assert_ne!(etcd.netns_inode(), own, "etcd must not run in the host's netns");
    // Not reachable from the host's namespace; reachable from a thread that joined it.
    let addr = "127.0.0.1:2379".parse().unwrap();
    let from_host = TcpStream::connect_timeout(&addr, Duration::from_millis(200));
    assert!(from_host.is_err(), "something listens on the host's 127.0.0.1:2379");
    assert!(etcd.run_in_netns(|| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()));
    // The data dir is on etcd's private tmpfs: empty from the host.
    let data = etcd.dir().join("data");
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0, "{}", data.display());

    etcd.etcdctl(&["put", "/x", "1"]).ok();
    etcd.etcdctl(&["get", "/x", "--print-value-only"]).ok().stdout_has("1");
    let rev = etcd.revision();
    assert!(rev >= 2, "{rev}");
    etcd.etcdctl(&["put", "/x", "2"]).ok();
    etcd.compact(rev + 1);
    etcd.etcdctl(&["get", "/x", &format!("--rev={rev}")]).fails().stderr_has("compacted");

    etcd.pause();
    etcd.etcdctl(&["get", "/x", "--command-timeout=1s"]).fails();
    etcd.resume();
    etcd.etcdctl(&["get", "/x", "--print-value-only"]).ok().stdout_has("2");

    let dir = etcd.dir().to_path_buf();
    drop(etcd);
    assert!(!alive(pid), "etcd {pid} survived the drop");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_paused_etcd_is_killed_on_drop_too() {
    require_etcd!();
    require_root();
    let etcd = Etcd::start("etcd_paused_drop");
    let pid = etcd.pid();
    etcd.pause();
    drop(etcd);
    assert!(!alive(pid));
}

#[test]
fn etcd_starts_in_a_namespace_the_caller_made() {
    require_etcd!();
    require_root();
    // A netlab-like key-value host: the caller's namespace with an underlay address.
    let kv = FakeHost::new("etcd_in_kv_host", Path::new("/bin/false"));
    kv.sh_ok(
        "ip link add ul0 type veth peer name ul1 && ip addr add 203.0.113.2/24 dev ul0 && \
         ip link set ul0 up && ip link set ul1 up",
    );
    let netns = format!("/proc/{}/ns/net", kv.holder_pid());
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
    let etcd = Etcd::start_in("etcd_in_kv_host", Path::new(&netns), ip);
    assert_eq!(etcd.endpoint(), "etcd://203.0.113.2:2379");
    assert_eq!(etcd.netns_inode(), kv.netns_inode());
    assert_eq!(ns_inode(&etcd.pid().to_string(), "net"), Some(kv.netns_inode()));
    etcd.etcdctl(&["put", "/k", "v"]).ok();
    // Processes of the kv host see it.
    kv.sh_ok("ETCDCTL_API=3 etcdctl --endpoints http://203.0.113.2:2379 get /k | grep -qx v");
    let pid = etcd.pid();
    drop(etcd);
    assert!(!alive(pid));
    // The caller's namespace and its processes are left alone.
    assert!(alive(kv.holder_pid()));
    kv.sh_ok("ip addr show ul0 | grep -q 203.0.113.2");
}

#[test]
fn etcd_serves_its_v2_api_only_when_asked() {
    require_etcd!();
    require_root();
    let kv = FakeHost::new("etcd_v2_api", Path::new("/bin/false"));
    kv.sh_ok(
        "ip link add ul0 type veth peer name ul1 && ip addr add 203.0.113.2/24 dev ul0 && \
         ip link set ul0 up && ip link set ul1 up",
    );
    let netns = format!("/proc/{}/ns/net", kv.holder_pid());
    let ip = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 2));
    // Where libkv (Docker 20.10's --cluster-store) keeps its keys: /v2/keys.
    let v2 = "busybox timeout 5 busybox wget -q -O- http://203.0.113.2:2379/v2/keys/";
    let etcd = Etcd::start_in("etcd_v2_api", Path::new(&netns), ip);
    let out = kv.sh(v2);
    assert!(!out.status.success(), "the v2 API answered without --enable-v2");
    drop(etcd);
    let etcd = Etcd::start_in_v2("etcd_v2_api", Path::new(&netns), ip);
    let dir = kv.sh_ok(v2);
    assert!(dir.contains(r#""action":"get""#), "{dir}");
    // The v3 API is there too.
    etcd.etcdctl(&["put", "/k", "v"]).ok();
}

#[test]
#[should_panic(expected = "is the host's network namespace")]
fn etcd_refuses_the_hosts_namespace() {
    // Refused before etcd is looked for: no etcd needed.
    require_root();
    let _ =
        Etcd::start_in("etcd_host_ns", Path::new("/proc/self/ns/net"), Ipv4Addr::LOCALHOST.into());
}

/// A TLS etcd: its certificates are made in its directory, it serves only `https://` and
/// only to clients whose certificate its CA signed; the fixture's own calls (health wait,
/// etcdctl) use a trusted client's files; a second CA's files are refused both ways; every
/// refused handshake is in etcd's log; everything goes on drop.
#[test]
fn a_tls_etcd_requires_client_certificates_its_ca_signed() {
    require_etcd!(tls);
    require_root();
    let t0 = Instant::now();
    let etcd = Etcd::start_tls("etcd_tls");
    eprintln!("TLS etcd (certificates included) healthy after {:?}", t0.elapsed());
    assert!(etcd.is_tls());
    assert_eq!(etcd.endpoint(), "etcd://127.0.0.1:2379");
    assert_eq!(etcd.client_url(), "https://127.0.0.1:2379");
    let certs = etcd.certs().clone();
    for p in [&certs.ca, &certs.cert, &certs.key] {
        assert!(p.starts_with(etcd.dir()) && p.is_file(), "{}", p.display());
    }
    let [ca, cert, key] = certs.store_opts();
    assert_eq!(ca, format!("kv.cacertfile={}", certs.ca.display()));
    assert!(cert.starts_with("kv.certfile=/tmp/") && key.starts_with("kv.keyfile=/tmp/"));
    assert_eq!(certs.store_flags().len(), 6);
    // The server certificate names etcd's address and chains to the CA; openssl agrees.
    let tls = etcd.dir().join("tls");
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName,extendedKeyUsage", "-in"])
        .arg(tls.join("server.pem"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("IP Address:127.0.0.1") && text.contains("TLS Web Server"), "{text}");

    etcd.etcdctl(&["put", "/x", "1"]).ok();
    etcd.etcdctl(&["get", "/x", "--print-value-only"]).ok().stdout_has("1");
    assert!(etcd.rejected_connections().is_empty(), "{:?}", etcd.rejected_connections());

    // Plain HTTP reaches the port and gets nothing.
    let plain = etcd.run_in_netns(|| {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect("127.0.0.1:2379").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET /health HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    assert!(!plain.contains("health"), "{plain}");

    let quick = ["--dial-timeout=1s", "--command-timeout=2s", "get", "/x"];
    // Only the CA: etcd wants a client certificate.
    let ca_only = vec![format!("--cacert={}", certs.ca.display())];
    etcd.etcdctl_with(&ca_only, &quick).fails();
    // A client certificate another CA signed: etcd does not trust it.
    let other = etcd.untrusted_certs("other");
    assert_ne!(std::fs::read(&other.ca).unwrap(), std::fs::read(&certs.ca).unwrap());
    let foreign_client = vec![
        format!("--cacert={}", certs.ca.display()),
        format!("--cert={}", other.cert.display()),
        format!("--key={}", other.key.display()),
    ];
    etcd.etcdctl_with(&foreign_client, &quick).fails();
    // The other CA as the trust anchor: the client refuses etcd.
    let wrong_ca = vec![
        format!("--cacert={}", other.ca.display()),
        format!("--cert={}", certs.cert.display()),
        format!("--key={}", certs.key.display()),
    ];
    etcd.etcdctl_with(&wrong_ca, &quick).fails();
    let rejected = etcd.rejected_connections();
    eprintln!("rejected: {rejected:#?}");
    let has = |what: &str| rejected.iter().any(|r| r.starts_with("127.0.0.1:") && r.contains(what));
    assert!(has("tls: first record does not look like a TLS handshake"), "{rejected:?}");
    assert!(has("tls: client didn't provide a certificate"), "{rejected:?}");
    assert!(
        has("failed to verify client certificate: x509: certificate signed by unknown authority"),
        "{rejected:?}"
    );
    // (etcdctl says only "context deadline exceeded"; etcd saw its alert.)
    assert!(has("remote error: tls: bad certificate"), "{rejected:?}");
    // The trusted client still gets in.
    etcd.etcdctl(&["get", "/x", "--print-value-only"]).ok().stdout_has("1");

    let (pid, dir) = (etcd.pid(), etcd.dir().to_path_buf());
    drop(etcd);
    assert!(!alive(pid), "etcd {pid} survived the drop");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
#[should_panic(expected = "does not serve TLS")]
fn a_plain_etcd_has_no_certificates() {
    require_etcd!();
    require_root();
    let etcd = Etcd::start("etcd_plain_certs");
    assert_eq!(etcd.client_url(), "http://127.0.0.1:2379");
    let _ = etcd.certs();
}
