//! Published-port attach at N containers: the host is filled with N running containers
//! (busybox `httpd`, one published port each, spread over a few networks, created through
//! the API with a few requests in flight), then each iteration, in random order: Cove
//! creates and starts a container with `-p <port>:80`, the same on the same network
//! without a port, and the same with `--network none` (start -p − start none is the
//! networking share, firewall element changes included); the floor builds a netlink
//! sandbox and adds one DNAT map element (one netlink batch, and once more with one
//! `nft -f -` process). Then everything is removed, again in random order. *Network
//! ready* (request to the commit of the container's firewall transaction, seen by
//! `nft monitor`) splits Cove's start into its networking part and the runtime's.

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::daemon::{self, Daemon};
use crate::floor::{Floor, NftFloor};
use crate::http::Engine;
use crate::nftwatch::{NftWatch, Owner};
use crate::peers::{self, Floors, Op};
use crate::stats::{self, ms, Series};

#[derive(Clone)]
pub(crate) struct Options {
    /// Numbers of running containers to measure at, ascending.
    pub(crate) counts: Vec<usize>,
    pub(crate) iterations: usize,
    /// Requests in flight while filling and emptying the host.
    pub(crate) workers: usize,
    /// Fail (the smoke mode) when a filling container does not answer.
    pub(crate) strict: bool,
}

/// Networks the filling containers are spread over, as in the scale target (2,000
/// containers over 20 networks; a bridge takes at most 1,024 ports, and attaching to a
/// bridge costs O(its ports) in the kernel).
const NETWORKS: usize = 20;
/// Host ports: filling containers, Cove's probes, the floor's elements.
/// All below the kernel's ephemeral range (32768-), so no outgoing connection holds them.
const FILL_PORT: u16 = 10000;
const PROBE_PORT: u16 = 28000;
const FLOOR_PORT: u16 = 30000;
const FLOOR_EXEC_PORT: u16 = 31000;
const WARMUP: usize = 2;

pub(crate) struct Outcome {
    pub(crate) markdown: String,
    pub(crate) json: serde_json::Value,
    /// Cove's points in the operations compared with the peers.
    pub(crate) comparison: Vec<peers::Point>,
}

/// The busybox web server the filling containers and probes run: it serves `/etc` on
/// port 80, so `GET /group` proves it is reachable.
pub(crate) const HTTPD: [&str; 6] = ["httpd", "-f", "-p", "80", "-h", "/etc"];

/// The create body of a busybox container running `cmd` on `network`, publishing `port`
/// (if any) to 80.
pub(crate) fn create_body(network: &str, port: Option<u16>, cmd: &[&str]) -> String {
    let mut host_config = serde_json::json!({ "NetworkMode": network });
    let mut body = serde_json::json!({ "Image": "busybox", "Cmd": cmd });
    if let Some(p) = port {
        host_config["PortBindings"] =
            serde_json::json!({ "80/tcp": [{ "HostIp": "", "HostPort": p.to_string() }] });
        body["ExposedPorts"] = serde_json::json!({ "80/tcp": {} });
    }
    body["HostConfig"] = host_config;
    body.to_string()
}

/// Creates container `name`, a web server (see [`HTTPD`]); its id.
pub(crate) fn create(
    d: &impl Engine,
    name: &str,
    network: &str,
    port: Option<u16>,
) -> Result<String> {
    create_running(d, name, network, port, &HTTPD)
}

/// Creates container `name` running `cmd` (see [`create_body`]); its id.
pub(crate) fn create_running(
    d: &impl Engine,
    name: &str,
    network: &str,
    port: Option<u16>,
    cmd: &[&str],
) -> Result<String> {
    let body = create_body(network, port, cmd);
    let text = d.api("POST", &format!("/containers/create?name={name}"), Some(&body), 201)?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(v["Id"].as_str().context("create answered no Id")?.to_owned())
}

pub(crate) fn start(d: &impl Engine, id: &str) -> Result<()> {
    d.api("POST", &format!("/containers/{id}/start"), None, 204).map(|_| ())
}

pub(crate) fn remove(d: &impl Engine, id: &str) -> Result<()> {
    d.api("DELETE", &format!("/containers/{id}?force=1"), None, 204).map(|_| ())
}

/// Lines of `nft list ruleset`: rules stay fixed, elements grow with ports.
fn ruleset_lines() -> usize {
    Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

/// One measured point: N running containers.
struct Point {
    containers: usize,
    fill_seconds: f64,
    mem_used_mib: f64,
    containers_pss_mib: f64,
    daemon_rss_mib: f64,
    threads: usize,
    ruleset_lines: usize,
    /// Filling containers that answered through their published port on 127.0.0.1.
    reachable: usize,
    series: Vec<Series>,
}

const S_CREATE_P: usize = 0;
const S_START_P: usize = 1;
const S_READY_P: usize = 2;
const S_RUNTIME_P: usize = 3;
const S_CREATE_NET: usize = 4;
const S_START_NET: usize = 5;
const S_READY_NET: usize = 6;
const S_CREATE_N: usize = 7;
const S_START_N: usize = 8;
const S_SHARE: usize = 9;
const S_FLOOR_SB: usize = 10;
const S_FLOOR_EL: usize = 11;
const S_FLOOR: usize = 12;
const S_FLOOR_READY: usize = 13;
const S_FLOOR_EXEC: usize = 14;
const S_RM_P: usize = 15;
const S_RM_NET: usize = 16;
const S_RM_N: usize = 17;
const S_FLOOR_RM: usize = 18;
const S_PING: usize = 19;
const S_NET_CREATE: usize = 20;
const S_CONNECT: usize = 21;
const S_DISCONNECT: usize = 22;
const S_NET_RM: usize = 23;
const S_FLOOR_DETACH: usize = 24;
const S_RM_SHARE: usize = 25;
const S_CLI_CONNECT: usize = 26;
const S_CLI_DISCONNECT: usize = 27;
const S_DISCONNECT_P: usize = 28;
const SERIES: usize = 29;
const NAMES: [&str; SERIES] = [
    "cove create -p",
    "cove start -p",
    "cove start -p: network ready (firewall committed)",
    "cove start -p: rest (runtime, after network ready)",
    "cove create (network, no port)",
    "cove start (network, no port)",
    "cove start (network, no port): network ready",
    "cove create none",
    "cove start none",
    "cove network share (start -p − start none, paired)",
    "floor sandbox (netlink)",
    "floor port element (netlink)",
    "floor sandbox + port",
    "floor sandbox + port: network ready (committed)",
    "floor port element (one nft -f - process)",
    "cove rm -f -p (after its disconnect)",
    "cove rm -f (network, no port)",
    "cove rm -f none",
    "floor teardown",
    "cove ping (GET /_ping)",
    "cove network create",
    "cove network connect (running container)",
    "cove network disconnect (running container)",
    "cove network rm",
    "floor sandbox teardown (netns unmount)",
    "cove detach share (rm -f network − rm -f none, paired)",
    "cove CLI network connect",
    "cove CLI network disconnect",
    "cove network disconnect of the -p container (its port unpublished)",
];
const RATIOS: [(&str, &str); 5] = [
    (NAMES[S_READY_P], NAMES[S_FLOOR_READY]),
    (NAMES[S_SHARE], NAMES[S_FLOOR]),
    (NAMES[S_CONNECT], NAMES[S_FLOOR_SB]),
    (NAMES[S_DISCONNECT], NAMES[S_FLOOR_DETACH]),
    (NAMES[S_RM_SHARE], NAMES[S_FLOOR_DETACH]),
];

pub(crate) async fn run(d: &Daemon, root: &Path, o: &Options) -> Result<Outcome> {
    for k in 0..NETWORKS {
        d.cli(&["network", "create", "--subnet", &format!("10.{}.0.0/16", 210 + k), &net(k)])?;
    }
    let mut floor = Floor::new(&root.join("ports-floor")).await?;
    let mut nft = NftFloor::create().await?;
    let watch = NftWatch::start()?;
    let mem0 = daemon::mem_available_mib();
    let mut have = 0usize;
    let mut points = vec![];
    let mut skipped = vec![];
    let tasks0 = tasks().unwrap_or(0);
    let mut probe = 0u16;
    let mut rng = rand::rng();
    for &n in &o.counts {
        if let Some(why) = too_many_tasks(n, have, tasks0) {
            eprintln!("ports: {n} containers skipped: {why}");
            skipped.push((n, why));
            break;
        }
        let t = Instant::now();
        fill(d, have, n, o.workers)?;
        have = have.max(n);
        let fill_seconds = t.elapsed().as_secs_f64();
        let reachable = reachable(have, o.workers * 3);
        if o.strict && reachable != have {
            bail!("only {reachable} of {have} containers answered through their published port");
        }
        eprintln!(
            "ports: {n} containers running (filled in {fill_seconds:.1} s), {reachable} \
             answering through their published port; measuring"
        );
        let mut series: Vec<Series> = NAMES.iter().map(|s| Series::new(*s)).collect();
        for i in 0..o.iterations + WARMUP {
            probe += 1;
            let sample = iteration(d, &watch, &mut floor, &mut nft, probe, &mut rng).await?;
            if i >= WARMUP {
                for (s, v) in series.iter_mut().zip(sample) {
                    if v.is_finite() {
                        s.push(v);
                    }
                }
            }
        }
        points.push(Point {
            containers: n,
            fill_seconds,
            mem_used_mib: mem0 - daemon::mem_available_mib(),
            containers_pss_mib: daemon::containers_pss_mib(
                root.to_str().context("utf-8 path")?,
                d.pid(),
            ),
            daemon_rss_mib: d.rss_mib(),
            threads: tasks().unwrap_or(0),
            ruleset_lines: ruleset_lines(),
            reachable,
            series,
        });
    }
    let t = Instant::now();
    let removed = d.remove_everything(o.workers)?;
    let cleanup_seconds = t.elapsed().as_secs_f64();
    eprintln!("ports: removed {removed} containers in {cleanup_seconds:.1} s");
    nft.remove().await?;
    floor.remove().await;
    Ok(report(&points, &skipped, o, cleanup_seconds))
}

/// Threads (tasks) on the machine now: the kernel's pid limit counts every thread.
fn tasks() -> Option<usize> {
    let l = std::fs::read_to_string("/proc/loadavg").ok()?;
    l.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
}

/// Each container is a shim and a foreground `runc run` (about 15 threads together): a
/// fill that would take the machine past 85% of `kernel.pid_max` (which is not
/// namespaced: forks would fail for everything on the host) is refused with a reason.
fn too_many_tasks(n: usize, have: usize, tasks0: usize) -> Option<String> {
    let pid_max: usize =
        std::fs::read_to_string("/proc/sys/kernel/pid_max").ok()?.trim().parse().ok()?;
    let now = tasks()?;
    let per = match now.saturating_sub(tasks0).checked_div(have) {
        Some(p) if p > 0 => p,
        _ => 16,
    };
    let need = n.saturating_sub(have) * per;
    (now + need > pid_max * 85 / 100).then(|| {
        format!(
            "{n} containers need about {} threads ({per} per container, {now} running now); \
             kernel.pid_max is {pid_max} for the whole machine",
            now + need
        )
    })
}

fn net(k: usize) -> String {
    format!("pnet{k}")
}

/// Create and start containers `from..to` (`fill-<i>` on `pnet<i % NETWORKS>`, host port
/// `FILL_PORT + i`), `workers` at a time.
fn fill(d: &Daemon, from: usize, to: usize, workers: usize) -> Result<()> {
    if to <= from {
        return Ok(());
    }
    if FILL_PORT as usize + to > PROBE_PORT as usize {
        bail!("at most {} filling containers", PROBE_PORT - FILL_PORT);
    }
    let done = std::sync::atomic::AtomicUsize::new(from);
    let errors = daemon::for_each_parallel(to - from, workers, true, |j| {
        let i = from + j;
        let id = create(d, &format!("fill-{i}"), &net(i % NETWORKS), Some(FILL_PORT + i as u16))?;
        start(d, &id)?;
        let k = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if k.is_multiple_of(250) {
            eprintln!("ports: {k} containers running");
        }
        Ok(())
    });
    match errors.into_iter().next() {
        Some(e) => Err(e.context("fill the host with containers")),
        None => Ok(()),
    }
}

/// How many of the filling containers `0..n` answer `GET /group` through their published
/// port on 127.0.0.1 (DNAT in the kernel, no proxy), `workers` connections at a time. A
/// container just started may not listen yet: a refused connection (which proves the path
/// works) is retried for up to 10 s; a timeout is not, it is what a broken path looks like.
fn reachable(n: usize, workers: usize) -> usize {
    use std::io::{Read, Write};
    let ok = std::sync::atomic::AtomicUsize::new(0);
    let timeout = std::time::Duration::from_secs(3);
    let ask = |i: usize| -> std::io::Result<String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], FILL_PORT + i as u16));
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.write_all(b"GET /group HTTP/1.0\r\n\r\n")?;
        let mut answer = String::new();
        s.read_to_string(&mut answer)?;
        Ok(answer)
    };
    let errors = daemon::for_each_parallel(n, workers, false, |i| {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let answer = loop {
            match ask(i) {
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        if answer.contains("root:x:0:") {
            ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    });
    if let Some(e) = errors.first() {
        eprintln!("ports: {} containers did not answer, e.g.: {e:#}", errors.len());
    }
    ok.into_inner()
}

/// One iteration: the attaches in random order (Cove with a port, Cove on the same
/// network without one, Cove with no network, the floor), then the removals in random
/// order. Returns one sample per series (see `NAMES`).
async fn iteration(
    d: &Daemon,
    watch: &NftWatch,
    floor: &mut Floor,
    nft: &mut NftFloor,
    probe: u16,
    rng: &mut impl rand::Rng,
) -> Result<[f64; SERIES]> {
    let mut s = [0f64; SERIES];
    let mut order = [0usize, 1, 2, 3];
    order.shuffle(rng);
    let mut ids: [String; 3] = Default::default();
    let mut sandbox = None;
    // Per variant: name prefix, network, port, and its create / start / rm series.
    let variants = [
        ("probe-p", net(0), Some(PROBE_PORT + probe), [S_CREATE_P, S_START_P, S_RM_P, S_READY_P]),
        ("probe-net", net(0), None, [S_CREATE_NET, S_START_NET, S_RM_NET, S_READY_NET]),
        ("probe-none", "none".to_owned(), None, [S_CREATE_N, S_START_N, S_RM_N, usize::MAX]),
    ];
    for which in order {
        if let Some((prefix, network, port, [c, st, _, ready])) = variants.get(which) {
            let t = Instant::now();
            let id = create(d, &format!("{prefix}{probe}"), network, *port)?;
            s[*c] = ms(t);
            watch.drain();
            let t = Instant::now();
            start(d, &id)?;
            s[*st] = ms(t);
            if let Some(r) = s.get_mut(*ready) {
                // NaN (not counted) if the monitor saw nothing.
                *r = watch.first_since(t, Owner::Cove).unwrap_or(f64::NAN);
            }
            ids[which] = id;
        } else {
            watch.drain();
            let t0 = Instant::now();
            let (path, ip) = floor.attach().await?;
            s[S_FLOOR_SB] = ms(t0);
            let t = Instant::now();
            nft.add(FLOOR_PORT + probe, ip).await?;
            s[S_FLOOR_EL] = ms(t);
            s[S_FLOOR] = ms(t0);
            s[S_FLOOR_READY] = watch.first_since(t0, Owner::Floor).unwrap_or(f64::NAN);
            // The same element (another port) with one `nft -f -` process.
            let t = Instant::now();
            nft.add_exec(FLOOR_EXEC_PORT + probe, ip).await?;
            s[S_FLOOR_EXEC] = ms(t);
            watch.drain();
            sandbox = Some((path, ip));
        }
    }
    s[S_SHARE] = s[S_START_P] - s[S_START_N];
    s[S_RUNTIME_P] = s[S_START_P] - s[S_READY_P];
    // The published container leaves its network: its port goes with it.
    let body = format!(r#"{{"Container":"{}"}}"#, ids[0]);
    let t = Instant::now();
    d.api("POST", &format!("/networks/{}/disconnect", net(0)), Some(&body), 200)?;
    s[S_DISCONNECT_P] = ms(t);
    // A network's life with a running container joining and leaving it.
    let extra = format!("pxnet{probe}");
    let t = Instant::now();
    let created =
        d.api("POST", "/networks/create", Some(&format!(r#"{{"Name":"{extra}"}}"#)), 201)?;
    s[S_NET_CREATE] = ms(t);
    let net_id: serde_json::Value = serde_json::from_str(&created)?;
    let bridge =
        format!("br-{}", net_id["Id"].as_str().unwrap_or_default().get(..12).unwrap_or(""));
    let body = format!(r#"{{"Container":"{}"}}"#, ids[1]);
    let t = Instant::now();
    d.api("POST", &format!("/networks/{extra}/connect"), Some(&body), 200)?;
    s[S_CONNECT] = ms(t);
    let t = Instant::now();
    d.api("POST", &format!("/networks/{extra}/disconnect"), Some(&body), 200)?;
    s[S_DISCONNECT] = ms(t);
    let t = Instant::now();
    d.cli(&["network", "connect", &extra, &ids[1]])?;
    s[S_CLI_CONNECT] = ms(t);
    let t = Instant::now();
    d.cli(&["network", "disconnect", &extra, &ids[1]])?;
    s[S_CLI_DISCONNECT] = ms(t);
    let t = Instant::now();
    d.api("DELETE", &format!("/networks/{extra}"), None, 204)?;
    s[S_NET_RM] = ms(t);
    // The bridge is deleted after the answer, holding the kernel's RTNL lock for tens of
    // ms: let that finish, so it is not charged to the next operation measured.
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    while Instant::now() < deadline
        && Command::new("ip")
            .args(["link", "show", &bridge])
            .output()
            .is_ok_and(|o| o.status.success())
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    order.shuffle(rng);
    for which in order {
        let t = Instant::now();
        if let Some((_, _, _, [_, _, rm, _])) = variants.get(which) {
            remove(d, &ids[which])?;
            s[*rm] = ms(t);
        } else {
            let (path, ip) = sandbox.as_ref().expect("attached");
            floor.detach(path).await?;
            s[S_FLOOR_DETACH] = ms(t);
            nft.delete(FLOOR_PORT + probe, *ip).await?;
            nft.delete(FLOOR_EXEC_PORT + probe, *ip).await?;
            s[S_FLOOR_RM] = ms(t);
        }
    }
    s[S_RM_SHARE] = s[S_RM_NET] - s[S_RM_N];
    let t = Instant::now();
    d.api("GET", "/_ping", None, 200)?;
    s[S_PING] = ms(t);
    Ok(s)
}

fn report(
    points: &[Point],
    skipped: &[(usize, String)],
    o: &Options,
    cleanup_seconds: f64,
) -> Outcome {
    let mut md = String::from(
        "Medians. *Network ready*: from the request to the commit of the container's firewall \
         transaction (Cove), or from the start of the netlink work to the commit of the \
         element (floor), as `nft monitor` reports it.\n\n\
         | containers | cove network ready (-p) | floor network ready | ratio | cove start -p | cove start none | network share (paired) | floor element: netlink / nft -f - |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        let s = &p.series;
        md.push_str(&format!(
            "| {} | {:.2} ms | {:.2} ms | {:.2}x | {:.1} ms | {:.1} ms | {:.1} ms | {:.2} / {:.2} ms |\n",
            p.containers,
            s[S_READY_P].median(),
            s[S_FLOOR_READY].median(),
            s[S_READY_P].median() / s[S_FLOOR_READY].median(),
            s[S_START_P].median(),
            s[S_START_N].median(),
            s[S_SHARE].median(),
            s[S_FLOOR_EL].median(),
            s[S_FLOOR_EXEC].median(),
        ));
    }
    md.push_str(
        "\n| containers | reachable (published port) | filled in | container processes (PSS) | MemAvailable drop | daemon RSS | threads on the machine | ruleset lines |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        md.push_str(&format!(
            "| {} | {} | {:.1} s ({:.1}/s) | {:.0} MiB | {:.0} MiB | {:.0} MiB | {} | {} |\n",
            p.containers,
            p.reachable,
            p.fill_seconds,
            p.containers as f64 / p.fill_seconds.max(1e-9),
            p.containers_pss_mib,
            p.mem_used_mib,
            p.daemon_rss_mib,
            p.threads,
            p.ruleset_lines,
        ));
    }
    md.push_str(&format!(
        "\n(medians; removing all containers at the end took {cleanup_seconds:.1} s)\n\n"
    ));
    for (n, why) in skipped {
        md.push_str(&format!("Not measured: {n} containers: {why}.\n\n"));
    }
    for (i, p) in points.iter().enumerate() {
        let n = p.containers.to_string();
        if i == 0 {
            md.push_str(&stats::table(Some(("containers", &n)), &p.series, &RATIOS, "ratio"));
        } else {
            md.push_str(&stats::rows(Some(&n), &p.series, &RATIOS));
        }
    }
    let json = serde_json::json!({
        "counts": o.counts,
        "iterations": o.iterations,
        "workers": o.workers,
        "networks": NETWORKS,
        "cleanup_seconds": cleanup_seconds,
        "skipped": skipped.iter().map(|(n, why)| serde_json::json!({ "containers": n, "reason": why })).collect::<Vec<_>>(),
        "points": points.iter().map(|p| serde_json::json!({
            "containers": p.containers,
            "fill_seconds": p.fill_seconds,
            "mem_used_mib": p.mem_used_mib,
            "containers_pss_mib": p.containers_pss_mib,
            "daemon_rss_mib": p.daemon_rss_mib,
            "threads": p.threads,
            "ruleset_lines": p.ruleset_lines,
            "reachable": p.reachable,
            "series": p.series.iter().map(Series::to_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    let comparison = points.iter().map(comparison_point).collect();
    Outcome { markdown: md, json, comparison }
}

/// Cove's series at one point, as the operations compared with the peers.
fn comparison_point(p: &Point) -> peers::Point {
    let s = &p.series;
    let mut c = peers::Point::new(p.containers, p.fill_seconds);
    let ops = [
        (Op::Attach, S_CONNECT),
        (Op::Detach, S_DISCONNECT),
        (Op::AttachPort, S_READY_P),
        (Op::DetachPort, S_DISCONNECT_P),
        (Op::NetworkCreate, S_NET_CREATE),
        (Op::NetworkRm, S_NET_RM),
        (Op::CliAttach, S_CLI_CONNECT),
        (Op::CliDetach, S_CLI_DISCONNECT),
    ];
    for (op, i) in ops {
        s[i].samples().iter().for_each(|v| c.push_op(op, *v));
    }
    let floors = [
        (Floors::Attach, S_FLOOR_SB),
        (Floors::Detach, S_FLOOR_DETACH),
        (Floors::AttachPort, S_FLOOR_READY),
        (Floors::DetachPort, S_FLOOR_RM),
    ];
    for (f, i) in floors {
        s[i].samples().iter().for_each(|v| c.push_floor(f, *v));
    }
    c
}
