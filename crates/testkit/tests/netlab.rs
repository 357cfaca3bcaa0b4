//! Tests of the netlab harness itself (privileged: run as root). They use
//! `netlab-fake-cove`, a stand-in daemon, never the real `cove`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use cove_testkit::{
    busybox_rootfs_tar, cleanup_strays, ns_inode, probe_link_kind, require_root, skip, FakeHost,
};

fn fake_cove() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_netlab-fake-cove"))
}

fn host(name: &str) -> FakeHost {
    require_root();
    FakeHost::new(name, fake_cove())
}

fn link_names(json: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(json).expect("ip -j output");
    let mut names: Vec<String> =
        v.as_array().unwrap().iter().map(|l| l["ifname"].as_str().unwrap().to_string()).collect();
    names.sort();
    names
}

fn stdout(o: &std::process::Output) -> String {
    assert!(o.status.success(), "{o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn proc_alive(pid: u32) -> bool {
    // A reaped child has no /proc entry; a zombie would still show one.
    Path::new(&format!("/proc/{pid}")).exists()
}

fn own_mounts_mention(dir: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&dir.display().to_string())
}

#[test]
fn fake_host_is_a_separate_netns_and_mount_ns() {
    require_root();
    let t0 = Instant::now();
    let h = FakeHost::new("isolated", fake_cove());
    eprintln!("fake host created in {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5));

    // /proc/1/ns is unreadable when pid 1 holds capabilities this process lacks.
    if let Some(init_net) = ns_inode("1", "net") {
        assert_ne!(h.netns_inode(), init_net);
    }
    assert_ne!(h.netns_inode(), ns_inode("self", "net").unwrap());
    assert_ne!(h.mntns_inode(), ns_inode("self", "mnt").unwrap());
    // Commands run inside see the fake host's namespaces.
    let inside = stdout(&h.exec(&["readlink", "/proc/self/ns/net", "/proc/self/ns/mnt"]));
    assert_eq!(
        inside.lines().collect::<Vec<_>>(),
        [format!("net:[{}]", h.netns_inode()), format!("mnt:[{}]", h.mntns_inode())]
    );
    // Only lo, both via netlink and via the fake host's own /sys.
    assert_eq!(link_names(&h.exec(&["ip", "-j", "link"]).stdout), ["lo"]);
    assert_eq!(stdout(&h.exec(&["ls", "/sys/class/net"])).trim(), "lo");
    assert!(stdout(&h.exec(&["ip", "-br", "link", "show", "lo"])).contains("UP"));
    // The state tmpfs, /run and /sys are private to the fake host.
    let mounts = stdout(&h.exec(&["cat", "/proc/self/mountinfo"]));
    let state = h.state_dir().display().to_string();
    assert!(mounts.lines().any(|l| l.contains(&format!(" {state} ")) && l.contains(" - tmpfs ")));
    assert!(mounts.lines().any(|l| l.contains(" /run ") && l.contains(" - tmpfs ")));
    assert!(!own_mounts_mention(h.dir()));
    assert!(h.exec(&["test", "-d", &h.data_root().display().to_string()]).status.success());
    assert!(!h.data_root().exists(), "data-root must not be visible on the real host");
    // ...and reachable from the test process through the holder's root.
    assert!(h.inside(h.data_root()).is_dir());
    // The cgroup mounts are still there behind the new /sys (runc needs them).
    let outside = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            let mut v: Vec<String> =
                d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    let inside: Vec<String> =
        stdout(&h.exec(&["ls", "/sys/fs/cgroup"])).lines().map(str::to_string).collect();
    assert_eq!(inside, outside);
    // resolv.conf points into the test topology.
    assert!(stdout(&h.exec(&["cat", "/etc/resolv.conf"])).contains("203.0.113.53"));
    h.set_resolv_conf("nameserver 198.51.100.53\n");
    assert_eq!(stdout(&h.exec(&["cat", "/etc/resolv.conf"])), "nameserver 198.51.100.53\n");
    assert_ne!(std::fs::read_to_string("/etc/resolv.conf").unwrap(), "nameserver 198.51.100.53\n");
}

#[test]
fn neighbour_link_and_tcp_round_trips() {
    let h = host("neighbour_tcp");
    let nb = h.add_neighbour("lan", true);
    assert_eq!(link_names(&h.exec(&["ip", "-j", "link"]).stdout), ["eth-lan", "lo"]);
    assert_eq!(
        stdout(&h.exec(&["ls", "/sys/class/net"])).split_whitespace().collect::<Vec<_>>(),
        ["eth-lan", "lo"]
    );
    assert_eq!(link_names(&nb.exec(&["ip", "-j", "link"]).stdout), ["eth0", "lo"]);
    assert_ne!(nb.netns_inode(), h.netns_inode());
    let routes = nb.sh_ok("ip route; ip -6 route");
    assert!(routes.contains("default via 198.51.100.1"), "{routes}");
    assert!(routes.contains("default via 2001:db8:1::1"), "{routes}");

    // neighbour (busybox nc) -> std listener in the fake host, IPv4 and IPv6.
    for addr in ["198.51.100.1:0", "[2001:db8:1::1]:0"] {
        let l = h.in_netns(|| TcpListener::bind(addr).unwrap());
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, peer) = l.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&s).read_line(&mut line).unwrap();
            s.write_all(format!("echo: {line}").as_bytes()).unwrap();
            peer
        });
        let ip = addr.rsplit_once(':').unwrap().0.trim_matches(['[', ']']);
        let out = nb.sh_ok(&format!("echo hello | timeout 10 busybox nc {ip} {port}"));
        assert_eq!(out, "echo: hello\n");
        let peer = server.join().unwrap();
        assert!(peer.ip().to_string() == nb.ip4() || peer.ip().to_string() == nb.ip6(), "{peer}");
    }

    // fake host (std client) -> busybox nc listener in the neighbour.
    let mut listener = nb
        .command(&["timeout", "20", "busybox", "nc", "-l", "-p", "8080"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        match h.in_netns(|| TcpStream::connect("198.51.100.2:8080")) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("connect: {e}"),
        }
    };
    s.write_all(b"ping\n").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut got = String::new();
    listener.stdout.take().unwrap().read_to_string(&mut got).unwrap();
    assert_eq!(got, "ping\n");
    drop(s);
    let _ = listener.wait();

    // The neighbour's addresses are not the real host's: 198.51.100.0/24 is ours alone.
    assert!(!std::fs::read_to_string("/proc/net/fib_trie")
        .unwrap_or_default()
        .contains("198.51.100.1"));
}

#[test]
fn outside_host_and_probe_counter() {
    let h = host("outside");
    let lan = h.add_neighbour("lan", false);
    let out = h.add_outside("out");
    let routes = h.sh_ok("ip route show default; ip -6 route show default");
    assert!(routes.contains("default via 203.0.113.2 dev eth-out"), "{routes}");
    assert!(routes.contains("default via 2001:db8:2::2 dev eth-out"), "{routes}");
    assert_eq!(link_names(&h.exec(&["ip", "-j", "link"]).stdout), ["eth-lan", "eth-out", "lo"]);
    // The LAN neighbour has no default route when not asked for one.
    assert!(lan.sh_ok("ip route show default").trim().is_empty());

    h.add_probe_counter("from_lan", "iifname \"eth-lan\" ip saddr 198.51.100.2");
    assert_eq!(h.probe_counter("from_lan"), 0);
    // A refused connection still delivers a SYN: the counter proves arrival.
    let r = lan.sh("timeout 5 busybox nc 198.51.100.1 9 </dev/null");
    assert!(!r.status.success());
    assert!(h.probe_counter("from_lan") >= 1);

    let l = out.in_netns(|| TcpListener::bind("203.0.113.2:0").unwrap());
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || l.accept().unwrap().1);
    h.in_netns(|| TcpStream::connect(("203.0.113.2", port)).unwrap());
    assert_eq!(t.join().unwrap().ip().to_string(), "203.0.113.1");
}

#[test]
fn snapshot_sees_changes_and_audit_passes_when_undone() {
    let h = host("snapshot");
    let state = h.state_dir().display().to_string();
    // `ip netns add` leaves /run/netns mounted shared: do it once before the baseline.
    h.sh_ok("ip netns add warm && ip netns del warm");
    let base = h.snapshot();
    assert_eq!(base, h.snapshot(), "snapshots of an idle host differ");
    assert!(base.links.contains(&"lo".to_string()), "{base:?}");
    assert!(base.procs.is_empty(), "{:?}", base.procs);

    h.sh_ok(&format!(
        "ip link add nl-a type veth peer name nl-b && ip link set nl-a up && ip link set nl-b up && \
         ip addr add 198.51.100.77/24 dev nl-a && ip route add 203.0.113.0/24 via 198.51.100.78 && \
         ip rule add from 198.51.100.77 table 7 && \
         nft add table inet leak && nft add chain inet leak c && nft add rule inet leak c counter && \
         ip neigh add 198.51.100.99 lladdr 02:00:00:00:00:63 dev nl-a nud permanent && \
         ip link add nl-br type bridge && ip link set nl-b master nl-br && \
         bridge fdb add 02:00:00:00:00:64 dev nl-b master static && \
         mkdir -p {state}/m && mount -t tmpfs leak {state}/m && ip netns add n1"
    ));
    let mut sleeper = h.command(&["sleep", "1000"]).spawn().unwrap();
    let now = h.snapshot();
    let diff = base.diff(&now);
    let text = diff.join("\n");
    for want in [
        "+ link: nl-a kind=veth",
        "+ addr: nl-a 198.51.100.77/24",
        "dst=203.0.113.0/24 gateway=198.51.100.78 dev=nl-a",
        "+ rule: inet priority=32765",
        "+ neigh: dev=nl-a dst=198.51.100.99 lladdr=02:00:00:00:00:63",
        "+ fdb: ifname=nl-b mac=02:00:00:00:00:64 master=nl-br",
        "+ link: nl-b kind=veth master=nl-br",
        "+ nft: table inet leak",
        "+ nft: table inet leak / chain c :: counter",
        "+ mount: $D/state/m tmpfs leak",
        "+ netns: /run/netns/n1 (net)",
        &format!("+ proc: sleep pid={}", sleeper.id()),
    ] {
        assert!(text.contains(want), "missing {want:?} in diff:\n{text}");
    }
    assert!(diff.iter().all(|l| l.starts_with('+')), "{text}");
    // The audit names the leak.
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.assert_no_leaks_within(&base, Duration::from_millis(100))
    }))
    .expect_err("audit must fail while things leak");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("+ link: nl-a kind=veth"), "{msg}");

    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    h.sh_ok(&format!(
        "ip link del nl-a && ip link del nl-br && ip rule del from 198.51.100.77 table 7 && nft delete table inet leak && \
         umount {state}/m && ip netns del n1"
    ));
    h.assert_no_leaks(&base);
}

#[test]
fn daemon_api_and_cli_plumbing() {
    let mut h = host("daemon");
    h.start_daemon(&["--debug-flag"]);
    let pid = h.daemon_pid().unwrap();
    assert_eq!(h.api("GET", "/_ping", None), (200, "OK".to_string()));
    // The daemon runs inside the fake host.
    let (code, ns) = h.api("GET", "/ns", None);
    assert_eq!(code, 200);
    assert_eq!(ns, format!("net:[{}] mnt:[{}]", h.netns_inode(), h.mntns_inode()));
    assert_eq!(h.api("POST", "/echo", Some(r#"{"Name":"n1"}"#)), (200, r#"{"Name":"n1"}"#.into()));
    assert_eq!(h.api("GET", "/chunked", None), (200, "hello world".into()));
    assert_eq!(h.api_json("GET", "/nope", None).0, 404);
    assert!(h.daemon_log().contains("--debug-flag"));

    let r = h.cove(&["network", "ls"]);
    r.ok();
    assert!(r.stdout.contains("args: network ls"), "{r}");
    assert!(r.stdout.contains(&format!("host: {}", h.host_uri())), "{r}");
    h.cove(&["fail"]).fails().stderr_has("asked to fail");
    assert!(h.cove_stdin(&["cat"], b"from stdin").ok().stdout.contains("from stdin"));
    h.import_busybox("busybox");

    // Stop gracefully, start again, crash it.
    let status = h.stop_daemon().expect("a daemon was running");
    assert!(!status.success());
    assert!(!proc_alive(pid));
    assert!(h.try_api("GET", "/_ping", None).is_err());
    h.start_daemon(&[]);
    let pid = h.daemon_pid().unwrap();
    h.kill_daemon();
    assert!(!proc_alive(pid));
    assert!(h.daemon_pid().is_none());
    let log = h.daemon_log();
    assert_eq!(log.matches("fake daemon: listening").count(), 2, "{log}");
    assert!(log.contains("daemon killed (SIGKILL)"), "{log}");
}

#[test]
fn daemon_that_fails_to_start_panics_with_its_log() {
    let mut h = host("daemon_fails");
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        h.start_daemon(&["--fail-start"])
    }))
    .expect_err("start_daemon must panic");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("asked to fail at start"), "{msg}");
    assert!(h.daemon_pid().is_none());
}

/// Drop kills the holder, the daemon, neighbours and the daemon's reparented children, and
/// removes the temp dir; nothing stays mounted on the real host.
#[test]
fn drop_leaves_nothing_behind() {
    let mut h = host("drop");
    h.start_daemon(&[]);
    let nb = h.add_neighbour("lan", true);
    let base = h.snapshot();
    assert_eq!(h.api("POST", "/orphan", None).0, 200);
    assert_eq!(h.api("POST", "/netns/c1", None).0, 200);
    let now = h.snapshot();
    assert!(now.netns.iter().any(|n| n.ends_with("/state/run/netns/c1 (net)")), "{now:?}");
    let orphans: Vec<u32> = now
        .procs
        .iter()
        .filter(|p| p.starts_with("sleep pid="))
        .map(|p| p["sleep pid=".len()..].split(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(orphans.len(), 2, "{:?}\n{:?}", now.procs, base.diff(&now));
    let nb_pid = nb.holder_pid();
    let (holder, dir, daemon) = (h.holder_pid(), h.dir().to_path_buf(), h.daemon_pid().unwrap());
    let sock = h.sock_path();
    drop(h);
    for pid in [holder, daemon, nb_pid].into_iter().chain(orphans.iter().copied()) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "process {pid} survived the fake host: {stat}"
        );
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(!sock.exists());
    assert!(!own_mounts_mention(&dir));
    drop(nb);
    assert!(!proc_alive(nb_pid));
}

#[test]
fn a_panicking_test_still_cleans_up() {
    require_root();
    let seen = std::sync::Mutex::new(None::<(u32, PathBuf)>);
    let r = std::panic::catch_unwind(|| {
        let h = FakeHost::new("panics", fake_cove());
        *seen.lock().unwrap() = Some((h.holder_pid(), h.dir().to_path_buf()));
        panic!("test body failed");
    });
    assert!(r.is_err());
    let (holder, dir) = seen.lock().unwrap().clone().unwrap();
    assert!(!proc_alive(holder));
    assert!(!dir.exists());
}

/// Debris of a crashed run (dir of a dead pid, a process holding a tagged mount) is
/// removed by `cleanup_strays`. Another test process's sweep may get there first, so the
/// test checks what is left, not who removed it.
#[test]
fn stray_cleanup_removes_debris_of_dead_runs() {
    require_root();
    let dead_pid = dead_pid();
    let tag = format!("cove-netlab-{dead_pid}-0-stray");
    let dir = PathBuf::from("/tmp").join(&tag);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let mut stray = holding_mount(&tag, &format!("{}/state", dir.display()));
    // The owner last: a dir without one is young, so being made, and no sweep takes it.
    std::fs::write(dir.join("owner"), format!("{dead_pid} 1\n")).unwrap();
    cleanup_strays();
    let status = stray.wait().unwrap();
    assert!(!status.success(), "the stray holder must have been killed");
    assert!(!dir.exists());
}

/// A dead netlab's debris: nodes hold mounts tagged `<tag>.<node>...` outside its dir,
/// hosts mount under `<dir>/<host>.<n>/`; the sweep finds both.
#[test]
fn stray_cleanup_removes_a_dead_netlabs_nodes() {
    require_root();
    let dead_pid = dead_pid();
    let tag = format!("cove-netlab-{dead_pid}-3-deadlab");
    let dir = PathBuf::from("/tmp").join(&tag);
    std::fs::create_dir_all(dir.join("h1.0/state")).unwrap();
    // A node's holder mounts its /run (here: a private dir) with the node's tag.
    let mut node = holding_mount(&format!("{tag}.kv.0"), "/mnt");
    let mut host = holding_mount(&format!("{tag}.h1.0"), &format!("{}/h1.0/state", dir.display()));
    std::fs::write(dir.join("owner"), format!("{dead_pid} 1\n")).unwrap();
    cleanup_strays();
    assert!(!node.wait().unwrap().success(), "the node's holder survived");
    assert!(!host.wait().unwrap().success(), "the host's holder survived");
    assert!(!dir.exists());
}

/// What a live test process owns is never swept, even when it looks like debris: a dir of
/// this (live) process with a tagged mount held by a process.
#[test]
fn stray_cleanup_spares_live_owners() {
    require_root();
    let me = std::process::id();
    let tag = format!("cove-netlab-{me}-999999-alive");
    let dir = PathBuf::from("/tmp").join(&tag);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let start = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start = start[start.rfind(')').unwrap() + 2..].split(' ').nth(19).unwrap().to_string();
    std::fs::write(dir.join("owner"), format!("{me} {start}\n")).unwrap();
    let mut holder = holding_mount(&format!("{tag}.kv.0"), "/mnt");
    let removed = cleanup_strays();
    assert!(!removed.contains(&dir), "{removed:?}");
    assert!(dir.exists());
    assert!(holder.try_wait().unwrap().is_none(), "a live test's process was killed");
    holder.kill().unwrap();
    holder.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A pid that no process has (one that just exited).
fn dead_pid() -> u32 {
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    pid
}

/// A process in new namespaces holding a tmpfs tagged `tag` on `at` (private).
fn holding_mount(tag: &str, at: &str) -> std::process::Child {
    let mut child = std::process::Command::new("unshare")
        .args(["--net", "--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("mount -t tmpfs {tag} {at} && echo ready && exec sleep 1000"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    child
}

#[test]
fn hosts_in_parallel_are_distinct_and_fast() {
    require_root();
    let hosts: Vec<(FakeHost, Duration)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                s.spawn(move || {
                    let t = Instant::now();
                    let h = FakeHost::new(&format!("par{i}"), fake_cove());
                    (h, t.elapsed())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut inodes: Vec<u64> = hosts.iter().map(|(h, _)| h.netns_inode()).collect();
    inodes.sort();
    inodes.dedup();
    assert_eq!(inodes.len(), hosts.len());
    let times: Vec<Duration> = hosts.iter().map(|(_, t)| *t).collect();
    eprintln!("creation times: {times:?}");
    for (h, _) in &hosts {
        assert_eq!(link_names(&h.exec(&["ip", "-j", "link"]).stdout), ["lo"]);
    }
}

#[test]
fn probes_link_kinds_in_a_throwaway_netns() {
    require_root();
    let before = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert!(probe_link_kind("veth"));
    assert!(probe_link_kind("bridge"));
    assert!(!probe_link_kind("no-such-kind"));
    assert!(!probe_link_kind("bad kind; rm -rf /"));
    for k in ["macvlan", "vxlan", "ipvlan", "dummy", "wireguard", "vrf", "geneve", "vlan"] {
        eprintln!("link kind {k}: {}", probe_link_kind(k));
    }
    assert_eq!(std::fs::read_dir("/sys/class/net").unwrap().count(), before);
}

#[test]
fn busybox_tar_has_the_applets() {
    if !Path::new(cove_testkit::BUSYBOX).exists() {
        skip!("{} is missing (install busybox-static)", cove_testkit::BUSYBOX);
    }
    let tar = busybox_rootfs_tar();
    let mut a = tar::Archive::new(tar);
    let mut seen = std::collections::HashMap::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let path = e.path().unwrap().display().to_string();
        let link = e.link_name().unwrap().map(|l| l.display().to_string());
        seen.insert(path, (e.header().entry_type(), link, e.header().mode().unwrap(), e.size()));
    }
    let sh = &seen["bin/sh"];
    assert!(sh.0.is_symlink());
    assert_eq!(sh.1.as_deref(), Some("busybox"));
    for applet in ["nc", "ip", "wget", "ping", "nslookup", "timeout", "sleep", "hostname"] {
        assert_eq!(seen[&format!("bin/{applet}")].1.as_deref(), Some("busybox"), "{applet}");
    }
    let bb = &seen["bin/busybox"];
    assert!(bb.0.is_file());
    assert_eq!(bb.3, std::fs::metadata(cove_testkit::BUSYBOX).unwrap().len());
    assert_eq!(bb.2 & 0o111, 0o111);
    assert_eq!(seen["tmp"].2, 0o1777);
    for d in ["proc", "sys", "dev", "etc"] {
        assert!(seen[d].0.is_dir(), "{d}");
    }
    assert!(seen.contains_key("etc/passwd") && seen.contains_key("etc/group"));
    // The system tar reads it too.
    let mut child = std::process::Command::new("tar")
        .args(["-tvf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(tar).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.lines().any(|l| l.contains("bin/sh -> busybox")), "{listing}");
    // Static: it runs with nothing else around it.
    assert_eq!(tar.len() % 512, 0);
}

#[test]
fn skip_macro_returns_early() {
    fn body(ran: &mut bool) {
        if 1 + 1 == 2 {
            skip!("always skipped ({})", 42);
        }
        *ran = true;
    }
    let mut ran = false;
    body(&mut ran);
    assert!(!ran);
}

/// Helper run by `a_crashed_test_process_is_cleaned_up` in a child process: builds a fake
/// host with a daemon, a neighbour and leaked daemon children, reports them, and waits to
/// be SIGKILLed.
#[test]
#[ignore = "helper process for a_crashed_test_process_is_cleaned_up"]
fn crash_helper() {
    if std::env::var_os("NETLAB_CRASH_HELPER").is_none() {
        return;
    }
    let mut h = host("crash");
    h.start_daemon(&[]);
    let nb = h.add_neighbour("lan", true);
    assert_eq!(h.api("POST", "/orphan", None).0, 200);
    assert_eq!(h.api("POST", "/netns/c1", None).0, 200);
    // The fake daemon backgrounds `nsenter ... sleep`: wait until both orphans are `sleep`.
    let deadline = Instant::now() + Duration::from_secs(5);
    let orphans: Vec<String> = loop {
        let found: Vec<String> = h
            .snapshot()
            .procs
            .iter()
            .filter_map(|p| p.strip_prefix("sleep pid=")?.split(':').next().map(String::from))
            .collect();
        if found.len() >= 2 || Instant::now() > deadline {
            break found;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    println!(
        "READY {} {} {} {} {}",
        h.dir().display(),
        h.holder_pid(),
        nb.holder_pid(),
        h.daemon_pid().unwrap(),
        orphans.join(" ")
    );
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// SIGKILL of a test process: its holders and daemon die with it (death signal); what the
/// daemon left (reparented children, the temp dir) is removed by the next `cleanup_strays`.
#[test]
fn a_crashed_test_process_is_cleaned_up() {
    require_root();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_helper", "--ignored", "--nocapture", "--test-threads=1"])
        .env("NETLAB_CRASH_HELPER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        // libtest may print "test crash_helper ... " before it on the same line.
        if let Some(i) = line.find("READY ") {
            ready = line[i + "READY ".len()..].to_string();
            break;
        }
    }
    assert!(!ready.is_empty(), "the helper did not get ready");
    let mut parts = ready.split_whitespace();
    let dir = PathBuf::from(parts.next().unwrap());
    let pids: Vec<u32> = parts.map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 5, "{ready}");
    child.kill().unwrap();
    child.wait().unwrap();
    let dead = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.is_empty() || stat.contains(") Z ")
    };
    // Holders and daemon have a death signal.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !pids[..3].iter().all(|p| dead(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for pid in &pids[..3] {
        assert!(dead(*pid), "holder/daemon {pid} outlived the test process");
    }
    // Another test process's sweep may remove it first: check what is left, not who did it.
    cleanup_strays();
    assert!(!dir.exists(), "{} survived the sweep", dir.display());
    for pid in &pids[3..] {
        assert!(dead(*pid), "leaked daemon child {pid} survived cleanup_strays");
    }
}
