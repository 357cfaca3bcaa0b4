//! Network namespaces: creation on a throwaway thread (no fork), removal, entering one on a
//! dedicated thread, and sysctl writes. Nothing here ever runs `setns`/`unshare` on a tokio
//! worker: every namespace switch happens on a fresh `std::thread` that exits afterwards.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::Cause;

/// Identity of a namespace file: (device, inode) of the nsfs inode it is bound to.
pub(crate) type NsId = (u64, u64);

/// Run `f` on a fresh OS thread (which may change its namespaces freely, since it exits
/// afterwards) and await its result without blocking the runtime.
pub(crate) async fn on_thread<T, F>(f: F) -> Result<T, Cause>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Cause> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("cove-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(Cause::Os)?;
    rx.await.map_err(|_| Cause::Protocol("namespace thread panicked".into()))?
}

/// The device number of nsfs, read from the calling thread's own netns handle.
pub(crate) fn nsfs_dev() -> Result<u64, Cause> {
    Ok(std::fs::metadata("/proc/thread-self/ns/net")?.dev())
}

/// Check that `path` is a netns bind mount and return its identity.
pub(crate) fn ns_id(path: &Path, nsfs_dev: u64) -> Result<NsId, Cause> {
    match std::fs::metadata(path) {
        Ok(m) if m.dev() == nsfs_dev => Ok((m.dev(), m.ino())),
        Ok(_) => Err(Cause::NotNetns(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Cause::NoSuchNetns(path.to_owned())),
        Err(e) => Err(Cause::Os(e)),
    }
}

/// Open the netns at `path` (checked to be one) for `setns` or `IFLA_NET_NS_FD`.
pub(crate) fn open(path: &Path, nsfs_dev: u64) -> Result<File, Cause> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Cause::NoSuchNetns(path.to_owned()),
        _ => Cause::Os(e),
    })?;
    if file.metadata()?.dev() != nsfs_dev {
        return Err(Cause::NotNetns(path.to_owned()));
    }
    Ok(file)
}

/// Move the calling thread into the netns at `path`. Only for throwaway threads.
pub(crate) fn enter(path: &Path, nsfs_dev: u64) -> Result<(), Cause> {
    let f = open(path, nsfs_dev)?;
    setns(&f, CloneFlags::CLONE_NEWNET)?;
    Ok(())
}

/// On the calling (throwaway) thread: create the mount-point file, move the thread into a
/// new netns and bind-mount it onto `path`. On failure nothing is left behind.
pub(crate) fn create_here(path: &Path, nsfs_dev: u64) -> Result<NsId, Cause> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let created = match std::fs::symlink_metadata(path) {
        Ok(m) if m.dev() == nsfs_dev => {
            return Err(Cause::Os(io::Error::from_raw_os_error(libc::EEXIST)))
        }
        Ok(m) if m.is_file() => false, // a stale mount-point file (crash): reuse it
        Ok(_) => return Err(Cause::Os(io::Error::from_raw_os_error(libc::EEXIST))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            OpenOptions::new().write(true).create_new(true).mode(0o444).open(path)?;
            true
        }
        Err(e) => return Err(e.into()),
    };
    let undo_file = |c: Cause| {
        if created {
            let _ = std::fs::remove_file(path);
        }
        c
    };
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| undo_file(e.into()))?;
    mount(Some("/proc/thread-self/ns/net"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| undo_file(e.into()))?;
    ns_id(path, nsfs_dev).inspect_err(|_| {
        let _ = remove(path);
    })
}

/// Make `dir` (created if missing) a mount of its own, private: every sandbox's namespace
/// is bind-mounted below it, so a container shim can drop all of them from its own mount
/// namespace with one lazy unmount (see the runtime's `shim_mounts`). Idempotent.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), Cause> {
    std::fs::create_dir_all(dir)?;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev());
    let parent = dir.parent().unwrap_or(Path::new("/"));
    // A mount of its own has another device than its parent, or the same device and is
    // listed as a mount point: a bind of a directory onto itself keeps the device, so
    // look at mountinfo for that case.
    let own_mount = dev(dir)? != dev(parent)? || {
        let canon = std::fs::canonicalize(dir)?;
        std::fs::read_to_string("/proc/self/mountinfo")?
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|m| Path::new(m) == canon)
    };
    if !own_mount {
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
    }
    mount(None::<&str>, dir, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)?;
    Ok(())
}

/// Unmount (lazily) and remove a netns mount point. A missing path is fine.
pub(crate) fn remove(path: &Path) -> Result<(), Cause> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a stale file); ENOENT: already gone.
        Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// `/proc/sys/<key>` after checking that `key` stays below /proc/sys.
pub(crate) fn sysctl_path(key: &str) -> Result<PathBuf, Cause> {
    let rel = Path::new(key);
    let ok = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        return Err(Cause::Invalid(format!(
            "sysctl key {key:?} is not a relative path below /proc/sys"
        )));
    }
    Ok(Path::new("/proc/sys").join(rel))
}

/// Write a sysctl in the calling thread's netns (`/proc/sys/net` is resolved per opener).
/// For the host's namespace; a sandbox's goes through [`write_sysctl_own_proc`].
pub(crate) fn write_sysctl(key: &str, value: &str) -> Result<(), Cause> {
    let path = sysctl_path(key)?;
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes())?;
    Ok(())
}

/// Write a sysctl of the calling thread's netns through a procfs instance of its own,
/// created for this write (`fsopen`/`fsmount`: detached, in no mount namespace) and gone
/// when its fd closes.
///
/// Why not `/proc`: every network namespace that ever resolved `/proc/sys/net` through a
/// procfs instance leaves its own dentry named `net` there, all in one hash chain, and
/// every later lookup compares itself against each of them. With a sandbox per container
/// a write through `/proc` costs O(containers): 0.06 ms with no other namespace, 0.7 ms
/// with 2,000 (measured on this kernel), and it was half of a container start's growth
/// at 2,000. A fresh instance holds only this namespace's dentries: flat.
pub(crate) fn write_sysctl_own_proc(key: &str, value: &str) -> Result<(), Cause> {
    use rustix::fs::{Mode, OFlags};
    use rustix::mount::{FsMountFlags, FsOpenFlags, MountAttrFlags};
    sysctl_path(key)?;
    let rel = Path::new("sys").join(key);
    let fs = rustix::mount::fsopen("proc", FsOpenFlags::FSOPEN_CLOEXEC).map_err(io::Error::from)?;
    rustix::mount::fsconfig_create(&fs).map_err(io::Error::from)?;
    let mnt = rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOEXEC
            | MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
    .map_err(io::Error::from)?;
    let fd = rustix::fs::openat(&mnt, &rel, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(io::Error::from)?;
    let mut f = std::fs::File::from(fd);
    f.write_all(value.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_keys_stay_below_proc_sys() {
        assert_eq!(
            sysctl_path("net/ipv6/conf/cove0/disable_ipv6").unwrap(),
            Path::new("/proc/sys/net/ipv6/conf/cove0/disable_ipv6")
        );
        for bad in ["", "/etc/passwd", "net/../../etc/passwd", "./net", ".."] {
            assert!(matches!(sysctl_path(bad), Err(Cause::Invalid(_))), "{bad:?}");
        }
    }
}
