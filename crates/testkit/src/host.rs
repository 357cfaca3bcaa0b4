//! [`FakeHost`]: a host of its own (network + mount namespace) for one test, and the
//! cleanup of fake hosts left behind by crashed test runs.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::env::require_root;
use crate::holder::{spawn_holder, HolderSpec};
use crate::procs::{self, Scope};
use crate::run::{
    default_timeout, in_netns, lossy, ns_command, run_with_timeout, show_argv, CmdResult, NsFds,
};
use crate::strays::remove_dir_safely;

/// Where fake hosts keep their files: `/tmp/cove-netlab-<pid>-<seq>-<test>`.
pub(crate) const TMP: &str = "/tmp";
/// Prefix of every fake host's directory name (and mount tag).
pub(crate) const PREFIX: &str = "cove-netlab-";

/// A fake host for one test: a holder process (`sleep`) in its own network namespace and
/// mount namespace, with `lo` up; a private tmpfs on `<dir>/state` (data-root and exec-root
/// live there), its own `/sys` (cgroup mounts bound back), a private tmpfs on `/run`, and
/// its own `/etc/resolv.conf` (see [`FakeHost::set_resolv_conf`]); optionally the daemon
/// under test running inside.
///
/// The test process itself stays outside: [`FakeHost::cove`] and [`FakeHost::api`] talk to
/// the daemon through `<dir>/sock/cove.sock` (a unix socket connects by path, across
/// network namespaces). Dropping it kills everything that ran inside and removes `<dir>`;
/// every process it starts dies with the test process (`PR_SET_PDEATHSIG`), and the next
/// test process removes what a crashed one left ([`cleanup_strays`](crate::cleanup_strays)).
#[derive(Debug)]
pub struct FakeHost {
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) tag: String,
    pub(crate) cove_bin: PathBuf,
    pub(crate) holder: Child,
    pub(crate) ns: Arc<NsFds>,
    pub(crate) netns_ino: u64,
    pub(crate) mntns_ino: u64,
    pub(crate) daemon: Option<Child>,
    pub(crate) timeout: Duration,
    /// `--data-root` when it is not `<state>/data` (a netlab host's, kept across reboots).
    pub(crate) data_root: Option<PathBuf>,
    /// The address on a netlab's underlay (`eth0`), for a netlab host.
    pub(crate) underlay: Option<std::net::Ipv4Addr>,
}

fn sanitize(name: &str) -> String {
    let last = name.rsplit("::").next().unwrap_or(name);
    let s: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' })
        .take(24)
        .collect();
    if s.is_empty() {
        "test".into()
    } else {
        s
    }
}

/// A fresh tag for the test `test_name`: `(sanitised name, cove-netlab-<pid>-<seq>-<name>)`.
/// The pid and a per-process counter make it unique among all test processes running at
/// once; the stray sweep reads the owner's pid back from it.
pub(crate) fn new_tag(test_name: &str) -> (String, String) {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = sanitize(test_name);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tag = format!("{PREFIX}{}-{seq}-{name}", std::process::id());
    (name, tag)
}

/// Write `<dir>/owner` (`<pid> <start time>`): what tells the stray sweep that the test
/// process that made `dir` still runs.
pub(crate) fn write_owner(dir: &Path) -> std::io::Result<()> {
    let me = std::process::id();
    let start = procs::start_time(me as i32).unwrap_or(0);
    fs::write(dir.join("owner"), format!("{me} {start}\n"))
}

/// Where and how to make a fake host (see [`FakeHost::create`]).
#[derive(Debug)]
pub(crate) struct HostSetup<'a> {
    /// The name shown in messages.
    pub name: String,
    /// Mount source tag and cgroup parent name; unique to this test process.
    pub tag: String,
    /// Its directory (must not exist yet).
    pub dir: PathBuf,
    pub cove_bin: &'a Path,
    /// A `--data-root` outside the state tmpfs (a netlab host's, kept across a reboot).
    pub data_root: Option<PathBuf>,
    /// A hostname of its own (a netlab host's: its name), in a UTS namespace of its own.
    pub hostname: Option<String>,
}

impl FakeHost {
    /// A new fake host for the test `test_name`, whose daemon (if started) is `cove_bin`.
    /// Panics with a clear message when the machine cannot run privileged tests.
    #[track_caller]
    pub fn new(test_name: &str, cove_bin: &Path) -> FakeHost {
        require_root();
        crate::strays::sweep_once();
        let (name, tag) = new_tag(test_name);
        let dir = Path::new(TMP).join(&tag);
        FakeHost::create(HostSetup { name, tag, dir, cove_bin, data_root: None, hostname: None })
    }

    /// Make the fake host `setup` describes: its directory, holder and namespaces.
    #[track_caller]
    pub(crate) fn create(setup: HostSetup<'_>) -> FakeHost {
        let HostSetup { name, tag, dir, cove_bin, data_root, hostname } = setup;
        let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
            let _ = fs::remove_dir_all(&dir);
            panic!("netlab: creating fake host {tag}: {what}: {e}")
        };
        if let Err(e) = fs::create_dir(&dir) {
            panic!("netlab: cannot create {}: {e}", dir.display());
        }
        let setup = || -> std::io::Result<()> {
            write_owner(&dir)?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))?;
            fs::create_dir(dir.join("sock"))?;
            fs::create_dir(dir.join("state"))?;
            fs::write(dir.join("resolv.conf"), DEFAULT_RESOLV_CONF)?;
            if let Some(d) = &data_root {
                fs::create_dir_all(d)?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            fail("writing its directory", &e);
        }
        let (state, resolv) = (dir.join("state"), dir.join("resolv.conf"));
        let spec = HolderSpec {
            tag: &tag,
            state: Some(&state),
            // Leave the real file alone when there is none to cover (a dangling symlink).
            resolv: Some(resolv.as_path()).filter(|_| Path::new("/etc/resolv.conf").exists()),
            hostname: hostname.as_deref(),
        };
        let holder = match spawn_holder(&spec, &dir.join("holder.log")) {
            Ok(h) => h,
            Err(e) => fail("starting its holder", &e),
        };
        let ns = match NsFds::open(holder.id()) {
            Ok(ns) => ns,
            Err(e) => {
                let mut holder = holder;
                let _ = holder.kill();
                let _ = holder.wait();
                fail("opening its namespaces", &e)
            }
        };
        FakeHost {
            name,
            netns_ino: ns.net_ino,
            mntns_ino: ns.mnt_ino,
            dir,
            tag,
            cove_bin: cove_bin.to_path_buf(),
            holder,
            ns,
            daemon: None,
            timeout: default_timeout(),
            data_root,
            underlay: None,
        }
    }

    /// [`FakeHost::new`] with the daemon binary taken from the environment variable
    /// `COVE_BIN` (panics when it is not set).
    #[track_caller]
    pub fn from_env(test_name: &str) -> FakeHost {
        let bin = std::env::var_os("COVE_BIN")
            .unwrap_or_else(|| panic!("netlab: set COVE_BIN to the path of the cove binary"));
        FakeHost::new(test_name, Path::new(&bin))
    }

    /// Its name: the (sanitised) test name it was made for, or a netlab host's node name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host-visible temp dir (`/tmp/cove-netlab-...`; a netlab host's is
    /// `<netlab dir>/<name>.<n>`, a new one after each reboot).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/state`: a private tmpfs inside the fake host (an empty dir outside it).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The daemon's `--data-root`: inside the fake host (`<state>/data`, on its private
    /// tmpfs), or for a [`Netlab`](crate::Netlab) host a directory of the netlab that
    /// outlives a [crash](crate::Netlab::crash) and is used again after a
    /// [reboot](crate::Netlab::reboot).
    pub fn data_root(&self) -> PathBuf {
        self.data_root.clone().unwrap_or_else(|| self.dir.join("state/data"))
    }

    /// The fake host's address on a netlab's underlay (its `eth0`); `None` for a
    /// stand-alone fake host.
    pub fn underlay_addr(&self) -> Option<std::net::Ipv4Addr> {
        self.underlay
    }

    /// The daemon's `--exec-root` (inside the fake host).
    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("state/run")
    }

    /// The daemon's API socket, reachable from the test process.
    pub fn sock_path(&self) -> PathBuf {
        self.dir.join("sock/cove.sock")
    }

    /// `unix://<sock_path>`, for `-H`, `COVE_HOST` or `DOCKER_HOST`.
    pub fn host_uri(&self) -> String {
        format!("unix://{}", self.sock_path().display())
    }

    /// The `--cgroup-parent` its daemon gets (`/<tag>`): cgroups under it are removed when
    /// the fake host is dropped. Give it to another daemon run in the fake host (a dockerd)
    /// so that its containers' cgroups go too.
    pub fn cgroup_parent(&self) -> String {
        crate::cgroups::parent_for(&self.tag)
    }

    /// The pid of the holder process (in the fake host's namespaces).
    pub fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// `path` as the test process can reach it inside the fake host's mount namespace
    /// (`/proc/<holder>/root/<path>`), e.g. to read files the daemon wrote on the state tmpfs.
    pub fn inside(&self, path: impl AsRef<Path>) -> PathBuf {
        let p = path.as_ref();
        let rel = p.strip_prefix("/").unwrap_or(p);
        PathBuf::from(format!("/proc/{}/root", self.holder.id())).join(rel)
    }

    /// The inode of the fake host's network namespace (differs from `/proc/1/ns/net`'s).
    pub fn netns_inode(&self) -> u64 {
        self.netns_ino
    }

    /// The inode of the fake host's mount namespace.
    pub fn mntns_inode(&self) -> u64 {
        self.mntns_ino
    }

    /// A command for `argv` that will run inside the fake host (its network and mount
    /// namespaces), for spawning background processes. It gets SIGKILL when the thread that
    /// spawns it ends; it is killed anyway when the fake host is dropped.
    pub fn command(&self, argv: &[&str]) -> Command {
        ns_command(&self.ns, argv)
    }

    /// Run `argv` inside the fake host and wait (panics if it cannot start or runs past the
    /// time limit, `COVE_NETLAB_TIMEOUT` seconds, default 120).
    pub fn exec(&self, argv: &[&str]) -> Output {
        run_with_timeout(self.command(argv), None, self.timeout, &show_argv(argv))
    }

    /// Run `sh -c script` inside the fake host.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// Run `sh -c script` inside the fake host; panic with its output unless it succeeds;
    /// return its stdout.
    #[track_caller]
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        CmdResult::from_output(format!("[{}] sh -c {script:?}", self.name), &out).ok();
        lossy(&out.stdout)
    }

    /// Run `f` on a thread inside the fake host's network namespace; sockets it creates
    /// (e.g. a `std::net::TcpListener`) stay in that namespace.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.ns, f)
    }

    /// The processes of this fake host (tag and namespaces), for snapshots and Drop.
    pub(crate) fn scope(&self, with_neighbours: bool) -> Scope {
        let mut tags = vec![self.tag.clone()];
        if with_neighbours {
            tags.push(format!("{}.nb", self.tag));
        }
        let mut roots = vec![self.holder.id() as i32];
        roots.extend(self.daemon_pid().map(|p| p as i32));
        Scope {
            tags,
            tag_prefix: String::new(),
            dir: format!("{}/", self.dir.display()),
            netns: [self.netns_ino].into(),
            mntns: [self.mntns_ino].into(),
            roots,
        }
    }

    /// Replace the fake host's `/etc/resolv.conf` contents (bind-mounted from
    /// `<dir>/resolv.conf`; the default names only `203.0.113.53`, an address on the
    /// "outside" subnet, so no query can leave the test's namespaces).
    pub fn set_resolv_conf(&self, contents: &str) {
        fs::write(self.dir.join("resolv.conf"), contents)
            .unwrap_or_else(|e| panic!("netlab: writing resolv.conf: {e}"));
    }
}

/// The fake host's resolv.conf until a test sets another: a server on the "outside" subnet
/// (see [`FakeHost::add_outside`]), so that DNS traffic never leaves the test's namespaces.
const DEFAULT_RESOLV_CONF: &str = "# netlab fake host\nnameserver 203.0.113.53\n";

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.daemon_log();
            if !log.is_empty() {
                eprintln!(
                    "---- netlab: daemon log of {} (tail) ----\n{}",
                    self.tag,
                    tail(&log, 100)
                );
            }
        }
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        let mut scope = self.scope(true);
        if let Some(m) = procs::mountinfo(&self.holder.id().to_string()) {
            scope.netns.extend(procs::nsfs_netns(&m));
        }
        let left = procs::kill_scope(&scope, &[], Duration::from_secs(5));
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        if left > 0 {
            eprintln!("netlab: {left} process(es) of {} survived SIGKILL for 5 s", self.tag);
        }
        let cg = crate::cgroups::remove_parent(&crate::cgroups::parent_for(&self.tag));
        if cg > 0 {
            eprintln!("netlab: {cg} cgroup(s) of {} are still populated", self.tag);
        }
        if std::env::var_os("COVE_NETLAB_KEEP").is_some() {
            eprintln!("netlab: keeping {} (COVE_NETLAB_KEEP)", self.dir.display());
            return;
        }
        remove_dir_safely(&self.dir);
    }
}
