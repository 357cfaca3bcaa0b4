//! Safe extraction of (possibly hostile) tar archives into a directory.
//!
//! Every entry is created relative to directory file descriptors opened with `O_NOFOLLOW`,
//! so nothing is ever written through a symlink: an entry whose parent path contains a
//! symlink is refused, an existing symlink at an entry's own path is replaced, not
//! followed. Absolute paths and `..` components are refused. Symlinks are kept as symlinks,
//! modes (including set-id bits) and, when running as root, owners are preserved. OCI
//! whiteouts (`.wh.NAME`, `.wh..wh..opq`) are applied when asked, for layered images.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use cove_model::Error;
use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

const WHITEOUT_PREFIX: &str = ".wh.";
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";

/// Wrap `reader` so gzip input is decompressed (detected by its magic bytes); zstd is
/// refused with a clear error, anything else is passed through as a plain tar.
pub(crate) fn decompressed<'a>(mut reader: impl Read + 'a) -> Result<Box<dyn Read + 'a>, Error> {
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match reader.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::invalid(format!("read archive: {e}"))),
        }
    }
    let head = io::Cursor::new(magic[..n].to_vec());
    let chained = head.chain(reader);
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(chained)))
    } else if n >= 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] {
        Err(Error::invalid("unsupported archive compression: zstd"))
    } else {
        Ok(Box::new(chained))
    }
}

/// Extract the tar stream `reader` (already decompressed) into the existing directory
/// `root`. With `whiteouts`, `.wh.` entries delete what lower layers put in `root`.
pub(crate) fn extract_tar(reader: impl Read, root: &Path, whiteouts: bool) -> Result<(), Error> {
    let root_fd =
        open_dir(root).map_err(|e| Error::internal(format!("open {}: {e}", root.display())))?;
    let mut x = Extractor {
        root: root_fd,
        whiteouts,
        created: HashSet::new(),
        as_root: nix::unistd::geteuid().is_root(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries =
        archive.entries().map_err(|e| Error::invalid(format!("invalid tar archive: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::invalid(format!("invalid tar archive: {e}")))?;
        x.entry(entry)?;
    }
    Ok(())
}

struct Extractor {
    root: OwnedFd,
    whiteouts: bool,
    /// Paths this archive created (and their ancestors), kept from opaque whiteouts.
    created: HashSet<PathBuf>,
    as_root: bool,
}

/// An entry's path split into parent components and a final name.
struct EntryPath {
    display: String,
    parents: Vec<OsString>,
    name: OsString,
}

impl EntryPath {
    fn rel(&self) -> PathBuf {
        let mut p: PathBuf = self.parents.iter().collect();
        p.push(&self.name);
        p
    }
}

fn refuse(path: &str, why: &str) -> Error {
    Error::invalid(format!("refusing to extract {path:?}: {why}"))
}

/// Split an archive path into safe components; `None` for the root itself (`./`).
fn split_path(p: &Path) -> Result<Option<EntryPath>, Error> {
    let display = p.to_string_lossy().into_owned();
    if p.as_os_str().as_bytes().starts_with(b"/") {
        return Err(refuse(&display, "absolute path"));
    }
    let mut comps: Vec<OsString> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(c) => comps.push(c.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse(&display, "path escapes the root")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse(&display, "absolute path"))
            }
        }
    }
    let Some(name) = comps.pop() else { return Ok(None) };
    Ok(Some(EntryPath { display, parents: comps, name }))
}

fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
}

fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn is_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Option<bool> {
    let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    Some(st.st_mode & libc::S_IFMT == libc::S_IFDIR)
}

/// Remove `name` in `dir` and, for a directory, everything below it; never follows a
/// symlink. A missing `name` is not an error.
pub(crate) fn remove_tree_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    match is_dir_at(dir, name) {
        None => Ok(()),
        Some(false) => match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Err(Errno::ENOENT) => Ok(()),
            r => r,
        },
        Some(true) => {
            let sub = open_subdir(dir, name)?;
            for child in list_dir(sub.as_fd())? {
                remove_tree_at(sub.as_fd(), &child)?;
            }
            match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
                Err(Errno::ENOENT) => Ok(()),
                r => r,
            }
        }
    }
}

/// Names in the directory `dir` (without `.` and `..`).
fn list_dir(dir: BorrowedFd<'_>) -> nix::Result<Vec<OsString>> {
    let fd =
        openat(dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(names)
}

fn fs_err(path: &str, what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("extract {path:?}: {what}: {e}"))
}

impl Extractor {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), Error> {
        let raw_path =
            entry.path().map_err(|e| Error::invalid(format!("invalid tar entry path: {e}")))?;
        let Some(path) = split_path(&raw_path)? else { return Ok(()) };
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let uid = header.uid().unwrap_or(0);
        let gid = header.gid().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);

        let name_str = path.name.to_string_lossy();
        if self.whiteouts && name_str.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&path);
        }
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }

        let parent = self.parent_dir(&path, true)?.expect("created parents");
        let pfd = parent.as_fd();
        let name = path.name.as_os_str();
        self.remember(path.rel());

        match kind {
            EntryType::Directory => {
                if is_dir_at(pfd, name) != Some(true) {
                    remove_tree_at(pfd, name).map_err(|e| fs_err(&path.display, "remove", e))?;
                    match mkdirat(pfd, name, Mode::from_bits_truncate(0o700)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(fs_err(&path.display, "mkdir", e)),
                    }
                }
                let fd = open_subdir(pfd, name).map_err(|e| fs_err(&path.display, "open", e))?;
                let f = File::from(fd);
                if self.as_root {
                    let _ = std::os::unix::fs::fchown(&f, Some(uid as u32), Some(gid as u32));
                }
                f.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| fs_err(&path.display, "chmod", e))?;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_tree_at(pfd, name).map_err(|e| fs_err(&path.display, "remove", e))?;
                let fd = openat(
                    pfd,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| fs_err(&path.display, "create", e))?;
                let mut f = File::from(fd);
                io::copy(&mut entry, &mut f)
                    .map_err(|e| Error::invalid(format!("extract {:?}: {e}", path.display)))?;
                if self.as_root {
                    let _ = std::os::unix::fs::fchown(&f, Some(uid as u32), Some(gid as u32));
                }
                // chmod after chown: chown clears set-id bits.
                f.set_permissions(std::fs::Permissions::from_mode(mode))
                    .map_err(|e| fs_err(&path.display, "chmod", e))?;
                let _ = f.set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| Error::invalid(format!("invalid tar entry link: {e}")))?
                    .ok_or_else(|| refuse(&path.display, "symlink without a target"))?
                    .into_owned();
                remove_tree_at(pfd, name).map_err(|e| fs_err(&path.display, "remove", e))?;
                symlinkat(target.as_os_str(), pfd, name)
                    .map_err(|e| fs_err(&path.display, "symlink", e))?;
                if self.as_root {
                    let _ = fchownat(
                        pfd,
                        name,
                        Some(Uid::from_raw(uid as u32)),
                        Some(Gid::from_raw(gid as u32)),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    );
                }
                let t = TimeSpec::new(mtime as i64, 0);
                let _ = utimensat(pfd, name, &t, &t, UtimensatFlags::NoFollowSymlink);
            }
            EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| Error::invalid(format!("invalid tar entry link: {e}")))?
                    .ok_or_else(|| refuse(&path.display, "hard link without a target"))?
                    .into_owned();
                let Some(tpath) = split_path(&target)? else {
                    return Err(refuse(&path.display, "hard link to the root"));
                };
                let tparent = self
                    .parent_dir(&tpath, false)?
                    .ok_or_else(|| refuse(&path.display, "hard link target does not exist"))?;
                if tpath.rel() == path.rel() {
                    return Ok(());
                }
                remove_tree_at(pfd, name).map_err(|e| fs_err(&path.display, "remove", e))?;
                linkat(tparent.as_fd(), tpath.name.as_os_str(), pfd, name, AtFlags::empty())
                    .map_err(|e| fs_err(&path.display, "link", e))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                remove_tree_at(pfd, name).map_err(|e| fs_err(&path.display, "remove", e))?;
                let dev = nix::sys::stat::makedev(major.into(), minor.into());
                match mknodat(pfd, name, sflag, Mode::from_bits_truncate(mode), dev) {
                    Ok(()) => {
                        if self.as_root {
                            let _ = fchownat(
                                pfd,
                                name,
                                Some(Uid::from_raw(uid as u32)),
                                Some(Gid::from_raw(gid as u32)),
                                AtFlags::AT_SYMLINK_NOFOLLOW,
                            );
                        }
                    }
                    // Unprivileged extraction: devices are skipped, as Docker does in userns.
                    Err(e @ (Errno::EPERM | Errno::EACCES)) => {
                        tracing::debug!(path = %path.display, "skipping device node: {e}");
                    }
                    Err(e) => return Err(fs_err(&path.display, "mknod", e)),
                }
            }
            other => {
                tracing::debug!(path = %path.display, "skipping tar entry of type {other:?}");
            }
        }
        Ok(())
    }

    /// Record `p` and its ancestors as created by this archive.
    fn remember(&mut self, mut p: PathBuf) {
        loop {
            if !self.created.insert(p.clone()) {
                break;
            }
            if !p.pop() || p.as_os_str().is_empty() {
                break;
            }
        }
    }

    /// Open the parent directory of `path` without following symlinks, creating missing
    /// directories when `create` (else `None` when one is missing).
    fn parent_dir(&self, path: &EntryPath, create: bool) -> Result<Option<OwnedFd>, Error> {
        let mut cur = self.root.try_clone().map_err(|e| fs_err(&path.display, "dup", e))?;
        let mut walked = PathBuf::new();
        for comp in &path.parents {
            walked.push(comp);
            let next = match open_subdir(cur.as_fd(), comp) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if create => {
                    match mkdirat(cur.as_fd(), comp.as_os_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(fs_err(&path.display, "mkdir", e)),
                    }
                    open_subdir(cur.as_fd(), comp).map_err(|e| fs_err(&path.display, "open", e))?
                }
                Err(Errno::ENOENT) => return Ok(None),
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    let st = fstatat(cur.as_fd(), comp.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW);
                    let why = match st {
                        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                            format!("{} is a symlink", walked.display())
                        }
                        _ => format!("{} is not a directory", walked.display()),
                    };
                    return Err(refuse(&path.display, &why));
                }
                Err(e) => return Err(fs_err(&path.display, "open", e)),
            };
            cur = next;
        }
        Ok(Some(cur))
    }

    fn whiteout(&mut self, path: &EntryPath) -> Result<(), Error> {
        let name = path.name.to_string_lossy();
        let Some(parent) = self.parent_dir(path, name == WHITEOUT_OPAQUE)? else {
            return Ok(()); // Whiting out something below a missing directory: nothing to do.
        };
        if name == WHITEOUT_OPAQUE {
            let dir_rel: PathBuf = path.parents.iter().collect();
            self.remember(dir_rel.clone());
            let children =
                list_dir(parent.as_fd()).map_err(|e| fs_err(&path.display, "list", e))?;
            for child in children {
                if !self.created.contains(&dir_rel.join(&child)) {
                    remove_tree_at(parent.as_fd(), &child)
                        .map_err(|e| fs_err(&path.display, "remove", e))?;
                }
            }
        } else {
            let target = OsString::from(&name[WHITEOUT_PREFIX.len()..]);
            if target.is_empty() || target == "." || target == ".." {
                return Err(refuse(&path.display, "invalid whiteout"));
            }
            remove_tree_at(parent.as_fd(), &target)
                .map_err(|e| fs_err(&path.display, "remove", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A tar builder for tests: entries are appended raw, so hostile paths are possible.
    pub(crate) struct TarBuilder {
        b: tar::Builder<Vec<u8>>,
    }

    impl TarBuilder {
        pub(crate) fn new() -> Self {
            TarBuilder { b: tar::Builder::new(Vec::new()) }
        }

        fn header(path: &str, kind: EntryType, mode: u32, size: u64) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            // Write the name bytes directly so `..` and absolute paths survive.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_size(size);
            h.set_mtime(1_700_000_000);
            h.set_cksum();
            h
        }

        pub(crate) fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
            let h = Self::header(path, EntryType::Regular, mode, data.len() as u64);
            self.b.append(&h, data).unwrap();
            self
        }

        pub(crate) fn dir(mut self, path: &str, mode: u32) -> Self {
            let h = Self::header(path, EntryType::Directory, mode, 0);
            self.b.append(&h, io::empty()).unwrap();
            self
        }

        pub(crate) fn symlink(mut self, path: &str, target: &str) -> Self {
            let mut h = Self::header(path, EntryType::Symlink, 0o777, 0);
            h.set_link_name(target).unwrap();
            h.set_cksum();
            self.b.append(&h, io::empty()).unwrap();
            self
        }

        pub(crate) fn hardlink(mut self, path: &str, target: &str) -> Self {
            let mut h = Self::header(path, EntryType::Link, 0o644, 0);
            h.set_link_name(target).unwrap();
            h.set_cksum();
            self.b.append(&h, io::empty()).unwrap();
            self
        }

        pub(crate) fn build(self) -> Vec<u8> {
            self.b.into_inner().unwrap()
        }
    }

    fn extract(tar: &[u8], root: &Path) -> Result<(), Error> {
        extract_tar(decompressed(tar).unwrap(), root, true)
    }

    #[test]
    fn extracts_files_dirs_symlinks_and_modes() {
        let d = tempfile::tempdir().unwrap();
        let tar = TarBuilder::new()
            .dir("./bin", 0o755)
            .file("./bin/busybox", 0o4755, b"#!binary")
            .symlink("bin/sh", "busybox")
            .symlink("bin/abs", "/etc/passwd")
            .hardlink("bin/hard", "bin/busybox")
            .file("etc/deep/file", 0o600, b"x")
            .dir("./", 0o755)
            .build();
        extract(&tar, d.path()).unwrap();
        let bb = d.path().join("bin/busybox");
        assert_eq!(std::fs::read(&bb).unwrap(), b"#!binary");
        assert_eq!(std::fs::metadata(&bb).unwrap().mode() & 0o7777, 0o4755);
        assert_eq!(std::fs::read_link(d.path().join("bin/sh")).unwrap(), Path::new("busybox"));
        // A symlink pointing outside is kept as a symlink, never followed.
        assert_eq!(std::fs::read_link(d.path().join("bin/abs")).unwrap(), Path::new("/etc/passwd"));
        let hard = std::fs::metadata(d.path().join("bin/hard")).unwrap();
        assert_eq!(hard.ino(), std::fs::metadata(&bb).unwrap().ino());
        assert_eq!(std::fs::read(d.path().join("etc/deep/file")).unwrap(), b"x");
        assert_eq!(
            std::fs::metadata(d.path().join("etc/deep/file")).unwrap().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn refuses_parent_dir_escape() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let tar = TarBuilder::new().file("../escaped", 0o644, b"evil").build();
        let e = extract(&tar, &root).unwrap_err();
        assert!(e.message.contains("escapes the root"), "{}", e.message);
        assert!(!outer.path().join("escaped").exists());
        let tar = TarBuilder::new().file("a/../../escaped", 0o644, b"evil").build();
        assert!(extract(&tar, &root).is_err());
        assert!(!outer.path().join("escaped").exists());
    }

    #[test]
    fn refuses_absolute_paths() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let target = outer.path().join("abs-target");
        let tar = TarBuilder::new().file(target.to_str().unwrap(), 0o644, b"evil").build();
        let e = extract(&tar, &root).unwrap_err();
        assert!(e.message.contains("absolute path"), "{}", e.message);
        assert!(!target.exists());
    }

    #[test]
    fn refuses_writing_through_a_symlink() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        let victim = outer.path().join("victim");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&victim).unwrap();
        // Absolute symlink to a host directory, then a file "through" it.
        let tar = TarBuilder::new()
            .symlink("etc", victim.to_str().unwrap())
            .file("etc/passwd", 0o644, b"evil")
            .build();
        let e = extract(&tar, &root).unwrap_err();
        assert!(e.message.contains("is a symlink"), "{}", e.message);
        assert!(!victim.join("passwd").exists());
        // Relative symlink climbing out, then a file through it.
        let root2 = outer.path().join("root2");
        std::fs::create_dir(&root2).unwrap();
        let tar = TarBuilder::new().symlink("up", "../victim").file("up/x", 0o644, b"evil").build();
        assert!(extract(&tar, &root2).is_err());
        assert!(!victim.join("x").exists());
        // Hard link through a symlinked directory.
        let root3 = outer.path().join("root3");
        std::fs::create_dir(&root3).unwrap();
        std::fs::write(victim.join("secret"), b"s").unwrap();
        let tar = TarBuilder::new()
            .symlink("v", victim.to_str().unwrap())
            .hardlink("stolen", "v/secret")
            .build();
        assert!(extract(&tar, &root3).is_err());
        assert!(!root3.join("stolen").exists());
    }

    #[test]
    fn replaces_a_symlink_instead_of_following_it() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let victim = outer.path().join("victim-file");
        std::fs::write(&victim, b"original").unwrap();
        let tar = TarBuilder::new()
            .symlink("f", victim.to_str().unwrap())
            .file("f", 0o644, b"new")
            .build();
        extract(&tar, &root).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"original");
        assert_eq!(std::fs::read(root.join("f")).unwrap(), b"new");
        assert!(!std::fs::symlink_metadata(root.join("f")).unwrap().file_type().is_symlink());
    }

    #[test]
    fn applies_whiteouts_across_layers() {
        let d = tempfile::tempdir().unwrap();
        let lower = TarBuilder::new()
            .file("a/keep", 0o644, b"1")
            .file("a/gone", 0o644, b"1")
            .file("b/x", 0o644, b"1")
            .file("b/y/z", 0o644, b"1")
            .file("c/old", 0o644, b"1")
            .build();
        extract(&lower, d.path()).unwrap();
        let upper = TarBuilder::new()
            .file("a/.wh.gone", 0o644, b"")
            .dir("b", 0o755)
            .file("b/.wh..wh..opq", 0o644, b"")
            .file("b/new", 0o644, b"2")
            .file("c/new", 0o644, b"2")
            .file("c/.wh..wh..opq", 0o644, b"")
            .file(".wh.nothing-here", 0o644, b"")
            .file("missing/.wh.x", 0o644, b"")
            .build();
        extract(&upper, d.path()).unwrap();
        assert!(d.path().join("a/keep").exists());
        assert!(!d.path().join("a/gone").exists());
        assert!(!d.path().join("a/.wh.gone").exists());
        assert!(!d.path().join("b/x").exists());
        assert!(!d.path().join("b/y").exists());
        assert!(d.path().join("b/new").exists());
        assert!(!d.path().join("b/.wh..wh..opq").exists());
        // Opaque marker after this layer's own entries keeps them.
        assert!(d.path().join("c/new").exists());
        assert!(!d.path().join("c/old").exists());
        assert!(!d.path().join("missing").exists());
    }

    #[test]
    fn whiteouts_do_not_follow_symlinks() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        let victim = outer.path().join("victim");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("precious"), b"p").unwrap();
        let tar = TarBuilder::new()
            .symlink("v", victim.to_str().unwrap())
            .file("v/.wh.precious", 0o644, b"")
            .build();
        assert!(extract(&tar, &root).is_err());
        let tar = TarBuilder::new().file("v/.wh..wh..opq", 0o644, b"").build();
        assert!(extract(&tar, &root).is_err());
        assert!(victim.join("precious").exists());
        // Whiting out the symlink itself removes the link, not its target.
        let tar = TarBuilder::new().file(".wh.v", 0o644, b"").build();
        extract(&tar, &root).unwrap();
        assert!(std::fs::symlink_metadata(root.join("v")).is_err());
        assert!(victim.join("precious").exists());
    }

    #[test]
    fn gzip_is_detected() {
        use std::io::Write;
        let d = tempfile::tempdir().unwrap();
        let tar = TarBuilder::new().file("hello", 0o644, b"hi").build();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        extract_tar(decompressed(&gz[..]).unwrap(), d.path(), false).unwrap();
        assert_eq!(std::fs::read(d.path().join("hello")).unwrap(), b"hi");
    }

    #[test]
    fn garbage_is_an_invalid_archive() {
        let d = tempfile::tempdir().unwrap();
        let junk = vec![7u8; 1024];
        let e = extract(&junk, d.path()).unwrap_err();
        assert_eq!(e.kind, cove_model::ErrorKind::InvalidInput);
    }
}
