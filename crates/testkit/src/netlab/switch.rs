//! The underlay switch: namespace `ul` with the bridge `ul0`, one veth port per node, and
//! the nftables table (`bridge netlab`) that holds the faults (partitions) and the frame
//! counters. The table is a function of the switch's state, rewritten in one transaction
//! whenever the state changes, so that a port renamed by a reboot keeps its faults and
//! counters.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::capture::Frames;
use super::node::Ns;
use super::{Attach, Netlab};
use crate::run::{ns_command, run_with_timeout, CmdResult, NsFds};

/// etcd's client port: what a control-plane partition cuts.
const CONTROL_PORT: u16 = 2379;

/// One node's cable to the switch.
#[derive(Debug, Clone)]
pub(crate) struct Port {
    /// The switch-side link name (`p-h1`, `p-h1.1` after a reboot...).
    pub ifname: String,
    pub attach: Attach,
    /// How many times the node was (re)created before this port.
    pub gen: u32,
    /// Whether the node currently exists.
    pub up: bool,
    /// Whether the node is a fake host (else a plain node).
    pub host: bool,
}

/// What the nft table must say.
#[derive(Debug, Default)]
struct Rules {
    partitioned: BTreeSet<String>,
    control_cut: BTreeSet<String>,
    counters: BTreeMap<u32, Frames>,
    next_counter: u32,
}

#[derive(Debug, Default)]
struct State {
    ports: BTreeMap<String, Port>,
    rules: Rules,
}

/// The switch namespace and its state.
#[derive(Debug)]
pub(crate) struct Switch {
    pub ns: Ns,
    state: Mutex<State>,
}

const SETUP: &str = "\
set -e
# The switch is no IP host: no IPv6 of its own (no RS, MLD or DAD from it), and bridged
# frames skip the IP hooks of its namespace.
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6
for f in iptables ip6tables arptables; do
    echo 0 > /proc/sys/net/bridge/bridge-nf-call-$f 2>/dev/null || true
done
ip link add ul0 type bridge stp_state 0 mcast_snooping 0
ip link set ul0 up
nft -f - <<'EOF'
table bridge netlab {
    chain pre { type filter hook prerouting priority -200; policy accept; }
    chain faults { type filter hook forward priority 0; policy accept; }
    chain post { type filter hook forward priority 100; policy accept; }
}
EOF
";

impl Switch {
    /// Start the switch namespace (`<tag>` its mount tag) with `ul0` and the nft table.
    pub fn new(tag: &str, log: &Path, resolv: &Path) -> Switch {
        let ns = Ns::spawn("ul", tag, log, Some(resolv))
            .unwrap_or_else(|e| panic!("netlab: starting the switch: {e}"));
        ns.sh_ok(SETUP);
        Switch { ns, state: Mutex::default() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The port of `node`, if it was ever attached.
    pub fn port(&self, node: &str) -> Option<Port> {
        self.state().ports.get(node).cloned()
    }

    /// Names of the nodes attached now.
    pub fn nodes_up(&self) -> Vec<String> {
        self.state().ports.iter().filter(|(_, p)| p.up).map(|(n, _)| n.clone()).collect()
    }

    /// The address `node` has or had, if it was ever attached.
    pub fn addr(&self, node: &str) -> Option<Ipv4Addr> {
        self.state().ports.get(node).map(|p| p.attach.addr)
    }

    /// Cable `node` (its holder `pid`, namespaces `node_ns`) to the switch: a veth pair
    /// made in the switch with its peer `eth0` created directly in the node, the node's
    /// address on `eth0`, both ends up. A node attached before gets a new port name (the
    /// kernel may still be reaping the old one).
    #[track_caller]
    pub fn attach(&self, node: &str, host: bool, pid: u32, node_ns: &Arc<NsFds>, a: Attach) {
        let gen = {
            let mut st = self.state();
            if let Some(p) = st.ports.get(node).filter(|p| p.up) {
                panic!("netlab: {node} is already attached (port {})", p.ifname);
            }
            let addr_taken =
                st.ports.iter().find(|(n, p)| p.up && *n != node && p.attach.addr == a.addr);
            if let Some((other, _)) = addr_taken {
                panic!("netlab: {} is already the address of {other}", a.addr);
            }
            let gen = st.ports.get(node).map_or(0, |p| p.gen + 1);
            let ifname = if gen == 0 { format!("p-{node}") } else { format!("p-{node}.{gen}") };
            assert!(ifname.len() <= 15, "netlab: port name {ifname} is too long");
            // Reserve the address and the name now: parallel attaches check against it.
            st.ports.insert(node.to_string(), Port { ifname, attach: a, gen, up: true, host });
            gen
        };
        let port = self.port(node).map(|p| p.ifname).unwrap_or_default();
        let ul = format!(
            "link add {port} mtu {} type veth peer name eth0 mtu {} netns {pid}\n\
             link set {port} master ul0\n\
             link set {port} up\n",
            a.port_mtu, a.mtu
        );
        self.ns.feed(&["ip", "-batch", "-"], &ul);
        let inside = format!("addr add {}/24 dev eth0\nlink set eth0 up\n", a.addr);
        let out = run_with_timeout(
            ns_command(node_ns, &["ip", "-batch", "-"]),
            Some(inside.as_bytes()),
            self.ns.timeout,
            "ip -batch -",
        );
        CmdResult::from_output(format!("[{node}] ip -batch - <<EOF\n{inside}EOF"), &out).ok();
        if gen > 0 {
            // The table names ports: rewrite it for the new one.
            self.apply("");
        }
    }

    /// `node` is gone (its namespaces are being destroyed): wait (up to 5 s) until the
    /// kernel has removed its port, so that a reboot starts from a clean switch.
    pub fn detach(&self, node: &str) {
        let Some(port) = self.port(node) else { return };
        let path = self.sys_class_net().join(&port.ifname);
        let deadline = Instant::now() + Duration::from_secs(5);
        while path.exists() {
            if Instant::now() > deadline {
                eprintln!(
                    "netlab: port {} of {node} still exists 5 s after it crashed",
                    port.ifname
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(p) = self.state().ports.get_mut(node) {
            p.up = false;
        }
    }

    /// The switch's `/sys/class/net`, as the test process sees it (through the holder's
    /// root: the sysfs mounted in the switch's namespaces).
    pub fn sys_class_net(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/sys/class/net", self.ns.pid()))
    }

    /// Record a new MTU setting of `node` (applied by the caller).
    pub fn note_mtu(&self, node: &str, mtu: Option<u32>, port_mtu: Option<u32>) {
        if let Some(p) = self.state().ports.get_mut(node) {
            p.attach.mtu = mtu.unwrap_or(p.attach.mtu);
            p.attach.port_mtu = port_mtu.unwrap_or(p.attach.port_mtu);
        }
    }

    /// Cut (`Some(true)`) or restore (`Some(false)`) `node`'s data plane (every frame from
    /// or to its port) and its control plane (etcd traffic between it and `kv`).
    #[track_caller]
    pub fn set_faults(&self, node: &str, data: Option<bool>, control: Option<bool>) {
        {
            let mut st = self.state();
            assert!(st.ports.contains_key(node), "netlab: no node {node} on the switch");
            let rules = &mut st.rules;
            for (set, cut) in [(&mut rules.partitioned, data), (&mut rules.control_cut, control)] {
                match cut {
                    Some(true) => drop(set.insert(node.to_string())),
                    Some(false) => drop(set.remove(node)),
                    None => {}
                }
            }
        }
        self.apply("");
    }

    /// The nodes currently partitioned: `(data plane, control plane)`.
    pub fn faults(&self) -> (Vec<String>, Vec<String>) {
        let st = self.state();
        let v = |s: &BTreeSet<String>| s.iter().cloned().collect();
        (v(&st.rules.partitioned), v(&st.rules.control_cut))
    }

    /// Add a counter of `frames`; its id.
    #[track_caller]
    pub fn add_counter(&self, frames: &Frames) -> u32 {
        let id = {
            let mut st = self.state();
            let id = st.rules.next_counter;
            st.rules.next_counter += 1;
            st.rules.counters.insert(id, frames.clone());
            id
        };
        self.apply(&format!("add counter bridge netlab c{id}\n"));
        id
    }

    /// Remove the counter `id`.
    pub fn remove_counter(&self, id: u32) {
        self.state().rules.counters.remove(&id);
        self.apply(&format!("delete counter bridge netlab c{id}\n"));
    }

    /// Packets counted so far by the counters `ids` (one `nft` run).
    #[track_caller]
    pub fn read_counters(&self, ids: &[u32]) -> Vec<u64> {
        let text = self.ns.sh_ok("nft list counters table bridge netlab");
        let counts = parse_counters(&text);
        ids.iter()
            .map(|id| {
                *counts.get(&format!("c{id}")).unwrap_or_else(|| {
                    panic!("netlab: counter c{id} is not in the switch's table:\n{text}")
                })
            })
            .collect()
    }

    /// Rewrite the faults and counter rules from the state, with `extra` commands (counter
    /// objects made or deleted) after the flush, all in one transaction.
    #[track_caller]
    fn apply(&self, extra: &str) {
        let script = {
            let st = self.state();
            render(&st, extra)
        };
        self.ns.feed(&["nft", "-f", "-"], &script);
    }
}

/// The nft script that makes the table say what `st` says.
fn render(st: &State, extra: &str) -> String {
    let mut s = String::new();
    for chain in ["pre", "faults", "post"] {
        s.push_str(&format!("flush chain bridge netlab {chain}\n"));
    }
    s.push_str(extra);
    let port = |n: &str| st.ports.get(n).map(|p| p.ifname.clone());
    for n in &st.rules.partitioned {
        if let Some(p) = port(n) {
            s.push_str(&format!("add rule bridge netlab faults iifname \"{p}\" drop\n"));
            s.push_str(&format!("add rule bridge netlab faults oifname \"{p}\" drop\n"));
        }
    }
    let kv = st.ports.get("kv").map_or(Netlab::KV, |p| p.attach.addr);
    for n in &st.rules.control_cut {
        let Some(a) = st.ports.get(n).map(|p| p.attach.addr) else { continue };
        s.push_str(&format!(
            "add rule bridge netlab faults ip saddr {a} ip daddr {kv} tcp dport {CONTROL_PORT} drop\n\
             add rule bridge netlab faults ip saddr {kv} ip daddr {a} tcp sport {CONTROL_PORT} drop\n"
        ));
    }
    for (id, f) in &st.rules.counters {
        let (chain, expr) = f.render(&port);
        s.push_str(&format!("add rule bridge netlab {chain} {expr} counter name \"c{id}\"\n"));
    }
    s
}

/// `name -> packets` from `nft list counters`.
fn parse_counters(text: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("counter ") {
            current = rest.strip_suffix('{').map(|n| n.trim().to_string());
        } else if let (Some(name), Some(rest)) = (&current, line.strip_prefix("packets ")) {
            if let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                out.insert(name.clone(), n);
            }
            current = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(ifname: &str, addr: [u8; 4]) -> Port {
        let attach = Attach::from(Ipv4Addr::from(addr));
        Port { ifname: ifname.into(), attach, gen: 0, up: true, host: true }
    }

    #[test]
    fn renders_faults_and_counters() {
        let mut st = State::default();
        st.ports.insert("h1".into(), port("p-h1", [203, 0, 113, 11]));
        st.ports.insert("h2".into(), port("p-h2.1", [203, 0, 113, 12]));
        st.ports.insert("kv".into(), port("p-kv", [203, 0, 113, 2]));
        st.rules.partitioned.insert("h2".into());
        st.rules.control_cut.insert("h1".into());
        st.rules.counters.insert(3, Frames::any().from("h1").udp_dport(4789));
        st.rules.counters.insert(4, Frames::any().to("h2").dst(Ipv4Addr::new(203, 0, 113, 12)));
        let s = render(&st, "add counter bridge netlab c4\n");
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines,
            [
                "flush chain bridge netlab pre",
                "flush chain bridge netlab faults",
                "flush chain bridge netlab post",
                "add counter bridge netlab c4",
                "add rule bridge netlab faults iifname \"p-h2.1\" drop",
                "add rule bridge netlab faults oifname \"p-h2.1\" drop",
                "add rule bridge netlab faults ip saddr 203.0.113.11 ip daddr 203.0.113.2 tcp dport 2379 drop",
                "add rule bridge netlab faults ip saddr 203.0.113.2 ip daddr 203.0.113.11 tcp sport 2379 drop",
                "add rule bridge netlab pre iifname \"p-h1\" udp dport 4789 counter name \"c3\"",
                "add rule bridge netlab post oifname \"p-h2.1\" ip daddr 203.0.113.12 counter name \"c4\"",
            ]
        );
    }

    #[test]
    fn parses_counters() {
        let text = "table bridge netlab {\n\tcounter c0 {\n\t\tpackets 5 bytes 390\n\t}\n\
                    \tcounter c12 {\n\t\tpackets 0 bytes 0\n\t}\n}\n";
        let c = parse_counters(text);
        assert_eq!(c.get("c0"), Some(&5));
        assert_eq!(c.get("c12"), Some(&0));
        assert_eq!(c.len(), 2);
    }
}
