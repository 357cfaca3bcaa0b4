//! The DNS load client and the do-nothing responder of the `dns` bench.

use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::Series;

/// What the floor and the upstream answer every query with.
pub(crate) const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
/// A query unanswered for this long is counted as lost and replaced.
const LOST_AFTER: Duration = Duration::from_secs(1);

/// Runs `f` on a new thread that entered the network namespace at `ns`.
pub(crate) fn in_netns<T: Send>(ns: &Path, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
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

/// A do-nothing DNS responder on its own thread in a namespace (`None`: this thread's): echoes the question and
/// adds one A record ([`ANSWER`]), whatever was asked.
pub(crate) struct Responder {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Responder {
    pub(crate) fn start(ns: Option<&Path>, addr: SocketAddr) -> Result<Self> {
        let sock = match ns {
            Some(ns) => in_netns(ns, || Ok(UdpSocket::bind(addr)?)),
            None => Ok(UdpSocket::bind(addr)?),
        }
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

    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// One measurement.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    /// Answers with NOERROR and the expected address last.
    pub(crate) ok: u64,
    /// Other answers (wrong rcode or address).
    pub(crate) bad: u64,
    /// Queries given up after [`LOST_AFTER`].
    pub(crate) lost: u64,
    seconds: f64,
    /// Latency of the correct answers, ms.
    pub(crate) latency: Series,
}

impl Run {
    pub(crate) fn qps(&self) -> f64 {
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
pub(crate) fn load(
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
