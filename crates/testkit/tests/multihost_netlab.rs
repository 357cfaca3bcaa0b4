//! Tests of the multi-host netlab itself (privileged: run as root). All traffic stays in
//! the namespaces the netlab made: probes run inside nodes, listeners are bound inside
//! nodes' network namespaces, on 203.0.113.0/24.

use std::collections::HashSet;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cove_testkit::{ns_inode, require_root, skip, Attach, Frames, Netlab};

fn fake_cove() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_netlab-fake-cove"))
}

fn lab(name: &str, hosts: u8) -> Netlab {
    require_root();
    Netlab::with_hosts(name, fake_cove(), hosts)
}

/// The real `cove`: `COVE_BIN`, else `cove` next to this test binary's directory
/// (`<target>/debug/cove`, built by a workspace test run).
fn cove_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COVE_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let guess = exe.parent()?.parent()?.join("cove");
    guess.is_file().then_some(guess)
}

/// Clock ticks since boot (the unit of a process's start time).
fn ticks_now() -> u64 {
    let up = std::fs::read_to_string("/proc/uptime").unwrap();
    let secs: f64 = up.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: sysconf(3) has no memory arguments.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (secs * hz) as u64 + 1
}

/// A process's start time (clock ticks since boot).
fn start_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].split(' ').nth(19)?.parse().ok()
}

/// Processes started before `ticks` whose network namespace is one of `inodes`. (A
/// namespace's inode number is free again once it is destroyed, and a parallel test's new
/// namespace may get it: its processes start later.)
fn procs_in_netns(inodes: &HashSet<u64>, ticks: u64) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if start_ticks(&pid).is_none_or(|t| t > ticks) {
            continue;
        }
        if ns_inode(&pid, "net").is_some_and(|n| inodes.contains(&n)) {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            found.push(format!("{pid} {}", comm.trim()));
        }
    }
    found
}

fn dead(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.contains(") Z ")
}

fn names_in(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Cgroups named after `tag` (`<tag>.<host>.<n>`) in any hierarchy.
fn cgroups_of(tag: &str) -> Vec<String> {
    let mut found = Vec::new();
    for h in names_in("/sys/fs/cgroup") {
        for c in names_in(&format!("/sys/fs/cgroup/{h}")) {
            if c.starts_with(tag) {
                found.push(format!("{h}/{c}"));
            }
        }
    }
    found
}

#[test]
fn multihost_nodes_reach_each_other_over_the_underlay() {
    let t = Instant::now();
    let mut lab = lab("reach", 3);
    lab.add(&[], &[("evil", Netlab::EVIL.into()), ("cli", Netlab::CLI.into())]);
    eprintln!("netlab with 3 hosts, kv, evil and cli made in {:?}", t.elapsed());

    let expect = [
        ("h1", "203.0.113.11"),
        ("h2", "203.0.113.12"),
        ("h3", "203.0.113.13"),
        ("kv", "203.0.113.2"),
        ("evil", "203.0.113.66"),
        ("cli", "203.0.113.100"),
    ];
    let mut inodes = HashSet::new();
    for (name, addr) in expect {
        assert_eq!(lab.addr(name).to_string(), addr);
        let addrs = lab.sh_ok(name, "ip -4 -o addr show dev eth0");
        assert!(addrs.contains(&format!("inet {addr}/24")), "{name}: {addrs}");
        let links = lab.sh_ok(name, "ls /sys/class/net");
        assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["eth0", "lo"], "{name}");
        assert!(lab.sh_ok(name, "ip route show default").trim().is_empty(), "{name}");
        assert!(lab.sh_ok(name, "cat /sys/class/net/eth0/mtu").trim() == "1500");
        let ino = lab.sh_ok(name, "readlink /proc/self/ns/net");
        assert!(inodes.insert(ino.clone()), "{name} shares a netns: {ino}");
    }
    assert_eq!(lab.host("h2").underlay_addr(), Some(Netlab::host_addr(2)));
    assert_eq!(lab.kv().addr(), Netlab::KV);
    // The switch: six ports on ul0, no address of its own.
    let ports = lab.switch_sh_ok("ip -o link show master ul0");
    assert_eq!(ports.lines().count(), 6, "{ports}");
    for (name, _) in expect {
        assert!(ports.contains(&format!("{}@", lab.port(name))), "{ports}");
    }
    let ul = lab.switch_sh_ok("ip -o addr show scope global; ip -o addr show dev ul0");
    assert!(ul.trim().is_empty(), "the switch has an address: {ul}");

    // Every pair among h1..h3 and kv, both ways: accepted from the right address.
    let names = ["h1", "h2", "h3", "kv"];
    let t = Instant::now();
    for a in names {
        for b in names.iter().filter(|b| **b != a) {
            assert!(lab.tcp_reaches(a, b, 0), "{a} -> {b}");
        }
    }
    assert!(lab.tcp_reaches("evil", "h1", 0));
    assert!(lab.tcp_reaches("cli", "h3", 0));
    eprintln!("14 TCP probes in {:?}", t.elapsed());
    // The underlay is the netlab's alone: the real host has no 203.0.113.x address.
    let fib = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    assert!(!fib.contains("203.0.113.11"), "the real host has the underlay's address");
}

#[test]
fn multihost_partition_cuts_a_node_and_heal_restores_it() {
    let lab = lab("partition", 3);
    let h2 = lab.addr("h2");
    // Positive control, and warm ARP caches so that probes are IP packets.
    assert!(lab.tcp_reaches("h1", "h2", 0));
    assert!(lab.tcp_reaches("h2", "kv", 0));

    lab.partition("h2");
    let filters = [Frames::any().from("h1").dst(h2), Frames::any().to("h2")];
    let (reached, counts) = lab.count_frames(&filters, || lab.tcp_reaches("h1", "h2", 0));
    assert!(!reached, "h1 reached h2 across a partition");
    assert!(counts[0] >= 1, "h1 sent no SYN to h2: the probe proves nothing ({counts:?})");
    assert_eq!(counts[1], 0, "frames were delivered to h2's port");
    assert!(!lab.tcp_reaches("h2", "kv", 0), "h2 reached kv across a partition");
    assert!(!lab.tcp_reaches("h3", "h2", 0));
    // Everyone else still talks.
    assert!(lab.tcp_reaches("h1", "h3", 0));
    assert!(lab.tcp_reaches("h3", "kv", 0));
    let rules = lab.switch_sh_ok("nft list chain bridge netlab faults");
    assert!(rules.contains(&format!("iifname \"{}\" drop", lab.port("h2"))), "{rules}");

    lab.heal("h2");
    let (reached, counts) = lab.count_frames(&[Frames::any().to("h2").src(lab.addr("h1"))], || {
        lab.tcp_reaches("h1", "h2", 0)
    });
    assert!(reached, "h1 does not reach h2 after heal");
    assert!(counts[0] >= 3, "the handshake was not delivered to h2's port: {counts:?}");
    assert!(lab.tcp_reaches("h2", "kv", 0));
    let rules = lab.switch_sh_ok("nft list chain bridge netlab faults");
    assert!(!rules.contains("drop"), "{rules}");
}

#[test]
fn multihost_control_plane_partition_cuts_only_etcd() {
    let lab = lab("control", 2);
    assert!(lab.tcp_reaches("h2", "kv", 2379));
    lab.partition_control("h2");
    assert!(!lab.tcp_reaches("h2", "kv", 2379), "h2 reached etcd's port");
    // Other ports of kv, other nodes to kv, and h2's other traffic still flow.
    assert!(lab.tcp_reaches("h2", "kv", 2380));
    assert!(lab.tcp_reaches("h1", "kv", 2379));
    assert!(lab.tcp_reaches("h2", "h1", 2379));
    assert!(lab.tcp_reaches("h1", "h2", 0));
    assert!(lab.tcp_reaches("kv", "h2", 0));
    lab.heal("h2");
    assert!(lab.tcp_reaches("h2", "kv", 2379));
}

#[test]
fn multihost_crash_and_reboot_keep_the_data_root() {
    let mut lab = lab("crash", 2);
    let data = lab.data_root("h2");
    assert_eq!(lab.host("h2").data_root(), data);
    let (data_s, run_s) =
        (data.display().to_string(), lab.host("h2").exec_root().display().to_string());
    lab.sh_ok(
        "h2",
        &format!("mkdir -p {run_s} && echo kept > {data_s}/marker && echo lost > {run_s}/marker"),
    );
    // A process left behind in h2 (reparented to init when its shell exits).
    let orphan: u32 =
        lab.sh_ok("h2", "sleep 1000 >/dev/null 2>&1 & echo $!").trim().parse().unwrap();
    let (holder, netns, old_port) =
        (lab.host("h2").holder_pid(), lab.host("h2").netns_inode(), lab.port("h2"));

    // The switch's port as the crash waits for it to go (the switch's own sysfs).
    let port_sys =
        PathBuf::from(format!("/proc/{}/root/sys/class/net/{old_port}", lab.switch_pid()));
    assert!(port_sys.exists());
    let before = ticks_now();
    lab.crash("h2", true);
    assert!(!port_sys.exists());
    assert!(dead(holder) && dead(orphan), "h2's processes survived the crash");
    assert!(procs_in_netns(&HashSet::from([netns]), before).is_empty());
    assert_eq!(lab.host_names(), ["h1"]);
    let ports = lab.switch_sh_ok("ip -o link show master ul0");
    assert!(!ports.contains(&old_port), "{ports}");
    assert_eq!(std::fs::read_to_string(data.join("marker")).unwrap(), "kept\n");
    // Nothing answers at h2's address now.
    assert!(!lab.sh("h1", "busybox nc -w 1 203.0.113.12 80 </dev/null").status.success());

    lab.reboot("h2", None);
    let h2 = lab.host("h2");
    // (A destroyed namespace's inode number is free again: the new one may get it.)
    assert_ne!(h2.holder_pid(), holder);
    assert_eq!(h2.data_root(), data);
    assert_eq!(lab.sh_ok("h2", &format!("cat {data_s}/marker")), "kept\n");
    assert!(
        !lab.sh("h2", &format!("test -e {run_s}/marker")).status.success(),
        "exec root survived"
    );
    assert_ne!(lab.port("h2"), old_port);
    assert!(lab.tcp_reaches("h1", "h2", 0));
    assert!(lab.tcp_reaches("h2", "h1", 0));

    // Reboot at another address, with the same data root.
    let new_addr = Ipv4Addr::new(203, 0, 113, 22);
    lab.reboot("h2", Some(new_addr));
    assert_eq!(lab.addr("h2"), new_addr);
    assert_eq!(lab.host("h2").underlay_addr(), Some(new_addr));
    assert!(lab.sh_ok("h2", "ip -4 -o addr show dev eth0").contains("inet 203.0.113.22/24"));
    assert_eq!(lab.sh_ok("h2", &format!("cat {data_s}/marker")), "kept\n");
    assert!(lab.tcp_reaches("h1", "h2", 0));
    assert!(!lab.sh("h1", "busybox nc -w 1 203.0.113.12 80 </dev/null").status.success());

    // Without keeping the data root; and a plain node crashes and comes back the same way.
    lab.crash("h2", false);
    assert!(!data.exists());
    lab.crash("kv", false);
    lab.reboot("kv", None);
    assert!(lab.tcp_reaches("h1", "kv", 2379));
}

#[test]
fn multihost_frame_counter_counts_exactly() {
    let lab = lab("counter", 3);
    let (h1, h2, h3) = (lab.addr("h1"), lab.addr("h2"), lab.addr("h3"));
    // Warm ARP caches and the switch's MAC table: a frame to an unknown MAC is flooded.
    assert!(lab.tcp_reaches("h1", "h2", 0));
    assert!(lab.tcp_reaches("h2", "h1", 0));
    let rx = lab.in_netns("h2", || UdpSocket::bind((h2, 4789))).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    const N: u64 = 7;
    let filters = [
        Frames::any().from("h1").src(h1).dst(h2).vxlan(),
        Frames::any().to("h2").src(h1).vxlan(),
        Frames::any().to("h3").vxlan(),
        Frames::any().dst(h3).vxlan(),
        Frames::any().from("h1").dst(h2).udp_dport(4790),
    ];
    let ((), counts) = lab.count_frames(&filters, || {
        lab.in_netns("h1", || {
            let tx = UdpSocket::bind((h1, 0)).unwrap();
            for i in 0..N {
                tx.send_to(format!("datagram {i}").as_bytes(), (h2, 4789)).unwrap();
            }
            for _ in 0..3 {
                tx.send_to(b"elsewhere", (h2, 4790)).unwrap();
            }
        })
    });
    assert_eq!(counts, [N, N, 0, 0, 3], "sent, delivered, to h3, for h3, other port");
    let mut buf = [0u8; 64];
    for i in 0..N {
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], format!("datagram {i}").as_bytes());
        assert_eq!(from.ip(), std::net::IpAddr::V4(h1));
    }
    // A counter that lives across calls.
    let c = lab.add_counter(&Frames::any().from("h3").vxlan());
    lab.in_netns("h3", || {
        UdpSocket::bind((h3, 0)).unwrap().send_to(b"x", (h1, 4789)).unwrap();
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(lab.counted(&c), 1);
    lab.remove_counter(c);
    assert!(!lab.switch_sh_ok("nft list table bridge netlab").contains("counter name"));
}

#[test]
fn multihost_mtu_is_set_at_both_ends() {
    require_root();
    let mut lab = Netlab::new("mtu", fake_cove());
    lab.add(
        &[
            ("h1", Attach::new(Netlab::host_addr(1)).mtu(9000)),
            ("h2", Attach::new(Netlab::host_addr(2)).port_mtu(1400)),
        ],
        &[],
    );
    let mtu = |lab: &Netlab, name: &str| -> (u32, u32) {
        let node = lab.sh_ok(name, "cat /sys/class/net/eth0/mtu").trim().parse().unwrap();
        let port = lab
            .switch_sh_ok(&format!("cat /sys/class/net/{}/mtu", lab.port(name)))
            .trim()
            .parse()
            .unwrap();
        (node, port)
    };
    assert_eq!(mtu(&lab, "h1"), (9000, 9000));
    assert_eq!(mtu(&lab, "h2"), (1500, 1400));
    lab.set_mtu("h1", 1400);
    assert_eq!(mtu(&lab, "h1"), (1400, 1400));
    assert!(lab.sh_ok("h1", "ip link show eth0").contains("mtu 1400"));
    lab.set_node_mtu("h2", 1450);
    lab.set_port_mtu("h2", 1450);
    assert_eq!(mtu(&lab, "h2"), (1450, 1450));
    // A reboot keeps the cable as it was last set.
    lab.reboot("h1", None);
    assert_eq!(mtu(&lab, "h1"), (1400, 1400));
    assert!(lab.tcp_reaches("h1", "h2", 0));
}

/// Everything a netlab made is gone after drop: processes (holders, daemons, orphans),
/// namespaces (no process left in them, none bind-mounted), files, cgroups; the real host's
/// links and /run/netns are as before.
#[test]
fn multihost_drop_leaves_nothing_behind() {
    require_root();
    let run_netns = names_in("/run/netns");
    let links = names_in("/sys/class/net");
    let (inodes, pids, dir, tag, before) = {
        let mut lab = lab("drop", 2);
        lab.add_node("evil", Netlab::EVIL);
        lab.start_daemons(&["h1", "h2"], &["--advertise", "{addr}", "--node", "{name}"]);
        assert!(lab.host("h1").daemon_log().contains("203.0.113.11"));
        assert!(lab.host("h2").daemon_log().contains("--node h2"));
        let mut inodes: HashSet<u64> = HashSet::new();
        let mut pids = vec![lab.switch_pid()];
        inodes.insert(ns_inode(&lab.switch_pid().to_string(), "net").unwrap());
        for h in ["h1", "h2"] {
            let host = lab.host(h);
            inodes.insert(host.netns_inode());
            pids.extend([host.holder_pid(), host.daemon_pid().unwrap()]);
        }
        for n in ["kv", "evil"] {
            inodes.insert(lab.node(n).netns_inode());
            pids.push(lab.node(n).holder_pid());
        }
        for n in ["h1", "kv", "evil"] {
            pids.push(lab.sh_ok(n, "sleep 1000 >/dev/null 2>&1 & echo $!").trim().parse().unwrap());
        }
        let kv = lab.kv();
        let mut server = kv.command(&["sleep", "1000"]);
        server.stdout(std::process::Stdio::null());
        pids.push(kv.spawn(server).unwrap().id());
        assert!(procs_in_netns(&inodes, ticks_now()).len() >= pids.len());
        (inodes, pids, lab.dir().to_path_buf(), lab.tag().to_string(), ticks_now())
    };
    for pid in &pids {
        assert!(dead(*pid), "process {pid} survived the netlab");
    }
    assert_eq!(procs_in_netns(&inodes, before), Vec::<String>::new());
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(names_in("/tmp").iter().all(|n| !n.starts_with(&tag)));
    assert_eq!(cgroups_of(&tag), Vec::<String>::new());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&tag));
    for ino in &inodes {
        assert!(!mounts.contains(&format!("net:[{ino}]")));
    }
    assert_eq!(names_in("/run/netns"), run_netns);
    assert_eq!(names_in("/sys/class/net"), links);
}

#[test]
fn multihost_a_panicking_test_still_cleans_up() {
    require_root();
    let seen = std::sync::Mutex::new(None::<(Vec<u32>, PathBuf)>);
    let r = std::panic::catch_unwind(|| {
        let lab = lab("panics", 2);
        let pids = vec![lab.switch_pid(), lab.host("h1").holder_pid(), lab.kv().holder_pid()];
        *seen.lock().unwrap() = Some((pids, lab.dir().to_path_buf()));
        panic!("test body failed");
    });
    assert!(r.is_err());
    let (pids, dir) = seen.lock().unwrap().clone().unwrap();
    for pid in pids {
        assert!(dead(pid), "{pid} survived");
    }
    assert!(!dir.exists());
}

/// Two netlabs of one process at once: distinct names, files, namespaces and switches.
#[test]
fn multihost_netlabs_in_parallel_are_distinct() {
    require_root();
    let labs: Vec<Netlab> = std::thread::scope(|s| {
        let ts: Vec<_> = (0..2).map(|_| s.spawn(|| lab("twin", 1))).collect();
        ts.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_ne!(labs[0].tag(), labs[1].tag());
    assert_ne!(labs[0].dir(), labs[1].dir());
    let pid = std::process::id().to_string();
    for l in &labs {
        assert!(l.tag().starts_with(&format!("cove-netlab-{pid}-")), "{}", l.tag());
    }
    assert_ne!(labs[0].host("h1").netns_inode(), labs[1].host("h1").netns_inode());
    // Same addresses on separate switches: each reaches its own.
    assert!(labs[0].tcp_reaches("h1", "kv", 0));
    assert!(labs[1].tcp_reaches("h1", "kv", 0));
}

/// The real daemon on three netlab hosts: how long the whole set-up takes, and the CLI
/// against each host's own daemon.
#[test]
fn multihost_cove_daemons_start_on_netlab_hosts() {
    require_root();
    let Some(cove) = cove_bin() else {
        skip!("no cove binary: set COVE_BIN or build it (cargo build -p cove)");
    };
    let t0 = Instant::now();
    let mut lab = Netlab::with_hosts("daemons", &cove, 3);
    let t_lab = t0.elapsed();
    lab.start_daemons(&["h1", "h2", "h3"], &["--reconcile-interval", "0"]);
    let t_all = t0.elapsed();
    eprintln!(
        "NETLAB SETUP TIME: switch + kv + 3 fake hosts in {t_lab:?}; + 3 cove daemons \
         (parallel) in {:?}; total {t_all:?}",
        t_all - t_lab
    );
    for h in ["h1", "h2", "h3"] {
        let host = lab.host(h);
        let r = host.cove(&["network", "ls"]);
        r.ok();
        assert!(r.stdout.contains("bridge"), "{h}: {r}");
        assert!(host.daemon_log().contains("--reconcile-interval 0"), "{h}");
        let daemon = host.daemon_pid().unwrap().to_string();
        assert_eq!(ns_inode(&daemon, "net"), Some(host.netns_inode()), "{h}'s daemon");
        assert!(lab.data_root(h).read_dir().unwrap().next().is_some(), "{h} wrote no data");
    }
    // Each daemon is its own: a network on h1 is not on h2.
    lab.host("h1").cove(&["network", "create", "only-h1"]).ok();
    assert!(lab.host("h1").cove(&["network", "ls"]).stdout.contains("only-h1"));
    assert!(!lab.host("h2").cove(&["network", "ls"]).stdout.contains("only-h1"));
    assert!(lab.tcp_reaches("h1", "h2", 0));
    assert!(t_all < Duration::from_secs(60), "set-up took {t_all:?}");

    // A container on h1 and one on h2 (data roots on the netlab's directory, cgroups under
    // each host's own parent), reaching each other's host over the underlay.
    let t = Instant::now();
    for h in ["h1", "h2"] {
        lab.host(h).import_busybox("busybox");
    }
    lab.host("h2")
        .cove(&[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "host",
            "busybox",
            "sh",
            "-c",
            "while true; do echo hello | nc -l -p 8080; done",
        ])
        .ok();
    let tag = lab.tag().to_string();
    assert!(
        !cgroups_of(&format!("{tag}.h2.")).is_empty() || !Path::new("/sys/fs/cgroup/pids").exists()
    );
    let mut reply = String::new();
    for _ in 0..50 {
        let r = lab.host("h1").cove(&[
            "run",
            "--rm",
            "busybox",
            "nc",
            "-w",
            "2",
            "203.0.113.12",
            "8080",
        ]);
        if r.success() && r.out() == "hello" {
            reply = r.out().to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(reply, "hello", "a container on h1 did not reach h2's host-network server");
    eprintln!("two containers across the underlay in {:?}", t.elapsed());
    drop(lab);
    assert_eq!(cgroups_of(&tag), Vec::<String>::new(), "cgroups outlived the netlab");
}

/// The netlab's leak audit sees what an overlay leaves on a host: a VXLAN link (with its
/// configuration), its FDB entries towards peers, permanent neighbours; and passes again
/// once they are gone.
#[test]
fn multihost_leak_audit_sees_vxlan_fdb_and_neighbours() {
    let mut lab = lab("audit", 2);
    let base = lab.snapshot();
    assert_eq!(base.hosts.keys().collect::<Vec<_>>(), ["h1", "h2"]);
    assert_eq!(base, lab.snapshot(), "snapshots of idle hosts differ");
    lab.sh_ok(
        "h1",
        "ip link add vx42 type vxlan id 42 dstport 4789 local 203.0.113.11 dev eth0 nolearning && \
         bridge fdb append 00:00:00:00:00:00 dev vx42 dst 203.0.113.12 && \
         bridge fdb add 02:42:0a:00:00:02 dev vx42 dst 203.0.113.12 self permanent && \
         ip neigh add 10.0.0.2 lladdr 02:42:0a:00:00:02 dev vx42 nud permanent",
    );
    let diff = base.diff(&lab.snapshot()).join("\n");
    for want in [
        "h1: + link: vx42 kind=vxlan",
        "h1: + vxlan: vx42 mtu=1450 id=42 local=203.0.113.11 link=eth0 port=4789 learning=false",
        "h1: + fdb: ifname=vx42 mac=00:00:00:00:00:00 dst=203.0.113.12",
        "h1: + fdb: ifname=vx42 mac=02:42:0a:00:00:02 dst=203.0.113.12",
        "h1: + neigh: dev=vx42 dst=10.0.0.2 lladdr=02:42:0a:00:00:02",
    ] {
        assert!(diff.contains(want), "missing {want:?} in\n{diff}");
    }
    assert!(!diff.contains("h2:"), "{diff}");
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        lab.assert_no_leaks_within(&base, Duration::from_millis(100))
    }))
    .expect_err("the audit must fail while the VXLAN link is there");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("h1: + vxlan: vx42"), "{msg}");
    // An MTU change of the VXLAN link shows too.
    lab.sh_ok("h1", "ip link set vx42 mtu 1400");
    assert!(base.diff(&lab.snapshot()).iter().any(|d| d.contains("vxlan: vx42 mtu=1400")));
    lab.sh_ok("h1", "ip link del vx42");
    lab.assert_no_leaks(&base);
    // A host that is gone is named.
    lab.crash("h2", true);
    assert!(base.diff(&lab.snapshot()).contains(&"- host h2".to_string()));
}
