//! Services on a single host (a cluster of one, as a one-node swarm), driven by the real
//! `docker` CLI: `docker info` and `docker node ls` see an active manager; `docker service
//! create/ls/ps/inspect/scale/update/rm` run tasks as containers with Docker's labels; the
//! embedded DNS answers the service name (its VIP, or its tasks in dnsrr mode) and
//! `tasks.<name>`; bad specs are refused naming the problem; and nothing is left behind.

mod common;

use std::collections::BTreeSet;

use common::clients::{docker, docker_lines as lines, first, nslookup_addrs};
use serde_json::Value;

fn need_docker() -> bool {
    cove_testkit::have_command("docker") && cove_testkit::have_command("timeout")
}

/// The addresses `nslookup <name>` returns in a fresh container on `net` (sorted), or
/// the empty list when the name does not resolve.
fn lookup(h: &cove_testkit::FakeHost, net: &str, name: &str) -> Vec<String> {
    let r =
        docker(h, &["run", "--rm", "--network", net, "busybox", "nslookup", name, "127.0.0.11"]);
    nslookup_addrs(&r.stdout)
}

/// The tasks of a service that are meant to run and run, as `docker service ps` JSON.
fn running_tasks(h: &cove_testkit::FakeHost, svc: &str) -> Vec<Value> {
    let ids = lines(h, &["service", "ps", "-q", "--filter", "desired-state=running", svc]);
    if ids.is_empty() {
        return vec![];
    }
    let mut args = vec!["inspect", "--type", "task"];
    args.extend(ids.iter().map(String::as_str));
    let r = docker(h, &args);
    r.ok();
    r.json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| t["Status"]["State"] == "running")
        .collect()
}

/// The task addresses (without prefix length) on the service's first network.
fn task_ips(tasks: &[Value]) -> Vec<String> {
    let mut ips: Vec<String> = tasks
        .iter()
        .filter_map(|t| t["NetworksAttachments"][0]["Addresses"][0].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect();
    ips.sort();
    ips
}

fn wait_running(h: &cove_testkit::FakeHost, svc: &str, n: usize) -> Vec<Value> {
    let mut tasks = vec![];
    common::wait_until(&format!("{n} running tasks of {svc}"), 60, || {
        tasks = running_tasks(h, svc);
        tasks.len() == n && count_containers(h, svc) == n
    });
    tasks
}

fn count_containers(h: &cove_testkit::FakeHost, svc: &str) -> usize {
    let filter = format!("label=com.docker.swarm.service.name={svc}");
    lines(h, &["ps", "-q", "--filter", &filter]).len()
}

#[test]
fn services_on_a_single_host_with_the_docker_cli() {
    if !need_docker() {
        cove_testkit::skip!("the docker CLI is not installed");
    }
    let h = common::host("services_on_a_single_host_with_the_docker_cli");
    let baseline = h.snapshot();

    // A cluster of one: an active manager that leads.
    let info = docker(&h, &["info", "--format", "{{json .Swarm}}"]).json();
    assert_eq!(info["LocalNodeState"], "active", "{info}");
    assert_eq!(info["ControlAvailable"], true, "{info}");
    assert!(info["Cluster"]["ID"].as_str().is_some_and(|s| !s.is_empty()), "{info}");
    let text = docker(&h, &["info"]);
    text.ok();
    assert!(text.stdout.contains("Swarm: active") && text.stdout.contains("Is Manager: true"));
    let nodes = lines(
        &h,
        &["node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}} {{.Self}}"],
    );
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert!(nodes[0].ends_with("Ready Leader true"), "{nodes:?}");

    docker(&h, &["network", "create", "-d", "overlay", "--attachable", "ov1"]).ok();
    let ov1 = first(docker(&h, &["network", "inspect", "ov1"]).json());
    let ov1_id = ov1["Id"].as_str().unwrap().to_string();

    // Three replicas, each serving a page that names it.
    let page = "echo $HOSTNAME > /www/index.html; exec httpd -f -p 80 -h /www";
    docker(
        &h,
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
            "--label",
            "team=web",
            "busybox",
            "sh",
            "-c",
            &format!("mkdir -p /www; {page}"),
        ],
    )
    .ok();
    let tasks = wait_running(&h, "web", 3);
    let ls = lines(&h, &["service", "ls", "--format", "{{.Name}} {{.Mode}} {{.Replicas}}"]);
    assert_eq!(ls, ["web replicated 3/3"]);
    let mut slots: Vec<u64> = tasks.iter().filter_map(|t| t["Slot"].as_u64()).collect();
    slots.sort();
    assert_eq!(slots, [1, 2, 3]);
    // Task containers carry Docker's labels and names.
    let names = lines(
        &h,
        &["ps", "--filter", "label=com.docker.swarm.service.name=web", "--format", "{{.Names}}"],
    );
    assert_eq!(names.len(), 3);
    for t in &tasks {
        let id = t["ID"].as_str().unwrap();
        let slot = t["Slot"].as_u64().unwrap();
        assert!(names.contains(&format!("web.{slot}.{id}")), "{names:?} lacks web.{slot}.{id}");
    }
    assert_eq!(lines(&h, &["service", "ls", "-q", "--filter", "label=team=web"]).len(), 1);

    // The name resolves to the VIP, `tasks.web` to the tasks.
    let svc = first(docker(&h, &["service", "inspect", "web"]).json());
    let vips = svc["Endpoint"]["VirtualIPs"].as_array().cloned().unwrap_or_default();
    assert_eq!(vips.len(), 1, "{svc}");
    assert_eq!(vips[0]["NetworkID"], ov1_id.as_str());
    let vip = vips[0]["Addr"].as_str().unwrap().split('/').next().unwrap().to_string();
    let ips = task_ips(&tasks);
    assert!(!ips.contains(&vip), "the VIP {vip} is one of the tasks' addresses {ips:?}");
    assert_eq!(lookup(&h, "ov1", "web"), std::slice::from_ref(&vip));
    assert_eq!(lookup(&h, "ov1", "tasks.web"), ips);
    // Each task answers with its own name.
    docker(&h, &["run", "-d", "--name", "client", "--network", "ov1", "busybox", "sleep", "600"])
        .ok();
    let mut answers = BTreeSet::new();
    for ip in &ips {
        let r = docker(&h, &["exec", "client", "wget", "-q", "-O-", &format!("http://{ip}/")]);
        r.ok();
        answers.insert(r.stdout.trim().to_string());
    }
    let expected: BTreeSet<String> =
        tasks.iter().map(|t| format!("web.{}.{}", t["Slot"], t["ID"].as_str().unwrap())).collect();
    assert_eq!(answers, expected);

    // Through the VIP: 300 new connections spread over the three tasks. For p = 1/3 each
    // task answers 100 +- 8.2 (sd) times; 59..=141 is five sd either way.
    let r = docker(
        &h,
        &["exec", "client", "sh", "-c", "for i in $(seq 300); do wget -q -O- http://web/; done"],
    );
    r.ok();
    let mut per_task = std::collections::BTreeMap::<String, usize>::new();
    for l in r.stdout.lines().filter(|l| !l.is_empty()) {
        *per_task.entry(l.trim().to_string()).or_default() += 1;
    }
    assert_eq!(per_task.values().sum::<usize>(), 300, "{per_task:?}");
    assert_eq!(per_task.keys().cloned().collect::<BTreeSet<_>>(), expected, "{per_task:?}");
    assert!(per_task.values().all(|n| (59..=141).contains(n)), "{per_task:?}");

    // The routing mesh: a published port answers on the host's own addresses, from the
    // tasks. Publishing is not a change of the tasks: none is replaced.
    docker(&h, &["service", "update", "-d", "--publish-add", "8080:80", "web"]).ok();
    common::wait_until("the routing mesh to answer", 30, || {
        h.sh("timeout 3 wget -q -O- http://127.0.0.1:8080/").status.success()
    });
    let served =
        h.sh_ok("for i in $(seq 12); do timeout 3 wget -q -O- http://127.0.0.1:8080/; done");
    assert!(served.lines().all(|l| expected.contains(l.trim())), "{served}");
    assert_eq!(task_ips(&running_tasks(&h, "web")), ips, "publishing replaced tasks");

    // Scale down under load: the tasks that go leave the VIP before they are stopped,
    // so no new connection fails meanwhile.
    let load = "rm -f /tmp/stop /tmp/load; n=0; while [ ! -f /tmp/stop ] && [ $n -lt 3000 ]; do \
                n=$((n+1)); if wget -q -O- http://web/ >/dev/null 2>&1; then echo ok; else echo FAIL; fi; \
                done > /tmp/load; echo done >> /tmp/load";
    docker(&h, &["exec", "-d", "client", "sh", "-c", load]).ok();
    common::wait_until("the load to start", 20, || {
        docker(&h, &["exec", "client", "cat", "/tmp/load"]).stdout.lines().count() > 20
    });
    docker(&h, &["service", "scale", "-d", "web=1"]).ok();
    let tasks = wait_running(&h, "web", 1);
    docker(&h, &["exec", "client", "touch", "/tmp/stop"]).ok();
    let mut result = String::new();
    common::wait_until("the load to end", 60, || {
        result = docker(&h, &["exec", "client", "cat", "/tmp/load"]).stdout.clone();
        result.contains("done")
    });
    let ok = result.lines().filter(|l| *l == "ok").count();
    assert!(ok > 20, "{ok} connections during the scale-down");
    assert!(
        !result.contains("FAIL"),
        "connections failed during the scale-down: {ok} ok, {} failed",
        result.matches("FAIL").count()
    );
    common::wait_until("tasks.web to name one task", 30, || {
        lookup(&h, "ov1", "tasks.web") == task_ips(&tasks)
    });
    assert_eq!(lines(&h, &["service", "ls", "--format", "{{.Replicas}}"]), ["1/1"]);
    // A scale is not an update of the tasks: the survivor is the same task.
    assert_eq!(tasks[0]["Slot"], 1);

    // An update of the template replaces the task; the VIP stays.
    docker(&h, &["service", "update", "-d", "--env-add", "V=2", "web"]).ok();
    common::wait_until("the updated task to run", 60, || {
        let t = running_tasks(&h, "web");
        t.len() == 1 && t[0]["ID"] != tasks[0]["ID"] && count_containers(&h, "web") == 1
    });
    let svc2 = first(docker(&h, &["service", "inspect", "web"]).json());
    assert_eq!(svc2["Endpoint"]["VirtualIPs"], svc["Endpoint"]["VirtualIPs"]);
    assert!(svc2["Version"]["Index"].as_u64() > svc["Version"]["Index"].as_u64());
    assert!(svc2["PreviousSpec"].is_object());

    // No task at all: the VIP refuses at once (a reset, not a timeout); a port it does
    // not serve is dropped and counted, never handed to the host.
    docker(&h, &["service", "scale", "-d", "web=0"]).ok();
    wait_running(&h, "web", 0);
    let r = docker(
        &h,
        &["exec", "client", "sh", "-c", "timeout 20 wget -q -O- http://web/ 2>&1; echo rc=$?"],
    );
    assert!(r.stdout.contains("Connection refused"), "{r:?}");
    let dropped = common::nft_packets(&h, "inet cove", "drop_vip_other");
    let r = docker(&h, &["exec", "client", "sh", "-c", "nc -w 1 web 22 </dev/null; echo rc=$?"]);
    assert!(r.stdout.contains("rc=1"), "{r:?}");
    assert!(common::nft_packets(&h, "inet cove", "drop_vip_other") > dropped);
    docker(&h, &["service", "scale", "-d", "web=1"]).ok();
    wait_running(&h, "web", 1);

    // A service's name resolves before its first task's process starts: 20 tasks whose
    // first command looks it up all run (a failed lookup would end the task).
    docker(
        &h,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "probe",
            "--replicas",
            "20",
            "--network",
            "ov1",
            "busybox",
            "sh",
            "-c",
            "nslookup probe 127.0.0.11 >/dev/null && exec sleep 600",
        ],
    )
    .ok();
    wait_running(&h, "probe", 20);
    let failed = lines(&h, &["service", "ps", "--filter", "desired-state=shutdown", "-q", "probe"]);
    assert!(failed.is_empty(), "probe tasks failed their first lookup: {failed:?}");
    docker(&h, &["service", "rm", "probe"]).ok();

    // Non-detached create waits for convergence, as Docker's does.
    let r = docker(
        &h,
        &[
            "service",
            "create",
            "--name",
            "dns",
            "--replicas",
            "2",
            "--endpoint-mode",
            "dnsrr",
            "--network",
            "ov1",
            "busybox",
            "sleep",
            "600",
        ],
    );
    r.ok();
    assert!(r.stdout.contains("converged") || r.stderr.contains("converged"), "{r:?}");
    // dnsrr: the name is the tasks, no VIP.
    let dns = first(docker(&h, &["service", "inspect", "dns"]).json());
    assert!(dns["Endpoint"]["VirtualIPs"].is_null(), "{dns}");
    let dns_tasks = wait_running(&h, "dns", 2);
    assert_eq!(lookup(&h, "ov1", "dns"), task_ips(&dns_tasks));

    // A service that publishes without a network of its own gets Docker's `ingress`.
    docker(
        &h,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "pub",
            "-p",
            "8083:80",
            "busybox",
            "sh",
            "-c",
            &format!("mkdir -p /www; {page}"),
        ],
    )
    .ok();
    wait_running(&h, "pub", 1);
    let ingress = first(docker(&h, &["network", "inspect", "ingress"]).json());
    assert_eq!(ingress["Ingress"], true, "{ingress}");
    assert_eq!(ingress["Driver"], "overlay");
    common::wait_until("the mesh port of pub", 30, || {
        h.sh("timeout 3 wget -q -O- http://127.0.0.1:8083/").status.success()
    });
    docker(&h, &["service", "rm", "pub"]).ok();
    // (Docker's CLI asks before removing the ingress network; Cove's does not.)
    h.cove(&["network", "rm", "ingress"]).ok();

    docker(&h, &["rm", "-f", "client"]).ok();
    docker(&h, &["service", "rm", "web", "dns"]).ok();
    common::wait_until("the tasks' containers to go", 60, || {
        count_containers(&h, "web") + count_containers(&h, "dns") == 0
    });
    assert!(lines(&h, &["service", "ls", "-q"]).is_empty());
    assert!(lookup(&h, "ov1", "web").is_empty(), "the removed service still resolves");
    docker(&h, &["network", "rm", "ov1"]).ok();
    common::assert_same_as(&h, &baseline, "after service rm and network rm");
}

#[test]
fn bad_service_specs_are_refused_naming_the_problem() {
    if !need_docker() {
        cove_testkit::skip!("the docker CLI is not installed");
    }
    let h = common::host("bad_service_specs_are_refused_naming_the_problem");
    docker(&h, &["network", "create", "-d", "overlay", "ov1"]).ok();
    docker(&h, &["network", "create", "br1"]).ok();
    let before = lines(&h, &["service", "ls", "-q"]);
    let create = |extra: &[&str]| {
        let mut args = vec!["service", "create", "-d"];
        args.extend_from_slice(extra);
        docker(&h, &args)
    };
    create(&["--name", "x", "--network", "nosuch", "busybox", "true"]).fails().stderr_has("nosuch");
    // A local network is not in the cluster's scope, which the CLI asks for (as Docker's).
    create(&["--name", "x", "--network", "br1", "busybox", "true"])
        .fails()
        .stderr_has("network br1 not found");
    create(&["--name", "x", "--constraint", "node.hostname=h2", "busybox", "true"])
        .fails()
        .stderr_has("==, !=");
    create(&[
        "--name",
        "x",
        "--endpoint-mode",
        "dnsrr",
        "-p",
        "8080:80",
        "--network",
        "ov1",
        "busybox",
        "true",
    ])
    .fails()
    .stderr_has("port published with ingress mode can't be used with dnsrr mode");
    create(&["--name", "x", "--mode", "replicated-job", "busybox", "true"])
        .fails()
        .stderr_has("job services are not supported");
    create(&["--name", "bad.name", "busybox", "true"]).fails().stderr_has("DNS name");
    // Nothing was created by any of them.
    assert_eq!(lines(&h, &["service", "ls", "-q"]), before);

    create(&["--name", "one", "--network", "ov1", "busybox", "sleep", "600"]).ok();
    // A network a service uses stays.
    docker(&h, &["network", "rm", "ov1"]).fails().stderr_has("in use by service one");
    create(&["--name", "one", "busybox", "sleep", "600"]).fails().stderr_has("already exists");
    docker(&h, &["swarm", "init"]).fails().stderr_has("--cluster-store");
    docker(&h, &["swarm", "leave"]).fails().stderr_has("--cluster-store");

    // An image the node does not have: the task is rejected with the reason.
    create(&["--name", "ghost", "nosuchimage:1"]).ok();
    common::wait_until("the ghost task to be rejected", 30, || {
        let r = docker(
            &h,
            &["service", "ps", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}", "ghost"],
        );
        r.stdout.lines().any(|l| l.starts_with("Rejected") && l.contains("No such image"))
    });
    docker(&h, &["service", "rm", "one", "ghost"]).ok();
    common::wait_until("the tasks' containers to go", 60, || count_containers(&h, "one") == 0);
}

#[test]
fn docker_stack_and_docker_py_drive_services() {
    if !need_docker() {
        cove_testkit::skip!("the docker CLI is not installed");
    }
    let Some(py) = common::clients::venv_python() else {
        cove_testkit::skip!("no venv with the Python docker SDK (scripts/setup.sh makes it)");
    };
    let h = common::host("docker_stack_and_docker_py_drive_services");
    let baseline = h.snapshot();
    let clients = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let stack = clients.join("stack/stack.yml");
    let stack = stack.to_str().unwrap();

    docker(&h, &["stack", "deploy", "-c", stack, "--resolve-image", "never", "st"]).ok();
    let ls = lines(&h, &["stack", "services", "--format", "{{.Name}} {{.Mode}}", "st"]);
    assert_eq!(ls, ["st_cache replicated", "st_web replicated"]);
    let net = first(docker(&h, &["network", "inspect", "st_default"]).json());
    assert_eq!(net["Driver"], "overlay");
    assert_eq!(net["Labels"]["com.docker.stack.namespace"], "st");
    let web = wait_running(&h, "st_web", 2);
    wait_running(&h, "st_cache", 1);
    // The stack's routing-mesh port answers from the tasks.
    let names: BTreeSet<String> =
        web.iter().map(|t| format!("st_web.{}.{}", t["Slot"], t["ID"].as_str().unwrap())).collect();
    common::wait_until("the stack's published port", 30, || {
        h.sh("timeout 3 wget -q -O- http://127.0.0.1:8081/").status.success()
    });
    let got = h.sh_ok("timeout 3 wget -q -O- http://127.0.0.1:8081/");
    assert!(names.contains(got.trim()), "{got} is not one of {names:?}");
    // Task containers carry the stack's label.
    let filter = "label=com.docker.stack.namespace=st";
    assert_eq!(lines(&h, &["ps", "-q", "--filter", filter]).len(), 3);

    // `stack rm` removes the services, then the network once their tasks are gone.
    docker(&h, &["stack", "rm", "st"]).ok();
    common::wait_until("the stack's containers to go", 60, || {
        lines(&h, &["ps", "-aq", "--filter", filter]).is_empty()
    });
    assert!(lines(&h, &["network", "ls", "-q", "--filter", "name=st_default"]).is_empty());

    // docker-py's services and nodes.
    let script = clients.join("services.py");
    common::clients::python(&h, &py, &script, &[]).ok().stdout_has("services ok");
    common::assert_same_as(&h, &baseline, "after stack rm and the SDK's round trip");
}

#[test]
fn cove_service_verbs_call_the_same_routes() {
    let h = common::host("cove_service_verbs_call_the_same_routes");
    let nodes = h.cove(&["node", "ls"]).ok().stdout.clone();
    assert!(nodes.contains(" *") && nodes.contains("Leader") && nodes.contains("Ready"), "{nodes}");
    h.cove(&["network", "create", "-d", "overlay", "ovc"]).ok();
    h.cove(&[
        "service",
        "create",
        "--name",
        "cs",
        "--replicas",
        "2",
        "--network",
        "ovc",
        "-p",
        "8082:80",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    common::wait_until("cs to run 2/2", 60, || {
        h.cove(&["service", "ls"]).stdout.lines().any(|l| l.contains(" cs ") && l.contains("2/2"))
    });
    let ls = h.cove(&["service", "ls"]).ok().stdout.clone();
    assert!(ls.contains("*:8082->80/tcp"), "{ls}");
    let ps = h.cove(&["service", "ps", "cs"]).ok().stdout.clone();
    assert_eq!(
        ps.lines().filter(|l| l.contains("cs.") && l.contains("running")).count(),
        2,
        "{ps}"
    );
    let inspect = h.cove(&["service", "inspect", "cs"]).ok().json();
    assert_eq!(inspect[0]["Spec"]["Mode"]["Replicated"]["Replicas"], 2);
    h.cove(&["service", "scale", "cs=1"]).ok().stdout_has("cs scaled to 1");
    common::wait_until("cs to run 1/1", 60, || {
        h.cove(&["service", "ls"]).stdout.lines().any(|l| l.contains(" cs ") && l.contains("1/1"))
    });
    h.cove(&["service", "scale", "cs=x"]).fails().stderr_has("invalid replicas value");
    h.cove(&["service", "rm", "cs"]).ok();
    h.cove(&["service", "inspect", "cs"]).fails().stderr_has("not found");
    common::wait_until("cs's containers to go", 60, || {
        h.cove(&["ps", "-aq"]).stdout.trim().is_empty()
    });
}

#[test]
fn compose_compatibility_maps_replicas_to_containers_behind_one_name() {
    if !cove_testkit::have_command("docker-compose") || !need_docker() {
        cove_testkit::skip!("docker-compose or docker is not installed (scripts/setup.sh)");
    }
    let h = common::host("compose_compatibility_maps_replicas_to_containers_behind_one_name");
    let baseline = h.snapshot();
    let dir = h.dir().join("compose");
    std::fs::create_dir_all(&dir).expect("compose dir");
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients/compose-replicas/docker-compose.yml");
    std::fs::copy(&file, dir.join("docker-compose.yml")).expect("copy the compose file");
    let dc = |args: &[&str]| {
        let mut a = vec!["--compatibility", "-p", "rep"];
        a.extend_from_slice(args);
        common::clients::compose(&h, &dir, &a)
    };
    dc(&["up", "-d"]).ok();
    let names = lines(
        &h,
        &["ps", "--filter", "label=com.docker.compose.service=web", "--format", "{{.Names}}"],
    );
    assert_eq!(names.len(), 3, "{names:?}");
    for n in &names {
        common::wait_listening(&h, n, 80);
    }
    let ips: Vec<String> = {
        let mut v: Vec<String> =
            names.iter().map(|n| common::ip_of(&h, n, "rep_default")).collect();
        v.sort();
        v
    };
    let r = docker(&h, &["exec", "rep_client_1", "nslookup", "web", "127.0.0.11"]);
    assert_eq!(nslookup_addrs(&r.stdout), ips);
    let r = docker(
        &h,
        &[
            "exec",
            "rep_client_1",
            "sh",
            "-c",
            "for i in $(seq 9); do timeout 3 wget -q -O- http://web/; done",
        ],
    );
    r.ok();
    let answered: BTreeSet<&str> = r.stdout.lines().map(str::trim).collect();
    assert_eq!(answered.len(), 3, "round robin reached {answered:?}");
    dc(&["down"]).ok();
    common::assert_same_as(&h, &baseline, "after compose down");
}

#[test]
fn a_killed_daemon_leaves_services_serving_and_readopts_their_tasks() {
    if !need_docker() {
        cove_testkit::skip!("the docker CLI is not installed");
    }
    let mut h = common::host("a_killed_daemon_leaves_services_serving_and_readopts_their_tasks");
    docker(&h, &["network", "create", "-d", "overlay", "--attachable", "ovk"]).ok();
    let page = "mkdir -p /www; echo $HOSTNAME > /www/index.html; exec httpd -f -p 80 -h /www";
    docker(
        &h,
        &[
            "service",
            "create",
            "-d",
            "--name",
            "kw",
            "--replicas",
            "2",
            "--network",
            "ovk",
            "--hostname",
            "{{.Task.Name}}",
            "busybox",
            "sh",
            "-c",
            page,
        ],
    )
    .ok();
    let before = wait_running(&h, "kw", 2);
    docker(&h, &["run", "-d", "--name", "kc", "--network", "ovk", "busybox", "sleep", "600"]).ok();
    let fetch = |h: &cove_testkit::FakeHost| {
        docker(
            h,
            &[
                "exec",
                "kc",
                "sh",
                "-c",
                "for i in $(seq 6); do timeout 3 wget -q -O- http://kw/; done",
            ],
        )
    };
    fetch(&h).ok();
    let vip =
        first(docker(&h, &["service", "inspect", "kw"]).json())["Endpoint"]["VirtualIPs"].clone();

    // Without its daemon, the host keeps serving: the VIP is the kernel's.
    let pid = common::container_pid(&h, "kc");
    h.kill_daemon();
    let addr = vip[0]["Addr"].as_str().unwrap().split('/').next().unwrap().to_string();
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "sh", "-c"])
        .arg(format!("for i in $(seq 6); do timeout 3 wget -q -O- http://{addr}/; done"))
        .output()
        .expect("nsenter");
    let served = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(served.lines().filter(|l| l.starts_with("kw.")).count(), 6, "{served}");

    // Restarted, it adopts the same tasks: no new one, the same VIP.
    h.start_daemon(&[]);
    let after = wait_running(&h, "kw", 2);
    let ids = |t: &[Value]| t.iter().map(|t| t["ID"].to_string()).collect::<BTreeSet<_>>();
    assert_eq!(ids(&after), ids(&before));
    assert_eq!(lines(&h, &["service", "ps", "-q", "kw"]).len(), 2, "the restart made new tasks");
    let vip2 =
        first(docker(&h, &["service", "inspect", "kw"]).json())["Endpoint"]["VirtualIPs"].clone();
    assert_eq!(vip, vip2);
    let r = fetch(&h);
    r.ok();
    assert_eq!(r.stdout.lines().filter(|l| l.starts_with("kw.")).count(), 6);
    docker(&h, &["rm", "-f", "kc"]).ok();
    docker(&h, &["service", "rm", "kw"]).ok();
    common::wait_until("kw's containers to go", 60, || count_containers(&h, "kw") == 0);
}
