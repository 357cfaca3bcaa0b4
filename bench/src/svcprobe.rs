//! The services bench's probes: small TCP programs that `cove-bench` runs as itself
//! (hidden subcommands, `cove-bench __serve|__connect|__watch`) inside a container's
//! network namespace (`nsenter --net=<sandbox>` from the fake host), so that what is timed
//! is the network path and not a fork per connection:
//!
//! * `__serve PORT`: accept, write `ok\n`, close; one connection at a time.
//! * `__connect ADDR[,ADDR...] PORT COUNT`: COUNT sequential connections (connect, read
//!   to EOF, close), to the addresses in turn; prints JSON: elapsed ms, errors, and each
//!   connection's latency in µs.
//! * `__watch ADDR PORT PACE_MS`: forever, one HTTP/1.0 `GET /` per PACE_MS (the tasks'
//!   busybox httpd serves its task's name), printing `<ms since start> <body>` or
//!   `<ms> -<error>` per attempt, flushed; [`Watch`] reads it line by line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cove_testkit::FakeHost;

/// Runs a hidden probe subcommand if `args` (after the program name) names one.
pub(crate) fn dispatch(args: &[String]) -> Option<Result<()>> {
    let (cmd, rest) = args.split_first()?;
    let addr = |i: usize| -> Result<SocketAddr> {
        let ip = rest.get(i).context("ADDR")?;
        let port = rest.get(i + 1).context("PORT")?;
        format!("{ip}:{port}").parse().context("ADDR PORT")
    };
    let num = |i: usize| -> Result<u64> { rest.get(i).context("N")?.parse().context("N") };
    Some(match cmd.as_str() {
        "__serve" => rest.first().context("PORT").and_then(|p| serve(p.parse()?)),
        "__connect" => (|| {
            let port = rest.get(1).context("PORT")?;
            let to = rest
                .first()
                .context("ADDR")?
                .split(',')
                .map(|ip| format!("{ip}:{port}").parse::<SocketAddr>().context("ADDR PORT"));
            connect(&to.collect::<Result<Vec<_>>>()?, num(2)?)
        })(),
        "__watch" => addr(0).and_then(|a| watch(a, num(2)?)),
        _ => return None,
    })
}

fn serve(port: u16) -> Result<()> {
    let l = TcpListener::bind(("0.0.0.0", port)).with_context(|| format!("bind :{port}"))?;
    for mut s in l.incoming().flatten() {
        let _ = s.write_all(b"ok\n");
    }
    Ok(())
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn connect(to: &[SocketAddr], count: u64) -> Result<()> {
    let mut lat = Vec::with_capacity(count as usize);
    let mut errors = 0u64;
    let mut buf = [0u8; 16];
    let start = Instant::now();
    for i in 0..count as usize {
        let t = Instant::now();
        let ok =
            TcpStream::connect_timeout(&to[i % to.len()], CONNECT_TIMEOUT).and_then(|mut s| {
                s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                let mut n = 0;
                while let Ok(k @ 1..) = s.read(&mut buf) {
                    n += k;
                }
                Ok(n)
            });
        match ok {
            Ok(3) => lat.push(t.elapsed().as_micros() as u64),
            _ => errors += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64() * 1e3;
    println!("{}", serde_json::json!({ "elapsed_ms": elapsed, "errors": errors, "lat_us": lat }));
    Ok(())
}

/// One HTTP/1.0 GET to `to`: the body, trimmed.
fn get(to: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let text = String::from_utf8_lossy(&out);
    match text.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.trim().to_owned()),
        None => Err(std::io::Error::other("no HTTP body")),
    }
}

fn watch(to: SocketAddr, pace_ms: u64) -> Result<()> {
    let start = Instant::now();
    let out = std::io::stdout();
    let mut next = Instant::now();
    loop {
        let answer = match get(to) {
            Ok(body) if !body.is_empty() && !body.contains(' ') => body,
            Ok(_) => "-badbody".to_owned(),
            Err(e) => format!("-{:?}", e.kind()),
        };
        let line = format!("{:.1} {answer}\n", start.elapsed().as_secs_f64() * 1e3);
        if out.lock().write_all(line.as_bytes()).and_then(|()| out.lock().flush()).is_err() {
            return Ok(());
        }
        next += Duration::from_millis(pace_ms);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        } else {
            next = Instant::now();
        }
    }
}

/// `nsenter --net=<sandbox> cove-bench <args>` run in fake host `h` (a command to spawn).
fn in_sandbox(h: &FakeHost, sandbox: &str, args: &[&str]) -> Result<std::process::Command> {
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_str().context("exe path")?.to_owned();
    let net = format!("--net={sandbox}");
    let mut argv = vec!["nsenter", net.as_str(), exe.as_str()];
    argv.extend_from_slice(args);
    Ok(h.command(&argv))
}

/// A `__serve` process in a container's namespace; killed on drop.
pub(crate) struct Server(Child);

impl Server {
    /// Starts `__serve port` in `sandbox` (a network namespace path of `h`).
    pub(crate) fn start(h: &FakeHost, sandbox: &str, port: u16) -> Result<Self> {
        let mut cmd = in_sandbox(h, sandbox, &["__serve", &port.to_string()])?;
        Ok(Server(cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn()?))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What one `__connect` run saw.
pub(crate) struct Connects {
    /// Connections completed per second.
    pub(crate) rate: f64,
    /// Each connection's latency, ms.
    pub(crate) lat_ms: Vec<f64>,
    pub(crate) errors: u64,
}

/// `count` sequential connections from `sandbox` on `h` to `addr:port` (`addr`: one
/// address, or several separated by commas, taken in turn).
pub(crate) fn connects(
    h: &FakeHost,
    sandbox: &str,
    addr: &str,
    port: u16,
    count: usize,
) -> Result<Connects> {
    let out = in_sandbox(h, sandbox, &["__connect", addr, &port.to_string(), &count.to_string()])?
        .output()?;
    if !out.status.success() {
        bail!("__connect {addr}:{port}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("__connect output")?;
    let lat_ms: Vec<f64> = v["lat_us"]
        .as_array()
        .context("lat_us")?
        .iter()
        .filter_map(|x| x.as_f64().map(|us| us / 1e3))
        .collect();
    let elapsed = v["elapsed_ms"].as_f64().context("elapsed_ms")?;
    Ok(Connects {
        rate: lat_ms.len() as f64 / (elapsed / 1e3),
        lat_ms,
        errors: v["errors"].as_u64().unwrap_or(0),
    })
}

/// One `__watch` attempt: the page (the task's name), or the error's kind.
pub(crate) type Answer = std::result::Result<String, String>;

/// A running `__watch`: each attempt's [`Answer`] with when it was read.
pub(crate) struct Watch {
    child: Child,
    rx: mpsc::Receiver<(Instant, Answer)>,
}

impl Watch {
    /// Starts `__watch addr port pace_ms` in `sandbox` on `h`, and waits for its first line.
    pub(crate) fn start(
        h: &FakeHost,
        sandbox: &str,
        addr: &str,
        port: u16,
        pace_ms: u64,
    ) -> Result<Self> {
        let mut child =
            in_sandbox(h, sandbox, &["__watch", addr, &port.to_string(), &pace_ms.to_string()])?
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()?;
        let out = child.stdout.take().context("__watch stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let answer = line.split_once(' ').map(|(_, a)| a).unwrap_or("-");
                let answer = match answer.strip_prefix('-') {
                    Some(e) => Err(e.to_owned()),
                    None => Ok(answer.to_owned()),
                };
                if tx.send((Instant::now(), answer)).is_err() {
                    return;
                }
            }
        });
        let w = Watch { child, rx };
        if w.rx.recv_timeout(Duration::from_secs(10)).is_err() {
            bail!("__watch {addr}:{port} printed nothing in 10 s");
        }
        Ok(w)
    }

    /// The answers read so far (waiting up to `wait` for the first).
    pub(crate) fn take(&self, wait: Duration) -> Vec<(Instant, Answer)> {
        let mut v: Vec<_> = self.rx.recv_timeout(wait).into_iter().collect();
        v.extend(self.rx.try_iter());
        v
    }

    /// The first answer (from anyone) read after `t0`, or `None` after `limit`.
    pub(crate) fn first_answer_after(&self, t0: Instant, limit: Duration) -> Option<Instant> {
        self.first_after(t0, limit, Answer::is_ok)
    }

    /// The first attempt read after `t0` that `pred` accepts, or `None` after `limit`.
    pub(crate) fn first_after(
        &self,
        t0: Instant,
        limit: Duration,
        pred: impl Fn(&Answer) -> bool,
    ) -> Option<Instant> {
        loop {
            let left = (t0 + limit).checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left) {
                Ok((t, a)) if t >= t0 && pred(&a) => return Some(t),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
