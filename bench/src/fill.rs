//! Fill rate: containers started per second with K start requests in flight.
//!
//! Each round creates C containers through the API (busybox `sleep 3600` on one user
//! network, optionally one published port each; untimed, a few requests in flight), then
//! starts them all with K `POST /containers/{id}/start` in flight. Its rate is C over the
//! wall time from the first start request to the last 2xx; every start's latency is kept.
//! Then the containers are removed and the host's container links (`cv…` veths) are left to
//! go, so every round starts from the same host state. Each rep runs every K once, in random
//! order. The rounds measure the daemon's concurrency: with one lock held across runc's
//! start, K > 1 buys little.

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::daemon::{self, Daemon};
use crate::ports;
use crate::stats::Series;

#[derive(Clone)]
pub(crate) struct Options {
    /// Containers started per round (C).
    pub(crate) containers: usize,
    /// Start requests in flight, one round each per rep (K).
    pub(crate) inflight: Vec<usize>,
    pub(crate) reps: usize,
    /// One published port per container.
    pub(crate) ports: bool,
}

pub(crate) struct Outcome {
    pub(crate) markdown: String,
    pub(crate) json: serde_json::Value,
}

const NET: &str = "fillnet";
const SUBNET: &str = "10.248.0.0/16";
/// Host ports of the published variant: `PORT + i`.
const PORT: u16 = 20000;
const CMD: [&str; 2] = ["sleep", "3600"];
/// Requests in flight while creating and removing (untimed).
const SETUP_WORKERS: usize = 4;
/// Containers started and removed before the first round (caches, the bridge's first
/// port), not counted.
const WARMUP: usize = 2;

/// One round: C starts with K in flight.
struct Round {
    k: usize,
    rep: usize,
    wall_seconds: f64,
    latency: Series,
}

impl Round {
    fn rate(&self) -> f64 {
        self.latency.len() as f64 / self.wall_seconds.max(1e-9)
    }
}

pub(crate) async fn run(d: &Daemon, o: &Options) -> Result<Outcome> {
    if o.containers == 0 || o.inflight.is_empty() {
        bail!("fill: at least one container and one in-flight count");
    }
    if o.ports && usize::from(PORT) + o.containers > usize::from(u16::MAX) {
        bail!("fill: at most {} containers with published ports", u16::MAX - PORT);
    }
    d.cli(&["network", "create", "--subnet", SUBNET, NET])?;
    let result = measure(d, o);
    // Whatever happened: the round's containers and the network go.
    let cleanup = remove_all(d).and_then(|_| d.cli(&["network", "rm", NET]).map(|_| ()));
    let rounds = result?;
    cleanup?;
    Ok(report(&rounds, o))
}

fn measure(d: &Daemon, o: &Options) -> Result<Vec<Round>> {
    let ids = create(d, "fill-warm", WARMUP.min(o.containers), o.ports)?;
    starts(d, &ids, 1)?;
    remove(d, &ids)?;
    settle()?;
    let mut rounds = vec![];
    let mut rng = rand::rng();
    for rep in 0..o.reps {
        let mut order = o.inflight.clone();
        order.shuffle(&mut rng);
        for k in order {
            let ids = create(d, &format!("fill-r{rep}k{k}"), o.containers, o.ports)?;
            let (wall_seconds, latency) = starts(d, &ids, k)?;
            let round = Round { k, rep, wall_seconds, latency };
            eprintln!(
                "fill: rep {rep}, {k} in flight: {} containers started in {wall_seconds:.2} s \
                 ({:.1}/s, start median {:.1} ms)",
                ids.len(),
                round.rate(),
                round.latency.median()
            );
            rounds.push(round);
            let t = Instant::now();
            remove(d, &ids)?;
            let removed = t.elapsed().as_secs_f64();
            let settled = settle()?;
            eprintln!("fill: removed in {removed:.1} s, links gone {settled:.1} s later");
        }
    }
    Ok(rounds)
}

/// Creates containers `<prefix>-<i>` for i in 0..n (untimed); their ids in order.
fn create(d: &Daemon, prefix: &str, n: usize, ports: bool) -> Result<Vec<String>> {
    let ids = Mutex::new(vec![String::new(); n]);
    let errors = daemon::for_each_parallel(n, SETUP_WORKERS, true, |i| {
        let port = ports.then(|| PORT + i as u16);
        let id = ports::create_running(d, &format!("{prefix}-{i}"), NET, port, &CMD)?;
        ids.lock().expect("ids lock")[i] = id;
        Ok(())
    });
    if let Some(e) = errors.into_iter().next() {
        return Err(e.context("fill: create the containers"));
    }
    Ok(ids.into_inner().expect("ids lock"))
}

/// Starts every container of `ids` with `k` requests in flight: the wall time from the
/// first request to the last answer (seconds), and each start's latency.
fn starts(d: &Daemon, ids: &[String], k: usize) -> Result<(f64, Series)> {
    let spans = Mutex::new(Vec::with_capacity(ids.len()));
    let errors = daemon::for_each_parallel(ids.len(), k, true, |i| {
        let t = Instant::now();
        ports::start(d, &ids[i])?;
        spans.lock().expect("spans lock").push((t, Instant::now()));
        Ok(())
    });
    if let Some(e) = errors.into_iter().next() {
        return Err(e.context(format!("fill: start with {k} in flight")));
    }
    let spans = spans.into_inner().expect("spans lock");
    let first = spans.iter().map(|s| s.0).min().context("no start")?;
    let last = spans.iter().map(|s| s.1).max().context("no start")?;
    let mut latency = Series::new(format!("start, {k} in flight"));
    for (t0, t1) in &spans {
        latency.push((*t1 - *t0).as_secs_f64() * 1e3);
    }
    Ok(((last - first).as_secs_f64(), latency))
}

fn remove(d: &Daemon, ids: &[String]) -> Result<()> {
    let errors =
        daemon::for_each_parallel(ids.len(), SETUP_WORKERS, false, |i| ports::remove(d, &ids[i]));
    match errors.into_iter().next() {
        Some(e) => Err(e.context("fill: remove the containers")),
        None => Ok(()),
    }
}

/// Removes every container left (after an error).
fn remove_all(d: &Daemon) -> Result<()> {
    let ids = daemon::container_ids(&d.api_json("GET", "/containers/json?all=1", 200)?)?;
    remove(d, &ids)
}

/// Host-side container links (`cv` + 12 hex digits) in this (fake) host now.
fn container_links() -> usize {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else { return 0 };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("cv"))
                .is_some_and(|r| r.len() == 12 && r.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .count()
}

/// Waits (at most 30 s) until the kernel has reaped the removed containers' veth pairs:
/// the next round then finds the host as the first did. The seconds waited.
fn settle() -> Result<f64> {
    let t = Instant::now();
    while container_links() > 0 {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("fill: {} container links still there 30 s after removal", container_links());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(t.elapsed().as_secs_f64())
}

fn median(v: &[f64]) -> f64 {
    let mut s = Series::new("");
    v.iter().for_each(|x| s.push(*x));
    s.median()
}

fn report(rounds: &[Round], o: &Options) -> Outcome {
    let mut ks = o.inflight.clone();
    ks.sort_unstable();
    // Per K: median rate over reps, min and max, pooled latencies, median wall time.
    let per_k: Vec<(usize, f64, f64, f64, Series, f64)> = ks
        .iter()
        .map(|&k| {
            let mine: Vec<&Round> = rounds.iter().filter(|r| r.k == k).collect();
            let rates: Vec<f64> = mine.iter().map(|r| r.rate()).collect();
            let walls: Vec<f64> = mine.iter().map(|r| r.wall_seconds).collect();
            let mut pooled = Series::new(format!("start, {k} in flight"));
            mine.iter().flat_map(|r| r.latency.samples()).for_each(|v| pooled.push(*v));
            let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (k, median(&rates), lo, hi, pooled, median(&walls))
        })
        .collect();
    let base = per_k.first().map_or(f64::NAN, |p| p.1);
    let base_k = ks.first().copied().unwrap_or(1);
    let mut md = format!(
        "{} containers (busybox `sleep 3600` on one user network, {}) started through the API \
         with K start requests in flight. Rate: containers ÷ wall time from the first start \
         request to the last 2xx. {} rep(s), each K once per rep in random order, fresh \
         containers per round on a host with no container left; median over reps \
         (min–max). Start latency: median and p90 of every start at that K.\n\n\
         | K in flight | containers/s | min–max | ratio to K={base_k} | start median ms | \
         start p90 ms | wall s |\n|---|---|---|---|---|---|---|\n",
        o.containers,
        if o.ports { "one published port each" } else { "no published port" },
        o.reps,
    );
    for (k, rate, lo, hi, lat, wall) in &per_k {
        let _ = writeln!(
            md,
            "| {k} | {rate:.1} | {lo:.1}–{hi:.1} | {:.2}x | {:.1} | {:.1} | {wall:.2} |",
            rate / base,
            lat.median(),
            lat.quantile(0.9),
        );
    }
    let json = serde_json::json!({
        "containers": o.containers,
        "inflight": ks,
        "reps": o.reps,
        "ports": o.ports,
        "command": CMD,
        "per_k": per_k.iter().map(|(k, rate, lo, hi, lat, wall)| serde_json::json!({
            "inflight": k,
            "rate_median": rate,
            "rate_min": lo,
            "rate_max": hi,
            "ratio_to_first": rate / base,
            "start_median_ms": lat.median(),
            "start_p90_ms": lat.quantile(0.9),
            "wall_seconds_median": wall,
        })).collect::<Vec<_>>(),
        "rounds": rounds.iter().map(|r| serde_json::json!({
            "inflight": r.k,
            "rep": r.rep,
            "wall_seconds": r.wall_seconds,
            "rate": r.rate(),
            "start_ms": r.latency.samples(),
        })).collect::<Vec<_>>(),
    });
    Outcome { markdown: md, json }
}
