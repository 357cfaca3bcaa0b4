//! The real `docker` CLI against Cove: the API is Docker's, so Docker users' tools work.
//! (Full Docker API compatibility is tracked separately; this keeps the basics honest.)

mod common;

use std::process::Command;

fn docker(h: &cove_testkit::FakeHost, args: &[&str]) -> cove_testkit::CmdResult {
    let out = Command::new("docker")
        .args(args)
        .env("DOCKER_HOST", h.host_uri())
        .env("DOCKER_CONFIG", h.dir().join("docker-config"))
        .output()
        .expect("run docker");
    cove_testkit::CmdResult::from_output(format!("docker {}", args.join(" ")), &out)
}

#[test]
fn docker_cli_manages_networks_and_runs_containers() {
    if !cove_testkit::have_command("docker") {
        cove_testkit::skip!("the docker CLI is not installed");
    }
    let h = common::host("docker_cli_manages_networks_and_runs_containers");
    let baseline = h.snapshot();
    docker(&h, &["version"]).ok().stdout_has("Cove");
    let id = docker(&h, &["network", "create", "--subnet", "10.95.0.0/24", "dk"]).out().to_string();
    assert_eq!(id.len(), 64, "{id}");
    docker(&h, &["network", "ls"]).ok().stdout_has("dk");
    let v = docker(&h, &["network", "inspect", "dk"]).json();
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.95.0.0/24");
    docker(&h, &["network", "inspect", "nope"]).fails().stderr_has("network nope not found");

    let srv = "while true; do echo hi-docker | nc -l -p 80; done";
    docker(
        &h,
        &[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            "dk",
            "--ip",
            "10.95.0.10",
            "busybox",
            "sh",
            "-c",
            srv,
        ],
    )
    .ok();
    let r = docker(
        &h,
        &["run", "--rm", "--network", "dk", "busybox", "nc", "-w", "3", "10.95.0.10", "80"],
    );
    r.ok();
    assert_eq!(r.stdout.trim(), "hi-docker", "{r:?}");
    let ip = docker(&h, &["inspect", "-f", "{{.NetworkSettings.Networks.dk.IPAddress}}", "web"]);
    assert_eq!(ip.out(), "10.95.0.10");
    docker(&h, &["exec", "web", "hostname"]).ok();
    docker(&h, &["rm", "-f", "web"]).ok();
    docker(&h, &["network", "rm", "dk"]).ok();
    h.assert_no_leaks(&baseline);
}
