//! The real `docker` CLI against Cove, flag by flag: networks (`create/ls/inspect/rm/
//! connect/disconnect/prune`), containers (`run -d`, `ps`, `inspect`, `exec`, `logs`,
//! `port`, `top`, `rm -f`), `events`, and Docker's errors; what `docker` reports is compared
//! with what the `cove` CLI reports, and traffic is checked for real.

mod common;

use common::clients::{docker, first};
use serde_json::Value;

fn need_docker() -> bool {
    cove_testkit::have_command("docker") && cove_testkit::have_command("timeout")
}

/// `docker <args> --format ...` lines.
fn lines(h: &cove_testkit::FakeHost, args: &[&str]) -> Vec<String> {
    let r = docker(h, args);
    r.ok();
    r.stdout.lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

#[test]
fn docker_cli_network_flags_filters_and_errors() {
    if !need_docker() {
        cove_testkit::skip!("the docker CLI is not installed");
    }
    let h = common::host("docker_cli_network_flags_filters_and_errors");
    let baseline = h.snapshot();

    let id = docker(
        &h,
        &[
            "network",
            "create",
            "--driver",
            "bridge",
            "--subnet",
            "10.96.0.0/24",
            "--ip-range",
            "10.96.0.128/25",
            "--gateway",
            "10.96.0.254",
            "--aux-address",
            "printer=10.96.0.200",
            "--label",
            "team=net",
            "--label",
            "tmp",
            "--attachable",
            "--ipam-opt",
            "note=kept",
            "-o",
            "com.docker.network.bridge.name=brdk2",
            "--ipv6",
            "--subnet",
            "fd00:96::/64",
            "dk2",
        ],
    )
    .out()
    .to_string();
    assert_eq!(id.len(), 64, "{id}");
    docker(&h, &["network", "create", "--internal", "--label", "tmp", "iso"]).ok();
    docker(&h, &["network", "create", "--ipam-driver", "default", "--scope", "local", "plain"])
        .ok();
    docker(&h, &["network", "create", "--config-only", "co"]).fails().stderr_has("config-only");
    docker(&h, &["network", "create", "--ingress", "ing"]).fails().stderr_has("ingress");
    // Without a cluster store the host is a cluster of one: overlay networks work there,
    // scoped to the cluster.
    docker(&h, &["network", "create", "-d", "overlay", "ov"]).ok();
    assert_eq!(first(docker(&h, &["network", "inspect", "ov"]).json())["Scope"], "global");
    docker(&h, &["network", "rm", "ov"]).ok();

    // What docker shows is what cove shows, field for field.
    let d = first(docker(&h, &["network", "inspect", "dk2"]).json());
    let c = common::inspect(&h, &["network", "inspect", "dk2"]);
    assert_eq!(d, c, "docker network inspect and cove network inspect differ");
    assert_eq!(d["Id"], id.as_str());
    assert_eq!(d["Scope"], "local");
    assert_eq!(d["Attachable"], true);
    assert_eq!(d["EnableIPv6"], true);
    assert_eq!(d["Labels"]["team"], "net");
    assert_eq!(d["IPAM"]["Options"]["note"], "kept");
    assert_eq!(d["Options"]["com.docker.network.bridge.name"], "brdk2");
    // The docker CLI sends the subnets in no fixed order (Cove keeps the order it gets).
    let cfgs = d["IPAM"]["Config"].as_array().expect("IPAM.Config").clone();
    assert_eq!(cfgs.len(), 2, "{cfgs:?}");
    let v4 = cfgs.iter().find(|c| c["Subnet"] == "10.96.0.0/24").expect("the IPv4 subnet");
    assert_eq!(v4["IPRange"], "10.96.0.128/25");
    assert_eq!(v4["Gateway"], "10.96.0.254");
    assert_eq!(v4["AuxiliaryAddresses"]["printer"], "10.96.0.200");
    assert!(cfgs.iter().any(|c| c["Subnet"] == "fd00:96::/64"), "{cfgs:?}");
    assert!(
        d["Created"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('.')),
        "Created is RFC 3339 with nanoseconds: {}",
        d["Created"]
    );
    h.sh_ok("ip link show brdk2");
    let fmt = docker(&h, &["network", "inspect", "-f", "{{.Driver}} {{.Internal}}", "iso"]);
    assert_eq!(fmt.out(), "bridge true");
    let v = docker(&h, &["network", "inspect", "--verbose", "dk2"]).json();
    assert_eq!(first(v)["Name"], "dk2");

    // Filters, each the way the CLI sends it.
    let ls = |f: &[&str]| {
        let mut args = vec!["network", "ls", "--format", "{{.Name}}"];
        for x in f {
            args.extend(["--filter", x]);
        }
        let mut v = lines(&h, &args);
        v.sort();
        v
    };
    assert_eq!(ls(&["name=dk"]), ["dk2"]);
    assert_eq!(ls(&["label=team=net"]), ["dk2"]);
    assert_eq!(ls(&["label=tmp"]), ["dk2", "iso"]);
    assert_eq!(ls(&["type=custom"]), ["dk2", "iso", "plain"]);
    assert_eq!(ls(&["type=builtin"]), ["bridge", "host", "none"]);
    assert_eq!(ls(&["driver=null"]), ["none"]);
    assert_eq!(ls(&["scope=local", "driver=bridge", "type=custom", "name=i"]), ["iso", "plain"]);
    assert_eq!(ls(&[&format!("id={}", &id[..10])]), ["dk2"]);
    assert_eq!(ls(&["dangling=true"]), ["dk2", "iso", "plain"]);
    let q = lines(&h, &["network", "ls", "-q", "--no-trunc", "--filter", "name=dk2"]);
    assert_eq!(q, [id.as_str()]);
    docker(&h, &["network", "ls", "--filter", "colour=red"]).fails().stderr_has("invalid filter");

    // Docker's errors.
    docker(&h, &["network", "create", "dk2"])
        .fails()
        .stderr_has("network with name dk2 already exists");
    docker(&h, &["network", "rm", "bridge"])
        .fails()
        .stderr_has("bridge is a pre-defined network and cannot be removed");
    docker(&h, &["network", "inspect", "nope"]).fails().stderr_has("network nope not found");
    docker(&h, &["network", "connect", "dk2", "ghost"])
        .fails()
        .stderr_has("No such container: ghost");
    docker(&h, &["network", "create", "--subnet", "10.96.0.0/25", "clash"]).fails();
    let (code, body) = h.api_json("GET", "/v1.50/networks/dk2?scope=swarm", None);
    assert_eq!(code, 404, "{body}");
    assert_eq!(body["message"], "network dk2 not found");

    // A container that uses a network keeps it from prune; prune honours labels.
    docker(&h, &["create", "--name", "user", "--network", "plain", "busybox", "true"]).ok();
    let pruned = docker(&h, &["network", "prune", "-f", "--filter", "label=tmp"]);
    pruned.ok().stdout_has("iso").stdout_has("dk2");
    assert_eq!(ls(&["type=custom"]), ["plain"]);
    docker(&h, &["network", "prune", "-f"]).ok();
    assert_eq!(ls(&["type=custom"]), ["plain"], "a network of a stopped container is in use");
    docker(&h, &["rm", "user"]).ok();
    docker(&h, &["network", "prune", "-f"]).ok().stdout_has("plain");
    assert_eq!(ls(&["type=custom"]), Vec::<String>::new());
    h.assert_no_leaks(&baseline);
}

#[test]
fn docker_cli_runs_publishes_and_reports_like_cove() {
    if !need_docker() {
        cove_testkit::skip!("the docker CLI is not installed");
    }
    let h = common::host("docker_cli_runs_publishes_and_reports_like_cove");
    let baseline = h.snapshot();
    let t0 = chrono_now();
    docker(&h, &["network", "create", "--subnet", "10.97.0.0/24", "front"]).ok();
    docker(&h, &["network", "create", "--subnet", "10.98.0.0/24", "back"]).ok();
    let srv = "echo started; while true; do echo hi-web | nc -l -p 80; done";
    docker(
        &h,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "front",
            "--network-alias",
            "www",
            "-p",
            "8085:80",
            "-l",
            "app=web",
            "busybox",
            "sh",
            "-c",
            srv,
        ],
    )
    .ok();
    common::wait_listening(&h, "web", 80);

    // ps with the filters the issue names.
    let ps = |f: &[&str]| {
        let mut args = vec!["ps", "-a", "--format", "{{.Names}}"];
        for x in f {
            args.extend(["--filter", x]);
        }
        lines(&h, &args)
    };
    assert_eq!(ps(&["name=we", "network=front", "label=app=web", "status=running"]), ["web"]);
    assert!(ps(&["network=back"]).is_empty());
    assert!(ps(&["status=exited"]).is_empty());
    let row = lines(&h, &["ps", "--format", "{{.Names}}|{{.Ports}}|{{.Image}}"]);
    assert_eq!(row, ["web|0.0.0.0:8085->80/tcp|busybox"]);
    assert_eq!(docker(&h, &["port", "web"]).out(), "80/tcp -> 0.0.0.0:8085");
    assert_eq!(docker(&h, &["port", "web", "80/tcp"]).out(), "0.0.0.0:8085");
    // -P publishes every exposed port on an ephemeral host port.
    let pub_srv = "while true; do echo hi-pub | nc -l -p 81; done";
    docker(
        &h,
        &["run", "-d", "--name", "pub", "--expose", "81", "-P", "busybox", "sh", "-c", pub_srv],
    )
    .ok();
    common::wait_listening(&h, "pub", 81);
    let mapped = docker(&h, &["port", "pub", "81"]).out().to_string();
    let port: u16 = mapped.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    assert!(mapped.starts_with("0.0.0.0:") && port > 0, "{mapped}");
    let got = h.in_netns(|| common::tcp_fetch(&format!("127.0.0.1:{port}"), 5));
    assert_eq!(got.as_deref().map(str::trim), Ok("hi-pub"), "-P port {port}");
    docker(&h, &["rm", "-f", "pub"]).ok();

    // Real traffic: the fake host to the published port, a container to the alias.
    let got = h.in_netns(|| common::tcp_fetch("127.0.0.1:8085", 5));
    assert_eq!(got.as_deref().map(str::trim), Ok("hi-web"), "published port");
    let r =
        docker(&h, &["run", "--rm", "--network", "front", "busybox", "nc", "-w", "3", "www", "80"]);
    assert_eq!(r.out(), "hi-web", "{r:?}");

    // exec, logs, top.
    let hn = docker(&h, &["exec", "web", "cat", "/etc/hostname"]).out().to_string();
    let env = docker(&h, &["exec", "-e", "X=1", "web", "sh", "-c", "echo $X"]);
    assert_eq!(env.out(), "1");
    docker(&h, &["logs", "web"]).ok().stdout_has("started");
    assert_eq!(docker(&h, &["logs", "--tail", "1", "web"]).out(), "started");
    let top = lines(&h, &["top", "web"]);
    assert!(top[0].contains("PID") && top.iter().any(|l| l.contains("nc -l -p 80")), "{top:?}");

    // connect with an alias and an address, then a forced disconnect.
    docker(&h, &["network", "connect", "--alias", "api", "--ip", "10.98.0.50", "back", "web"]).ok();
    let r =
        docker(&h, &["run", "--rm", "--network", "back", "busybox", "nc", "-w", "3", "api", "80"]);
    assert_eq!(r.out(), "hi-web", "{r:?}");

    // docker inspect and cove inspect agree on the networking fields.
    let d = first(docker(&h, &["inspect", "web"]).json());
    let c = common::inspect(&h, &["inspect", "web"]);
    assert_eq!(d["Id"], c["Id"]);
    assert_eq!(d["Name"], "/web");
    assert_eq!(d["Config"]["Hostname"].as_str(), Some(hn.as_str()));
    assert_eq!(d["NetworkSettings"]["Ports"], c["NetworkSettings"]["Ports"]);
    assert_eq!(d["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"], "8085");
    for net in ["front", "back"] {
        let (dn, cn) =
            (&d["NetworkSettings"]["Networks"][net], &c["NetworkSettings"]["Networks"][net]);
        assert_eq!(dn, cn, "network {net}");
        for key in ["IPAddress", "MacAddress", "Gateway", "NetworkID", "EndpointID"] {
            assert!(dn[key].as_str().is_some_and(|s| !s.is_empty()), "{net}.{key}: {dn}");
        }
    }
    let back = &d["NetworkSettings"]["Networks"]["back"];
    assert_eq!(back["IPAddress"], "10.98.0.50");
    assert!(back["Aliases"].as_array().is_some_and(|a| a.contains(&Value::from("api"))));
    let front = first(docker(&h, &["network", "inspect", "front"]).json());
    let ep = &front["Containers"][d["Id"].as_str().unwrap()];
    assert_eq!(ep["Name"], "web");
    assert_eq!(
        ep["IPv4Address"],
        format!("{}/24", d["NetworkSettings"]["Networks"]["front"]["IPAddress"].as_str().unwrap())
    );
    assert_eq!(front, common::inspect(&h, &["network", "inspect", "front"]));

    docker(&h, &["network", "disconnect", "--force", "back", "web"]).ok();
    let nets = docker(
        &h,
        &["inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", "web"],
    );
    assert_eq!(nets.out(), "front");
    docker(&h, &["network", "disconnect", "back", "web"])
        .fails()
        .stderr_has("is not connected to network back");

    // A missing image fails as Docker's does, without a registry.
    docker(&h, &["run", "--rm", "nosuch:1", "true"]).fails().stderr_has("No such image");
    docker(&h, &["run", "--pull", "never", "--rm", "nosuch:1", "true"])
        .fails()
        .stderr_has("No such image: nosuch:1");

    docker(&h, &["rm", "-f", "web"]).ok();
    docker(&h, &["network", "rm", "front", "back"]).ok();

    // The event stream saw it all.
    let until = chrono_now();
    let ev = lines(
        &h,
        &[
            "events",
            "--since",
            &t0,
            "--until",
            &until,
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ],
    );
    for want in [
        "network create front",
        "network connect front",
        "network connect back",
        "network disconnect back",
        "container create web",
        "container start web",
        "container kill web",
        "container die web",
        "container destroy web",
        "network destroy front",
        "network destroy back",
    ] {
        assert!(ev.iter().any(|l| l == want), "no event {want:?} in:\n{}", ev.join("\n"));
    }
    let only = lines(
        &h,
        &[
            "events",
            "--since",
            &t0,
            "--until",
            &until,
            "--filter",
            "type=network",
            "--filter",
            "event=destroy",
            "--format",
            "{{.Actor.Attributes.name}}",
        ],
    );
    assert_eq!(only, ["front", "back"]);
    h.assert_no_leaks(&baseline);
}

/// Now as unix seconds with nanoseconds (what `docker events --since/--until` take).
fn chrono_now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}
