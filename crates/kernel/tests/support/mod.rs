//! Privileged test harness: every test runs inside a network namespace and a private mount
//! namespace of its own, so nothing it does reaches the real host's links, routes or mounts.

#![allow(dead_code)]

use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Whether the tests run as root (they need CAP_SYS_ADMIN and CAP_NET_ADMIN).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Inode of the netns of the calling thread.
pub fn thread_netns_inode() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").expect("stat own netns").ino()
}

/// Inode of the netns of PID 1 (the initial netns, or the container's), when this process
/// may look at it (a sandboxed PID 1 can refuse with EACCES).
pub fn init_netns_inode() -> Option<u64> {
    std::fs::metadata("/proc/1/ns/net").ok().map(|m| m.ino())
}

/// Inode of the netns of this process's main thread: the netns the test binary started in.
pub fn process_netns_inode() -> u64 {
    std::fs::metadata("/proc/self/ns/net").expect("stat the process netns").ino()
}

/// Run `f` on a new thread that first unshares its netns and mount ns (made private
/// recursively, so no mount leaks to the host), mounts a tmpfs on a scratch dir, then runs
/// `f(scratch_dir)` on a current-thread tokio runtime created inside those namespaces.
/// Panics (never skips silently) when not root or when the namespaces cannot be created.
pub fn in_fresh_netns<F, Fut>(f: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    assert!(
        is_root(),
        "cove-kernel integration tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN): run them as root; \
         each test creates and uses only its own network and mount namespaces"
    );
    let res = std::thread::spawn(move || {
        let before = thread_netns_inode();
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
            .unwrap_or_else(|e| panic!("cannot unshare net+mount namespaces: {e}"));
        assert_ne!(thread_netns_inode(), before, "unshare did not give a fresh netns");
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .unwrap_or_else(|e| panic!("cannot make / private in the test mount ns: {e}"));
        let base = std::env::temp_dir();
        mount(Some("tmpfs"), &base, Some("tmpfs"), MsFlags::empty(), Some("mode=0700,size=16m"))
            .unwrap_or_else(|e| panic!("cannot mount a tmpfs on {}: {e}", base.display()));
        let scratch = base.join("cove-kernel-test");
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async move {
                tokio::time::timeout(Duration::from_secs(60), f(scratch))
                    .await
                    .expect("test timed out after 60 s")
            })
        }));
        drop(rt);
        // Netns mounts inside the tmpfs go with it; the mount ns dies with this thread.
        let _ = umount2(&base, MntFlags::MNT_DETACH);
        if let Err(p) = out {
            std::panic::resume_unwind(p);
        }
    })
    .join();
    if let Err(p) = res {
        std::panic::resume_unwind(p);
    }
}

/// Run `f` on a thread that entered the netns mounted at `path`.
pub fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Run an async block on its own current-thread runtime, on a thread inside the netns at
/// `path` (so a `Kernel::new()` there sees that netns as its own).
pub fn block_on_in_netns<T, F, Fut>(path: &Path, f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    in_netns(path, move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(f())
    })
}

/// Run a command from a thread inside the netns at `path` (the child inherits it) and
/// return its stdout. Tests only.
pub fn run_in_netns(path: &Path, cmd: &[&str]) -> String {
    let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    in_netns(path, move || {
        let out = std::process::Command::new(&cmd[0]).args(&cmd[1..]).output().expect("spawn");
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8")
    })
}

/// Poll `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
pub async fn eventually<Fut: Future<Output = bool>>(
    timeout: Duration,
    mut cond: impl FnMut() -> Fut,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
