//! nftables effects: apply a rendered ruleset or delta with one `nft -f -` process (one
//! atomic transaction), and watch for changes made by others with `nft monitor`.
//!
//! Text through the `nft` binary is the transport (see `shared/reference/crates.md` §2):
//! no crate can express named verdict maps and concatenated map data, and nft 1.0.6's JSON
//! parser crashes on them.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::Mutex;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tracing::{debug, trace, warn};

use crate::error::{Cause, KernelError};

/// Pids of the `nft` processes this daemon ran lately: their transactions are ours.
static OWN_PIDS: Mutex<VecDeque<u32>> = Mutex::new(VecDeque::new());

pub(crate) fn remember_own(pid: u32) {
    let mut own = OWN_PIDS.lock().expect("own pids lock");
    if own.len() >= 256 {
        own.pop_front();
    }
    own.push_back(pid);
}

fn is_own(pid: u32) -> bool {
    OWN_PIDS.lock().expect("own pids lock").contains(&pid)
}

/// Apply `text` (one or more nft commands) as one transaction: all or nothing.
pub async fn apply(text: &str) -> Result<(), KernelError> {
    if text.trim().is_empty() {
        return Ok(());
    }
    trace!(ruleset = text, "nft -f -");
    let ctx = "apply nftables transaction";
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            KernelError::new(
                format!("{ctx}: run nft (install the nftables package)"),
                Cause::from(e),
            )
        })?;
    if let Some(pid) = child.id() {
        remember_own(pid);
    }
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(text.as_bytes()).await.map_err(|e| KernelError::new(ctx, Cause::from(e)))?;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| KernelError::new(ctx, Cause::from(e)))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(KernelError::new(
            ctx,
            Cause::Protocol(format!("nft refused the transaction: {}", err.trim())),
        ));
    }
    debug!(bytes = text.len(), "nftables transaction applied");
    Ok(())
}

/// Whether the kernel and nft accept `text` (`nft -c -f -`: the transaction is checked by
/// the kernel, then aborted; nothing changes). A feature probe: for example whether the
/// kernel has the `numgen` expression that service load balancing needs
/// ([`NUMGEN_PROBE`]).
pub async fn check(text: &str) -> Result<(), KernelError> {
    let ctx = "check nftables transaction";
    let mut child = Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| KernelError::new(format!("{ctx}: run nft"), Cause::from(e)))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(text.as_bytes()).await.map_err(|e| KernelError::new(ctx, Cause::from(e)))?;
    drop(stdin);
    let out = child.wait_with_output().await.map_err(|e| KernelError::new(ctx, Cause::from(e)))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(KernelError::new(ctx, Cause::Protocol(format!("nft: {}", err.trim()))));
    }
    Ok(())
}

/// A transaction that needs every kernel feature service load balancing uses: `numgen`,
/// verdict maps with concatenated interval keys, `fib`, `reject` and NAT. For [`check`].
pub const NUMGEN_PROBE: &str = "table inet cove_probe {
\tmap m { type ipv4_addr . inet_proto . inet_service : verdict; flags interval; }
\tchain a { }
\tchain b { numgen random mod 2 vmap { 0 : goto a, 1 : goto a }; }
\tchain n { type nat hook prerouting priority dstnat; fib daddr type local ip daddr . meta l4proto . th dport vmap @m; }
\tchain r { meta l4proto tcp reject with tcp reset; }
\tchain i { type filter hook input priority -10; goto r; }
}
";

/// The named counters of a table, as `nft list counters table FAMILY NAME` prints them
/// (parse with `cove_firewall::parse_counters`). Reading makes no transaction, so
/// `nft monitor` sees nothing of it.
pub async fn list_counters(family: &str, name: &str) -> Result<String, KernelError> {
    let ctx = format!("read the counters of nftables table {family} {name}");
    let out = Command::new("nft")
        .args(["list", "counters", "table", family, name])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| KernelError::new(ctx.clone(), Cause::from(e)))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(KernelError::new(ctx, Cause::Protocol(format!("nft: {}", err.trim()))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a table exists (`nft list table FAMILY NAME` succeeds).
pub async fn table_exists(family: &str, name: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", family, name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Watch for changes that someone else made to the tables `tables` (`"inet cove"` style):
/// a `()` arrives on the channel for every foreign transaction that changed anything in
/// them (added, deleted or flushed). `nft monitor` ends every transaction with
/// `# new generation N by process PID (comm)`; transactions by our own `nft` processes
/// ([`apply`]) are ignored.
///
/// A monitor that ends (nft 1.0.6's crashes printing some objects) is started again a
/// second later, and its end counts as a foreign change: what happened meanwhile is
/// unknown, so the ruleset is written again.
pub fn watch_foreign_changes(tables: &[&str]) -> Result<mpsc::Receiver<()>, KernelError> {
    let first = monitor()?;
    let tables: Vec<String> = tables.iter().map(|t| format!(" {t} ")).collect();
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let mut next = Some(first);
        loop {
            let mut events = match next.take() {
                Some(e) => e,
                None => match monitor() {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(error = %e, "could not start nft monitor again");
                        tokio::time::sleep(MONITOR_RESTART).await;
                        continue;
                    }
                },
            };
            if !follow(&mut events, &tables, &tx).await {
                return;
            }
            if tx.send(()).await.is_err() {
                return;
            }
            tokio::time::sleep(MONITOR_RESTART).await;
        }
    });
    Ok(rx)
}

/// How long after a monitor ended another one starts.
const MONITOR_RESTART: std::time::Duration = std::time::Duration::from_secs(1);

/// Follow one monitor's events until it ends (true) or the receiver is gone (false).
async fn follow(
    events: &mut mpsc::Receiver<String>,
    tables: &[String],
    tx: &mpsc::Sender<()>,
) -> bool {
    {
        let mut touched = false;
        while let Some(line) = events.recv().await {
            if let Some(rest) = line.strip_prefix("# new generation ") {
                let pid = rest
                    .split(" by process ")
                    .nth(1)
                    .and_then(|p| p.split_whitespace().next())
                    .and_then(|p| p.parse::<u32>().ok());
                let foreign = pid.is_none_or(|p| !is_own(p));
                if touched && foreign && tx.send(()).await.is_err() {
                    return false;
                }
                touched = false;
            } else if !line.starts_with('#') {
                // Any change by someone else to our tables (a deletion, a flush, or an
                // inserted `accept`) is tampering: the whole ruleset is written again.
                let padded = format!("{line} ");
                touched |= tables.iter().any(|t| padded.contains(t.as_str()));
            }
        }
    }
    true
}

/// An `nft` child that lives as long as the daemon and dies with it, even when the daemon
/// is SIGKILLed (`kill_on_drop` only covers orderly exits).
fn long_lived_nft(args: &[&str]) -> Command {
    let mut cmd = Command::new("nft");
    cmd.args(args).kill_on_drop(true);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
    // parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Follow `nft monitor`: every event line is sent on the returned channel until the
/// receiver is dropped. The monitor process dies with the daemon (`kill_on_drop`).
pub fn monitor() -> Result<mpsc::Receiver<String>, KernelError> {
    let mut cmd = long_lived_nft(&["monitor"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| KernelError::new("run nft monitor", Cause::from(e)))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if tx.send(line).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {
                    warn!("nft monitor ended");
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "nft monitor failed");
                    break;
                }
            }
        }
        let _ = child.kill().await;
    });
    Ok(rx)
}

/// A long-lived `nft -i` process for the hot path: spawning `nft` costs 5–15 ms, far more
/// than the transaction itself. Each [`NftSession::run`] sends one line (one transaction)
/// followed by `describe ct mark`, a stateless command whose one-line answer marks the end
/// of the transaction. stdout and stderr share one pipe, and a successful element change
/// prints nothing, so whatever comes before the marker is that transaction's error: no
/// waiting to see whether stderr has something.
#[derive(Debug)]
pub struct NftSession {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    output: tokio::io::Lines<BufReader<tokio::net::unix::pipe::Receiver>>,
}

/// What `describe ct mark` prints.
const MARKER: &str = "ct expression, datatype mark (packet mark) (basetype integer), 32 bits";

impl NftSession {
    /// Start `nft -i` (it dies with the daemon).
    pub fn spawn() -> Result<Self, KernelError> {
        let err = |e: std::io::Error| KernelError::new("run nft -i", Cause::from(e));
        let (reader, writer) = std::io::pipe().map_err(err)?;
        let writer2 = writer.try_clone().map_err(err)?;
        let mut cmd = long_lived_nft(&["-i"]);
        // Interactive nft keeps a history file in $HOME: none on the host for Cove's use.
        cmd.env("HOME", "/nonexistent");
        cmd.stdin(Stdio::piped()).stdout(Stdio::from(writer)).stderr(Stdio::from(writer2));
        let spawned = cmd.spawn();
        // Our copies of the write end must go, so the reader sees nft's exit as end of file.
        drop(cmd);
        let mut child = spawned.map_err(err)?;
        if let Some(pid) = child.id() {
            remember_own(pid);
        }
        let stdin = child.stdin.take().expect("stdin is piped");
        let reader =
            tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader))
                .map_err(err)?;
        Ok(Self { child, stdin, output: BufReader::new(reader).lines() })
    }

    /// Run `text` (element commands, one per line) as one transaction.
    pub async fn run(&mut self, text: &str) -> Result<(), KernelError> {
        let ctx = "apply nftables transaction (session)";
        let line: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if line.is_empty() {
            return Ok(());
        }
        let input = format!("{}\ndescribe ct mark\n", line.join("; "));
        trace!(ruleset = %input, "nft -i");
        let io = |e: std::io::Error| KernelError::new(ctx, Cause::from(e));
        self.stdin.write_all(input.as_bytes()).await.map_err(io)?;
        self.stdin.flush().await.map_err(io)?;
        let wait = async {
            let mut errors = Vec::new();
            loop {
                match self.output.next_line().await {
                    Ok(Some(l)) if l == MARKER => return Ok(errors),
                    Ok(Some(l)) => errors.push(l),
                    Ok(None) => {
                        return Err(KernelError::new(ctx, Cause::Protocol("nft -i exited".into())))
                    }
                    Err(e) => return Err(io(e)),
                }
            }
        };
        let errors =
            tokio::time::timeout(std::time::Duration::from_secs(10), wait).await.map_err(
                |_| KernelError::new(ctx, Cause::Protocol("nft -i did not answer".into())),
            )??;
        let msg = errors.join("\n");
        if !msg.trim().is_empty() {
            return Err(KernelError::new(
                ctx,
                Cause::Protocol(format!("nft refused the transaction: {}", msg.trim())),
            ));
        }
        debug!(bytes = text.len(), "nftables transaction applied (session)");
        Ok(())
    }

    /// Whether the process is still there.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}
