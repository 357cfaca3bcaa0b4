//! The shim's own mount namespace. The container's root filesystem is mounted there, not in
//! the daemon's namespace, and the daemon's per-sandbox network-namespace mounts are dropped
//! from it. runc copies the mount namespace it starts in for the container and then reads
//! `/proc/self/mountinfo` several times, so a namespace holding two mounts per container on
//! the host would make every start O(containers); this one holds the host's own mounts,
//! this container's root filesystem and its network namespace, whatever the count.
//!
//! The mounts live as long as the namespace: when the shim and the container are gone, the
//! kernel tears them down (including the overlay's final sync), off the daemon's path.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::fsutil::{copy_tree, is_mount_point};

/// What the shim mounts for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootfsPlan {
    /// The container's bundle (`rootfs/`, `upper/`, `work/`, `copy/` live there).
    pub(crate) bundle: PathBuf,
    /// The image's root filesystem: the overlay's lower layer.
    pub(crate) lower: PathBuf,
    /// The sandbox's network namespace file (a bind mount in the daemon's namespace), and
    /// where config.json expects it: a path outside the network-namespace directory.
    pub(crate) netns: Option<(PathBuf, PathBuf)>,
}

fn err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Enter a private mount namespace and mount what runc needs there (see the module docs).
pub(crate) fn prepare(plan: &RootfsPlan) -> Result<(), String> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| err("unshare the mount namespace", e))?;
    // Nothing mounted here may propagate back to the host.
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| err("make the mounts private", e))?;
    if let Some((ns, aside)) = &plan.netns {
        std::fs::write(aside, b"").map_err(|e| err(format!("create {}", aside.display()), e))?;
        mount(Some(ns), aside, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| err(format!("bind the network namespace {}", ns.display()), e))?;
        // The directory of every sandbox's namespace is a mount of its own (the daemon
        // makes it one): one lazy unmount drops all of them from this namespace.
        if let Some(dir) = ns.parent().filter(|d| is_mount_point(d)) {
            umount2(dir, MntFlags::MNT_DETACH)
                .map_err(|e| err(format!("drop {} from the namespace", dir.display()), e))?;
        }
    }
    mount_rootfs(&plan.bundle, &plan.lower)
}

/// An overlay of the image with the bundle's `upper/`, or, where overlayfs fails (some
/// nested setups), a bind mount of a private copy made once.
fn mount_rootfs(bundle: &Path, lower: &Path) -> Result<(), String> {
    let rootfs = bundle.join("rootfs");
    let copy = bundle.join("copy");
    if !copy.is_dir() {
        match mount_overlay(lower, &bundle.join("upper"), &bundle.join("work"), &rootfs) {
            Ok(()) => return Ok(()),
            Err(e) => eprintln!("cove shim: overlay mount failed ({e}), using a copy of the image"),
        }
        let tmp = bundle.join("copy.tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| err("remove partial copy", e))?;
        }
        copy_tree(lower, &tmp).map_err(|e| err("copy image root filesystem", e))?;
        std::fs::rename(&tmp, &copy).map_err(|e| err("copy image root filesystem", e))?;
    }
    mount(Some(&copy), &rootfs, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| err("bind mount the root filesystem", e))
}

fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<(), String> {
    let paths = [lower, upper, work].map(|p| p.to_string_lossy().into_owned());
    if paths.iter().any(|p| p.contains(',') || p.contains(':')) {
        return Err("a path contains ',' or ':'".into());
    }
    let opts = format!("lowerdir={},upperdir={},workdir={}", paths[0], paths[1], paths[2]);
    mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
        .map_err(|e| e.to_string())
}
