//! Overlay networks across two fake hosts (a netlab: underlay switch, etcd, two daemons),
//! each figure against its floor in the same run:
//!
//! * throughput: one iperf3 TCP stream container → container across the VXLAN tunnel,
//!   against a raw VXLAN pair between the same two host namespaces (the kernel's tunnel
//!   with nothing of Cove's on the path) and against the underlay it rides on; and across
//!   an encrypted overlay (`--opt encrypted`: VXLAN over the nodes' WireGuard tunnel),
//!   interleaved with the plain one (wireguard-go between the same namespaces is measured
//!   at the crate level, `cove-tunnel`'s bench test, ADR 0019);
//! * key rotation: from `cove node rotate-key` on h1 to h2's new handshake with h1, as
//!   h2's `network inspect` shows it;
//! * attach: `POST /networks/{id}/connect` + `disconnect` of a running container on an
//!   overlay network, against the same on a bridge network, interleaved;
//! * convergence: from the request that creates a server on h2 to the first TCP
//!   connection a client on h1 completes to it, and to the first answer for its name
//!   from h1's embedded resolver (runc included: what a user waits for); also how long
//!   `run` itself took, and both counted from when it returned (what the cluster adds).
//!
//! The anchor, when dockerd is installed: Docker 20.10's classic overlay (`dockerd
//! --cluster-store`, [`crate::overlay_docker`]) on two more fake hosts of the same netlab
//! (d1, d2: same switch, same etcd), measured the same way and interleaved with Cove
//! (each repetition, iteration and convergence round runs Cove's then Docker's). When it
//! cannot run, or fails on the way, the report says why and Cove's figures stand alone.
//!
//! iperf3 runs from the fake hosts in the containers' namespaces (`nsenter --net`), as in
//! the throughput bench.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cove_testkit::{Attach, Etcd, FakeHost, Netlab};

use crate::overlay_docker::{self, Docker};
use crate::stats::{ms, Series};

/// What the overlay bench measures.
pub(crate) struct Options {
    /// Throughput repetitions (each floor + overlay).
    pub(crate) reps: usize,
    /// Seconds per iperf3 run.
    pub(crate) seconds: u32,
    /// Attach/detach iterations per network kind.
    pub(crate) iterations: usize,
    /// Whether to measure Docker 20.10's classic overlay too (when dockerd is installed).
    pub(crate) docker: bool,
}

/// The bench's result.
pub(crate) struct Outcome {
    pub(crate) markdown: String,
    pub(crate) json: serde_json::Value,
}

const STORE: &str = "etcd://203.0.113.2:2379";
const FLAGS: [&str; 4] = ["--cluster-store", STORE, "--cluster-advertise", "{addr}"];
/// Docker's fake hosts on the underlay.
const D1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 21);
const D2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 22);
/// Every host's resolver: an upstream the hosts have no route to, so a lookup the embedded
/// resolvers forward (a name not known yet) fails at once instead of waiting for an ARP
/// answer that never comes (an address on the underlay), for Cove and Docker alike.
const RESOLV_CONF: &str = "# overlay bench: upstream without a route, fails fast\n\
                           nameserver 198.51.100.53\n";

/// One system under test on two fake hosts: Cove's daemons or Docker's.
pub(crate) trait Cluster {
    /// Its name in the report.
    fn label(&self) -> &'static str;
    /// Fake host `i` (0 or 1) it runs on.
    fn host(&self, i: usize) -> &FakeHost;
    /// The busybox image's name there.
    fn image(&self) -> &'static str;
    /// Its CLI on host `i` (set-up and `run`: what a user types).
    fn cli(&self, i: usize, args: &[&str]) -> Result<String>;
    /// `POST path` with a JSON `body` to host 0's API; an error unless it answers 200.
    fn post(&self, path: &str, body: &str) -> Result<()>;
    /// What host 0 knows of container `name` (address `ip`) on host 1, when it cannot
    /// reach it: for the report.
    fn diagnose(&self, _name: &str, _ip: &str) -> String {
        String::new()
    }
}

/// Cove's daemons on h1 and h2.
struct Cove<'a> {
    hosts: [&'a FakeHost; 2],
}

impl Cluster for Cove<'_> {
    fn label(&self) -> &'static str {
        "Cove"
    }

    fn host(&self, i: usize) -> &FakeHost {
        self.hosts[i]
    }

    fn image(&self) -> &'static str {
        "bb"
    }

    fn cli(&self, i: usize, args: &[&str]) -> Result<String> {
        let r = self.hosts[i].cove(args);
        if !r.success() {
            bail!("{r}");
        }
        Ok(r.stdout.trim().to_owned())
    }

    fn post(&self, path: &str, body: &str) -> Result<()> {
        let (code, out) = self.hosts[0].api("POST", path, Some(body));
        if code != 200 {
            bail!("POST {path}: {code} {out}");
        }
        Ok(())
    }
}

/// A field of `docker inspect`/`cove inspect`.
fn inspect(c: &dyn Cluster, i: usize, name: &str, format: &str) -> Result<String> {
    c.cli(i, &["inspect", "-f", format, name])
}

/// Container `name`'s address on `ov` (Docker's also have one on `docker_gwbridge`).
fn ip_of(c: &dyn Cluster, i: usize, name: &str) -> Result<String> {
    ip_on(c, i, name, "ov")
}

/// Container `name`'s address on network `net`.
fn ip_on(c: &dyn Cluster, i: usize, name: &str, net: &str) -> Result<String> {
    let format = format!(r#"{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}}"#);
    let ip = inspect(c, i, name, &format)?;
    if ip.is_empty() || ip.contains("no value") {
        bail!("{name} has no address on {net}");
    }
    Ok(ip)
}

/// `nsenter` into container `name`'s network namespace (a shell prefix, run on its host).
fn sandbox(c: &dyn Cluster, i: usize, name: &str) -> Result<String> {
    Ok(format!("nsenter --net={}", inspect(c, i, name, "{{.NetworkSettings.SandboxKey}}")?))
}

/// One iperf3 run from `client` (a shell prefix: which namespace) to `addr`; Gbit/s.
pub(crate) fn iperf(
    client: &FakeHost,
    prefix: &str,
    addr: &str,
    port: u16,
    seconds: u32,
) -> Result<f64> {
    let mut last = String::new();
    for _ in 0..20 {
        let out = client.sh(&format!("{prefix} iperf3 -c {addr} -p {port} -t {seconds} -J"));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            let v: serde_json::Value = serde_json::from_str(&text).context("iperf3 -J output")?;
            if let Some(bps) = v["end"]["sum_received"]["bits_per_second"].as_f64() {
                return Ok(bps / 1e9);
            }
        }
        last = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("iperf3 to {addr}:{port}: {last}")
}

/// Start an iperf3 server (daemonized) on `port` in `prefix`'s namespace of `host`; its
/// pid file is `/run/iperf3-<port>.pid` (the fake host's own `/run`).
pub(crate) fn iperf_server(host: &FakeHost, prefix: &str, port: u16) {
    host.sh_ok(&format!("{prefix} iperf3 -s -p {port} -D -I /run/iperf3-{port}.pid"));
}

/// Stop the iperf3 server [`iperf_server`] started on `port`.
pub(crate) fn stop_iperf_server(host: &FakeHost, port: u16) {
    host.sh(&format!("kill $(cat /run/iperf3-{port}.pid) && rm -f /run/iperf3-{port}.pid"));
}

/// One system's figures.
struct Figures {
    label: &'static str,
    /// Names of its two hosts.
    hosts: [String; 2],
    overlay: Series,
    /// attach bridge, attach overlay, detach bridge, detach overlay
    attach: [Series; 4],
    /// How long `run` itself takes (the CLI returns: container created and started).
    run: Series,
    reach: Series,
    named: Series,
    /// The same two, counted from when `run` returned (each round's difference).
    reach_after: Series,
    named_after: Series,
    /// Convergence rounds that did not complete in 10 s (what was seen).
    misses: Vec<String>,
}

impl Figures {
    fn new(c: &dyn Cluster) -> Self {
        let (h1, h2) = (c.host(0).name().to_owned(), c.host(1).name().to_owned());
        Figures {
            label: c.label(),
            overlay: Series::new("container → container across the overlay"),
            attach: [
                Series::new("attach, bridge"),
                Series::new("attach, overlay"),
                Series::new("detach, bridge"),
                Series::new("detach, overlay"),
            ],
            run: Series::new(format!("run on {h2} returns")),
            reach: Series::new(format!("run on {h2} → reachable from {h1}")),
            named: Series::new(format!("run on {h2} → its name resolves on {h1}")),
            reach_after: Series::new(format!("run on {h2} returned → reachable from {h1}")),
            named_after: Series::new(format!("run on {h2} returned → its name resolves on {h1}")),
            hosts: [h1, h2],
            misses: vec![],
        }
    }

    fn series(&self) -> Vec<&Series> {
        let mut v = vec![&self.overlay];
        v.extend(&self.attach);
        v.extend([&self.run, &self.reach, &self.named, &self.reach_after, &self.named_after]);
        v
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "hosts": self.hosts,
            "throughput_overlay_gbps": self.overlay.to_json(),
            "attach_bridge_ms": self.attach[0].to_json(),
            "attach_overlay_ms": self.attach[1].to_json(),
            "detach_bridge_ms": self.attach[2].to_json(),
            "detach_overlay_ms": self.attach[3].to_json(),
            "attach_ratio": self.attach[1].median() / self.attach[0].median(),
            "run_returns_ms": self.run.to_json(),
            "run_to_reachable_ms": self.reach.to_json(),
            "run_to_resolvable_ms": self.named.to_json(),
            "returned_to_reachable_ms": self.reach_after.to_json(),
            "returned_to_resolvable_ms": self.named_after.to_json(),
            "convergence_misses": self.misses,
        })
    }
}

/// One attach/detach iteration of `c` on both networks.
fn attach_round(c: &dyn Cluster, f: &mut Figures) -> Result<()> {
    let body = r#"{"Container":"att"}"#;
    for (k, net) in [(0, "br"), (1, "ov")] {
        let t = Instant::now();
        c.post(&format!("/networks/{net}/connect"), body)?;
        f.attach[k].push(ms(t));
        let t = Instant::now();
        c.post(&format!("/networks/{net}/disconnect"), body)?;
        f.attach[k + 2].push(ms(t));
    }
    Ok(())
}

/// From `run` of server `name` on host 1 to its first TCP connection from `c1` on host 0,
/// and to its name's first answer there. `Some(what happened)` when either took longer
/// than 10 s (the server is removed either way).
fn converge(c: &dyn Cluster, f: &mut Figures, sb1: &str, name: &str) -> Result<Option<String>> {
    let t = Instant::now();
    let server = "while true; do echo up | nc -l -p 8080; done";
    c.cli(1, &["run", "-d", "--network", "ov", "--name", name, c.image(), "sh", "-c", server])?;
    let ran = ms(t);
    f.run.push(ran);
    let lookup = format!("{sb1} busybox timeout 1 busybox nslookup {name} 127.0.0.11");
    // Each probe in a loop of its own, so that one that waits (a connection attempt
    // before the path exists) does not delay the other; the name's from when `run`
    // returns, the address's once `inspect` has told it.
    let h1 = c.host(0);
    let limit = Duration::from_secs(10);
    let poll = |cmd: &str| loop {
        if h1.sh(cmd).status.success() {
            return Some(ms(t));
        }
        if t.elapsed() > limit {
            return None;
        }
    };
    let (ip, reached, resolved) = std::thread::scope(|s| {
        let resolved = s.spawn(|| poll(&lookup));
        let ip = ip_of(c, 1, name);
        let reached = ip.as_ref().ok().and_then(|ip| {
            poll(&format!("{sb1} busybox timeout 1 busybox nc {ip} 8080 </dev/null"))
        });
        (ip, reached, resolved.join().expect("lookup thread"))
    });
    let ip = ip?;
    f.reach.extend(reached);
    f.named.extend(resolved);
    f.reach_after.extend(reached.map(|r| r - ran));
    f.named_after.extend(resolved.map(|r| r - ran));
    let missed = (reached.is_none() || resolved.is_none()).then(|| {
        format!(
            "{name} ({ip}) on {}: reachable {}, resolvable {} after 10 s{}",
            f.hosts[1],
            reached.is_some(),
            resolved.is_some(),
            c.diagnose(name, &ip)
        )
    });
    c.cli(1, &["rm", "-f", name])?;
    Ok(missed)
}

/// The anchor while it works; why it stopped (or never ran) otherwise.
enum Anchor<'a> {
    Running(Box<Docker<'a>>, Box<Figures>),
    Failed(String, Option<Box<Figures>>),
}

impl<'a> Anchor<'a> {
    /// Runs `step` on the anchor if it still runs; on its failure, records why (`what`)
    /// and stops the anchor (dockerds stopped, figures so far kept).
    fn step(&mut self, what: &str, step: impl FnOnce(&Docker<'a>, &mut Figures) -> Result<()>) {
        let Anchor::Running(d, f) = self else { return };
        if let Err(e) = step(d, f.as_mut()) {
            let why = format!("{what}: {e:#}");
            eprintln!("overlay: Docker's anchor stopped: {why}");
            let old = std::mem::replace(self, Anchor::Failed(why.clone(), None));
            if let Anchor::Running(d, f) = old {
                drop(d);
                *self = Anchor::Failed(why, Some(f));
            }
        }
    }
}

pub(crate) fn run(cove: &Path, o: &Options) -> Result<Outcome> {
    let docker_missing = if o.docker {
        overlay_docker::missing()
    } else {
        Some("not asked for (--peers without docker)".to_owned())
    };
    let mut lab = Netlab::with_hosts("bench_overlay", cove, 2);
    if docker_missing.is_none() {
        lab.add(&[("d1", Attach::new(D1)), ("d2", Attach::new(D2))], &[]);
    }
    let kv = (lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    // Docker's libkv speaks only etcd's v2 API; Cove uses v3.
    let _etcd = match docker_missing {
        None => Etcd::start_in_v2("bench_overlay", &kv.0, kv.1),
        Some(_) => Etcd::start_in("bench_overlay", &kv.0, kv.1),
    };
    for h in lab.host_names() {
        lab.host(&h).set_resolv_conf(RESOLV_CONF);
    }
    lab.start_daemons(&["h1", "h2"], &FLAGS);
    for h in ["h1", "h2"] {
        lab.host(h).import_busybox("bb");
    }
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    let cove = Cove { hosts: [h1, h2] };
    cove.cli(0, &["network", "create", "-d", "overlay", "--subnet", "10.0.9.0/24", "ov"])?;
    cove.cli(0, &["network", "create", "--subnet", "10.0.8.0/24", "br"])?;
    // The encrypted overlay (issue 18): VXLAN over the nodes' WireGuard tunnel.
    cove.cli(
        0,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--opt",
            "encrypted",
            "--subnet",
            "10.0.7.0/24",
            "sec",
        ],
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h2.cove(&["network", "ls"]).stdout.contains(" sec ") {
        if Instant::now() > deadline {
            bail!("h2 never saw the overlay network");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (i, name) in [(0, "c1"), (1, "c2")] {
        cove.cli(i, &["run", "-d", "--network", "ov", "--name", name, "bb", "sleep", "100000"])?;
    }
    for (i, name) in [(0, "e1"), (1, "e2")] {
        cove.cli(i, &["run", "-d", "--network", "sec", "--name", name, "bb", "sleep", "100000"])?;
    }
    cove.cli(0, &["run", "-d", "--name", "att", "bb", "sleep", "100000"])?;
    let (sb1, sb2) = (sandbox(&cove, 0, "c1")?, sandbox(&cove, 1, "c2")?);
    let c2_ip = ip_of(&cove, 1, "c2")?;
    let (sbe1, sbe2) = (sandbox(&cove, 0, "e1")?, sandbox(&cove, 1, "e2")?);
    let e2_ip = ip_on(&cove, 1, "e2", "sec")?;
    let mut encrypted = Series::new("container → container across the encrypted overlay");
    let mut rotation = Series::new("rotate-key on h1 → h2's handshake with the new key");
    let mut fig = Figures::new(&cove);

    let mut anchor = match docker_missing {
        Some(why) => {
            eprintln!("overlay: Docker 20.10's classic overlay skipped: {why}");
            Anchor::Failed(why, None)
        }
        None => {
            let hosts = [lab.host("d1"), lab.host("d2")];
            match Docker::start(hosts, STORE, "10.0.19.0/24", "10.0.18.0/24") {
                Ok(d) => {
                    let f = Figures::new(&d);
                    Anchor::Running(Box::new(d), Box::new(f))
                }
                Err(e) => {
                    let why = format!("set-up: {e:#}");
                    eprintln!("overlay: Docker's anchor could not start: {why}");
                    Anchor::Failed(why, None)
                }
            }
        }
    };
    // Docker's containers' namespaces and c2's address.
    let mut docker_ends = (String::new(), String::new(), String::new());
    anchor.step("inspect", |d, _| {
        docker_ends = (sandbox(d, 0, "c1")?, sandbox(d, 1, "c2")?, ip_of(d, 1, "c2")?);
        Ok(())
    });

    // A raw VXLAN pair between the hosts (another VNI and port: the guard and Cove's
    // devices are not on its path), the floor the overlay is held to.
    for (h, local, remote, addr) in [
        (h1, "203.0.113.11", "203.0.113.12", "10.199.0.1/24"),
        (h2, "203.0.113.12", "203.0.113.11", "10.199.0.2/24"),
    ] {
        h.sh_ok(&format!(
            "ip link add vxbench type vxlan id 9999 local {local} remote {remote} dstport 4790 \
             nolearning && ip link set vxbench mtu 1450 && ip addr add {addr} dev vxbench && \
             ip link set vxbench up"
        ));
    }

    // Throughput: floors, Cove's overlay and Docker's, interleaved.
    let mut underlay = Series::new("host → host over the underlay");
    let mut raw = Series::new("host → host over a raw VXLAN pair (floor)");
    iperf_server(h2, "", 5301);
    iperf_server(h2, &sb2, 5302);
    iperf_server(h2, &sbe2, 5304);
    anchor.step("iperf3 server", |d, _| {
        iperf_server(d.host(1), &docker_ends.1, 5303);
        Ok(())
    });
    for _ in 0..o.reps {
        underlay.push(iperf(h1, "", "203.0.113.12", 5301, o.seconds)?);
        raw.push(iperf(h1, "", "10.199.0.2", 5301, o.seconds)?);
        fig.overlay.push(iperf(h1, &sb1, &c2_ip, 5302, o.seconds)?);
        encrypted.push(iperf(h1, &sbe1, &e2_ip, 5304, o.seconds)?);
        anchor.step("throughput", |d, f| {
            f.overlay.push(iperf(d.host(0), &docker_ends.0, &docker_ends.2, 5303, o.seconds)?);
            Ok(())
        });
    }
    stop_iperf_server(h2, 5301);
    stop_iperf_server(h2, 5302);
    stop_iperf_server(h2, 5304);
    for _ in 0..o.reps.max(3) {
        rotation.push(rotate(h1, h2)?);
    }
    anchor.step("iperf3 server", |d, _| {
        stop_iperf_server(d.host(1), 5303);
        Ok(())
    });
    for h in [h1, h2] {
        h.sh("ip link del vxbench");
    }

    // Attach and detach on an overlay and on a bridge network, interleaved.
    for _ in 0..o.iterations {
        attach_round(&cove, &mut fig)?;
        anchor.step("attach", |d, f| attach_round(d, f));
    }

    // From `run` on the second host to the first connection from the first, and to its
    // name resolving there.
    // A round Docker misses is counted (and what its first host knew then is kept); the
    // third stops the anchor.
    let rounds = o.reps.max(3) * 4;
    for i in 0..rounds {
        let name = format!("srv{i}");
        if let Some(missed) = converge(&cove, &mut fig, &sb1, &name)? {
            bail!("{missed}");
        }
        anchor.step("convergence", |d, f| {
            if let Some(missed) = converge(d, f, &docker_ends.0, &name)? {
                eprintln!("overlay: Docker missed a convergence round: {missed}");
                f.misses.push(missed);
                if f.misses.len() >= 3 {
                    bail!("3 rounds missed (the last: {})", f.misses[2]);
                }
            }
            Ok(())
        });
    }

    let (docker, why_not) = match anchor {
        Anchor::Running(d, f) => {
            drop(d);
            (Some(f), None)
        }
        Anchor::Failed(why, f) => (f, Some(why)),
    };
    let mut out = report(&underlay, &raw, &fig, docker.as_deref(), why_not.as_deref());
    encryption_report(&mut out, &fig.overlay, &encrypted, &rotation);
    Ok(out)
}

/// h2's last handshake with its peer on `sec`, as inspect shows it.
fn last_handshake(h2: &FakeHost) -> String {
    let out = h2.cove(&["network", "inspect", "sec"]).stdout.to_string();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    v[0]["Encryption"]["Peers"][0]["LastHandshake"].as_str().unwrap_or("").to_owned()
}

/// One key rotation on h1: from the API call to h2 having a new session (ms).
fn rotate(h1: &FakeHost, h2: &FakeHost) -> Result<f64> {
    let before = last_handshake(h2);
    let t0 = Instant::now();
    let out = h1.cove(&["node", "rotate-key"]);
    if out.status != 0 {
        bail!("rotate-key: {}", out.stderr);
    }
    let deadline = t0 + Duration::from_secs(15);
    loop {
        let now = last_handshake(h2);
        if !now.is_empty() && now != before {
            return Ok(ms(t0));
        }
        if Instant::now() > deadline {
            bail!("h2 never made a new handshake after h1's key rotation (last {before:?})");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The encrypted overlay's rows and figures.
fn encryption_report(out: &mut Outcome, overlay: &Series, encrypted: &Series, rotation: &Series) {
    let ratio = encrypted.median() / overlay.median();
    out.markdown.push_str(&format!(
        "\n### Encrypted overlay (`--opt encrypted`, WireGuard in userspace)\n\n\
         | measure | median | p90 | n |\n|---|---|---|---|\n\
         | {} | {:.2} Gbit/s | {:.2} Gbit/s | {} |\n\
         | {} | {:.0} ms | {:.0} ms | {} |\n\n\
         The encrypted overlay carries {ratio:.2}x the plain overlay's throughput in this run.\n",
        encrypted.name,
        encrypted.median(),
        encrypted.quantile(0.9),
        encrypted.len(),
        rotation.name,
        rotation.median(),
        rotation.quantile(0.9),
        rotation.len(),
    ));
    if let Some(m) = out.json.as_object_mut() {
        m.insert("throughput_encrypted_gbps".into(), encrypted.to_json());
        m.insert("throughput_ratio_encrypted_overlay".into(), ratio.into());
        m.insert("rotation_to_handshake_ms".into(), rotation.to_json());
    }
}

fn report(
    underlay: &Series,
    raw: &Series,
    fig: &Figures,
    docker: Option<&Figures>,
    why_not: Option<&str>,
) -> Outcome {
    let ratio = fig.overlay.median() / raw.median();
    let ratio_underlay = fig.overlay.median() / underlay.median();
    let attach_ratio = fig.attach[1].median() / fig.attach[0].median();
    let mut md = String::new();
    md.push_str("| measure | median | p90 | p99 | n |\n|---|---|---|---|---|\n");
    let row = |md: &mut String, s: &Series, unit: &str| {
        md.push_str(&format!(
            "| {} | {:.2} {unit} | {:.2} {unit} | {:.2} {unit} | {} |\n",
            s.name,
            s.median(),
            s.quantile(0.9),
            s.quantile(0.99),
            s.len()
        ));
    };
    let unit = |i: usize| if i == 0 { "Gbit/s" } else { "ms" };
    row(&mut md, underlay, "Gbit/s");
    row(&mut md, raw, "Gbit/s");
    for (i, s) in fig.series().into_iter().enumerate() {
        row(&mut md, s, unit(i));
    }
    md.push_str(&format!(
        "\nOverlay throughput is {ratio:.2}x a raw VXLAN pair's and {ratio_underlay:.2}x the \
         underlay's in this run; an overlay attach takes {attach_ratio:.2}x a bridge attach.\n"
    ));
    let mut json = serde_json::json!({
        "throughput_underlay_gbps": underlay.to_json(),
        "throughput_raw_vxlan_gbps": raw.to_json(),
        "throughput_overlay_gbps": fig.overlay.to_json(),
        "throughput_ratio_raw_vxlan": ratio,
        "throughput_ratio_underlay": ratio_underlay,
        "attach_bridge_ms": fig.attach[0].to_json(),
        "attach_overlay_ms": fig.attach[1].to_json(),
        "detach_bridge_ms": fig.attach[2].to_json(),
        "detach_overlay_ms": fig.attach[3].to_json(),
        "attach_ratio": attach_ratio,
        "run_returns_ms": fig.run.to_json(),
        "run_to_reachable_ms": fig.reach.to_json(),
        "run_to_resolvable_ms": fig.named.to_json(),
        "returned_to_reachable_ms": fig.reach_after.to_json(),
        "returned_to_resolvable_ms": fig.named_after.to_json(),
    });
    if let Some(d) = docker {
        md.push_str(&format!(
            "\n### {} classic overlay (`dockerd --cluster-store`), same netlab\n\n\
             Hosts {} and {} ({} and {}), interleaved with Cove's runs; p50 and p99 side by \
             side, and Docker's median over Cove's:\n\n\
             | measure | Cove p50 | Cove p99 | {l} p50 | {l} p99 | {l} / Cove |\n\
             |---|---|---|---|---|---|\n",
            d.label,
            d.hosts[0],
            d.hosts[1],
            D1,
            D2,
            l = d.label
        ));
        let generic = [
            "container → container across the overlay",
            "attach, bridge",
            "attach, overlay",
            "detach, bridge",
            "detach, overlay",
            "run on host 2 returns",
            "run on host 2 → reachable from host 1",
            "run on host 2 → its name resolves on host 1",
            "run on host 2 returned → reachable from host 1",
            "run on host 2 returned → its name resolves on host 1",
        ];
        for (i, ((c, k), name)) in fig.series().into_iter().zip(d.series()).zip(generic).enumerate()
        {
            let u = unit(i);
            let cell = |s: &Series, q: f64| {
                if s.len() == 0 {
                    "-".to_owned()
                } else {
                    format!("{:.2} {u}", s.quantile(q))
                }
            };
            let r =
                if k.len() == 0 { "-".into() } else { format!("{:.2}x", k.median() / c.median()) };
            md.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {r} |\n",
                cell(c, 0.5),
                cell(c, 0.99),
                cell(k, 0.5),
                cell(k, 0.99)
            ));
        }
        md.push_str(&format!(
            "\nn: Cove {} / {} / {}, {} {} / {} / {} (throughput / attach / convergence).\n",
            fig.overlay.len(),
            fig.attach[1].len(),
            fig.reach.len(),
            d.label,
            d.overlay.len(),
            d.attach[1].len(),
            d.reach.len()
        ));
        if !d.misses.is_empty() {
            md.push_str(&format!(
                "\n{} missed {} convergence round(s) (not counted above):\n\n",
                d.label,
                d.misses.len()
            ));
            for m in &d.misses {
                md.push_str(&format!("- {}\n", m.replace('\n', " ")));
            }
        }
        json["docker"] = d.json();
    }
    if let Some(why) = why_not {
        md.push_str(&format!(
            "\nDocker 20.10's classic overlay {}: {why}\n",
            if docker.is_some() { "stopped before the end" } else { "was not measured" }
        ));
        json["docker_not_measured"] = serde_json::Value::String(why.to_owned());
    }
    Outcome { markdown: md, json }
}
