//! Root integration tests: real containers run by runc from a busybox image.
//!
//! Each test re-runs itself (the same test binary, `--exact <name>`) under
//! `unshare --mount --propagation private --pid --fork --mount-proc --net --kill-child`, so
//! overlay and netns mounts never reach the host's mount namespace, "host networking" is a
//! throwaway network namespace, and every process (shims, containers) dies with the test.
//! State lives in a tempdir. The shim is this crate's `cove-test-shim` (`COVE_SHIM_EXE`).
//! Without root, runc, /bin/busybox or unshare the tests fail with the reason.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cove_runtime::{BundleNetwork, BundleSpec, ExecSpec, RunState, Runtime, Stream};

const INNER: &str = "COVE_RUNTIME_TEST_INNER";
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: [&str; 12] =
    ["sh", "echo", "cat", "sleep", "wget", "nc", "ip", "hostname", "ls", "env", "true", "pwd"];

fn find_runc() -> Option<PathBuf> {
    ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// In the outer process: check prerequisites, run the test `name` in fresh namespaces and
/// return false. In the inner process: return true (run the body).
fn in_namespaces(name: &str) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "runtime integration tests need root (they run runc and mount overlays)"
    );
    assert!(find_runc().is_some(), "runc is not installed (Debian package `runc`)");
    assert!(Path::new(BUSYBOX).is_file(), "{BUSYBOX} is missing (Debian package `busybox-static`)");
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--pid", "--fork", "--mount-proc"])
        .args(["--net", "--kill-child"])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INNER, "1")
        .env("COVE_SHIM_EXE", env!("CARGO_BIN_EXE_cove-test-shim"))
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- inner stdout ---\n{stdout}\n--- inner stderr ---\n{stderr}");
    assert!(out.status.success(), "inner test {name} failed: {}", out.status);
    assert!(stdout.contains("1 passed"), "inner test {name} did not run");
    false
}

/// The test's world: runtime dirs in a tempdir, a network namespace file, and cleanup of
/// containers, mounts and cgroups even when the test panics.
struct World {
    dir: tempfile::TempDir,
    rt: Runtime,
    netns: PathBuf,
    ids: Vec<String>,
    image: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(&dir.path().join("data"), &dir.path().join("run")).unwrap();
        let netns = dir.path().join("netns");
        std::fs::File::create(&netns).unwrap();
        let st = Command::new("unshare")
            .arg(format!("--net={}", netns.display()))
            .arg("true")
            .status()
            .unwrap();
        assert!(st.success(), "create a network namespace");
        let image = rt.import_image(&busybox_tar()[..], "busybox").unwrap().id;
        World { dir, rt, netns, ids: Vec::new(), image }
    }

    fn spec(&mut self, name: &str, args: &[&str], network: BundleNetwork) -> BundleSpec {
        let id = format!("covetest-{name}-{}", std::process::id());
        self.ids.push(id.clone());
        BundleSpec {
            id,
            image_id: self.image.clone(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["GREETING=hi".into()],
            cwd: "/".into(),
            hostname: format!("{name}-host"),
            domainname: String::new(),
            hosts: "127.0.0.1\tlocalhost\n".into(),
            resolv_conf: "nameserver 127.0.0.11\n".into(),
            network,
        }
    }

    /// The file system type of the container's root, as its init sees it (the root
    /// filesystem is mounted in the shim's mount namespace, not in ours).
    fn rootfs_fstype(&self, pid: u32) -> Option<String> {
        let info = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
        info.lines()
            .filter(|l| l.split(' ').nth(4) == Some("/"))
            .filter_map(|l| {
                l.split(" - ").nth(1).and_then(|r| r.split(' ').next()).map(str::to_string)
            })
            .next_back()
    }

    fn mounts_under_tempdir(&self) -> Vec<String> {
        let root = self.dir.path().join("data");
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(root.to_str().unwrap()))
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for id in &self.ids {
            if let Err(e) = self.rt.cleanup(id) {
                eprintln!("cleanup {id}: {e}");
            }
            let _ = self.rt.remove(id);
            for ctrl in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir(ctrl.path().join("cove").join(id));
            }
        }
        // The shared `cove` parent cgroups stay: other tests may be creating containers in them.
        let _ = nix::mount::umount2(&self.netns, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A root filesystem: busybox and a few applet symlinks.
fn busybox_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(if d == "tmp" { 0o1777 } else { 0o755 });
        h.set_size(0);
        b.append_data(&mut h, d, std::io::empty()).unwrap();
    }
    let data = std::fs::read(BUSYBOX).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(data.len() as u64);
    b.append_data(&mut h, "bin/busybox", &data[..]).unwrap();
    for a in APPLETS {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, format!("bin/{a}"), "busybox").unwrap();
    }
    b.into_inner().unwrap()
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn collect_logs(rt: &Runtime, id: &str, follow: bool) -> Vec<(Stream, String)> {
    let mut rx = rt.logs(id, follow, None).unwrap();
    let mut out = Vec::new();
    while let Some(e) =
        tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("logs stalled")
    {
        out.push((e.stream, String::from_utf8(e.line).unwrap()));
    }
    out
}

async fn exec_output(rt: &Runtime, id: &str, spec: &ExecSpec) -> (i32, String, String) {
    let child = rt.exec(id, spec).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn exit_code_logs_and_restart() {
    if !in_namespaces("exit_code_logs_and_restart") {
        return;
    }
    let mut w = World::new();
    let spec = w.spec(
        "exit",
        &["sh", "-c", "echo hello; echo err >&2; echo $GREETING $HOSTNAME; exit 3"],
        BundleNetwork::Sandbox,
    );
    let id = spec.id.clone();
    w.rt.create_bundle(&spec).unwrap();
    assert_eq!(w.rt.state(&id), RunState::NotRunning);
    tokio_rt().block_on(async {
        let pid = w.rt.start(&id, Some(&w.netns)).unwrap();
        assert!(pid > 1);
        assert_eq!(w.rt.wait(&id).await, 3);
        match w.rt.state(&id) {
            RunState::Exited { code: 3, finished_at } => assert!(finished_at.ends_with('Z')),
            other => panic!("unexpected state {other:?}"),
        }
        // Order is kept within a stream (the two pipes race each other, as in Docker).
        let logs = collect_logs(&w.rt, &id, false).await;
        let of = |s: Stream| {
            logs.iter().filter(|(st, _)| *st == s).map(|(_, l)| l.as_str()).collect::<Vec<_>>()
        };
        assert_eq!(of(Stream::Stdout), ["hello\n", "hi exit-host\n"]);
        assert_eq!(of(Stream::Stderr), ["err\n"]);
        w.rt.cleanup(&id).unwrap();
        assert_eq!(w.rt.state(&id), RunState::NotRunning);
        assert!(
            w.mounts_under_tempdir().is_empty(),
            "leftover mounts: {:?}",
            w.mounts_under_tempdir()
        );
        w.rt.cleanup(&id).unwrap(); // idempotent

        // A second run appends to the same log.
        w.rt.start(&id, Some(&w.netns)).unwrap();
        assert_eq!(w.rt.wait(&id).await, 3);
        let all = collect_logs(&w.rt, &id, false).await;
        assert_eq!(all.len(), 6);
        let last = w.rt.logs(&id, false, Some(1)).unwrap().recv().await.unwrap();
        assert_eq!(last.line, all.last().unwrap().1.as_bytes());
        w.rt.cleanup(&id).unwrap();
        w.rt.remove(&id).unwrap();
        assert!(!w.dir.path().join("data/containers").join(&id).exists());
        assert!(w.mounts_under_tempdir().is_empty());
    });
}

#[test]
fn long_running_exec_and_kill() {
    if !in_namespaces("long_running_exec_and_kill") {
        return;
    }
    let mut w = World::new();
    let spec = w.spec("sleeper", &["sleep", "100"], BundleNetwork::Sandbox);
    let id = spec.id.clone();
    w.rt.create_bundle(&spec).unwrap();
    tokio_rt().block_on(async {
        let pid = w.rt.start(&id, Some(&w.netns)).unwrap();
        assert_eq!(w.rt.state(&id), RunState::Running { pid });
        assert_eq!(w.rt.running_ids(), vec![id.clone()]);
        // Its root filesystem is an overlay on the image.
        assert_eq!(w.rootfs_fstype(pid).as_deref(), Some("overlay"));
        // ... and it is not mounted in the daemon's namespace at all.
        assert!(w.mounts_under_tempdir().is_empty(), "{:?}", w.mounts_under_tempdir());
        // The container is in the network namespace we gave it.
        let ns = std::fs::metadata(format!("/proc/{pid}/ns/net")).unwrap();
        assert_eq!(ns.ino(), std::fs::metadata(&w.netns).unwrap().ino());

        let (code, out, err) = exec_output(
            &w.rt,
            &id,
            &ExecSpec { cmd: vec!["hostname".into()], ..Default::default() },
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "sleeper-host\n"), "stderr: {err}");

        let spec = ExecSpec {
            cmd: vec!["sh".into(), "-c".into(), "echo $GREETING $EXTRA; pwd; exit 5".into()],
            env: vec!["EXTRA=x".into(), "GREETING=override".into()],
            working_dir: Some("/tmp".into()),
            stdin: false,
        };
        let (code, out, _) = exec_output(&w.rt, &id, &spec).await;
        assert_eq!((code, out.as_str()), (5, "override x\n/tmp\n"));

        // stdin is piped when asked.
        let mut child = w
            .rt
            .exec(&id, &ExecSpec { cmd: vec!["cat".into()], stdin: true, ..Default::default() })
            .unwrap();
        {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"piped\n").await.unwrap();
        }
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(out.stdout, b"piped\n");

        // Generated files are rewritten in place, visible through the bind mount.
        w.rt.write_etc_file(&id, "hosts", "10.0.0.1\tnew-entry\n").unwrap();
        let (_, out, _) = exec_output(
            &w.rt,
            &id,
            &ExecSpec { cmd: vec!["cat".into(), "/etc/hosts".into()], ..Default::default() },
        )
        .await;
        assert_eq!(out, "10.0.0.1\tnew-entry\n");
        assert!(w.rt.write_etc_file(&id, "passwd", "x").is_err());

        // A new Runtime (as after a daemon restart) sees and waits for the same run.
        let rt2 = Runtime::new(&w.dir.path().join("data"), &w.dir.path().join("run")).unwrap();
        assert_eq!(rt2.running_ids(), vec![id.clone()]);
        let waiter = {
            let rt2 = rt2.clone();
            let id = id.clone();
            tokio::spawn(async move { rt2.wait(&id).await })
        };
        assert!(w.rt.start(&id, Some(&w.netns)).is_err(), "already running");
        assert!(w.rt.remove(&id).is_err(), "running");
        w.rt.kill(&id, libc::SIGKILL).unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap(),
            137
        );
        assert!(matches!(w.rt.state(&id), RunState::Exited { code: 137, .. }));
        let e = w.rt.kill(&id, libc::SIGTERM).unwrap_err();
        assert_eq!(e.message, format!("container {id} is not running"));
        assert!(w
            .rt
            .exec(&id, &ExecSpec { cmd: vec!["true".into()], ..Default::default() })
            .is_err());
        assert!(w.rt.running_ids().is_empty());
        w.rt.cleanup(&id).unwrap();
        assert!(w.mounts_under_tempdir().is_empty());

        // cleanup forces a running container down, and leaves no cgroup behind.
        w.rt.start(&id, Some(&w.netns)).unwrap();
        let cgroup_dirs = || -> Vec<PathBuf> {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
                .unwrap()
                .flatten()
                .map(|c| c.path().join("cove").join(&id))
                .collect();
            dirs.push(Path::new("/sys/fs/cgroup/cove").join(&id)); // cgroup v2
            dirs.into_iter().filter(|d| d.is_dir()).collect()
        };
        assert!(!cgroup_dirs().is_empty(), "runc made the container's cgroups");
        w.rt.cleanup(&id).unwrap();
        for ctrl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            assert!(
                !ctrl.path().join("cove").join(&id).exists(),
                "cgroup left in {:?}",
                ctrl.path()
            );
        }
        assert_eq!(w.rt.state(&id), RunState::NotRunning);
        assert!(w.rt.running_ids().is_empty());
        assert!(w.mounts_under_tempdir().is_empty());
    });
}

#[test]
fn start_failure_reports_runc_error() {
    if !in_namespaces("start_failure_reports_runc_error") {
        return;
    }
    let mut w = World::new();
    let spec = w.spec("nocmd", &["nosuchcmd"], BundleNetwork::Sandbox);
    let id = spec.id.clone();
    w.rt.create_bundle(&spec).unwrap();
    let e = w.rt.start(&id, Some(&w.netns)).unwrap_err();
    assert_eq!(e.kind, cove_model::ErrorKind::InvalidInput, "{e}");
    assert!(e.message.contains("exec: \"nosuchcmd\": executable file not found in $PATH"), "{e}");
    assert_eq!(w.rt.state(&id), RunState::NotRunning);
    assert!(w.mounts_under_tempdir().is_empty());
    assert!(
        tokio_rt().block_on(collect_logs(&w.rt, &id, false)).is_empty(),
        "runc's error is not container output"
    );
}

#[test]
fn follow_logs_until_exit() {
    if !in_namespaces("follow_logs_until_exit") {
        return;
    }
    let mut w = World::new();
    let spec = w.spec(
        "follow",
        &["sh", "-c", "echo a; sleep 0.3; echo b >&2; sleep 0.3; echo c"],
        BundleNetwork::Sandbox,
    );
    let id = spec.id.clone();
    w.rt.create_bundle(&spec).unwrap();
    tokio_rt().block_on(async {
        w.rt.start(&id, Some(&w.netns)).unwrap();
        let logs = collect_logs(&w.rt, &id, true).await;
        let lines: Vec<&str> = logs.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["a\n", "b\n", "c\n"]);
        assert_eq!(logs[1].0, Stream::Stderr);
        assert_eq!(w.rt.wait(&id).await, 0);
        w.rt.cleanup(&id).unwrap();
    });
}

#[test]
fn host_network_mode() {
    if !in_namespaces("host_network_mode") {
        return;
    }
    let mut w = World::new();
    // "Host" is the throwaway network namespace this test process runs in.
    let spec = w.spec(
        "host",
        &["sh", "-c", "cat /etc/hostname; test -e /sys/class/net/lo && echo sys-ok"],
        BundleNetwork::Host,
    );
    let id = spec.id.clone();
    w.rt.create_bundle(&spec).unwrap();
    tokio_rt().block_on(async {
        let pid = w.rt.start(&id, None).unwrap();
        let _ = pid;
        assert_eq!(w.rt.wait(&id).await, 0);
        let logs = collect_logs(&w.rt, &id, false).await;
        let lines: Vec<&str> = logs.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["host-host\n", "sys-ok\n"]);
        w.rt.cleanup(&id).unwrap();
        assert!(w.mounts_under_tempdir().is_empty());
    });
}

#[test]
fn copy_fallback_when_overlay_fails() {
    if !in_namespaces("copy_fallback_when_overlay_fails") {
        return;
    }
    let mut w = World::new();
    let spec = w.spec(
        "copy",
        &["sh", "-c", "echo changed > /bin/marker; cat /bin/marker"],
        BundleNetwork::Sandbox,
    );
    let id = spec.id.clone();
    w.rt.create_bundle(&spec).unwrap();
    // Break the overlay: its work directory becomes a file.
    let bundle = w.dir.path().join("data/containers").join(&id);
    std::fs::remove_dir(bundle.join("work")).unwrap();
    std::fs::write(bundle.join("work"), b"").unwrap();
    tokio_rt().block_on(async {
        w.rt.start(&id, Some(&w.netns)).unwrap();
        assert_eq!(w.rt.wait(&id).await, 0);
        assert!(bundle.join("copy/bin/busybox").is_file(), "private copy of the image");
        assert_eq!(std::fs::read(bundle.join("copy/bin/marker")).unwrap(), b"changed\n");
        let logs = collect_logs(&w.rt, &id, false).await;
        assert_eq!(logs, vec![(Stream::Stdout, "changed\n".to_string())]);
        // The image itself is untouched.
        let image_root = w.dir.path().join("data/images").join(&w.image[7..]).join("rootfs");
        assert!(!image_root.join("bin/marker").exists());
        w.rt.cleanup(&id).unwrap();
        assert!(w.mounts_under_tempdir().is_empty());
        w.rt.remove(&id).unwrap();
    });
}

/// Not a test on its own: the "daemon" of `shim_survives_daemon_death`, run in a child
/// process that the test kills.
#[test]
#[ignore = "helper process of shim_survives_daemon_death"]
fn daemon_helper() {
    let var =
        |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set: this is a helper"));
    let rt = Runtime::new(Path::new(&var("COVE_HELPER_DATA")), Path::new(&var("COVE_HELPER_RUN")))
        .unwrap();
    let spec: BundleSpec = serde_json::from_str(&var("COVE_HELPER_SPEC")).unwrap();
    rt.create_bundle(&spec).unwrap();
    let pid = rt.start(&spec.id, Some(Path::new(&var("COVE_HELPER_NETNS")))).unwrap();
    println!("STARTED {pid}");
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn shim_survives_daemon_death() {
    if !in_namespaces("shim_survives_daemon_death") {
        return;
    }
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut w = World::new();
    let spec = w.spec("survivor", &["sh", "-c", "echo before; sleep 100"], BundleNetwork::Sandbox);
    let id = spec.id.clone();
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["daemon_helper", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .env("COVE_HELPER_DATA", w.dir.path().join("data"))
        .env("COVE_HELPER_RUN", w.dir.path().join("run"))
        .env("COVE_HELPER_NETNS", &w.netns)
        .env("COVE_HELPER_SPEC", serde_json::to_string(&spec).unwrap())
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(helper.stdout.take().unwrap()).lines();
    let started = lines
        .find_map(|l| l.ok()?.split("STARTED ").nth(1).map(str::to_string))
        .expect("helper started");
    let pid: u32 = started.trim().parse().unwrap();
    // Kill the "daemon" and its whole process group.
    // SAFETY: kill(2) on the helper's process group.
    assert_eq!(unsafe { libc::kill(-(helper.id() as i32), libc::SIGKILL) }, 0);
    helper.wait().unwrap();

    // The shim lives on in its own session; the container keeps running.
    assert_eq!(w.rt.state(&id), RunState::Running { pid });
    assert_eq!(w.rt.running_ids(), vec![id.clone()]);
    let shim_pid =
        std::fs::read_to_string(w.dir.path().join("run/shims").join(&id).join("shim.pid")).unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", shim_pid.trim())).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let our_session = nix::unistd::getsid(None).unwrap().as_raw().to_string();
    assert_ne!(fields[3], our_session, "the shim runs in a session of its own");
    tokio_rt().block_on(async {
        let mut rx = w.rt.logs(&id, true, None).unwrap();
        let first =
            tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap();
        assert_eq!(first.line, b"before\n");
        w.rt.kill(&id, libc::SIGKILL).unwrap();
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(10), w.rt.wait(&id)).await.unwrap(),
            137
        );
        // Follow ends once the run is over.
        assert!(tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().is_none());
        w.rt.cleanup(&id).unwrap();
        assert!(w.mounts_under_tempdir().is_empty());
    });
}
