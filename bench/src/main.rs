//! `cove-bench`: attach and detach through Cove's API against the in-process netlink floor,
//! interleaved in one run (random order per iteration), reporting medians and ratios.
//!
//! Run it inside a fake host (`scripts/bench.sh` does): it starts its own daemon, so the
//! real host is never touched. Timings live here, never in tests.

mod http;
mod stats;

use anyhow::{bail, Context, Result};
use rand::seq::SliceRandom;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use cove_drivers::plan::{Netns, Op};
use cove_kernel::Kernel;
use cove_model::MacAddr;

use stats::Series;

struct Args {
    cove: PathBuf,
    iterations: usize,
    out: Option<PathBuf>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args { cove: "target/release/cove".into(), iterations: 200, out: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => a.iterations = 10,
            "--iterations" => a.iterations = it.next().context("--iterations N")?.parse()?,
            "--cove" => a.cove = it.next().context("--cove PATH")?.into(),
            "--out" => a.out = Some(it.next().context("--out FILE")?.into()),
            other => bail!(
                "unknown argument {other} (use --quick, --iterations N, --cove PATH, --out FILE)"
            ),
        }
    }
    Ok(a)
}

/// The daemon under test, started in this (fake) host.
struct Daemon {
    child: Child,
    sock: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(cove: &Path, root: &Path) -> Result<Daemon> {
    let sock = root.join("cove.sock");
    let log = std::fs::File::create(root.join("daemon.log"))?;
    let child = Command::new(cove)
        .args(["daemon", "-H", &format!("unix://{}", sock.display())])
        .arg("--data-root")
        .arg(root.join("data"))
        .arg("--exec-root")
        .arg(root.join("run"))
        .args(["--log-level", "warn"])
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", cove.display()))?;
    let d = Daemon { child, sock };
    for _ in 0..200 {
        if http::request(&d.sock, "GET", "/_ping", None).is_ok() {
            return Ok(d);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the daemon did not answer; see {}", root.join("daemon.log").display())
}

fn cli(cove: &Path, d: &Daemon, args: &[&str]) -> Result<String> {
    let out = Command::new(cove)
        .arg("-H")
        .arg(format!("unix://{}", d.sock.display()))
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("cove {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn busybox_tar(dir: &Path) -> Result<PathBuf> {
    let out = dir.join("busybox.tar");
    let status = Command::new("scripts/busybox-image.sh").arg(&out).status()?;
    if !status.success() {
        bail!("scripts/busybox-image.sh failed");
    }
    Ok(out)
}

/// The floor: the same sandbox Cove builds (netns, veth with the peer created inside, address,
/// up, default route), done in-process with netlink, and torn down by unmounting the netns.
struct Floor {
    kernel: Kernel,
    dir: PathBuf,
    n: u32,
}

impl Floor {
    async fn new(dir: &Path) -> Result<Self> {
        let kernel = Kernel::new().await?;
        kernel
            .apply(&[
                Op::CreateBridge {
                    name: "flbr0".into(),
                    mtu: 1500,
                    mac: MacAddr([2, 0x42, 9, 9, 9, 9]),
                },
                Op::AddAddress {
                    netns: Netns::Host,
                    link: "flbr0".into(),
                    addr: "10.250.0.1/16".parse()?,
                },
                Op::SetUp { netns: Netns::Host, link: "flbr0".into() },
            ])
            .await?;
        Ok(Self { kernel, dir: dir.to_path_buf(), n: 0 })
    }

    async fn attach(&mut self) -> Result<PathBuf> {
        self.n += 1;
        let path = self.dir.join(format!("fl{}", self.n));
        let ip =
            std::net::Ipv4Addr::new(10, 250, (self.n / 250) as u8 + 1, (self.n % 250) as u8 + 2);
        self.kernel.create_netns(&path).await?;
        let sb = Netns::Path(path.clone());
        self.kernel
            .apply(&[
                Op::CreateVeth {
                    host_name: format!("fl{:010x}", rand::random::<u64>() & 0xff_ffff_ffff),
                    bridge: "flbr0".into(),
                    mtu: 1500,
                    peer_name: "eth0".into(),
                    peer_netns: path.clone(),
                    peer_mac: MacAddr::from_ipv4(ip),
                },
                Op::AddAddress {
                    netns: sb.clone(),
                    link: "eth0".into(),
                    addr: ipnet::IpNet::new(ip.into(), 16)?,
                },
                Op::SetUp { netns: sb.clone(), link: "eth0".into() },
                Op::AddRoute {
                    netns: sb,
                    dst: "0.0.0.0/0".parse()?,
                    gateway: Some("10.250.0.1".parse()?),
                    link: "eth0".into(),
                },
            ])
            .await?;
        Ok(path)
    }

    async fn detach(&self, path: &Path) -> Result<()> {
        self.kernel.remove_netns(path).await?;
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let root = std::env::temp_dir().join(format!("cove-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let d = start_daemon(&args.cove, &root)?;
    let tar = busybox_tar(&root)?;
    cli(&args.cove, &d, &["image", "import", tar.to_str().context("path")?, "busybox"])?;
    cli(&args.cove, &d, &["network", "create", "--subnet", "10.251.0.0/16", "benchnet"])?;
    // The subject runs on the default bridge; each iteration connects it to benchnet
    // (eth1) and disconnects it again.
    cli(&args.cove, &d, &["run", "-d", "--name", "subject", "busybox", "sleep", "1000000"])?;
    let mut floor = Floor::new(&root.join("floor")).await?;

    let connect = r#"{"Container":"subject"}"#;
    let mut series = [
        Series::new("floor attach"),
        Series::new("cove attach"),
        Series::new("floor detach"),
        Series::new("cove detach"),
    ];
    let mut rng = rand::rng();
    for i in 0..args.iterations + 3 {
        let mut order = [0usize, 1];
        order.shuffle(&mut rng);
        let mut path = None;
        let mut sample = [0f64; 4];
        for which in order {
            let t = Instant::now();
            if which == 0 {
                path = Some(floor.attach().await?);
            } else {
                http::expect(
                    &d.sock,
                    "POST",
                    "/v1.45/networks/benchnet/connect",
                    Some(connect),
                    200,
                )?;
            }
            sample[which] = t.elapsed().as_secs_f64() * 1e3;
        }
        order.shuffle(&mut rng);
        for which in order {
            let t = Instant::now();
            if which == 0 {
                floor.detach(path.as_ref().expect("attached")).await?;
            } else {
                http::expect(
                    &d.sock,
                    "POST",
                    "/v1.45/networks/benchnet/disconnect",
                    Some(connect),
                    200,
                )?;
            }
            sample[2 + which] = t.elapsed().as_secs_f64() * 1e3;
        }
        // The first iterations warm caches; they are not counted.
        if i >= 3 {
            for (s, v) in series.iter_mut().zip(sample) {
                s.push(v);
            }
        }
    }
    cli(&args.cove, &d, &["rm", "-f", "subject"])?;
    cli(&args.cove, &d, &["network", "rm", "benchnet"])?;

    let report =
        stats::report(&series, &[("cove attach", "floor attach"), ("cove detach", "floor detach")]);
    println!("{report}");
    if let Some(out) = &args.out {
        let json = serde_json::json!({
            "iterations": args.iterations,
            "series": series.iter().map(Series::to_json).collect::<Vec<_>>(),
        });
        std::fs::write(out, serde_json::to_string_pretty(&json)?)?;
    }
    drop(d);
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}
