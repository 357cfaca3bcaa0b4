//! The daemon under test, started in this (fake) host, and what the benches ask of it.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::http::{self, Engine as _};

/// The API version prefix the bench speaks.
pub(crate) const V: &str = "/v1.45";

pub(crate) struct Daemon {
    child: Child,
    pub(crate) sock: PathBuf,
    cove: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl http::Engine for Daemon {
    fn api(&self, method: &str, path: &str, body: Option<&str>, want: u16) -> Result<String> {
        http::expect(&self.sock, method, &format!("{V}{path}"), body, want)
    }
}

impl Daemon {
    pub(crate) fn start(cove: &Path, root: &Path) -> Result<Self> {
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
        let d = Self { child, sock, cove: cove.to_path_buf() };
        for _ in 0..200 {
            if http::request(&d.sock, "GET", "/_ping", None).is_ok() {
                return Ok(d);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(root.join("daemon.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(5)..].join("\n");
        bail!("the daemon did not answer; its log ends:\n{tail}")
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `cove` CLI against this daemon (setup only: the timed paths use the API).
    pub(crate) fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.cove)
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("cove {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub(crate) fn api_json(
        &self,
        method: &str,
        path: &str,
        want: u16,
    ) -> Result<serde_json::Value> {
        http::json(&self.sock, method, &format!("{V}{path}"), None, want)
    }

    /// Import the busybox test image as `busybox`.
    pub(crate) fn import_busybox(&self, dir: &Path) -> Result<()> {
        with_busybox_tar(dir, |tar| self.cli(&["image", "import", tar, "busybox"]).map(|_| ()))
    }

    /// Remove every container (force) and every network the bench made, with `workers`
    /// requests in flight. Returns how many containers were removed.
    pub(crate) fn remove_everything(&self, workers: usize) -> Result<usize> {
        let ids = container_ids(&self.api_json("GET", "/containers/json?all=1", 200)?)?;
        let errors = for_each_parallel(ids.len(), workers, false, |i| {
            self.api("DELETE", &format!("/containers/{}?force=1", ids[i]), None, 204).map(|_| ())
        });
        let nets = self.api_json("GET", "/networks", 200)?;
        let mut failed = errors;
        for n in nets.as_array().context("network list")? {
            let name = n["Name"].as_str().unwrap_or("");
            if matches!(name, "bridge" | "host" | "none" | "") {
                continue;
            }
            if let Err(e) = self.api("DELETE", &format!("/networks/{name}"), None, 204) {
                failed.push(e);
            }
        }
        if let Some(e) = failed.into_iter().next() {
            return Err(e.context("clean up the daemon"));
        }
        Ok(ids.len())
    }

    /// The daemon's resident memory in MiB.
    pub(crate) fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()));
        status
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
            })
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

/// The ids in a container list (`GET /containers/json`).
pub(crate) fn container_ids(list: &serde_json::Value) -> Result<Vec<String>> {
    Ok(list
        .as_array()
        .context("container list")?
        .iter()
        .filter_map(|c| c["Id"].as_str().map(str::to_owned))
        .collect())
}

/// Builds the busybox image tarball (`scripts/busybox-image.sh`) in `dir`, hands its path
/// to `import`, and removes it.
pub(crate) fn with_busybox_tar(dir: &Path, import: impl FnOnce(&str) -> Result<()>) -> Result<()> {
    let tar = dir.join("busybox.tar");
    let status = Command::new("scripts/busybox-image.sh").arg(&tar).status()?;
    if !status.success() {
        bail!("scripts/busybox-image.sh failed");
    }
    let result = import(tar.to_str().context("path")?);
    let _ = std::fs::remove_file(&tar);
    result
}

/// Lazily unmount whatever is still mounted under `dir` (netns bind mounts of a floor
/// interrupted by an error), deepest first, so the directory can be removed.
pub(crate) fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).status();
    }
}

/// `MemAvailable` of the machine in MiB.
pub(crate) fn mem_available_mib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Run `f(0..n)` on `workers` threads (bounded concurrency); returns the errors. With
/// `stop_on_error`, no new item starts after the first error.
pub(crate) fn for_each_parallel<F>(
    n: usize,
    workers: usize,
    stop_on_error: bool,
    f: F,
) -> Vec<anyhow::Error>
where
    F: Fn(usize) -> Result<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let errors = std::sync::Mutex::new(vec![]);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return;
                }
                if let Err(e) = f(i) {
                    errors.lock().expect("errors lock").push(e);
                    if stop_on_error {
                        next.store(n, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    errors.into_inner().expect("errors lock")
}

/// Proportional memory (PSS, MiB) of the processes that run the containers: those whose
/// command line names `marker` (the shims and `runc run`, which name the bench's data
/// directories), except `except` (the daemon), and their descendants (the containers).
pub(crate) fn containers_pss_mib(marker: &str, except: u32) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return f64::NAN };
    let mut procs = vec![];
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The parent pid is the second field after the command name, which is in parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0);
        let named = String::from_utf8_lossy(&cmdline).contains(marker);
        procs.push((pid, ppid, named && pid != except));
    }
    let mut chosen: std::collections::HashSet<u32> =
        procs.iter().filter(|p| p.2).map(|p| p.0).collect();
    loop {
        let before = chosen.len();
        for (pid, ppid, _) in &procs {
            if *pid != except && chosen.contains(ppid) {
                chosen.insert(*pid);
            }
        }
        if chosen.len() == before {
            break;
        }
    }
    let kib: f64 = chosen
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .sum();
    kib / 1024.0
}
