//! Services across three fake hosts with a real etcd, driven by the real `docker` CLI:
//! tasks spread over the nodes and honour constraints and global mode; `tasks.<name>` and
//! the VIP resolve the same on every host; a node that dies has its tasks rescheduled
//! after the grace period and leaves the names; a leader that dies is replaced and the
//! new one converges a scale; restarted daemons re-adopt or remove their containers; and
//! removing everything leaves nothing in etcd or on the hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use cove_testkit::{require_etcd, require_root, Etcd, FakeHost, Netlab};
use serde_json::Value;

mod common;
use common::clients::{docker, docker_lines as lines, first, nslookup_addrs};
use common::multihost::{eventually, FLAGS};

const HOSTS: [&str; 3] = ["h1", "h2", "h3"];

/// Every task of `svc` that runs and is meant to (task JSON), as `h` sees them.
fn running(h: &FakeHost, svc: &str) -> Vec<Value> {
    let (code, body) = h.api("GET", "/tasks", None);
    assert_eq!(code, 200, "{body}");
    let all: Vec<Value> = serde_json::from_str(&body).unwrap();
    let (code, s) = h.api("GET", &format!("/services/{svc}"), None);
    if code != 200 {
        return vec![];
    }
    let id = serde_json::from_str::<Value>(&s).unwrap()["ID"].clone();
    all.into_iter()
        .filter(|t| t["ServiceID"] == id)
        .filter(|t| t["DesiredState"] == "running" && t["Status"]["State"] == "running")
        .collect()
}

fn ip_of_task(t: &Value) -> String {
    let a = t["NetworksAttachments"][0]["Addresses"][0].as_str().unwrap_or_default();
    a.split('/').next().unwrap_or_default().to_string()
}

/// `nslookup <name>` from the running container `client` on `h` (sorted addresses).
fn lookup(h: &FakeHost, client: &str, name: &str) -> Vec<String> {
    nslookup_addrs(&docker(h, &["exec", client, "nslookup", name, "127.0.0.11"]).stdout)
}

/// Node id by hostname, from `docker node ls` on `h`.
fn node_ids(h: &FakeHost) -> BTreeMap<String, String> {
    lines(h, &["node", "ls", "--format", "{{.Hostname}} {{.ID}}"])
        .iter()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())))
        .collect()
}

fn leader(h: &FakeHost) -> Option<String> {
    lines(h, &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}} {{.Status}}"])
        .iter()
        .find(|l| l.contains(" Leader "))
        .map(|l| l.split(' ').next().unwrap_or_default().to_string())
}

#[test]
fn multihost_services_spread_fail_over_and_leave_nothing() {
    require_root();
    require_etcd!();
    if !cove_testkit::have_command("docker") {
        cove_testkit::skip!("the docker CLI is not installed");
    }
    let mut lab =
        Netlab::with_hosts("multihost_services", Path::new(env!("CARGO_BIN_EXE_cove")), 3);
    let etcd = Etcd::start_in("multihost_services", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    let mut flags: Vec<&str> = FLAGS.to_vec();
    flags.extend(["--node-down-grace", "2", "--label", "host={name}"]);
    lab.start_daemons(&HOSTS, &flags);
    for h in HOSTS {
        lab.host(h).import_busybox("bb");
    }
    // Before the baseline: each host's VXLAN guard knows every node (underlay and tunnel
    // addresses), which the first cluster syncs settle.
    for h in HOSTS {
        let host = lab.host(h);
        let guard = || host.sh_ok("nft list chain inet cove raw_prerouting");
        assert!(
            eventually(20, || {
                let g = guard();
                (1..=3).all(|n| {
                    g.contains(&format!("203.0.113.1{n}")) && g.contains(&format!("10.255.0.{n}"))
                })
            }),
            "{h}'s VXLAN guard never listed every node: {}",
            guard()
        );
    }
    let baseline: Vec<_> = HOSTS.iter().map(|h| lab.host(h).snapshot()).collect();

    // Three managers, one leader, on every host's view.
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    assert!(eventually(15, || node_ids(h1).len() == 3), "{:?}", node_ids(h1));
    let ids = node_ids(h1);
    assert!(eventually(10, || leader(h1).is_some() && leader(h1) == leader(h2)));

    let ov1_id = docker(
        h1,
        &["network", "create", "-d", "overlay", "--attachable", "--subnet", "10.0.9.0/24", "ov1"],
    )
    .ok()
    .stdout
    .trim()
    .to_string();
    let page = "mkdir -p /www; echo $HOSTNAME > /www/index.html; exec httpd -f -p 80 -h /www";
    docker(
        h1,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "web",
            "--replicas",
            "3",
            "--network",
            "ov1",
            "--hostname",
            "{{.Task.Name}}",
            "bb",
            "sh",
            "-c",
            page,
        ],
    )
    .ok();
    assert!(eventually(60, || running(h1, "web").len() == 3), "web never ran 3 tasks");
    let tasks = running(h1, "web");
    let on: BTreeSet<String> =
        tasks.iter().filter_map(|t| t["NodeID"].as_str().map(str::to_string)).collect();
    assert_eq!(on.len(), 3, "3 tasks on 3 equal nodes are spread one per node: {tasks:?}");

    // A client on h2 reaches every task by address and resolves the same names as h1.
    docker(h2, &["run", "-d", "--name", "client", "--network", "ov1", "bb", "sleep", "900"]).ok();
    let mut ips: Vec<String> = tasks.iter().map(ip_of_task).collect();
    ips.sort();
    assert!(
        eventually(5, || lookup(h2, "client", "tasks.web") == ips),
        "{:?} vs {ips:?}",
        lookup(h2, "client", "tasks.web")
    );
    let svc = first(docker(h1, &["service", "inspect", "web"]).json());
    let vip = svc["Endpoint"]["VirtualIPs"][0]["Addr"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(lookup(h2, "client", "web"), [vip]);
    for t in &tasks {
        let r = docker(
            h2,
            &["exec", "client", "wget", "-q", "-O-", &format!("http://{}/", ip_of_task(t))],
        );
        r.ok();
        assert!(r.stdout.trim().starts_with("web."), "{r:?}");
    }

    // The VIP balances across hosts: from h2, new connections reach all three tasks, the
    // remote ones over the overlay (each answers 30 +- 4.7 times of 90).
    let r = docker(
        h2,
        &["exec", "client", "sh", "-c", "for i in $(seq 90); do wget -q -O- http://web/; done"],
    );
    r.ok();
    let mut per_task = BTreeMap::<String, usize>::new();
    for l in r.stdout.lines().filter(|l| !l.is_empty()) {
        *per_task.entry(l.trim().to_string()).or_default() += 1;
    }
    assert_eq!(per_task.len(), 3, "{per_task:?}");
    assert_eq!(per_task.values().sum::<usize>(), 90, "{per_task:?}");
    assert!(per_task.values().all(|n| (9..=51).contains(n)), "{per_task:?}");

    // Constraints and global mode.
    docker(
        h1,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "pin",
            "--replicas",
            "2",
            "--constraint",
            "node.labels.host==h3",
            "bb",
            "sleep",
            "900",
        ],
    )
    .ok();
    docker(
        h2,
        &["service", "create", "-d", "--name", "agent", "--mode", "global", "bb", "sleep", "900"],
    )
    .ok();
    assert!(eventually(60, || running(h1, "pin").len() == 2 && running(h1, "agent").len() == 3));
    assert!(running(h1, "pin").iter().all(|t| t["NodeID"] == ids["h3"].as_str()));
    let agent_nodes: BTreeSet<String> = running(h1, "agent")
        .iter()
        .filter_map(|t| t["NodeID"].as_str().map(str::to_string))
        .collect();
    assert_eq!(agent_nodes.len(), 3);

    // The routing mesh: a port published by tasks that all run on h3 answers on h2 too,
    // which SNATs to its own address on the network so the replies come back to it.
    docker(
        h1,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "mesh",
            "--replicas",
            "2",
            "--constraint",
            "node.labels.host==h3",
            "--network",
            "ov1",
            "-p",
            "8090:80",
            "--hostname",
            "{{.Task.Name}}",
            "bb",
            "sh",
            "-c",
            page,
        ],
    )
    .ok();
    assert!(eventually(60, || running(h1, "mesh").len() == 2));
    let fetch = "for i in $(seq 10); do timeout 5 wget -q -O- http://203.0.113.12:8090/; done";
    assert!(
        eventually(20, || h1
            .sh(fetch)
            .stdout
            .split(|b| *b == b'\n')
            .filter(|l| l.starts_with(b"mesh."))
            .count()
            == 10),
        "h2 did not answer the mesh port from h3's tasks: {}",
        String::from_utf8_lossy(&h1.sh(fetch).stdout)
    );
    let lb = h2.sh_ok(&format!("ip -4 -o addr show dev lb{}", &ov1_id[..12]));
    assert!(lb.contains("10.0.9."), "h2 has no node address on ov1: {lb}");

    // h3's daemon dies: after its lease and the grace period, its web task runs elsewhere
    // and leaves the names; pinned tasks wait, global mode does not move.
    let h3_web = tasks.iter().find(|t| t["NodeID"] == ids["h3"].as_str()).map(ip_of_task).unwrap();
    lab.host_mut("h3").kill_daemon();
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    assert!(
        eventually(60, || {
            let r = running(h1, "web");
            r.len() == 3 && r.iter().all(|t| t["NodeID"] != ids["h3"].as_str())
        }),
        "web was not rescheduled off h3: {:?}",
        running(h1, "web")
    );
    assert!(eventually(10, || !lookup(h2, "client", "tasks.web").contains(&h3_web)));
    assert_eq!(lookup(h2, "client", "tasks.web").len(), 3);
    let pin_state = lines(
        h1,
        &[
            "service",
            "ps",
            "--format",
            "{{.CurrentState}} {{.Error}}",
            "--filter",
            "desired-state=running",
            "pin",
        ],
    );
    assert!(pin_state.iter().all(|l| l.starts_with("Pending")), "{pin_state:?}");
    assert_eq!(running(h1, "agent").len(), 2);

    // The leader dies (if h3 led, h1 or h2 took over already): the other one leads and a
    // scale converges.
    assert!(eventually(20, || leader(h1).is_some_and(|l| l != "h3")));
    let led = leader(h1).unwrap();
    let other = if led == "h1" { "h2" } else { "h1" };
    lab.host_mut(&led).kill_daemon();
    let o = lab.host(other);
    assert!(eventually(30, || leader(o).as_deref() == Some(other)), "{other} never led");
    docker(o, &["service", "scale", "-d", "web=4"]).ok();
    assert!(
        eventually(60, || {
            let r = running(o, "web");
            r.len() == 4 && r.iter().all(|t| t["NodeID"] == ids[other].as_str())
        }),
        "web=4 never converged on {other}: {:?}",
        running(o, "web")
    );

    // The dead come back: their containers of tasks that moved are removed, the rest kept.
    for h in [led.as_str(), "h3"] {
        let args: Vec<String> = flags
            .iter()
            .map(|a| a.replace("{addr}", &lab.addr(h).to_string()).replace("{name}", h))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.host_mut(h).start_daemon(&args);
    }
    let h1 = lab.host("h1");
    assert!(eventually(60, || running(h1, "pin").len() == 2), "pin never ran again on h3");
    assert!(eventually(60, || running(h1, "agent").len() == 3));
    let h3 = lab.host("h3");
    assert!(
        eventually(30, || {
            let names =
                lines(h3, &["ps", "--format", "{{.Label \"com.docker.swarm.service.name\"}}"]);
            names.iter().filter(|n| *n == "web").count()
                == running(h1, "web").iter().filter(|t| t["NodeID"] == ids["h3"].as_str()).count()
        }),
        "h3 kept containers of web tasks that moved away"
    );

    // Everything goes, everywhere.
    docker(h1, &["rm", "-f", "client"]).ok();
    let h2 = lab.host("h2");
    docker(h2, &["rm", "-f", "client"]).ok();
    docker(h1, &["service", "rm", "web", "pin", "agent", "mesh"]).ok();
    for h in HOSTS {
        let host = lab.host(h);
        assert!(
            eventually(60, || lines(host, &["ps", "-aq"]).is_empty()),
            "{h} kept containers: {:?}",
            lines(host, &["ps", "-a"])
        );
    }
    assert!(eventually(30, || etcd
        .etcdctl(&["get", "--prefix", "--keys-only", "/cove/v1/tasks/"])
        .stdout
        .trim()
        .is_empty()));
    docker(lab.host("h1"), &["network", "rm", "ov1"]).ok();
    for (i, h) in HOSTS.iter().enumerate() {
        common::assert_same_as(lab.host(h), &baseline[i], "after removing every service");
    }
    let left = etcd.etcdctl(&["get", "--prefix", "--keys-only", "/cove/v1/"]).stdout.clone();
    for k in left.lines().filter(|l| !l.is_empty()) {
        assert!(common::multihost::membership_key(k), "etcd kept {k}");
    }
}
