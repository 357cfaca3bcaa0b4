//! The host namespace's objects as Cove wants them (desired, from the drivers' plans) or as
//! the kernel has them (observed), and the difference between the two as ordered ops.
//!
//! Only host objects are diffed: a sandbox's objects live and die with the sandbox's
//! namespace. Ownership comes from the objects themselves: a link is Cove's when it is in
//! [`OWNED_LINK_GROUP`]; addresses, neighbours and routes are Cove's when they are on a
//! link of Cove's. Nothing else is ever changed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use cove_model::MacAddr;

use crate::op::{Netns, Op, OWNED_LINK_GROUP};

/// What kind of link, with what its creation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// A bridge with a fixed MAC.
    Bridge {
        /// Its MAC.
        mac: MacAddr,
    },
    /// The host end of a veth pair; its peer lives in a sandbox, so a missing one is not
    /// re-created here (the sandbox's endpoint is re-joined instead).
    Veth,
    /// Anything else the kernel reports (`None`: a physical device or `lo`).
    Other(Option<String>),
}

/// One link of the host namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Kind.
    pub kind: LinkKind,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// The bridge it is a port of.
    pub master: Option<String>,
    /// Link group: [`OWNED_LINK_GROUP`] for Cove's.
    pub group: u32,
    /// Hairpin mode on its bridge port (desired only; not observed).
    pub hairpin: bool,
}

/// The host namespace's objects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// Links by name.
    pub links: BTreeMap<String, Link>,
    /// Addresses with their prefix length, by link.
    pub addresses: BTreeSet<(String, IpNet)>,
    /// Permanent neighbour entries by (link, address).
    pub neighbours: BTreeMap<(String, IpAddr), MacAddr>,
    /// Sysctls by key (`net/ipv6/conf/<link>/disable_ipv6`).
    pub sysctls: BTreeMap<String, String>,
    /// Links with the `local ::1` route of `[::1]` publishing.
    pub loopback6: BTreeSet<String>,
}

impl HostState {
    /// The host objects a list of create-type ops makes (ops in sandboxes and deletions
    /// are ignored): the desired state of a plan.
    pub fn from_ops<'a>(ops: impl IntoIterator<Item = &'a Op>) -> HostState {
        let mut s = HostState::default();
        for op in ops {
            s.add(op);
        }
        s
    }

    /// Fold one create-type op into the state.
    pub fn add(&mut self, op: &Op) {
        match op {
            Op::CreateBridge { name, mtu, mac, group } => {
                self.links.insert(
                    name.clone(),
                    Link {
                        kind: LinkKind::Bridge { mac: *mac },
                        mtu: *mtu,
                        up: false,
                        master: None,
                        group: *group,
                        hairpin: false,
                    },
                );
            }
            Op::CreateVeth { host_name, bridge, mtu, group, .. } => {
                self.links.insert(
                    host_name.clone(),
                    Link {
                        kind: LinkKind::Veth,
                        mtu: *mtu,
                        up: true,
                        master: Some(bridge.clone()),
                        group: *group,
                        hairpin: false,
                    },
                );
            }
            Op::Hairpin { link } => {
                if let Some(l) = self.links.get_mut(link) {
                    l.hairpin = true;
                }
            }
            Op::SetUp { netns: Netns::Host, link } => {
                if let Some(l) = self.links.get_mut(link) {
                    l.up = true;
                }
            }
            Op::AddAddress { netns: Netns::Host, link, addr } => {
                self.addresses.insert((link.clone(), *addr));
            }
            Op::Neighbor { netns: Netns::Host, link, addr, mac } => {
                self.neighbours.insert((link.clone(), *addr), *mac);
            }
            Op::Sysctl { netns: Netns::Host, key, value } => {
                self.sysctls.insert(key.clone(), value.clone());
            }
            Op::LoopbackRoute6 { link } => {
                self.loopback6.insert(link.clone());
            }
            _ => {}
        }
    }

    /// Whether a link of this name is Cove's.
    pub fn owns(&self, link: &str) -> bool {
        self.links.get(link).is_some_and(|l| l.group == OWNED_LINK_GROUP)
    }
}

/// The ops that take the host from `observed` to `desired`, in an order the kernel accepts:
/// Cove's links nobody wants condemned (their addresses removed first, so their subnets are
/// free at once), missing bridges created, then sysctls, addresses, links up, masters and
/// hairpin, neighbours, routes. Only Cove's objects are removed: links of its group, and
/// addresses and neighbours on links it wants.
///
/// A missing veth is not re-created (its peer is in a sandbox); a veth whose bridge came
/// back is enslaved to it again, with hairpin mode.
pub fn diff(desired: &HostState, observed: &HostState) -> Vec<Op> {
    let host = || Netns::Host;
    let mut gone = vec![];
    let mut condemned = vec![];
    for (name, l) in &observed.links {
        if l.group == OWNED_LINK_GROUP && !desired.links.contains_key(name) {
            for (link, addr) in observed.addresses.iter().filter(|(link, _)| link == name) {
                gone.push(Op::DelAddress { netns: host(), link: link.clone(), addr: *addr });
            }
            condemned.push(Op::Condemn { link: name.clone() });
        }
    }
    let (mut create, mut sysctls, mut addrs, mut ups, mut masters, mut neigh, mut routes) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut fresh = BTreeSet::new();
    for (name, d) in &desired.links {
        match (observed.links.get(name), &d.kind) {
            (None, LinkKind::Bridge { mac }) => {
                create.push(Op::CreateBridge {
                    name: name.clone(),
                    mtu: d.mtu,
                    mac: *mac,
                    group: d.group,
                });
                fresh.insert(name.clone());
                if d.up {
                    ups.push(Op::SetUp { netns: host(), link: name.clone() });
                }
            }
            (None, _) => {}
            (Some(o), _) => {
                if o.mtu != d.mtu {
                    sysctls.push(Op::SetMtu { netns: host(), link: name.clone(), mtu: d.mtu });
                }
                if d.up && !o.up {
                    ups.push(Op::SetUp { netns: host(), link: name.clone() });
                }
                if let (Some(m), true) = (&d.master, d.master != o.master) {
                    masters.push(Op::SetMaster { link: name.clone(), master: m.clone() });
                    if d.hairpin {
                        masters.push(Op::Hairpin { link: name.clone() });
                    }
                }
            }
        }
    }
    let exists = |link: &str| observed.links.contains_key(link) || fresh.contains(link);
    for (key, value) in &desired.sysctls {
        if observed.sysctls.get(key) != Some(value) {
            sysctls.push(Op::Sysctl { netns: host(), key: key.clone(), value: value.clone() });
        }
    }
    for (link, addr) in desired.addresses.difference(&observed.addresses) {
        if exists(link) {
            addrs.push(Op::AddAddress { netns: host(), link: link.clone(), addr: *addr });
        }
    }
    for (link, addr) in observed.addresses.difference(&desired.addresses) {
        if desired.owns(link) && observed.owns(link) {
            gone.push(Op::DelAddress { netns: host(), link: link.clone(), addr: *addr });
        }
    }
    for ((link, addr), mac) in &desired.neighbours {
        if observed.neighbours.get(&(link.clone(), *addr)) != Some(mac) && exists(link) {
            neigh.push(Op::Neighbor { netns: host(), link: link.clone(), addr: *addr, mac: *mac });
        }
    }
    for (link, addr) in observed.neighbours.keys() {
        if desired.owns(link) && !desired.neighbours.contains_key(&(link.clone(), *addr)) {
            gone.push(Op::DelNeighbor { netns: host(), link: link.clone(), addr: *addr });
        }
    }
    for link in desired.loopback6.difference(&observed.loopback6) {
        if exists(link) {
            routes.push(Op::LoopbackRoute6 { link: link.clone() });
        }
    }
    let mut ops = gone;
    ops.extend(condemned);
    for part in [create, sysctls, addrs, ups, masters, neigh, routes] {
        ops.extend(part);
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge_ops(name: &str, gw: &str) -> Vec<Op> {
        vec![
            Op::CreateBridge {
                name: name.into(),
                mtu: 1500,
                mac: MacAddr([2, 0x42, 0, 0, 0, 1]),
                group: OWNED_LINK_GROUP,
            },
            Op::Sysctl {
                netns: Netns::Host,
                key: format!("net/ipv6/conf/{name}/disable_ipv6"),
                value: "1".into(),
            },
            Op::AddAddress { netns: Netns::Host, link: name.into(), addr: gw.parse().unwrap() },
            Op::SetUp { netns: Netns::Host, link: name.into() },
        ]
    }

    fn veth_ops(name: &str, bridge: &str, ip: &str) -> Vec<Op> {
        vec![
            Op::CreateVeth {
                host_name: name.into(),
                group: OWNED_LINK_GROUP,
                bridge: bridge.into(),
                mtu: 1500,
                peer_name: "eth0".into(),
                peer_netns: "/s".into(),
                peer_mac: MacAddr([2, 0x42, 10, 0, 0, 2]),
            },
            Op::Hairpin { link: name.into() },
            Op::Neighbor {
                netns: Netns::Host,
                link: bridge.into(),
                addr: ip.parse().unwrap(),
                mac: MacAddr([2, 0x42, 10, 0, 0, 2]),
            },
        ]
    }

    fn render(ops: &[Op]) -> String {
        ops.iter().map(|o| format!("{o}\n")).collect()
    }

    #[test]
    fn from_nothing_a_bridge_is_its_plan_in_kernel_order() {
        let ops = bridge_ops("br-a", "10.0.0.1/24");
        let got = diff(&HostState::from_ops(&ops), &HostState::default());
        assert_eq!(
            render(&got),
            "create bridge br-a mtu 1500 mac 02:42:00:00:00:01\n\
             sysctl net/ipv6/conf/br-a/disable_ipv6=1 in host\n\
             add address 10.0.0.1/24 to br-a in host\n\
             set br-a up in host\n"
        );
    }

    #[test]
    fn equal_states_need_nothing() {
        let mut ops = bridge_ops("br-a", "10.0.0.1/24");
        ops.extend(veth_ops("cv1", "br-a", "10.0.0.2"));
        let s = HostState::from_ops(&ops);
        assert!(diff(&s, &s).is_empty());
    }

    #[test]
    fn a_network_gone_frees_its_addresses_then_condemns_its_bridge() {
        let ops = bridge_ops("br-a", "10.0.0.1/24");
        let got = diff(&HostState::default(), &HostState::from_ops(&ops));
        assert_eq!(
            render(&got),
            "delete address 10.0.0.1/24 from br-a in host\n\
             condemn br-a (reaped in the background)\n"
        );
    }

    #[test]
    fn a_bridge_deleted_by_hand_comes_back_and_its_ports_rejoin_it() {
        let mut ops = bridge_ops("br-a", "10.0.0.1/24");
        ops.extend(veth_ops("cv1", "br-a", "10.0.0.2"));
        let desired = HostState::from_ops(&ops);
        // What the kernel has after `ip link del br-a`: the port, without its master; the
        // bridge's addresses and neighbours went with it.
        let mut observed = HostState::from_ops(&veth_ops("cv1", "br-a", "10.0.0.2"));
        observed.links.get_mut("cv1").unwrap().master = None;
        observed.neighbours.clear();
        let got = render(&diff(&desired, &observed));
        assert_eq!(
            got,
            "create bridge br-a mtu 1500 mac 02:42:00:00:00:01\n\
             sysctl net/ipv6/conf/br-a/disable_ipv6=1 in host\n\
             add address 10.0.0.1/24 to br-a in host\n\
             set br-a up in host\n\
             set master of cv1 to br-a\n\
             hairpin on for bridge port cv1\n\
             add permanent neighbour 10.0.0.2 lladdr 02:42:0a:00:00:02 dev br-a in host\n"
        );
    }

    #[test]
    fn only_coves_objects_are_removed() {
        let desired = HostState::from_ops(&bridge_ops("br-a", "10.0.0.1/24"));
        let mut observed = desired.clone();
        // A foreign link, a foreign address on a foreign link, a stray address and a stale
        // neighbour on Cove's bridge, an orphan link of Cove's.
        observed.links.insert(
            "eth9".into(),
            Link {
                kind: LinkKind::Other(None),
                mtu: 1500,
                up: true,
                master: None,
                group: 0,
                hairpin: false,
            },
        );
        observed.addresses.insert(("eth9".into(), "192.0.2.5/24".parse().unwrap()));
        observed.addresses.insert(("br-a".into(), "10.9.9.9/24".parse().unwrap()));
        observed.neighbours.insert(("br-a".into(), "10.0.0.7".parse().unwrap()), MacAddr([2; 6]));
        observed.links.insert(
            "cvorphan".into(),
            Link {
                kind: LinkKind::Veth,
                mtu: 1500,
                up: true,
                master: None,
                group: OWNED_LINK_GROUP,
                hairpin: false,
            },
        );
        let got = render(&diff(&desired, &observed));
        assert_eq!(
            got,
            "delete address 10.9.9.9/24 from br-a in host\n\
             delete neighbour 10.0.0.7 dev br-a in host\n\
             condemn cvorphan (reaped in the background)\n"
        );
    }

    #[test]
    fn mtu_sysctl_and_down_links_are_corrected() {
        let desired = HostState::from_ops(&bridge_ops("br-a", "10.0.0.1/24"));
        let mut observed = desired.clone();
        let l = observed.links.get_mut("br-a").unwrap();
        l.mtu = 1400;
        l.up = false;
        observed.sysctls.insert("net/ipv6/conf/br-a/disable_ipv6".into(), "0".into());
        let got = render(&diff(&desired, &observed));
        assert_eq!(
            got,
            "set mtu 1500 on br-a in host\n\
             sysctl net/ipv6/conf/br-a/disable_ipv6=1 in host\n\
             set br-a up in host\n"
        );
    }

    #[test]
    fn applying_the_diff_reaches_the_desired_state() {
        // Model the kernel as "folding the ops into the observed state" and check a round
        // trip for a few shapes: the diff is complete.
        let mut ops = bridge_ops("br-a", "10.0.0.1/24");
        ops.extend(veth_ops("cv1", "br-a", "10.0.0.2"));
        ops.extend(bridge_ops("br-b", "10.1.0.1/24"));
        let desired = HostState::from_ops(&ops);
        let mut observed = HostState::from_ops(&bridge_ops("br-c", "10.2.0.1/24"));
        for op in diff(&desired, &observed) {
            match &op {
                Op::Condemn { link, .. } => {
                    // A deleted link's per-link sysctls go with it.
                    observed.links.remove(link);
                    observed.sysctls.retain(|k, _| !k.contains(&format!("/{link}/")));
                }
                Op::DelAddress { link, addr, .. } => {
                    observed.addresses.remove(&(link.clone(), *addr));
                }
                other => observed.add(other),
            }
        }
        // The veth is not re-created (its peer is in a sandbox); everything else is there.
        let mut want = desired.clone();
        want.links.remove("cv1");
        observed.links.values_mut().for_each(|l| l.hairpin = false);
        want.links.values_mut().for_each(|l| l.hairpin = false);
        assert_eq!(observed, want);
    }
}
