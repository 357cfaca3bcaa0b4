//! [`Node`]: a plain machine on a netlab's underlay (etcd's `kv`, `evil`, `cli`), and
//! [`Ns`], the namespace holder it shares with the underlay switch.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::time::Duration;

use crate::holder::{spawn_holder, HolderSpec};
use crate::procs::{self, Scope};
use crate::run::{
    default_timeout, in_netns, lossy, ns_command, run_with_timeout, show_argv, spawn_long_lived,
    CmdResult, NsFds,
};

/// A holder process in its own network and mount namespaces (own `/sys` and `/run`), whose
/// mounts carry `tag`. Dropping it kills everything that runs in those namespaces.
#[derive(Debug)]
pub(crate) struct Ns {
    /// Name in messages (`ul`, `kv`, ...).
    pub name: String,
    pub tag: String,
    holder: Child,
    pub ns: Arc<NsFds>,
    pub timeout: Duration,
}

impl Ns {
    /// Start a holder tagged `tag` (stderr to `log`), `/etc/resolv.conf` bound from
    /// `resolv` when given.
    pub fn spawn(name: &str, tag: &str, log: &Path, resolv: Option<&Path>) -> Result<Ns, String> {
        let spec = HolderSpec { tag, state: None, resolv, hostname: None };
        let holder = spawn_holder(&spec, log)?;
        match NsFds::open(holder.id()) {
            Ok(ns) => Ok(Ns {
                name: name.to_string(),
                tag: tag.to_string(),
                holder,
                ns,
                timeout: default_timeout(),
            }),
            Err(e) => {
                let mut holder = holder;
                let _ = holder.kill();
                let _ = holder.wait();
                Err(format!("opening the namespaces of {name}: {e}"))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    pub fn command(&self, argv: &[&str]) -> Command {
        ns_command(&self.ns, argv)
    }

    pub fn exec(&self, argv: &[&str]) -> Output {
        run_with_timeout(self.command(argv), None, self.timeout, &show_argv(argv))
    }

    /// Run `sh -c script`; panic with its output unless it succeeds; its stdout.
    #[track_caller]
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.exec(&["sh", "-c", script]);
        CmdResult::from_output(format!("[{}] sh -c {script:?}", self.name), &out).ok();
        lossy(&out.stdout)
    }

    /// Run `argv` (e.g. `ip -batch -`, `nft -f -`) fed with `input`; panic with its output
    /// unless it succeeds.
    #[track_caller]
    pub fn feed(&self, argv: &[&str], input: &str) {
        let label = show_argv(argv);
        let out =
            run_with_timeout(self.command(argv), Some(input.as_bytes()), self.timeout, &label);
        CmdResult::from_output(format!("[{}] {label} <<EOF\n{input}EOF", self.name), &out).ok();
    }

    fn scope(&self) -> Scope {
        Scope {
            tags: vec![self.tag.clone()],
            netns: [self.ns.net_ino].into(),
            mntns: [self.ns.mnt_ino].into(),
            roots: vec![self.holder.id() as i32],
            ..Scope::default()
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let left = procs::kill_scope(&self.scope(), &[], Duration::from_secs(5));
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        if left > 0 {
            eprintln!("netlab: {left} process(es) of {} survived SIGKILL for 5 s", self.tag);
        }
    }
}

/// A plain machine on a [`Netlab`](crate::Netlab)'s underlay: its own network and mount
/// namespaces (own `/sys`, `/run` and `/etc/resolv.conf`), `eth0` with one address on
/// 203.0.113.0/24 and no default route. For etcd (`kv`), an attacker (`evil`) or an
/// ingress client (`cli`). Everything started in it is killed when the netlab drops it.
///
/// To run a long-lived server in it (etcd, say), build the command with
/// [`Node::command`] and start it with [`Node::spawn`]:
///
/// ```no_run
/// # fn f(lab: &cove_testkit::Netlab) -> std::io::Result<()> {
/// let kv = lab.node("kv");
/// let mut cmd = kv.command(&["etcd", "--listen-client-urls", "http://203.0.113.2:2379"]);
/// cmd.stdout(std::process::Stdio::null());
/// let etcd = kv.spawn(cmd)?;
/// # let _ = etcd; Ok(()) }
/// ```
#[derive(Debug)]
pub struct Node {
    pub(crate) ns: Ns,
    pub(crate) addr: Ipv4Addr,
}

impl Node {
    /// The name given at creation (`kv`, `evil`, ...).
    pub fn name(&self) -> &str {
        &self.ns.name
    }

    /// Its address on the underlay (on `eth0`).
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The pid of its holder process (`sleep`), which lives as long as the node.
    pub fn holder_pid(&self) -> u32 {
        self.ns.pid()
    }

    /// `/proc/<holder>/ns/net`: its network namespace, for `nsenter --net=...` or setns(2).
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.ns.pid()))
    }

    /// `/proc/<holder>/ns/mnt`: its mount namespace.
    pub fn mntns_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/mnt", self.ns.pid()))
    }

    /// The inode of its network namespace.
    pub fn netns_inode(&self) -> u64 {
        self.ns.ns.net_ino
    }

    /// A command for `argv` that will run in the node (its network and mount namespaces).
    /// It gets SIGKILL when the thread that spawns it ends (use [`Node::spawn`] for a
    /// process that must outlive a helper thread), and is killed anyway when the node goes.
    pub fn command(&self, argv: &[&str]) -> Command {
        self.ns.command(argv)
    }

    /// Spawn `cmd` (made by [`Node::command`]) from a thread that lives as long as the test
    /// process, so that it runs until it exits, is killed, or the node is dropped, whichever
    /// thread asked for it.
    pub fn spawn(&self, cmd: Command) -> io::Result<Child> {
        spawn_long_lived(cmd)
    }

    /// Run `argv` in the node and wait (panics past the time limit).
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.ns.exec(argv)
    }

    /// Run `sh -c script` in the node.
    pub fn sh(&self, script: &str) -> Output {
        self.ns.exec(&["sh", "-c", script])
    }

    /// Run `sh -c script` in the node; panic with its output unless it succeeds; return its
    /// stdout.
    #[track_caller]
    pub fn sh_ok(&self, script: &str) -> String {
        self.ns.sh_ok(script)
    }

    /// Run `f` on a thread inside the node's network namespace; sockets it creates stay in
    /// that namespace.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.ns.ns, f)
    }
}
