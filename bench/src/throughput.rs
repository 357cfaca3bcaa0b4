//! TCP throughput (one iperf3 stream) of Cove's datapaths against raw veth in the same
//! run, reps interleaved in random order:
//!
//! * raw veth: two fresh namespaces joined by a veth pair (the floor);
//! * raw bridge: two namespaces on a plain bridge in a third namespace with no rules;
//! * container → container on one Cove network;
//! * host → published port through the host's LAN address, and through 127.0.0.1 (DNAT
//!   in the kernel, no proxy).
//!
//! Containers run busybox; iperf3 is dynamically linked, so it runs from the fake host in
//! the container's network namespace (`nsenter --net=<SandboxKey>`): the same network path
//! as a process inside the container.

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cove_drivers::plan::{Netns, Op};
use cove_kernel::Kernel;

use crate::daemon::Daemon;
use crate::http::Engine;
use crate::stats::Series;

pub(crate) struct Options {
    pub(crate) reps: usize,
    pub(crate) seconds: u32,
}

pub(crate) struct Outcome {
    pub(crate) markdown: String,
    pub(crate) json: serde_json::Value,
}

/// The host's "LAN" address, on one end of a veth pair of the fake host (the kernel may
/// have no dummy driver).
const LAN_IF: &str = "tplan0";
const LAN_PEER: &str = "tplan1";
const LAN_ADDR: &str = "198.51.100.1";
const SERVER_PORT: u16 = 5201;
const PUBLISHED_PORT: u16 = 15201;

/// A measured path: where the client runs and what it connects to.
struct Route {
    name: &'static str,
    client_ns: Option<PathBuf>,
    addr: String,
    port: u16,
}

/// What the bench set up, removed by [`Setup::remove`] whatever happened.
#[derive(Default)]
struct Setup {
    netns: Vec<PathBuf>,
    servers: Vec<Child>,
    containers: bool,
    lan: bool,
}

/// `cmd` run in the network namespace `ns` (the fake host's own when `None`).
fn in_ns(ns: Option<&Path>, cmd: &[&str]) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.display())).args(cmd);
            c
        }
        None => {
            let mut c = Command::new(cmd[0]);
            c.args(&cmd[1..]);
            c
        }
    }
}

fn sh(ns: Option<&Path>, cmd: &[&str]) -> Result<()> {
    let out = in_ns(ns, cmd).output().with_context(|| format!("run {}", cmd.join(" ")))?;
    if !out.status.success() {
        bail!("{}: {}", cmd.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

pub(crate) fn available() -> bool {
    Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) async fn run(d: &Daemon, root: &Path, o: &Options) -> Result<Outcome> {
    let kernel = Kernel::new().await?;
    let mut setup = Setup::default();
    let result = measure(d, &kernel, &root.join("throughput"), o, &mut setup).await;
    setup.remove(d, &kernel).await;
    result
}

async fn measure(
    d: &Daemon,
    kernel: &Kernel,
    dir: &Path,
    o: &Options,
    setup: &mut Setup,
) -> Result<Outcome> {
    let paths = build(d, kernel, dir, setup).await?;
    let mut series: Vec<Series> = paths.iter().map(|p| Series::new(p.name)).collect();
    let mut ratios: Vec<Vec<f64>> = vec![vec![]; paths.len()];
    let mut rng = rand::rng();
    for rep in 0..o.reps {
        let mut order: Vec<usize> = (0..paths.len()).collect();
        order.shuffle(&mut rng);
        let mut gbits = vec![0f64; paths.len()];
        for i in order {
            gbits[i] = iperf(&paths[i], o.seconds)?;
            eprintln!("throughput: rep {} {}: {:.2} Gbit/s", rep + 1, paths[i].name, gbits[i]);
        }
        for (i, g) in gbits.iter().enumerate() {
            series[i].push(*g);
            ratios[i].push(g / gbits[0]);
        }
    }
    Ok(report(&series, &ratios, o))
}

/// Build every path and start the iperf3 servers.
async fn build(d: &Daemon, kernel: &Kernel, dir: &Path, setup: &mut Setup) -> Result<Vec<Route>> {
    let mut ns = |name: &str| {
        let p = dir.join(name);
        setup.netns.push(p.clone());
        p
    };
    let (va, vb, br, b1, b2) = (ns("va"), ns("vb"), ns("br"), ns("b1"), ns("b2"));
    for p in [&va, &vb, &br, &b1, &b2] {
        kernel.create_netns(p).await?;
    }
    let s = |p: &PathBuf| p.to_str().expect("utf-8 path").to_owned();

    // Raw veth: va <-> vb.
    sh(
        None,
        &[
            "ip",
            "link",
            "add",
            "tpva",
            "netns",
            &s(&va),
            "type",
            "veth",
            "peer",
            "name",
            "tpvb",
            "netns",
            &s(&vb),
        ],
    )?;
    let addr = |ns: &PathBuf, link: &str, a: &str| -> Result<[Op; 2]> {
        Ok([
            Op::AddAddress { netns: Netns::Path(ns.clone()), link: link.into(), addr: a.parse()? },
            Op::SetUp { netns: Netns::Path(ns.clone()), link: link.into() },
        ])
    };
    kernel.apply(&addr(&va, "tpva", "10.254.0.1/30")?).await?;
    kernel.apply(&addr(&vb, "tpvb", "10.254.0.2/30")?).await?;

    // Raw bridge: b1 -> bridge (in br, no rules there) -> b2.
    sh(Some(&br), &["ip", "link", "add", "tpbr", "type", "bridge"])?;
    sh(Some(&br), &["ip", "link", "set", "tpbr", "up"])?;
    for (i, b) in [(1, &b1), (2, &b2)] {
        let port = format!("tpb{i}");
        sh(
            Some(&br),
            &["ip", "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &s(b)],
        )?;
        sh(Some(&br), &["ip", "link", "set", &port, "master", "tpbr", "up"])?;
        kernel.apply(&addr(b, "eth0", &format!("10.253.0.{i}/24"))?).await?;
    }

    // The host's LAN address.
    setup.lan = true;
    sh(None, &["ip", "link", "add", LAN_IF, "type", "veth", "peer", "name", LAN_PEER])?;
    sh(None, &["ip", "addr", "add", &format!("{LAN_ADDR}/24"), "dev", LAN_IF])?;
    sh(None, &["ip", "link", "set", LAN_PEER, "up"])?;
    sh(None, &["ip", "link", "set", LAN_IF, "up"])?;

    // Cove: a network, a server container publishing its port, a client container.
    setup.containers = true;
    d.cli(&["network", "create", "--subnet", "10.252.0.0/24", "tpnet"])?;
    let publish = format!("{PUBLISHED_PORT}:{SERVER_PORT}");
    d.cli(&[
        "run",
        "-d",
        "--name",
        "tp-server",
        "--network",
        "tpnet",
        "-p",
        &publish,
        "busybox",
        "sleep",
        "1000000",
    ])?;
    d.cli(&[
        "run",
        "-d",
        "--name",
        "tp-client",
        "--network",
        "tpnet",
        "busybox",
        "sleep",
        "1000000",
    ])?;
    let (server_ns, server_ip) = sandbox(d, "tp-server")?;
    let (client_ns, _) = sandbox(d, "tp-client")?;

    for ns in [&vb, &b2, &server_ns] {
        let child = in_ns(Some(ns), &["iperf3", "-s", "-p", &SERVER_PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start iperf3 -s")?;
        setup.servers.push(child);
    }
    std::thread::sleep(Duration::from_millis(300));
    let path = |name, client_ns: Option<&PathBuf>, addr: &str, port| Route {
        name,
        client_ns: client_ns.cloned(),
        addr: addr.to_owned(),
        port,
    };
    Ok(vec![
        path("raw veth (netns ↔ netns)", Some(&va), "10.254.0.2", SERVER_PORT),
        path("raw bridge (netns → bridge → netns)", Some(&b1), "10.253.0.2", SERVER_PORT),
        path("cove container → container", Some(&client_ns), &server_ip, SERVER_PORT),
        path("host → published port (LAN address)", None, LAN_ADDR, PUBLISHED_PORT),
        path("host → published port (127.0.0.1)", None, "127.0.0.1", PUBLISHED_PORT),
    ])
}

/// A container's network namespace (`SandboxKey`) and address.
fn sandbox(d: &Daemon, name: &str) -> Result<(PathBuf, String)> {
    let v = d.api_json("GET", &format!("/containers/{name}/json"), 200)?;
    let key = v["NetworkSettings"]["SandboxKey"].as_str().context("no SandboxKey")?;
    let ip = v["NetworkSettings"]["Networks"]["tpnet"]["IPAddress"]
        .as_str()
        .context("no IPAddress on tpnet")?;
    Ok((key.into(), ip.to_owned()))
}

/// One iperf3 run; Gbit/s received. A few retries while a server comes up.
fn iperf(p: &Route, seconds: u32) -> Result<f64> {
    let (port, t) = (p.port.to_string(), seconds.to_string());
    let mut last = String::new();
    for _ in 0..5 {
        let out =
            in_ns(p.client_ns.as_deref(), &["iperf3", "-c", &p.addr, "-p", &port, "-t", &t, "-J"])
                .output()
                .context("run iperf3 -c")?;
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        if let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
            return Ok(bps / 1e9);
        }
        last = v["error"]
            .as_str()
            .map_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_owned(), str::to_owned);
        std::thread::sleep(Duration::from_millis(500));
    }
    bail!("iperf3 to {}:{} ({}): {last}", p.addr, p.port, p.name)
}

impl Setup {
    async fn remove(&mut self, d: &Daemon, kernel: &Kernel) {
        for mut c in self.servers.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.containers {
            for c in ["tp-server", "tp-client"] {
                let _ = d.api("DELETE", &format!("/containers/{c}?force=1"), None, 204);
            }
            let _ = d.api("DELETE", "/networks/tpnet", None, 204);
        }
        if self.lan {
            let _ = sh(None, &["ip", "link", "del", LAN_IF]);
        }
        // The veth pairs and the bridge go with their namespaces.
        for p in self.netns.drain(..) {
            let _ = kernel.remove_netns(&p).await;
        }
    }
}

fn report(series: &[Series], ratios: &[Vec<f64>], o: &Options) -> Outcome {
    let mut md = String::from(
        "| path | median Gbit/s | min | max | n | ratio to raw veth (median of per-rep ratios) |\n|---|---|---|---|---|---|\n",
    );
    for (s, r) in series.iter().zip(ratios) {
        let mut r = r.clone();
        r.sort_by(f64::total_cmp);
        let ratio = r.get(r.len() / 2).copied().unwrap_or(f64::NAN);
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {} | {:.2}x |\n",
            s.name,
            s.median(),
            s.quantile(0.0),
            s.quantile(1.0),
            s.len(),
            ratio
        ));
    }
    let json = serde_json::json!({
        "reps": o.reps,
        "seconds": o.seconds,
        "unit": "Gbit/s",
        "series": series.iter().zip(ratios).map(|(s, r)| serde_json::json!({
            "name": s.name,
            "gbits": s.samples(),
            "ratio_to_raw_veth": r,
        })).collect::<Vec<_>>(),
    });
    Outcome { markdown: md, json }
}
