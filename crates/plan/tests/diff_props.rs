//! Property: applying the diff reaches the desired state, so a second diff is empty, from
//! any observed host that overlay networks and their forwarding entries can drift into.
//! The kernel is modelled here by what each op does to the observed objects, including
//! what goes with them (a deleted link's entries, a re-enslaved port's flags and static
//! entries).

use std::net::IpAddr;

use cove_model::MacAddr;
use cove_plan::{diff, HostState, Link, LinkKind, Netns, Op, PortFlags, Vxlan, OWNED_LINK_GROUP};
use proptest::prelude::*;

/// What a kernel does with the ops, on the observed state.
fn apply(ops: &[Op], mut s: HostState) -> HostState {
    for op in ops {
        match op {
            Op::Condemn { link } | Op::DeleteLink { netns: Netns::Host, name: link } => {
                remove_link(&mut s, link)
            }
            Op::DelAddress { netns: Netns::Host, link, addr } => {
                s.addresses.remove(&(link.clone(), *addr));
            }
            Op::DelNeighbor { netns: Netns::Host, link, addr } => {
                s.neighbours.remove(&(link.clone(), *addr));
            }
            Op::DelVxlanFdb { link, mac } => {
                s.fdb_self.remove(&(link.clone(), *mac));
            }
            Op::DelBridgeFdb { link, mac } => {
                s.fdb_master.remove(&(link.clone(), *mac));
            }
            Op::CreateVxlan { name, .. } => {
                s.add(op);
                s.port_flags.insert(name.clone(), PortFlags::DEFAULT);
            }
            Op::SetMaster { link, master } => {
                s.links.get_mut(link).expect("port exists").master = Some(master.clone());
                s.port_flags.insert(link.clone(), PortFlags::DEFAULT);
                s.fdb_master.retain(|(l, _)| l != link);
            }
            Op::SetMtu { netns: Netns::Host, link, mtu } => {
                s.links.get_mut(link).expect("link exists").mtu = *mtu;
            }
            other => s.add(other),
        }
    }
    s
}

/// A link goes, with everything on it; its ports lose their master, flags and entries.
fn remove_link(s: &mut HostState, name: &str) {
    s.links.remove(name);
    s.addresses.retain(|(l, _)| l != name);
    s.neighbours.retain(|(l, _), _| l != name);
    s.fdb_self.retain(|(l, _), _| l != name);
    s.fdb_master.retain(|(l, _)| l != name);
    s.port_flags.remove(name);
    s.loopback6.remove(name);
    s.sysctls.retain(|k, _| !k.contains(&format!("/{name}/")));
    let ports: Vec<String> = s
        .links
        .iter()
        .filter(|(_, l)| l.master.as_deref() == Some(name))
        .map(|(n, _)| n.clone())
        .collect();
    for p in ports {
        s.links.get_mut(&p).unwrap().master = None;
        s.port_flags.remove(&p);
        s.fdb_master.retain(|(l, _)| *l != p);
    }
}

const DSTS: [&str; 4] = ["203.0.113.12", "203.0.113.13", "2001:db8::12", "203.0.113.99"];

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0x42, 10, 0, 9, n])
}

fn dst(i: usize) -> IpAddr {
    DSTS[i % DSTS.len()].parse().unwrap()
}

/// One overlay network: its VNI, UDP port and remote endpoints (MAC number, VTEP).
#[derive(Debug, Clone)]
struct Net {
    vni: u32,
    port: u16,
    peers: Vec<(u8, usize)>,
}

fn desired_of(nets: &[Net]) -> HostState {
    let mut ops = vec![];
    for (i, n) in nets.iter().enumerate() {
        let (br, vx) = (format!("ov-{i}"), format!("vx-{i}"));
        ops.extend([
            Op::CreateBridge {
                name: br.clone(),
                group: OWNED_LINK_GROUP,
                mtu: 1450,
                mac: MacAddr([2, 0x42, 0, 0, 0, i as u8]),
            },
            Op::Sysctl {
                netns: Netns::Host,
                key: format!("net/ipv6/conf/{br}/disable_ipv6"),
                value: "1".into(),
            },
            Op::AddAddress {
                netns: Netns::Host,
                link: br.clone(),
                addr: format!("10.0.{i}.1/24").parse().unwrap(),
            },
            Op::SetUp { netns: Netns::Host, link: br.clone() },
            Op::CreateVxlan {
                name: vx.clone(),
                group: OWNED_LINK_GROUP,
                vni: n.vni,
                local: "203.0.113.11".parse().unwrap(),
                port: n.port,
                mtu: 1450,
                master: br.clone(),
            },
            Op::SetPortFlags { link: vx.clone(), flags: PortFlags::OVERLAY_VXLAN },
            Op::SetUp { netns: Netns::Host, link: vx.clone() },
        ]);
        for (m, d) in &n.peers {
            ops.extend([
                Op::Neighbor {
                    netns: Netns::Host,
                    link: vx.clone(),
                    addr: format!("10.0.{i}.{m}").parse().unwrap(),
                    mac: mac(*m),
                },
                Op::VxlanFdb { link: vx.clone(), mac: mac(*m), dst: dst(*d) },
                Op::BridgeFdb { link: vx.clone(), mac: mac(*m) },
            ]);
        }
    }
    // What the kernel reports for a port: the flags it has.
    HostState::from_ops(&ops)
}

/// One way the host drifts away from the records (indices wrap around).
#[derive(Debug, Clone)]
enum Drift {
    DropFdbSelf(usize),
    MoveFdb(usize, usize),
    DropFdbMaster(usize),
    DropNeighbour(usize),
    NeighbourMac(usize, u8),
    /// A stale entry of Cove's on network `.0`'s device (a peer that left meanwhile).
    Stale(usize, u8, usize),
    /// The kernel's own entries: all-zeros default, multicast list, multicast static.
    KernelEntries(usize),
    Learning(usize),
    Vni(usize),
    Down(usize),
    DeleteVxlan(usize),
    DeleteBridge(usize),
    Flags(usize, bool, bool),
    Mtu(usize),
    /// A VXLAN device of someone else's, with entries.
    Foreign(u8, usize),
    /// A VXLAN device of Cove's no record wants.
    Orphan(u8),
    /// Network `.0`'s VXLAN device moved to someone else's bridge, static entries there.
    Reslave(usize),
}

fn drift() -> impl Strategy<Value = Drift> {
    let i = 0usize..16;
    prop_oneof![
        i.clone().prop_map(Drift::DropFdbSelf),
        (i.clone(), 0usize..4).prop_map(|(a, b)| Drift::MoveFdb(a, b)),
        i.clone().prop_map(Drift::DropFdbMaster),
        i.clone().prop_map(Drift::DropNeighbour),
        (i.clone(), 1u8..12).prop_map(|(a, b)| Drift::NeighbourMac(a, b)),
        (i.clone(), 1u8..12, 0usize..4).prop_map(|(a, b, c)| Drift::Stale(a, b, c)),
        i.clone().prop_map(Drift::KernelEntries),
        i.clone().prop_map(Drift::Learning),
        i.clone().prop_map(Drift::Vni),
        i.clone().prop_map(Drift::Down),
        i.clone().prop_map(Drift::DeleteVxlan),
        i.clone().prop_map(Drift::DeleteBridge),
        (i.clone(), any::<bool>(), any::<bool>()).prop_map(|(a, b, c)| Drift::Flags(a, b, c)),
        i.clone().prop_map(Drift::Mtu),
        (1u8..12, 0usize..4).prop_map(|(a, b)| Drift::Foreign(a, b)),
        (1u8..12).prop_map(Drift::Orphan),
        i.clone().prop_map(Drift::Reslave),
    ]
}

fn nth<T: Clone>(it: impl Iterator<Item = T>, i: usize) -> Option<T> {
    let all: Vec<T> = it.collect();
    (!all.is_empty()).then(|| all[i % all.len()].clone())
}

/// The name of network `i`'s VXLAN device, if it (still) exists.
fn vxlan(s: &HostState, i: usize) -> Option<String> {
    nth(s.links.keys().filter(|n| n.starts_with("vx-")).cloned(), i)
}

fn drifted(mut s: HostState, drifts: &[Drift]) -> HostState {
    for d in drifts {
        match *d {
            Drift::DropFdbSelf(i) => {
                if let Some(k) = nth(s.fdb_self.keys().cloned(), i) {
                    s.fdb_self.remove(&k);
                }
            }
            Drift::MoveFdb(i, d) => {
                if let Some(k) = nth(s.fdb_self.keys().cloned(), i) {
                    s.fdb_self.insert(k, dst(d));
                }
            }
            Drift::DropFdbMaster(i) => {
                if let Some(k) = nth(s.fdb_master.iter().cloned(), i) {
                    s.fdb_master.remove(&k);
                }
            }
            Drift::DropNeighbour(i) => {
                if let Some(k) = nth(s.neighbours.keys().cloned(), i) {
                    s.neighbours.remove(&k);
                }
            }
            Drift::NeighbourMac(i, m) => {
                if let Some(k) = nth(s.neighbours.keys().cloned(), i) {
                    s.neighbours.insert(k, mac(m));
                }
            }
            Drift::Stale(i, m, d) => {
                if let Some(vx) = vxlan(&s, i) {
                    s.fdb_self.insert((vx.clone(), mac(m)), dst(d));
                    if s.links[&vx].master.is_some() {
                        s.fdb_master.insert((vx.clone(), mac(m)));
                    }
                    if s.links[&vx].up {
                        s.neighbours.insert((vx, format!("10.9.9.{m}").parse().unwrap()), mac(m));
                    }
                }
            }
            Drift::KernelEntries(i) => {
                if let Some(vx) = vxlan(&s, i) {
                    s.fdb_self.insert((vx.clone(), MacAddr([0; 6])), dst(0));
                    s.fdb_self.insert((vx.clone(), MacAddr([0x33, 0x33, 0, 0, 0, 1])), dst(1));
                    s.fdb_master.insert((vx, MacAddr([1, 0, 0x5e, 0, 0, 1])));
                }
            }
            Drift::Learning(i) | Drift::Vni(i) => {
                if let Some(vx) = vxlan(&s, i) {
                    if let LinkKind::Vxlan(v) = &mut s.links.get_mut(&vx).unwrap().kind {
                        match d {
                            Drift::Learning(_) => v.learning = !v.learning,
                            _ => v.vni += 1,
                        }
                    }
                }
            }
            Drift::Down(i) => {
                if let Some(vx) = vxlan(&s, i) {
                    s.links.get_mut(&vx).unwrap().up = false;
                    s.neighbours.retain(|(l, _), _| *l != vx);
                }
            }
            Drift::DeleteVxlan(i) => {
                if let Some(vx) = vxlan(&s, i) {
                    remove_link(&mut s, &vx);
                }
            }
            Drift::DeleteBridge(i) => {
                if let Some(br) = nth(s.links.keys().filter(|n| n.starts_with("ov-")).cloned(), i) {
                    remove_link(&mut s, &br);
                }
            }
            Drift::Flags(i, learning, flood) => {
                if let Some(vx) = vxlan(&s, i).filter(|vx| s.links[vx].master.is_some()) {
                    let f = PortFlags { learning, unicast_flood: flood, ..PortFlags::DEFAULT };
                    s.port_flags.insert(vx, f);
                }
            }
            Drift::Mtu(i) => {
                if let Some(vx) = vxlan(&s, i) {
                    s.links.get_mut(&vx).unwrap().mtu = 1500;
                }
            }
            Drift::Foreign(m, di) => {
                let name = "flannel.1".to_string();
                s.links.insert(
                    name.clone(),
                    Link {
                        kind: LinkKind::Vxlan(Vxlan::overlay(1, dst(0), 8472)),
                        mtu: 1450,
                        up: true,
                        master: None,
                        group: 0,
                        hairpin: false,
                    },
                );
                s.fdb_self.insert((name.clone(), mac(m)), dst(di));
                s.neighbours.insert((name, "10.244.0.1".parse().unwrap()), mac(m));
            }
            Drift::Reslave(i) => {
                if let Some(vx) = vxlan(&s, i) {
                    s.links.entry("br-x".into()).or_insert(Link {
                        kind: LinkKind::Bridge { mac: MacAddr([2, 0, 0, 0, 0, 1]) },
                        mtu: 1500,
                        up: true,
                        master: None,
                        group: 0,
                        hairpin: false,
                    });
                    s.links.get_mut(&vx).unwrap().master = Some("br-x".into());
                    s.port_flags.insert(vx, PortFlags::DEFAULT);
                }
            }
            Drift::Orphan(m) => {
                let name = "vx-orphan".to_string();
                s.links.insert(
                    name.clone(),
                    Link {
                        kind: LinkKind::Vxlan(Vxlan::overlay(7, dst(0), 4789)),
                        mtu: 1450,
                        up: true,
                        master: None,
                        group: OWNED_LINK_GROUP,
                        hairpin: false,
                    },
                );
                s.fdb_self.insert((name.clone(), mac(m)), dst(1));
                s.neighbours.insert((name, "10.8.0.1".parse().unwrap()), mac(m));
            }
        }
    }
    s
}

fn net() -> impl Strategy<Value = Net> {
    (
        4096u32..4100,
        prop_oneof![Just(4789u16), Just(8472u16)],
        proptest::collection::vec((1u8..12, 0usize..4), 0..6),
    )
        .prop_map(|(vni, port, peers)| Net { vni, port, peers })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_the_diff_leaves_nothing_to_do(
        nets in proptest::collection::vec(net(), 0..3),
        drifts in proptest::collection::vec(drift(), 0..10),
    ) {
        let desired = desired_of(&nets);
        let observed = drifted(desired.clone(), &drifts);
        let ops = diff(&desired, &observed);
        let after = apply(&ops, observed.clone());
        let again = diff(&desired, &after);
        prop_assert!(again.is_empty(), "ops: {ops:#?}\nthen: {again:#?}\nobserved: {observed:#?}");
        // A changed entry is replaced, never deleted and added again.
        for op in &ops {
            if let Op::DelVxlanFdb { link, mac } = op {
                let readded = ops.iter().any(|o| matches!(o, Op::VxlanFdb { link: l, mac: m, .. } if l == link && m == mac));
                prop_assert!(!readded, "{op} and a replace of it");
            }
        }
        // Nothing of someone else's was touched.
        if let Some(l) = observed.links.get("flannel.1") {
            prop_assert_eq!(after.links.get("flannel.1"), Some(l));
            let theirs = |s: &HostState| s.fdb_self.iter().filter(|((l, _), _)| l == "flannel.1").count();
            prop_assert_eq!(theirs(&after), theirs(&observed));
        }
        // The kernel's own entries are never deleted.
        for ((l, m), _) in observed.fdb_self.iter().filter(|((_, m), _)| cove_plan::kernel_fdb_mac(m)) {
            prop_assert!(
                after.fdb_self.contains_key(&(l.clone(), *m)) || !after.links.contains_key(l)
                    || ops.contains(&Op::DeleteLink { netns: Netns::Host, name: l.clone() }),
                "kernel entry {m} on {l} deleted"
            );
        }
    }
}
