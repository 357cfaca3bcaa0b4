//! Holder processes: `sleep infinity` in new network + mount namespaces, set up between
//! fork and exec with plain system calls (no shell, no `mount`/`ip` processes), so a fake
//! host costs a few milliseconds.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::run::{set_death_signal, spawn_long_lived};

/// What a holder sets up in its new mount namespace.
#[derive(Debug)]
pub(crate) struct HolderSpec<'a> {
    /// Source name of every mount it makes (identifies them in mountinfo).
    pub tag: &'a str,
    /// A private tmpfs here, with `data` and `run` subdirs (fake host only).
    pub state: Option<&'a Path>,
    /// A file bind-mounted over `/etc/resolv.conf` (fake host only).
    pub resolv: Option<&'a Path>,
    /// A UTS namespace of its own with this hostname (a netlab's hosts: each is a machine).
    pub hostname: Option<&'a str>,
}

fn cpath(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| format!("{}: {e}", p.display()))
}

/// The C strings a setup needs, made before fork (nothing may allocate after it).
struct Prepared {
    tag: CString,
    state: Option<(CString, CString, CString, CString)>, // state, .cg, data, run
    resolv: Option<CString>,
    hostname: Option<CString>,
    cgroup: bool,
}

/// Start a holder per `spec`, stderr to `log`. It dies with the test process.
pub(crate) fn spawn_holder(spec: &HolderSpec<'_>, log: &Path) -> Result<Child, String> {
    let state = match spec.state {
        Some(s) => Some((
            cpath(s)?,
            cpath(&s.join(".cg"))?,
            cpath(&s.join("data"))?,
            cpath(&s.join("run"))?,
        )),
        None => None,
    };
    let p = Prepared {
        tag: CString::new(spec.tag).map_err(|e| e.to_string())?,
        state,
        resolv: spec.resolv.map(cpath).transpose()?,
        hostname: spec.hostname.map(CString::new).transpose().map_err(|e| e.to_string())?,
        cgroup: Path::new("/sys/fs/cgroup").is_dir(),
    };
    let log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new("sleep");
    cmd.arg("infinity").stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
    set_death_signal(&mut cmd);
    // SAFETY: the closure runs between fork and exec; it only makes system calls on C
    // strings prepared above, and writes static messages; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || setup(&p));
    }
    spawn_long_lived(cmd).map_err(|e| {
        format!("{e}\n{}", std::fs::read_to_string(log).unwrap_or_default().trim_end())
    })
}

/// Report a failed step on stderr (the holder log) and return the OS error.
fn fail(step: &CStr) -> io::Error {
    let err = io::Error::last_os_error();
    let b = step.to_bytes();
    // SAFETY: write(2) of a static buffer to stderr.
    unsafe {
        libc::write(2, c"netlab holder: ".as_ptr().cast(), 15);
        libc::write(2, b.as_ptr().cast(), b.len());
        libc::write(2, c"\n".as_ptr().cast(), 1);
    }
    err
}

fn mount(
    src: &CStr,
    dst: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
    step: &CStr,
) -> io::Result<()> {
    let ptr = |c: Option<&CStr>| c.map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: mount(2) with NUL-terminated strings that outlive the call.
    let rc =
        unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), ptr(fstype), flags, ptr(data).cast()) };
    if rc != 0 {
        return Err(fail(step));
    }
    Ok(())
}

fn mkdir(path: &CStr, step: &CStr) -> io::Result<()> {
    // SAFETY: mkdir(2) with a NUL-terminated path.
    if unsafe { libc::mkdir(path.as_ptr(), 0o755) } != 0 {
        return Err(fail(step));
    }
    Ok(())
}

/// Runs in the child: new namespaces, mounts, `lo` up.
fn setup(p: &Prepared) -> io::Result<()> {
    // SAFETY: unshare(2) has no memory arguments.
    if unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) } != 0 {
        return Err(fail(c"unshare(CLONE_NEWNET|CLONE_NEWNS)"));
    }
    if let Some(name) = &p.hostname {
        // SAFETY: unshare(2) has no memory arguments; sethostname(2) reads a NUL-terminated
        // string that outlives the call.
        unsafe {
            if libc::unshare(libc::CLONE_NEWUTS) != 0 {
                return Err(fail(c"unshare(CLONE_NEWUTS)"));
            }
            if libc::sethostname(name.as_ptr(), name.as_bytes().len()) != 0 {
                return Err(fail(c"sethostname"));
            }
        }
    }
    let rec_private = libc::MS_REC | libc::MS_PRIVATE;
    mount(c"none", c"/", None, rec_private, None, c"make / rprivate")?;
    let mode = Some(c"mode=0755");
    if let Some((state, cg, data, run)) = &p.state {
        mount(&p.tag, state, Some(c"tmpfs"), 0, mode, c"mount tmpfs on the state dir")?;
        mkdir(data, c"mkdir state/data")?;
        mkdir(run, c"mkdir state/run")?;
        // A fresh sysfs hides the cgroup mounts below /sys/fs/cgroup (and runc needs them):
        // bind them aside, mount sysfs, bind them back.
        let bind = libc::MS_BIND | libc::MS_REC;
        if p.cgroup {
            mkdir(cg, c"mkdir state/.cg")?;
            mount(c"/sys/fs/cgroup", cg, None, bind, None, c"rbind /sys/fs/cgroup aside")?;
        }
        mount(&p.tag, c"/sys", Some(c"sysfs"), 0, None, c"mount sysfs on /sys")?;
        if p.cgroup {
            mount(cg, c"/sys/fs/cgroup", None, bind, None, c"rbind cgroups back")?;
            // SAFETY: umount2(2)/rmdir(2) with a NUL-terminated path.
            unsafe {
                if libc::umount2(cg.as_ptr(), libc::MNT_DETACH) != 0 {
                    return Err(fail(c"umount state/.cg"));
                }
                libc::rmdir(cg.as_ptr());
            }
        }
    } else {
        mount(&p.tag, c"/sys", Some(c"sysfs"), 0, None, c"mount sysfs on /sys")?;
    }
    mount(&p.tag, c"/run", Some(c"tmpfs"), 0, mode, c"mount tmpfs on /run")?;
    if let Some(resolv) = &p.resolv {
        let step = c"bind resolv.conf over /etc/resolv.conf";
        mount(resolv, c"/etc/resolv.conf", None, libc::MS_BIND, None, step)?;
    }
    lo_up()
}

fn lo_up() -> io::Result<()> {
    // SAFETY: socket/ioctl/close on a socket owned here, with a zeroed ifreq whose name is
    // "lo" (NUL-terminated within IFNAMSIZ).
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(fail(c"socket for lo"));
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name[0] = b'l' as libc::c_char;
        ifr.ifr_name[1] = b'o' as libc::c_char;
        let ok = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) == 0 && {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) == 0
        };
        let err = if ok { None } else { Some(fail(c"set lo up")) };
        libc::close(fd);
        err.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_is_named() {
        crate::require_root();
        let dir = std::env::temp_dir().join(format!("netlab-holder-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("no-such-dir");
        let spec = HolderSpec {
            tag: "netlab-holder-test",
            state: Some(&missing),
            resolv: None,
            hostname: None,
        };
        let err = spawn_holder(&spec, &dir.join("log")).expect_err("mount on a missing dir");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.contains("netlab holder: mount tmpfs on the state dir"), "{err}");
        assert!(err.contains("No such file or directory"), "{err}");
    }
}
