//! The Python `docker` SDK (PyPI) and Debian's `docker-compose` 1.29 against Cove, in a
//! fake host: real API calls, real traffic, and nothing left behind.

mod common;

use std::path::Path;

use common::clients::{compose, docker, first, python, venv_python};

fn now_secs() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[test]
fn python_sdk_manages_networks_and_containers() {
    let Some(py) = venv_python() else {
        cove_testkit::skip!("no venv with the Python docker SDK (scripts/setup.sh makes it)");
    };
    let h = common::host("python_sdk_manages_networks_and_containers");
    let baseline = h.snapshot();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/sdk.py");
    let start = now_secs();
    python(&h, &py, &script, &["up"]).ok().stdout_has("up ok");
    // The published port answers from the fake host itself.
    let got = h.in_netns(|| common::tcp_fetch("127.0.0.1:8090", 5));
    assert_eq!(got.as_deref().map(str::trim), Ok("sdk-hello"), "published port 8090");
    python(&h, &py, &script, &["rest", &start]).ok().stdout_has("sdk ok");
    assert!(h.cove(&["ps", "-aq"]).out().is_empty(), "containers left behind");
    h.assert_no_leaks(&baseline);
}

#[test]
fn docker_compose_two_services_on_a_user_network() {
    if !cove_testkit::have_command("docker-compose") || !cove_testkit::have_command("docker") {
        cove_testkit::skip!("docker-compose or docker is not installed (scripts/setup.sh)");
    }
    let h = common::host("docker_compose_two_services_on_a_user_network");
    let baseline = h.snapshot();
    let dir = h.dir().join("compose");
    std::fs::create_dir_all(&dir).expect("compose dir");
    let file =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/compose/docker-compose.yml");
    std::fs::copy(&file, dir.join("docker-compose.yml")).expect("copy the compose file");
    let p = ["-p", "covetest"];
    let dc = |args: &[&str]| {
        let mut a = p.to_vec();
        a.extend_from_slice(args);
        compose(&h, &dir, &a)
    };

    dc(&["up", "-d"]).ok();
    common::wait_listening(&h, "covetest_web_1", 80);
    let ps = dc(&["ps"]);
    ps.ok().stdout_has("covetest_web_1").stdout_has("covetest_client_1");
    let names = docker(
        &h,
        &["ps", "--filter", "label=com.docker.compose.project=covetest", "--format", "{{.Names}}"],
    );
    let mut names: Vec<&str> = names.out().lines().collect();
    names.sort();
    assert_eq!(names, ["covetest_client_1", "covetest_web_1"]);

    // The network compose made: its labels, its subnet, both services on it.
    let net = first(docker(&h, &["network", "inspect", "covetest_appnet"]).json());
    assert_eq!(net["Labels"]["purpose"], "test");
    assert_eq!(net["Labels"]["com.docker.compose.network"], "appnet");
    assert_eq!(net["Labels"]["com.docker.compose.project"], "covetest");
    assert_eq!(net["IPAM"]["Config"][0]["Subnet"], "10.99.0.0/24");
    assert_eq!(net["Containers"].as_object().map(|m| m.len()), Some(2), "{net}");
    let web = first(docker(&h, &["inspect", "covetest_web_1"]).json());
    assert_eq!(web["Config"]["Labels"]["tier"], "front");
    assert_eq!(web["Config"]["Labels"]["com.docker.compose.service"], "web");
    let aliases = &web["NetworkSettings"]["Networks"]["covetest_appnet"]["Aliases"];
    assert!(aliases.as_array().is_some_and(|a| a.iter().any(|x| x == "www")), "{aliases}");

    // Traffic: the fake host to the published port; the client to web by service name,
    // by alias and by container name (the embedded DNS on the user network).
    let got = h.in_netns(|| common::tcp_fetch("127.0.0.1:8088", 5));
    assert_eq!(got.as_deref().map(str::trim), Ok("hello-from-web"), "published port 8088");
    for name in ["web", "www", "covetest_web_1"] {
        let r = dc(&["exec", "-T", "client", "nc", "-w", "3", name, "80"]);
        assert_eq!(r.out(), "hello-from-web", "client -> {name}: {r:?}");
    }
    dc(&["logs", "web"]).ok().stdout_has("web-up");

    dc(&["down", "-t", "1"]).ok();
    assert!(docker(&h, &["ps", "-aq"]).out().is_empty(), "containers left behind");
    let nets = docker(&h, &["network", "ls", "--filter", "type=custom", "-q"]);
    assert!(nets.out().is_empty(), "networks left behind: {}", nets.out());
    common::assert_same_as(&h, &baseline, "after docker-compose down");
    h.assert_no_leaks(&baseline);
}
