//! OCI bundles: `data_root/containers/<id>/` holds `bundle.json` (the [`BundleSpec`]),
//! `config.json`, the generated `hosts`, `hostname` and `resolv.conf`, and the overlay
//! directories `upper/`, `work/` and the mount point `rootfs/` (or `copy/`, a private copy
//! of the image bind-mounted on `rootfs/` where overlayfs is not available).

pub(crate) mod oci;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use cove_model::Error;

use crate::fsutil::{atomic_write, is_mount_point, unmount_all};
use crate::{BundleSpec, Runtime};

/// The generated files a container gets bind-mounted under /etc.
pub(crate) const ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

fn io_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("{what}: {e}"))
}

/// Truncate and write `path` in place (same inode, so bind mounts of it see the change).
fn write_in_place(path: &Path, content: &str) -> Result<(), Error> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io_err(format!("write {}", path.display()), e))?;
    f.write_all(content.as_bytes()).map_err(|e| io_err(format!("write {}", path.display()), e))
}

impl Runtime {
    /// Write the OCI bundle of `spec.id`: `data_root/containers/<id>/{config.json, hostname,
    /// hosts, resolv.conf}` and the directories of its overlay root filesystem
    /// (`upper/`, `work/`, `rootfs/`). Called at create; calling it again rewrites
    /// config.json and the generated files (in place).
    pub fn create_bundle(&self, spec: &BundleSpec) -> Result<(), Error> {
        let dir = self.bundle_dir(&spec.id)?;
        if spec.args.is_empty() {
            return Err(Error::invalid("no command specified"));
        }
        if !spec.cwd.is_empty() && !spec.cwd.starts_with('/') {
            return Err(Error::invalid(format!(
                "the working directory '{}' is invalid, it needs to be an absolute path",
                spec.cwd
            )));
        }
        self.image_rootfs(&spec.image_id)?;
        for sub in ["upper", "work", "rootfs"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| io_err(format!("create bundle of container {}", spec.id), e))?;
        }
        let data = serde_json::to_vec_pretty(spec).map_err(|e| io_err("encode bundle spec", e))?;
        atomic_write(&dir.join("bundle.json"), &data)
            .map_err(|e| io_err("write bundle.json", e))?;
        self.write_config(spec, None)?;
        write_in_place(&dir.join("hostname"), &format!("{}\n", spec.hostname))?;
        write_in_place(&dir.join("hosts"), &spec.hosts)?;
        write_in_place(&dir.join("resolv.conf"), &spec.resolv_conf)?;
        Ok(())
    }

    /// Rewrite one of the generated files (`hosts`, `resolv.conf`, `hostname`) in place:
    /// truncate and write the same inode, so a running container's bind mount sees it.
    pub fn write_etc_file(&self, id: &str, name: &str, content: &str) -> Result<(), Error> {
        let dir = self.bundle_dir(id)?;
        if !ETC_FILES.contains(&name) {
            return Err(Error::invalid(format!("cannot write {name:?}: not a generated file")));
        }
        if !dir.is_dir() {
            return Err(Error::not_found(format!("no bundle for container {id}")));
        }
        write_in_place(&dir.join(name), content)
    }

    /// The spec the bundle of `id` was created with.
    pub(crate) fn load_spec(&self, id: &str) -> Result<BundleSpec, Error> {
        let path = self.bundle_dir(id)?.join("bundle.json");
        let data = std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found(format!("no bundle for container {id}"))
            } else {
                io_err(format!("read {}", path.display()), e)
            }
        })?;
        serde_json::from_slice(&data).map_err(|e| io_err(format!("read {}", path.display()), e))
    }

    /// (Re)write config.json, joining the network namespace at `netns` (None: host's).
    pub(crate) fn write_config(
        &self,
        spec: &BundleSpec,
        netns: Option<&Path>,
    ) -> Result<(), Error> {
        let dir = self.bundle_dir(&spec.id)?;
        let cfg = oci::config(spec, &dir, netns, nofile_limit(), &self.cgroup_path(&spec.id));
        let data = serde_json::to_vec_pretty(&cfg).map_err(|e| io_err("encode config.json", e))?;
        atomic_write(&dir.join("config.json"), &data).map_err(|e| io_err("write config.json", e))
    }

    /// Unmount the container's root filesystem (idempotent).
    ///
    /// The lazy unmount detaches the mount at once, but the final teardown of an overlay
    /// syncs its upper layer (~100 ms on ext4 after writes), and the kernel runs it in the
    /// thread whose syscall dropped the last reference. So the unmount runs on a helper
    /// thread, and this returns as soon as the mount is gone from the namespace.
    pub(crate) fn unmount_rootfs(&self, id: &str) -> Result<(), Error> {
        let rootfs = self.bundle_dir(id)?.join("rootfs");
        if !is_mount_point(&rootfs) {
            return Ok(());
        }
        let err = |e: &dyn std::fmt::Display| {
            io_err(format!("unmount root filesystem of container {id}"), e)
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let target = rootfs.clone();
        std::thread::Builder::new()
            .name("cove-umount".into())
            .spawn(move || {
                let _ = tx.send(unmount_all(&target));
            })
            .map_err(|e| err(&e))?;
        let began = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(1)) {
                Ok(res) => return res.map_err(|e| err(&e)),
                Err(RecvTimeoutError::Disconnected) => return Err(err(&"unmount thread died")),
                Err(RecvTimeoutError::Timeout) => {}
            }
            if !is_mount_point(&rootfs) {
                return Ok(());
            }
            if began.elapsed() > Duration::from_secs(30) {
                return Err(err(&"timed out"));
            }
        }
    }

    pub(crate) fn rootfs_path(&self, id: &str) -> Result<PathBuf, Error> {
        Ok(self.bundle_dir(id)?.join("rootfs"))
    }
}

/// Docker's RLIMIT_NOFILE (1048576), unless this process can neither reach it within its
/// own hard limit nor raise that (no CAP_SYS_RESOURCE, as in some sandboxes): then its hard
/// limit, which runc can set.
fn nofile_limit() -> u64 {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(_, h)| h)
        .unwrap_or(oci::DEFAULT_NOFILE);
    if hard >= oci::DEFAULT_NOFILE || has_cap_sys_resource() {
        oci::DEFAULT_NOFILE
    } else {
        hard
    }
}

fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}
