//! End-to-end: the embedded DNS resolver (127.0.0.11) on user-defined networks, the
//! generated `/etc/resolv.conf` and `/etc/hosts`, and legacy links on the default bridge
//! (issue 5). Queries are real: a compiled client sends them from inside the container's
//! network namespace (and busybox `nslookup` from inside the container itself), and the
//! fake host's upstream resolver is a neighbour namespace that logs every query it gets.
//! Every negative check has a positive control in the same topology, and every test ends
//! with a leak audit.

mod common;
mod dns_support;

use common::{assert_same_as, exec_ok, host, inspect, ip_of, sleeper, wait_until};
use cove_testkit::{FakeHost, Neighbour};
use dns_support::{a_of, ask, ask_tcp, random_label, Upstream, EXT_ANSWER, RESOLVER};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// A fake host with the daemon, an upstream resolver neighbour on 198.51.100.2 and .3
/// (both logging), and the host's resolv.conf naming a loopback server with nothing
/// behind it (tried first from the daemon's namespace, refused at once) and 198.51.100.2.
fn dns_host(test: &str) -> (FakeHost, Neighbour, Upstream) {
    let h = host(test);
    let nb = h.add_neighbour("upstream", false);
    nb.sh_ok("ip addr add 198.51.100.3/24 dev eth0");
    let up = Upstream::start(&nb, &["198.51.100.2", "198.51.100.3"]);
    h.set_resolv_conf("nameserver 127.0.0.53\nnameserver 198.51.100.2\n");
    (h, nb, up)
}

/// `cove exec <c> cat <path>`.
fn cat(h: &FakeHost, c: &str, path: &str) -> String {
    exec_ok(h, c, &["cat", path])
}

#[test]
fn names_aliases_short_id_hostname_ptr_and_round_robin_per_network() {
    let (h, _nb, up) = dns_host("names_aliases_short_id_hostname_ptr_and_round_robin_per_network");
    let baseline = h.snapshot();
    h.cove(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.53.1.0/24",
        "--subnet",
        "fd53:1::/64",
        "n1",
    ])
    .ok();
    h.cove(&["network", "create", "--subnet", "10.53.2.0/24", "n2"]).ok();
    sleeper(&h, "web", &["--network", "n1", "--network-alias", "www", "--hostname", "webhost"]);
    sleeper(&h, "web2", &["--network", "n1", "--network-alias", "www"]);
    sleeper(&h, "other", &["--network", "n2"]);
    sleeper(&h, "client", &["--network", "n1"]);
    sleeper(&h, "client2", &["--network", "n2"]);
    let web = ip_of(&h, "web", "n1");
    let web2 = ip_of(&h, "web2", "n1");
    let web6 = inspect(&h, &["inspect", "web"])["NetworkSettings"]["Networks"]["n1"]
        ["GlobalIPv6Address"]
        .as_str()
        .expect("web has an IPv6 address")
        .to_string();
    let web_id = inspect(&h, &["inspect", "web"])["Id"].as_str().unwrap()[..12].to_string();

    // resolv.conf points at the embedded resolver, with Docker's ndots:0.
    let rc = cat(&h, "client", "/etc/resolv.conf");
    assert!(rc.contains("nameserver 127.0.0.11\n"), "{rc}");
    assert!(rc.contains("options ndots:0"), "{rc}");
    assert!(!rc.contains("198.51.100.2"), "upstreams belong to the resolver, not the file: {rc}");

    // Name, alias, short id, hostname, `<name>.<network>`; A and AAAA.
    assert_eq!(a_of(&h, "client", "web"), [web.as_str()]);
    assert_eq!(a_of(&h, "client", "WEB"), [web.as_str()], "names are case-insensitive");
    assert_eq!(a_of(&h, "client", &web_id), [web.as_str()]);
    assert_eq!(a_of(&h, "client", "webhost"), [web.as_str()]);
    assert_eq!(a_of(&h, "client", "web.n1"), [web.as_str()]);
    let aaaa = ask(&h, "client", "web", RecordType::AAAA);
    assert_eq!(aaaa.sorted(), [web6.as_str()], "{aaaa:?}");
    // Round robin: both holders of the shared alias, first one rotating.
    let mut both = vec![web.clone(), web2.clone()];
    both.sort();
    let first = ask(&h, "client", "www", RecordType::A);
    assert_eq!(first.sorted(), both);
    let second = ask(&h, "client", "www", RecordType::A);
    assert_eq!(second.sorted(), both);
    assert_ne!(first.addrs[0], second.addrs[0], "no rotation: {first:?} {second:?}");
    // TCP answers the same.
    assert_eq!(ask_tcp(&h, "client", "web", RecordType::A).sorted(), [web.as_str()]);
    // PTR for IPv4 and IPv6 container addresses.
    let rev4: String = web.split('.').rev().collect::<Vec<_>>().join(".") + ".in-addr.arpa";
    let ptr = ask(&h, "client", &rev4, RecordType::PTR);
    assert_eq!(ptr.names, ["web.n1."], "{ptr:?}");
    let v6: std::net::Ipv6Addr = web6.parse().unwrap();
    let nibbles: String = v6
        .octets()
        .iter()
        .rev()
        .map(|b| format!("{:x}.{:x}.", b & 0xf, b >> 4))
        .collect::<String>()
        + "ip6.arpa";
    assert_eq!(ask(&h, "client", &nibbles, RecordType::PTR).names, ["web.n1."]);

    // Scoping: `other` exists only on n2. Positive control: client2 (on n2) resolves it;
    // client (on n1) does not get its address: the name is not local there, so it goes
    // upstream (the log proves the query was not answered from the table).
    let other = ip_of(&h, "other", "n2");
    assert_eq!(a_of(&h, "client2", "other"), [other.as_str()]);
    let r = ask(&h, "client", "other", RecordType::A);
    assert_eq!(r.rcode, ResponseCode::NXDomain, "{r:?}");
    assert!(r.addrs.is_empty());
    assert!(up.saw("other. A"), "the non-local name did not reach the upstream: {:?}", up.log());
    assert!(!up.saw("web."), "a local name was forwarded: {:?}", up.log());

    // A real client inside the container: busybox nslookup through resolv.conf.
    let out = exec_ok(&h, "client", &["nslookup", "web"]);
    assert!(out.contains(&web), "nslookup web:\n{out}");
    // A container sharing client's stack shares its resolver and its resolv.conf.
    sleeper(&h, "side", &["--network", "container:client"]);
    assert!(cat(&h, "side", "/etc/resolv.conf").contains("nameserver 127.0.0.11\n"));
    let out = exec_ok(&h, "side", &["nslookup", "webhost"]);
    assert!(out.contains(&web), "nslookup webhost from side:\n{out}");
    h.cove(&["rm", "-f", "side"]).ok();

    for c in ["web", "web2", "other", "client", "client2"] {
        h.cove(&["rm", "-f", c]).ok();
    }
    h.cove(&["network", "rm", "n1", "n2"]).ok();
    assert_same_as(&h, &baseline, "after removing everything");
}

#[test]
fn names_follow_start_stop_connect_and_disconnect() {
    let (h, _nb, _up) = dns_host("names_follow_start_stop_connect_and_disconnect");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.53.3.0/24", "n1"]).ok();
    h.cove(&["network", "create", "--subnet", "10.53.4.0/24", "n2"]).ok();
    sleeper(&h, "client", &["--network", "n1"]);
    sleeper(&h, "web", &["--network", "n1"]);
    sleeper(&h, "db", &["--network", "n2"]);
    let web = ip_of(&h, "web", "n1");
    assert_eq!(a_of(&h, "client", "web"), [web.as_str()]);

    // Stop: gone at once (no stale answer); start again with another address (its old
    // one taken meanwhile): the new address only.
    h.cove(&["stop", "-t", "0", "web"]).ok();
    assert!(a_of(&h, "client", "web").is_empty(), "stale answer after stop");
    sleeper(&h, "squatter", &["--network", "n1", "--ip", &web]);
    h.cove(&["start", "web"]).ok();
    let web_new = ip_of(&h, "web", "n1");
    assert_ne!(web_new, web);
    assert_eq!(a_of(&h, "client", "web"), [web_new], "after start");
    assert_eq!(a_of(&h, "client", "squatter"), [web.as_str()]);
    h.cove(&["rm", "-f", "squatter"]).ok();
    // The container ends without `stop` (killed, seen by its monitor): gone too.
    h.cove(&["kill", "web"]).ok();
    wait_until("web exited", 20, || inspect(&h, &["inspect", "web"])["State"]["Running"] == false);
    assert!(a_of(&h, "client", "web").is_empty(), "stale answer after exit");

    // Connect with an alias: db (on n2) appears on n1 under its name and the alias;
    // disconnect: both gone. Positive control first: not resolvable before.
    assert!(a_of(&h, "client", "db").is_empty());
    h.cove(&["network", "connect", "--alias", "database", "n1", "db"]).ok();
    let db1 = ip_of(&h, "db", "n1");
    assert_eq!(a_of(&h, "client", "db"), [db1.as_str()]);
    assert_eq!(a_of(&h, "client", "database"), [db1.as_str()]);
    h.cove(&["network", "disconnect", "n1", "db"]).ok();
    assert!(a_of(&h, "client", "db").is_empty(), "stale answer after disconnect");
    assert!(a_of(&h, "client", "database").is_empty(), "stale alias after disconnect");

    // The client itself joins n2: it now sees db there, and loses it when it leaves.
    h.cove(&["network", "connect", "n2", "client"]).ok();
    assert_eq!(a_of(&h, "client", "db"), [ip_of(&h, "db", "n2")]);
    h.cove(&["network", "disconnect", "n2", "client"]).ok();
    assert!(a_of(&h, "client", "db").is_empty());

    // A container started on the default bridge and connected to n1 gets the resolver
    // with the network (Docker rebuilds its resolv.conf), and loses it again.
    sleeper(&h, "late", &[]);
    assert!(!cat(&h, "late", "/etc/resolv.conf").contains("127.0.0.11"));
    h.cove(&["network", "connect", "n1", "late"]).ok();
    assert!(cat(&h, "late", "/etc/resolv.conf").contains("nameserver 127.0.0.11"));
    assert_eq!(a_of(&h, "late", "client"), [ip_of(&h, "client", "n1")]);
    h.cove(&["network", "disconnect", "n1", "late"]).ok();
    assert!(!cat(&h, "late", "/etc/resolv.conf").contains("127.0.0.11"));

    for c in ["client", "web", "db", "late"] {
        h.cove(&["rm", "-f", c]).ok();
    }
    h.cove(&["network", "rm", "n1", "n2"]).ok();
    assert_same_as(&h, &baseline, "after removing everything");
}

#[test]
fn forwarding_goes_upstream_except_from_internal_networks_and_dns_overrides() {
    let (h, _nb, up) =
        dns_host("forwarding_goes_upstream_except_from_internal_networks_and_dns_overrides");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.53.5.0/24", "pub"]).ok();
    h.cove(&["network", "create", "--internal", "--subnet", "10.53.6.0/24", "int"]).ok();
    sleeper(&h, "normal", &["--network", "pub"]);
    sleeper(&h, "inner", &["--network", "int"]);
    sleeper(&h, "peer", &["--network", "int"]);

    // Positive control: a normal container's external name is answered by the upstream,
    // over UDP and over TCP, and the upstream logged both.
    let name = random_label("ext-pos-");
    let r = ask(&h, "normal", &format!("{name}.example"), RecordType::A);
    assert_eq!(r.sorted(), [EXT_ANSWER], "{r:?}");
    assert!(up.saw(&format!("udp 198.51.100.2 {name}.example. A")), "{:?}", up.log());
    let tname = random_label("ext-tcp-");
    let r = ask_tcp(&h, "normal", &format!("{tname}.example"), RecordType::A);
    assert_eq!(r.sorted(), [EXT_ANSWER], "{r:?}");
    assert!(up.saw(&format!("tcp 198.51.100.2 {tname}.example.")), "{:?}", up.log());
    // A forwarded answer too large for UDP (no EDNS: 512 bytes) comes back truncated;
    // over TCP it comes back whole.
    let big = random_label("ext-big-");
    let r = ask(&h, "normal", &format!("{big}.example"), RecordType::A);
    assert!(r.truncated, "60 addresses over UDP without TC: {r:?}");
    let r = ask_tcp(&h, "normal", &format!("{big}.example"), RecordType::A);
    assert_eq!((r.truncated, r.addrs.len()), (false, 60), "{r:?}");
    // (The dead loopback server first in the host's list cost no timeout: refused at
    // once in the daemon's namespace, the next one answered.)

    // Internal network (CVE-2024-29018): no answer from outside, and the query never
    // leaves the host; local names still resolve.
    let secret = random_label("ext-leak-");
    let r = ask(&h, "inner", &format!("{secret}.example"), RecordType::A);
    assert_eq!(r.rcode, ResponseCode::ServFail, "{r:?}");
    let r = ask_tcp(&h, "inner", &format!("{secret}.example"), RecordType::A);
    assert_eq!(r.rcode, ResponseCode::ServFail, "{r:?}");
    assert_eq!(a_of(&h, "inner", "peer"), [ip_of(&h, "peer", "int")]);
    // Same-run positive control after the negative: the upstream still logs others.
    let after = random_label("ext-after-");
    assert_eq!(a_of(&h, "normal", &format!("{after}.example")), [EXT_ANSWER]);
    assert!(up.saw(&after), "{:?}", up.log());
    assert!(!up.saw(&secret), "an internal container's query left the host: {:?}", up.log());

    // `--dns` overrides the host's servers as the resolver's upstream (and resolv.conf
    // still names 127.0.0.11, as Docker writes it).
    sleeper(&h, "custom", &["--network", "pub", "--dns", "198.51.100.3"]);
    assert!(cat(&h, "custom", "/etc/resolv.conf").contains("nameserver 127.0.0.11\n"));
    let over = random_label("ext-over-");
    assert_eq!(a_of(&h, "custom", &format!("{over}.example")), [EXT_ANSWER]);
    assert!(up.saw(&format!("udp 198.51.100.3 {over}")), "{:?}", up.log());
    assert!(!up.saw(&format!("198.51.100.2 {over}")), "{:?}", up.log());

    // A container on an internal and a normal network may forward; the default bridge
    // counts as a way out too.
    h.cove(&["network", "connect", "pub", "peer"]).ok();
    let mixed = random_label("ext-mixed-");
    assert_eq!(a_of(&h, "peer", &format!("{mixed}.example")), [EXT_ANSWER]);
    sleeper(&h, "bridged", &[]);
    h.cove(&["network", "connect", "int", "bridged"]).ok();
    let via_bridge = random_label("ext-bridged-");
    assert_eq!(a_of(&h, "bridged", &format!("{via_bridge}.example")), [EXT_ANSWER]);
    assert_eq!(a_of(&h, "bridged", "inner"), [ip_of(&h, "inner", "int")]);

    for c in ["normal", "inner", "peer", "custom", "bridged"] {
        h.cove(&["rm", "-f", c]).ok();
    }
    h.cove(&["network", "rm", "pub", "int"]).ok();
    assert_same_as(&h, &baseline, "after removing everything");
}

/// Docker forwards to the servers of the host's resolv.conf from the host's namespace, so a
/// host whose only server is systemd-resolved's stub (127.0.0.53) works: so does Cove,
/// whose resolver forwards from the daemon's namespace. Never to 127.0.0.11, never from
/// an internal network, and a loopback `--dns` (a server inside the container, for Docker)
/// is not sent to the host's loopback.
#[test]
fn host_loopback_upstream_is_used_from_the_daemon_namespace() {
    let h = host("host_loopback_upstream_is_used_from_the_daemon_namespace");
    // Two logging servers on the fake host's own loopback: the stub every query may go to,
    // and one on the resolver's own address, which must never get anything.
    let stub = Upstream::start_on_host(&h, &["127.0.0.53", "127.0.0.11"]);
    h.set_resolv_conf("nameserver 127.0.0.11\nnameserver 127.0.0.53\n");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.53.20.0/24", "pub"]).ok();
    h.cove(&["network", "create", "--internal", "--subnet", "10.53.21.0/24", "int"]).ok();
    sleeper(&h, "normal", &["--network", "pub"]);
    sleeper(&h, "inner", &["--network", "int"]);
    sleeper(&h, "own", &["--network", "pub", "--dns", "127.0.0.53"]);

    // The container's file names only the embedded resolver, never the host's loopback.
    let rc = cat(&h, "normal", "/etc/resolv.conf");
    assert!(rc.contains("nameserver 127.0.0.11\n") && !rc.contains("127.0.0.53"), "{rc}");
    // Positive proof: answered by the host's loopback stub, which logged it (UDP and TCP).
    let name = random_label("ext-stub-");
    let r = ask(&h, "normal", &format!("{name}.example"), RecordType::A);
    assert_eq!((r.rcode, r.sorted()), (ResponseCode::NoError, vec![EXT_ANSWER.to_string()]));
    assert!(stub.saw(&format!("udp 127.0.0.53 {name}.example. A")), "{:?}", stub.log());
    let tname = random_label("ext-stub-tcp-");
    assert_eq!(
        ask_tcp(&h, "normal", &format!("{tname}.example"), RecordType::A).sorted(),
        [EXT_ANSWER]
    );
    assert!(stub.saw(&format!("tcp 127.0.0.53 {tname}.example.")), "{:?}", stub.log());
    // Local names are still answered locally.
    assert_eq!(a_of(&h, "normal", "own"), [ip_of(&h, "own", "pub")]);
    assert!(!stub.saw("own."), "a local name went upstream: {:?}", stub.log());

    // Internal network: SERVFAIL, nothing reaches the host's stub.
    let secret = random_label("ext-stub-leak-");
    let r = ask(&h, "inner", &format!("{secret}.example"), RecordType::A);
    assert_eq!(r.rcode, ResponseCode::ServFail, "{r:?}");
    // `--dns 127.0.0.53`: for Docker a server inside the container (nothing there here);
    // Cove skips it rather than send the query to the host's loopback.
    let mine = random_label("ext-stub-own-");
    let r = ask(&h, "own", &format!("{mine}.example"), RecordType::A);
    assert_eq!(r.rcode, ResponseCode::ServFail, "{r:?}");
    // Same-run positive control after the negatives.
    let after = random_label("ext-stub-after-");
    assert_eq!(a_of(&h, "normal", &format!("{after}.example")), [EXT_ANSWER]);
    assert!(stub.saw(&after), "{:?}", stub.log());
    assert!(!stub.saw(&secret), "an internal container's query left: {:?}", stub.log());
    assert!(!stub.saw(&mine), "a loopback --dns went to the host: {:?}", stub.log());
    // The host's 127.0.0.11 (listed first) never got a query: it is the resolver's address.
    let own_addr: Vec<String> =
        stub.log().into_iter().filter(|l| l.contains(" 127.0.0.11 ")).collect();
    assert!(own_addr.is_empty(), "forwarded to 127.0.0.11: {own_addr:?}");

    for c in ["normal", "inner", "own"] {
        h.cove(&["rm", "-f", c]).ok();
    }
    h.cove(&["network", "rm", "pub", "int"]).ok();
    assert_same_as(&h, &baseline, "after removing everything");
    drop(stub);
}

#[test]
fn garbage_and_idle_tcp_clients_do_not_stop_answers() {
    let (h, _nb, _up) = dns_host("garbage_and_idle_tcp_clients_do_not_stop_answers");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.53.7.0/24", "n1"]).ok();
    sleeper(&h, "web", &["--network", "n1", "--ip", "10.53.7.10"]);
    sleeper(&h, "bad", &["--network", "n1"]);
    sleeper(&h, "good", &["--network", "n1"]);
    assert_eq!(a_of(&h, "good", "web"), ["10.53.7.10"]);

    // Garbage over UDP from `bad`: random bytes, an empty datagram, a header alone, a
    // response; then `bad` itself still gets answers.
    common::in_container_netns(&h, "bad", || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut junk = [0u8; 300];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut junk))
            .unwrap();
        for msg in [&junk[..], &[][..], &junk[..12], &[0x12, 0x34, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0]]
        {
            s.send_to(msg, RESOLVER).unwrap();
        }
    });
    assert_eq!(a_of(&h, "bad", "web"), ["10.53.7.10"]);

    // A flood from `bad` (local and forwarded names, replies never read) does not stop
    // answers to `good`, nor to `bad` afterwards.
    common::in_container_netns(&h, "bad", || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for i in 0..20_000u32 {
            let name =
                if i % 2 == 0 { "web".to_string() } else { format!("ext-flood-{i}.example") };
            let (_, q) = dns_support::query(&name, RecordType::A);
            let _ = s.send_to(&q, RESOLVER);
        }
    });
    let t = std::time::Instant::now();
    assert_eq!(a_of(&h, "good", "web"), ["10.53.7.10"]);
    let ext = random_label("ext-during-");
    assert_eq!(a_of(&h, "good", &format!("{ext}.example")), [EXT_ANSWER]);
    assert!(t.elapsed() < std::time::Duration::from_secs(4), "answers waited {:?}", t.elapsed());
    wait_until("bad is answered again", 10, || {
        common::in_container_netns(&h, "bad", || {
            dns_support::udp_query(RESOLVER, "web", RecordType::A, 1)
        })
        .is_ok_and(|a| a.sorted() == ["10.53.7.10"])
    });

    // Idle TCP: `bad` opens connections and sends nothing (and one half a query); `good`
    // is answered at once over UDP and TCP meanwhile.
    let ns = common::container_netns(&h, "bad");
    let held: Vec<std::net::TcpStream> = std::thread::scope(|s| {
        s.spawn(|| {
            use std::os::fd::AsRawFd;
            // SAFETY: setns(2) on an open namespace descriptor, for this thread only.
            assert_eq!(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
            let mut v: Vec<std::net::TcpStream> =
                (0..20).map(|_| std::net::TcpStream::connect(RESOLVER).unwrap()).collect();
            std::io::Write::write_all(&mut v[0], &[0, 100, 1, 2, 3]).unwrap();
            v
        })
        .join()
        .unwrap()
    });
    // An open namespace file would keep bad's namespace (and its veth) alive.
    drop(ns);
    let t = std::time::Instant::now();
    assert_eq!(a_of(&h, "good", "web"), ["10.53.7.10"]);
    assert_eq!(ask_tcp(&h, "good", "web", RecordType::A).sorted(), ["10.53.7.10"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(4), "answers waited {:?}", t.elapsed());
    drop(held);

    for c in ["web", "bad", "good"] {
        h.cove(&["rm", "-f", c]).ok();
    }
    h.cove(&["network", "rm", "n1"]).ok();
    assert_same_as(&h, &baseline, "after removing everything");
}

#[test]
fn answers_come_back_after_a_daemon_restart() {
    let (mut h, _nb, up) = dns_host("answers_come_back_after_a_daemon_restart");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.53.8.0/24", "n1"]).ok();
    h.cove(&["network", "create", "--internal", "--subnet", "10.53.9.0/24", "int"]).ok();
    sleeper(&h, "web", &["--network", "n1", "--network-alias", "www"]);
    sleeper(&h, "client", &["--network", "n1"]);
    sleeper(&h, "inner", &["--network", "int"]);
    let web = ip_of(&h, "web", "n1");
    assert_eq!(a_of(&h, "client", "www"), [web.as_str()]);
    let pid = common::container_pid(&h, "client");

    let status = h.stop_daemon().expect("the daemon was running");
    assert!(status.success(), "{status:?}");
    h.start_daemon(&[]);
    assert_eq!(common::container_pid(&h, "client"), pid, "the container was recreated");
    assert_eq!(a_of(&h, "client", "www"), [web.as_str()]);
    assert_eq!(a_of(&h, "client", "web"), [web.as_str()]);
    let ext = random_label("ext-restart-");
    assert_eq!(a_of(&h, "client", &format!("{ext}.example")), [EXT_ANSWER]);
    // The forwarding policy survived too: the internal container still forwards nothing.
    let secret = random_label("ext-restart-leak-");
    assert_eq!(ask(&h, "inner", &secret, RecordType::A).rcode, ResponseCode::ServFail);
    assert!(up.saw(&ext) && !up.saw(&secret), "{:?}", up.log());
    // A crash (SIGKILL) and a start: the same again.
    h.kill_daemon();
    h.start_daemon(&[]);
    assert_eq!(common::container_pid(&h, "client"), pid, "the container was recreated");
    assert_eq!(a_of(&h, "client", "www"), [web.as_str()]);
    // Changes after the restart are seen.
    h.cove(&["stop", "-t", "0", "web"]).ok();
    assert!(a_of(&h, "client", "web").is_empty());
    h.cove(&["start", "web"]).ok();
    assert_eq!(a_of(&h, "client", "www"), [ip_of(&h, "web", "n1")]);

    for c in ["web", "client", "inner"] {
        h.cove(&["rm", "-f", c]).ok();
    }
    h.cove(&["network", "rm", "n1", "int"]).ok();
    assert_same_as(&h, &baseline, "after removing everything");
}

#[test]
fn default_bridge_has_no_resolver_and_links_give_hosts_and_env() {
    let (h, _nb, _up) = dns_host("default_bridge_has_no_resolver_and_links_give_hosts_and_env");
    let baseline = h.snapshot();
    h.cove(&[
        "run",
        "-d",
        "--name",
        "db",
        "--hostname",
        "dbhost",
        "--expose",
        "5432",
        "-e",
        "PASSWORD=s3cret",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    h.cove(&[
        "run",
        "-d",
        "--name",
        "web",
        "--link",
        "db:dbalias",
        "--add-host",
        "gw:host-gateway",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    let db = ip_of(&h, "db", "bridge");

    // No embedded resolver on the default bridge: the host's servers in resolv.conf and
    // nothing on 127.0.0.11:53 (positive control: a user-network container has one).
    let rc = cat(&h, "web", "/etc/resolv.conf");
    assert!(rc.contains("nameserver 198.51.100.2") && !rc.contains("127.0.0.11"), "{rc}");
    assert!(!rc.contains("127.0.0.53"), "loopback servers are unusable in a container: {rc}");
    let r = common::in_container_netns(&h, "web", || {
        dns_support::udp_query(RESOLVER, "db", RecordType::A, 2)
    });
    assert!(r.is_err(), "something answers on 127.0.0.11 on the default bridge: {r:?}");
    h.cove(&["network", "create", "--subnet", "10.53.10.0/24", "n1"]).ok();
    sleeper(&h, "ctl", &["--network", "n1"]);
    assert_eq!(a_of(&h, "ctl", "ctl"), [ip_of(&h, "ctl", "n1")]);

    // Links: the hosts entry and Docker's variables.
    let hosts = cat(&h, "web", "/etc/hosts");
    assert!(hosts.contains(&format!("{db}\tdbalias dbhost db\n")), "{hosts}");
    let gw = inspect(&h, &["network", "inspect", "bridge"])["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .expect("the default bridge's gateway")
        .to_string();
    assert!(hosts.contains(&format!("{gw}\tgw\n")), "host-gateway:\n{hosts}");
    let links = inspect(&h, &["inspect", "web"])["HostConfig"]["Links"].clone();
    assert_eq!(links, serde_json::json!(["/db:/web/dbalias"]), "Docker's form");
    let env = exec_ok(&h, "web", &["env"]);
    for want in [
        format!("DBALIAS_PORT=tcp://{db}:5432"),
        format!("DBALIAS_PORT_5432_TCP=tcp://{db}:5432"),
        format!("DBALIAS_PORT_5432_TCP_ADDR={db}"),
        "DBALIAS_PORT_5432_TCP_PORT=5432".to_string(),
        "DBALIAS_PORT_5432_TCP_PROTO=tcp".to_string(),
        "DBALIAS_NAME=/web/dbalias".to_string(),
        "DBALIAS_ENV_PASSWORD=s3cret".to_string(),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} missing from:\n{env}");
    }

    // The linked container restarts with another address: the linker's hosts follows.
    h.cove(&["stop", "-t", "0", "db"]).ok();
    sleeper(&h, "squatter", &[]);
    assert_eq!(ip_of(&h, "squatter", "bridge"), db, "the test needs db's old address taken");
    h.cove(&["start", "db"]).ok();
    let db_new = ip_of(&h, "db", "bridge");
    assert_ne!(db_new, db);
    let hosts = cat(&h, "web", "/etc/hosts");
    assert!(hosts.contains(&format!("{db_new}\tdbalias dbhost db\n")), "{hosts}");
    assert!(!hosts.contains(&format!("{db}\tdbalias")), "stale link entry:\n{hosts}");

    // Starting a linker whose linked container is not running is refused, and names it.
    h.cove(&["stop", "-t", "0", "web", "db"]).ok();
    let r = h.cove(&["start", "web"]);
    r.fails().stderr_has("db");
    h.cove(&["start", "db"]).ok();
    h.cove(&["start", "web"]).ok();

    // On a user-defined network a link is a DNS alias for the linker only.
    sleeper(&h, "api", &["--network", "n1"]);
    sleeper(&h, "front", &["--network", "n1", "--link", "api:backend"]);
    assert_eq!(a_of(&h, "front", "backend"), [ip_of(&h, "api", "n1")]);
    assert!(a_of(&h, "ctl", "backend").is_empty(), "the link alias leaked to others");
    // The linked container stops: no stale alias; it starts again: the alias is back.
    h.cove(&["stop", "-t", "0", "api"]).ok();
    assert!(a_of(&h, "front", "backend").is_empty(), "stale link alias");
    h.cove(&["start", "api"]).ok();
    assert_eq!(a_of(&h, "front", "backend"), [ip_of(&h, "api", "n1")]);

    for c in ["db", "web", "squatter", "ctl", "api", "front"] {
        h.cove(&["rm", "-f", c]).ok();
    }
    h.cove(&["network", "rm", "n1"]).ok();
    assert_same_as(&h, &baseline, "after removing everything");
}

#[test]
fn dns_flags_shape_the_files_and_bad_values_are_refused() {
    let (h, _nb, _up) = dns_host("dns_flags_shape_the_files_and_bad_values_are_refused");
    h.set_resolv_conf(
        "nameserver 198.51.100.2\nsearch corp.example\noptions edns0 ndots:3 timeout:2\n",
    );
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.53.11.0/24", "n1"]).ok();

    // User network, host settings: host search and options kept, ndots replaced by 0.
    sleeper(&h, "plain", &["--network", "n1"]);
    assert_eq!(
        cat(&h, "plain", "/etc/resolv.conf"),
        "search corp.example\nnameserver 127.0.0.11\noptions edns0 timeout:2 ndots:0\n"
    );
    // --dns-search / --dns-option replace them; a user ndots is kept.
    sleeper(
        &h,
        "tuned",
        &["--network", "n1", "--dns-search", "a.example", "--dns-option", "ndots:2"],
    );
    assert_eq!(
        cat(&h, "tuned", "/etc/resolv.conf"),
        "search a.example\nnameserver 127.0.0.11\noptions ndots:2\n"
    );
    // Default bridge: the servers themselves, --dns first.
    sleeper(&h, "legacy", &["--dns", "192.0.2.53", "--dns-search", "."]);
    let rc = cat(&h, "legacy", "/etc/resolv.conf");
    assert!(rc.contains("nameserver 192.0.2.53\n") && !rc.contains("search"), "{rc}");
    // --hostname/--domainname in /etc/hosts and the hostname.
    sleeper(&h, "named", &["--network", "n1", "--hostname", "h1", "--domainname", "example.org"]);
    let ip = ip_of(&h, "named", "n1");
    assert!(cat(&h, "named", "/etc/hosts").contains(&format!("{ip}\th1.example.org h1\n")));
    assert_eq!(exec_ok(&h, "named", &["hostname"]).trim(), "h1");

    // Bad input: 400/404 naming the problem, nothing created.
    let before = h.cove(&["ps", "-aq"]).stdout;
    for (args, needle) in [
        (vec!["--dns", "not-an-ip"], "not-an-ip"),
        (vec!["--dns-option", "ndots:lots"], "ndots:lots"),
        (vec!["--dns-search", "bad domain"], "bad domain"),
        (vec!["--link", "missing:alias"], "missing"),
        (vec!["--hostname", "bad host"], "bad host"),
    ] {
        let mut a = vec!["run", "-d", "--name", "bad"];
        a.extend(args);
        a.extend(["busybox", "true"]);
        h.cove(&a).fails().stderr_has(needle);
    }
    let (code, body) = h.api(
        "POST",
        "/containers/create?name=bad",
        Some(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"Dns":["x.y"]}}"#),
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = h.api(
        "POST",
        "/containers/create?name=bad",
        Some(r#"{"Image":"busybox","Cmd":["true"],"HostConfig":{"Links":["nope:n"]}}"#),
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("nope"), "{body}");
    assert_eq!(h.cove(&["ps", "-aq"]).stdout, before, "a refused create left a container");

    for c in ["plain", "tuned", "legacy", "named"] {
        h.cove(&["rm", "-f", c]).ok();
    }
    h.cove(&["network", "rm", "n1"]).ok();
    assert_same_as(&h, &baseline, "after removing everything");
}
