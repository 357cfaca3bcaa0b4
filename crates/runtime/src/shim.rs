//! The shim: one small process per container run, detached from the daemon, that runs
//! `runc run`, copies the container's stdout and stderr to a docker json-file log, and
//! records the exit code, so a container outlives a daemon restart.
//!
//! Files it writes:
//! - `<state>/shim.pid`: its own pid (first thing);
//! - `<state>/init.pid`: the container init pid (written by `runc --pid-file`);
//! - `<state>/runc.log`: runc's own log (json);
//! - `<bundle>/container.log`: the container output, one JSON object per line;
//! - `<bundle>/start-error`: runc's error text when the container never started;
//! - `<bundle>/exit`: `{"code":N,"finished_at":"..."}`, written last, atomically.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write;
use crate::{timefmt, Stream};

/// Longest log entry; longer lines are split, as Docker's json-file driver does.
pub(crate) const MAX_LOG_LINE: usize = 16 * 1024;

/// How long output may keep coming after runc exited (a process that escaped with the
/// pipes) before the shim stops copying.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Exit code recorded when the container's init was reaped by someone else (it cannot
/// happen while the shim is the subreaper, but the record must say something).
const LOST_INIT_CODE: i32 = 255;

/// The record of a finished run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    pub(crate) code: i32,
    pub(crate) finished_at: String,
}

/// One line of container.log (docker json-file format).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LogLine {
    pub(crate) log: String,
    pub(crate) stream: Stream,
    pub(crate) time: String,
}

pub(crate) fn exit_path(bundle: &Path) -> PathBuf {
    bundle.join("exit")
}

pub(crate) fn start_error_path(bundle: &Path) -> PathBuf {
    bundle.join("start-error")
}

pub(crate) fn log_path(bundle: &Path) -> PathBuf {
    bundle.join("container.log")
}

pub(crate) fn shim_pid_path(state: &Path) -> PathBuf {
    state.join("shim.pid")
}

pub(crate) fn init_pid_path(state: &Path) -> PathBuf {
    state.join("init.pid")
}

/// The exit record of the last run, if it finished.
pub(crate) fn read_exit(bundle: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(exit_path(bundle)).ok()?).ok()
}

/// The exit code Docker reports for a container that failed to start with `message`.
pub(crate) fn start_failure_code(message: &str) -> i32 {
    if message.contains("executable file not found")
        || message.contains("no such file or directory")
    {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        128
    }
}

/// The shim's arguments (after the `shim` word).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShimArgs {
    pub(crate) id: String,
    pub(crate) bundle: PathBuf,
    pub(crate) state: PathBuf,
    pub(crate) runc: PathBuf,
    pub(crate) runc_root: PathBuf,
    /// The image's root filesystem (the overlay's lower layer).
    pub(crate) lower: PathBuf,
    /// The sandbox's network namespace, if the container has one.
    pub(crate) netns: Option<PathBuf>,
}

/// Where config.json points runc for the network namespace: a bind mount of the sandbox's
/// namespace that the shim makes in its own mount namespace (see `shim_mounts`).
pub(crate) fn netns_aside_path(state: &Path) -> PathBuf {
    state.join("netns")
}

impl ShimArgs {
    pub(crate) fn to_args(&self) -> Vec<String> {
        let p = |p: &Path| p.to_string_lossy().into_owned();
        vec![
            "--id".into(),
            self.id.clone(),
            "--bundle".into(),
            p(&self.bundle),
            "--state".into(),
            p(&self.state),
            "--runc".into(),
            p(&self.runc),
            "--runc-root".into(),
            p(&self.runc_root),
            "--lower".into(),
            p(&self.lower),
        ]
        .into_iter()
        .chain(self.netns.iter().flat_map(|n| ["--netns".to_string(), p(n)]))
        .collect()
    }

    pub(crate) fn parse(args: &[String]) -> Result<ShimArgs, String> {
        let (mut id, mut bundle, mut state, mut runc, mut root) = (None, None, None, None, None);
        let (mut lower, mut netns) = (None, None);
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let v = it.next().ok_or_else(|| format!("missing value for {k}"))?.clone();
            match k.as_str() {
                "--id" => id = Some(v),
                "--bundle" => bundle = Some(PathBuf::from(v)),
                "--state" => state = Some(PathBuf::from(v)),
                "--runc" => runc = Some(PathBuf::from(v)),
                "--runc-root" => root = Some(PathBuf::from(v)),
                "--lower" => lower = Some(PathBuf::from(v)),
                "--netns" => netns = Some(PathBuf::from(v)),
                _ => return Err(format!("unknown argument {k}")),
            }
        }
        Ok(ShimArgs {
            id: id.ok_or("missing --id")?,
            bundle: bundle.ok_or("missing --bundle")?,
            state: state.ok_or("missing --state")?,
            runc: runc.ok_or("missing --runc")?,
            runc_root: root.ok_or("missing --runc-root")?,
            lower: lower.ok_or("missing --lower")?,
            netns,
        })
    }
}

/// Entry point of the shim, run as `<cove binary> shim <args...>`: pass the arguments after
/// `shim`, exit with the returned code. It ignores SIGTERM, SIGINT and SIGHUP (it must
/// survive the daemon being killed; the container gets signals through the runtime), runs
/// `runc run` with stdin on /dev/null, copies stdout and stderr to `container.log` as
/// docker json-file lines, then writes the exit code and finish time atomically to the
/// `exit` file (and runc's error to `start-error` when the container never started).
pub fn shim_main(args: &[String]) -> i32 {
    let a = match ShimArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("cove shim: {e}");
            return 2;
        }
    };
    // A session of its own: signals to the daemon's session or terminal never reach it.
    let _ = nix::unistd::setsid();
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installing SIG_IGN has no handler code to run; no memory is touched.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let _ = atomic_write(&shim_pid_path(&a.state), format!("{}\n", std::process::id()).as_bytes());
    let record = run(&a);
    match atomic_write(&exit_path(&a.bundle), &serde_json::to_vec(&record).unwrap_or_default()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cove shim: write exit file: {e}");
            1
        }
    }
}

type Entry = (Stream, Vec<u8>, String);

/// One output pipe of the container: its read end and the partial line read so far.
struct Pipe {
    fd: OwnedFd,
    stream: Stream,
    cur: Vec<u8>,
    open: bool,
}

impl Pipe {
    /// Read what is there (the fd is non-blocking) and return the complete lines; at end of
    /// file the partial line too, and the pipe is marked closed.
    fn drain(&mut self, buf: &mut [u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        loop {
            match nix::unistd::read(&self.fd, buf) {
                Ok(0) => {
                    self.open = false;
                    if !self.cur.is_empty() {
                        out.push((self.stream, std::mem::take(&mut self.cur), timefmt::now()));
                    }
                    return out;
                }
                Ok(n) => {
                    let now = timefmt::now();
                    for line in split_lines(&mut self.cur, &buf[..n]) {
                        out.push((self.stream, line, now.clone()));
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return out,
                Err(_) => {
                    self.open = false;
                    return out;
                }
            }
        }
    }
}

/// A pipe whose read end is non-blocking and whose write end goes to runc (and through
/// it to the container) as stdout or stderr.
fn output_pipe(stream: Stream) -> std::io::Result<(Pipe, OwnedFd)> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok((Pipe { fd: r, stream, cur: Vec::new(), open: true }, w))
}

/// The exit code Docker reports for a wait status.
fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Run the container with `runc run --detach` as this process's child, with the shim as
/// the child subreaper: the container's init is reparented here when runc exits, so the
/// whole run costs one single-threaded shim process that sleeps in poll(2) until output or
/// a child's exit arrives (no runc process and no threads kept around per container).
fn run(a: &ShimArgs) -> ExitRecord {
    let fail = |msg: String| {
        let _ = atomic_write(&start_error_path(&a.bundle), msg.as_bytes());
        ExitRecord { code: start_failure_code(&msg), finished_at: timefmt::now() }
    };
    let mut log =
        match std::fs::OpenOptions::new().create(true).append(true).open(log_path(&a.bundle)) {
            Ok(f) => f,
            Err(e) => return fail(format!("open container log: {e}")),
        };
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        return fail(format!("become the child subreaper: {e}"));
    }
    // SIGCHLD is read from a signalfd; std's spawn gives runc an empty signal mask again.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    if let Err(e) = chld.thread_block() {
        return fail(format!("block SIGCHLD: {e}"));
    }
    let sigfd = match SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
        Ok(f) => f,
        Err(e) => return fail(format!("signalfd: {e}")),
    };
    let (mut out, out_w) = match output_pipe(Stream::Stdout) {
        Ok(p) => p,
        Err(e) => return fail(format!("create stdout pipe: {e}")),
    };
    let (mut err, err_w) = match output_pipe(Stream::Stderr) {
        Ok(p) => p,
        Err(e) => return fail(format!("create stderr pipe: {e}")),
    };
    let plan = crate::shim_mounts::RootfsPlan {
        bundle: a.bundle.clone(),
        lower: a.lower.clone(),
        netns: a.netns.clone().map(|n| (n, netns_aside_path(&a.state))),
    };
    if let Err(e) = crate::shim_mounts::prepare(&plan) {
        return fail(format!("prepare the container's mounts: {e}"));
    }
    let pid_file = init_pid_path(&a.state);
    let mut cmd = Command::new(&a.runc);
    cmd.arg("--root")
        .arg(&a.runc_root)
        .arg("--log")
        .arg(a.state.join("runc.log"))
        .args(["--log-format", "json", "run", "--detach", "--bundle"])
        .arg(&a.bundle)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&a.id)
        .current_dir(&a.bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    // SAFETY: the closure only calls signal(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            // Ignored dispositions survive exec: give runc (and the container) the defaults.
            for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    // The Command (and with it our copies of the pipes' write ends) is dropped right after
    // the spawn, so end of file on the pipes means the container's side closed them.
    let spawned = cmd.spawn();
    drop(cmd);
    let runc_pid = match spawned {
        Ok(c) => Pid::from_raw(c.id() as i32),
        Err(e) => return fail(format!("run {}: {e}", a.runc.display())),
    };

    // Output is held back until runc has started the container: before that, stderr is
    // runc's own error (the container never started), not the container's.
    let mut pending: Vec<Entry> = Vec::new();
    let mut runc_status: Option<WaitStatus> = None;
    let mut init_pid: Option<Pid> = None;
    let mut init_code: Option<i32> = None;
    // Children reaped before we knew which one was init (init can exit before runc does).
    let mut early: Vec<(Pid, i32)> = Vec::new();
    let mut exited_at: Option<Instant> = None;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let runc_done = runc_status.is_some();
        let finished = init_code.is_some() || runc_done && init_pid.is_none();
        if finished && exited_at.is_none() {
            exited_at = Some(Instant::now());
        }
        if finished && !out.open && !err.open {
            break;
        }
        let timeout = match exited_at {
            Some(t) => match DRAIN_GRACE.checked_sub(t.elapsed()) {
                Some(left) => PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
                None => break, // a process that escaped with the pipes: stop copying.
            },
            None => PollTimeout::NONE,
        };
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        for p in [&out, &err].into_iter().filter(|p| p.open) {
            fds.push(PollFd::new(p.fd.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => break,
        }
        drop(fds);
        let mut entries = out.drain(&mut buf);
        entries.extend(err.drain(&mut buf));
        if init_pid.is_some() {
            for e in &entries {
                write_entry(&mut log, e);
            }
        } else {
            pending.extend(entries);
        }
        while let Ok(Some(_)) = sigfd.read_signal() {}
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) => {
                    let (Some(pid), Some(code)) = (s.pid(), exit_code(s)) else { continue };
                    if pid == runc_pid {
                        runc_status = Some(s);
                    } else if Some(pid) == init_pid {
                        init_code = Some(code);
                    } else if init_pid.is_none() && early.len() < 64 {
                        early.push((pid, code));
                    }
                }
            }
        }
        if init_pid.is_none() && matches!(runc_status, Some(WaitStatus::Exited(_, 0))) {
            match crate::fsutil::read_pid(&pid_file) {
                Some(pid) => {
                    let pid = Pid::from_raw(pid as i32);
                    init_pid = Some(pid);
                    init_code = early.iter().find(|(p, _)| *p == pid).map(|(_, c)| *c);
                    early.clear();
                    for e in pending.drain(..) {
                        write_entry(&mut log, &e);
                    }
                    notify_started();
                }
                // runc said it started the container but wrote no pid: treat as a failure.
                None => runc_status = Some(WaitStatus::Exited(runc_pid, 255)),
            }
        }
    }
    if init_pid.is_some() {
        return ExitRecord {
            code: init_code.unwrap_or(LOST_INIT_CODE),
            finished_at: timefmt::now(),
        };
    }
    let mut stderr = Vec::new();
    for e in pending.drain(..) {
        match e.0 {
            Stream::Stderr => stderr.extend_from_slice(&e.1),
            Stream::Stdout => write_entry(&mut log, &e),
        }
    }
    let code = runc_status.and_then(exit_code).unwrap_or(255);
    let mut msg = String::from_utf8_lossy(&stderr).trim().to_string();
    if msg.is_empty() {
        msg = runc_log_errors(&a.state.join("runc.log"));
    }
    if msg.is_empty() {
        msg = format!("runc exited with code {code} before the container started");
    }
    fail(msg)
}

/// Tell the daemon waiting in `Runtime::start` that runc is done (the pid file is there):
/// a line on stdout (a pipe from the daemon), which is then pointed at /dev/null so the
/// daemon's end sees end of file and nothing else is ever written there.
fn notify_started() {
    let _ = std::io::stdout().write_all(b"started\n");
    let _ = std::io::stdout().flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(&null);
    }
}

/// The `error`-level messages of runc's json log.
fn runc_log_errors(path: &Path) -> String {
    let Ok(text) = std::fs::read_to_string(path) else { return String::new() };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_entry(log: &mut File, (stream, line, time): &Entry) {
    let rec = LogLine {
        log: String::from_utf8_lossy(line).into_owned(),
        stream: *stream,
        time: time.clone(),
    };
    if let Ok(mut data) = serde_json::to_vec(&rec) {
        data.push(b'\n');
        let _ = log.write_all(&data);
    }
}

/// Append `data` to the partial line `cur` and return the complete lines (with their
/// newline) and pieces of [`MAX_LOG_LINE`] bytes; the rest stays in `cur`.
pub(crate) fn split_lines(cur: &mut Vec<u8>, mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let room = MAX_LOG_LINE - cur.len();
        let window = &data[..data.len().min(room)];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) => {
                cur.extend_from_slice(&data[..=i]);
                out.push(std::mem::take(cur));
                data = &data[i + 1..];
            }
            None => {
                cur.extend_from_slice(window);
                data = &data[window.len()..];
                if cur.len() == MAX_LOG_LINE {
                    out.push(std::mem::take(cur));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let a = ShimArgs {
            id: "c1".into(),
            bundle: "/var/lib/cove/containers/c1".into(),
            state: "/run/cove/shims/c1".into(),
            runc: "/usr/sbin/runc".into(),
            runc_root: "/run/cove/runc".into(),
            lower: "/var/lib/cove/images/x/rootfs".into(),
            netns: Some("/run/cove/netns/c1".into()),
        };
        assert_eq!(ShimArgs::parse(&a.to_args()).unwrap(), a);
        let host = ShimArgs { netns: None, ..a };
        assert_eq!(ShimArgs::parse(&host.to_args()).unwrap(), host);
        assert!(ShimArgs::parse(&["--id".into()]).is_err());
        assert!(ShimArgs::parse(&["--bogus".into(), "x".into()]).is_err());
    }

    #[test]
    fn splits_lines_and_long_lines() {
        let mut cur = Vec::new();
        assert_eq!(split_lines(&mut cur, b"a\nbc"), vec![b"a\n".to_vec()]);
        assert_eq!(cur, b"bc");
        assert_eq!(split_lines(&mut cur, b"d\n\n"), vec![b"bcd\n".to_vec(), b"\n".to_vec()]);
        assert!(cur.is_empty());
        let long = vec![b'x'; MAX_LOG_LINE * 2 + 5];
        let lines = split_lines(&mut cur, &long);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.len() == MAX_LOG_LINE));
        assert_eq!(cur.len(), 5);
        // A newline right after a full piece.
        let mut cur = vec![b'y'; MAX_LOG_LINE - 1];
        let lines = split_lines(&mut cur, b"z\n");
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], b"\n");
    }

    #[test]
    fn failure_codes() {
        assert_eq!(start_failure_code("exec: \"x\": executable file not found in $PATH"), 127);
        assert_eq!(start_failure_code("exec /x: no such file or directory"), 127);
        assert_eq!(start_failure_code("exec /x: permission denied"), 126);
        assert_eq!(start_failure_code("cgroup trouble"), 128);
    }

    #[test]
    fn log_line_format() {
        let rec = LogLine {
            log: "hi\n".into(),
            stream: Stream::Stderr,
            time: "2024-01-01T00:00:00Z".into(),
        };
        assert_eq!(
            serde_json::to_string(&rec).unwrap(),
            r#"{"log":"hi\n","stream":"stderr","time":"2024-01-01T00:00:00Z"}"#
        );
    }
}
