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
//! to the receipt of the answer. dockerd and aardvark-dns are not driven by this bench.

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cove_kernel::Kernel;

use crate::daemon::Daemon;
use crate::stats::Series;

pub(crate) struct Options {
    pub(crate) reps: usize,
    /// Length of one measurement.
    pub(crate) millis: u64,
    /// Queries in flight, one measurement each per path and rep.
    pub(crate) inflight: Vec<usize>,
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
/// What the floor and the upstream answer every query with.
const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const EXTERNAL: &str = "ext.bench.example";
/// A query unanswered for this long is counted as lost and replaced.
const LOST_AFTER: Duration = Duration::from_secs(1);

/// The measured paths, in report order.
const PATHS: [&str; 3] = ["floor (do-nothing responder)", "cove local name", "cove forwarded"];

/// dockerd's and aardvark-dns's resolvers are not driven here; say why.
fn skipped_others() -> Vec<String> {
    let installed = |names: &[&str]| {
        names.iter().any(|n| {
            Path::new(n).is_absolute() && Path::new(n).exists()
                || Command::new("sh")
                    .args(["-c", &format!("command -v {n}")])
                    .output()
                    .is_ok_and(|o| o.status.success())
        })
    };
    let mut out = vec![];
    for (what, names) in [
        ("dockerd", &["dockerd"][..]),
        ("aardvark-dns", &["aardvark-dns", "/usr/libexec/podman/aardvark-dns"][..]),
    ] {
        out.push(if installed(names) {
            format!(
                "{what}: installed, but not measured: this bench does not run a second \
                 container engine in its fake host (see the anchors instead)"
            )
        } else {
            format!("{what}: not installed; skipped (anchors from RESULTS.md used instead)")
        });
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

fn sh(cmd: &[&str]) -> Result<()> {
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
    setup.responders.push(Responder::start(&up_ns, SocketAddr::from((UPSTREAM, 53)))?);

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
    setup.responders.push(Responder::start(&client_ns, FLOOR)?);

    // (server, name, expected address) per path, as in PATHS.
    let targets: [(SocketAddr, &str, Ipv4Addr); 3] =
        [(FLOOR, TARGET, ANSWER), (COVE, TARGET, target_ip), (COVE, EXTERNAL, ANSWER)];
    // Every path answers correctly before anything is timed.
    for (i, (server, name, want)) in targets.iter().enumerate() {
        let r = load(&client_ns, *server, name, *want, 1, Duration::from_millis(200))?;
        if r.ok == 0 {
            bail!("{}: no correct answer from {server} for {name}: {r:?}", PATHS[i]);
        }
    }

    let mut runs: Vec<Vec<Vec<Run>>> = vec![vec![vec![]; o.inflight.len()]; PATHS.len()];
    let mut rng = rand::rng();
    let dur = Duration::from_millis(o.millis);
    for rep in 0..o.reps {
        let mut order: Vec<(usize, usize)> =
            (0..PATHS.len()).flat_map(|p| (0..o.inflight.len()).map(move |k| (p, k))).collect();
        order.shuffle(&mut rng);
        for (p, k) in order {
            let (server, name, want) = targets[p];
            let r = load(&client_ns, server, name, want, o.inflight[k], dur)?;
            eprintln!(
                "dns: rep {} {} in flight {}: {:.0} q/s (p50 {:.3} ms, lost {}, bad {})",
                rep + 1,
                PATHS[p],
                o.inflight[k],
                r.qps(),
                r.latency.median(),
                r.lost,
                r.bad
            );
            runs[p][k].push(r);
        }
    }
    Ok(report(&runs, o))
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

/// Runs `f` on a new thread that entered the network namespace at `ns`.
fn in_netns<T: Send>(ns: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(ns).with_context(|| format!("open {}", ns.display()))?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("setns {}", ns.display()))?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in {} panicked", ns.display()))?
    })
}

/// A do-nothing DNS responder on its own thread in a namespace: echoes the question and
/// adds one A record ([`ANSWER`]), whatever was asked.
struct Responder {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Responder {
    fn start(ns: &Path, addr: SocketAddr) -> Result<Self> {
        let sock = in_netns(ns, || Ok(UdpSocket::bind(addr)?))
            .with_context(|| format!("bind the responder on {addr}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new().name("dns-responder".into()).spawn(move || {
            let mut b = [0u8; 1500];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut b[..512]) else { continue };
                if n < 12 {
                    continue;
                }
                b[2] |= 0x80; // QR
                b[3] = 0x80; // RA, NOERROR
                b[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]); // one answer, no others
                let mut rr = [0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x02, 0x58, 0, 4, 0, 0, 0, 0];
                rr[12..].copy_from_slice(&ANSWER.octets());
                b[n..n + 16].copy_from_slice(&rr);
                let _ = sock.send_to(&b[..n + 16], from);
            }
        })?;
        Ok(Responder { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// One measurement.
#[derive(Debug, Clone)]
struct Run {
    /// Answers with NOERROR and the expected address last.
    ok: u64,
    /// Other answers (wrong rcode or address).
    bad: u64,
    /// Queries given up after [`LOST_AFTER`].
    lost: u64,
    seconds: f64,
    /// Latency of the correct answers, ms.
    latency: Series,
}

impl Run {
    fn qps(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
}

/// An A query for `name` with RD set and id 0 (patched per send).
fn query(name: &str) -> Vec<u8> {
    let mut q = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// The load client: `inflight` queries for `name` outstanding at `server`, from inside the
/// netns `ns`, for `dur`. Answers arriving after `dur` are not counted.
fn load(
    ns: &Path,
    server: SocketAddr,
    name: &str,
    want: Ipv4Addr,
    inflight: usize,
    dur: Duration,
) -> Result<Run> {
    in_netns(ns, || {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect(server)?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        let mut q = query(name);
        // Send time per id; ids are handed out in order, so the outstanding ones lie in
        // `oldest..next` (mod 2^16) and the oldest is checked for loss in O(1).
        let mut sent: Vec<Option<Instant>> = vec![None; 1 << 16];
        let (mut next, mut oldest) = (0u16, 0u16);
        let mut outstanding = 0usize;
        let mut run =
            Run { ok: 0, bad: 0, lost: 0, seconds: 0.0, latency: Series::new("latency ms") };
        let mut lat_ns: Vec<u32> = Vec::with_capacity(1 << 20);
        let want = want.octets();
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        let end = start + dur;
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            while outstanding < inflight {
                q[..2].copy_from_slice(&next.to_be_bytes());
                let t = Instant::now();
                sock.send(&q)?;
                sent[next as usize] = Some(t);
                next = next.wrapping_add(1);
                outstanding += 1;
            }
            match sock.recv(&mut buf) {
                Ok(n) if n >= 12 => {
                    let id = u16::from_be_bytes([buf[0], buf[1]]);
                    if let Some(t) = sent[id as usize].take() {
                        let took = t.elapsed();
                        outstanding -= 1;
                        let good = buf[3] & 0x0f == 0
                            && u16::from_be_bytes([buf[6], buf[7]]) >= 1
                            && buf[n - 4..n] == want;
                        if good {
                            run.ok += 1;
                            lat_ns.push(took.as_nanos().min(u32::MAX as u128) as u32);
                        } else {
                            run.bad += 1;
                        }
                    }
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                // ECONNREFUSED from an earlier send: the server is not there.
                Err(e) => bail!("recv from {server}: {e}"),
            }
            // Forget answered ids at the front, give up on the oldest if it waited too long.
            let now = Instant::now();
            while oldest != next {
                match sent[oldest as usize] {
                    None => oldest = oldest.wrapping_add(1),
                    Some(t) if now - t > LOST_AFTER => {
                        sent[oldest as usize] = None;
                        run.lost += 1;
                        outstanding -= 1;
                        oldest = oldest.wrapping_add(1);
                    }
                    Some(_) => break,
                }
            }
        }
        run.seconds = start.elapsed().as_secs_f64();
        for ns in lat_ns {
            run.latency.push(f64::from(ns) / 1e6);
        }
        Ok(run)
    })
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

fn report(runs: &[Vec<Vec<Run>>], o: &Options) -> Outcome {
    let mut md = format!(
        "{} ms per measurement, {} reps interleaved in random order; q/s counts answers with \
         the expected address. Ratio: per rep, q/s of the path / q/s of the floor at the same \
         number in flight, median over reps. Latency: median over reps of each rep's \
         percentile.\n\n\
         | path | in flight | median q/s | min–max q/s | ratio to floor | p50 ms | p99 ms | lost / bad |\n\
         |---|---|---|---|---|---|---|---|\n",
        o.millis, o.reps
    );
    let mut json_paths = vec![];
    for (p, per_k) in runs.iter().enumerate() {
        for (k, reps) in per_k.iter().enumerate() {
            let qps: Vec<f64> = reps.iter().map(Run::qps).collect();
            let ratios: Vec<f64> =
                reps.iter().zip(&runs[0][k]).map(|(r, f)| r.qps() / f.qps()).collect();
            let p50 = median(reps.iter().map(|r| r.latency.quantile(0.5)).collect());
            let p99 = median(reps.iter().map(|r| r.latency.quantile(0.99)).collect());
            let (lost, bad) = reps.iter().fold((0, 0), |(l, b), r| (l + r.lost, b + r.bad));
            let min = qps.iter().copied().fold(f64::INFINITY, f64::min);
            let max = qps.iter().copied().fold(0.0, f64::max);
            md.push_str(&format!(
                "| {} | {} | {:.0} | {:.0}–{:.0} | {} | {:.3} | {:.3} | {lost} / {bad} |\n",
                PATHS[p],
                o.inflight[k],
                median(qps.clone()),
                min,
                max,
                if p == 0 {
                    "1.00x (floor)".to_owned()
                } else {
                    format!("{:.2}x", median(ratios.clone()))
                },
                p50,
                p99,
            ));
            json_paths.push(serde_json::json!({
                "path": PATHS[p],
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
    // The anchors were taken at 16 in flight with a Python client on another machine.
    if let Some(k) = o.inflight.iter().position(|&n| n == 16) {
        let at = |p: usize| median(runs[p][k].iter().map(Run::qps).collect());
        let ratio = |p: usize| {
            median(runs[p][k].iter().zip(&runs[0][k]).map(|(r, f)| r.qps() / f.qps()).collect())
        };
        md.push_str(&format!(
            "\nAnchors at 16 in flight (RESULTS.md: Python client `dnsloop.py`, a 2-vCPU VM; \
             this bench's client is compiled, so absolute q/s are not comparable, ratios to \
             each run's own floor are): dockerd {:.1}k q/s = {:.2}x its floor, aardvark-dns \
             {:.1}k = {:.2}x, C floor {:.1}k. Here: cove local {:.1}k q/s = {:.2}x the floor \
             ({:.2}x dockerd's anchor q/s), cove forwarded {:.1}k = {:.2}x the floor \
             ({:.2}x aardvark's anchor q/s).\n",
            ANCHOR_DOCKERD / 1e3,
            ANCHOR_DOCKERD / ANCHOR_FLOOR,
            ANCHOR_AARDVARK / 1e3,
            ANCHOR_AARDVARK / ANCHOR_FLOOR,
            ANCHOR_FLOOR / 1e3,
            at(1) / 1e3,
            ratio(1),
            at(1) / ANCHOR_DOCKERD,
            at(2) / 1e3,
            ratio(2),
            at(2) / ANCHOR_AARDVARK,
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
