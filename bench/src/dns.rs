//! Embedded DNS: queries per second from inside a container's network namespace, with a
//! compiled load client (this process, a thread that entered the container's netns with
//! `setns`: the same network path as a process inside the container), reps interleaved in
//! random order:
//!
//! * **cove local**: Cove's resolver at 127.0.0.11 for a container name on the same network;
//! * **floor**: a do-nothing responder at 127.0.0.12:53 in the same netns (a thread of this
//!   process, single-threaded blocking `recv_from`/`send_to` that echoes the question with
//!   one fixed A record, like the anchors' `dnsfloor.c`): what any server costs on this
//!   path;
//! * **cove forwarded**: an external name, container → Cove (127.0.0.11) → the fake host's
//!   upstream resolver, a responder like the floor's in a namespace of its own behind a
//!   veth, named by the fake host's `/etc/resolv.conf` (bind-mounted over it in this fake
//!   host's mount namespace only).
//!
//! The client keeps N queries in flight on one connected UDP socket for a fixed time and
//! counts the answers that carry the expected address; latency is from just before `send`
//! to the receipt of the answer. When aardvark-dns is installed it is measured too, set up
//! as netavark runs it (`dns_aardvark`), with its own floor on its own path; so is
//! dockerd when installed, a private one in the fake host (`dns_dockerd`), local names only.

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cove_kernel::Kernel;

use crate::daemon::Daemon;
use crate::dns_aardvark::{self, Aardvark};
use crate::dns_dockerd::{self, DockerDns};
use crate::dnsload::{load, Responder, Run, ANSWER};
use crate::http::Engine;

pub(crate) struct Options {
    pub(crate) reps: usize,
    /// Length of one measurement.
    pub(crate) millis: u64,
    /// Queries in flight, one measurement each per path and rep.
    pub(crate) inflight: Vec<usize>,
    /// Also start a private dockerd as a peer (off in the CI smoke run).
    pub(crate) dockerd: bool,
}

pub(crate) struct Outcome {
    pub(crate) markdown: String,
    pub(crate) json: serde_json::Value,
}

const NET: &str = "dnsbench";
const SUBNET: &str = "10.249.0.0/24";
const TARGET: &str = "dns-target";
const CLIENT: &str = "dns-client";
/// The fake host's side of the upstream's veth, and the upstream's address.
const UP_IF: &str = "bdnsup0";
const HOST_ADDR: &str = "203.0.113.1/24";
const UPSTREAM: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);
/// The do-nothing responder in the container's netns.
const FLOOR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 12)), 53);
const COVE: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);
const EXTERNAL: &str = "ext.bench.example";

/// One measured path: who the client asks for what, from which namespace, and which
/// path is its floor (itself for a floor).
struct Target {
    label: &'static str,
    ns: PathBuf,
    server: SocketAddr,
    name: &'static str,
    want: Ipv4Addr,
    floor: usize,
}

/// Peers not measured in this run, and why.
fn skipped_others() -> Vec<String> {
    let mut out = vec![];
    if !crate::dockerd::installed() {
        out.push(
            "dockerd: not installed (Debian package `docker.io`); skipped, anchors used".into(),
        );
    }
    if dns_aardvark::binary().is_none() {
        out.push(
            "aardvark-dns: not installed (Debian package `aardvark-dns`); skipped, anchors used"
                .into(),
        );
    }
    out
}

/// What the bench set up, removed by [`Setup::remove`] whatever happened.
#[derive(Default)]
struct Setup {
    netns: Option<PathBuf>,
    link: bool,
    resolv_bound: bool,
    containers: bool,
    responders: Vec<Responder>,
    aardvark: Aardvark,
    docker: Option<DockerDns>,
}

pub(crate) async fn run(d: &Daemon, root: &Path, o: &Options) -> Result<Outcome> {
    for why in skipped_others() {
        eprintln!("dns: {why}");
    }
    let kernel = Kernel::new().await?;
    let mut setup = Setup::default();
    let result = measure(d, &kernel, &root.join("dns"), o, &mut setup).await;
    setup.remove(d, &kernel).await;
    result
}

pub(crate) fn sh(cmd: &[&str]) -> Result<()> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .with_context(|| format!("run {}", cmd.join(" ")))?;
    if !out.status.success() {
        bail!("{}: {}", cmd.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Refuse to touch `/etc/resolv.conf` unless this process is in a mount namespace of its
/// own (the fake host's), never the real host's.
fn check_fake_host() -> Result<()> {
    let ns = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let mine = ns("/proc/self/ns/mnt").context("own mount namespace")?;
    if std::env::var("COVE_IN_FAKE_HOST").as_deref() != Ok("1")
        || ns("/proc/1/ns/mnt").is_ok_and(|init| init == mine)
    {
        bail!("the dns bench rebinds /etc/resolv.conf: run it in a fake host (scripts/bench.sh)");
    }
    Ok(())
}

async fn measure(
    d: &Daemon,
    kernel: &Kernel,
    dir: &Path,
    o: &Options,
    setup: &mut Setup,
) -> Result<Outcome> {
    check_fake_host()?;
    std::fs::create_dir_all(dir)?;

    // The host's upstream resolver: a namespace behind a veth of the fake host.
    let up_ns = dir.join("upstream");
    kernel.create_netns(&up_ns).await?;
    setup.netns = Some(up_ns.clone());
    let up_path = up_ns.to_str().context("utf-8 path")?;
    setup.link = true;
    sh(&["ip", "link", "add", UP_IF, "type", "veth", "peer", "name", "eth0", "netns", up_path])?;
    sh(&["ip", "addr", "add", HOST_ADDR, "dev", UP_IF])?;
    sh(&["ip", "link", "set", UP_IF, "up"])?;
    let in_up = |args: &[&str]| {
        let mut v = vec!["nsenter".to_owned(), format!("--net={up_path}")];
        v.extend(args.iter().map(|s| (*s).to_owned()));
        v
    };
    for args in [
        in_up(&["ip", "addr", "add", &format!("{UPSTREAM}/24"), "dev", "eth0"]),
        in_up(&["ip", "link", "set", "eth0", "up"]),
        in_up(&["ip", "link", "set", "lo", "up"]),
    ] {
        sh(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    setup.responders.push(Responder::start(Some(&up_ns), SocketAddr::from((UPSTREAM, 53)))?);

    // The fake host's resolv.conf names it: read by the daemon when a sandbox is set up.
    let resolv = dir.join("resolv.conf");
    std::fs::write(&resolv, format!("# cove-bench dns\nnameserver {UPSTREAM}\n"))?;
    sh(&["mount", "--bind", resolv.to_str().context("utf-8 path")?, "/etc/resolv.conf"])?;
    setup.resolv_bound = true;

    // Cove: a user network, the container to resolve and the client's container.
    setup.containers = true;
    d.cli(&["network", "create", "--subnet", SUBNET, NET])?;
    for name in [TARGET, CLIENT] {
        d.cli(&["run", "-d", "--name", name, "--network", NET, "busybox", "sleep", "1000000"])?;
    }
    let client_ns = sandbox_key(d, CLIENT)?;
    let target_ip: Ipv4Addr = {
        let v = d.api_json("GET", &format!("/containers/{TARGET}/json"), 200)?;
        v["NetworkSettings"]["Networks"][NET]["IPAddress"]
            .as_str()
            .context("no IPAddress")?
            .parse()?
    };
    setup.responders.push(Responder::start(Some(&client_ns), FLOOR)?);

    let mut targets = vec![
        Target {
            label: "floor (do-nothing responder)",
            ns: client_ns.clone(),
            server: FLOOR,
            name: TARGET,
            want: ANSWER,
            floor: 0,
        },
        Target {
            label: "cove local name",
            ns: client_ns.clone(),
            server: COVE,
            name: TARGET,
            want: target_ip,
            floor: 0,
        },
        Target {
            label: "cove forwarded",
            ns: client_ns,
            server: COVE,
            name: EXTERNAL,
            want: ANSWER,
            floor: 0,
        },
    ];
    if let Some(bin) = dns_aardvark::binary() {
        // Started after the resolv.conf bind: aardvark-dns reads it when it starts.
        setup.aardvark.start(kernel, &bin, dir).await?;
        setup.responders.push(Responder::start(None, dns_aardvark::FLOOR)?);
        let ns = setup.aardvark.client_ns().context("aardvark client netns")?.to_owned();
        let floor = targets.len();
        for (label, server, name, want) in [
            ("aardvark floor (responder at the gateway)", dns_aardvark::FLOOR, TARGET, ANSWER),
            (
                "aardvark-dns local name",
                dns_aardvark::SERVER,
                dns_aardvark::TARGET,
                dns_aardvark::TARGET_IP,
            ),
            ("aardvark-dns forwarded", dns_aardvark::SERVER, EXTERNAL, ANSWER),
        ] {
            targets.push(Target { label, ns: ns.clone(), server, name, want, floor });
        }
    }
    if o.dockerd && crate::dockerd::installed() {
        let docker = DockerDns::start(dir)?;
        let ns = docker.client_ns.clone();
        let want = docker.target_ip;
        setup.docker = Some(docker);
        setup.responders.push(Responder::start(Some(&ns), FLOOR)?);
        let floor = targets.len();
        for (label, server, name, want) in [
            ("dockerd floor (responder in its container)", FLOOR, TARGET, ANSWER),
            ("dockerd local name", COVE, dns_dockerd::TARGET, want),
        ] {
            targets.push(Target { label, ns: ns.clone(), server, name, want, floor });
        }
    }
    // Every path answers correctly before anything is timed.
    for t in &targets {
        let r = load(&t.ns, t.server, t.name, t.want, 1, Duration::from_millis(200))?;
        if r.ok == 0 {
            bail!("{}: no correct answer from {} for {}: {r:?}", t.label, t.server, t.name);
        }
    }

    let mut runs: Vec<Vec<Vec<Run>>> = vec![vec![vec![]; o.inflight.len()]; targets.len()];
    let mut rng = rand::rng();
    let dur = Duration::from_millis(o.millis);
    for rep in 0..o.reps {
        let mut order: Vec<(usize, usize)> =
            (0..targets.len()).flat_map(|p| (0..o.inflight.len()).map(move |k| (p, k))).collect();
        order.shuffle(&mut rng);
        for (p, k) in order {
            let t = &targets[p];
            let r = load(&t.ns, t.server, t.name, t.want, o.inflight[k], dur)?;
            eprintln!(
                "dns: rep {} {} in flight {}: {:.0} q/s (p50 {:.3} ms, lost {}, bad {})",
                rep + 1,
                t.label,
                o.inflight[k],
                r.qps(),
                r.latency.median(),
                r.lost,
                r.bad
            );
            runs[p][k].push(r);
        }
    }
    Ok(report(&targets, &runs, o))
}

/// A container's network namespace (`SandboxKey`).
fn sandbox_key(d: &Daemon, name: &str) -> Result<PathBuf> {
    let v = d.api_json("GET", &format!("/containers/{name}/json"), 200)?;
    Ok(v["NetworkSettings"]["SandboxKey"].as_str().context("no SandboxKey")?.into())
}

impl Setup {
    async fn remove(&mut self, d: &Daemon, kernel: &Kernel) {
        for r in self.responders.drain(..) {
            r.stop();
        }
        self.aardvark.remove(kernel).await;
        if let Some(mut d) = self.docker.take() {
            d.daemon.stop();
        }
        if self.containers {
            for c in [CLIENT, TARGET] {
                let _ = d.api("DELETE", &format!("/containers/{c}?force=1"), None, 204);
            }
            let _ = d.api("DELETE", &format!("/networks/{NET}"), None, 204);
        }
        if self.resolv_bound {
            let _ = sh(&["umount", "/etc/resolv.conf"]);
        }
        if self.link {
            let _ = sh(&["ip", "link", "del", UP_IF]);
        }
        if let Some(p) = self.netns.take() {
            let _ = kernel.remove_netns(&p).await;
        }
    }
}

/// Median of `v` (upper median for even lengths, as [`Series::median`]).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Anchors (shared/bench/anchors/RESULTS.md, 16 in flight, Python client `dnsloop.py`).
const ANCHOR_DOCKERD: f64 = 69_611.0;
const ANCHOR_AARDVARK: f64 = 89_408.0;
const ANCHOR_FLOOR: f64 = 124_568.0;

/// Median over reps of the per-rep ratio of path `p` to path `f` at in-flight index `k`.
fn ratio(runs: &[Vec<Vec<Run>>], p: usize, f: usize, k: usize) -> f64 {
    median(runs[p][k].iter().zip(&runs[f][k]).map(|(r, f)| r.qps() / f.qps()).collect())
}

fn report(targets: &[Target], runs: &[Vec<Vec<Run>>], o: &Options) -> Outcome {
    let mut md = format!(
        "{} ms per measurement, {} reps interleaved in random order; q/s counts answers with \
         the expected address. Ratio: per rep, q/s of the path / q/s of its floor (the \
         do-nothing responder on the same path) at the same number in flight, median over \
         reps. Latency: median over reps of each rep's percentile.\n\n\
         | path | in flight | median q/s | min–max q/s | ratio to its floor | p50 ms | p99 ms | lost / bad |\n\
         |---|---|---|---|---|---|---|---|\n",
        o.millis, o.reps
    );
    let mut json_paths = vec![];
    for (p, per_k) in runs.iter().enumerate() {
        let t = &targets[p];
        for (k, reps) in per_k.iter().enumerate() {
            let qps: Vec<f64> = reps.iter().map(Run::qps).collect();
            let ratios: Vec<f64> =
                reps.iter().zip(&runs[t.floor][k]).map(|(r, f)| r.qps() / f.qps()).collect();
            let p50 = median(reps.iter().map(|r| r.latency.quantile(0.5)).collect());
            let p99 = median(reps.iter().map(|r| r.latency.quantile(0.99)).collect());
            let (lost, bad) = reps.iter().fold((0, 0), |(l, b), r| (l + r.lost, b + r.bad));
            let min = qps.iter().copied().fold(f64::INFINITY, f64::min);
            let max = qps.iter().copied().fold(0.0, f64::max);
            md.push_str(&format!(
                "| {} | {} | {:.0} | {:.0}–{:.0} | {} | {:.3} | {:.3} | {lost} / {bad} |\n",
                t.label,
                o.inflight[k],
                median(qps.clone()),
                min,
                max,
                if t.floor == p {
                    "1.00x (floor)".to_owned()
                } else {
                    format!("{:.2}x", median(ratios.clone()))
                },
                p50,
                p99,
            ));
            json_paths.push(serde_json::json!({
                "path": t.label,
                "floor": targets[t.floor].label,
                "inflight": o.inflight[k],
                "qps": qps,
                "ratio_to_floor": ratios,
                "p50_ms": reps.iter().map(|r| r.latency.quantile(0.5)).collect::<Vec<_>>(),
                "p90_ms": reps.iter().map(|r| r.latency.quantile(0.9)).collect::<Vec<_>>(),
                "p99_ms": reps.iter().map(|r| r.latency.quantile(0.99)).collect::<Vec<_>>(),
                "answered_ok": reps.iter().map(|r| r.ok).collect::<Vec<_>>(),
                "bad": reps.iter().map(|r| r.bad).collect::<Vec<_>>(),
                "lost": reps.iter().map(|r| r.lost).collect::<Vec<_>>(),
            }));
        }
    }
    // Head to head with aardvark-dns, when it ran: per rep, Cove's path over aardvark's.
    let find = |label: &str| targets.iter().position(|t| t.label == label);
    let mut versus = vec![];
    for (cove, peer) in [
        ("cove local name", "dockerd local name"),
        ("cove local name", "aardvark-dns local name"),
        ("cove forwarded", "aardvark-dns forwarded"),
    ] {
        let (Some(c), Some(a)) = (find(cove), find(peer)) else { continue };
        for (k, n) in o.inflight.iter().enumerate() {
            let qps = median(
                runs[c][k].iter().zip(&runs[a][k]).map(|(x, y)| x.qps() / y.qps()).collect(),
            );
            let rel = ratio(runs, c, targets[c].floor, k) / ratio(runs, a, targets[a].floor, k);
            versus.push(format!("| {cove} / {peer} | {n} | {qps:.2}x | {rel:.2}x |\n"));
        }
    }
    if !versus.is_empty() {
        md.push_str(
            "\nCove against dockerd and aardvark-dns in the same run (per-rep q/s ratio, median; and the \
             ratio of their ratios to their own floors):\n\n\
             | paths | in flight | q/s ratio | floor-relative ratio |\n|---|---|---|---|\n",
        );
        md.push_str(&versus.concat());
    }
    // The anchors were taken at 16 in flight with a Python client on another machine.
    if let (Some(k), Some(local)) =
        (o.inflight.iter().position(|&n| n == 16), find("cove local name"))
    {
        let cove_rel = ratio(runs, local, targets[local].floor, k);
        md.push_str(&format!(
            "\nAgainst dockerd (anchors, RESULTS.md: 16 in flight, Python client `dnsloop.py`, \
             a 2-vCPU VM): dockerd {:.1}k q/s = {:.2}x its floor (C floor {:.1}k). Here at 16 \
             in flight cove local = {:.2}x its floor: {:.2}x dockerd's floor-relative rate.\n",
            ANCHOR_DOCKERD / 1e3,
            ANCHOR_DOCKERD / ANCHOR_FLOOR,
            ANCHOR_FLOOR / 1e3,
            cove_rel,
            cove_rel / (ANCHOR_DOCKERD / ANCHOR_FLOOR),
        ));
    }
    for why in skipped_others() {
        md.push_str(&format!("\n{why}.\n"));
    }
    let json = serde_json::json!({
        "reps": o.reps,
        "millis": o.millis,
        "inflight": o.inflight,
        "unit": "answered queries per second",
        "paths": json_paths,
        "skipped": skipped_others(),
        "anchors_16_inflight_python_client": {
            "dockerd": ANCHOR_DOCKERD, "aardvark": ANCHOR_AARDVARK, "floor": ANCHOR_FLOOR,
        },
    });
    Outcome { markdown: md, json }
}
