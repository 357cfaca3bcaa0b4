//! Services (issue 14): Docker's Swarm services served by Cove, VIPs balanced in
//! nftables (ADR 0020), each figure against its floor in the same run, interleaved:
//!
//! * on one fake host, `s1`, a daemon without a cluster store (a cluster of one): short
//!   TCP connections and one iperf3 stream through a service's VIP against the same to a
//!   task's own address ([`crate::svcprobe`] runs the client and server in the
//!   containers' namespaces); and what one more task costs with 10 and 300 services
//!   already there, against a plain `docker run` ([`crate::services_start`]);
//! * on a netlab of three fake hosts with etcd: `docker service scale web=N` to all N
//!   tasks answering through the VIP from a client on another host, and the failover
//!   after one host's daemon is killed ([`crate::services_multi`]);
//! * Docker's own swarm services on this kernel, when dockerd is installed
//!   ([`crate::services_docker`]): why there is no anchor.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use anyhow::Result;
use cove_testkit::{Attach, Etcd, FakeHost, Netlab};

use crate::overlay::{iperf, iperf_server, stop_iperf_server};
use crate::services_lab::{create_web, docker, loadavg, sandbox, vip, wait_running, wait_until};
use crate::services_multi::{Failover, Scale};
use crate::services_start::StartRow;
use crate::stats::Series;
use crate::svcprobe::{connects, Server};

/// What the services bench measures.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Repetitions of the connection and throughput runs (each VIP + direct).
    pub(crate) reps: usize,
    /// Connections per connection run.
    pub(crate) conns: usize,
    /// Seconds per iperf3 run.
    pub(crate) seconds: u32,
    /// Services existing while one more task starts and stops (ascending).
    pub(crate) services: Vec<usize>,
    /// Task starts (and plain `run`s) per count of services.
    pub(crate) iterations: usize,
    /// `docker service scale web=N` on the netlab: N.
    pub(crate) scale_to: usize,
    /// Repetitions of the 1 → N scale.
    pub(crate) scale_reps: usize,
    /// Repetitions of the node crash.
    pub(crate) failovers: usize,
    /// The daemons' `--node-down-grace` on the netlab, seconds.
    pub(crate) grace: u64,
    /// Whether to try Docker's swarm services (when dockerd is installed).
    pub(crate) docker: bool,
}

impl Options {
    /// The default run.
    pub(crate) fn full() -> Self {
        Options {
            reps: 5,
            conns: 2000,
            seconds: 3,
            services: vec![10, 300],
            iterations: 10,
            scale_to: 20,
            scale_reps: 3,
            failovers: 3,
            grace: 2,
            docker: true,
        }
    }

    /// The smoke run.
    pub(crate) fn quick() -> Self {
        Options {
            reps: 1,
            conns: 200,
            seconds: 1,
            services: vec![3],
            iterations: 2,
            scale_to: 4,
            scale_reps: 1,
            failovers: 1,
            grace: 2,
            docker: false,
        }
    }
}

/// The bench's result.
pub(crate) struct Outcome {
    pub(crate) markdown: String,
    pub(crate) json: serde_json::Value,
}

/// The single host (a cluster of one) and Docker's host on the underlay.
const S1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 31);
const D1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 21);
/// The netlab's cluster hosts.
pub(crate) const HOSTS: [&str; 3] = ["h1", "h2", "h3"];
const RESOLV_CONF: &str = "# services bench: upstream without a route, fails fast\n\
                           nameserver 198.51.100.53\n";

/// Connections and throughput through the VIP and direct (index 0: VIP, 1: direct).
struct Paths {
    rate: [Series; 2],
    lat: [Series; 2],
    errors: [u64; 2],
    thr: [Series; 2],
}

pub(crate) fn run(cove: &Path, o: &Options) -> Result<Outcome> {
    let load_before = loadavg();
    let docker_missing = if !o.docker {
        Some("not asked for (--quick, or --peers without docker)".to_owned())
    } else if crate::dockerd::installed() {
        None
    } else {
        Some("dockerd is not installed (Debian's docker.io)".to_owned())
    };
    let mut lab = Netlab::with_hosts("bench_services", cove, 3);
    let mut extra = vec![("s1", Attach::new(S1))];
    if docker_missing.is_none() {
        extra.push(("d1", Attach::new(D1)));
    }
    lab.add(&extra, &[]);
    let _etcd = Etcd::start_in("bench_services", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    for h in lab.host_names() {
        lab.host(&h).set_resolv_conf(RESOLV_CONF);
    }
    let grace = o.grace.to_string();
    let flags: Vec<String> = [
        "--cluster-store",
        "etcd://203.0.113.2:2379",
        "--cluster-advertise",
        "{addr}",
        "--node-down-grace",
        &grace,
        "--label",
        "host={name}",
    ]
    .map(String::from)
    .to_vec();
    let f: Vec<&str> = flags.iter().map(String::as_str).collect();
    lab.start_daemons(&HOSTS, &f);
    lab.host_mut("s1").start_daemon(&[]);
    for h in HOSTS.iter().chain(&["s1"]) {
        lab.host(h).import_busybox("bb");
    }

    let s1 = lab.host("s1");
    let (paths, starts) = single(s1, o)?;
    let load_single = loadavg();
    let (scale, failover) = crate::services_multi::run(&mut lab, &flags, o)?;
    let docker = match docker_missing {
        Some(why) => format!("Not run: {why}."),
        None => crate::services_docker::run(lab.host("d1"), D1),
    };
    let load_after = loadavg();
    let loads = [load_before, load_single, load_after];
    Ok(report(o, &paths, &starts, &scale, &failover, &docker, &loads))
}

/// Parts 1-3 on the single host.
fn single(h: &FakeHost, o: &Options) -> Result<(Paths, Vec<StartRow>)> {
    let ov = ["network", "create", "-d", "overlay", "--attachable", "--subnet", "10.10.0.0/22"];
    docker(h, &[&ov[..], &["ov"]].concat())?;
    create_web(h, "web", 3, "ov", &[])?;
    let perf = ["service", "create", "-d", "--name", "perf", "--network", "ov", "bb"];
    docker(h, &[&perf[..], &["sleep", "1000000"]].concat())?;
    docker(h, &["run", "-d", "--name", "cl", "--network", "ov", "bb", "sleep", "1000000"])?;
    let web = wait_running(h, "web", 3, 120)?;
    let perf = wait_running(h, "perf", 1, 60)?;
    let (vip_web, vip_perf) = (vip(h, "web")?, vip(h, "perf")?);
    let cl = sandbox(h, "cl")?;
    let mut servers = vec![];
    for t in &web {
        servers.push(Server::start(h, &sandbox(h, &t.container)?, 9000)?);
    }
    let perf_ns = format!("nsenter --net={}", sandbox(h, &perf[0].container)?);
    iperf_server(h, &perf_ns, 5201);
    // Every task's server answers through the VIP (30 connections without an error).
    wait_until("the VIP answers on 9000", 30, || {
        Ok(connects(h, &cl, &vip_web, 9000, 30)?.errors == 0)
    })?;

    let mut p = Paths {
        rate: [
            Series::new("connections/s through the VIP"),
            Series::new("connections/s to the tasks' addresses in turn (floor)"),
        ],
        lat: [
            Series::new("connection latency through the VIP"),
            Series::new("connection latency to the tasks' addresses (floor)"),
        ],
        errors: [0, 0],
        thr: [
            Series::new("iperf3 through the VIP"),
            Series::new("iperf3 to the task's address (floor)"),
        ],
    };
    let cl_ns = format!("nsenter --net={cl}");
    // The floor spreads over the same three servers as the VIP does, in turn.
    let direct = web.iter().map(|t| t.ip.as_str()).collect::<Vec<_>>().join(",");
    connects(h, &cl, &direct, 9000, o.conns.min(200))?;
    for _ in 0..o.reps {
        let order = if rand::random::<bool>() { [0, 1] } else { [1, 0] };
        for k in order {
            let to = if k == 0 { &vip_web } else { &direct };
            let c = connects(h, &cl, to, 9000, o.conns)?;
            p.rate[k].push(c.rate);
            p.lat[k].extend(c.lat_ms);
            p.errors[k] += c.errors;
        }
        for k in order {
            let to = if k == 0 { &vip_perf } else { &perf[0].ip };
            p.thr[k].push(iperf(h, &cl_ns, to, 5201, o.seconds)?);
        }
    }
    stop_iperf_server(h, 5201);
    drop(servers);
    let starts = crate::services_start::run(h, &cl, o)?;
    Ok((p, starts))
}

fn q(s: &Series, quant: f64) -> String {
    if s.len() == 0 {
        "-".into()
    } else {
        format!("{:.2}", s.quantile(quant))
    }
}

fn report(
    o: &Options,
    p: &Paths,
    starts: &[StartRow],
    scale: &Scale,
    fo: &Failover,
    docker: &str,
    loads: &[String; 3],
) -> Outcome {
    let mut md = String::new();
    md.push_str(&format!(
        "Load average (1/5/15 min): {} at the start, {} after the single-host part, {} at \
         the end.\n\n",
        loads[0], loads[1], loads[2]
    ));
    md.push_str(
        "### Through the VIP vs to a task's address (one host, a cluster of one)\n\n\
         | measure | median | p90 | n | VIP / direct (medians) |\n|---|---|---|---|---|\n",
    );
    let ratio = |a: &Series, b: &Series| a.median() / b.median();
    let rows: [(&[Series; 2], &str); 3] = [(&p.rate, "conn/s"), (&p.lat, "ms"), (&p.thr, "Gbit/s")];
    for (pair, unit) in rows {
        for (k, s) in pair.iter().enumerate() {
            let r =
                if k == 0 { format!("{:.2}x", ratio(&pair[0], &pair[1])) } else { "floor".into() };
            md.push_str(&format!(
                "| {} | {} {unit} | {} {unit} | {} | {r} |\n",
                s.name,
                q(s, 0.5),
                q(s, 0.9),
                s.len()
            ));
        }
    }
    md.push_str(&format!(
        "\n{} runs of {} sequential connections each way (connect, read 3 bytes, close; \
         failed: {} through the VIP, {} direct; the VIP picks one of 3 tasks at random, the \
         floor takes the 3 tasks' addresses in turn), {} iperf3 runs of {} s each way, \
         interleaved in random order.\n",
        o.reps, o.conns, p.errors[0], p.errors[1], o.reps, o.seconds
    ));
    md.push_str(&crate::services_start::markdown(starts));
    md.push_str(&crate::services_multi::markdown(o, scale, fo));
    md.push_str(&format!("\n### Docker's swarm services on this kernel\n\n{docker}\n"));
    let paths = serde_json::json!({
        "conn_rate_vip": p.rate[0].to_json(),
        "conn_rate_direct": p.rate[1].to_json(),
        "conn_rate_ratio": ratio(&p.rate[0], &p.rate[1]),
        "conn_latency_ms": {
            "vip": [p.lat[0].median(), p.lat[0].quantile(0.9), p.lat[0].quantile(0.99)],
            "direct": [p.lat[1].median(), p.lat[1].quantile(0.9), p.lat[1].quantile(0.99)],
            "quantiles": [0.5, 0.9, 0.99],
        },
        "conn_errors": p.errors,
        "throughput_vip_gbps": p.thr[0].to_json(),
        "throughput_direct_gbps": p.thr[1].to_json(),
        "throughput_ratio": ratio(&p.thr[0], &p.thr[1]),
    });
    let json = serde_json::json!({
        "options": format!("{o:?}"),
        "loadavg": loads,
        "single_host": paths,
        "task_start": starts.iter().map(StartRow::json).collect::<Vec<_>>(),
        "scale": scale.json(),
        "failover": fo.json(),
        "docker": docker,
    });
    Outcome { markdown: md, json }
}
