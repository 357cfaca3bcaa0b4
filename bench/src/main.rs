//! `cove-bench`: Cove through its API against the kernel floor measured in the same run,
//! interleaved (random order per iteration), reporting medians and ratios.
//!
//! * `attach`: network connect/disconnect of a running container vs in-process netlink;
//! * `ports`: start of a container with a published port at N running containers vs
//!   netlink + one nftables element;
//! * `throughput`: iperf3 over Cove's datapaths vs raw veth;
//! * `scale`: Docker, netavark and CNI (those installed) on the same operations as Cove at
//!   growing container counts, each in a phase of its own with its own floor, then `ports`;
//! * `dns`: queries per second from inside a container against the embedded resolver
//!   (local names and forwarded ones) vs a do-nothing responder on the same path;
//! * `fill`: containers started per second with K start requests in flight (no floor: it
//!   measures the daemon's concurrency, before/after comparisons of its own);
//! * `overlay`: two fake hosts and etcd (a netlab): throughput across the VXLAN tunnel vs
//!   the underlay, overlay attach vs bridge attach, `run` on one host to reachable from
//!   the other; the same for Docker 20.10's classic overlay (`dockerd --cluster-store`) on
//!   two more fake hosts of the netlab, when dockerd is installed and `--peers` names
//!   docker (the default). Only when asked for by name (it builds its own hosts).
//! * `overlay-scale`: three fake hosts and etcd, N containers per host on 4 overlay
//!   networks: start, attach, detach and rm latency as the cluster fills, etcd writes per
//!   start, daemon RSS, and every container reachable from another host. By name only.
//! * `services`: Swarm services on one fake host (a cluster of one) and on three with
//!   etcd: connections and iperf3 through a VIP vs to a task, one task's start/stop cost
//!   at N services (vs `docker run`), scale 1 → N convergence, failover after a daemon is
//!   killed, and whether Docker's swarm services run on this kernel. By name only.
//!
//! Run it inside a fake host (`scripts/bench.sh` does): it starts its own daemon, so the
//! real host is never touched. Timings live here, never in tests.

mod attach;
mod daemon;
mod dns;
mod dns_aardvark;
mod dns_dockerd;
mod dnsload;
mod dockerd;
mod fill;
mod floor;
mod http;
mod nftwatch;
mod overlay;
mod overlay_docker;
mod overlay_scale;
mod peers;
mod ports;
mod scale;
mod services;
mod services_docker;
mod services_lab;
mod services_multi;
mod services_start;
mod stats;
mod svcprobe;
mod throughput;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

use daemon::Daemon;

const USAGE: &str =
    "usage: cove-bench [all|attach|ports|scale|throughput|dns|fill|overlay|overlay-scale|services] \
[--quick] [--full] [--iterations N] [--port-iterations N] [--counts N,N,...] [--workers N] \
[--reps N] [--seconds S] [--inflight N,N,...] [--peer-counts N,N,...] [--peer-iterations N] \
[--peers docker,netavark,cni] [--fill-count N] [--fill-inflight N,N,...] [--fill-ports] \
[--per-host N] [--batch N] [--cycles N] [--conns N] [--services N,N,...] [--task-iterations N] \
[--scale-to N] [--scale-reps N] [--failovers N] [--grace S] [--cove PATH] [--out DIR]
(--reps applies to throughput, dns and fill, --seconds to throughput and dns, --inflight to
dns, --peer-* to scale, --fill-* to fill, --per-host, --batch and --cycles to
overlay-scale; --peers also to overlay (docker: Docker 20.10's classic overlay beside
Cove's) and services (docker: try Docker's swarm services); --reps, --seconds, --conns,
--services, --task-iterations, --scale-*, --failovers and --grace to services; `all` runs
scale in place of ports)";

struct Args {
    which: String,
    cove: PathBuf,
    iterations: usize,
    ports: ports::Options,
    throughput: throughput::Options,
    dns: dns::Options,
    fill: fill::Options,
    overlay_scale: overlay_scale::Options,
    services: services::Options,
    peer_counts: Vec<usize>,
    peer_iterations: usize,
    peers: Vec<String>,
    quick: bool,
    out: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        which: "all".into(),
        cove: "target/release/cove".into(),
        iterations: 200,
        ports: ports::Options { counts: vec![10, 300], iterations: 40, workers: 3, strict: false },
        throughput: throughput::Options { reps: 3, seconds: 3 },
        dns: dns::Options { reps: 5, millis: 2000, inflight: vec![1, 16, 100], dockerd: true },
        fill: fill::Options { containers: 100, inflight: vec![1, 2, 4, 8], reps: 3, ports: false },
        overlay_scale: overlay_scale::Options {
            per_host: 300,
            batch: 50,
            attach_cycles: 5,
            cycles: 1,
        },
        services: services::Options::full(),
        peer_counts: vec![10, 300],
        peer_iterations: 15,
        peers: scale::PEERS.iter().map(|p| p.to_string()).collect(),
        quick: false,
        out: None,
    };
    let mut it = std::env::args().skip(1);
    let num = |v: Option<String>, what: &str| -> Result<usize> {
        v.with_context(|| format!("{what} N"))?.parse().with_context(|| format!("{what} N"))
    };
    let list = |v: Option<String>, what: &str| -> Result<Vec<usize>> {
        let v = v.with_context(|| format!("{what} N,N,..."))?;
        let mut c = v
            .split(',')
            .map(|n| n.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{what} N,N,..."))?;
        c.sort_unstable();
        c.dedup();
        Ok(c)
    };
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "all" | "attach" | "ports" | "scale" | "throughput" | "dns" | "fill" | "overlay"
            | "overlay-scale" | "services" => a.which = arg,
            "--quick" => {
                a.quick = true;
                a.ports.strict = true;
                a.iterations = 10;
                a.ports.counts = vec![3];
                a.ports.iterations = 3;
                a.throughput = throughput::Options { reps: 1, seconds: 1 };
                a.dns = dns::Options { reps: 1, millis: 250, inflight: vec![16], dockerd: false };
                a.peer_counts = vec![3];
                a.peer_iterations = 2;
                // The published-port path too: the smoke run covers both create bodies.
                a.fill =
                    fill::Options { containers: 10, inflight: vec![1, 4], reps: 1, ports: true };
                a.overlay_scale =
                    overlay_scale::Options { per_host: 12, batch: 4, attach_cycles: 2, cycles: 1 };
                a.services = services::Options::quick();
            }
            "--full" => a.ports.counts = vec![10, 300, 1000, 2000],
            "--iterations" => a.iterations = num(it.next(), "--iterations")?,
            "--port-iterations" => a.ports.iterations = num(it.next(), "--port-iterations")?,
            "--workers" => a.ports.workers = num(it.next(), "--workers")?.clamp(1, 16),
            "--reps" => {
                a.throughput.reps = num(it.next(), "--reps")?.max(1);
                a.dns.reps = a.throughput.reps;
                a.fill.reps = a.throughput.reps;
                a.services.reps = a.throughput.reps;
            }
            "--seconds" => {
                a.throughput.seconds = num(it.next(), "--seconds")?.max(1) as u32;
                a.dns.millis = u64::from(a.throughput.seconds) * 1000;
                a.services.seconds = a.throughput.seconds;
            }
            "--inflight" => {
                a.dns.inflight = list(it.next(), "--inflight")?;
                a.dns.inflight.retain(|&n| n > 0);
                if a.dns.inflight.is_empty() {
                    bail!("--inflight N,N,...: at least one positive number");
                }
            }
            "--fill-count" => a.fill.containers = num(it.next(), "--fill-count")?.max(1),
            "--fill-inflight" => {
                a.fill.inflight = list(it.next(), "--fill-inflight")?;
                a.fill.inflight.retain(|&n| n > 0);
                if a.fill.inflight.is_empty() {
                    bail!("--fill-inflight N,N,...: at least one positive number");
                }
            }
            "--fill-ports" => a.fill.ports = true,
            "--per-host" => a.overlay_scale.per_host = num(it.next(), "--per-host")?.max(1),
            "--batch" => a.overlay_scale.batch = num(it.next(), "--batch")?.max(1),
            "--cycles" => a.overlay_scale.cycles = num(it.next(), "--cycles")?.max(1),
            "--conns" => a.services.conns = num(it.next(), "--conns")?.max(1),
            "--services" => {
                a.services.services = list(it.next(), "--services")?;
                a.services.services.retain(|&n| n > 0);
            }
            "--task-iterations" => {
                a.services.iterations = num(it.next(), "--task-iterations")?.max(1)
            }
            "--scale-to" => a.services.scale_to = num(it.next(), "--scale-to")?.max(2),
            "--scale-reps" => a.services.scale_reps = num(it.next(), "--scale-reps")?.max(1),
            "--failovers" => a.services.failovers = num(it.next(), "--failovers")?.max(1),
            "--grace" => a.services.grace = num(it.next(), "--grace")? as u64,
            "--counts" => a.ports.counts = list(it.next(), "--counts")?,
            "--peer-counts" => a.peer_counts = list(it.next(), "--peer-counts")?,
            "--peer-iterations" => a.peer_iterations = num(it.next(), "--peer-iterations")?.max(1),
            "--peers" => {
                let v = it.next().context("--peers NAME,NAME,...")?;
                a.peers = v.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect();
                if let Some(bad) = a.peers.iter().find(|p| !scale::PEERS.contains(&p.as_str())) {
                    bail!("--peers: unknown peer {bad} (known: {})", scale::PEERS.join(","));
                }
                a.services.docker = a.peers.iter().any(|p| p == "docker");
            }
            "--cove" => a.cove = it.next().context("--cove PATH")?.into(),
            "--out" => a.out = Some(it.next().context("--out DIR")?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    Ok(a)
}

/// Markdown sections and JSON files of the benches that ran.
#[derive(Default)]
struct Results {
    markdown: String,
    json: Vec<(&'static str, serde_json::Value)>,
}

impl Results {
    fn add(&mut self, title: &str, file: &'static str, markdown: String, json: serde_json::Value) {
        let section = format!("## {title}\n\n{markdown}\n");
        println!("{section}");
        self.markdown.push_str(&section);
        self.json.push((file, json));
    }

    /// Write the JSON files and `report.md` into `dir`, if given.
    fn write(&self, dir: Option<&Path>) -> Result<()> {
        let Some(dir) = dir else { return Ok(()) };
        std::fs::create_dir_all(dir)?;
        for (file, json) in &self.json {
            std::fs::write(dir.join(file), serde_json::to_string_pretty(json)?)?;
        }
        std::fs::write(dir.join("report.md"), &self.markdown)?;
        Ok(())
    }
}

async fn run(a: &Args, d: &Daemon, root: &Path, r: &mut Results) -> Result<()> {
    let all = a.which == "all";
    if all || a.which == "attach" {
        let o = attach::run(d, root, a.iterations).await?;
        r.add("Attach and detach", "attach.json", o.markdown, o.json);
    }
    if a.which == "ports" {
        let o = ports::run(d, root, &a.ports).await?;
        r.add("Published-port attach at N containers", "ports.json", o.markdown, o.json);
    }
    if all || a.which == "scale" {
        let o = scale::Options {
            cove: a.ports.clone(),
            peer_counts: a.peer_counts.clone(),
            peer_iterations: a.peer_iterations,
            peers: a.peers.clone(),
            strict: a.quick,
        };
        let o = scale::run(d, root, &o).await?;
        r.add("Side by side at N containers", "scale.json", o.markdown, o.json);
    }
    if all || a.which == "fill" {
        let o = fill::run(d, &a.fill).await?;
        r.add(
            "Fill rate: containers started per second with K requests in flight",
            "fill.json",
            o.markdown,
            o.json,
        );
    }
    if all || a.which == "throughput" {
        if throughput::available() {
            let o = throughput::run(d, root, &a.throughput).await?;
            r.add("Throughput (iperf3, one TCP stream)", "throughput.json", o.markdown, o.json);
        } else if a.which == "throughput" {
            bail!("iperf3 is not installed (scripts/bench.sh installs it)");
        } else {
            eprintln!(
                "throughput: iperf3 is not installed; skipped (scripts/bench.sh installs it)"
            );
        }
    }
    if all || a.which == "dns" {
        let o = dns::run(d, root, &a.dns).await?;
        r.add(
            "Embedded DNS (queries per second from inside a container)",
            "dns.json",
            o.markdown,
            o.json,
        );
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    // The services bench's probes: this binary, run in a container's namespace.
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(r) = svcprobe::dispatch(&argv) {
        return r;
    }
    let args = parse_args()?;
    if args.which == "services" {
        let cove = std::fs::canonicalize(&args.cove).context("--cove")?;
        let o = services::run(&cove, &args.services)?;
        let mut results = Results::default();
        results.add("Services", "services.json", o.markdown, o.json);
        return results.write(args.out.as_deref());
    }
    if args.which == "overlay-scale" {
        let cove = std::fs::canonicalize(&args.cove).context("--cove")?;
        let o = overlay_scale::run(&cove, &args.overlay_scale)?;
        let mut results = Results::default();
        results.add("Overlay at scale", "overlay-scale.json", o.markdown, o.json);
        return results.write(args.out.as_deref());
    }
    if args.which == "overlay" {
        let o = overlay::Options {
            reps: args.throughput.reps,
            seconds: args.throughput.seconds,
            iterations: args.iterations.min(100),
            docker: args.peers.iter().any(|p| p == "docker"),
        };
        let cove = std::fs::canonicalize(&args.cove).context("--cove")?;
        let o = overlay::run(&cove, &o)?;
        let mut results = Results::default();
        results.add("Overlay across two hosts", "overlay.json", o.markdown, o.json);
        return results.write(args.out.as_deref());
    }
    let root = std::env::temp_dir().join(format!("cove-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let d = match Daemon::start(&args.cove, &root) {
        Ok(d) => d,
        Err(e) => {
            daemon::unmount_under(&root);
            let _ = std::fs::remove_dir_all(&root);
            return Err(e);
        }
    };
    let mut results = Results::default();
    let outcome = match d.import_busybox(&root) {
        Ok(()) => run(&args, &d, &root, &mut results).await,
        Err(e) => Err(e),
    };
    // Whatever happened: no container, network or process of the bench outlives it. If
    // the daemon died, a new one on the same data root finds the containers again.
    let mut cleanup = d.remove_everything(4);
    drop(d);
    if cleanup.is_err() {
        cleanup = Daemon::start(&args.cove, &root).and_then(|d| d.remove_everything(4));
    }
    daemon::unmount_under(&root);
    // For profiling (e.g. with COVE_LOG=debug COVE_LOG_SPANS=1): keep the daemon's log.
    if let Some(keep) = std::env::var_os("COVE_BENCH_DAEMON_LOG") {
        let _ = std::fs::copy(root.join("daemon.log"), keep);
    }
    let _ = std::fs::remove_dir_all(&root);
    outcome?;
    cleanup?;
    results.write(args.out.as_deref())
}
