//! Overlay networks when things go wrong, across fake hosts of one netlab with a real
//! etcd (next-capabilities 1.(e)): the store down, a host crashed, a daemon crashed, the
//! control plane cut, no flooding, the MTU, global IPAM under contention and exhausted,
//! and a host rejoining at another address. Every negative check has a positive control
//! and proof that its probe arrived.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::multihost::{eventually, inspect, FLAGS};

/// Longer than a node's lease (10 s): a host cut that long has lost its lease and watch.
const NODE_TTL_PLUS: Duration = Duration::from_secs(11);

use cove_testkit::{require_etcd, require_root, Etcd, FakeHost, Frames, Netlab};

/// A netlab with `kv` running etcd and the fake hosts `h1`..`h<n>`, daemons not started
/// (so a test can change the underlay first). Field order: etcd goes before the lab.
struct Lab {
    etcd: Etcd,
    lab: Netlab,
}

impl Lab {
    fn new(test: &str, hosts: u8) -> Lab {
        let lab = Netlab::with_hosts(test, Path::new(env!("CARGO_BIN_EXE_cove")), hosts);
        let etcd = Etcd::start_in(test, &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
        Lab { etcd, lab }
    }

    /// Start the daemons of `hosts` in the cluster and import the test image there.
    fn start(&mut self, hosts: &[&str]) {
        self.lab.start_daemons(hosts, &FLAGS);
        for h in hosts {
            self.lab.host(h).import_busybox("bb");
        }
    }

    /// A netlab of `hosts` fake hosts, all of them started.
    fn started(test: &str, hosts: u8) -> Lab {
        let mut lab = Lab::new(test, hosts);
        let names: Vec<String> = (1..=hosts).map(|i| format!("h{i}")).collect();
        lab.start(&names.iter().map(String::as_str).collect::<Vec<_>>());
        lab
    }

    fn host(&self, name: &str) -> &FakeHost {
        self.lab.host(name)
    }

    /// Create the overlay network `name` on `on`; its id, once every other running host
    /// lists it.
    fn overlay(&self, on: &str, name: &str, subnet: &str) -> String {
        let id = self
            .host(on)
            .cove(&["network", "create", "-d", "overlay", "--subnet", subnet, name])
            .ok()
            .out()
            .to_string();
        for h in self.lab.host_names() {
            let h = self.host(&h);
            if h.daemon_pid().is_none() {
                continue;
            }
            assert!(
                eventually(5, || h.cove(&["network", "ls", "--no-trunc"]).stdout.contains(&id)),
                "{} never listed network {name}",
                h.name()
            );
        }
        id
    }

    /// etcd's keys under `prefix` (relative to `/cove/v1/`).
    fn keys(&self, prefix: &str) -> Vec<String> {
        let full = format!("/cove/v1/{prefix}");
        let out = self.etcd.etcdctl(&["get", "--prefix", &full, "--keys-only"]);
        out.ok();
        out.stdout.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    }
}

fn ip_of(h: &FakeHost, name: &str) -> String {
    inspect(h, name, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
}

fn mac_of(h: &FakeHost, name: &str) -> String {
    inspect(h, name, "{{range .NetworkSettings.Networks}}{{.MacAddress}}{{end}}")
}

/// `vx-<id12>`: the VXLAN device of network `id`.
fn vxlan(id: &str) -> String {
    format!("vx-{}", &id[..12])
}

/// `bridge fdb show dev <link>`.
fn fdb(h: &FakeHost, link: &str) -> String {
    h.sh_ok(&format!("bridge fdb show dev {link}"))
}

/// The forwarding entries `link` has for `mac`: (VXLAN destinations, static bridge entries).
fn fdb_of(h: &FakeHost, link: &str, mac: &str) -> (Vec<String>, usize) {
    let all = fdb(h, link);
    let lines: Vec<&str> = all.lines().filter(|l| l.starts_with(mac)).collect();
    let dsts = lines
        .iter()
        .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "dst").nth(1))
        .map(str::to_string)
        .collect();
    let statics = lines.iter().filter(|l| l.contains("master") && l.contains("static")).count();
    (dsts, statics)
}

/// Run a web server answering `hello-<name>` as container `name` on `network`.
fn web(h: &FakeHost, name: &str, network: &str) {
    let script = format!(
        "mkdir -p /www && echo hello-{name} > /www/index.html && exec httpd -f -p 80 -h /www"
    );
    h.cove(&["run", "-d", "--network", network, "--name", name, "bb", "sh", "-c", &script]).ok();
}

/// Run an idle container `name` on `network`.
fn idle(h: &FakeHost, name: &str, network: &str) {
    h.cove(&["run", "-d", "--network", network, "--name", name, "bb", "sleep", "600"]).ok();
}

/// Whether container `from` on `h` fetches `hello-<to>` from `http://<ip>/` (one try).
fn fetches(h: &FakeHost, from: &str, ip: &str, to: &str) -> bool {
    let out = h.cove(&["exec", from, "sh", "-c", &format!("timeout 3 wget -q -O- http://{ip}/")]);
    out.stdout.contains(&format!("hello-{to}"))
}

/// The line of `cove node ls` on `h` for the node at `addr`.
fn node_line(h: &FakeHost, addr: &str) -> Option<String> {
    let out = h.cove(&["node", "ls"]);
    out.ok();
    out.stdout.lines().find(|l| l.split_whitespace().any(|w| w == addr)).map(str::to_string)
}

// ---- 1.(e) 9: the store down --------------------------------------------------------------

/// With etcd stopped (SIGSTOP), global operations fail with 503 naming the store within
/// its deadline (5 s) and leave nothing behind once etcd is back, while local networks
/// and containers go on as if nothing happened: also while global operations wait for
/// the store, and while the host's cluster sync does.
#[test]
fn multihost_store_down_fails_global_operations_only() {
    require_root();
    require_etcd!();
    let lab = Lab::started("multihost_store_down", 2);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    // Positive control: with the store up, an overlay network is made and listed.
    lab.overlay("h1", "ov0", "10.0.8.0/24");
    h1.cove(&["create", "--network", "ov0", "--name", "o1", "bb", "sleep", "600"]).ok();
    h1.cove(&["network", "create", "-d", "bridge", "local"]).ok();
    idle(h1, "l1", "local");

    lab.etcd.pause();
    let quick = Duration::from_secs(2);
    let (global, start, slowest) = std::thread::scope(|s| {
        let create = s.spawn(|| {
            let t0 = Instant::now();
            let body =
                r#"{"Name":"y","Driver":"overlay","IPAM":{"Config":[{"Subnet":"10.0.7.0/24"}]}}"#;
            (h1.api("POST", "/networks/create", Some(body)), t0.elapsed())
        });
        let start = s.spawn(|| {
            let t0 = Instant::now();
            (h1.cove(&["start", "o1"]), t0.elapsed())
        });
        // Both are waiting for etcd now; a local release makes the host sync (and read
        // the stopped store) too.
        std::thread::sleep(Duration::from_millis(300));
        let mut slowest = Duration::ZERO;
        for args in [
            &["rm", "-f", "l1"][..],
            &["network", "create", "-d", "bridge", "x"],
            &["run", "-d", "--network", "x", "--name", "x1", "bb", "sleep", "600"],
            &["network", "create", "-d", "bridge", "x2"],
        ] {
            let t0 = Instant::now();
            h1.cove(args).ok();
            let took = t0.elapsed();
            assert!(took < quick, "cove {args:?} took {took:?} with etcd stopped");
            slowest = slowest.max(took);
        }
        (create.join().unwrap(), start.join().unwrap(), slowest)
    });
    lab.etcd.resume();
    let ((code, body), took) = global;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("etcd://203.0.113.2:2379") && body.contains("unreachable"), "{body}");
    // The store's deadline is 5 s; the spec allows 6 s; a margin for a loaded machine.
    assert!(took < Duration::from_secs(7), "the overlay create took {took:?}");
    let (out, took_start) = start;
    out.fails().stderr_has("etcd://203.0.113.2:2379").stderr_has("unreachable");
    assert!(took_start < Duration::from_secs(7), "the overlay start took {took_start:?}");
    eprintln!(
        "with etcd stopped: local operations at most {slowest:?}, overlay create refused in \
         {took:?}, overlay start in {took_start:?}"
    );

    // Nothing about y, in etcd or on either host, also after a full resync; o1 reserved
    // nothing.
    let names =
        |h: &FakeHost| h.cove(&["network", "ls", "--format", "{{.Name}}"]).ok().stdout.clone();
    assert!(names(h1).lines().any(|l| l == "x"), "x is missing");
    std::thread::sleep(Duration::from_secs(6));
    let dump = lab.etcd.etcdctl(&["get", "--prefix", "/cove/v1/"]).ok().stdout.clone();
    assert!(!dump.contains("\"y\"") && !dump.contains("10.0.7.0"), "etcd has y:\n{dump}");
    assert!(lab.keys("endpoints/").is_empty() && lab.keys("ipam/").is_empty(), "{dump}");
    for h in [h1, h2] {
        let ls = names(h);
        assert!(!ls.lines().any(|l| l == "y"), "{} lists y:\n{ls}", h.name());
        assert!(ls.lines().any(|l| l == "ov0"), "{} lost ov0:\n{ls}", h.name());
    }
    // And the cluster works again: y can be made, o1 started.
    lab.overlay("h2", "y", "10.0.7.0/24");
    h1.cove(&["start", "o1"]).ok();
}

// ---- 1.(e) 10: a host crashes -------------------------------------------------------------

/// `cove node ls` on a running node's host: its id (first column).
fn node_id(h: &FakeHost, addr: &str) -> String {
    let line = node_line(h, addr).unwrap_or_else(|| panic!("no node at {addr}"));
    line.split_whitespace().next().unwrap().to_string()
}

/// A crashed host is listed Down within its lease's TTL (10 s) + 2 s; its containers'
/// addresses stay reserved and its forwarding entries stay on the others until `node rm`,
/// which frees both within 2 s.
#[test]
fn multihost_node_failure_keeps_addresses_until_node_rm() {
    require_root();
    require_etcd!();
    let mut lab = Lab::started("multihost_node_failure", 3);
    // A /29: five addresses, so the host that stays must use all that are free.
    let id = lab.overlay("h1", "ov1", "10.0.6.0/29");
    let vx = vxlan(&id);
    idle(lab.host("h2"), "c2", "ov1");
    let (c2_ip, c2_mac) = (ip_of(lab.host("h2"), "c2"), mac_of(lab.host("h2"), "c2"));
    for h in ["h1", "h3"] {
        let h = lab.host(h);
        assert!(
            eventually(5, || fdb_of(h, &vx, &c2_mac).0 == ["203.0.113.12"]),
            "{} never programmed c2:\n{}",
            h.name(),
            fdb(h, &vx)
        );
    }
    let h2_id = node_id(lab.host("h1"), "203.0.113.12");
    assert!(node_line(lab.host("h1"), "203.0.113.12").unwrap().contains("Ready"));
    // A node that is up cannot be removed.
    lab.host("h1").cove(&["node", "rm", &h2_id]).fails().stderr_has("is up");

    let t0 = Instant::now();
    lab.lab.crash("h2", false);
    let h1 = lab.host("h1");
    let down = || node_line(h1, "203.0.113.12").is_some_and(|l| l.contains("Down"));
    assert!(
        eventually(12, down),
        "h2 not Down 12 s after its crash: {:?}",
        node_line(h1, "203.0.113.12")
    );
    eprintln!("h2 listed Down {:?} after its crash", t0.elapsed());

    // Its address stays reserved: h1 gets the four others, then none.
    for i in 1..=4 {
        idle(h1, &format!("a{i}"), "ov1");
        let ip = ip_of(h1, &format!("a{i}"));
        assert_ne!(ip, c2_ip, "h1 was given the address of h2's container");
    }
    h1.cove(&["run", "-d", "--network", "ov1", "--name", "a5", "bb", "sleep", "600"])
        .fails()
        .stderr_has("no available IPv4 addresses")
        // h2's address counts: four here and one there.
        .stderr_has("10.0.6.0/29 (5 in use, gateway 10.0.6.1)");
    // And peers keep forwarding to it (the data plane outlives the control plane).
    for h in ["h1", "h3"] {
        assert_eq!(fdb_of(lab.host(h), &vx, &c2_mac), (vec!["203.0.113.12".to_string()], 1));
    }

    h1.cove(&["node", "rm", &h2_id]).ok();
    let t0 = Instant::now();
    for h in ["h1", "h3"] {
        let h = lab.host(h);
        assert!(
            eventually(2, || fdb_of(h, &vx, &c2_mac) == (vec![], 0)),
            "{} kept h2's container in its forwarding table:\n{}",
            h.name(),
            fdb(h, &vx)
        );
        let neigh = h.sh_ok(&format!("ip neigh show dev {vx}"));
        assert!(!neigh.contains(&format!("{c2_ip} ")), "{neigh}");
    }
    eprintln!("h2's entries gone {:?} after node rm", t0.elapsed());
    assert!(node_line(h1, "203.0.113.12").is_none(), "h2 still listed");
    assert!(lab.keys(&format!("ipam/{id}/{c2_ip}")).is_empty(), "etcd keeps h2's address");
    // Its address is free again: the fifth container gets it.
    h1.cove(&["start", "a5"]).ok();
    assert_eq!(ip_of(h1, "a5"), c2_ip);
}

// ---- 1.(d): the daemon crashes, its containers do not --------------------------------------

/// Every line of `bridge fdb show dev <vx>` about `macs`, sorted.
fn fdb_lines(h: &FakeHost, vx: &str, macs: &[&str]) -> Vec<String> {
    let mut lines: Vec<String> = fdb(h, vx)
        .lines()
        .filter(|l| macs.iter().any(|m| l.starts_with(m)))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// kill -9 of one host's daemon leaves the data plane: traffic goes on, and once the
/// daemon is back every host has each remote container's entries exactly once.
#[test]
fn multihost_daemon_crash_keeps_traffic_and_entries() {
    require_root();
    require_etcd!();
    let mut lab = Lab::started("multihost_daemon_crash", 2);
    let id = lab.overlay("h1", "ov1", "10.0.5.0/24");
    let vx = vxlan(&id);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    idle(h1, "c1", "ov1");
    web(h2, "c2", "ov1");
    let (c1_mac, c2_ip, c2_mac) = (mac_of(h1, "c1"), ip_of(h2, "c2"), mac_of(h2, "c2"));
    assert!(eventually(5, || fetches(h1, "c1", &c2_ip, "c2")), "c1 never reached c2");
    let want = |dst: &str, mac: &str| {
        let mut v = vec![
            format!("{mac} master ov-{} static", &id[..12]),
            format!("{mac} dst {dst} self permanent"),
        ];
        v.sort();
        v
    };
    let macs = [c1_mac.as_str(), c2_mac.as_str()];
    let (on_h1, on_h2) = (fdb_lines(h1, &vx, &macs), fdb_lines(h2, &vx, &macs));
    assert_eq!(on_h1, want("203.0.113.12", &c2_mac), "{}", fdb(h1, &vx));
    assert_eq!(on_h2, want("203.0.113.11", &c1_mac), "{}", fdb(h2, &vx));

    lab.lab.host_mut("h2").kill_daemon();
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    for _ in 0..3 {
        assert!(fetches(h1, "c1", &c2_ip, "c2"), "traffic stopped with h2's daemon");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(fdb_lines(h2, &vx, &macs), on_h2, "h2's entries changed without its daemon");

    lab.lab.start_daemons(&["h2"], &FLAGS);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    assert!(h2.cove(&["ps", "-q", "--filter", "name=c2"]).ok().out().len() >= 12, "c2 not adopted");
    // A sync has run on the restarted host once it lists both nodes Ready.
    assert!(eventually(5, || ["203.0.113.11", "203.0.113.12"]
        .iter()
        .all(|a| node_line(h2, a).is_some_and(|l| l.contains("Ready")))));
    for _ in 0..3 {
        assert!(fetches(h1, "c1", &c2_ip, "c2"), "traffic stopped after h2's daemon came back");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(fdb_lines(h1, &vx, &macs), on_h1, "{}", fdb(h1, &vx));
    assert_eq!(fdb_lines(h2, &vx, &macs), on_h2, "{}", fdb(h2, &vx));
    assert_eq!(lab.keys(&format!("ipam/{id}/")).len(), 2, "{:?}", lab.keys("ipam/"));
    assert_eq!(lab.keys("endpoints/").len(), 2, "{:?}", lab.keys("endpoints/"));
}

// ---- 1.(e) 12: the control plane is cut -----------------------------------------------------

/// Cut from etcd longer than the lease's TTL, a host keeps its traffic; the others list it
/// Down; healed, it registers again and is Ready within a few seconds.
#[test]
fn multihost_control_partition_keeps_the_data_plane() {
    require_root();
    require_etcd!();
    let lab = Lab::started("multihost_control_cut", 2);
    lab.overlay("h1", "ov1", "10.0.4.0/24");
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    idle(h1, "c1", "ov1");
    web(h2, "c2", "ov1");
    let c2_ip = ip_of(h2, "c2");
    assert!(eventually(5, || fetches(h1, "c1", &c2_ip, "c2")), "c1 never reached c2");

    lab.lab.partition_control("h2");
    let t0 = Instant::now();
    let mut down_after = None;
    while t0.elapsed() < Duration::from_secs(13) {
        assert!(
            fetches(h1, "c1", &c2_ip, "c2"),
            "traffic stopped {:?} into the control-plane partition",
            t0.elapsed()
        );
        if down_after.is_none() && node_line(h1, "203.0.113.12").is_some_and(|l| l.contains("Down"))
        {
            down_after = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let down_after = down_after.expect("h1 never listed h2 Down while it was cut from etcd");
    assert!(down_after < Duration::from_secs(12), "h2 listed Down only after {down_after:?}");

    lab.lab.heal("h2");
    let t0 = Instant::now();
    let ready = || node_line(h1, "203.0.113.12").is_some_and(|l| l.contains("Ready"));
    assert!(eventually(6, ready), "h2 not Ready 6 s after the heal");
    eprintln!("h2 Down {down_after:?} into the partition, Ready {:?} after the heal", t0.elapsed());
    // The control plane works again: a new container on h2 is reachable from h1.
    web(h2, "c3", "ov1");
    let c3_ip = ip_of(h2, "c3");
    assert!(eventually(5, || fetches(h1, "c1", &c3_ip, "c3")), "c1 never reached c3");
    assert!(fetches(h1, "c1", &c2_ip, "c2"));
}

/// The MACs `h`'s VXLAN device `vx` forwards to other hosts (its `dst` entries).
fn remote_macs(h: &FakeHost, vx: &str) -> std::collections::BTreeSet<String> {
    fdb(h, vx)
        .lines()
        .filter(|l| l.contains(" dst "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// A host cut from etcd past its lease misses the events of that time, and etcd compacts
/// them away: healed, it lists again, and its forwarding and neighbour entries are exactly
/// the other host's endpoints, no stale one and none missing.
#[test]
fn multihost_missed_events_and_compaction_leave_exact_entries() {
    require_root();
    require_etcd!();
    let lab = Lab::started("multihost_compaction", 2);
    let id = lab.overlay("h1", "ov1", "10.0.15.0/24");
    let vx = vxlan(&id);
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    idle(h2, "old1", "ov1");
    idle(h2, "old2", "ov1");
    let olds = [mac_of(h2, "old1"), mac_of(h2, "old2")];
    assert!(
        eventually(5, || remote_macs(h1, &vx) == olds.iter().cloned().collect()),
        "h1 never programmed h2's containers: {}",
        fdb(h1, &vx)
    );

    // h1 misses h2's changes: one container goes, two come.
    lab.lab.partition_control("h1");
    let old1_ip = ip_of(h2, "old1");
    h2.cove(&["rm", "-f", "old1"]).ok();
    // New addresses (and so MACs), so that a stale entry for old1 cannot pass for theirs.
    for (name, ip) in [("new1", "10.0.15.20"), ("new2", "10.0.15.21")] {
        h2.cove(&[
            "run",
            "-d",
            "--network",
            "ov1",
            "--ip",
            ip,
            "--name",
            name,
            "bb",
            "sleep",
            "600",
        ])
        .ok();
    }
    // Proof h1 missed them: it still forwards to old1 and knows neither new one.
    std::thread::sleep(Duration::from_secs(1));
    assert!(remote_macs(h1, &vx).contains(&olds[0]), "h1 heard of old1's removal while cut off");
    // Past the lease's TTL, so that h1's client gives up its watch; then etcd compacts.
    std::thread::sleep(NODE_TTL_PLUS);
    let status = lab.etcd.etcdctl(&["endpoint", "status", "-w", "json"]);
    status.ok();
    let v: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let revision = v[0]["Status"]["header"]["revision"].as_i64().expect("etcd's revision");
    lab.etcd.etcdctl(&["compact", &revision.to_string()]).ok();

    lab.lab.heal("h1");
    let healed = Instant::now();
    let want: std::collections::BTreeSet<String> =
        [mac_of(h2, "old2"), mac_of(h2, "new1"), mac_of(h2, "new2")].into_iter().collect();
    assert!(
        eventually(8, || remote_macs(h1, &vx) == want),
        "h1 forwards to {:?} after the heal, h2 has {want:?}:\n{}",
        remote_macs(h1, &vx),
        fdb(h1, &vx)
    );
    eprintln!("h1's entries exact {:?} after the heal", healed.elapsed());
    // Exactly once each, and the neighbour entries agree.
    for mac in &want {
        assert_eq!(fdb_of(h1, &vx, mac), (vec!["203.0.113.12".to_string()], 1), "{}", fdb(h1, &vx));
    }
    let neigh = h1.sh_ok(&format!("ip -4 neigh show dev {vx}"));
    let got: std::collections::BTreeSet<String> =
        neigh.lines().filter_map(|l| l.split_whitespace().next().map(str::to_string)).collect();
    let ips: std::collections::BTreeSet<String> =
        ["old2", "new1", "new2"].iter().map(|c| ip_of(h2, c)).collect();
    assert_eq!(got, ips, "neighbour entries differ from h2's containers: {neigh}");
    assert!(!got.contains(&old1_ip), "a stale entry for old1: {neigh}");
}

/// A host whose data root was copied from a running one (its node id with it) is refused at
/// start, naming the other host and the file to remove, and the running host is untouched;
/// without the file it joins with an id of its own.
#[test]
fn multihost_a_copied_node_id_is_refused() {
    require_root();
    require_etcd!();
    let mut lab = Lab::new("multihost_clone", 2);
    lab.start(&["h1"]);
    let id_file = |lab: &Lab, h: &str| lab.host(h).data_root().join("node-id");
    let h1_id = std::fs::read_to_string(id_file(&lab, "h1")).unwrap();
    std::fs::create_dir_all(lab.host("h2").data_root()).unwrap();
    std::fs::write(id_file(&lab, "h2"), &h1_id).unwrap();

    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lab.lab.start_daemons(&["h2"], &FLAGS);
    }));
    let payload = started.expect_err("h2 started with h1's node id");
    let msg = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    for want in ["is in use by the running host", "at 203.0.113.11", "node-id"] {
        assert!(msg.contains(want), "{want:?} missing from the refusal:\n{msg}");
    }
    // h1 is still the one node, up, at its address.
    let h1 = lab.host("h1");
    let line = node_line(h1, "203.0.113.11").expect("h1 listed");
    assert!(line.starts_with(&h1_id.trim()[..12]) && line.contains("Ready"), "{line}");
    assert!(node_line(h1, "203.0.113.12").is_none(), "the refused host was listed");

    // Positive control: without the copied id, h2 joins as a node of its own.
    std::fs::remove_file(id_file(&lab, "h2")).unwrap();
    lab.start(&["h2"]);
    let line = node_line(lab.host("h1"), "203.0.113.12").expect("h2 listed once it has its own id");
    assert!(line.contains("Ready") && !line.starts_with(&h1_id.trim()[..12]), "{line}");
}

// ---- 1.(e) 4: no flooding ------------------------------------------------------------------

/// `/sys/class/net/<link>/statistics/<counter>` in `h`.
fn stat(h: &FakeHost, link: &str, counter: &str) -> u64 {
    h.sh_ok(&format!("cat /sys/class/net/{link}/statistics/{counter}")).trim().parse().unwrap()
}

/// Traffic between two hosts' containers crosses only between those two, one datagram per
/// datagram; ARP for an address nobody has stays on the host.
#[test]
fn multihost_no_flooding() {
    require_root();
    require_etcd!();
    let lab = Lab::started("multihost_no_flooding", 3);
    let id = lab.overlay("h1", "ov1", "10.0.3.0/24");
    let (h1, h2, h3) = (lab.host("h1"), lab.host("h2"), lab.host("h3"));
    idle(h1, "c1", "ov1");
    idle(h2, "c2", "ov1");
    idle(h3, "c3", "ov1");
    let c2_ip = ip_of(h2, "c2");
    let c3_mac = mac_of(h3, "c3");
    // Every host knows every other's container (h3 would get anything flooded).
    assert!(eventually(5, || fdb_of(h1, &vxlan(&id), &c3_mac).0 == ["203.0.113.13"]));
    let key = inspect(h1, "c1", "{{.NetworkSettings.SandboxKey}}");
    let c2_key = inspect(h2, "c2", "{{.NetworkSettings.SandboxKey}}");
    let c2_rx = || {
        h2.sh_ok(&format!("nsenter --net={c2_key} cat /sys/class/net/eth0/statistics/rx_packets"))
            .trim()
            .parse::<u64>()
            .unwrap()
    };

    const N: u64 = 20;
    // Busybox's nc has no UDP mode here: python3 in c1's network namespace sends them.
    let send = format!(
        "nsenter --net={key} python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b'x' * 100, ('{c2_ip}', 9999)) for _ in range({N})]\""
    );
    let rx0 = c2_rx();
    let (out, n) = lab.lab.count_frames(
        &[
            Frames::any().from("h1").to("h2").vxlan(),
            Frames::any().from("h1").vxlan(),
            Frames::any().to("h3").vxlan(),
        ],
        || h1.sh(&send),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(n[0], N, "VXLAN datagrams h1 -> h2 for {N} datagrams c1 -> c2");
    assert_eq!(n[1], N, "VXLAN datagrams from h1 elsewhere than h2");
    assert_eq!(n[2], 0, "VXLAN datagrams reached h3, which has nothing to do with it");
    assert!(c2_rx() >= rx0 + N, "c2 did not receive the {N} datagrams");

    // ARP for an address of the subnet nobody has: c1 asks (its bridge sees the
    // broadcasts), nothing crosses the underlay.
    let bridge = format!("ov-{}", &id[..12]);
    let seen0 = stat(h1, &bridge, "rx_packets");
    let (_, n) = lab.lab.count_frames(&[Frames::any().vxlan()], || {
        h1.cove(&["exec", "c1", "sh", "-c", "timeout 4 nc 10.0.3.250 80"])
    });
    assert!(
        stat(h1, &bridge, "rx_packets") >= seen0 + 2,
        "c1's ARP requests never reached its host's bridge"
    );
    let neigh = h1.cove(&["exec", "c1", "ip", "neigh", "show", "10.0.3.250"]).ok().stdout.clone();
    assert!(!neigh.contains("lladdr"), "something answered for 10.0.3.250: {neigh}");
    assert_eq!(n[0], 0, "the ARP for an unknown address went onto the underlay");
}

// ---- 1.(e) 5: the MTU ----------------------------------------------------------------------

/// The MTU of `eth0` in container `name` on `h`.
fn eth0_mtu(h: &FakeHost, name: &str) -> String {
    h.cove(&["exec", name, "cat", "/sys/class/net/eth0/mtu"]).ok().out().to_string()
}

/// An overlay network's MTU leaves room for VXLAN on the creating host's underlay: 1450 on
/// 1500, 1350 on 1400; a larger one is refused (400) naming the underlay's MTU; a host whose
/// underlay is too small for a network refuses its endpoints naming both MTUs; 1 MiB
/// crosses a 1400 underlay without a single outer fragment.
#[test]
fn multihost_mtu_leaves_room_for_vxlan() {
    require_root();
    require_etcd!();
    let mut lab = Lab::new("multihost_mtu", 3);
    // h1 and h2 on a 1400 underlay, h3 on 1500: set before the daemons read it.
    lab.lab.set_mtu("h1", 1400);
    lab.lab.set_mtu("h2", 1400);
    lab.start(&["h1", "h2", "h3"]);
    let (h1, h2, h3) = (lab.host("h1"), lab.host("h2"), lab.host("h3"));

    // Made on h3 (1500): 1450.
    lab.overlay("h3", "big", "10.0.2.0/24");
    idle(h3, "b3", "big");
    assert_eq!(eth0_mtu(h3, "b3"), "1450");
    let (code, body) = h3.api(
        "POST",
        "/networks/create",
        Some(r#"{"Name":"jumbo","Driver":"overlay","Options":{"com.docker.network.driver.mtu":"1500"}}"#),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("1500") && body.contains("1450"), "{body}");
    assert!(!h3.cove(&["network", "ls"]).ok().stdout.contains("jumbo"));
    // h1's underlay (1400) cannot carry it: its endpoints are refused, naming both MTUs.
    let out = h1.cove(&["run", "-d", "--network", "big", "--name", "b1", "bb", "sleep", "600"]);
    out.fails();
    assert!(out.stderr.contains("1450") && out.stderr.contains("1400"), "{out}");

    // Made on h1 (1400): 1350, on h1 and h2 alike.
    let id = lab.overlay("h1", "small", "10.0.1.0/24");
    idle(h1, "c1", "small");
    let script = "mkdir -p /www && dd if=/dev/zero of=/www/big bs=1024 count=1024 2>/dev/null && exec httpd -f -p 80 -h /www";
    h2.cove(&["run", "-d", "--network", "small", "--name", "c2", "bb", "sh", "-c", script]).ok();
    assert_eq!(eth0_mtu(h1, "c1"), "1350");
    assert_eq!(eth0_mtu(h2, "c2"), "1350");
    assert!(h1.sh_ok(&format!("ip link show vx-{}", &id[..12])).contains("mtu 1350"));
    let c2_ip = ip_of(h2, "c2");
    let fetch = format!("timeout 10 wget -q -O- http://{c2_ip}/big | wc -c");
    assert!(eventually(5, || h1.cove(&["exec", "c1", "sh", "-c", "true"]).success()));
    let fragments = Frames::any().matching("ip frag-off & 0x3fff != 0");
    let (got, n) = lab
        .lab
        .count_frames(&[Frames::any().from("h2").to("h1").vxlan(), fragments.clone()], || {
            h1.cove(&["exec", "c1", "sh", "-c", &fetch])
        });
    assert_eq!(got.out(), "1048576", "{got}");
    // The counters see the hosts' (GSO) packets, not each segment: at least one.
    assert!(n[0] >= 1, "the transfer did not cross the underlay");
    assert_eq!(n[1], 0, "the underlay carried IP fragments");
    // Positive control: a datagram too big for the underlay is fragmented, and counted.
    let big = "python3 -c \"import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x' * 3000, ('203.0.113.12', 9))\"";
    let (out, n) = lab.lab.count_frames(&[fragments], || h1.sh(big));
    assert!(out.status.success(), "{out:?}");
    assert!(n[0] >= 3, "fragments are not counted: {}", n[0]);
}

// ---- 1.(e) 6 and 7: global IPAM ------------------------------------------------------------

/// Start `n` containers `<prefix><i>` on `network` on `h`, all at once; their addresses.
fn start_many(h: &FakeHost, prefix: &str, n: usize, network: &str) -> Vec<String> {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                s.spawn(move || {
                    let name = format!("{prefix}{i}");
                    idle(h, &name, network);
                    ip_of(h, &name)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

/// Two hosts starting 100 containers each at once on one overlay network (a /24) get 200
/// distinct addresses, each reserved once in etcd; removed, every reservation goes.
#[test]
fn multihost_global_ipam_under_contention() {
    require_root();
    require_etcd!();
    // The issue's size: 200 of the /24's 253 addresses, all asked for at once.
    const PER_HOST: usize = 100;
    let lab = Lab::started("multihost_ipam_race", 2);
    let id = lab.overlay("h1", "ov1", "10.0.10.0/24");
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let t0 = Instant::now();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| start_many(h1, "a", PER_HOST, "ov1"));
        let b = s.spawn(|| start_many(h2, "b", PER_HOST, "ov1"));
        (a.join().unwrap(), b.join().unwrap())
    });
    eprintln!("{} containers on two hosts in {:?}", 2 * PER_HOST, t0.elapsed());
    let all: std::collections::BTreeSet<&String> = a.iter().chain(&b).collect();
    assert_eq!(all.len(), 2 * PER_HOST, "addresses given twice: h1 {a:?}, h2 {b:?}");
    assert!(all.iter().all(|ip| ip.starts_with("10.0.10.")), "{all:?}");
    // One reservation per address (the anycast gateway is the network's, not a key).
    let keys = lab.keys(&format!("ipam/{id}/"));
    let reserved: std::collections::BTreeSet<String> =
        keys.iter().map(|k| k.rsplit('/').next().unwrap().to_string()).collect();
    assert_eq!(keys.len(), 2 * PER_HOST, "{keys:?}");
    assert_eq!(reserved, all.iter().map(|s| s.to_string()).collect(), "{keys:?}");
    assert_eq!(lab.keys("endpoints/").len(), 2 * PER_HOST);

    std::thread::scope(|s| {
        for (h, p) in [(h1, "a"), (h2, "b")] {
            s.spawn(move || {
                let names: Vec<String> = (0..PER_HOST).map(|i| format!("{p}{i}")).collect();
                let mut args = vec!["rm", "-f"];
                args.extend(names.iter().map(String::as_str));
                h.cove(&args).ok();
            });
        }
    });
    assert!(
        eventually(10, || lab.keys(&format!("ipam/{id}/")).is_empty()),
        "etcd keeps {:?}",
        lab.keys(&format!("ipam/{id}/"))
    );
    assert!(lab.keys("endpoints/").is_empty(), "{:?}", lab.keys("endpoints/"));
}

/// A /29 overlay network holds five containers across hosts (network, broadcast and gateway
/// excluded); the sixth is refused naming the subnet; one gone, the next fits.
#[test]
fn multihost_global_ipam_exhaustion() {
    require_root();
    require_etcd!();
    let lab = Lab::started("multihost_ipam_full", 2);
    lab.overlay("h1", "ov1", "10.0.11.0/29");
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    for (h, name) in [(h1, "a1"), (h2, "b1"), (h1, "a2"), (h2, "b2"), (h1, "a3")] {
        idle(h, name, "ov1");
    }
    let ips: std::collections::BTreeSet<String> =
        [(h1, "a1"), (h2, "b1"), (h1, "a2"), (h2, "b2"), (h1, "a3")]
            .iter()
            .map(|(h, n)| ip_of(h, n))
            .collect();
    let want: std::collections::BTreeSet<String> =
        (2..=6).map(|i| format!("10.0.11.{i}")).collect();
    assert_eq!(ips, want);
    for (h, name) in [(h2, "b3"), (h1, "a4")] {
        let out = h.cove(&["run", "-d", "--network", "ov1", "--name", name, "bb", "sleep", "600"]);
        out.fails().stderr_has(
            "no available IPv4 addresses on this network's address pools: 10.0.11.0/29 \
             (5 in use, gateway 10.0.11.1)",
        );
    }
    // One leaves h1: h2 gets its address.
    let freed = ip_of(h1, "a2");
    h1.cove(&["rm", "-f", "a2"]).ok();
    assert!(
        eventually(10, || h2.cove(&["start", "b3"]).success()),
        "h2 never got the address h1 freed"
    );
    assert_eq!(ip_of(h2, "b3"), freed);
}

// ---- 1.(e) 11: a host rejoins at another address -------------------------------------------

/// A host that crashed and comes back at another address with the same data root: its
/// dead containers' endpoints leave the cluster and the others' tables, its new containers
/// are reachable, and the others forward to its new address.
#[test]
fn multihost_rejoin_with_a_new_address() {
    require_root();
    require_etcd!();
    let mut lab = Lab::started("multihost_rejoin", 2);
    let id = lab.overlay("h1", "ov1", "10.0.12.0/24");
    let vx = vxlan(&id);
    idle(lab.host("h1"), "c1", "ov1");
    web(lab.host("h2"), "c2", "ov1");
    let (c2_ip, c2_mac) = (ip_of(lab.host("h2"), "c2"), mac_of(lab.host("h2"), "c2"));
    assert!(eventually(5, || fetches(lab.host("h1"), "c1", &c2_ip, "c2")), "c1 never reached c2");
    let h2_id = node_id(lab.host("h1"), "203.0.113.12");
    let c2_endpoints = lab.keys("endpoints/");
    assert_eq!(c2_endpoints.len(), 2);

    let new_addr = Ipv4Addr::new(203, 0, 113, 22);
    lab.lab.reboot("h2", Some(new_addr));
    lab.start(&["h2"]);
    let t0 = Instant::now();
    let h1 = lab.host("h1");
    assert!(
        eventually(2, || fdb_of(h1, &vx, &c2_mac) == (vec![], 0)),
        "h1 kept the entries of h2's dead container:\n{}",
        fdb(h1, &vx)
    );
    eprintln!("h2's old entries gone from h1 {:?} after its daemon started", t0.elapsed());
    assert_eq!(lab.keys("endpoints/").len(), 1, "{:?}", lab.keys("endpoints/"));
    assert!(lab.keys(&format!("ipam/{id}/{c2_ip}")).is_empty(), "c2's address kept");
    let line = node_line(h1, "203.0.113.22").expect("h2 not listed at its new address");
    assert!(line.starts_with(&h2_id) && line.contains("Ready"), "{line}");
    assert!(node_line(h1, "203.0.113.12").is_none(), "h2 still listed at its old address");

    let h2 = lab.host("h2");
    web(h2, "c4", "ov1");
    let (c4_ip, c4_mac) = (ip_of(h2, "c4"), mac_of(h2, "c4"));
    assert!(
        eventually(3, || fdb_of(h1, &vx, &c4_mac) == (vec!["203.0.113.22".to_string()], 1)),
        "{}",
        fdb(h1, &vx)
    );
    assert!(eventually(5, || fetches(h1, "c1", &c4_ip, "c4")), "c1 never reached c4 on h2");
}
