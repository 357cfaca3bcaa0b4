//! Why the services bench has no anchor: Docker's swarm services on this kernel. A private
//! dockerd (Debian's `docker.io`) in fake host `d1` of the netlab does `docker swarm init`,
//! an attachable overlay network, a one-task service serving a page and a client
//! container on it; the bench records each step's outcome, the task's state, whether the
//! VIP and the task's own address answer, and what dockerd logged about IPVS. Docker
//! balances a VIP with IPVS inside each container's namespace; this kernel has none
//! (`/proc/net/ip_vs` is absent and the module cannot be loaded; moby#24005, #26930). Also:
//! whether Kubernetes' kube-proxy (whose nftables mode is the model of ADR 0020) can be
//! installed here.

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use cove_testkit::FakeHost;

use crate::dockerd::{Dockerd, Launch};
use crate::services_lab::PAGE;

/// Runs the attempt in `h` (underlay address `addr`); the report's markdown.
pub(crate) fn run(h: &FakeHost, addr: Ipv4Addr) -> String {
    let mut md = String::new();
    let ipvs = h.sh("test -e /proc/net/ip_vs").status.success();
    md.push_str(&format!("- `/proc/net/ip_vs` in the fake host: {}.\n", present(ipvs)));
    let wrap = |argv: &[&str]| h.command(argv);
    let launch =
        Launch { flags: vec!["--cgroup-parent".into(), h.cgroup_parent()], wrap: Some(&wrap) };
    let d = match Dockerd::start_with(&h.dir().join("dockerd"), &launch) {
        Ok(d) => d,
        Err(e) => {
            md.push_str(&format!("- dockerd did not start: {e:#}\n"));
            return md + &kube_proxy();
        }
    };
    let version = d.cli(&["version", "--format", "{{.Server.Version}}"]).unwrap_or_default();
    md.push_str(&format!("- dockerd {version} (Debian's `docker.io`) in fake host `d1`.\n"));
    if let Err(e) = attempt(&d, addr, &mut md) {
        md.push_str(&format!("- stopped: {e:#}\n"));
    }
    let log = std::fs::read_to_string(h.dir().join("dockerd/dockerd.log")).unwrap_or_default();
    let lines: Vec<&str> =
        log.lines().filter(|l| l.to_lowercase().contains("ipvs")).take(3).collect();
    md.push_str(&format!(
        "- dockerd's log: {} lines mention IPVS{}\n",
        log.lines().filter(|l| l.to_lowercase().contains("ipvs")).count(),
        if lines.is_empty() {
            String::new()
        } else {
            format!(", the first:\n\n```\n{}\n```\n", lines.join("\n"))
        }
    ));
    let _ = d.cli(&["swarm", "leave", "--force"]);
    drop(d);
    md + &kube_proxy()
}

fn present(b: bool) -> &'static str {
    if b {
        "present"
    } else {
        "absent"
    }
}

/// `docker <args>`: the outcome as a markdown bullet.
fn step(d: &Dockerd, md: &mut String, args: &[&str]) -> Result<String> {
    let r = d.cli(args);
    let shown = args.iter().map(|a| if a.contains(' ') { "…" } else { a }).collect::<Vec<_>>();
    match &r {
        Ok(out) => md.push_str(&format!(
            "- `docker {}`: ok{}\n",
            shown.join(" "),
            out.lines().next().map(|l| format!(" ({l})")).unwrap_or_default()
        )),
        Err(e) => md.push_str(&format!("- `docker {}`: **failed**: {e:#}\n", shown.join(" "))),
    }
    r
}

fn attempt(d: &Dockerd, addr: Ipv4Addr, md: &mut String) -> Result<()> {
    d.import_busybox()?;
    step(d, md, &["swarm", "init", "--advertise-addr", &addr.to_string()])?;
    let ov = ["network", "create", "-d", "overlay", "--attachable", "--subnet", "10.40.0.0/24"];
    step(d, md, &[&ov[..], &["ov"]].concat())?;
    let create = ["service", "create", "-d", "--name", "web", "--network", "ov", "busybox"];
    step(d, md, &[&create[..], &["sh", "-c", PAGE]].concat())?;
    step(d, md, &["run", "-d", "--name", "cl", "--network", "ov", "busybox", "sleep", "600"])?;
    // The task's state once it settles (or after 30 s).
    let ps = ["service", "ps", "--no-trunc", "--format", "{{.CurrentState}} | {{.Error}}", "web"];
    let t = Instant::now();
    let mut state = String::new();
    while t.elapsed() < Duration::from_secs(30) {
        state = d.cli(&ps).unwrap_or_default();
        if state.lines().any(|l| l.starts_with("Running") || l.contains("Failed")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    md.push_str(&format!(
        "- the task after {:.0} s: `{}`\n",
        t.elapsed().as_secs_f64(),
        state.lines().collect::<Vec<_>>().join("; ")
    ));
    let vip = d.cli(&["service", "inspect", "-f", "{{json .Endpoint.VirtualIPs}}", "web"])?;
    md.push_str(&format!("- its VIPs: `{vip}`\n"));
    let vip_addr: Option<String> = serde_json::from_str::<serde_json::Value>(&vip)
        .ok()
        .and_then(|v| v[0]["Addr"].as_str().map(|a| a.split('/').next().unwrap_or(a).to_owned()));
    let filter = "label=com.docker.swarm.service.name=web";
    let cid = d.cli(&["ps", "-q", "--filter", filter]).unwrap_or_default();
    let format = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}";
    let task_ip = match cid.lines().next() {
        Some(c) => d.cli(&["inspect", "-f", format, c]).unwrap_or_default(),
        None => String::new(),
    };
    let task_ip = task_ip.split_whitespace().next().unwrap_or_default().to_owned();
    for (what, ip) in [("the VIP", vip_addr.unwrap_or_default()), ("the task's address", task_ip)] {
        if ip.is_empty() {
            md.push_str(&format!("- {what}: none to try\n"));
            continue;
        }
        let r =
            d.cli(&["exec", "cl", "timeout", "5", "wget", "-q", "-O-", &format!("http://{ip}/")]);
        md.push_str(&format!(
            "- `wget http://{ip}/` ({what}) from a container on the network: {}\n",
            match r {
                Ok(body) => format!("answered `{}`", body.trim()),
                Err(e) => format!("**failed** ({})", e.to_string().lines().last().unwrap_or("")),
            }
        ));
    }
    Ok(())
}

/// Whether kube-proxy can be installed here (Debian's candidate versions).
fn kube_proxy() -> String {
    let out = Command::new("apt-cache").args(["policy", "kube-proxy", "kubernetes-node"]).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
    let candidate = text.lines().any(|l| l.trim_start().starts_with("Candidate:"));
    format!(
        "- Kubernetes' kube-proxy (nftables mode): `apt-cache policy kube-proxy \
         kubernetes-node` {} (Debian 12 packages only `kubernetes-client`, kubectl \
         1.20); PyPI has no kube-proxy either, so it is not measured.\n",
        if candidate { "lists a candidate" } else { "finds neither package" }
    )
}
