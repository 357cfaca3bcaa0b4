//! Container runtime: images, OCI bundles, runc, logs, exec.
//!
//! [`Runtime`] keeps images (root filesystems imported from tarballs or `docker save`
//! archives) under `data_root/images`, and one OCI bundle per container under
//! `data_root/containers/<id>`. Each run of a container is supervised by a small *shim*
//! process ([`shim_main`]) that runs `runc run`, writes the container's output to a
//! docker `json-file` style log, and records the exit code, so containers survive a restart
//! of the daemon.
//!
//! # The shim program
//!
//! [`Runtime::start`] spawns `<exe> shim <args...>`, where `<exe>` is the program named by
//! the environment variable `COVE_SHIM_EXE` when it is set (tests point it at the
//! `cove-test-shim` binary of this crate), else [`std::env::current_exe`]. The binary's
//! `main` must hand everything after the `shim` word to [`shim_main`] and exit with the code
//! it returns, for example:
//!
//! ```no_run
//! let args: Vec<String> = std::env::args().collect();
//! if args.get(1).map(String::as_str) == Some("shim") {
//!     std::process::exit(cove_runtime::shim_main(&args[2..]));
//! }
//! ```
//!
//! `runc` is found through the environment variable `COVE_RUNC`, else `PATH`, else
//! `/usr/sbin/runc`, `/usr/bin/runc`, `/usr/local/sbin/runc`, `/usr/local/bin/runc`.
#![warn(missing_docs)]

mod bundle;
mod exec;
mod extract;
mod fsutil;
mod image;
mod logs;
mod reference;
mod run;
mod shim;
mod shim_mounts;
mod timefmt;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use cove_model::Error;
use serde::{Deserialize, Serialize};

pub use logs::LogFollower;
pub use shim::shim_main;

/// The container runtime: image store, OCI bundles, runc-driven container processes.
///
/// Cheap to clone; clones share the same directories and image-store lock.
#[derive(Debug, Clone)]
pub struct Runtime {
    data_root: PathBuf,
    exec_root: PathBuf,
    runc: Option<PathBuf>,
    image_lock: Arc<Mutex<()>>,
    cgroup_parent: String,
}

/// The cgroup containers' cgroups go under unless told otherwise (`/cove/<id>`).
pub const DEFAULT_CGROUP_PARENT: &str = "/cove";

/// How a container's bundle is networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BundleNetwork {
    /// The container has its own network namespace (a sandbox the controller made) and its
    /// own UTS namespace (hostname).
    Sandbox,
    /// The container shares the host's network and UTS namespaces; `/sys` is bind-mounted.
    Host,
}

/// Everything needed to write a container's OCI bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleSpec {
    /// Container id (`[A-Za-z0-9][A-Za-z0-9_.-]*`, used in paths).
    pub id: String,
    /// Id of the image whose root filesystem is the container's lower layer.
    pub image_id: String,
    /// Process arguments: entrypoint followed by cmd, already resolved.
    pub args: Vec<String>,
    /// `KEY=value` environment (PATH and HOSTNAME are added when absent).
    pub env: Vec<String>,
    /// Working directory (absolute; empty means `/`).
    pub cwd: String,
    /// Hostname (ignored for [`BundleNetwork::Host`], which keeps the host's UTS namespace).
    pub hostname: String,
    /// NIS domain name (may be empty).
    pub domainname: String,
    /// Content of the container's `/etc/hosts`.
    pub hosts: String,
    /// Content of the container's `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// Sandbox or host networking.
    pub network: BundleNetwork,
}

/// An image as the API shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `sha256:<hex>`.
    pub id: String,
    /// `name:tag` references pointing at this image, sorted.
    pub tags: Vec<String>,
    /// Creation time, RFC 3339 with nanoseconds.
    pub created: String,
    /// Bytes of regular files in the root filesystem.
    pub size: u64,
    /// Image config `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// Image config `Cmd`.
    pub cmd: Vec<String>,
    /// Image config `Env`.
    pub env: Vec<String>,
    /// Image config `WorkingDir`.
    pub working_dir: String,
    /// Image config `ExposedPorts` keys (`80/tcp`), sorted.
    pub exposed_ports: Vec<String>,
}

/// The state of a container's current (or last) run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// The container's init process is running.
    Running {
        /// Init pid, as seen from the daemon's pid namespace.
        pid: u32,
    },
    /// The last run exited and has not been cleaned up yet.
    Exited {
        /// Exit code (128 + signal when killed by a signal).
        code: i32,
        /// When it exited, RFC 3339 with nanoseconds.
        finished_at: String,
    },
    /// Never started, cleaned up after its run, or a start still in progress.
    NotRunning,
}

/// A process to run inside a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecSpec {
    /// Command and arguments.
    pub cmd: Vec<String>,
    /// Extra `KEY=value` environment, overriding the container's.
    pub env: Vec<String>,
    /// Working directory (default: the container's).
    pub working_dir: Option<String>,
    /// Pipe stdin (else `/dev/null`).
    pub stdin: bool,
}

/// Which output stream a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One entry of a container's log: a line (or a 16 KiB piece of a longer one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Stream it was written to.
    pub stream: Stream,
    /// The bytes, including the trailing newline when there was one.
    pub line: Vec<u8>,
    /// When the shim read it, RFC 3339 with nanoseconds.
    pub time: String,
}

impl Runtime {
    /// A runtime keeping images under `data_root/images`, containers under
    /// `data_root/containers` (e.g. `/var/lib/cove`), and runc state and shim pid files under
    /// `exec_root` (e.g. `/run/cove`: `runc --root exec_root/runc`,
    /// `exec_root/shims/<id>`). Creates the directories.
    pub fn new(data_root: &Path, exec_root: &Path) -> Result<Runtime, Error> {
        let abs = |p: &Path| {
            std::path::absolute(p)
                .map_err(|e| Error::invalid(format!("invalid path {}: {e}", p.display())))
        };
        let rt = Runtime {
            data_root: abs(data_root)?,
            exec_root: abs(exec_root)?,
            runc: find_runc(),
            image_lock: Arc::new(Mutex::new(())),
            cgroup_parent: DEFAULT_CGROUP_PARENT.into(),
        };
        for dir in [rt.images_dir(), rt.containers_dir(), rt.runc_root(), rt.shims_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
        }
        // Leftovers of interrupted imports and loads.
        let tmp = rt.images_dir().join("tmp");
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        Ok(rt)
    }

    /// Put the containers' cgroups under `parent` (`--cgroup-parent`, an absolute cgroup
    /// path such as `/cove`) instead of [`DEFAULT_CGROUP_PARENT`].
    pub fn with_cgroup_parent(mut self, parent: &str) -> Result<Runtime, Error> {
        let ok = parent.starts_with('/')
            && parent.len() > 1
            && parent[1..].split('/').all(|c| {
                !c.is_empty()
                    && c != "."
                    && c != ".."
                    && c.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
            });
        if !ok {
            return Err(Error::invalid(format!(
                "invalid cgroup parent {parent:?}: expected an absolute path like /cove"
            )));
        }
        self.cgroup_parent = parent.to_string();
        Ok(self)
    }

    /// The cgroup (path inside each hierarchy) of container `id`.
    pub(crate) fn cgroup_path(&self, id: &str) -> String {
        format!("{}/{id}", self.cgroup_parent)
    }

    fn images_dir(&self) -> PathBuf {
        self.data_root.join("images")
    }

    fn containers_dir(&self) -> PathBuf {
        self.data_root.join("containers")
    }

    fn runc_root(&self) -> PathBuf {
        self.exec_root.join("runc")
    }

    fn shims_dir(&self) -> PathBuf {
        self.exec_root.join("shims")
    }

    /// The bundle directory of container `id` (after validating the id).
    fn bundle_dir(&self, id: &str) -> Result<PathBuf, Error> {
        validate_id(id)?;
        Ok(self.containers_dir().join(id))
    }

    /// The run-state directory of container `id` (shim.pid, init.pid, runc.log).
    fn state_dir(&self, id: &str) -> Result<PathBuf, Error> {
        validate_id(id)?;
        Ok(self.shims_dir().join(id))
    }

    fn runc(&self) -> Result<&Path, Error> {
        self.runc.as_deref().ok_or_else(|| {
            Error::unavailable("runc not found: install runc or set COVE_RUNC to its path")
        })
    }
}

/// Container ids end up in paths and runc arguments: keep them to a safe alphabet.
fn validate_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("invalid container id {id:?}")))
    }
}

fn find_runc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COVE_RUNC") {
        return Some(PathBuf::from(p));
    }
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("runc")).collect())
        .unwrap_or_default();
    for d in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        candidates.push(Path::new(d).join("runc"));
    }
    candidates.into_iter().find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(validate_id("abc123").is_ok());
        assert!(validate_id("a_b.c-d").is_ok());
        for bad in ["", "../x", "a/b", ".x", "-x", "a b", "a\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn new_creates_dirs() {
        let d = tempfile::tempdir().unwrap();
        let rt = Runtime::new(&d.path().join("data"), &d.path().join("run")).unwrap();
        assert!(rt.images_dir().is_dir());
        assert!(rt.containers_dir().is_dir());
        assert!(rt.runc_root().is_dir());
        assert!(rt.shims_dir().is_dir());
    }
}
