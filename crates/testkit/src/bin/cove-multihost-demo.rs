//! Cove across hosts, shown: three fake hosts and an etcd on a TEST-NET-3 underlay (all in
//! namespaces this program makes and removes), an overlay network created on one host,
//! a server on another, clients on the other two finding it by name across the VXLAN
//! tunnel.
//!
//! Usage: cove-multihost-demo <path to cove> (as root; `scripts/demo-multihost.sh` builds
//! and runs it).

use std::net::IpAddr;
use std::path::PathBuf;

use cove_testkit::{Etcd, FakeHost, Netlab};

fn step(host: &FakeHost, name: &str, args: &[&str]) -> String {
    println!("\n\x1b[1m[{name}]$ cove {}\x1b[0m", args.join(" "));
    let out = host.cove(args);
    print!("{}", out.stdout);
    if !out.stderr.is_empty() {
        eprint!("{}", out.stderr);
    }
    out.stdout.clone()
}

fn shell(host: &FakeHost, name: &str, script: &str) {
    println!("\n\x1b[1m[{name}]$ {script}\x1b[0m");
    print!("{}", host.sh_ok(script));
}

fn main() {
    let Some(cove) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: cove-multihost-demo <path to cove>");
        std::process::exit(2);
    };
    cove_testkit::require_root();
    println!("Three fake hosts h1, h2, h3 (203.0.113.11-13) and etcd (203.0.113.2) on one");
    println!("underlay switch, all in namespaces that vanish when the demo ends.");
    let mut lab = Netlab::with_hosts("multihost_demo", &cove, 3);
    let _etcd = Etcd::start_in("multihost_demo", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    lab.start_daemons(
        &["h1", "h2", "h3"],
        &["--cluster-store", "etcd://203.0.113.2:2379", "--cluster-advertise", "{addr}"],
    );
    for h in ["h1", "h2", "h3"] {
        lab.host(h).import_busybox("busybox");
    }
    let (h1, h2, h3) = (lab.host("h1"), lab.host("h2"), lab.host("h3"));
    step(h1, "h1", &["node", "ls"]);
    let id =
        step(h1, "h1", &["network", "create", "-d", "overlay", "--subnet", "10.0.9.0/24", "ov1"]);
    // The other host follows the cluster store within milliseconds; wait for it.
    for _ in 0..100 {
        if [h2, h3].iter().all(|h| h.cove(&["network", "ls"]).stdout.contains("ov1")) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    step(h2, "h2", &["network", "ls", "--filter", "driver=overlay"]);
    step(
        h2,
        "h2",
        &[
            "run",
            "-d",
            "--network",
            "ov1",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "while true; do echo \"hello from $(hostname) on h2\" | nc -l -p 8080; done",
        ],
    );
    for (h, name) in [(h1, "h1"), (h3, "h3")] {
        step(
            h,
            name,
            &[
                "run", "--rm", "--network", "ov1", "busybox", "sh", "-c",
                "ip -4 addr show eth0 | grep inet; echo \"web is $(nslookup web 2>/dev/null | grep -A1 ^Name: | grep Address)\"; nc web 8080",
            ],
        );
    }
    let vx = format!("vx-{}", &id.trim()[..12]);
    println!(
        "\nh1 reaches web through a static forwarding entry to h2 (no learning, no flooding):"
    );
    shell(h1, "h1", &format!("bridge fdb show dev {vx} | grep 203.0.113.12"));
    step(
        h3,
        "h3",
        &["network", "inspect", "-f", "{{range .Peers}}{{.Name}}={{.IP}} {{end}}", "ov1"],
    );
    step(h2, "h2", &["rm", "-f", "web"]);
    for _ in 0..40 {
        if h1.cove(&["network", "rm", "ov1"]).status == 0 {
            println!("\n\x1b[1m[h1]$ cove network rm ov1\x1b[0m\nov1");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    println!("\nDemo done: the hosts, the switch and etcd vanish now.");
}
