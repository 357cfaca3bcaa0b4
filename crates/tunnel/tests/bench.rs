// SPDX-License-Identifier: Apache-2.0
//! Throughput of Cove's tunnel against its floors and its competitor, in one run (measured,
//! never asserted). Ignored by default; run it in release mode:
//!
//! ```text
//! cargo test --release -p cove-tunnel --test bench -- --ignored --nocapture
//! ```
//!
//! iperf3, one TCP stream, `COVE_TUNNEL_BENCH_SECONDS` (default 5) per path (only the paths
//! whose name contains `COVE_TUNNEL_BENCH_ONLY`, when set, e.g. to profile one; with
//! `COVE_TUNNEL_BENCH_DROPS` set, the loss counters after the encrypted overlay's run),
//! between two host namespaces (or their containers):
//! * the underlay itself (veth - bridge - veth);
//! * plain VXLAN over the underlay (container to container, MTU 1450);
//! * Cove's tunnel (tunnel address to tunnel address, MTU 1420);
//! * VXLAN over Cove's tunnel (container to container, MTU 1370): the encrypted overlay;
//! * the same two again with Cove's tunnels started without TUN offloads;
//! * wireguard-go to wireguard-go (tunnel address to tunnel address, MTU 1420).
//!
//! CPU is the tunnel's own (Cove's `cvwg-*` threads of both nodes, or both wireguard-go
//! processes) over the run, in cores. For Cove, "pkts/read" is inner packets per `read` of
//! the sender's TUN device and "pkts/write" per `write` of the receiver's: 1.0 without
//! offloads, up to ~45 with them. Ratios against plain VXLAN and wireguard-go are printed
//! from the same run: the machine is shared, so only they compare across runs.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cove_tunnel::{PrivateKey, Tunnel};
use support::wggo::{missing_tools, process_cpu, WireguardGo};
use support::*;

struct Row {
    path: &'static str,
    gbits: f64,
    tunnel_cores: Option<f64>,
    iperf_cpu: String,
    /// Inner packets per TUN read (sender) and per TUN write (receiver).
    per_call: Option<(f64, f64)>,
}

/// (packets read, reads) of the sender and (packets written, writes) of the receiver.
type Calls = (u64, u64, u64, u64);

fn calls(tx: &Tunnel, rx: &Tunnel) -> Calls {
    let (a, b) = (tx.stats(), rx.stats());
    (a.tun_reads, a.tun_read_calls, b.tun_writes, b.tun_write_calls)
}

fn per_call(before: Calls, after: Calls) -> (f64, f64) {
    let r = |n: u64, d: u64| n as f64 / d.max(1) as f64;
    (r(after.0 - before.0, after.1 - before.1), r(after.2 - before.2, after.3 - before.3))
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

/// One iperf3 run from `client_ns` to `server`; Gbit/s received and a line of CPU use and
/// TCP retransmissions.
fn iperf(client_ns: &Path, server_ns: &Path, server: &str, seconds: u32) -> (f64, String) {
    let _srv = iperf_server(server_ns, server);
    let args = ["iperf3", "-c", server, "-p", "5201", "-t", &seconds.to_string(), "-J"];
    let out = run_in(client_ns, &args);
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 -J");
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0);
    let cpu = &v["end"]["cpu_utilization_percent"];
    let sender = &v["end"]["streams"][0]["sender"];
    let line = format!(
        "client {:.0}% / server {:.0}%, {} retransmits, RTT {:.1} ms, cwnd {} KiB",
        cpu["host_total"].as_f64().unwrap_or(0.0),
        cpu["remote_total"].as_f64().unwrap_or(0.0),
        v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
        sender["mean_rtt"].as_f64().unwrap_or(0.0) / 1000.0,
        sender["max_snd_cwnd"].as_u64().unwrap_or(0) / 1024,
    );
    (bps / 1e9, line)
}

#[test]
#[ignore = "a benchmark: cargo test --release -p cove-tunnel --test bench -- --ignored --nocapture"]
fn bench_tunnel_throughput() {
    let seconds: u32 =
        std::env::var("COVE_TUNNEL_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let only = std::env::var("COVE_TUNNEL_BENCH_ONLY").ok();
    in_fresh_netns(move |dir| async move {
        let hs = hosts(&dir, 2).await;
        let (h1, h2) = (&hs[0], &hs[1]);
        let keys = [PrivateKey::generate().unwrap(), PrivateKey::generate().unwrap()];
        let peer_up = |t1: &Tunnel, t2: &Tunnel| {
            t1.set_peers(&[h2.peer(&keys[1])]).unwrap();
            t2.set_peers(&[h1.peer(&keys[0])]).unwrap();
        };
        let (t1, t2) = (h1.tunnel(&keys[0]), h2.tunnel(&keys[1]));
        peer_up(&t1, &t2);
        println!("offloads: {:?}", t1.offloads());
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
                       cpu: &dyn Fn() -> Option<Duration>,
                       tunnels: Option<(&Tunnel, &Tunnel)>| {
            if only.as_deref().is_some_and(|o| !path.contains(o)) {
                return;
            }
            let (c0, t0) = (cpu(), Instant::now());
            let k0 = tunnels.map(|(a, b)| calls(a, b));
            let (gbits, iperf_cpu) = iperf(from, to_ns, &to, seconds);
            let tunnel_cores =
                cpu().zip(c0).map(|(c1, c0)| (c1 - c0).as_secs_f64() / t0.elapsed().as_secs_f64());
            let per_call = tunnels.zip(k0).map(|((a, b), k0)| per_call(k0, calls(a, b)));
            rows.push(Row { path, gbits, tunnel_cores, iperf_cpu, per_call });
        };
        let none = || None;
        let cove = || Some(threads_cpu("cvwg-"));
        let c = container_ip_str(h2);
        let (c1, c2) = (container(h1, 42), container(h2, 42));
        run("underlay (veth-bridge-veth)", &h1.ns, &h2.ns, h2.underlay.to_string(), &none, None);
        run("VXLAN, plain", &container(h1, 43), &container(h2, 43), c.clone(), &none, None);
        let tunnel_ip = h2.tunnel_ip.to_string();
        let pair = Some((&t1, &t2));
        run("Cove tunnel", &h1.ns, &h2.ns, tunnel_ip.clone(), &cove, pair);
        run("VXLAN over Cove tunnel", &c1, &c2, c.clone(), &cove, pair);
        if std::env::var("COVE_TUNNEL_BENCH_DROPS").is_ok() {
            print_drops(&[h1, h2], &c2);
        }
        // The same without offloads: new devices, the VXLAN devices find their local
        // address again on them.
        drop((t1, t2));
        let start = |h: &Host, k: &PrivateKey| {
            Tunnel::start_without_offloads(h.tunnel_config(k)).expect("start without offloads")
        };
        let (t1, t2) = (start(h1, &keys[0]), start(h2, &keys[1]));
        peer_up(&t1, &t2);
        let pair = Some((&t1, &t2));
        run("Cove tunnel, no offloads", &h1.ns, &h2.ns, tunnel_ip, &cove, pair);
        run("VXLAN over Cove, no offloads", &c1, &c2, c, &cove, pair);

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
                let to = "10.254.0.2".to_string();
                run("wireguard-go <-> wireguard-go", &h1.ns, &h2.ns, to, &wg_cpu, None);
                drop(wg);
            }
        }

        println!("\ntunnel throughput, one TCP stream, {seconds} s per path (iperf3):");
        println!(
            "{:<30} {:>7} {:>7} {:>7} {:>6} {:>10} {:>11}  iperf3 CPU",
            "path", "Gbit/s", "xVXLAN", "xwg-go", "cores", "pkts/read", "pkts/write"
        );
        let find = |p: &str| rows.iter().find(|r| r.path == p).map(|r| r.gbits);
        let (plain, wg) = (find("VXLAN, plain"), find("wireguard-go <-> wireguard-go"));
        for r in &rows {
            let ratio =
                |base: Option<f64>| base.map_or("-".into(), |b| format!("{:.2}", r.gbits / b));
            let cores = r.tunnel_cores.map_or("-".into(), |c| format!("{c:.2}"));
            let (pr, pw) = r
                .per_call
                .map_or(("-".into(), "-".into()), |(a, b)| (format!("{a:.1}"), format!("{b:.1}")));
            println!(
                "{:<30} {:>7.2} {:>7} {:>7} {:>6} {:>10} {:>11}  {}",
                r.path,
                r.gbits,
                ratio(plain),
                ratio(wg),
                cores,
                pr,
                pw,
                r.iperf_cpu
            );
        }
        let s = t1.stats();
        println!("\nh1 tunnel drops: {:?}", s.drops);
    });
}

fn container_ip_str(h: &Host) -> String {
    h.container_ip.to_string()
}

/// Where packets were lost on the encrypted overlay: UDP receive buffer overflows and link
/// drops on both hosts, IP and TCP counters of the receiving container.
fn print_drops(hosts: &[&Host], receiver: &Path) {
    let sh_out = |ns: &Path, script: &str| run_in(ns, &["sh", "-c", script]);
    for h in hosts {
        let udp = "grep -E '^Udp:' /proc/net/snmp; ip -s link show cvwg0; ip -s link show ul0";
        println!("h{}: {}", h.n, sh_out(&h.ns, udp));
    }
    let tcp = "grep -E '^(Tcp|Ip):' /proc/net/snmp; ip -s link show eth0";
    println!("receiving container: {}", sh_out(receiver, tcp));
}
