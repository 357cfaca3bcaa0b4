//! Faults: partitions of the data or control plane, crashes and reboots, MTU changes.

use std::net::Ipv4Addr;

use super::{Attach, Netlab};

impl Netlab {
    /// Cut node `name`'s cable (data plane): the switch drops every frame from or to its
    /// port, until [`Netlab::heal`]. Stays in force across a reboot of the node.
    #[track_caller]
    pub fn partition(&self, name: &str) {
        self.switch.set_faults(name, Some(true), None);
    }

    /// Cut only node `name`'s control plane: the switch drops TCP between its address and
    /// `kv`'s on etcd's client port 2379 (both directions); everything else still flows.
    #[track_caller]
    pub fn partition_control(&self, name: &str) {
        self.switch.set_faults(name, None, Some(true));
    }

    /// Undo both kinds of partition of node `name`.
    #[track_caller]
    pub fn heal(&self, name: &str) {
        self.switch.set_faults(name, Some(false), Some(false));
    }

    /// Crash node `name` (fake host or plain node): SIGKILL every process in its
    /// namespaces (daemon, containers, shims, servers), and let the namespaces go with the
    /// last reference (its port on the switch goes with them; this waits for that). A
    /// fake host's data root stays if `keep_data_root` (for [`Netlab::reboot`]), else it
    /// is removed; its exec root was on its tmpfs and is gone either way.
    #[track_caller]
    pub fn crash(&mut self, name: &str, keep_data_root: bool) {
        if let Some(h) = self.hosts.remove(name) {
            drop(h);
        } else if let Some(n) = self.nodes.remove(name) {
            drop(n);
        } else {
            panic!("netlab: no node {name} to crash");
        }
        self.switch.detach(name);
        if !keep_data_root {
            let dir = self.data_root(name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .unwrap_or_else(|e| panic!("netlab: removing {}: {e}", dir.display()));
            }
        }
    }

    /// Reboot node `name`: [crash](Netlab::crash) it if it runs (keeping its data root),
    /// then make it again with new namespaces, cabled as before but at `addr` if given (an
    /// address change). A fake host gets the same data root and a fresh exec root, and no
    /// daemon: start it again with [`FakeHost::start_daemon`](crate::FakeHost::start_daemon)
    /// or [`Netlab::start_daemons`].
    #[track_caller]
    pub fn reboot(&mut self, name: &str, addr: Option<Ipv4Addr>) {
        if self.hosts.contains_key(name) || self.nodes.contains_key(name) {
            self.crash(name, true);
        }
        let port = self.switch.port(name).unwrap_or_else(|| panic!("netlab: no node {name}"));
        let at = Attach { addr: addr.unwrap_or(port.attach.addr), ..port.attach };
        if port.host {
            self.add(&[(name, at)], &[]);
        } else {
            self.add(&[], &[(name, at)]);
        }
    }

    /// Set the MTU of node `name`'s cable, at both ends (its `eth0` and the switch port).
    #[track_caller]
    pub fn set_mtu(&self, name: &str, mtu: u32) {
        self.set_mtus(name, Some(mtu), Some(mtu));
    }

    /// Set the MTU of node `name`'s `eth0` only.
    #[track_caller]
    pub fn set_node_mtu(&self, name: &str, mtu: u32) {
        self.set_mtus(name, Some(mtu), None);
    }

    /// Set the MTU of the switch's port to node `name` only.
    #[track_caller]
    pub fn set_port_mtu(&self, name: &str, mtu: u32) {
        self.set_mtus(name, None, Some(mtu));
    }

    #[track_caller]
    fn set_mtus(&self, name: &str, node: Option<u32>, port: Option<u32>) {
        let ifname = self.port(name);
        if let Some(m) = port {
            self.switch.ns.sh_ok(&format!("ip link set {ifname} mtu {m}"));
        }
        if let Some(m) = node {
            self.sh_ok(name, &format!("ip link set eth0 mtu {m}"));
        }
        self.switch.note_mtu(name, node, port);
    }
}
