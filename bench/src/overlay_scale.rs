//! Overlay networks at scale: 3 fake hosts x N containers on 4 overlay networks (a netlab
//! with etcd, as in [`crate::overlay`]).
//!
//! The containers (busybox `sleep`, spread round-robin over the networks) are started in
//! batches: in each batch every host creates and starts its next `batch` containers, one
//! request at a time per host, the hosts at once. After each batch, on each host in turn,
//! a container on the default bridge is connected to and disconnected from an overlay
//! network a few times, etcd's counters are read (revision: write transactions; puts,
//! deletes, ranges, bytes sent to clients) and every daemon's resident memory. Then every
//! container is probed from a container on the same network on another host (busybox
//! `ping -c1 -W1` in the prober's namespace, all probers at once). Then the containers are
//! removed in the order they were started, in the same batches, each removal timed, with
//! the same counters; what the cluster and the hosts hold afterwards is checked against
//! what they held before the first start (etcd's endpoints and addresses, each host's
//! links, FDB, neighbours, routes, nft, mounts, processes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cove_testkit::{Etcd, FakeHost, Netlab};

use crate::daemon::V;
use crate::stats::{ms, Series};

/// What the scale bench does.
pub(crate) struct Options {
    /// Containers started on each host.
    pub(crate) per_host: usize,
    /// Containers each host starts per batch (a checkpoint after each).
    pub(crate) batch: usize,
    /// Attach/detach cycles per host at each checkpoint.
    pub(crate) attach_cycles: usize,
    /// Fill-probe-remove cycles on the same daemons (the tables show the first; later ones
    /// report memory).
    pub(crate) cycles: usize,
}

/// The bench's result.
pub(crate) struct Outcome {
    pub(crate) markdown: String,
    pub(crate) json: serde_json::Value,
}

const HOSTS: u8 = 3;
const NETWORKS: usize = 4;
const FLAGS: [&str; 4] =
    ["--cluster-store", "etcd://203.0.113.2:2379", "--cluster-advertise", "{addr}"];

fn host_name(h: usize) -> String {
    format!("h{}", h + 1)
}

fn net_name(n: usize) -> String {
    format!("sc{n}")
}

/// `c<host>-<i>`: container `i` of host `h` (0-based), on network `i % 4`.
fn ctr_name(h: usize, i: usize) -> String {
    format!("c{}-{i}", h + 1)
}

/// One API request to `h`'s daemon; the body, or an error naming the request and answer.
fn api(h: &FakeHost, method: &str, path: &str, body: Option<&str>, want: u16) -> Result<String> {
    let (code, text) = crate::http::request(&h.sock_path(), method, &format!("{V}{path}"), body)
        .with_context(|| format!("{} {method} {path}", h.name()))?;
    if code != want {
        bail!("{}: {method} {path}: {code} {text}", h.name());
    }
    Ok(text)
}

fn create(h: &FakeHost, name: &str, network: &str) -> Result<String> {
    let body = serde_json::json!({
        "Image": "bb",
        "Cmd": ["sleep", "100000"],
        "HostConfig": { "NetworkMode": network },
    })
    .to_string();
    let text = api(h, "POST", &format!("/containers/create?name={name}"), Some(&body), 201)?;
    let v: serde_json::Value = serde_json::from_str(&text)?;
    Ok(v["Id"].as_str().context("create answered no Id")?.to_owned())
}

/// The daemon's VmRSS in MiB.
fn rss_mib(pid: Option<u32>) -> f64 {
    let Some(pid) = pid else { return f64::NAN };
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// etcd's counters at one moment: its revision and the `/metrics` samples it has.
#[derive(Clone, Default)]
struct EtcdCounters {
    revision: i64,
    metrics: BTreeMap<String, f64>,
}

/// The metrics the report shows, as `(label, metric)`: summed over their labels.
const METRICS: [(&str, &str); 5] = [
    ("keys put", "etcd_mvcc_put_total"),
    ("keys deleted", "etcd_mvcc_delete_total"),
    ("ranges (reads)", "etcd_mvcc_range_total"),
    ("txns", "etcd_mvcc_txn_total"),
    ("bytes sent to clients", "etcd_network_client_grpc_sent_bytes_total"),
];

impl EtcdCounters {
    fn read(etcd: &Etcd) -> Result<EtcdCounters> {
        let addr = SocketAddr::new(etcd.ip(), 2379);
        let text = etcd
            .run_in_netns(|| -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
                s.set_read_timeout(Some(Duration::from_secs(5)))?;
                write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
                let mut body = String::new();
                s.read_to_string(&mut body)?;
                Ok(body)
            })
            .context("etcd /metrics")?;
        let mut metrics = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.rsplit_once(' ') else { continue };
            let Ok(v) = value.parse::<f64>() else { continue };
            let name = key.split('{').next().unwrap_or(key);
            *metrics.entry(name.to_string()).or_insert(0.0) += v;
        }
        Ok(EtcdCounters { revision: etcd.revision(), metrics })
    }

    /// `later - self`: write transactions (revisions) and each of [`METRICS`].
    fn delta(&self, later: &EtcdCounters) -> EtcdDelta {
        let m = METRICS.map(|(_, name)| match (self.metrics.get(name), later.metrics.get(name)) {
            (Some(a), Some(b)) => b - a,
            _ => f64::NAN,
        });
        EtcdDelta { revisions: (later.revision - self.revision) as f64, metrics: m }
    }
}

/// What etcd did between two readings.
#[derive(Clone, Copy)]
struct EtcdDelta {
    revisions: f64,
    metrics: [f64; METRICS.len()],
}

impl EtcdDelta {
    fn per(&self, n: usize) -> EtcdDelta {
        let n = n.max(1) as f64;
        EtcdDelta { revisions: self.revisions / n, metrics: self.metrics.map(|v| v / n) }
    }

    fn to_json(self) -> serde_json::Value {
        let mut v = serde_json::json!({ "revisions": self.revisions });
        for ((_, name), x) in METRICS.iter().zip(self.metrics) {
            v[*name] = serde_json::json!(x);
        }
        v
    }
}

/// One checkpoint after a batch of starts.
struct Checkpoint {
    /// Containers running in the cluster (probers and the attach containers not counted).
    running: usize,
    create: Series,
    start: Series,
    attach: Series,
    detach: Series,
    /// etcd during the batch's starts (not the attaches), per start.
    etcd: EtcdDelta,
    rss: Vec<f64>,
    wall_seconds: f64,
}

/// One batch of removals.
struct Removal {
    /// Containers running before the batch.
    before: usize,
    rm: Series,
    etcd: EtcdDelta,
    rss: Vec<f64>,
}

pub(crate) fn run(cove: &Path, o: &Options) -> Result<Outcome> {
    if o.per_host == 0 || o.batch == 0 {
        bail!("overlay-scale: --per-host and --batch must be at least 1");
    }
    let mut lab = Netlab::with_hosts("bench_ov_scale", cove, HOSTS);
    let etcd = Etcd::start_in("bench_ov_scale", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    let names: Vec<String> = (0..HOSTS as usize).map(host_name).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    lab.start_daemons(&refs, &FLAGS);
    let result = measure(&lab, &etcd, o);
    // For a post-mortem: the daemons' logs, wherever COVE_BENCH_DAEMON_LOG points.
    if let Some(dir) = std::env::var_os("COVE_BENCH_DAEMON_LOG") {
        let dir = Path::new(&dir);
        let _ = std::fs::create_dir_all(dir);
        for h in &names {
            let _ = std::fs::write(dir.join(format!("{h}.log")), lab.host(h).daemon_log());
        }
        let _ = std::fs::write(dir.join("etcd.log"), etcd.log());
    }
    drop(lab);
    drop(etcd);
    result
}

fn measure(lab: &Netlab, etcd: &Etcd, o: &Options) -> Result<Outcome> {
    let hosts: Vec<&FakeHost> = (0..HOSTS as usize).map(|h| lab.host(&host_name(h))).collect();
    std::thread::scope(|s| {
        for h in &hosts {
            s.spawn(move || h.import_busybox("bb"));
        }
    });
    let h1 = hosts[0];
    // /22s: a network holds a quarter of the containers and 3 probers (228 at 300 per
    // host); a /22 leaves room for --per-host up to about 1,300.
    for n in 0..NETWORKS {
        let subnet = format!("10.30.{}.0/22", n * 4);
        api(
            h1,
            "POST",
            "/networks/create",
            Some(
                &serde_json::json!({
                    "Name": net_name(n), "Driver": "overlay",
                    "IPAM": { "Config": [{ "Subnet": subnet }] },
                })
                .to_string(),
            ),
            201,
        )?;
    }
    for h in &hosts {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ls = h.cove(&["network", "ls", "--format", "{{.Name}}"]).stdout.clone();
            if (0..NETWORKS).all(|n| ls.lines().any(|l| l == net_name(n))) {
                break;
            }
            if Instant::now() > deadline {
                bail!("{} never listed all overlay networks:\n{ls}", h.name());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // A prober per network and host, and a container on the default bridge per host that
    // is connected to an overlay network and disconnected at each checkpoint.
    let mut probers = BTreeMap::new();
    for (hi, h) in hosts.iter().enumerate() {
        for n in 0..NETWORKS {
            let name = format!("p{}-{n}", hi + 1);
            let id = create(h, &name, &net_name(n))?;
            api(h, "POST", &format!("/containers/{id}/start"), None, 204)?;
            let key = h
                .cove(&["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", &name])
                .ok()
                .stdout
                .trim()
                .to_string();
            probers.insert((hi, n), key);
        }
        let id = create(h, &format!("att{}", hi + 1), "bridge")?;
        api(h, "POST", &format!("/containers/{id}/start"), None, 204)?;
    }
    let baseline = lab.snapshot();
    let rss = || hosts.iter().map(|h| rss_mib(h.daemon_pid())).collect::<Vec<f64>>();
    let rss_start = rss();
    let etcd_rss_start = rss_mib(Some(etcd.pid()));

    // etcd while nothing happens (lease keep-alives, the hosts' periodic syncs).
    let idle0 = EtcdCounters::read(etcd)?;
    let idle_window = Duration::from_secs(5);
    std::thread::sleep(idle_window);
    let idle = idle0.delta(&EtcdCounters::read(etcd)?);

    let first = cycle(lab, etcd, &hosts, &probers, &baseline, idle, o)?;
    // Further cycles (--cycles): the same again on the same daemons, to tell memory kept for
    // reuse from memory leaked: RSS with everything running and after every removal.
    let mut later = vec![];
    for _ in 1..o.cycles {
        let c = cycle(lab, etcd, &hosts, &probers, &baseline, idle, o)?;
        later.push((
            c.rss_full,
            c.rss_after,
            c.checkpoints.last().map_or(f64::NAN, |cp| cp.start.median()),
        ));
    }
    let summary = Summary {
        o,
        hosts: hosts.len(),
        c: &first,
        idle,
        idle_window,
        rss_start,
        etcd_rss_start,
        later,
    };
    Ok(summary.report())
}

/// What one fill, probe and removal of every container found.
struct Cycle {
    checkpoints: Vec<Checkpoint>,
    removals: Vec<Removal>,
    fill_seconds: f64,
    probe_seconds: f64,
    first_sweep_failures: usize,
    /// Times the machine's neighbour table was full while probing.
    table_fulls: u64,
    total: usize,
    endpoints_full: usize,
    ipam_full: usize,
    probers: usize,
    rss_full: Vec<f64>,
    rss_after: Vec<f64>,
    etcd_rss_full: f64,
}

/// Fill the cluster (batches, a checkpoint after each), probe every container, remove them
/// all (batches), and check that etcd and every host are back to `baseline`.
fn cycle(
    lab: &Netlab,
    etcd: &Etcd,
    hosts: &[&FakeHost],
    probers: &BTreeMap<(usize, usize), String>,
    baseline: &cove_testkit::NetlabSnapshot,
    idle: EtcdDelta,
    o: &Options,
) -> Result<Cycle> {
    let rss = || hosts.iter().map(|h| rss_mib(h.daemon_pid())).collect::<Vec<f64>>();
    // Starts, in batches, with a checkpoint after each.
    let ids: Vec<Mutex<Vec<String>>> = (0..hosts.len()).map(|_| Mutex::new(vec![])).collect();
    let mut checkpoints = vec![];
    let mut started = 0;
    let t_fill = Instant::now();
    let attach_at = |cp: &mut Checkpoint, k: usize| -> Result<()> {
        for (hi, h) in hosts.iter().enumerate() {
            let body = format!(r#"{{"Container":"att{}"}}"#, hi + 1);
            let net = net_name((k + hi) % NETWORKS);
            for _ in 0..o.attach_cycles {
                let t = Instant::now();
                api(h, "POST", &format!("/networks/{net}/connect"), Some(&body), 200)?;
                cp.attach.push(ms(t));
                let t = Instant::now();
                api(h, "POST", &format!("/networks/{net}/disconnect"), Some(&body), 200)?;
                cp.detach.push(ms(t));
            }
        }
        Ok(())
    };
    let mut cp0 = Checkpoint {
        running: 0,
        create: Series::new("create"),
        start: Series::new("start"),
        attach: Series::new("attach"),
        detach: Series::new("detach"),
        etcd: idle.per(1),
        rss: rss(),
        wall_seconds: 0.0,
    };
    attach_at(&mut cp0, 0)?;
    checkpoints.push(cp0);
    let mut k = 0;
    while started < o.per_host {
        k += 1;
        let upto = (started + o.batch).min(o.per_host);
        let before = EtcdCounters::read(etcd)?;
        let series = Mutex::new((Series::new("create"), Series::new("start")));
        let t_batch = Instant::now();
        let errors: Vec<anyhow::Error> = std::thread::scope(|s| {
            let threads: Vec<_> = hosts
                .iter()
                .enumerate()
                .map(|(hi, h)| {
                    let (ids, series) = (&ids[hi], &series);
                    s.spawn(move || -> Result<()> {
                        for i in started..upto {
                            let t = Instant::now();
                            let id = create(h, &ctr_name(hi, i), &net_name(i % NETWORKS))?;
                            let created = ms(t);
                            let t = Instant::now();
                            api(h, "POST", &format!("/containers/{id}/start"), None, 204)?;
                            let took = ms(t);
                            let mut g = series.lock().expect("series lock");
                            g.0.push(created);
                            g.1.push(took);
                            drop(g);
                            ids.lock().expect("ids lock").push(id);
                        }
                        Ok(())
                    })
                })
                .collect();
            threads.into_iter().filter_map(|t| t.join().expect("start thread").err()).collect()
        });
        if let Some(e) = errors.into_iter().next() {
            return Err(e.context(format!("starting containers {started}..{upto} on each host")));
        }
        let wall_seconds = t_batch.elapsed().as_secs_f64();
        let n = (upto - started) * hosts.len();
        let etcd_batch = before.delta(&EtcdCounters::read(etcd)?).per(n);
        started = upto;
        let (create_s, start_s) = series.into_inner().expect("series lock");
        let mut cp = Checkpoint {
            running: started * hosts.len(),
            create: create_s,
            start: start_s,
            attach: Series::new("attach"),
            detach: Series::new("detach"),
            etcd: etcd_batch,
            rss: rss(),
            wall_seconds,
        };
        attach_at(&mut cp, k)?;
        eprintln!(
            "overlay-scale: {} running, start p50 {:.1} ms p99 {:.1} ms, attach p50 {:.1} ms, \
             {:.2} etcd revisions per start, RSS {:?} MiB",
            cp.running,
            cp.start.median(),
            cp.start.quantile(0.99),
            cp.attach.median(),
            cp.etcd.revisions,
            cp.rss.iter().map(|r| r.round()).collect::<Vec<_>>()
        );
        checkpoints.push(cp);
    }
    let fill_seconds = t_fill.elapsed().as_secs_f64();
    let rss_full = rss();
    let etcd_rss_full = rss_mib(Some(etcd.pid()));

    // Every container, from a prober on its network on the next host.
    let total = o.per_host * hosts.len();
    let keys_of = |prefix: &str| -> Result<usize> {
        let out = etcd.etcdctl(&["get", "--prefix", prefix, "--keys-only"]);
        if !out.success() {
            bail!("etcdctl get {prefix}: {out}");
        }
        Ok(out.stdout.lines().filter(|l| !l.is_empty()).count())
    };
    let probers_n = hosts.len() * NETWORKS;
    let endpoints_full = keys_of("/cove/v1/endpoints/")?;
    let ipam_full = keys_of("/cove/v1/ipam/")?;
    let mut targets: BTreeMap<(usize, usize), Vec<(String, String)>> = BTreeMap::new();
    for (hi, h) in hosts.iter().enumerate() {
        let list: serde_json::Value =
            serde_json::from_str(&api(h, "GET", "/containers/json", None, 200)?)?;
        for c in list.as_array().context("container list")? {
            let name = c["Names"][0].as_str().unwrap_or("").trim_start_matches('/').to_string();
            if !name.starts_with('c') {
                continue;
            }
            let i: usize = name.rsplit('-').next().and_then(|i| i.parse().ok()).unwrap_or(0);
            let n = i % NETWORKS;
            let ip = c["NetworkSettings"]["Networks"][net_name(n)]["IPAddress"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if ip.is_empty() {
                bail!("{name} on {} has no address on {}: {c}", h.name(), net_name(n));
            }
            targets.entry(((hi + 1) % hosts.len(), n)).or_default().push((name, ip));
        }
    }
    let listed: usize = targets.values().map(Vec::len).sum();
    if listed != total {
        let mut why = vec![];
        for h in hosts {
            let all: serde_json::Value =
                serde_json::from_str(&api(h, "GET", "/containers/json?all=1", None, 200)?)?;
            for c in all.as_array().context("container list")? {
                if c["State"].as_str() != Some("running") {
                    let id = c["Id"].as_str().unwrap_or("");
                    let state = api(h, "GET", &format!("/containers/{id}/json"), None, 200)
                        .ok()
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                        .map(|v| v["State"].to_string())
                        .unwrap_or_default();
                    why.push(format!("{}: {} {}", h.name(), c["Names"][0], state));
                }
            }
        }
        bail!(
            "the hosts list {listed} running containers, {total} were started; not running:\n  {}",
            why.join("\n  ")
        );
    }
    let distinct: std::collections::BTreeSet<&String> =
        targets.values().flatten().map(|(_, ip)| ip).collect();
    if distinct.len() != total {
        bail!("{total} containers have only {} distinct addresses", distinct.len());
    }
    // Negative control: the probe reports an address nobody has (the subnet's last) as
    // unreachable, so an empty list of failures means the pings were answered.
    let nobody = format!("10.30.{}.254", NETWORKS * 4 - 1);
    let control: BTreeMap<(usize, usize), Vec<(String, String)>> =
        [((0, NETWORKS - 1), vec![("nobody".to_string(), nobody.clone())])].into();
    if probe(hosts, probers, &control).is_empty() {
        bail!("the probe reports {nobody}, which nobody has, as reachable");
    }
    let fulls0 = neighbour_table_fulls();
    let t_probe = Instant::now();
    let mut unreachable = sweep(hosts, probers, &targets);
    let probe_seconds = t_probe.elapsed().as_secs_f64();
    let first_sweep_failures = unreachable.values().map(Vec::len).sum::<usize>();
    // Late ones get two more tries: late and never are different findings.
    for _ in 0..2 {
        if unreachable.is_empty() {
            break;
        }
        std::thread::sleep(NEIGH_SETTLE);
        unreachable = sweep(hosts, probers, &unreachable);
    }
    let table_fulls = neighbour_table_fulls() - fulls0;
    let unreachable: Vec<(usize, usize, String, String)> = unreachable
        .into_iter()
        .flat_map(|((p, n), v)| v.into_iter().map(move |(c, ip)| (p, n, c, ip)))
        .collect();
    eprintln!(
        "overlay-scale: probed {total} containers in {probe_seconds:.2} s: {first_sweep_failures} \
         failed the first sweep, {} never answered; the neighbour table was full {table_fulls} \
         times meanwhile",
        unreachable.len()
    );
    if !unreachable.is_empty() {
        let shown: Vec<String> = unreachable
            .iter()
            .take(20)
            .map(|(p, n, c, ip)| format!("{c} ({ip}) from p{}-{n}", p + 1))
            .collect();
        bail!("{} containers unreachable from another host: {shown:?}", unreachable.len());
    }

    // Removals in start order, in the same batches.
    let mut removals = vec![];
    let ids: Vec<Vec<String>> = ids.into_iter().map(|m| m.into_inner().expect("ids")).collect();
    let mut removed = 0;
    while removed < o.per_host {
        let upto = (removed + o.batch).min(o.per_host);
        let before = EtcdCounters::read(etcd)?;
        let series = Mutex::new(Series::new("rm"));
        let errors: Vec<anyhow::Error> = std::thread::scope(|s| {
            let threads: Vec<_> = hosts
                .iter()
                .enumerate()
                .map(|(hi, h)| {
                    let (ids, series) = (&ids[hi], &series);
                    s.spawn(move || -> Result<()> {
                        for id in &ids[removed..upto] {
                            let t = Instant::now();
                            api(h, "DELETE", &format!("/containers/{id}?force=1"), None, 204)?;
                            series.lock().expect("series lock").push(ms(t));
                        }
                        Ok(())
                    })
                })
                .collect();
            threads.into_iter().filter_map(|t| t.join().expect("rm thread").err()).collect()
        });
        if let Some(e) = errors.into_iter().next() {
            return Err(e.context(format!("removing containers {removed}..{upto} on each host")));
        }
        let n = (upto - removed) * hosts.len();
        let etcd_batch = before.delta(&EtcdCounters::read(etcd)?).per(n);
        removals.push(Removal {
            before: (o.per_host - removed) * hosts.len(),
            rm: series.into_inner().expect("series lock"),
            etcd: etcd_batch,
            rss: rss(),
        });
        removed = upto;
    }

    // What is left: the probers' endpoints in etcd, and on each host what was there before
    // the first start.
    let settle = Instant::now() + Duration::from_secs(15);
    let (endpoints_after, ipam_after) = loop {
        let left = (keys_of("/cove/v1/endpoints/")?, keys_of("/cove/v1/ipam/")?);
        if left == (probers_n, probers_n) || Instant::now() > settle {
            break left;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let leaks = loop {
        let diff = baseline.diff(&lab.snapshot());
        if diff.is_empty() || Instant::now() > settle {
            break diff;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let rss_after = rss();
    if endpoints_after != probers_n || ipam_after != probers_n {
        bail!(
            "after every removal etcd holds {endpoints_after} endpoints and {ipam_after} \
             addresses, not the {probers_n} probers'"
        );
    }
    if !leaks.is_empty() {
        bail!("after every removal the hosts differ from before:\n  {}", leaks.join("\n  "));
    }

    Ok(Cycle {
        checkpoints,
        removals,
        fill_seconds,
        probe_seconds,
        first_sweep_failures,
        table_fulls,
        total,
        endpoints_full,
        ipam_full,
        probers: probers_n,
        rss_full,
        rss_after,
        etcd_rss_full,
    })
}

/// Learned neighbour entries a sweep creates per round, about: the machine's neighbour table
/// holds 1,024 learned entries for all namespaces together (`gc_thresh3`), and every probe
/// makes two (one in the prober, one in the target for its answer).
const SWEEP_ROUND: usize = 240;
/// How long a learned neighbour entry must be left alone before the kernel may reclaim it
/// (forced garbage collection spares entries updated in the last 5 s).
const NEIGH_SETTLE: Duration = Duration::from_millis(5500);

/// How many times the machine's ARP table was full (`table_fulls` of
/// `/proc/net/stat/arp_cache`, summed over the CPUs).
fn neighbour_table_fulls() -> u64 {
    let text = std::fs::read_to_string("/proc/net/stat/arp_cache").unwrap_or_default();
    let mut lines = text.lines();
    let Some(col) =
        lines.next().and_then(|h| h.split_whitespace().position(|c| c == "table_fulls"))
    else {
        return 0;
    };
    lines.filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(col)?, 16).ok()).sum()
}

/// Ping every target from its prober in rounds of about [`SWEEP_ROUND`] probes (all probers
/// at once within a round), [`NEIGH_SETTLE`] apart, so that the kernel can reclaim one
/// round's neighbour entries before the next (probing all 900 at once overflowed the table
/// and a third of the probes failed for that alone); the targets that did not answer.
fn sweep(
    hosts: &[&FakeHost],
    probers: &BTreeMap<(usize, usize), String>,
    targets: &BTreeMap<(usize, usize), Vec<(String, String)>>,
) -> BTreeMap<(usize, usize), Vec<(String, String)>> {
    let per_prober = (SWEEP_ROUND / probers.len().max(1)).max(1);
    let rounds = targets.values().map(|v| v.len().div_ceil(per_prober)).max().unwrap_or(0);
    let mut failed: BTreeMap<(usize, usize), Vec<(String, String)>> = BTreeMap::new();
    for r in 0..rounds {
        if r > 0 {
            std::thread::sleep(NEIGH_SETTLE);
        }
        let slice: BTreeMap<(usize, usize), Vec<(String, String)>> = targets
            .iter()
            .map(|(k, v)| {
                let from = (r * per_prober).min(v.len());
                (*k, v[from..(from + per_prober).min(v.len())].to_vec())
            })
            .filter(|(_, v)| !v.is_empty())
            .collect();
        for (k, v) in probe(hosts, probers, &slice) {
            failed.entry(k).or_default().extend(v);
        }
    }
    failed
}

/// Ping every target from its prober (prober host, network), all probers at once, then
/// drop what the probers learned; the targets that did not answer.
fn probe(
    hosts: &[&FakeHost],
    probers: &BTreeMap<(usize, usize), String>,
    targets: &BTreeMap<(usize, usize), Vec<(String, String)>>,
) -> BTreeMap<(usize, usize), Vec<(String, String)>> {
    std::thread::scope(|s| {
        let threads: Vec<_> = targets
            .iter()
            .map(|(&(p, n), list)| {
                let h = hosts[p];
                let key = &probers[&(p, n)];
                s.spawn(move || {
                    let ips: Vec<&str> = list.iter().map(|(_, ip)| ip.as_str()).collect();
                    let script = format!(
                        "for ip in {}; do busybox ping -c1 -W1 $ip >/dev/null 2>&1 || echo $ip; \
                         done; ip neigh flush dev eth0 >/dev/null 2>&1; true",
                        ips.join(" ")
                    );
                    let out = h.exec(&["nsenter", &format!("--net={key}"), "sh", "-c", &script]);
                    let failed = String::from_utf8_lossy(&out.stdout).to_string();
                    let failed: Vec<(String, String)> = if out.status.success() {
                        list.iter()
                            .filter(|(_, ip)| failed.lines().any(|l| l == ip))
                            .cloned()
                            .collect()
                    } else {
                        list.clone()
                    };
                    ((p, n), failed)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("probe thread"))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    })
}

struct Summary<'a> {
    o: &'a Options,
    hosts: usize,
    /// The first cycle.
    c: &'a Cycle,
    idle: EtcdDelta,
    idle_window: Duration,
    /// Daemons' RSS before the first start.
    rss_start: Vec<f64>,
    etcd_rss_start: f64,
    /// Each further cycle: daemons' RSS with everything running and after every removal,
    /// and the last batch's median start.
    later: Vec<(Vec<f64>, Vec<f64>, f64)>,
}

fn mib(v: &[f64]) -> String {
    v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" / ")
}

impl Summary<'_> {
    fn report(&self) -> Outcome {
        let o = self.o;
        let mut md = String::new();
        let _ = writeln!(
            md,
            "{} hosts x {} containers on {NETWORKS} overlay networks, {} per host per batch, one \
             request in flight per host, the hosts at once. Filled in {:.1} s; every container \
             answered a ping from a container on its network on another host ({} probes in \
             {:.1} s in rounds of {SWEEP_ROUND}, {} late on the first sweep, neighbour table \
             full {} times; a probe of an address nobody has fails). \
             etcd held {} endpoints and {} address keys ({} of them the probers').\n",
            self.hosts,
            o.per_host,
            o.batch,
            self.c.fill_seconds,
            self.c.total,
            self.c.probe_seconds,
            self.c.first_sweep_failures,
            self.c.table_fulls,
            self.c.endpoints_full,
            self.c.ipam_full,
            self.c.probers,
        );
        md.push_str(
            "Starts, per batch (create + start of each container timed separately; attach and \
             detach: a running container on the default bridge connected to an overlay network \
             and disconnected, at the checkpoint after the batch; etcd per start during the \
             batch; RSS of the daemons h1 / h2 / h3 at the checkpoint):\n\n",
        );
        md.push_str(
            "| running after | create p50 | start p50 | start p99 | attach p50 | attach p99 | \
             detach p50 | detach p99 | etcd revisions / start | keys put / start | \
             ranges / start | KiB sent / start | RSS MiB |\n",
        );
        md.push_str(&"|---".repeat(13));
        md.push_str("|\n");
        let q = |s: &Series, p: f64| {
            if s.len() == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", s.quantile(p))
            }
        };
        for cp in &self.c.checkpoints {
            let per = |i: usize| {
                if cp.running == 0 {
                    "-".to_string()
                } else {
                    format!("{:.2}", cp.etcd.metrics[i])
                }
            };
            let kib = if cp.running == 0 {
                "-".to_string()
            } else {
                format!("{:.1}", cp.etcd.metrics[4] / 1024.0)
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                cp.running,
                q(&cp.create, 0.5),
                q(&cp.start, 0.5),
                q(&cp.start, 0.99),
                q(&cp.attach, 0.5),
                q(&cp.attach, 0.99),
                q(&cp.detach, 0.5),
                q(&cp.detach, 0.99),
                if cp.running == 0 { "-".into() } else { format!("{:.2}", cp.etcd.revisions) },
                per(0),
                per(2),
                kib,
                mib(&cp.rss),
            );
        }
        md.push_str(
            "\nRemovals (`DELETE /containers/{id}?force=1`), in start order, per batch:\n\n\
             | running before | rm p50 | rm p99 | etcd revisions / rm | keys deleted / rm | \
             ranges / rm | KiB sent / rm | RSS MiB after |\n|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.c.removals {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.1} | {} |",
                r.before,
                q(&r.rm, 0.5),
                q(&r.rm, 0.99),
                r.etcd.revisions,
                r.etcd.metrics[1],
                r.etcd.metrics[2],
                r.etcd.metrics[4] / 1024.0,
                mib(&r.rss),
            );
        }
        let (first, last) =
            (&self.c.checkpoints[1], &self.c.checkpoints[self.c.checkpoints.len() - 1]);
        let (rm_first, rm_last) =
            (&self.c.removals[0], &self.c.removals[self.c.removals.len() - 1]);
        let _ = writeln!(
            md,
            "\nGrowth, last batch against first: start p50 {:.2}x (p99 {:.2}x), attach p50 \
             {:.2}x, detach p50 {:.2}x; rm p50 at {} running {:.2}x that at {}. etcd \
             revisions per start {:.2} → {:.2}; bytes sent to clients per start {:.1} → {:.1} \
             KiB. Idle etcd ({} s, nothing started): {:.0} revisions, {:.0} ranges, {:.1} KiB \
             sent. Daemon RSS (h1 / h2 / h3): {} MiB before, {} MiB at {} containers, {} MiB \
             after every removal; etcd {:.0} → {:.0} MiB.",
            last.start.median() / first.start.median(),
            last.start.quantile(0.99) / first.start.quantile(0.99),
            last.attach.median() / self.c.checkpoints[0].attach.median(),
            last.detach.median() / self.c.checkpoints[0].detach.median(),
            rm_first.before,
            rm_first.rm.median() / rm_last.rm.median(),
            rm_last.before,
            first.etcd.revisions,
            last.etcd.revisions,
            first.etcd.metrics[4] / 1024.0,
            last.etcd.metrics[4] / 1024.0,
            self.idle_window.as_secs(),
            self.idle.revisions,
            self.idle.metrics[2],
            self.idle.metrics[4] / 1024.0,
            mib(&self.rss_start),
            mib(&self.c.rss_full),
            self.c.total,
            mib(&self.c.rss_after),
            self.etcd_rss_start,
            self.c.etcd_rss_full,
        );
        for (i, (full, after, start)) in self.later.iter().enumerate() {
            let _ = writeln!(
                md,
                "\nCycle {} on the same daemons: RSS {} MiB at {} containers, {} MiB after \
                 every removal; last batch's start p50 {start:.1} ms.",
                i + 2,
                mib(full),
                self.c.total,
                mib(after),
            );
        }
        let json = serde_json::json!({
            "hosts": self.hosts,
            "per_host": o.per_host,
            "batch": o.batch,
            "networks": NETWORKS,
            "fill_seconds": self.c.fill_seconds,
            "probe_seconds": self.c.probe_seconds,
            "first_sweep_failures": self.c.first_sweep_failures,
            "neighbour_table_fulls": self.c.table_fulls,
            "etcd_endpoints_full": self.c.endpoints_full,
            "etcd_ipam_full": self.c.ipam_full,
            "etcd_idle": self.idle.to_json(),
            "rss_mib": {
                "before": self.rss_start, "full": self.c.rss_full, "after": self.c.rss_after,
            },
            "later_cycles": self.later.iter().map(|(full, after, start)| serde_json::json!({
                "rss_mib_full": full, "rss_mib_after": after, "last_batch_start_p50_ms": start,
            })).collect::<Vec<_>>(),
            "etcd_rss_mib": { "before": self.etcd_rss_start, "full": self.c.etcd_rss_full },
            "checkpoints": self.c.checkpoints.iter().map(|c| serde_json::json!({
                "running": c.running,
                "wall_seconds": c.wall_seconds,
                "create_ms": c.create.to_json(),
                "start_ms": c.start.to_json(),
                "attach_ms": c.attach.to_json(),
                "detach_ms": c.detach.to_json(),
                "etcd_per_start": c.etcd.to_json(),
                "rss_mib": c.rss,
            })).collect::<Vec<_>>(),
            "removals": self.c.removals.iter().map(|r| serde_json::json!({
                "running_before": r.before,
                "rm_ms": r.rm.to_json(),
                "etcd_per_rm": r.etcd.to_json(),
                "rss_mib": r.rss,
            })).collect::<Vec<_>>(),
        });
        Outcome { markdown: md, json }
    }
}
