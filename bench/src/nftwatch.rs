//! When Cove's firewall transactions land, seen from outside: `nft monitor` prints every
//! committed transaction's changes followed by `# new generation N by process PID`. The
//! instant the bench reads a generation line that follows changes to Cove's tables marks
//! "the firewall has this container": for a start, that is after the sandbox, the port
//! reservation and the element delta, and before runc. It splits Cove's start into its
//! networking part and the runtime's without touching the daemon.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Whose transaction was committed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Owner {
    /// Cove's tables (`inet cove`, `bridge cove`).
    Cove,
    /// The floor's table (`inet coveflr`).
    Floor,
}

pub(crate) struct NftWatch {
    child: Child,
    events: mpsc::Receiver<(Instant, Owner)>,
}

impl Drop for NftWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whose tables a monitor line changes, if any.
fn touches(line: &str) -> Option<Owner> {
    let padded = format!("{line} ");
    if !(line.starts_with("add ") || line.starts_with("delete ") || line.starts_with("flush ")) {
        return None;
    }
    if padded.contains(" inet cove ") || padded.contains(" bridge cove ") {
        Some(Owner::Cove)
    } else if padded.contains(" inet coveflr ") {
        Some(Owner::Floor)
    } else {
        None
    }
}

impl NftWatch {
    pub(crate) fn start() -> Result<Self> {
        let mut child = Command::new("nft")
            .arg("monitor")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("run nft monitor")?;
        let out = child.stdout.take().context("nft monitor stdout")?;
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            let mut touched = None;
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if line.starts_with("# new generation ") {
                    if let Some(owner) = touched.take() {
                        if tx.send((Instant::now(), owner)).is_err() {
                            return;
                        }
                    }
                } else if touched.is_none() {
                    touched = touches(&line);
                }
            }
        });
        // Let the monitor subscribe before anything is measured.
        std::thread::sleep(Duration::from_millis(200));
        Ok(Self { child, events })
    }

    /// Forget what arrived so far.
    pub(crate) fn drain(&self) {
        while self.events.try_recv().is_ok() {}
    }

    /// Milliseconds from `t0` to the first transaction of `owner` committed after it, if
    /// one arrives within a short grace time (the monitor reads asynchronously).
    pub(crate) fn first_since(&self, t0: Instant, owner: Owner) -> Option<f64> {
        let deadline = Instant::now() + Duration::from_millis(100);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((t, o)) if t >= t0 && o == owner => {
                    self.drain();
                    return Some((t - t0).as_secs_f64() * 1e3);
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn owners() {
        use super::{touches, Owner};
        let el = "dnat4_any { tcp . 80 : 10.0.0.2 . 80 }";
        assert_eq!(touches(&format!("add element inet cove {el}")), Some(Owner::Cove));
        assert_eq!(touches("delete element bridge cove guarded { \"cv1\" }"), Some(Owner::Cove));
        assert_eq!(touches(&format!("add element inet coveflr {el}")), Some(Owner::Floor));
        assert_eq!(touches("add table inet other"), None);
        assert_eq!(touches("# new generation 5 by process 7 (nft)"), None);
    }
}
