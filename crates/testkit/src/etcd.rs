//! [`Etcd`]: a real etcd (Debian's `etcd-server` 3.4) for a test, always inside a network
//! namespace the test made, with its data on a tmpfs of its own, over plain HTTP or TLS with
//! client certificates ([`EtcdCerts`]); and [`require_etcd!`].

mod tls;

pub use tls::EtcdCerts;

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use crate::env::{have_command, require_root};
use crate::holder::{spawn_holder, HolderSpec};
use crate::host::{tail, PREFIX, TMP};
use crate::procs::{self, Scope};
use crate::run::{
    default_timeout, in_netns, run_with_timeout, set_death_signal, show_argv, spawn_long_lived,
    CmdResult, NsFds,
};
use crate::strays::{cleanup_strays, remove_dir_safely};

/// What an etcd fixture serves besides the plain v3 API.
#[derive(Debug, Clone, Copy)]
struct Serve {
    /// TLS, requiring client certificates.
    tls: bool,
    /// The v2 API too.
    v2: bool,
}

/// etcd's client port; the peer port is the next one.
const CLIENT_PORT: u16 = 2379;
/// How long etcd may take to become healthy (it takes ~0.3 s here).
const START_LIMIT: Duration = Duration::from_secs(30);

/// Skip the current test (with [`skip!`](crate::skip)) when etcd is not installed and
/// `COVE_REQUIRE_ETCD` is unset; panics when it is missing but required. `require_etcd!(tls)`
/// also needs `openssl` (for [`Etcd::start_tls`] and [`Etcd::start_in_tls`]).
///
/// ```no_run
/// # fn t() {
/// cove_testkit::require_etcd!();
/// let etcd = cove_testkit::Etcd::start("my_test");
/// # }
/// ```
#[macro_export]
macro_rules! require_etcd {
    () => {
        if let Some(why) = $crate::Etcd::missing() {
            $crate::skip!("{}", why);
        }
    };
    (tls) => {
        if let Some(why) = $crate::Etcd::missing_tls() {
            $crate::skip!("{}", why);
        }
    };
}

/// A single-member etcd cluster for one test, in a network namespace: a fresh one made for
/// it ([`Etcd::start`], etcd on 127.0.0.1), or one the caller made ([`Etcd::start_in`], e.g.
/// a netlab's key-value host at 203.0.113.2). Never in the host's network namespace: only
/// the namespace's own processes (and threads that joined it, [`Etcd::run_in_netns`]) can
/// reach it.
///
/// etcd runs in a mount namespace of its own with its data dir on a private tmpfs (fast
/// fsyncs), dies with the test process, and is killed with everything else of the fixture
/// when it is dropped, also on panic (then its log's tail is printed).
///
/// **TLS.** [`Etcd::start_tls`] and [`Etcd::start_in_tls`] make a CA, a server certificate
/// for etcd's address and a client certificate (`openssl`, in `<dir>/tls`), and start etcd
/// with `--client-cert-auth` on `https://<ip>:2379`: only clients with a certificate its CA
/// signed get in. [`Etcd::certs`] are a trusted client's files (as Cove's
/// `--cluster-store-opt kv.*`: [`EtcdCerts::store_opts`]); [`Etcd::untrusted_certs`] makes
/// another CA and a client certificate it signed; [`Etcd::rejected_connections`] reads the
/// handshakes etcd refused from its log. The fixture's own calls (`etcdctl`, the health
/// wait) use the trusted client's files.
///
/// ```no_run
/// # fn t(lab: &cove_testkit::Netlab) {
/// use std::net::IpAddr;
/// use cove_testkit::{Etcd, Netlab};
/// cove_testkit::require_etcd!(tls);
/// let etcd = Etcd::start_in_tls("my_test", &lab.kv().netns_path(), IpAddr::V4(Netlab::KV));
/// assert_eq!(etcd.client_url(), "https://203.0.113.2:2379");
/// let opts = etcd.certs().store_opts(); // ["kv.cacertfile=/tmp/...", "kv.certfile=...", ...]
/// etcd.etcdctl(&["put", "/k", "v"]).ok();
/// # }
/// ```
#[derive(Debug)]
pub struct Etcd {
    name: String,
    dir: PathBuf,
    tag: String,
    ip: IpAddr,
    ns: Arc<NsFds>,
    /// The holder of the namespace made for this etcd (`None`: the caller's namespace).
    holder: Option<Child>,
    etcd: Child,
    /// etcd's mount namespace, held open so that it outlives etcd until the fixture has
    /// killed everything in it: a namespace's inode number is reused once it is freed, and
    /// a scope naming a freed one would kill whatever got the number next (another test's
    /// etcd, seen with several TLS etcds starting at once).
    etcd_mntns: Option<(File, u64)>,
    timeout: Duration,
    /// The certificates, when etcd serves TLS.
    tls: Option<tls::Pki>,
}

impl Etcd {
    /// Why etcd tests cannot run here (etcd or etcdctl not installed), or `None`. Panics
    /// instead when `COVE_REQUIRE_ETCD` is set: CI installs etcd (scripts/setup.sh), so a
    /// missing one there is a failure, not a skip.
    pub fn missing() -> Option<String> {
        let absent: Vec<&str> =
            ["etcd", "etcdctl"].into_iter().filter(|c| !have_command(c)).collect();
        if absent.is_empty() {
            return None;
        }
        let why = format!(
            "{} not installed (Debian etcd-server and etcd-client; scripts/setup.sh installs them)",
            absent.join(" and ")
        );
        if std::env::var_os("COVE_REQUIRE_ETCD").is_some() {
            panic!("netlab: {why}, and COVE_REQUIRE_ETCD is set");
        }
        Some(why)
    }

    /// [`Etcd::missing`], and also when `openssl` (which makes the certificates of a TLS
    /// etcd) is not installed.
    pub fn missing_tls() -> Option<String> {
        if let Some(why) = Self::missing() {
            return Some(why);
        }
        if have_command("openssl") {
            return None;
        }
        let why = "openssl not installed (Debian openssl; scripts/setup.sh installs it)";
        if std::env::var_os("COVE_REQUIRE_ETCD").is_some() {
            panic!("netlab: {why}, and COVE_REQUIRE_ETCD is set");
        }
        Some(why.to_string())
    }

    /// Start etcd for the test `test_name` in a fresh network namespace, on 127.0.0.1:2379,
    /// and wait until it is healthy.
    #[track_caller]
    pub fn start(test_name: &str) -> Etcd {
        Self::start_fresh(test_name, false)
    }

    /// [`Etcd::start`], serving TLS and requiring client certificates (see [`Etcd`]).
    #[track_caller]
    pub fn start_tls(test_name: &str) -> Etcd {
        Self::start_fresh(test_name, true)
    }

    #[track_caller]
    fn start_fresh(test_name: &str, tls: bool) -> Etcd {
        require_root();
        let (dir, tag) = make_dir(test_name);
        let spec = HolderSpec { tag: &tag, state: None, resolv: None, hostname: None };
        let holder = match spawn_holder(&spec, &dir.join("holder.log")) {
            Ok(h) => h,
            Err(e) => fail(&dir, "starting its namespace holder", &e),
        };
        let ns = match NsFds::open(holder.id()) {
            Ok(ns) => ns,
            Err(e) => {
                let mut holder = holder;
                let _ = holder.kill();
                let _ = holder.wait();
                fail(&dir, "opening its namespaces", &e)
            }
        };
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self::launch(test_name, dir, tag, ns, Some(holder), ip, Serve { tls, v2: false })
    }

    /// Start etcd for the test `test_name` inside the network namespace `netns` (a file
    /// naming one: `/proc/<pid>/ns/net`, `/run/netns/<name>`) that the caller made, listening
    /// on `ip` (which must be on one of its links), and wait until it is healthy. Refuses the
    /// test process's own namespace.
    #[track_caller]
    pub fn start_in(test_name: &str, netns: &Path, ip: IpAddr) -> Etcd {
        Self::start_in_ns(test_name, netns, ip, false, false)
    }

    /// [`Etcd::start_in`], serving TLS and requiring client certificates (see [`Etcd`]):
    /// etcd's certificate names `ip`.
    #[track_caller]
    pub fn start_in_tls(test_name: &str, netns: &Path, ip: IpAddr) -> Etcd {
        Self::start_in_ns(test_name, netns, ip, true, false)
    }

    /// [`Etcd::start_in`], and etcd also serves its v2 API (`--enable-v2=true`), the only
    /// one Docker 20.10's `--cluster-store etcd://` speaks (through libkv). Cove needs only
    /// the v3 API.
    #[track_caller]
    pub fn start_in_v2(test_name: &str, netns: &Path, ip: IpAddr) -> Etcd {
        Self::start_in_ns(test_name, netns, ip, false, true)
    }

    #[track_caller]
    fn start_in_ns(test_name: &str, netns: &Path, ip: IpAddr, tls: bool, v2: bool) -> Etcd {
        require_root();
        let net = File::open(netns)
            .unwrap_or_else(|e| panic!("netlab: etcd: opening netns {}: {e}", netns.display()));
        let net_ino = net.metadata().map(|m| m.ino()).unwrap_or(0);
        let own = crate::procs::ns_inode("self", "net");
        let init = crate::procs::ns_inode("1", "net");
        if Some(net_ino) == own || Some(net_ino) == init {
            panic!(
                "netlab: etcd: {} is the host's network namespace; start etcd only in one the \
                 test made",
                netns.display()
            );
        }
        let mnt = File::open("/proc/self/ns/mnt")
            .unwrap_or_else(|e| panic!("netlab: etcd: opening /proc/self/ns/mnt: {e}"));
        let mnt_ino = mnt.metadata().map(|m| m.ino()).unwrap_or(0);
        let ns = Arc::new(NsFds { net: net.into(), mnt: mnt.into(), uts: None, net_ino, mnt_ino });
        let (dir, tag) = make_dir(test_name);
        Self::launch(test_name, dir, tag, ns, None, ip, Serve { tls, v2 })
    }

    #[track_caller]
    fn launch(
        test_name: &str,
        dir: PathBuf,
        tag: String,
        ns: Arc<NsFds>,
        holder: Option<Child>,
        ip: IpAddr,
        serve: Serve,
    ) -> Etcd {
        let Serve { tls, v2 } = serve;
        let data = dir.join("data");
        let log = dir.join("etcd.log");
        let mut holder = holder;
        let pki = match tls.then(|| tls::Pki::make(&dir.join("tls"), ip)).transpose() {
            Ok(pki) => pki,
            Err(e) => {
                if let Some(h) = holder.as_mut() {
                    let _ = h.kill();
                    let _ = h.wait();
                }
                fail(&dir, "making its certificates", &e)
            }
        };
        let spawned = fs::create_dir(&data)
            .map_err(|e| format!("mkdir {}: {e}", data.display()))
            .and_then(|()| spawn_etcd(&ns, &tag, &data, &log, ip, pki.as_ref(), v2));
        let etcd = match spawned {
            Ok(c) => c,
            Err(e) => {
                if let Some(h) = holder.as_mut() {
                    let _ = h.kill();
                    let _ = h.wait();
                }
                fail(&dir, "starting etcd", &e)
            }
        };
        let etcd_mntns = File::open(format!("/proc/{}/ns/mnt", etcd.id()))
            .and_then(|f| f.metadata().map(|m| (m.ino(), f)))
            .ok()
            .map(|(ino, f)| (f, ino));
        let mut me = Etcd {
            name: test_name.to_string(),
            dir,
            tag,
            ip,
            ns,
            holder,
            etcd,
            etcd_mntns,
            timeout: default_timeout(),
            tls: pki,
        };
        me.wait_healthy();
        me
    }

    /// Poll etcd's `/health` from inside its namespace until it says so (over TLS: once its
    /// log says it serves clients, `etcdctl endpoint health` with the trusted client's
    /// certificate; a bare TCP probe would show in [`Etcd::rejected_connections`]).
    #[track_caller]
    fn wait_healthy(&mut self) {
        let addr = SocketAddr::new(self.ip, CLIENT_PORT);
        let t0 = Instant::now();
        loop {
            let healthy = if self.tls.is_some() {
                self.log().contains("serving client traffic")
                    && self
                        .etcdctl(&[
                            "endpoint",
                            "health",
                            "--dial-timeout=1s",
                            "--command-timeout=2s",
                        ])
                        .success()
            } else {
                self.run_in_netns(|| health(addr))
            };
            if healthy {
                return;
            }
            if let Ok(Some(status)) = self.etcd.try_wait() {
                panic!("netlab: etcd exited ({status}) before it was healthy\n{}", self.log_tail());
            }
            if t0.elapsed() > START_LIMIT {
                panic!("netlab: etcd not healthy after {START_LIMIT:?}\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The store URL, as Cove's `--cluster-store` takes it: `etcd://127.0.0.1:2379`.
    pub fn endpoint(&self) -> String {
        format!("etcd://{}", self.host_port())
    }

    /// The client URL, as etcdctl's `--endpoints` takes it: `http://127.0.0.1:2379`
    /// (`https://` when etcd serves TLS).
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.host_port())
    }

    /// Whether etcd serves TLS (and requires client certificates).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A trusted client's files: the CA that signed etcd's certificate (and the client's),
    /// the client's certificate and key. Panics unless etcd serves TLS.
    #[track_caller]
    pub fn certs(&self) -> &EtcdCerts {
        match &self.tls {
            Some(pki) => &pki.client,
            None => {
                panic!("netlab: etcd of {} does not serve TLS (use Etcd::start_in_tls)", self.tag)
            }
        }
    }

    /// Make another CA, which etcd does not trust and which did not sign etcd's certificate,
    /// and a client certificate it signed (in `<dir>/tls/<name>/`; `name`: `[A-Za-z0-9-]`,
    /// once per name). Its `cert`/`key` are refused by etcd; its `ca` refuses etcd's
    /// certificate. Panics unless etcd serves TLS.
    #[track_caller]
    pub fn untrusted_certs(&self, name: &str) -> EtcdCerts {
        let Some(pki) = &self.tls else {
            panic!("netlab: etcd of {} does not serve TLS (use Etcd::start_in_tls)", self.tag)
        };
        pki.other_ca(name).unwrap_or_else(|e| panic!("netlab: etcd of {}: {e}", self.tag))
    }

    /// The connections etcd refused so far (its log's `rejected connection` lines), each as
    /// `<remote address>: <error>`, e.g. `203.0.113.11:40122: tls: client didn't provide a
    /// certificate`.
    pub fn rejected_connections(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("\"rejected connection\""))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| {
                let field = |k: &str| v[k].as_str().unwrap_or("?").to_string();
                format!("{}: {}", field("remote-addr"), field("error"))
            })
            .collect()
    }

    fn host_port(&self) -> String {
        SocketAddr::new(self.ip, CLIENT_PORT).to_string()
    }

    /// The address etcd listens on.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// etcd's pid.
    pub fn pid(&self) -> u32 {
        self.etcd.id()
    }

    /// The inode of the network namespace etcd runs in.
    pub fn netns_inode(&self) -> u64 {
        self.ns.net_ino
    }

    /// The fixture's host-visible temp dir (etcd's log is `etcd.log` there).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// etcd's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        format!("---- etcd log of {} (tail) ----\n{}", self.tag, tail(&self.log(), 40))
    }

    /// Run `f` on a thread inside etcd's network namespace. Threads it spawns stay there,
    /// so a client made inside (an `EtcdStore`, whose client thread is spawned at connect)
    /// keeps talking to this etcd after `f` returns.
    pub fn run_in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.ns, f)
    }

    /// Run `etcdctl --endpoints <client_url> <args>` (v3 API) in etcd's namespace (over
    /// TLS with the trusted client's files: `--cacert --cert --key`).
    pub fn etcdctl(&self, args: &[&str]) -> CmdResult {
        let flags = self.tls.as_ref().map(|p| p.client.etcdctl_flags()).unwrap_or_default();
        self.etcdctl_with(&flags, args)
    }

    /// Run `etcdctl --endpoints <client_url> <flags> <args>` in etcd's namespace, with no
    /// TLS flags but `flags` (e.g. another client's [`EtcdCerts::etcdctl_flags`], or only
    /// `--cacert=...`).
    pub fn etcdctl_with(&self, flags: &[String], args: &[&str]) -> CmdResult {
        let url = self.client_url();
        let mut argv = vec!["etcdctl", "--endpoints", url.as_str()];
        argv.extend(flags.iter().map(String::as_str));
        argv.extend_from_slice(args);
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..]).env("ETCDCTL_API", "3");
        let ns = Arc::clone(&self.ns);
        // SAFETY: the closure runs between fork and exec and only calls setns(2) on a
        // descriptor kept open by the captured Arc; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(ns.net.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        set_death_signal(&mut cmd);
        let shown = show_argv(&argv);
        let out = run_with_timeout(cmd, None, self.timeout, &shown);
        CmdResult::from_output(format!("[etcd {}] {shown}", self.name), &out)
    }

    /// The store's current revision (etcd's whole keyspace).
    #[track_caller]
    pub fn revision(&self) -> i64 {
        let out = self.etcdctl(&["endpoint", "status", "-w", "json"]);
        out.ok();
        out.json()[0]["Status"]["header"]["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("netlab: etcd: no revision in\n{out}"))
    }

    /// Compact etcd's history up to `revision`: watches from before it fail afterwards.
    #[track_caller]
    pub fn compact(&self, revision: i64) {
        self.etcdctl(&["compact", &revision.to_string(), "--physical"]).ok();
    }

    /// Stop etcd (SIGSTOP): connections stay open and nothing answers. Returns once every
    /// thread of it is stopped: `kill` only queues the signal, and a thread running on
    /// another CPU would otherwise still answer a request sent right after.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.etcd.id());
        let stopped = || {
            std::fs::read_dir(&tasks).is_ok_and(|dir| {
                dir.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                        // The state follows the parenthesised command name.
                        stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T'))
                    })
                })
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !stopped() {
            assert!(std::time::Instant::now() < deadline, "etcd did not stop on SIGSTOP");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// Let a paused etcd go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child, which is not reaped before Drop.
        unsafe { libc::kill(self.etcd.id() as libc::pid_t, sig) };
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        // Whatever else ran in etcd's mount namespace (still held open, so its number is
        // still its own), and, in a namespace made for it, everything in that namespace
        // (held by `ns`); never the caller's processes.
        let mut scope = Scope { tags: vec![self.tag.clone()], ..Scope::default() };
        scope.mntns.extend(self.etcd_mntns.as_ref().map(|(_, ino)| *ino));
        if let Some(h) = &self.holder {
            scope.netns.insert(self.ns.net_ino);
            scope.roots.push(h.id() as i32);
        }
        let left = procs::kill_scope(&scope, &[], Duration::from_secs(5));
        if let Some(h) = self.holder.as_mut() {
            let _ = h.kill();
            let _ = h.wait();
        }
        if left > 0 {
            eprintln!("netlab: {left} process(es) of {} survived SIGKILL", self.tag);
        }
        if std::env::var_os("COVE_NETLAB_KEEP").is_some() {
            eprintln!("netlab: keeping {} (COVE_NETLAB_KEEP)", self.dir.display());
            return;
        }
        remove_dir_safely(&self.dir);
    }
}

/// `/tmp/cove-netlab-<pid>-etcd<seq>-<test>`, with the owner file that lets a later run
/// remove it if this one crashes ([`cleanup_strays`]); and its name, the fixture's tag.
#[track_caller]
fn make_dir(test_name: &str) -> (PathBuf, String) {
    static STRAYS: Once = Once::new();
    STRAYS.call_once(|| {
        cleanup_strays();
    });
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let last = test_name.rsplit("::").next().unwrap_or(test_name);
    let short: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .take(24)
        .collect();
    let me = std::process::id();
    let tag = format!("{PREFIX}{me}-etcd{}-{short}", SEQ.fetch_add(1, Ordering::Relaxed));
    let dir = Path::new(TMP).join(&tag);
    if let Err(e) = fs::create_dir(&dir) {
        panic!("netlab: cannot create {}: {e}", dir.display());
    }
    let start = procs::start_time(me as i32).unwrap_or(0);
    if let Err(e) = fs::write(dir.join("owner"), format!("{me} {start}\n")) {
        fail(&dir, "writing its owner file", &e);
    }
    (dir, tag)
}

#[track_caller]
fn fail(dir: &Path, what: &str, e: &dyn std::fmt::Display) -> ! {
    let _ = fs::remove_dir_all(dir);
    panic!("netlab: etcd in {}: {what}: {e}", dir.display())
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| format!("{}: {e}", p.display()))
}

/// Spawn etcd in `ns`'s network namespace and a new mount namespace with a tmpfs (tagged
/// `tag`) on `data`; stderr to `log`; with `pki`, its client URL is `https://` and requires
/// client certificates (the peer URL stays plain: a single member has no peers); with `v2`,
/// its v2 API on too. It dies with the test process.
fn spawn_etcd(
    ns: &Arc<NsFds>,
    tag: &str,
    data: &Path,
    log: &Path,
    ip: IpAddr,
    pki: Option<&tls::Pki>,
    v2: bool,
) -> Result<Child, String> {
    let bin = if have_command("etcd") { "etcd" } else { "/usr/bin/etcd" };
    let url = |scheme: &str, port: u16| format!("{scheme}://{}", SocketAddr::new(ip, port));
    let client = url(if pki.is_some() { "https" } else { "http" }, CLIENT_PORT);
    let peer = url("http", CLIENT_PORT + 1);
    let member = data.join("member");
    let log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(["--name", "cove-test", "--data-dir"])
        .arg(&member)
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("cove-test={peer}")])
        .args(["--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr"])
        .args(v2.then_some("--enable-v2=true"));
    if let Some(pki) = pki {
        cmd.arg("--cert-file")
            .arg(&pki.server_cert)
            .arg("--key-file")
            .arg(&pki.server_key)
            .arg("--trusted-ca-file")
            .arg(&pki.client.ca)
            .arg("--client-cert-auth");
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
    let (tag_c, data_c) = (CString::new(tag).map_err(|e| e.to_string())?, cstr(data)?);
    let ns = Arc::clone(ns);
    // SAFETY: the closure runs between fork and exec; it only makes system calls (setns,
    // unshare, mount) on a descriptor kept open by the captured Arc and C strings made
    // before the fork; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // The network namespace first: if this fails, etcd never starts, so it can never
            // run in the host's.
            if libc::setns(ns.net.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            let none = std::ptr::null();
            let private = libc::MS_REC | libc::MS_PRIVATE;
            if libc::mount(c"none".as_ptr(), c"/".as_ptr(), none, private, none.cast()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let opts = c"mode=0700";
            let tmpfs = c"tmpfs".as_ptr();
            if libc::mount(tag_c.as_ptr(), data_c.as_ptr(), tmpfs, 0, opts.as_ptr().cast()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    set_death_signal(&mut cmd);
    spawn_long_lived(cmd).map_err(|e| format!("{bin}: {e}"))
}

/// Whether etcd at `addr` answers `GET /health` with `"health":"true"` (run inside its
/// namespace).
fn health(addr: SocketAddr) -> bool {
    let ask = || -> io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(s, "GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        Ok(body)
    };
    ask().is_ok_and(|b| b.contains("\"health\":\"true\""))
}
