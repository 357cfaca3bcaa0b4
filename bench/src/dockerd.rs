//! A private dockerd (Debian's `docker.io`) as a peer, inside the bench's fake host (or a
//! fake host of a netlab, [`Dockerd::start_with`]): its own data root, exec root, API
//! socket, pid file, trust key and containerd namespace under the bench's directory, so it
//! shares nothing with a Docker the machine may run, and its iptables rules live in the fake
//! host's network namespace only. Stopped, with everything it made, by [`Dockerd::stop`]
//! (also on drop).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) struct Dockerd {
    child: Option<Child>,
    dir: PathBuf,
    sock: PathBuf,
    /// What dockerd 20.10 may write outside its roots: its trust key, `/etc/docker/key.json`
    /// (no flag moves it; the bench moves it into `dir` with the config file's
    /// `deprecated-key-path`). Removed at the end if it was not there before.
    created_outside: Vec<PathBuf>,
}

/// Makes the command that runs `argv` (dockerd and its flags).
pub(crate) type Wrap<'a> = &'a dyn Fn(&[&str]) -> Command;

/// How to start a dockerd beyond its private roots (see [`Dockerd::start_with`]).
#[derive(Default)]
pub(crate) struct Launch<'a> {
    /// More flags (e.g. `--cluster-store`).
    pub(crate) flags: Vec<String>,
    /// The command that runs `argv` (dockerd and its flags), e.g. inside a netlab's fake
    /// host; `None`: in this process's namespaces.
    pub(crate) wrap: Option<Wrap<'a>>,
}

/// The API version of Debian's dockerd 20.10.
const API: &str = "/v1.41";
const ETC_DOCKER: &str = "/etc/docker";
const TRUST_KEY: &str = "/etc/docker/key.json";

/// Whether dockerd and the docker CLI are installed.
pub(crate) fn installed() -> bool {
    let on_path = |b: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    on_path("dockerd") && on_path("docker")
}

impl Dockerd {
    /// Starts dockerd under `dir` and waits until it answers.
    pub(crate) fn start(dir: &Path) -> Result<Self> {
        Self::start_with(dir, &Launch::default())
    }

    /// Starts dockerd under `dir` as `launch` says and waits until it answers; on failure,
    /// the end of its log is in the error.
    pub(crate) fn start_with(dir: &Path, launch: &Launch<'_>) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let created_outside: Vec<PathBuf> = [TRUST_KEY, ETC_DOCKER]
            .into_iter()
            .map(PathBuf::from)
            .filter(|p| !p.exists())
            .collect();
        let sock = dir.join("docker.sock");
        let config = dir.join("daemon.json");
        let key = dir.join("key.json");
        std::fs::write(&config, serde_json::json!({ "deprecated-key-path": key }).to_string())?;
        let log_path = dir.join("dockerd.log");
        let log = std::fs::File::create(&log_path)?;
        let p = |p: PathBuf| p.display().to_string();
        let mut argv: Vec<String> = vec![
            "dockerd".into(),
            "--config-file".into(),
            p(config),
            "--data-root".into(),
            p(dir.join("data")),
            "--exec-root".into(),
            p(dir.join("exec")),
            "-H".into(),
            format!("unix://{}", sock.display()),
            "--pidfile".into(),
            p(dir.join("dockerd.pid")),
        ];
        argv.extend(
            ["--containerd-namespace", "cove-bench", "--log-level", "warn"].map(String::from),
        );
        argv.extend(launch.flags.iter().cloned());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut cmd = match launch.wrap {
            Some(wrap) => wrap(&argv),
            None => {
                let mut c = Command::new(argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn().context("start dockerd")?;
        let mut d = Dockerd { child: Some(child), dir: dir.to_path_buf(), sock, created_outside };
        for _ in 0..150 {
            if d.cli(&["version"]).is_ok() {
                return Ok(d);
            }
            if let Some(Ok(Some(status))) = d.child.as_mut().map(Child::try_wait) {
                let log = d.log_tail(5);
                d.stop();
                bail!("dockerd exited ({status}) before it answered; its log ends:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = d.log_tail(5);
        d.stop();
        bail!("dockerd did not answer in 15 s; its log ends:\n{log}")
    }

    /// The last `n` lines of its log.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The docker CLI against this daemon.
    pub(crate) fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args)
            .output()
            .context("run docker")?;
        if !out.status.success() {
            bail!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// `busybox:latest` from the host's static busybox (the same image Cove runs).
    pub(crate) fn import_busybox(&self) -> Result<()> {
        crate::daemon::with_busybox_tar(&self.dir, |tar| {
            self.cli(&["image", "import", tar, "busybox:latest"]).map(|_| ())
        })
    }

    /// Removes every container and network, stops dockerd (and the containerd it runs),
    /// and removes its directories. Best effort, idempotent.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Ok(ids) = self.cli(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.cli(&args);
            }
        }
        let _ = self.cli(&["network", "prune", "-f"]);
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..150 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        crate::daemon::unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
        // The key first, then the directory if it was ours (and is now empty).
        for p in self.created_outside.drain(..) {
            let _ = if p.is_dir() { std::fs::remove_dir(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

impl crate::http::Engine for Dockerd {
    fn api(&self, method: &str, path: &str, body: Option<&str>, want: u16) -> Result<String> {
        crate::http::expect(&self.sock, method, &format!("{API}{path}"), body, want)
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
    }
}
