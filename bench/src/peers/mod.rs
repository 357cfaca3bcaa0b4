//! Today's systems on the operations Cove is measured on: Docker (a private dockerd,
//! through its API and its CLI), netavark and the CNI reference plugins (called the way
//! podman and a CNI runtime call them: one process per operation, JSON on stdin), each
//! only when Debian's package is installed.
//!
//! A peer is measured in a phase of its own: the fake host is filled with N of its
//! containers (one published port each, spread over [`NETWORKS`] networks, as Cove's fill
//! is), then every iteration runs the peer's operations and the kernel floor's in random
//! order, so each peer has a floor measured under the same load. netavark and CNI
//! containers are network namespaces with no process in them: those tools network a
//! sandbox and nothing more.

pub(crate) mod cni;
pub(crate) mod docker;
pub(crate) mod netavark;

use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::floor::{Floor, NftFloor};
use crate::stats::{ms, Series};

/// Networks the filling containers are spread over (as in Cove's fill).
pub(crate) const NETWORKS: usize = 20;
/// Host ports of the peers' filling containers and probes (below the ephemeral range; the
/// peers run one after another, never beside Cove's fill).
pub(crate) const FILL_PORT: u16 = 14000;
pub(crate) const PROBE_PORT: u16 = 24000;
/// The floor's element ports in the peers' phases.
const FLOOR_PORT: u16 = 32000;
const WARMUP: usize = 2;

/// The operations compared across systems. A peer measures those it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// A running container (or a sandbox) joins a network, no published port.
    Attach,
    /// It leaves the network again.
    Detach,
    /// The networking part of starting a container with one published port: the whole
    /// setup for netavark and CNI; `start` of a `-p` container minus `start` of a
    /// `--network none` one, paired, for Docker; for Cove, from the start request to the
    /// commit of its firewall transaction (everything before the runtime's part).
    AttachPort,
    /// That container leaves its network, its port unpublished: `network disconnect`
    /// (Cove, Docker), teardown (netavark, CNI).
    DetachPort,
    NetworkCreate,
    NetworkRm,
    /// `network connect` / `disconnect` through the CLI (process start included).
    CliAttach,
    CliDetach,
}

impl Op {
    pub(crate) const ALL: [Op; 8] = [
        Op::Attach,
        Op::Detach,
        Op::AttachPort,
        Op::DetachPort,
        Op::NetworkCreate,
        Op::NetworkRm,
        Op::CliAttach,
        Op::CliDetach,
    ];

    /// What the operation is, for every system's row.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Op::Attach => "attach (network connect of a running container)",
            Op::Detach => "detach (network disconnect)",
            Op::AttachPort => "attach with one published port (networking part of a start)",
            Op::DetachPort => "detach with one published port",
            Op::NetworkCreate => "network create",
            Op::NetworkRm => "network rm",
            Op::CliAttach => "attach through the CLI",
            Op::CliDetach => "detach through the CLI",
        }
    }

    /// The floor series the operation is compared to (none: an absolute target).
    pub(crate) fn floor(self) -> Option<Floors> {
        match self {
            Op::Attach | Op::CliAttach => Some(Floors::Attach),
            Op::Detach | Op::CliDetach => Some(Floors::Detach),
            Op::AttachPort => Some(Floors::AttachPort),
            Op::DetachPort => Some(Floors::DetachPort),
            Op::NetworkCreate | Op::NetworkRm => None,
        }
    }

    pub(crate) fn key(self) -> &'static str {
        match self {
            Op::Attach => "attach",
            Op::Detach => "detach",
            Op::AttachPort => "attach_port",
            Op::DetachPort => "detach_port",
            Op::NetworkCreate => "network_create",
            Op::NetworkRm => "network_rm",
            Op::CliAttach => "cli_attach",
            Op::CliDetach => "cli_detach",
        }
    }
}

/// The floor's operations (see [`crate::floor`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Floors {
    /// A netlink sandbox: netns, veth, address, route.
    Attach,
    /// Its netns unmounted (the veth goes with it).
    Detach,
    /// The sandbox and one DNAT map element.
    AttachPort,
    /// The sandbox's netns unmounted and the element deleted.
    DetachPort,
}

impl Floors {
    pub(crate) fn title(self) -> &'static str {
        match self {
            Floors::Attach => "floor attach (netlink sandbox)",
            Floors::Detach => "floor detach (netns unmount)",
            Floors::AttachPort => "floor attach + port element",
            Floors::DetachPort => "floor detach + element delete",
        }
    }
}

/// A system under comparison.
pub(crate) trait Peer {
    /// Its name in tables ("docker", "netavark", "cni").
    fn name(&self) -> &'static str;
    /// Creates its networks, if it has any to create before its first container.
    async fn prepare(&mut self) -> Result<()> {
        Ok(())
    }
    /// Fills the host up to `to` containers (from `from`), each with a published port.
    async fn fill(&mut self, from: usize, to: usize) -> Result<()>;
    /// One iteration of its operations (probe number `probe`, unique in the run).
    async fn iteration(&mut self, probe: usize) -> Result<Vec<(Op, f64)>>;
    /// Removes everything it made. Best effort; the first error is returned.
    async fn clean(&mut self) -> Result<()>;
}

/// One measured point of one system: N of its containers on the host.
pub(crate) struct Point {
    pub(crate) containers: usize,
    pub(crate) fill_seconds: f64,
    pub(crate) ops: Vec<(Op, Series)>,
    pub(crate) floor: Vec<(Floors, Series)>,
}

impl Point {
    pub(crate) fn new(containers: usize, fill_seconds: f64) -> Self {
        Self { containers, fill_seconds, ops: vec![], floor: vec![] }
    }

    pub(crate) fn push_op(&mut self, op: Op, v: f64) {
        push(&mut self.ops, op, op.title(), v);
    }

    pub(crate) fn push_floor(&mut self, f: Floors, v: f64) {
        push(&mut self.floor, f, f.title(), v);
    }

    pub(crate) fn op(&self, op: Op) -> Option<&Series> {
        self.ops.iter().find(|(o, _)| *o == op).map(|(_, s)| s)
    }

    pub(crate) fn floor(&self, f: Floors) -> Option<&Series> {
        self.floor.iter().find(|(o, _)| *o == f).map(|(_, s)| s)
    }

    pub(crate) fn to_json(&self) -> serde_json::Value {
        let series = |name: &str, key: &str, s: &Series| serde_json::json!({ "op": key, "name": name, "samples_ms": s.samples() });
        serde_json::json!({
            "containers": self.containers,
            "fill_seconds": self.fill_seconds,
            "ops": self.ops.iter().map(|(o, s)| series(o.title(), o.key(), s)).collect::<Vec<_>>(),
            "floor": self.floor.iter().map(|(f, s)| series(f.title(), &format!("{f:?}"), s)).collect::<Vec<_>>(),
        })
    }
}

/// Appends `v` to the series of `key`, which is created (named `title`) on first use.
fn push<K: PartialEq>(series: &mut Vec<(K, Series)>, key: K, title: &str, v: f64) {
    match series.iter_mut().find(|(k, _)| *k == key) {
        Some((_, s)) => s.push(v),
        None => {
            let mut s = Series::new(title);
            s.push(v);
            series.push((key, s));
        }
    }
}

/// Measures `peer` at each of `counts` containers, `iterations` times each, interleaved
/// with the floor. Whatever happens, the peer is cleaned up.
pub(crate) async fn measure<P: Peer>(
    peer: &mut P,
    dir: &Path,
    counts: &[usize],
    iterations: usize,
) -> Result<Vec<Point>> {
    let result = measure_inner(peer, dir, counts, iterations).await;
    let cleaned = peer.clean().await;
    let points = result?;
    cleaned.with_context(|| format!("clean up {}", peer.name()))?;
    Ok(points)
}

async fn measure_inner<P: Peer>(
    peer: &mut P,
    dir: &Path,
    counts: &[usize],
    iterations: usize,
) -> Result<Vec<Point>> {
    peer.prepare().await?;
    let mut floor = Floor::new(&dir.join("floor")).await?;
    let mut nft = NftFloor::create().await?;
    let result = async {
        let mut have = 0;
        let mut probe = 0;
        let mut points = vec![];
        let mut rng = rand::rng();
        for &n in counts {
            let t = Instant::now();
            peer.fill(have, n).await?;
            have = have.max(n);
            let mut point = Point::new(n, t.elapsed().as_secs_f64());
            eprintln!(
                "{}: {n} containers (filled in {:.1} s); measuring",
                peer.name(),
                point.fill_seconds
            );
            for i in 0..iterations + WARMUP {
                probe += 1;
                let mut first_floor = [false, true];
                first_floor.shuffle(&mut rng);
                let mut ops = vec![];
                let mut floors = vec![];
                for floor_now in first_floor {
                    if floor_now {
                        floors = floor_iteration(&mut floor, &mut nft, probe).await?;
                    } else {
                        ops = peer.iteration(probe).await?;
                    }
                }
                if i >= WARMUP {
                    ops.into_iter().for_each(|(o, v)| point.push_op(o, v));
                    floors.into_iter().for_each(|(f, v)| point.push_floor(f, v));
                }
            }
            points.push(point);
        }
        Ok::<_, anyhow::Error>(points)
    }
    .await;
    let _ = nft.remove().await;
    floor.remove().await;
    result
}

/// The floor's four operations, one after the other: a sandbox made and unmounted, then
/// one with a port element, removed with it.
async fn floor_iteration(
    floor: &mut Floor,
    nft: &mut NftFloor,
    probe: usize,
) -> Result<Vec<(Floors, f64)>> {
    let port = FLOOR_PORT + (probe % 512) as u16;
    let t = Instant::now();
    let (path, _) = floor.attach().await?;
    let attach = ms(t);
    let t = Instant::now();
    floor.detach(&path).await?;
    let detach = ms(t);
    let t = Instant::now();
    let (path, ip) = floor.attach().await?;
    nft.add(port, ip).await?;
    let attach_port = ms(t);
    let t = Instant::now();
    floor.detach(&path).await?;
    nft.delete(port, ip).await?;
    let detach_port = ms(t);
    Ok(vec![
        (Floors::Attach, attach),
        (Floors::Detach, detach),
        (Floors::AttachPort, attach_port),
        (Floors::DetachPort, detach_port),
    ])
}

/// A tool run with `stdin` as its input and `env`; returns (milliseconds, stdout).
/// Process start is part of the time: it is how podman and CNI runtimes call them.
pub(crate) fn exec_timed(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> Result<(f64, String)> {
    use std::io::Write;
    let t = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {}", program.display()))?;
    child.stdin.take().context("stdin")?.write_all(stdin.as_bytes())?;
    let out = child.wait_with_output()?;
    let ms = ms(t);
    if !out.status.success() {
        anyhow::bail!(
            "{} {}: {}{}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    Ok((ms, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Network namespaces for the process-less peers (netavark, CNI): bind mounts under the
/// bench's directory, made and removed over netlink, never in `/run/netns`.
pub(crate) struct Sandboxes {
    kernel: cove_kernel::Kernel,
    dir: PathBuf,
}

impl Sandboxes {
    pub(crate) async fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self { kernel: cove_kernel::Kernel::new().await?, dir: dir.to_path_buf() })
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub(crate) async fn create(&self, name: &str) -> Result<PathBuf> {
        let p = self.path(name);
        self.kernel.create_netns(&p).await?;
        Ok(p)
    }

    pub(crate) async fn remove(&self, name: &str) -> Result<()> {
        self.kernel.remove_netns(&self.path(name)).await?;
        Ok(())
    }

    /// Removes every namespace left (after an error) and the directory.
    pub(crate) async fn remove_all(&self) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let _ = self.kernel.remove_netns(&e.path()).await;
            }
        }
        crate::daemon::unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The address of container `i` (network `i % NETWORKS`) in `10.<base + network>.0.0/16`;
/// probes use indexes from 10,000 up, past any fill (at most 64,000 per network).
pub(crate) fn address(base: u8, i: usize) -> (usize, std::net::Ipv4Addr) {
    let k = i % NETWORKS;
    let j = i / NETWORKS;
    (k, std::net::Ipv4Addr::new(10, base + k as u8, (j / 250) as u8, (j % 250) as u8 + 2))
}

/// Deletes the bridges named by `names` that exist (peers that leave them behind).
pub(crate) fn delete_links(names: impl IntoIterator<Item = String>) {
    for n in names {
        let _ = Command::new("ip").args(["link", "del", &n]).stderr(Stdio::null()).status();
    }
}
