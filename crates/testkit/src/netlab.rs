//! [`Netlab`]: the multi-host test bed. An underlay switch (namespace `ul`, bridge `ul0`,
//! no IP) and machines cabled to it by veth pairs on 203.0.113.0/24 (TEST-NET-3): fake
//! hosts running Cove (`h1` 203.0.113.11, `h2` .12, ...), and plain nodes (`kv` .2 for
//! etcd, `evil` .66, `cli` .100). Faults (partitions, crashes, reboots, MTU changes) and
//! frame counters act on the switch; nothing touches the real host's network.
//!
//! How to write a multi-host test: see [`Netlab`].

mod audit;
mod capture;
mod faults;
mod node;
mod probe;
mod switch;

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

pub use audit::NetlabSnapshot;
pub use capture::{FrameCounter, Frames};
pub use node::Node;

use crate::env::require_root;
use crate::host::{new_tag, write_owner, FakeHost, HostSetup, TMP};
use crate::run::{in_netns, lossy, ns_command, run_with_timeout, show_argv, CmdResult, NsFds};
use node::Ns;
use switch::Switch;

/// How a node is cabled to the underlay switch: its address on 203.0.113.0/24 and the MTU
/// of each end (default 1500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attach {
    /// The node's address on `eth0` (a /24).
    pub addr: Ipv4Addr,
    /// MTU of the node's `eth0`.
    pub mtu: u32,
    /// MTU of the switch's port to the node.
    pub port_mtu: u32,
}

impl Attach {
    /// `addr`, MTU 1500 at both ends.
    pub fn new(addr: Ipv4Addr) -> Attach {
        Attach { addr, mtu: 1500, port_mtu: 1500 }
    }

    /// The same MTU at both ends.
    pub fn mtu(self, mtu: u32) -> Attach {
        Attach { mtu, port_mtu: mtu, ..self }
    }

    /// Another MTU on the switch's port only.
    pub fn port_mtu(self, port_mtu: u32) -> Attach {
        Attach { port_mtu, ..self }
    }
}

impl From<Ipv4Addr> for Attach {
    fn from(addr: Ipv4Addr) -> Attach {
        Attach::new(addr)
    }
}

/// A multi-host test bed: the underlay switch (namespace `ul`, bridge `ul0`), the fake
/// hosts and plain nodes cabled to it, faults and frame counters.
///
/// ```text
///          netns "ul" (switch, no IP): bridge ul0 + nft table `bridge netlab`
///    +-----------+-----------+-----------+-----------+-----------+
///  h1 eth0     h2 eth0     h3 eth0     kv eth0     evil eth0   cli eth0
///  .11         .12         .13         .2 (etcd)   .66         .100     (203.0.113.0/24)
/// ```
///
/// Nodes are addressed by name. A fake host here is a [`FakeHost`] whose `eth0` is on the
/// underlay, whose cgroup parent is `/<netlab tag>.<name>.<n>`, and whose data root is a
/// directory of the netlab that survives [`Netlab::crash`] (its exec root is on the fake
/// host's tmpfs and does not). A plain node is a [`Node`].
///
/// Dropping a netlab, also while a test panics, kills every process in its namespaces,
/// removes the namespaces (the last reference goes), the hosts' cgroups and the netlab's
/// directory (kept with `COVE_NETLAB_KEEP`).
///
/// # Writing a multi-host test
///
/// 1. Put it in a test binary whose name starts with `multihost` (e.g.
///    `crates/cove/tests/multihost_overlay.rs`), or give the test a name containing
///    `multihost`: `.config/nextest.toml` puts such tests in the `multihost` test group,
///    so that at most two netlabs run at once on the 2-core CI box.
/// 2. Call [`require_root`](crate::require_root) (privileged tests fail, never pass,
///    without root), then build the netlab: [`Netlab::with_hosts`] makes `kv` and
///    `h1`..`hN` in parallel (about 50 ms for three hosts); [`Netlab::add`] adds more
///    hosts or plain nodes (`evil` at [`Netlab::EVIL`], `cli` at [`Netlab::CLI`]). In
///    `crates/cove/tests` the daemon is `env!("CARGO_BIN_EXE_cove")`.
/// 3. Start etcd in [`Netlab::kv`] (its fixture takes the node), then the daemons with
///    [`Netlab::start_daemons`] (in parallel; `{addr}`/`{name}` in the flags are each
///    host's own). Drive each host through [`Netlab::host`] (`cove`, `api`, `sh_ok`).
/// 4. Send test traffic only from inside nodes ([`Netlab::sh_ok`], [`Netlab::in_netns`],
///    [`Netlab::tcp_reaches`]); prove delivery with [`Netlab::count_frames`] on the
///    switch, and absence with a positive control next to it.
/// 5. Take [`Netlab::snapshot`] after set-up and end with [`Netlab::assert_no_leaks`]
///    (every host's links incl. VXLAN configuration, FDB, permanent neighbours, routes,
///    rules, nft, mounts, processes).
///
/// ```no_run
/// use cove_testkit::{require_root, Frames, Netlab};
/// # use std::path::Path;
/// # let cove = Path::new("/path/to/cove"); // env!("CARGO_BIN_EXE_cove") in crates/cove
/// require_root();
/// let mut lab = Netlab::with_hosts("multihost_example", cove, 3); // ul, kv, h1..h3
/// // (start etcd in lab.kv() here)
/// let flags = ["--cluster-store", "etcd://203.0.113.2:2379", "--cluster-advertise", "{addr}"];
/// lab.start_daemons(&["h1", "h2", "h3"], &flags);
/// let baseline = lab.snapshot();
/// lab.host("h1").cove(&["network", "create", "-d", "overlay", "ov1"]).ok();
/// // ... containers on h1 and h2; no VXLAN datagram may reach h3 meanwhile:
/// let ((), n) = lab.count_frames(&[Frames::any().to("h3").vxlan()], || {
///     // traffic between the containers on h1 and h2
/// });
/// assert_eq!(n[0], 0);
/// lab.partition_control("h2"); // h2 <-> etcd cut; lab.partition("h2") cuts its cable
/// lab.heal("h2");
/// lab.crash("h2", true); // kill -9 everything of h2, keep its data root
/// lab.reboot("h2", None); // new namespaces, same data root and address
/// lab.start_daemons(&["h2"], &flags);
/// lab.host("h1").cove(&["network", "rm", "ov1"]).ok();
/// lab.assert_no_leaks(&baseline);
/// // Dropping `lab` (also on panic) kills everything in it and removes its files.
/// ```
///
/// Everything a netlab makes outside its namespaces is named after the test process
/// (`/tmp/cove-netlab-<pid>-<seq>-<test>`, cgroups `/cove-netlab-<pid>-<seq>-<test>.<host>.<n>`),
/// so parallel tests never collide, and the stray sweep removes only what dead test
/// processes left (see [`cleanup_strays`](crate::cleanup_strays)).
#[derive(Debug)]
pub struct Netlab {
    name: String,
    tag: String,
    dir: PathBuf,
    cove_bin: PathBuf,
    // Dropped in this order: hosts and nodes, then the switch, then the directory.
    hosts: BTreeMap<String, FakeHost>,
    nodes: BTreeMap<String, Node>,
    switch: Switch,
    _dir: DirGuard,
}

/// Removes the netlab's directory when dropped (after everything in it).
#[derive(Debug)]
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if std::env::var_os("COVE_NETLAB_KEEP").is_some() {
            eprintln!("netlab: keeping {} (COVE_NETLAB_KEEP)", self.0.display());
            return;
        }
        crate::strays::remove_dir_safely(&self.0);
    }
}

const RESOLV_CONF: &str = "# netlab node: no server is reachable\nnameserver 203.0.113.53\n";

impl Netlab {
    /// etcd's node `kv`.
    pub const KV: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
    /// The attacker `evil`.
    pub const EVIL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
    /// The ingress client `cli`.
    pub const CLI: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);

    /// The address of fake host `h<n>`: 203.0.113.(10 + n).
    pub const fn host_addr(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(203, 0, 113, 10 + n)
    }

    /// A netlab with only the underlay switch, for the test `test_name`; fake hosts run
    /// `cove_bin` as their daemon. Panics when the machine cannot run privileged tests.
    #[track_caller]
    pub fn new(test_name: &str, cove_bin: &Path) -> Netlab {
        require_root();
        crate::strays::sweep_once();
        let (name, tag) = new_tag(test_name);
        let dir = Path::new(TMP).join(&tag);
        if let Err(e) = fs::create_dir(&dir) {
            panic!("netlab: cannot create {}: {e}", dir.display());
        }
        let guard = DirGuard(dir.clone());
        let setup = || -> std::io::Result<()> {
            write_owner(&dir)?;
            fs::write(dir.join("resolv.conf"), RESOLV_CONF)?;
            fs::create_dir(dir.join("data"))
        };
        if let Err(e) = setup() {
            panic!("netlab: writing {}: {e}", dir.display());
        }
        let switch =
            Switch::new(&format!("{tag}.ul"), &dir.join("ul.log"), &dir.join("resolv.conf"));
        Netlab {
            name,
            tag,
            dir,
            cove_bin: cove_bin.to_path_buf(),
            hosts: BTreeMap::new(),
            nodes: BTreeMap::new(),
            switch,
            _dir: guard,
        }
    }

    /// A netlab with `kv` (203.0.113.2) and the fake hosts `h1`..`h<n>` (203.0.113.11...),
    /// made in parallel.
    #[track_caller]
    pub fn with_hosts(test_name: &str, cove_bin: &Path, n: u8) -> Netlab {
        let mut lab = Netlab::new(test_name, cove_bin);
        let names: Vec<String> = (1..=n).map(|i| format!("h{i}")).collect();
        let hosts: Vec<(&str, Attach)> =
            names.iter().zip(1..).map(|(h, i)| (h.as_str(), Netlab::host_addr(i).into())).collect();
        lab.add(&hosts, &[("kv", Netlab::KV.into())]);
        lab
    }

    /// [`Netlab::new`] with the daemon binary taken from `COVE_BIN` (panics when unset).
    #[track_caller]
    pub fn from_env(test_name: &str) -> Netlab {
        let bin = std::env::var_os("COVE_BIN")
            .unwrap_or_else(|| panic!("netlab: set COVE_BIN to the path of the cove binary"));
        Netlab::new(test_name, Path::new(&bin))
    }

    /// The (sanitised) test name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `cove-netlab-<pid>-<seq>-<test>`: unique to this netlab among all test processes.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The netlab's directory (`/tmp/<tag>`): hosts' directories, data roots
    /// (`data/<host>`), logs. A fixture may keep its files here (e.g. `<dir>/kv`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Add the fake host `name` (at most 9 characters of `[A-Za-z0-9_]`) cabled as `at`.
    #[track_caller]
    pub fn add_host(&mut self, name: &str, at: impl Into<Attach>) -> &mut FakeHost {
        self.add(&[(name, at.into())], &[]);
        self.host_mut(name)
    }

    /// Add the plain node `name` cabled as `at`.
    #[track_caller]
    pub fn add_node(&mut self, name: &str, at: impl Into<Attach>) -> &Node {
        self.add(&[], &[(name, at.into())]);
        self.node(name)
    }

    /// Add fake hosts and plain nodes, all in parallel.
    #[track_caller]
    pub fn add(&mut self, hosts: &[(&str, Attach)], nodes: &[(&str, Attach)]) {
        let mut names: Vec<&str> = hosts.iter().chain(nodes).map(|(n, _)| *n).collect();
        for n in &names {
            self.check_new_name(n);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), hosts.len() + nodes.len(), "netlab: a name is given twice");
        let this = &*self;
        let (hs, ns) = std::thread::scope(|s| {
            let hs: Vec<_> =
                hosts.iter().map(|(n, a)| s.spawn(move || this.make_host(n, *a))).collect();
            let ns: Vec<_> =
                nodes.iter().map(|(n, a)| s.spawn(move || this.make_node(n, *a))).collect();
            let hs: Vec<_> = hs.into_iter().map(|h| h.join()).collect();
            let ns: Vec<_> = ns.into_iter().map(|h| h.join()).collect();
            (hs, ns)
        });
        // Keep what was made (the netlab cleans it up), then report the first failure.
        let mut failed = None;
        for ((name, _), h) in hosts.iter().zip(hs) {
            match h {
                Ok(h) => drop(self.hosts.insert(name.to_string(), h)),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        for ((name, _), n) in nodes.iter().zip(ns) {
            match n {
                Ok(n) => drop(self.nodes.insert(name.to_string(), n)),
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            std::panic::resume_unwind(e);
        }
    }

    #[track_caller]
    fn check_new_name(&self, name: &str) {
        let ok = !name.is_empty()
            && name.len() <= 9
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        assert!(ok, "netlab: node names are 1-9 characters of [A-Za-z0-9_]: {name:?}");
        assert!(
            !self.hosts.contains_key(name) && !self.nodes.contains_key(name),
            "netlab: there is already a node {name}"
        );
    }

    /// The tag and generation for the next incarnation of node `name`.
    fn next_tag(&self, name: &str) -> (String, u32) {
        let gen = self.switch.port(name).map_or(0, |p| p.gen + 1);
        (format!("{}.{name}.{gen}", self.tag), gen)
    }

    #[track_caller]
    fn make_host(&self, name: &str, at: Attach) -> FakeHost {
        let (tag, gen) = self.next_tag(name);
        let mut h = FakeHost::create(HostSetup {
            name: name.to_string(),
            tag,
            dir: self.dir.join(format!("{name}.{gen}")),
            cove_bin: &self.cove_bin,
            data_root: Some(self.data_root(name)),
            hostname: Some(name.to_string()),
        });
        h.underlay = Some(at.addr);
        self.switch.attach(name, true, h.holder_pid(), &h.ns, at);
        h
    }

    #[track_caller]
    fn make_node(&self, name: &str, at: Attach) -> Node {
        let (tag, gen) = self.next_tag(name);
        let log = self.dir.join(format!("{name}.{gen}.log"));
        let ns = Ns::spawn(name, &tag, &log, Some(&self.dir.join("resolv.conf")))
            .unwrap_or_else(|e| panic!("netlab: starting node {name}: {e}"));
        self.switch.attach(name, false, ns.pid(), &ns.ns, at);
        Node { ns, addr: at.addr }
    }

    /// Where the fake host `name` keeps its data root (across crashes and reboots).
    pub fn data_root(&self, name: &str) -> PathBuf {
        self.dir.join("data").join(name)
    }

    /// The fake host `name` (panics when there is none, e.g. after a crash).
    #[track_caller]
    pub fn host(&self, name: &str) -> &FakeHost {
        match self.hosts.get(name) {
            Some(h) => h,
            None => panic!("netlab: no fake host {name} (hosts: {:?})", self.host_names()),
        }
    }

    /// The fake host `name`, mutable (to start or stop its daemon).
    #[track_caller]
    pub fn host_mut(&mut self, name: &str) -> &mut FakeHost {
        let names = self.host_names();
        match self.hosts.get_mut(name) {
            Some(h) => h,
            None => panic!("netlab: no fake host {name} (hosts: {names:?})"),
        }
    }

    /// The names of the fake hosts that exist now.
    pub fn host_names(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    /// The plain node `name` (panics when there is none).
    #[track_caller]
    pub fn node(&self, name: &str) -> &Node {
        match self.nodes.get(name) {
            Some(n) => n,
            None => panic!(
                "netlab: no plain node {name} (nodes: {:?})",
                self.nodes.keys().collect::<Vec<_>>()
            ),
        }
    }

    /// The node `kv` (etcd's).
    #[track_caller]
    pub fn kv(&self) -> &Node {
        self.node("kv")
    }

    /// The underlay address node `name` has (or had before a crash).
    #[track_caller]
    pub fn addr(&self, name: &str) -> Ipv4Addr {
        self.switch.addr(name).unwrap_or_else(|| panic!("netlab: no node {name}"))
    }

    /// The name of the switch's port to node `name` (in namespace `ul`).
    #[track_caller]
    pub fn port(&self, name: &str) -> String {
        self.switch.port(name).unwrap_or_else(|| panic!("netlab: no node {name}")).ifname
    }

    /// Run `sh -c script` in the switch namespace `ul` (to inspect it: `bridge fdb show`,
    /// `nft list ruleset`); panic unless it succeeds; its stdout.
    #[track_caller]
    pub fn switch_sh_ok(&self, script: &str) -> String {
        self.switch.ns.sh_ok(script)
    }

    /// The pid of the switch's holder process.
    pub fn switch_pid(&self) -> u32 {
        self.switch.ns.pid()
    }

    /// Start the daemon on each of the fake hosts `names`, in parallel, with `extra` flags
    /// after netlab's own (see [`FakeHost::start_daemon`]); in `extra`, `{addr}` stands for
    /// the host's underlay address and `{name}` for its name.
    #[track_caller]
    pub fn start_daemons(&mut self, names: &[&str], extra: &[&str]) {
        for n in names {
            self.host(n);
        }
        std::thread::scope(|s| {
            let threads: Vec<_> = self
                .hosts
                .iter_mut()
                .filter(|(n, _)| names.contains(&n.as_str()))
                .map(|(n, h)| {
                    let addr = h.underlay.map(|a| a.to_string()).unwrap_or_default();
                    let args: Vec<String> = extra
                        .iter()
                        .map(|a| a.replace("{addr}", &addr).replace("{name}", n))
                        .collect();
                    s.spawn(move || {
                        let args: Vec<&str> = args.iter().map(String::as_str).collect();
                        h.start_daemon(&args);
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join()).collect();
            for r in results {
                if let Err(e) = r {
                    std::panic::resume_unwind(e);
                }
            }
        });
    }

    /// The namespaces of node `name`, host or plain.
    #[track_caller]
    fn ns_of(&self, name: &str) -> &Arc<NsFds> {
        if let Some(h) = self.hosts.get(name) {
            return &h.ns;
        }
        match self.nodes.get(name) {
            Some(n) => &n.ns.ns,
            None => panic!("netlab: no node {name}"),
        }
    }

    /// A command for `argv` that will run in node `name` (host or plain; see
    /// [`FakeHost::command`]).
    #[track_caller]
    pub fn command(&self, name: &str, argv: &[&str]) -> Command {
        ns_command(self.ns_of(name), argv)
    }

    /// Run `argv` in node `name` and wait.
    #[track_caller]
    pub fn exec(&self, name: &str, argv: &[&str]) -> Output {
        let timeout = crate::run::default_timeout();
        run_with_timeout(self.command(name, argv), None, timeout, &show_argv(argv))
    }

    /// Run `sh -c script` in node `name`.
    #[track_caller]
    pub fn sh(&self, name: &str, script: &str) -> Output {
        self.exec(name, &["sh", "-c", script])
    }

    /// Run `sh -c script` in node `name`; panic with its output unless it succeeds; its
    /// stdout.
    #[track_caller]
    pub fn sh_ok(&self, name: &str, script: &str) -> String {
        let out = self.sh(name, script);
        CmdResult::from_output(format!("[{name}] sh -c {script:?}"), &out).ok();
        lossy(&out.stdout)
    }

    /// Run `f` on a thread inside node `name`'s network namespace.
    #[track_caller]
    pub fn in_netns<T: Send>(&self, name: &str, f: impl FnOnce() -> T + Send) -> T {
        in_netns(self.ns_of(name), f)
    }
}

impl Drop for Netlab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (data, control) = self.switch.faults();
            eprintln!(
                "netlab: {} at the panic: nodes {:?}, partitioned {data:?}, control plane cut \
                 {control:?}, files in {}",
                self.tag,
                self.switch.nodes_up(),
                self.dir.display()
            );
        }
        // Hosts in parallel (each waits for its processes to die and its cgroups to empty),
        // except while panicking: a host prints its daemon's log then, on this thread only.
        let hosts = std::mem::take(&mut self.hosts);
        if std::thread::panicking() {
            drop(hosts);
        } else {
            std::thread::scope(|s| {
                for h in hosts.into_values() {
                    s.spawn(move || drop(h));
                }
            });
        }
        self.nodes.clear();
    }
}
