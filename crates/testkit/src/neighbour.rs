//! [`Neighbour`]: another machine next to a fake host (a LAN neighbour, an "outside" host),
//! connected to it by a veth pair.

use std::process::{Child, Command, Output};
use std::sync::Arc;
use std::time::Duration;

use crate::holder::{spawn_holder, HolderSpec};
use crate::host::FakeHost;
use crate::procs::{self, Scope};
use crate::run::{in_netns, lossy, ns_command, run_with_timeout, show_argv, CmdResult, NsFds};

/// Addresses (a /24 and a /64) and routes of one veth link between a fake host and a
/// neighbour.
#[derive(Debug, Clone, Copy)]
struct Wiring {
    host_if: &'static str,
    host4: &'static str,
    nb4: &'static str,
    host6: &'static str,
    nb6: &'static str,
    route_nb_via_host: bool,
    route_host_via_nb: bool,
}

/// Name of the neighbour's end of the veth pair.
const NB_IF: &str = "eth0";

/// A namespace (own network and mount namespace, own `/sys` and `/run`) wired to a fake
/// host by a veth pair. Dropping it kills whatever ran in it.
#[derive(Debug)]
pub struct Neighbour {
    name: String,
    holder: Child,
    ns: Arc<NsFds>,
    netns_ino: u64,
    mntns_ino: u64,
    wiring: Wiring,
    timeout: Duration,
}

impl FakeHost {
    /// A LAN neighbour: `eth-lan` on the fake host (198.51.100.1/24, 2001:db8:1::1/64) to
    /// `eth0` in the neighbour (198.51.100.2/24, 2001:db8:1::2/64); the neighbour's default
    /// routes go via the fake host only if `route_via_host` (direct-routing tests). One per
    /// fake host.
    #[track_caller]
    pub fn add_neighbour(&self, name: &str, route_via_host: bool) -> Neighbour {
        self.attach(
            name,
            Wiring {
                host_if: "eth-lan",
                host4: "198.51.100.1",
                nb4: "198.51.100.2",
                host6: "2001:db8:1::1",
                nb6: "2001:db8:1::2",
                route_nb_via_host: route_via_host,
                route_host_via_nb: false,
            },
        )
    }

    /// An "outside" host, the fake host's way out: `eth-out` on the fake host
    /// (203.0.113.1/24, 2001:db8:2::1/64) to `eth0` in the outside host (203.0.113.2/24,
    /// 2001:db8:2::2/64), and the fake host's default routes (both families) via the outside
    /// host. The outside host knows only its own subnet (so what reaches it from containers
    /// must be masqueraded). One per fake host.
    #[track_caller]
    pub fn add_outside(&self, name: &str) -> Neighbour {
        self.attach(
            name,
            Wiring {
                host_if: "eth-out",
                host4: "203.0.113.1",
                nb4: "203.0.113.2",
                host6: "2001:db8:2::1",
                nb6: "2001:db8:2::2",
                route_nb_via_host: false,
                route_host_via_nb: true,
            },
        )
    }

    #[track_caller]
    fn attach(&self, name: &str, w: Wiring) -> Neighbour {
        let tag = format!("{}.nb", self.tag);
        let spec = HolderSpec { tag: &tag, state: None, resolv: None, hostname: None };
        let log = self.dir.join(format!("neighbour-{}.log", name.replace('/', "_")));
        let holder = spawn_holder(&spec, &log)
            .unwrap_or_else(|e| panic!("netlab: starting neighbour {name}: {e}"));
        let pid = holder.id();
        let ns = match NsFds::open(pid) {
            Ok(ns) => ns,
            Err(e) => {
                let mut holder = holder;
                let _ = holder.kill();
                let _ = holder.wait();
                panic!("netlab: neighbour {name}: {e}")
            }
        };
        let nb = Neighbour {
            name: name.to_string(),
            netns_ino: ns.net_ino,
            mntns_ino: ns.mnt_ino,
            holder,
            ns,
            wiring: w,
            timeout: self.timeout,
        };
        let hi = w.host_if;
        let mut host_batch = format!(
            "link add {hi} type veth peer name {NB_IF} netns {pid}\n\
             addr add {}/24 dev {hi}\n\
             addr add {}/64 dev {hi} nodad\n\
             link set {hi} up\n",
            w.host4, w.host6
        );
        if w.route_host_via_nb {
            host_batch.push_str(&format!(
                "route add default via {}\nroute add ::/0 via {}\n",
                w.nb4, w.nb6
            ));
        }
        let mut nb_batch = format!(
            "addr add {}/24 dev {NB_IF}\n\
             addr add {}/64 dev {NB_IF} nodad\n\
             link set {NB_IF} up\n",
            w.nb4, w.nb6
        );
        if w.route_nb_via_host {
            nb_batch.push_str(&format!(
                "route add default via {}\nroute add ::/0 via {}\n",
                w.host4, w.host6
            ));
        }
        ip_batch(self.command(&["ip", "-batch", "-"]), &host_batch, self.timeout, self.name());
        ip_batch(nb.command(&["ip", "-batch", "-"]), &nb_batch, self.timeout, name);
        // IPv6 adds an address's local route from a work queue once the link is up, even
        // with nodad: wait for both, or a snapshot taken right after this could miss them.
        let local = |sh: &dyn Fn(&str) -> String, addr: &str| {
            sh("ip -6 route show table local")
                .lines()
                .any(|l| l.starts_with(&format!("local {addr} ")))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !(local(&|c| self.sh_ok(c), w.host6) && local(&|c| nb.sh_ok(c), w.nb6)) {
            if std::time::Instant::now() > deadline {
                panic!("netlab: neighbour {name}: IPv6 local routes never appeared");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        nb
    }
}

/// Run `ip -batch -` (`cmd`) fed with `batch`; panic with its output on failure.
#[track_caller]
fn ip_batch(cmd: Command, batch: &str, timeout: Duration, who: &str) {
    let out = run_with_timeout(cmd, Some(batch.as_bytes()), timeout, "ip -batch -");
    CmdResult::from_output(format!("[{who}] ip -batch - <<EOF\n{batch}EOF"), &out).ok();
}

impl Neighbour {
    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The neighbour's IPv4 address (e.g. `198.51.100.2`).
    pub fn ip4(&self) -> &'static str {
        self.wiring.nb4
    }

    /// The neighbour's IPv6 address (e.g. `2001:db8:1::2`).
    pub fn ip6(&self) -> &'static str {
        self.wiring.nb6
    }

    /// The fake host's IPv4 address on this link (e.g. `198.51.100.1`).
    pub fn host_ip4(&self) -> &'static str {
        self.wiring.host4
    }

    /// The fake host's IPv6 address on this link (e.g. `2001:db8:1::1`).
    pub fn host_ip6(&self) -> &'static str {
        self.wiring.host6
    }

    /// The fake host's end of the veth pair (`eth-lan` or `eth-out`); the neighbour's end is
    /// `eth0`.
    pub fn host_if(&self) -> &'static str {
        self.wiring.host_if
    }

    /// The pid of the neighbour's holder process.
    pub fn holder_pid(&self) -> u32 {
        self.holder.id()
    }

    /// The inode of the neighbour's network namespace.
    pub fn netns_inode(&self) -> u64 {
        self.netns_ino
    }

    /// A command for `argv` that will run in the neighbour (see [`FakeHost::command`]).
    pub fn command(&self, argv: &[&str]) -> Command {
        ns_command(&self.ns, argv)
    }

    /// Run `argv` in the neighbour and wait.
    pub fn exec(&self, argv: &[&str]) -> Output {
        run_with_timeout(self.command(argv), None, self.timeout, &show_argv(argv))
    }

    /// Run `sh -c script` in the neighbour.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// Run `sh -c script` in the neighbour; panic with its output unless it succeeds; return
    /// its stdout.
    #[track_caller]
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        CmdResult::from_output(format!("[{}] sh -c {script:?}", self.name), &out).ok();
        lossy(&out.stdout)
    }

    /// Run `f` on a thread inside the neighbour's network namespace.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.ns, f)
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        let scope = Scope {
            netns: [self.netns_ino].into(),
            mntns: [self.mntns_ino].into(),
            roots: vec![self.holder.id() as i32],
            ..Scope::default()
        };
        let left = procs::kill_scope(&scope, &[], Duration::from_secs(5));
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        if left > 0 {
            eprintln!("netlab: {left} process(es) of neighbour {} survived SIGKILL", self.name);
        }
    }
}
