//! Container runs: start (spawn the shim), state, wait, kill, cleanup, remove.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cove_model::Error;

use crate::fsutil::{cgroup_mounts, is_mount_point, read_pid};
use crate::shim::{self, read_exit, ShimArgs};
use crate::{timefmt, RunState, Runtime};

/// How long start waits for the container's init pid.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Exit code reported when the shim vanished without recording one.
const LOST_EXIT_CODE: i32 = 255;

fn io_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: {e}"))
}

/// The fields of /proc/<pid>/stat after the command name: state is [0], ppid is [1].
fn proc_stat(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split(' ').map(str::to_string).collect())
}

fn ppid(pid: u32) -> Option<u32> {
    proc_stat(pid)?.get(1)?.parse().ok()
}

/// Whether `pid` is a live (not zombie) shim of container `id`.
pub(crate) fn shim_alive(pid: u32, id: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let is_ours = cmdline.split(|&b| b == 0).any(|a| a == b"shim")
        && cmdline.split(|&b| b == 0).any(|a| a == id.as_bytes());
    is_ours && proc_stat(pid).is_some_and(|f| f.first().map(String::as_str) != Some("Z"))
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the syscall returned a fresh file descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl Runtime {
    fn shim_program() -> Result<PathBuf, Error> {
        if let Some(p) = std::env::var_os("COVE_SHIM_EXE") {
            return Ok(PathBuf::from(p));
        }
        std::env::current_exe().map_err(|e| io_err("find the cove executable for the shim", e))
    }

    /// The pid of the live shim of `id`, if any.
    fn live_shim(&self, id: &str, state: &Path) -> Option<u32> {
        read_pid(&shim::shim_pid_path(state)).filter(|&p| shim_alive(p, id))
    }

    /// Start container `id`: write config.json joining the network namespace at `netns`
    /// (None: the host's, no network namespace entry), mount the root filesystem, spawn the
    /// shim detached, and wait until runc reports the init pid, which is returned. When the
    /// container fails to start, everything is cleaned up (state NotRunning) and runc's error
    /// is returned (InvalidInput for a missing or non-executable command, as Docker does).
    /// Needs the bundle (create_bundle) and, for a sandbox, the network namespace mounted at
    /// `netns`. Blocks for the duration of runc's start (tens of ms): call it from
    /// `spawn_blocking` in async code. Already running: Conflict.
    #[tracing::instrument(level = "debug", name = "runtime.start", skip_all)]
    pub fn start(&self, id: &str, netns: Option<&Path>) -> Result<u32, Error> {
        let spec = self.load_spec(id)?;
        let bundle = self.bundle_dir(id)?;
        let state = self.state_dir(id)?;
        if let RunState::Running { .. } = self.state(id) {
            return Err(Error::conflict(format!("container {id} is already running")));
        }
        if self.live_shim(id, &state).is_some() {
            return Err(Error::conflict(format!("container {id} is already starting")));
        }
        let runc = self.runc()?.to_path_buf();
        let lower = self.image_rootfs(&spec.image_id)?;
        // runc joins the sandbox through the shim's bind mount of it (see shim_mounts).
        let aside = shim::netns_aside_path(&state);
        self.write_config(&spec, netns.map(|_| aside.as_path()))?;
        // Leftovers of the previous run.
        for f in [shim::exit_path(&bundle), shim::start_error_path(&bundle)] {
            let _ = std::fs::remove_file(f);
        }
        if state.exists() {
            std::fs::remove_dir_all(&state).map_err(|e| io_err("clear run state", e))?;
        }
        std::fs::create_dir_all(&state).map_err(|e| io_err("create run state dir", e))?;
        let args = ShimArgs {
            id: id.to_string(),
            bundle: bundle.clone(),
            state: state.clone(),
            runc,
            runc_root: self.runc_root(),
            lower,
            netns: netns.map(Path::to_path_buf),
        };
        let notify = match spawn_detached(&Self::shim_program()?, &args.to_args()) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = self.cleanup(id);
                return Err(io_err(format!("start shim of container {id}"), e));
            }
        };
        match self.await_init(id, &bundle, &state, notify) {
            Ok(pid) => Ok(pid),
            Err(e) => {
                if let Err(c) = self.cleanup(id) {
                    tracing::warn!(container = id, "cleanup after failed start: {c}");
                }
                Err(e)
            }
        }
    }

    /// Wait for the shim to report the container's init pid (or its failure). The shim
    /// writes a line to `notify` (its stdout) once runc is done and closes it when it exits,
    /// so this wakes when there is something to read; the files are the truth.
    fn await_init(
        &self,
        id: &str,
        bundle: &Path,
        state: &Path,
        mut notify: Option<OwnedFd>,
    ) -> Result<u32, Error> {
        let began = Instant::now();
        let mut delay = Duration::from_millis(1);
        loop {
            if let Some(pid) = read_pid(&shim::init_pid_path(state)) {
                return Ok(pid);
            }
            if read_exit(bundle).is_some() {
                // A process that exits at once (`true`) can have its exit written between
                // the two reads: it did start, and its monitor records the exit.
                if let Some(pid) = read_pid(&shim::init_pid_path(state)) {
                    return Ok(pid);
                }
                let msg =
                    std::fs::read_to_string(shim::start_error_path(bundle)).unwrap_or_default();
                let msg = msg.trim();
                if msg.is_empty() {
                    return Err(Error::internal(format!(
                        "container {id} exited before it started"
                    )));
                }
                return Err(if shim::start_failure_code(msg) == 128 {
                    Error::internal(msg.to_string())
                } else {
                    Error::invalid(msg.to_string())
                });
            }
            let shim_pid = read_pid(&shim::shim_pid_path(state));
            if let Some(p) = shim_pid {
                if !shim_alive(p, id)
                    && read_exit(bundle).is_none()
                    && read_pid(&shim::init_pid_path(state)).is_none()
                {
                    return Err(Error::internal(format!(
                        "shim of container {id} exited unexpectedly"
                    )));
                }
            }
            let waited = began.elapsed();
            if shim_pid.is_none() && waited > Duration::from_secs(10) {
                return Err(Error::internal(format!("shim of container {id} did not start")));
            }
            if waited > START_TIMEOUT {
                return Err(Error::internal(format!("timed out starting container {id}")));
            }
            wait_for(&mut notify, delay);
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }

    /// The state of container `id`'s current or last run.
    pub fn state(&self, id: &str) -> RunState {
        let (Ok(bundle), Ok(state)) = (self.bundle_dir(id), self.state_dir(id)) else {
            return RunState::NotRunning;
        };
        if let Some(rec) = read_exit(&bundle) {
            return RunState::Exited { code: rec.code, finished_at: rec.finished_at };
        }
        let Some(shim_pid) = read_pid(&shim::shim_pid_path(&state)) else {
            return RunState::NotRunning;
        };
        if shim_alive(shim_pid, id) {
            return match read_pid(&shim::init_pid_path(&state)) {
                Some(pid) => RunState::Running { pid },
                None => RunState::NotRunning, // still starting
            };
        }
        // The exit record is written before the shim exits: look again, then give up.
        match read_exit(&bundle) {
            Some(rec) => RunState::Exited { code: rec.code, finished_at: rec.finished_at },
            None => RunState::Exited { code: LOST_EXIT_CODE, finished_at: timefmt::now() },
        }
    }

    /// Resolve when the current run of `id` exits, with its exit code. Works for a shim that
    /// is not our child (after a daemon restart): it watches the shim with a pidfd, falling
    /// back to polling. Returns at once with the last exit code if the run already exited,
    /// or -1 if the container never started (or was cleaned up): call it after `start`
    /// returned. Needs a tokio runtime with I/O and time enabled.
    pub async fn wait(&self, id: &str) -> i32 {
        let (Ok(bundle), Ok(state)) = (self.bundle_dir(id), self.state_dir(id)) else {
            return -1;
        };
        loop {
            if let Some(rec) = read_exit(&bundle) {
                return rec.code;
            }
            let Some(shim_pid) = read_pid(&shim::shim_pid_path(&state)) else {
                return -1;
            };
            if !shim_alive(shim_pid, id) {
                return read_exit(&bundle).map_or(LOST_EXIT_CODE, |r| r.code);
            }
            let watched =
                pidfd_open(shim_pid).filter(|_| shim_alive(shim_pid, id)).and_then(|fd| {
                    // SAFETY: `fd` is an OwnedFd the AsyncFd takes over: it stays open and
                    // keeps the same descriptor for the AsyncFd's whole life.
                    unsafe {
                        tokio::io::unix::AsyncFd::register_with_interest(
                            fd,
                            tokio::io::Interest::READABLE,
                        )
                    }
                    .ok()
                });
            match watched {
                // A pidfd turns readable when the process exits: no timer while it runs.
                Some(fd) => {
                    let _ = fd.readable().await;
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Send `signal` to the container's init process. Not running:
    /// `Error::conflict("container <id> is not running")`.
    pub fn kill(&self, id: &str, signal: i32) -> Result<(), Error> {
        if !(1..=64).contains(&signal) {
            return Err(Error::invalid(format!("invalid signal: {signal}")));
        }
        let not_running = || Error::conflict(format!("container {id} is not running"));
        let RunState::Running { pid } = self.state(id) else { return Err(not_running()) };
        // Guard against pid reuse: the init's parent is the shim (its subreaper).
        let shim_pid = read_pid(&shim::shim_pid_path(&self.state_dir(id)?));
        if ppid(pid) != shim_pid {
            return Err(not_running());
        }
        // SAFETY: kill(2) with a pid and a signal number; no memory is involved.
        if unsafe { libc::kill(pid as libc::pid_t, signal) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Err(not_running());
            }
            return Err(io_err(format!("kill container {id}"), e));
        }
        Ok(())
    }

    fn runc_delete(&self, id: &str) {
        let Ok(runc) = self.runc() else { return };
        if !self.runc_root().join(id).exists() {
            return; // never created, or already deleted.
        }
        let out = Command::new(runc)
            .arg("--root")
            .arg(self.runc_root())
            .args(["delete", "--force", id])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if !o.status.success() => {
                tracing::debug!(
                    container = id,
                    "runc delete: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            Err(e) => tracing::warn!(container = id, "runc delete: {e}"),
            _ => {}
        }
    }

    /// After the run exited, or to force it: `runc delete --force` (which kills a running
    /// container), wait for the shim, remove leftover cgroups, unmount the root filesystem,
    /// and forget the run (state becomes NotRunning). Idempotent. Blocks (runc, the shim's
    /// exit): call it from `spawn_blocking` in async code.
    pub fn cleanup(&self, id: &str) -> Result<(), Error> {
        let bundle = self.bundle_dir(id)?;
        let state = self.state_dir(id)?;
        self.runc_delete(id);
        if let Some(shim_pid) = self.live_shim(id, &state) {
            let began = Instant::now();
            while shim_alive(shim_pid, id) && began.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
                if began.elapsed() > Duration::from_millis(500) {
                    self.runc_delete(id);
                }
            }
            if shim_alive(shim_pid, id) {
                tracing::warn!(container = id, "shim did not exit; killing it");
                // SAFETY: kill(2) with a pid and a signal number.
                unsafe { libc::kill(shim_pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        remove_cgroups(&self.cgroup_path(id));
        self.unmount_rootfs(id)?;
        for f in [shim::exit_path(&bundle), shim::start_error_path(&bundle)] {
            let _ = std::fs::remove_file(f);
        }
        if state.exists() {
            std::fs::remove_dir_all(&state)
                .map_err(|e| io_err(format!("remove run state of container {id}"), e))?;
        }
        Ok(())
    }

    /// Remove the container's bundle directory (after [`Runtime::cleanup`]). Refuses while
    /// the container is running. Idempotent.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        let bundle = self.bundle_dir(id)?;
        if let RunState::Running { .. } = self.state(id) {
            return Err(Error::conflict(format!("container {id} is running")));
        }
        self.unmount_rootfs(id)?;
        if is_mount_point(&self.rootfs_path(id)?) {
            return Err(Error::internal(format!(
                "root filesystem of container {id} is still mounted"
            )));
        }
        if bundle.exists() {
            std::fs::remove_dir_all(&bundle)
                .map_err(|e| io_err(format!("remove container {id}"), e))?;
        }
        let state = self.state_dir(id)?;
        if state.exists() {
            let _ = std::fs::remove_dir_all(&state);
        }
        Ok(())
    }

    /// Ids of containers whose shim is alive (for reconciliation after a daemon restart).
    pub fn running_ids(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.shims_dir()) else { return Vec::new() };
        let mut ids: Vec<String> = rd
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|id| crate::validate_id(id).is_ok())
            .filter(|id| self.live_shim(id, &self.shims_dir().join(id)).is_some())
            .collect();
        ids.sort();
        ids
    }
}

/// Remove the container's cgroups (`<cgroup mount><cgroup path>`) that runc left behind
/// when it was killed before it could clean up. rmdir fails harmlessly on a cgroup that
/// still has processes.
fn remove_cgroups(cgroup: &str) {
    for m in cgroup_mounts() {
        let dir = m.join(cgroup.trim_start_matches('/'));
        if dir.is_dir() {
            if let Err(e) = std::fs::remove_dir(&dir) {
                tracing::debug!(cgroup, "remove cgroup {}: {e}", dir.display());
            }
        }
    }
}

/// Sleep up to `limit`, waking early when `notify` turns readable (a line, or end of file);
/// after that it is dropped, and this just sleeps.
fn wait_for(notify: &mut Option<OwnedFd>, limit: Duration) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let Some(fd) = notify.as_ref() else {
        std::thread::sleep(limit);
        return;
    };
    let timeout = PollTimeout::try_from(limit).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(fd), PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(0) => {}
        Ok(_) => *notify = None,
        Err(_) => {
            *notify = None;
            std::thread::sleep(limit);
        }
    }
}

/// Spawn `program shim args...` with stdin and stderr on /dev/null and stdout on a pipe
/// whose read end is returned (see `await_init`); the shim starts a session of its
/// own (setsid) first thing. No `pre_exec`, so std spawns with posix_spawn (a vfork-style
/// clone): forking the daemon would copy its page tables and file table, which grow with
/// the number of containers. The child is handed to tokio, which reaps it when it exits
/// (the shim outlives the daemon otherwise, and is then reparented to init).
fn spawn_detached(program: &Path, args: &[String]) -> std::io::Result<Option<OwnedFd>> {
    let mut cmd = Command::new(program);
    cmd.arg("shim").args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    cmd.current_dir("/");
    if tokio::runtime::Handle::try_current().is_ok() {
        let mut child = tokio::process::Command::from(cmd).kill_on_drop(false).spawn()?;
        let notify = child.stdout.take().and_then(|s| s.into_owned_fd().ok());
        drop(child);
        Ok(notify)
    } else {
        // Outside a runtime (tools, tests): a thread waits for it.
        let mut child = cmd.spawn()?;
        let notify = child.stdout.take().map(OwnedFd::from);
        std::thread::spawn(move || child.wait());
        Ok(notify)
    }
}
