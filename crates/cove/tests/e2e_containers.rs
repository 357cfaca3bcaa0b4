//! End-to-end: the container lifecycle through the CLI, the files a container gets, static
//! addresses, sandboxes released on stop, and images.

mod common;

use common::{exec_ok, host, inspect, ip_of, sleeper, wait_until};
use cove_testkit::FakeHost;
use std::time::{Duration, Instant};

/// `State.Status` of a container.
fn status_of(h: &FakeHost, c: &str) -> String {
    let r = h.cove(&["container", "inspect", "--format", "{{.State.Status}}", c]);
    r.out().to_string()
}

/// The row of `ps` (with `-a` when `all`) whose NAMES column is `name`, if any.
fn ps_row(h: &FakeHost, all: bool, name: &str) -> Option<String> {
    let r = h.cove(if all { &["ps", "-a"][..] } else { &["ps"][..] });
    r.ok();
    r.stdout.lines().skip(1).find(|l| l.split_whitespace().last() == Some(name)).map(String::from)
}

/// Host-side ends of container veths (`cv<12 hex>`) in the fake host.
fn container_veths(h: &FakeHost) -> Vec<String> {
    h.sh_ok("ip -o link show")
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| {
            n.len() == 14 && n.starts_with("cv") && n[2..].bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect()
}

#[test]
fn container_lifecycle_through_the_cli() {
    let h = host("container_lifecycle_through_the_cli");
    let baseline = h.snapshot();
    let net_id = h.cove(&["network", "create", "--subnet", "10.81.1.0/24", "n1"]).out().to_string();
    let script = "echo to-out; echo to-err >&2; exec sleep 600";
    let run =
        h.cove(&["run", "-d", "--name", "c", "--network", "n1", "busybox", "sh", "-c", script]);
    run.ok();
    let id = run.out().to_string();
    assert_eq!(id.len(), 64, "{run}");

    // ps: docker's columns, the container Up.
    let ps = h.cove(&["ps"]);
    ps.ok();
    let header = ps.stdout.lines().next().unwrap_or_default();
    let mut at = 0;
    for col in ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"] {
        let pos = header[at..].find(col).unwrap_or_else(|| panic!("no {col} after {at}: {ps}"));
        at += pos + col.len();
    }
    let row = ps_row(&h, false, "c").unwrap_or_else(|| panic!("c not listed: {ps}"));
    assert!(row.starts_with(&id[..12]), "{row}");
    assert!(row.contains("busybox") && row.contains("Up "), "{row}");
    let q = h.cove(&["ps", "-a", "-q"]);
    assert_eq!(q.out(), &id[..12], "{q}");
    assert_eq!(h.cove(&["ps", "--format", "{{.Names}}"]).out(), "c");

    // logs: stdout and stderr lines, each on its own stream.
    wait_until("both log lines", 5, || h.cove(&["logs", "c"]).stderr.contains("to-err"));
    let logs = h.cove(&["logs", "c"]);
    logs.ok();
    assert_eq!(logs.out(), "to-out", "{logs}");
    assert_eq!(logs.stderr.trim(), "to-err", "{logs}");

    // exec: output, exit code, stdin.
    assert_eq!(exec_ok(&h, "c", &["echo", "hello"]).trim(), "hello");
    let r = h.cove(&["exec", "c", "sh", "-c", "exit 7"]);
    assert_eq!(r.status, 7, "{r}");
    let r = h.cove_stdin(&["exec", "-i", "c", "cat"], b"ping\n");
    r.ok();
    assert_eq!(r.out(), "ping", "{r}");

    // inspect: Docker's shape while running.
    let v = inspect(&h, &["inspect", "c"]);
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(v["Name"], "/c");
    assert_eq!(v["State"]["Status"], "running", "{v}");
    assert_eq!(v["State"]["Running"], true);
    assert!(v["State"]["Pid"].as_i64().unwrap_or(0) > 0, "{v}");
    assert_eq!(v["State"]["ExitCode"], 0);
    assert_eq!(v["Config"]["Hostname"], &id[..12]);
    assert_eq!(v["HostConfig"]["NetworkMode"], "n1");
    assert!(!v["NetworkSettings"]["SandboxKey"].as_str().unwrap_or("").is_empty(), "{v}");
    let n = &v["NetworkSettings"]["Networks"]["n1"];
    let ip = n["IPAddress"].as_str().unwrap_or_default();
    assert!(ip.starts_with("10.81.1."), "{v}");
    assert_eq!(n["IPPrefixLen"], 24);
    assert_eq!(n["Gateway"], "10.81.1.1");
    assert!(n["MacAddress"].as_str().unwrap_or_default().starts_with("02:42:"), "{v}");
    assert_eq!(n["NetworkID"], net_id.as_str());
    assert_eq!(n["EndpointID"].as_str().unwrap_or_default().len(), 64, "{v}");

    // stop: exited by SIGTERM or, after the grace time, SIGKILL.
    h.cove(&["stop", "-t", "1", "c"]).ok().stdout_has("c");
    assert!(ps_row(&h, false, "c").is_none(), "a stopped container is listed by ps");
    let row = ps_row(&h, true, "c").expect("ps -a lists the stopped container");
    assert!(row.contains("Exited (143)") || row.contains("Exited (137)"), "{row}");
    let v = inspect(&h, &["inspect", "c"]);
    assert_eq!(v["State"]["Status"], "exited", "{v}");
    assert_eq!(v["State"]["Running"], false);
    assert_eq!(v["State"]["Pid"], 0);
    let code = v["State"]["ExitCode"].as_i64().unwrap_or_default();
    assert!(code == 143 || code == 137, "{v}");

    // start again, restart (a new process), kill.
    h.cove(&["start", "c"]).ok();
    assert!(ps_row(&h, false, "c").expect("running again").contains("Up "));
    let pid1 = inspect(&h, &["inspect", "c"])["State"]["Pid"].as_i64().unwrap_or(0);
    h.cove(&["restart", "-t", "1", "c"]).ok();
    let v = inspect(&h, &["inspect", "c"]);
    assert_eq!(v["State"]["Status"], "running", "{v}");
    let pid2 = v["State"]["Pid"].as_i64().unwrap_or(0);
    assert!(pid2 > 0 && pid2 != pid1, "restart kept pid {pid1}: {v}");
    h.cove(&["kill", "c"]).ok();
    wait_until("c to exit after kill", 10, || status_of(&h, "c") == "exited");
    assert_eq!(inspect(&h, &["inspect", "c"])["State"]["ExitCode"], 137);

    // rm of a running container is refused with a clear message; rm -f works.
    h.cove(&["start", "c"]).ok();
    h.cove(&["rm", "c"]).fails().stderr_has("container is running");
    h.cove(&["rm", "-f", "c"]).ok();
    assert!(h.cove(&["ps", "-a", "-q"]).out().is_empty());
    h.cove(&["container", "inspect", "c"]).fails().stderr_has("No such container");

    // logs -f of a short-lived container ends when it exits.
    let short = "echo one; sleep 1; echo two";
    h.cove(&["run", "-d", "--name", "short", "--network", "n1", "busybox", "sh", "-c", short]).ok();
    let t0 = Instant::now();
    let logs = h.cove(&["logs", "-f", "short"]);
    logs.ok();
    assert!(t0.elapsed() < Duration::from_secs(15), "logs -f did not end: {logs}");
    assert_eq!(logs.stdout.lines().collect::<Vec<_>>(), ["one", "two"], "{logs}");

    // wait prints the exit code.
    h.cove(&[
        "run",
        "-d",
        "--name",
        "w",
        "--network",
        "n1",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 5",
    ])
    .ok();
    assert_eq!(h.cove(&["wait", "w"]).ok().out(), "5");
    assert_eq!(h.cove(&["wait", "w"]).ok().out(), "5", "wait on an exited container");
    h.cove(&["rm", "w", "short"]).ok();

    // run --rm in the foreground: output, exit code, and the container is gone.
    let r = h.cove(&[
        "run",
        "--rm",
        "--name",
        "fg",
        "--network",
        "n1",
        "busybox",
        "sh",
        "-c",
        "echo hi; exit 3",
    ]);
    assert_eq!(r.status, 3, "{r}");
    assert_eq!(r.out(), "hi", "{r}");
    wait_until("fg to be removed", 5, || !h.cove(&["container", "inspect", "fg"]).success());
    assert!(h.cove(&["ps", "-a", "-q"]).out().is_empty());

    h.cove(&["network", "rm", "n1"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn generated_hostname_hosts_and_resolv_conf() {
    let h = host("generated_hostname_hosts_and_resolv_conf");
    h.set_resolv_conf(
        "nameserver 127.0.0.53\nnameserver 203.0.113.53\nnameserver ::1\nsearch lan.test\n",
    );
    let baseline = h.snapshot();

    // Defaults: the short id as hostname, the host's resolvers without loopback ones.
    let id = h.cove(&["run", "-d", "--name", "d1", "busybox", "sleep", "600"]).out().to_string();
    let short = &id[..12];
    assert_eq!(exec_ok(&h, "d1", &["cat", "/etc/hostname"]).trim(), short);
    assert_eq!(exec_ok(&h, "d1", &["hostname"]).trim(), short);
    let ip = ip_of(&h, "d1", "bridge");
    let hosts = exec_ok(&h, "d1", &["cat", "/etc/hosts"]);
    assert!(has_entry(&hosts, "127.0.0.1", "localhost"), "{hosts}");
    assert!(has_entry(&hosts, &ip, short), "{hosts}");
    let resolv = exec_ok(&h, "d1", &["cat", "/etc/resolv.conf"]);
    let servers = nameservers(&resolv);
    assert_eq!(servers, ["203.0.113.53"], "loopback resolvers must be dropped: {resolv}");
    assert!(resolv.lines().any(|l| l.trim() == "search lan.test"), "{resolv}");

    // Flags: --hostname, --add-host (with host-gateway), --dns*.
    let d2 = [
        "run",
        "-d",
        "--name",
        "d2",
        "--hostname",
        "h1",
        "--add-host",
        "db:10.1.2.3",
        "--add-host",
        "gw:host-gateway",
        "--dns",
        "203.0.113.9",
        "--dns-search",
        "example.org",
        "--dns-option",
        "ndots:3",
        "busybox",
        "sleep",
        "600",
    ];
    h.cove(&d2).ok();
    assert_eq!(exec_ok(&h, "d2", &["cat", "/etc/hostname"]).trim(), "h1");
    assert_eq!(exec_ok(&h, "d2", &["hostname"]).trim(), "h1");
    let ip = ip_of(&h, "d2", "bridge");
    let hosts = exec_ok(&h, "d2", &["cat", "/etc/hosts"]);
    assert!(has_entry(&hosts, &ip, "h1"), "{hosts}");
    assert!(has_entry(&hosts, "10.1.2.3", "db"), "{hosts}");
    assert!(has_entry(&hosts, "172.17.0.1", "gw"), "host-gateway is the bridge gateway: {hosts}");
    let resolv = exec_ok(&h, "d2", &["cat", "/etc/resolv.conf"]);
    assert_eq!(nameservers(&resolv), ["203.0.113.9"], "{resolv}");
    assert!(resolv.lines().any(|l| l.trim() == "search example.org"), "{resolv}");
    assert!(resolv.lines().any(|l| l.trim() == "options ndots:3"), "{resolv}");

    h.cove(&["rm", "-f", "d1", "d2"]).ok();
    h.assert_no_leaks(&baseline);
}

/// Whether `/etc/hosts` text maps `ip` to `name` (among the line's names).
fn has_entry(hosts: &str, ip: &str, name: &str) -> bool {
    hosts.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next() == Some(ip) && f.any(|n| n == name)
    })
}

/// The `nameserver` lines of a resolv.conf, in order.
fn nameservers(resolv: &str) -> Vec<&str> {
    resolv.lines().filter_map(|l| l.trim().strip_prefix("nameserver")).map(str::trim).collect()
}

#[test]
fn static_ips_are_checked_kept_and_released() {
    let h = host("static_ips_are_checked_kept_and_released");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.81.7.0/24", "s7"]).ok();

    // Outside the subnet: refused, naming the address and the subnet.
    let r = h.cove(&[
        "run",
        "-d",
        "--name",
        "out",
        "--network",
        "s7",
        "--ip",
        "10.81.9.5",
        "busybox",
        "sleep",
        "600",
    ]);
    r.fails();
    assert!(r.stderr.contains("10.81.9.5") && r.stderr.contains("subnet"), "{r}");
    assert_eq!(r.status, 125, "{r}");

    // In use by a running container.
    sleeper(&h, "a", &["--network", "s7", "--ip", "10.81.7.10"]);
    let r = h.cove(&[
        "run",
        "-d",
        "--name",
        "b",
        "--network",
        "s7",
        "--ip",
        "10.81.7.10",
        "busybox",
        "sleep",
        "600",
    ]);
    r.fails().stderr_has("Address already in use");
    assert_ne!(status_of(&h, "b"), "running");

    // On the default bridge.
    let r =
        h.cove(&["run", "-d", "--name", "dflt", "--ip", "172.17.0.50", "busybox", "sleep", "600"]);
    r.fails().stderr_has("user defined networks");

    // Stopped and started again: the same address, in the kernel too.
    h.cove(&["stop", "-t", "1", "a"]).ok();
    h.cove(&["start", "a"]).ok();
    assert_eq!(ip_of(&h, "a", "s7"), "10.81.7.10");
    let addrs = exec_ok(&h, "a", &["ip", "-o", "addr", "show", "eth0"]);
    assert!(addrs.contains("10.81.7.10/24"), "{addrs}");

    // A dynamic address is released on stop: another container can take it.
    sleeper(&h, "dyn", &["--network", "s7"]);
    let dyn_ip = ip_of(&h, "dyn", "s7");
    h.cove(&["stop", "-t", "1", "dyn"]).ok();
    sleeper(&h, "taker", &["--network", "s7", "--ip", &dyn_ip]);
    assert_eq!(ip_of(&h, "taker", "s7"), dyn_ip);
    let addrs = exec_ok(&h, "taker", &["ip", "-o", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{dyn_ip}/24")), "{addrs}");
    h.cove(&["start", "dyn"]).ok();
    let again = ip_of(&h, "dyn", "s7");
    assert!(again.starts_with("10.81.7.") && again != dyn_ip, "{again}");

    for c in ["a", "taker", "dyn"] {
        h.cove(&["rm", "-f", c]).ok();
    }
    for c in ["out", "b", "dflt"] {
        // Docker keeps containers whose start failed (state "created"); Cove may not.
        let _ = h.cove(&["rm", "-f", c]);
    }
    h.cove(&["network", "rm", "s7"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn stop_releases_the_sandbox_and_start_recreates_it() {
    let h = host("stop_releases_the_sandbox_and_start_recreates_it");
    let baseline = h.snapshot();
    assert!(container_veths(&h).is_empty());
    h.cove(&["network", "create", "--subnet", "10.81.8.0/24", "s8"]).ok();
    sleeper(&h, "s", &["--network", "s8"]);
    assert_eq!(container_veths(&h).len(), 1, "{}", h.sh_ok("ip -o link show"));
    let v = inspect(&h, &["inspect", "s"]);
    let key = v["NetworkSettings"]["SandboxKey"].as_str().unwrap_or_default().to_string();
    assert!(!key.is_empty(), "{v}");
    assert!(h.inside(&key).exists(), "sandbox {key} missing");

    h.cove(&["stop", "-t", "1", "s"]).ok();
    wait_until("the veth to go", 5, || container_veths(&h).is_empty());
    let v = inspect(&h, &["inspect", "s"]);
    assert_eq!(v["NetworkSettings"]["Networks"]["s8"]["IPAddress"], "", "{v}");
    assert_eq!(v["NetworkSettings"]["SandboxKey"], "", "{v}");
    assert!(!h.inside(&key).exists(), "sandbox {key} left behind");

    h.cove(&["start", "s"]).ok();
    assert_eq!(container_veths(&h).len(), 1);
    let ip = ip_of(&h, "s", "s8");
    assert!(ip.starts_with("10.81.8."), "{ip}");
    let addrs = exec_ok(&h, "s", &["ip", "-o", "addr", "show", "eth0"]);
    assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");
    assert!(exec_ok(&h, "s", &["ip", "route"]).contains("default via 10.81.8.1"));

    h.cove(&["rm", "-f", "s"]).ok();
    h.cove(&["network", "rm", "s8"]).ok();
    h.assert_no_leaks(&baseline);
}

#[test]
fn images_list_remove_import_and_missing() {
    let h = host("images_list_remove_import_and_missing");
    let baseline = h.snapshot();
    let ls = h.cove(&["image", "ls"]);
    ls.ok();
    let header = ls.stdout.lines().next().unwrap_or_default();
    assert!(header.contains("REPOSITORY") && header.contains("TAG"), "{ls}");
    assert!(ls.stdout.lines().any(|l| l.starts_with("busybox ")), "{ls}");

    // In use by a container: refused (409), and still listed.
    sleeper(&h, "user", &["--network", "none"]);
    h.cove(&["image", "rm", "busybox"]).fails().stderr_has("is using its referenced image");
    let (status, body) = h.api("DELETE", "/v1.45/images/busybox", None);
    assert_eq!(status, 409, "{body}");
    assert!(h.cove(&["image", "ls"]).stdout.contains("busybox"));

    // A second tag.
    let tar = h.dir().join("busybox.tar").display().to_string();
    h.cove(&["image", "import", &tar, "busybox:v2"]).ok();
    let ls = h.cove(&["image", "ls"]);
    assert!(ls.stdout.lines().any(|l| l.split_whitespace().take(2).eq(["busybox", "v2"])), "{ls}");
    h.cove(&["run", "-d", "--name", "v2", "--network", "none", "busybox:v2", "sleep", "600"]).ok();
    assert_eq!(exec_ok(&h, "v2", &["echo", "from-v2"]).trim(), "from-v2");

    // A missing image.
    let r = h.cove(&["run", "--rm", "nosuch:1.0", "true"]);
    r.fails().stderr_has("No such image");
    assert_eq!(r.status, 125, "{r}");

    h.cove(&["rm", "-f", "user", "v2"]).ok();
    h.cove(&["image", "rm", "busybox:v2"]).ok();
    assert!(!h.cove(&["image", "ls"]).stdout.contains("v2"));
    h.assert_no_leaks(&baseline);
}
