//! Overlay networks across two fake hosts (a netlab: underlay switch, etcd, two daemons),
//! each figure against its floor in the same run:
//!
//! * throughput: one iperf3 TCP stream container → container across the VXLAN tunnel,
//!   against a raw VXLAN pair between the same two host namespaces (the kernel's tunnel
//!   with nothing of Cove's on the path) and against the underlay it rides on;
//! * attach: `POST /networks/{id}/connect` + `disconnect` of a running container on an
//!   overlay network, against the same on a bridge network, interleaved;
//! * convergence: from the request that creates a server on h2 to the first TCP
//!   connection a client on h1 completes to it, and to the first answer for its name
//!   from h1's embedded resolver (runc included: what a user waits for).
//!
//! iperf3 runs from the fake hosts in the containers' namespaces (`nsenter --net`), as in
//! the throughput bench.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cove_testkit::{Etcd, FakeHost, Netlab};

use crate::stats::{ms, Series};

/// What the overlay bench measures.
pub(crate) struct Options {
    /// Throughput repetitions (each floor + overlay).
    pub(crate) reps: usize,
    /// Seconds per iperf3 run.
    pub(crate) seconds: u32,
    /// Attach/detach iterations per network kind.
    pub(crate) iterations: usize,
}

/// The bench's result.
pub(crate) struct Outcome {
    pub(crate) markdown: String,
    pub(crate) json: serde_json::Value,
}

const FLAGS: [&str; 4] =
    ["--cluster-store", "etcd://203.0.113.2:2379", "--cluster-advertise", "{addr}"];

fn inspect(h: &FakeHost, name: &str, format: &str) -> String {
    h.cove(&["inspect", "-f", format, name]).ok().stdout.trim().to_string()
}

fn ip_of(h: &FakeHost, name: &str) -> String {
    inspect(h, name, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
}

/// One iperf3 run from `client` (a shell prefix: which namespace) to `addr`; Gbit/s.
fn iperf(client: &FakeHost, prefix: &str, addr: &str, port: u16, seconds: u32) -> Result<f64> {
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

/// Start an iperf3 server (daemonized) on `port` in `prefix`'s namespace of `host`.
fn iperf_server(host: &FakeHost, prefix: &str, port: u16) {
    host.sh_ok(&format!("{prefix} iperf3 -s -p {port} -D"));
}

pub(crate) fn run(cove: &Path, o: &Options) -> Result<Outcome> {
    let mut lab = Netlab::with_hosts("bench_overlay", cove, 2);
    let _etcd = Etcd::start_in("bench_overlay", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
    lab.start_daemons(&["h1", "h2"], &FLAGS);
    for h in ["h1", "h2"] {
        lab.host(h).import_busybox("bb");
    }
    let (h1, h2) = (lab.host("h1"), lab.host("h2"));
    h1.cove(&["network", "create", "-d", "overlay", "--subnet", "10.0.9.0/24", "ov"]).ok();
    h1.cove(&["network", "create", "--subnet", "10.0.8.0/24", "br"]).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !h2.cove(&["network", "ls"]).stdout.contains(" ov ") {
        if Instant::now() > deadline {
            bail!("h2 never saw the overlay network");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for (h, name) in [(h1, "c1"), (h2, "c2")] {
        h.cove(&["run", "-d", "--network", "ov", "--name", name, "bb", "sleep", "100000"]).ok();
    }
    let sb = |h: &FakeHost, n: &str| {
        format!("nsenter --net={}", inspect(h, n, "{{.NetworkSettings.SandboxKey}}"))
    };
    let (sb1, sb2) = (sb(h1, "c1"), sb(h2, "c2"));
    let c2_ip = ip_of(h2, "c2");

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

    // Throughput: floors and overlay interleaved.
    let mut underlay = Series::new("host → host over the underlay");
    let mut raw = Series::new("host → host over a raw VXLAN pair (floor)");
    let mut overlay = Series::new("container → container across the overlay");
    iperf_server(h2, "", 5301);
    iperf_server(h2, &sb2, 5302);
    for _ in 0..o.reps {
        underlay.push(iperf(h1, "", "203.0.113.12", 5301, o.seconds)?);
        raw.push(iperf(h1, "", "10.199.0.2", 5301, o.seconds)?);
        overlay.push(iperf(h1, &sb1, &c2_ip, 5302, o.seconds)?);
    }
    h2.sh("pkill -f 'iperf3 -s -p 530' || true");
    for h in [h1, h2] {
        h.sh("ip link del vxbench");
    }

    // Attach and detach on an overlay and on a bridge network, interleaved.
    h1.cove(&["run", "-d", "--name", "att", "bb", "sleep", "100000"]).ok();
    let body = r#"{"Container":"att"}"#;
    let mut times = [
        Series::new("attach, bridge"),
        Series::new("attach, overlay"),
        Series::new("detach, bridge"),
        Series::new("detach, overlay"),
    ];
    for _ in 0..o.iterations {
        for (k, net) in [(0, "br"), (1, "ov")] {
            let t = Instant::now();
            let (code, out) = h1.api("POST", &format!("/networks/{net}/connect"), Some(body));
            if code != 200 {
                bail!("connect to {net}: {code} {out}");
            }
            times[k].push(ms(t));
            let t = Instant::now();
            let (code, out) = h1.api("POST", &format!("/networks/{net}/disconnect"), Some(body));
            if code != 200 {
                bail!("disconnect from {net}: {code} {out}");
            }
            times[k + 2].push(ms(t));
        }
    }

    // From `run` on h2 to the first connection from h1, and to its name resolving there.
    let mut reach = Series::new("run on h2 → reachable from h1");
    let mut named = Series::new("run on h2 → its name resolves on h1");
    for i in 0..o.reps.max(3) * 4 {
        let name = format!("srv{i}");
        let t = Instant::now();
        h2.cove(&[
            "run",
            "-d",
            "--network",
            "ov",
            "--name",
            &name,
            "bb",
            "sh",
            "-c",
            "while true; do echo up | nc -l -p 8080; done",
        ])
        .ok();
        let ip = ip_of(h2, &name);
        let probe = format!("{sb1} busybox timeout 1 busybox nc {ip} 8080 </dev/null");
        let lookup = format!("{sb1} busybox timeout 1 busybox nslookup {name} 127.0.0.11");
        let (mut reached, mut resolved) = (false, false);
        while !(reached && resolved) {
            if !reached && h1.sh(&probe).status.success() {
                reach.push(ms(t));
                reached = true;
            }
            if !resolved && h1.sh(&lookup).status.success() {
                named.push(ms(t));
                resolved = true;
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("{name} on h2: reachable {reached}, resolvable {resolved} after 10 s");
            }
        }
        h2.cove(&["rm", "-f", &name]).ok();
    }

    let ratio = overlay.median() / raw.median();
    let ratio_underlay = overlay.median() / underlay.median();
    let attach_ratio = times[1].median() / times[0].median();
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
    row(&mut md, &underlay, "Gbit/s");
    row(&mut md, &raw, "Gbit/s");
    row(&mut md, &overlay, "Gbit/s");
    for s in &times {
        row(&mut md, s, "ms");
    }
    row(&mut md, &reach, "ms");
    row(&mut md, &named, "ms");
    md.push_str(&format!(
        "\nOverlay throughput is {ratio:.2}x a raw VXLAN pair's and {ratio_underlay:.2}x the \
         underlay's in this run; an overlay attach takes {attach_ratio:.2}x a bridge attach.\n"
    ));
    let json = serde_json::json!({
        "throughput_underlay_gbps": underlay.to_json(),
        "throughput_raw_vxlan_gbps": raw.to_json(),
        "throughput_overlay_gbps": overlay.to_json(),
        "throughput_ratio_raw_vxlan": ratio,
        "throughput_ratio_underlay": ratio_underlay,
        "attach_bridge_ms": times[0].to_json(),
        "attach_overlay_ms": times[1].to_json(),
        "detach_bridge_ms": times[2].to_json(),
        "detach_overlay_ms": times[3].to_json(),
        "attach_ratio": attach_ratio,
        "run_to_reachable_ms": reach.to_json(),
        "run_to_resolvable_ms": named.to_json(),
    });
    Ok(Outcome { markdown: md, json })
}
