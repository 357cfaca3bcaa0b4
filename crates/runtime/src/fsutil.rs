//! Small filesystem helpers: atomic writes, mount points, tree copy and size, and opening a
//! file of an untrusted tree without escaping it.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

/// A name unlikely to collide: pid, a process-wide counter and the clock.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}-{n}-{nanos:x}", std::process::id())
}

/// Write `data` to `path` atomically: a temporary file in the same directory, fsync'd, then
/// renamed over `path`.
pub(crate) fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(unique_name(&format!(".{name}.tmp-")));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Read a pid file (a decimal number, maybe with whitespace).
pub(crate) fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok().filter(|&p| p > 0)
}

/// Undo the octal escapes of /proc/self/mountinfo (`\040` for a space).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points of the calling process's mount namespace.
pub(crate) fn mount_points() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

/// Mount points of cgroup (v1 and v2) filesystems in the calling process's mount namespace,
/// read once per process (they do not change under a running daemon, and mountinfo grows
/// with every container).
pub(crate) fn cgroup_mounts() -> &'static [PathBuf] {
    static MOUNTS: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();
    MOUNTS.get_or_init(read_cgroup_mounts)
}

fn read_cgroup_mounts() -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return Vec::new() };
    info.lines()
        .filter(|l| {
            let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            matches!(fstype, Some("cgroup" | "cgroup2"))
        })
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .collect()
}

/// Whether `path` is a mount point in the calling process's mount namespace. One statx(2)
/// (STATX_ATTR_MOUNT_ROOT): mountinfo grows with every container, so scanning it on each
/// start and stop would make them O(containers).
pub(crate) fn is_mount_point(path: &Path) -> bool {
    match statx_mount_root(path) {
        Some(root) => root,
        None => {
            let p = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            mount_points().contains(&p)
        }
    }
}

/// Whether `path` is the root of a mount, from statx(2); None when the kernel or the file
/// system does not report it (or the path cannot be looked up).
fn statx_mount_root(path: &Path) -> Option<bool> {
    use std::os::unix::ffi::OsStrExt;
    const STATX_ATTR_MOUNT_ROOT: u64 = 0x2000;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `c` is a NUL-terminated path that outlives the call and `stx` is a writable
    // statx buffer of the right type; statx only writes into it.
    let rc = unsafe {
        libc::statx(libc::AT_FDCWD, c.as_ptr(), libc::AT_NO_AUTOMOUNT, 0, stx.as_mut_ptr())
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: statx returned 0, so it filled the buffer (which started zeroed anyway).
    let stx = unsafe { stx.assume_init() };
    (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT != 0)
        .then_some(stx.stx_attributes & STATX_ATTR_MOUNT_ROOT != 0)
}

/// Unmount everything mounted at `path` (lazily); a path that is not a mount point is fine.
pub(crate) fn unmount_all(path: &Path) -> io::Result<()> {
    for _ in 0..16 {
        if !is_mount_point(path) {
            return Ok(());
        }
        match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    Err(io::Error::other(format!("{} is still mounted", path.display())))
}

/// Total bytes of regular files under `root` (each inode once); symlinks are not followed.
pub(crate) fn tree_size(root: &Path) -> u64 {
    fn walk(p: &Path, seen: &mut HashSet<(u64, u64)>, total: &mut u64) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                walk(&e.path(), seen, total);
            } else if md.is_file() && seen.insert((md.dev(), md.ino())) {
                *total += md.len();
            }
        }
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    walk(root, &mut seen, &mut total);
    total
}

/// Copy the tree `src` to the new directory `dst`, preserving symlinks, modes, owners and
/// device nodes (hard links become copies).
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let md = std::fs::symlink_metadata(src)?;
    let ft = md.file_type();
    if ft.is_dir() {
        std::fs::create_dir(dst)?;
        for e in std::fs::read_dir(src)? {
            let e = e?;
            copy_tree(&e.path(), &dst.join(e.file_name()))?;
        }
    } else if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)?;
        let _ = std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()));
        return Ok(());
    } else if ft.is_file() {
        std::fs::copy(src, dst)?;
    } else {
        let kind = nix::sys::stat::SFlag::from_bits_truncate(md.mode() & libc::S_IFMT);
        nix::sys::stat::mknod(dst, kind, Mode::from_bits_truncate(md.mode() & 0o7777), md.rdev())
            .map_err(io::Error::from)?;
    }
    let _ = std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()));
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))
}

/// Open `rel` for reading inside the untrusted tree `root`: symlinks and `..` are resolved
/// as if `root` were `/` (`openat2` with `RESOLVE_IN_ROOT`), so nothing outside is reached.
pub(crate) fn open_in_root(root: &Path, rel: &str) -> io::Result<File> {
    let dir = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(&dir, rel, how)?;
    let f = File::from(fd);
    if !f.metadata()?.is_file() {
        return Err(io::Error::other(format!("{rel} is not a regular file")));
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/x\\"), "/x\\");
    }

    #[test]
    fn root_is_a_mount_point() {
        assert!(is_mount_point(Path::new("/")));
        let d = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(d.path()));
        unmount_all(d.path()).unwrap();
    }

    #[test]
    fn atomic_write_and_pid() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pid");
        atomic_write(&p, b"1234\n").unwrap();
        assert_eq!(read_pid(&p), Some(1234));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(read_pid(&d.path().join("none")), None);
    }

    #[test]
    fn open_in_root_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(d.path().join("outside"), b"secret").unwrap();
        std::fs::write(root.join("inside"), b"ok").unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("inside", root.join("good")).unwrap();
        let read = |p: &str| -> Option<String> {
            let mut s = String::new();
            io::Read::read_to_string(&mut open_in_root(&root, p).ok()?, &mut s).ok()?;
            Some(s)
        };
        assert_eq!(read("inside").as_deref(), Some("ok"));
        assert_eq!(read("good").as_deref(), Some("ok"));
        assert_eq!(read("abs"), None);
        assert_eq!(read("rel"), None);
        assert_eq!(read("../outside"), None);
    }

    #[test]
    fn copy_and_size() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        std::fs::create_dir_all(src.join("a")).unwrap();
        std::fs::write(src.join("a/f"), b"12345").unwrap();
        std::fs::hard_link(src.join("a/f"), src.join("a/h")).unwrap();
        std::os::unix::fs::symlink("a/f", src.join("l")).unwrap();
        assert_eq!(tree_size(&src), 5);
        let dst = d.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert_eq!(std::fs::read(dst.join("a/f")).unwrap(), b"12345");
        assert_eq!(std::fs::read_link(dst.join("l")).unwrap(), Path::new("a/f"));
    }
}
