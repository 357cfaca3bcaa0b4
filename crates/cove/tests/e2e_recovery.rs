//! End-to-end: restart and crash recovery (design.md "Restart and crash recovery";
//! reliability §4.2 FT-01/FT-02/FT-07/FT-08). A clean restart and a `kill -9` of the daemon
//! leave running containers running and reachable; what ended while the daemon was down is
//! recorded and its sandbox released; debris that looks like Cove's is removed at start and
//! nothing else is; a second daemon on a live socket is refused and touches nothing. Every
//! test ends with a leak audit against a baseline taken right after the first start.

mod common;

use common::{assert_same_as, host, inspect, ip_of, tcp_probe, tcp_server};
use cove_testkit::FakeHost;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Poll `f` every 50 ms until it holds; panic with `what` after `limit`.
#[track_caller]
fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Host links named like Cove's veths (`cv` + 12 hex digits).
fn cv_links(h: &FakeHost) -> Vec<String> {
    h.sh_ok("ip -o link show")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| {
            n.strip_prefix("cv")
                .is_some_and(|r| r.len() == 12 && r.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .collect()
}

/// Names of every host link.
fn link_names(h: &FakeHost) -> Vec<String> {
    h.sh_ok("ip -o link show")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

/// Files under `<exec-root>/netns` (one per sandbox).
fn netns_files(h: &FakeHost) -> Vec<String> {
    std::fs::read_dir(h.inside(h.exec_root().join("netns")))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn state(h: &FakeHost, name: &str) -> serde_json::Value {
    inspect(h, &["inspect", name])["State"].clone()
}

fn pid_of(h: &FakeHost, name: &str) -> u32 {
    let s = state(h, name);
    let pid = s["Pid"].as_u64().unwrap_or(0) as u32;
    assert!(pid > 0, "{name} has no pid: {s}");
    pid
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| !r.trim_start().starts_with('Z')))
}

/// `ps -a` STATUS column of a container.
fn ps_status(h: &FakeHost, name: &str) -> String {
    let r = h.cove(&["ps", "-a", "--format", "{{.Names}}|{{.Status}}"]);
    r.ok();
    r.stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}|")))
        .unwrap_or_else(|| panic!("{name} not in ps -a:\n{r}"))
        .to_string()
}

/// Connect from the fake host itself to `ip:8080`; what the server said.
fn host_probe(h: &FakeHost, ip: &str) -> String {
    let out = h.sh(&format!("echo | busybox nc -w 2 {ip} 8080"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nc` to `ip:8080` from inside the network namespace of process `pid` (works while the
/// daemon is down).
fn probe_from_pid(h: &FakeHost, pid: u32, ip: &str) -> String {
    let out = h.sh(&format!("echo | nsenter -t {pid} -n busybox nc -w 2 {ip} 8080"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cove exec <from> nc <ip> 8080`; what the server said.
fn probe_exec(h: &FakeHost, from: &str, ip: &str) -> String {
    let cmd = format!("echo | nc -w 3 {ip} 8080");
    h.cove(&["exec", from, "sh", "-c", &cmd]).stdout
}

/// Wait until the fake host runs no container process (shims, runc, containers) any more.
fn wait_no_container_procs(h: &FakeHost) {
    wait_until("every container process is gone", Duration::from_secs(20), || {
        h.snapshot().procs.is_empty()
    });
}

#[test]
fn clean_restart_keeps_networks_containers_addresses_and_traffic() {
    let mut h = host("clean_restart_keeps_networks_containers_addresses_and_traffic");
    let baseline = h.snapshot();
    h.cove(&[
        "network",
        "create",
        "--subnet",
        "10.75.1.0/24",
        "--ip-range",
        "10.75.1.128/25",
        "--gateway",
        "10.75.1.254",
        "--label",
        "team=rc",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "-o",
        "com.docker.network.bridge.name=rc-app0",
        "rc-app",
    ])
    .ok();
    tcp_server(&h, "srv", &["--network", "rc-app", "--ip", "10.75.1.10"], "hello-rc");
    h.cove(&["run", "-d", "--name", "cli", "--network", "rc-app", "busybox", "sleep", "600"]).ok();
    h.cove(&["run", "-d", "--name", "dflt", "busybox", "sleep", "600"]).ok();
    let names = ["srv", "cli", "dflt"];
    let net_before = inspect(&h, &["network", "inspect", "rc-app"]);
    let bridge_before = inspect(&h, &["network", "inspect", "bridge"]);
    let ips: Vec<String> =
        vec![ip_of(&h, "srv", "rc-app"), ip_of(&h, "cli", "rc-app"), ip_of(&h, "dflt", "bridge")];
    let pids: Vec<u32> = names.iter().map(|n| pid_of(&h, n)).collect();
    wait_until("srv answers", Duration::from_secs(10), || {
        probe_exec(&h, "cli", "10.75.1.10").contains("hello-rc")
    });
    let running = h.snapshot();

    let status = h.stop_daemon().expect("the daemon was running");
    assert!(status.success(), "graceful stop: {status:?}\n{}", h.daemon_log());
    for (n, p) in names.iter().zip(&pids) {
        assert!(alive(*p), "{n} (pid {p}) died with a clean daemon stop");
    }
    h.start_daemon(&[]);

    // Networks: the same record (subnet, range, gateway, options, labels, endpoints).
    assert_eq!(inspect(&h, &["network", "inspect", "rc-app"]), net_before);
    assert_eq!(inspect(&h, &["network", "inspect", "bridge"]), bridge_before);
    let mut listed: Vec<String> = h
        .cove(&["network", "ls", "--format", "{{.Name}}"])
        .out()
        .lines()
        .map(str::to_string)
        .collect();
    listed.sort();
    assert_eq!(listed, ["bridge", "host", "none", "rc-app"], "built-ins duplicated or lost");
    // Containers: still running, same process, same addresses; the kernel is as it was.
    for (n, p) in names.iter().zip(&pids) {
        let s = state(&h, n);
        assert_eq!(s["Running"], true, "{n}: {s}");
        assert_eq!(s["Pid"], *p, "{n}: {s}");
        assert!(ps_status(&h, n).starts_with("Up"), "{n}: {}", ps_status(&h, n));
    }
    assert_eq!(ip_of(&h, "srv", "rc-app"), ips[0]);
    assert_eq!(ip_of(&h, "cli", "rc-app"), ips[1]);
    assert_eq!(ip_of(&h, "dflt", "bridge"), ips[2]);
    assert_same_as(&h, &running, "after a clean restart");
    assert!(h.sh_ok("ip -o link show rc-app0").contains("mtu 1400"));
    // Traffic: between the two containers, and from a new one.
    assert!(probe_exec(&h, "cli", "10.75.1.10").contains("hello-rc"), "no traffic after restart");
    let out = tcp_probe(&h, &["--network", "rc-app"], "10.75.1.10");
    assert!(out.stdout.contains("hello-rc"), "{out}");

    // IPAM: new containers never get an address already in use.
    h.cove(&["run", "-d", "--name", "new1", "--network", "rc-app", "busybox", "sleep", "600"]).ok();
    h.cove(&["run", "-d", "--name", "new2", "busybox", "sleep", "600"]).ok();
    let new1 = ip_of(&h, "new1", "rc-app");
    let new2 = ip_of(&h, "new2", "bridge");
    assert!(!ips.contains(&new1) && new1.starts_with("10.75.1."), "{new1} vs {ips:?}");
    assert!(!ips.contains(&new2), "{new2} vs {ips:?}");
    assert_ne!(new1, "10.75.1.254", "the gateway was handed out");

    h.cove(&["rm", "-f", "srv", "cli", "dflt", "new1", "new2"]).ok();
    h.cove(&["network", "rm", "rc-app"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn kill9_leaves_containers_running_and_restart_adopts_them() {
    let mut h = host("kill9_leaves_containers_running_and_restart_adopts_them");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.76.1.0/24", "rc-k"]).ok();
    tcp_server(&h, "srv", &["--network", "rc-k", "--ip", "10.76.1.10"], "alive");
    h.cove(&["run", "-d", "--name", "cli", "--network", "rc-k", "busybox", "sleep", "600"]).ok();
    let (srv_pid, cli_pid) = (pid_of(&h, "srv"), pid_of(&h, "cli"));
    let cli_ip = ip_of(&h, "cli", "rc-k");
    wait_until("srv answers the fake host", Duration::from_secs(10), || {
        host_probe(&h, "10.76.1.10").contains("alive")
    });
    let running = h.snapshot();

    h.kill_daemon();
    // The daemon is dead; the containers, their links and their traffic are not.
    assert!(alive(srv_pid) && alive(cli_pid), "containers died with the daemon");
    assert!(host_probe(&h, "10.76.1.10").contains("alive"), "host -> srv while daemon dead");
    // srv's loop starts a new `nc -l` after each connection: a probe right after the last
    // one can find nobody listening yet, so it is tried again within a few seconds.
    wait_until("cli -> srv while the daemon is dead", Duration::from_secs(5), || {
        probe_from_pid(&h, cli_pid, "10.76.1.10").contains("alive")
    });
    assert_same_as(&h, &running, "while the daemon is dead");

    h.start_daemon(&[]);
    for (n, p) in [("srv", srv_pid), ("cli", cli_pid)] {
        let s = state(&h, n);
        assert_eq!((s["Running"].clone(), s["Pid"].clone()), (true.into(), p.into()), "{n}: {s}");
        assert!(ps_status(&h, n).starts_with("Up"), "{n}: {}", ps_status(&h, n));
    }
    assert_eq!(ip_of(&h, "srv", "rc-k"), "10.76.1.10");
    assert_eq!(ip_of(&h, "cli", "rc-k"), cli_ip);
    assert_same_as(&h, &running, "after the restart");
    assert!(probe_exec(&h, "cli", "10.76.1.10").contains("alive"), "cli -> srv after restart");
    let out = tcp_probe(&h, &["--network", "rc-k"], "10.76.1.10");
    assert!(out.stdout.contains("alive"), "{out}");
    // The adopted containers are still managed: stop gives their exit, rm -f cleans up.
    h.cove(&["stop", "-t", "1", "cli"]).ok();
    assert!(ps_status(&h, "cli").starts_with("Exited"), "{}", ps_status(&h, "cli"));

    h.cove(&["rm", "-f", "srv", "cli"]).ok();
    h.cove(&["network", "rm", "rc-k"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn container_exiting_while_daemon_is_down_is_recorded_and_released() {
    let mut h = host("container_exiting_while_daemon_is_down_is_recorded_and_released");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.77.1.0/24", "rc-x"]).ok();
    let with_net = h.snapshot();
    h.cove(&[
        "run",
        "-d",
        "--name",
        "ex",
        "--network",
        "rc-x",
        "--ip",
        "10.77.1.20",
        "busybox",
        "sh",
        "-c",
        "sleep 3; exit 4",
    ])
    .ok();
    let id = inspect(&h, &["inspect", "ex"])["Id"].as_str().unwrap().to_string();
    assert_eq!(cv_links(&h).len(), 1, "the running container has one host veth");
    assert_eq!(netns_files(&h), [&id[..12]], "the running container has a sandbox");

    h.kill_daemon();
    wait_no_container_procs(&h);
    h.start_daemon(&[]);

    let s = state(&h, "ex");
    assert_eq!(s["Status"], "exited", "{s}");
    assert_eq!(s["Running"], false, "{s}");
    assert_eq!(s["ExitCode"], 4, "{s}");
    assert!(ps_status(&h, "ex").starts_with("Exited (4)"), "{}", ps_status(&h, "ex"));
    let w = h.cove(&["wait", "ex"]);
    assert_eq!(w.out(), "4", "{w}");
    // Its sandbox is released: no veth, no netns file or mount, no process.
    assert_eq!(cv_links(&h), Vec::<String>::new());
    assert_eq!(netns_files(&h), Vec::<String>::new());
    h.assert_no_leaks(&with_net);
    let v = inspect(&h, &["network", "inspect", "rc-x"]);
    assert_eq!(v["Containers"].as_object().map_or(0, |m| m.len()), 0, "{v}");
    // Its address is free again.
    h.cove(&[
        "run",
        "-d",
        "--name",
        "ex2",
        "--network",
        "rc-x",
        "--ip",
        "10.77.1.20",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    assert_eq!(ip_of(&h, "ex2", "rc-x"), "10.77.1.20");

    h.cove(&["rm", "-f", "ex", "ex2"]).ok();
    h.cove(&["network", "rm", "rc-x"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn orphans_that_look_like_coves_are_removed_at_start_and_nothing_else() {
    let mut h = host("orphans_that_look_like_coves_are_removed_at_start_and_nothing_else");
    let baseline = h.snapshot();
    h.stop_daemon();
    let stray_ns = h.exec_root().join("netns/0123456789ab").display().to_string();
    // Cove marks the links it makes with its link group (1668249189, "cove"), and condemned
    // ones with 1668249208 ("covx"); names prove nothing: a look-alike outside the group
    // stays.
    let (owned, condemned) =
        (cove_drivers::plan::OWNED_LINK_GROUP, cove_drivers::plan::RETIRED_LINK_GROUP);
    h.sh_ok(&format!(
        "ip link add cv0123456789ab group {owned} type veth peer name cvx0123456789a && \
         ip link add br-0123456789ab group {owned} type bridge && \
         ip link set cv0123456789ab master br-0123456789ab && \
         ip link set br-0123456789ab up && ip addr add 10.78.9.1/24 dev br-0123456789ab && \
         ip link add cvdead0 group {condemned} type veth peer name cvdead1 && \
         ip link add foo0 type bridge && ip link set foo0 up && \
         ip addr add 10.78.10.1/24 dev foo0 && \
         ip link add br-notcove type bridge && ip link add br-0123456789ac type bridge && \
         ip link add cv0123456789ac type veth peer name cvx0123456789b && \
         ip link add foov0 type veth peer name foov1 && ip link set foov0 master foo0 && \
         touch {stray_ns} && unshare --net={stray_ns} true"
    ));
    let ns = h.snapshot().netns;
    assert_eq!(ns.len(), 1, "the stray sandbox is mounted: {ns:?}");
    let kept_before = h.sh_ok("ip -o addr show dev foo0");

    h.start_daemon(&[]);
    let links = link_names(&h);
    for gone in ["cv0123456789ab", "cvx0123456789a", "br-0123456789ab", "cvdead0", "cvdead1"] {
        assert!(!links.iter().any(|l| l == gone), "{gone} survived the start: {links:?}");
    }
    let look_alikes = ["br-0123456789ac", "cv0123456789ac", "cvx0123456789b"];
    for kept in ["foo0", "br-notcove", "foov0", "foov1"].iter().chain(&look_alikes) {
        assert!(links.iter().any(|l| l == kept), "{kept} was removed: {links:?}");
    }
    assert_eq!(h.sh_ok("ip -o addr show dev foo0"), kept_before, "foo0 was changed");
    let foo0 = h.sh_ok("ip -o link show foo0");
    let flags = foo0.split('<').nth(1).and_then(|f| f.split('>').next()).unwrap_or("");
    assert!(flags.split(',').any(|f| f == "UP"), "foo0 was set down: {foo0}");
    assert!(!h.sh_ok("ip route").contains("10.78.9.0/24"), "the stray bridge's route stayed");
    assert_eq!(netns_files(&h), Vec::<String>::new(), "the stray sandbox file stayed");
    assert_eq!(h.snapshot().netns, Vec::<String>::new(), "the stray sandbox stayed mounted");
    // The daemon works, and its own bridge is there once, in its group.
    h.cove(&["network", "create", "--subnet", "10.78.1.0/24", "rc-o"]).ok();
    let id = h.cove(&["network", "inspect", "-f", "{{.Id}}", "rc-o"]).ok().stdout.clone();
    let dev = format!("br-{}", &id.trim()[..12]);
    assert!(
        h.sh_ok(&format!("ip -d link show {dev}")).contains(&format!("group {owned}")),
        "the new bridge is not in Cove's link group"
    );
    h.cove(&["network", "rm", "rc-o"]).ok();

    h.sh_ok(
        "ip link del foo0 && ip link del br-notcove && ip link del foov0 && \
         ip link del br-0123456789ac && ip link del cv0123456789ac",
    );
    h.assert_no_leaks(&baseline);
}

/// `run -d --rm` on network rc-r with a fixed address.
fn run_rm(h: &FakeHost, name: &str, ip: &str, cmd: &str) {
    let net = ["--network", "rc-r", "--ip", ip];
    let mut args = vec!["run", "-d", "--rm", "--name", name];
    args.extend(net);
    args.extend(["busybox", "sh", "-c", cmd]);
    h.cove(&args).ok();
}

#[test]
fn rm_containers_that_end_while_daemon_is_down_are_removed_at_start() {
    let mut h = host("rm_containers_that_end_while_daemon_is_down_are_removed_at_start");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.79.1.0/24", "rc-r"]).ok();
    let with_net = h.snapshot();
    run_rm(&h, "gone1", "10.79.1.30", "sleep 3; exit 0");
    run_rm(&h, "gone2", "10.79.1.31", "sleep 600");
    let ids: Vec<String> = ["gone1", "gone2"]
        .iter()
        .map(|n| inspect(&h, &["inspect", n])["Id"].as_str().unwrap().to_string())
        .collect();
    let pid2 = pid_of(&h, "gone2");

    h.kill_daemon();
    // gone1 exits by itself; gone2 is killed from outside while the daemon is down.
    h.sh_ok(&format!("kill -9 {pid2}"));
    wait_no_container_procs(&h);
    h.start_daemon(&[]);

    let all = h.cove(&["ps", "-aq", "--no-trunc"]);
    all.ok();
    for (name, id) in ["gone1", "gone2"].iter().zip(&ids) {
        assert!(!all.stdout.contains(id.as_str()), "{name} was not removed: {all}");
        h.cove(&["inspect", name]).fails();
        let dir = h.inside(h.data_root().join("containers").join(id));
        assert!(!dir.exists(), "{name}'s directory {} was left", dir.display());
    }
    assert_eq!(cv_links(&h), Vec::<String>::new());
    assert_eq!(netns_files(&h), Vec::<String>::new());
    h.assert_no_leaks(&with_net);
    // Their addresses and names are free again.
    run_rm(&h, "gone1", "10.79.1.30", "sleep 600");
    run_rm(&h, "gone2", "10.79.1.31", "sleep 600");
    h.cove(&["rm", "-f", "gone1", "gone2"]).ok();
    h.cove(&["network", "rm", "rc-r"]).ok();
    h.assert_no_leaks(&baseline);
}

/// Start another `cove daemon` on the fake host's socket (`roots`: its data-root and
/// exec-root); wait up to 20 s for it to exit. Returns its status and output.
fn second_daemon(h: &FakeHost, roots: (&Path, &Path)) -> (ExitStatus, String) {
    let bin = env!("CARGO_BIN_EXE_cove");
    let uri = h.host_uri();
    let (data, run) = (roots.0.display().to_string(), roots.1.display().to_string());
    let log_path = h.dir().join("second-daemon.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let argv = [bin, "daemon", "-H", &uri, "--data-root", &data, "--exec-root", &run];
    let mut cmd = h.command(&argv);
    cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "a second daemon on the same socket was still running after 20 s:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&log_path).unwrap_or_default())
}

/// A network with a TCP server on it, for the socket tests.
fn serve_something(h: &FakeHost) {
    h.cove(&["network", "create", "--subnet", "10.80.1.0/24", "rc-s"]).ok();
    tcp_server(h, "srv", &["--network", "rc-s", "--ip", "10.80.1.10"], "still-here");
    wait_until("srv answers the fake host", Duration::from_secs(10), || {
        host_probe(h, "10.80.1.10").contains("still-here")
    });
}

/// The first daemon still serves: API, its container, traffic, and new work.
#[track_caller]
fn first_daemon_still_works(h: &FakeHost) {
    assert!(h.sock_path().exists(), "the first daemon's socket was removed");
    let (code, body) = h.api("GET", "/_ping", None);
    assert_eq!((code, body.as_str()), (200, "OK"));
    assert!(ps_status(h, "srv").starts_with("Up"), "{}", ps_status(h, "srv"));
    assert!(host_probe(h, "10.80.1.10").contains("still-here"), "no traffic to srv");
    h.cove(&["network", "create", "--subnet", "10.80.2.0/24", "rc-s2"]).ok();
    h.cove(&["network", "rm", "rc-s2"]).ok();
}

#[test]
fn stale_socket_is_replaced_and_a_second_daemon_is_refused() {
    let mut h = host("stale_socket_is_replaced_and_a_second_daemon_is_refused");
    let baseline = h.snapshot();
    serve_something(&h);

    h.kill_daemon();
    assert!(h.sock_path().exists(), "kill -9 should leave the socket file behind");
    assert!(std::os::unix::net::UnixStream::connect(h.sock_path()).is_err());
    h.start_daemon(&[]); // starts over the stale socket
    assert!(ps_status(&h, "srv").starts_with("Up"), "{}", ps_status(&h, "srv"));

    let before = h.snapshot();
    let (status, out) = second_daemon(&h, (&h.data_root(), &h.exec_root()));
    assert!(!status.success(), "a second daemon on a live socket must be refused:\n{out}");
    assert!(out.contains("already"), "the refusal should say why:\n{out}");
    assert_same_as(&h, &before, "after a second daemon was refused");
    first_daemon_still_works(&h);

    h.cove(&["rm", "-f", "srv"]).ok();
    h.cove(&["network", "rm", "rc-s"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn second_daemon_with_other_roots_on_a_live_socket_touches_nothing() {
    let h = host("second_daemon_with_other_roots_on_a_live_socket_touches_nothing");
    let baseline = h.snapshot();
    serve_something(&h);
    let before = h.snapshot();
    let (data, run) = (h.state_dir().join("other-data"), h.state_dir().join("other-run"));
    let (status, out) = second_daemon(&h, (&data, &run));
    assert!(!status.success(), "a second daemon on a live socket must be refused:\n{out}");
    assert!(
        out.contains("another cove daemon is already running"),
        "the refusal should say why:\n{out}"
    );
    assert_same_as(&h, &before, "after a second daemon was refused");
    first_daemon_still_works(&h);

    h.cove(&["rm", "-f", "srv"]).ok();
    h.cove(&["network", "rm", "rc-s"]).ok();
    h.assert_no_leaks(&baseline);
}

/// A bridge deleted by hand comes back with its addresses, its ports and their neighbour
/// entries, from the reconcile loop, without a restart: the containers on it talk again.
#[test]
fn a_bridge_deleted_by_hand_is_repaired_with_its_ports() {
    let h = common::host_with(
        "a_bridge_deleted_by_hand_is_repaired_with_its_ports",
        |_| {},
        &["--reconcile-interval", "1"],
    );
    h.cove(&["network", "create", "--subnet", "10.83.0.0/24", "rep"]).ok();
    tcp_server(&h, "rep-srv", &["--network", "rep"], "repaired");
    common::sleeper(&h, "rep-cli", &["--network", "rep"]);
    common::wait_listening(&h, "rep-srv", 8080);
    let ip = ip_of(&h, "rep-srv", "rep");
    let probe = || common::exec_probe(&h, "rep-cli", &ip);
    assert!(probe().stdout.contains("repaired"), "no traffic before (positive control)");
    let id = h.cove(&["network", "inspect", "-f", "{{.Id}}", "rep"]).ok().stdout.clone();
    let bridge = format!("br-{}", &id.trim()[..12]);
    let index = |h: &FakeHost| h.sh_ok(&format!("cat /sys/class/net/{bridge}/ifindex"));
    let before = index(&h);
    h.sh_ok(&format!("ip link del {bridge}"));
    // A new bridge (a new index) with both containers' ports on it.
    common::wait_until("the bridge and its ports to come back", 20, || {
        let ports = h.sh(&format!("ip -o link show master {bridge}"));
        ports.status.success()
            && String::from_utf8_lossy(&ports.stdout).lines().count() == 2
            && index(&h) != before
    });
    let addr = h.sh_ok(&format!("ip -o addr show dev {bridge}"));
    assert!(addr.contains("10.83.0.1/24"), "the gateway address is missing: {addr}");
    common::wait_until("traffic through the repaired bridge", 20, || {
        probe().stdout.contains("repaired")
    });
    h.cove(&["rm", "-f", "rep-srv", "rep-cli"]).ok();
    h.cove(&["network", "rm", "rep"]).ok();
}
