//! The daemon under test in a fake host, and the CLI and API clients that talk to it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::host::{tail, FakeHost};
use crate::run::{
    lossy, run_with_timeout, set_death_signal, show_argv, spawn_long_lived, CmdResult,
};
use crate::{http, image};

impl FakeHost {
    /// Start the daemon inside the fake host: `cove daemon -H unix://<sock> --data-root
    /// <state>/data --exec-root <state>/run <extra...>`, output appended to
    /// `<dir>/daemon.log`; wait (up to 20 s) until `GET /_ping` answers 200, else panic with
    /// the log.
    #[track_caller]
    pub fn start_daemon(&mut self, extra: &[&str]) {
        if let Err(e) = self.try_start_daemon(extra) {
            panic!("{e}");
        }
    }

    /// [`FakeHost::start_daemon`] for a daemon that may refuse to start: `Err` with its exit
    /// status and the log's tail when it exits before answering `GET /_ping` (or does not
    /// answer within 20 s: then it is left running, and goes with the fake host).
    #[track_caller]
    pub fn try_start_daemon(&mut self, extra: &[&str]) -> Result<(), String> {
        assert!(self.daemon.is_none(), "netlab: the daemon of {} is already running", self.tag);
        let uri = self.host_uri();
        let (data, run) = (self.data_root(), self.exec_root());
        let bin = self.cove_bin.display().to_string();
        let (data, run) = (data.display().to_string(), run.display().to_string());
        let cgroup = crate::cgroups::parent_for(&self.tag);
        let mut argv: Vec<&str> =
            vec![&bin, "daemon", "-H", &uri, "--data-root", &data, "--exec-root", &run];
        if !extra.iter().any(|a| a.starts_with("--cgroup-parent") || a.starts_with("--config")) {
            argv.extend(["--cgroup-parent", &cgroup]);
        }
        argv.extend_from_slice(extra);
        let log_path = self.dir.join("daemon.log");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("netlab: opening {}: {e}", log_path.display()));
        let _ = writeln!(log, "==== netlab: starting {} ====", show_argv(&argv));
        let mut cmd = self.command(&argv);
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("netlab: dup log: {e}"));
        cmd.stdin(Stdio::null()).stdout(log2).stderr(log).env("COVE_HOST", &uri);
        let child = spawn_long_lived(cmd)
            .unwrap_or_else(|e| panic!("netlab: cannot start the daemon {bin}: {e}"));
        self.daemon = Some(child);
        self.wait_ping(Duration::from_secs(20))
    }

    fn wait_ping(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let sock = self.sock_path();
        loop {
            if let Some(d) = self.daemon.as_mut() {
                if let Ok(Some(status)) = d.try_wait() {
                    self.daemon = None;
                    return Err(format!(
                        "netlab: the daemon exited ({status}) before answering /_ping\n\
                         --- daemon log ---\n{}",
                        tail(&self.daemon_log(), 200)
                    ));
                }
            }
            let last_err = match http::request(&sock, "GET", "/_ping", None, Duration::from_secs(2))
            {
                Ok((200, _)) => return Ok(()),
                Ok((code, body)) => format!("status {code}: {body}"),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(format!(
                    "netlab: the daemon did not answer GET /_ping on {} within {limit:?} \
                     (last: {last_err})\n--- daemon log ---\n{}",
                    sock.display(),
                    tail(&self.daemon_log(), 200)
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's pid, while it runs.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Stop the daemon gracefully: SIGTERM, wait up to 10 s, then SIGKILL. Returns its exit
    /// status (None when no daemon was running).
    pub fn stop_daemon(&mut self) -> Option<ExitStatus> {
        let mut d = self.daemon.take()?;
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(d.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match d.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    self.note(&format!(
                        "daemon ignored SIGTERM for 10 s; SIGKILL (pid {})",
                        d.id()
                    ));
                    let _ = d.kill();
                    break d.wait().ok();
                }
            }
        };
        self.note(&format!("daemon stopped: {status:?}"));
        status
    }

    /// Crash the daemon: SIGKILL, and reap it.
    pub fn kill_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let status = d.wait();
            self.note(&format!("daemon killed (SIGKILL): {status:?}"));
        }
    }

    fn note(&self, msg: &str) {
        if let Ok(mut f) =
            OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log"))
        {
            let _ = writeln!(f, "==== netlab: {msg} ====");
        }
    }

    /// Everything the daemon printed so far (all starts of it), with netlab's markers.
    pub fn daemon_log(&self) -> String {
        fs::read(self.dir.join("daemon.log")).map(|b| lossy(&b)).unwrap_or_default()
    }

    /// Run the CLI from the test process: `cove -H unix://<sock> <args...>` (with
    /// `COVE_HOST` set to the same), stdin empty.
    pub fn cove(&self, args: &[&str]) -> CmdResult {
        self.cove_inner(args, None)
    }

    /// [`FakeHost::cove`] with `stdin` fed to the command.
    pub fn cove_stdin(&self, args: &[&str], stdin: &[u8]) -> CmdResult {
        self.cove_inner(args, Some(stdin))
    }

    fn cove_inner(&self, args: &[&str], stdin: Option<&[u8]>) -> CmdResult {
        let uri = self.host_uri();
        let mut cmd = Command::new(&self.cove_bin);
        cmd.arg("-H").arg(&uri).args(args).env("COVE_HOST", &uri);
        set_death_signal(&mut cmd);
        let label = format!("cove {}", show_argv(args));
        let out = run_with_timeout(cmd, stdin, self.timeout, &label);
        CmdResult::from_output(label, &out)
    }

    /// One raw API request (`Connection: close`, JSON body if given); returns the status code
    /// and the body. Panics when the socket cannot be reached (see [`FakeHost::try_api`]).
    #[track_caller]
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        self.try_api(method, path, body).unwrap_or_else(|e| {
            panic!(
                "netlab: {method} {path} on {}: {e}\n--- daemon log (tail) ---\n{}",
                self.sock_path().display(),
                tail(&self.daemon_log(), 60)
            )
        })
    }

    /// [`FakeHost::api`] returning the I/O error instead of panicking.
    pub fn try_api(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        http::request(&self.sock_path(), method, path, body, self.timeout)
    }

    /// [`FakeHost::api`] with the body parsed as JSON (`Null` when empty or not JSON).
    #[track_caller]
    pub fn api_json(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let (code, text) = self.api(method, path, body);
        (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    /// Import the busybox test image as `name` (`cove image import <dir>/busybox.tar name`);
    /// panics when that fails.
    #[track_caller]
    pub fn import_busybox(&self, name: &str) {
        let tar = self.dir.join("busybox.tar");
        if !tar.exists() {
            fs::write(&tar, image::busybox_rootfs_tar())
                .unwrap_or_else(|e| panic!("netlab: writing {}: {e}", tar.display()));
        }
        self.cove(&["image", "import", &tar.display().to_string(), name]).ok();
    }
}
