//! Running commands: inside namespaces (setns in the child), with a death signal, with a
//! time limit; and [`CmdResult`].

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::sched::CloneFlags;

/// Open handles on the namespaces of a fake host or a neighbour (kept while it lives).
#[derive(Debug)]
pub(crate) struct NsFds {
    pub net: OwnedFd,
    pub mnt: OwnedFd,
    /// The UTS namespace (hostname), joined by commands too.
    pub uts: Option<OwnedFd>,
    /// Inode of the network namespace.
    pub net_ino: u64,
    /// Inode of the mount namespace.
    pub mnt_ino: u64,
}

impl NsFds {
    /// Open `/proc/<pid>/ns/{net,mnt}`.
    pub fn open(pid: u32) -> io::Result<Arc<NsFds>> {
        use std::os::unix::fs::MetadataExt;
        let net = File::open(format!("/proc/{pid}/ns/net"))?;
        let mnt = File::open(format!("/proc/{pid}/ns/mnt"))?;
        let uts = File::open(format!("/proc/{pid}/ns/uts"))?;
        let (net_ino, mnt_ino) = (net.metadata()?.ino(), mnt.metadata()?.ino());
        Ok(Arc::new(NsFds {
            net: net.into(),
            mnt: mnt.into(),
            uts: Some(uts.into()),
            net_ino,
            mnt_ino,
        }))
    }
}

/// The default limit for one command: `COVE_NETLAB_TIMEOUT` seconds, else 120 s.
pub(crate) fn default_timeout() -> Duration {
    let secs = std::env::var("COVE_NETLAB_TIMEOUT").ok().and_then(|s| s.parse().ok());
    Duration::from_secs(secs.unwrap_or(120))
}

/// Make the child die with SIGKILL when the thread that spawned it ends.
pub(crate) fn set_death_signal(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls (prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// A command for `argv` that runs inside the namespaces of `ns` (network and mount; its root
/// and working directory become that mount namespace's root), with a death signal.
pub(crate) fn ns_command(ns: &Arc<NsFds>, argv: &[&str]) -> Command {
    assert!(!argv.is_empty(), "netlab: empty command");
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    let ns = Arc::clone(ns);
    // SAFETY: the closure runs between fork and exec and only calls setns(2) on descriptors
    // kept open by the captured Arc; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            nix::sched::setns(ns.net.as_fd(), CloneFlags::CLONE_NEWNET)?;
            nix::sched::setns(ns.mnt.as_fd(), CloneFlags::CLONE_NEWNS)?;
            if let Some(uts) = &ns.uts {
                nix::sched::setns(uts.as_fd(), CloneFlags::CLONE_NEWUTS)?;
            }
            Ok(())
        });
    }
    set_death_signal(&mut cmd);
    cmd
}

/// Run `f` on a fresh thread that has joined the network namespace of `ns` (sockets made
/// there stay in that namespace wherever they are used later).
pub(crate) fn in_netns<T: Send>(ns: &Arc<NsFds>, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            if let Err(e) = nix::sched::setns(ns.net.as_fd(), CloneFlags::CLONE_NEWNET) {
                panic!("netlab: setns(net) on a helper thread failed: {e}");
            }
            f()
        });
        h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawn `cmd` from a thread that lives as long as the test process, so that a death signal
/// set on it (see [`set_death_signal`]) fires when the process ends, not when the test's
/// thread does.
pub(crate) fn spawn_long_lived(cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("netlab-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("netlab: cannot start the spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.send((cmd, reply_tx)).map_err(|_| io::Error::other("netlab spawner thread is gone"))?;
    reply_rx.recv().map_err(|_| io::Error::other("netlab spawner thread is gone"))?
}

/// Run `cmd` to completion with piped output, feeding `stdin` (or /dev/null). The child gets
/// its own process group; on timeout the whole group is killed and this panics with what
/// the command printed. `label` names the command in messages.
pub(crate) fn run_with_timeout(
    mut cmd: Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
    label: &str,
) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.process_group(0);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("netlab: cannot run {label}: {e}"));
    let pid = child.id() as libc::pid_t;
    let feeder = match (stdin, child.stdin.take()) {
        (Some(data), Some(mut pipe)) => {
            let data = data.to_vec();
            Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            }))
        }
        _ => None,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let result = match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => {
            // SAFETY: kill(2) on the process group we created for the child.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let out = rx.recv().ok().and_then(|r| r.ok());
            let (so, se) = out.map(|o| (lossy(&o.stdout), lossy(&o.stderr))).unwrap_or_default();
            panic!(
                "netlab: {label} did not finish within {timeout:?}; killed it\n\
                 --- stdout ---\n{so}\n--- stderr ---\n{se}"
            );
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    result.unwrap_or_else(|e| panic!("netlab: waiting for {label}: {e}"))
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The exit code of a finished process; 128 + signal when it was killed by one.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Quote `argv` for messages.
pub(crate) fn show_argv(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+".contains(c))
            {
                a.to_string()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a finished command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmdResult {
    /// The command line, for messages.
    pub cmd: String,
    /// Exit code (128 + signal number when killed by a signal).
    pub status: i32,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

impl CmdResult {
    /// Wrap an [`Output`] of the command `cmd`.
    pub fn from_output(cmd: impl Into<String>, out: &Output) -> CmdResult {
        CmdResult {
            cmd: cmd.into(),
            status: exit_code(out.status),
            stdout: lossy(&out.stdout),
            stderr: lossy(&out.stderr),
        }
    }

    /// Whether the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// Panic (showing stdout and stderr) unless the command exited with status 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        if self.status != 0 {
            panic!("expected success, got status {}\n{self}", self.status);
        }
        self
    }

    /// Panic (showing stdout and stderr) unless the command exited with a nonzero status.
    #[track_caller]
    pub fn fails(&self) -> &Self {
        if self.status == 0 {
            panic!("expected failure, got status 0\n{self}");
        }
        self
    }

    /// Panic unless stderr contains `needle` (case-insensitive).
    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Self {
        if !self.stderr.to_lowercase().contains(&needle.to_lowercase()) {
            panic!("expected stderr to contain {needle:?}\n{self}");
        }
        self
    }

    /// Panic unless stdout contains `needle`.
    #[track_caller]
    pub fn stdout_has(&self, needle: &str) -> &Self {
        if !self.stdout.contains(needle) {
            panic!("expected stdout to contain {needle:?}\n{self}");
        }
        self
    }

    /// Stdout with surrounding whitespace removed.
    pub fn out(&self) -> &str {
        self.stdout.trim()
    }

    /// Stdout parsed as JSON (panics with the output when it is not JSON).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{self}"))
    }
}

impl std::fmt::Display for CmdResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\n[status {}]\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmd, self.status, self.stdout, self.stderr
        )
    }
}
