// SPDX-License-Identifier: Apache-2.0
//! Throughput of Cove's tunnel against its floors and its competitor, in one run (measured,
//! never asserted). Ignored by default; run it in release mode:
//!
//! ```text
//! cargo test --release -p cove-tunnel --test bench -- --ignored --nocapture
//! ```
//!
//! iperf3, one TCP stream, `COVE_TUNNEL_BENCH_SECONDS` (default 5) per path, between two
//! host namespaces (or their containers):
//! * the underlay itself (veth - bridge - veth);
//! * plain VXLAN over the underlay (container to container, MTU 1450);
//! * Cove's tunnel (tunnel address to tunnel address, MTU 1420);
//! * VXLAN over Cove's tunnel (container to container, MTU 1370): the encrypted overlay;
//! * wireguard-go to wireguard-go (tunnel address to tunnel address, MTU 1420).
//!
//! CPU is the tunnel's own (Cove's `cvwg-*` threads of both nodes, or both wireguard-go
//! processes) over the run, in cores.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cove_tunnel::PrivateKey;
use support::wggo::{missing_tools, process_cpu, WireguardGo};
use support::*;

struct Row {
    path: &'static str,
    gbits: f64,
    tunnel_cores: Option<f64>,
    iperf_cpu: String,
}

/// An iperf3 server for one test, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn iperf_server(ns: &Path, bind: &str) -> Server {
    let (ns, bind) = (ns.to_owned(), bind.to_string());
    let child = in_netns(&ns, move || {
        Command::new("iperf3")
            .args(["-s", "-1", "-B", &bind, "-p", "5201"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 server")
    });
    std::thread::sleep(Duration::from_millis(300));
    Server(child)
}

/// One iperf3 run from `client_ns` to `server`; Gbit/s received and the CPU line.
fn iperf(client_ns: &Path, server_ns: &Path, server: &str, seconds: u32) -> (f64, String) {
    let _srv = iperf_server(server_ns, server);
    let args = ["iperf3", "-c", server, "-p", "5201", "-t", &seconds.to_string(), "-J"];
    let out = run_in(client_ns, &args);
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 -J");
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0);
    let cpu = &v["end"]["cpu_utilization_percent"];
    let line = format!(
        "client {:.0}% / server {:.0}%",
        cpu["host_total"].as_f64().unwrap_or(0.0),
        cpu["remote_total"].as_f64().unwrap_or(0.0)
    );
    (bps / 1e9, line)
}

#[test]
#[ignore = "a benchmark: cargo test --release -p cove-tunnel --test bench -- --ignored --nocapture"]
fn bench_tunnel_throughput() {
    let seconds: u32 =
        std::env::var("COVE_TUNNEL_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    in_fresh_netns(move |dir| async move {
        let hs = hosts(&dir, 2).await;
        let (h1, h2) = (&hs[0], &hs[1]);
        let keys = [PrivateKey::generate().unwrap(), PrivateKey::generate().unwrap()];
        let t1 = h1.tunnel(&keys[0]);
        let t2 = h2.tunnel(&keys[1]);
        t1.set_peers(&[h2.peer(&keys[1])]).unwrap();
        t2.set_peers(&[h1.peer(&keys[0])]).unwrap();
        for (me, other) in [(h1, h2), (h2, h1)] {
            let peer = (other.container_ip, other.n);
            overlay(me, 42, me.tunnel_ip, other.tunnel_ip, 1370, peer).await;
            overlay(me, 43, me.underlay, other.underlay, 1450, peer).await;
        }
        let mut rows = Vec::new();
        let mut run = |path: &'static str,
                       from: &Path,
                       to_ns: &Path,
                       to: String,
                       cpu: &dyn Fn() -> Option<Duration>| {
            let (c0, t0) = (cpu(), Instant::now());
            let (gbits, iperf_cpu) = iperf(from, to_ns, &to, seconds);
            let tunnel_cores =
                cpu().zip(c0).map(|(c1, c0)| (c1 - c0).as_secs_f64() / t0.elapsed().as_secs_f64());
            rows.push(Row { path, gbits, tunnel_cores, iperf_cpu });
        };
        let none = || None;
        let cove = || Some(threads_cpu("cvwg-"));
        run("underlay (veth-bridge-veth)", &h1.ns, &h2.ns, h2.underlay.to_string(), &none);
        let c = container_ip_str(h2);
        run("VXLAN, plain", &container(h1, 43), &container(h2, 43), c.clone(), &none);
        run("Cove tunnel", &h1.ns, &h2.ns, h2.tunnel_ip.to_string(), &cove);
        run("VXLAN over Cove tunnel", &container(h1, 42), &container(h2, 42), c, &cove);

        match missing_tools() {
            Some(why) => println!("wireguard-go not measured: {why}"),
            None => {
                let wg: Vec<WireguardGo> = [(h1, "wgo1"), (h2, "wgo2")]
                    .iter()
                    .map(|(h, name)| WireguardGo::start(&h.ns, name))
                    .collect();
                let wkeys = [PrivateKey::generate().unwrap(), PrivateKey::generate().unwrap()];
                for (i, (h, name)) in [(h1, "wgo1"), (h2, "wgo2")].into_iter().enumerate() {
                    let key_file = dir.join(format!("{name}.key"));
                    wkeys[i].save(&key_file).unwrap();
                    let other = &hs[1 - i];
                    let peer = wkeys[1 - i].public_key().to_base64();
                    let endpoint = format!("{}:51821", other.underlay);
                    let allowed = format!("10.254.0.{}/32", other.n);
                    run_in(
                        &h.ns,
                        &[
                            "wg",
                            "set",
                            name,
                            "private-key",
                            &path(&key_file),
                            "listen-port",
                            "51821",
                            "peer",
                            &peer,
                            "endpoint",
                            &endpoint,
                            "allowed-ips",
                            &allowed,
                        ],
                    );
                    sh(
                        &h.ns,
                        &format!(
                            "ip addr add 10.254.0.{}/16 dev {name}\nip link set {name} mtu 1420 up",
                            h.n
                        ),
                    );
                }
                let pids: Vec<u32> = wg.iter().map(|w| w.pid()).collect();
                let wg_cpu = || Some(pids.iter().map(|p| process_cpu(*p)).sum());
                // Warm up: the first handshake.
                let _ = try_run_in(&h1.ns, &["iperf3", "-c", "10.254.0.2", "-t", "1"]);
                run("wireguard-go <-> wireguard-go", &h1.ns, &h2.ns, "10.254.0.2".into(), &wg_cpu);
                drop(wg);
            }
        }

        println!("\ntunnel throughput, one TCP stream, {seconds} s per path (iperf3):");
        println!("{:<32} {:>8} {:>14}  iperf3 CPU", "path", "Gbit/s", "tunnel cores");
        for r in &rows {
            let cores = r.tunnel_cores.map_or("-".into(), |c| format!("{c:.2}"));
            println!("{:<32} {:>8.2} {:>14}  {}", r.path, r.gbits, cores, r.iperf_cpu);
        }
        let s = t1.stats();
        println!("\nh1 tunnel drops: {:?}", s.drops);
    });
}

fn container_ip_str(h: &Host) -> String {
    h.container_ip.to_string()
}
