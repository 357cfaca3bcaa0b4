//! The diff's cases: bridges and their ports, VXLAN devices and their entries.

use std::net::IpAddr;

use cove_model::MacAddr;

use super::diff;
use crate::host::{HostState, Link, LinkKind, Vxlan};
use crate::op::{Netns, Op, PortFlags, OWNED_LINK_GROUP};

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

// Overlay networks: a bridge, a VXLAN device on it, and per remote endpoint a neighbour
// entry, a VXLAN forwarding entry and a static bridge forwarding entry.

const VX: &str = "vx-a";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0x42, 10, 0, 9, n])
}

fn overlay_ops() -> Vec<Op> {
    let mut ops = bridge_ops("ov-a", "10.0.9.1/24");
    ops.extend([
        Op::CreateVxlan {
            name: VX.into(),
            group: OWNED_LINK_GROUP,
            vni: 4097,
            local: ip("203.0.113.11"),
            port: 4789,
            mtu: 1450,
            master: "ov-a".into(),
        },
        Op::SetPortFlags { link: VX.into(), flags: PortFlags::OVERLAY_VXLAN },
        Op::SetUp { netns: Netns::Host, link: VX.into() },
    ]);
    ops
}

fn peer_ops(n: u8, dst: &str) -> Vec<Op> {
    vec![
        Op::Neighbor {
            netns: Netns::Host,
            link: VX.into(),
            addr: ip(&format!("10.0.9.{n}")),
            mac: mac(n),
        },
        Op::VxlanFdb { link: VX.into(), mac: mac(n), dst: ip(dst) },
        Op::BridgeFdb { link: VX.into(), mac: mac(n) },
    ]
}

fn overlay_with(peers: &[(u8, &str)]) -> HostState {
    let mut ops = overlay_ops();
    for (n, dst) in peers {
        ops.extend(peer_ops(*n, dst));
    }
    HostState::from_ops(&ops)
}

#[test]
fn an_overlay_from_nothing_has_its_links_before_its_entries() {
    let got = diff(&overlay_with(&[(3, "203.0.113.12")]), &HostState::default());
    assert_eq!(
        render(&got),
        "create bridge ov-a mtu 1500 mac 02:42:00:00:00:01\n\
         create vxlan vx-a id 4097 local 203.0.113.11 dstport 4789 nolearning proxy mtu 1450 master ov-a\n\
         set bridge port vx-a learning off flood off mcast_flood on bcast_flood on neigh_suppress off\n\
         sysctl net/ipv6/conf/ov-a/disable_ipv6=1 in host\n\
         add address 10.0.9.1/24 to ov-a in host\n\
         set ov-a up in host\n\
         set vx-a up in host\n\
         add permanent neighbour 10.0.9.3 lladdr 02:42:0a:00:09:03 dev vx-a in host\n\
         replace fdb 02:42:0a:00:09:03 dev vx-a dst 203.0.113.12 self permanent\n\
         replace fdb 02:42:0a:00:09:03 dev vx-a master static\n"
    );
}

#[test]
fn equal_overlays_need_nothing() {
    let s = overlay_with(&[(3, "203.0.113.12"), (4, "203.0.113.13")]);
    assert!(diff(&s, &s).is_empty());
}

#[test]
fn missing_remote_endpoints_are_added() {
    let desired = overlay_with(&[(3, "203.0.113.12"), (4, "2001:db8::13")]);
    let observed = overlay_with(&[(3, "203.0.113.12")]);
    assert_eq!(
        render(&diff(&desired, &observed)),
        "add permanent neighbour 10.0.9.4 lladdr 02:42:0a:00:09:04 dev vx-a in host\n\
         replace fdb 02:42:0a:00:09:04 dev vx-a dst 2001:db8::13 self permanent\n\
         replace fdb 02:42:0a:00:09:04 dev vx-a master static\n"
    );
}

#[test]
fn a_remote_endpoint_gone_loses_its_entries() {
    let desired = overlay_with(&[(3, "203.0.113.12")]);
    let observed = overlay_with(&[(3, "203.0.113.12"), (4, "203.0.113.13")]);
    assert_eq!(
        render(&diff(&desired, &observed)),
        "delete neighbour 10.0.9.4 dev vx-a in host\n\
         delete fdb 02:42:0a:00:09:04 dev vx-a self\n\
         delete fdb 02:42:0a:00:09:04 dev vx-a master\n"
    );
}

#[test]
fn a_node_whose_address_changed_is_one_replace_per_mac() {
    let desired = overlay_with(&[(3, "203.0.113.22"), (4, "203.0.113.13")]);
    let observed = overlay_with(&[(3, "203.0.113.12"), (4, "203.0.113.13")]);
    assert_eq!(
        diff(&desired, &observed),
        [Op::VxlanFdb { link: VX.into(), mac: mac(3), dst: ip("203.0.113.22") }]
    );
}

#[test]
fn a_neighbour_with_another_mac_is_replaced() {
    let desired = overlay_with(&[(3, "203.0.113.12")]);
    let mut observed = desired.clone();
    observed.neighbours.insert((VX.into(), ip("10.0.9.3")), mac(9));
    assert_eq!(
        render(&diff(&desired, &observed)),
        "add permanent neighbour 10.0.9.3 lladdr 02:42:0a:00:09:03 dev vx-a in host\n"
    );
}

#[test]
fn vxlan_attribute_drift_recreates_the_device_and_everything_on_it() {
    let desired = overlay_with(&[(3, "203.0.113.12")]);
    for drift in [
        |v: &mut Vxlan| v.learning = true,
        |v: &mut Vxlan| v.vni = 4098,
        |v: &mut Vxlan| v.local = Some(ip("203.0.113.99")),
        |v: &mut Vxlan| v.port = 8472,
        |v: &mut Vxlan| v.l2miss = true,
        |v: &mut Vxlan| v.remote = Some(ip("239.1.1.1")),
    ] {
        let mut observed = desired.clone();
        let LinkKind::Vxlan(v) = &mut observed.links.get_mut(VX).unwrap().kind else {
            unreachable!()
        };
        drift(v);
        // A stale entry on the old device goes with it: no delete of its own.
        observed.fdb_self.insert((VX.into(), mac(7)), ip("203.0.113.77"));
        assert_eq!(
            render(&diff(&desired, &observed)),
            "delete link vx-a in host\n\
             create vxlan vx-a id 4097 local 203.0.113.11 dstport 4789 nolearning proxy mtu 1450 master ov-a\n\
             set bridge port vx-a learning off flood off mcast_flood on bcast_flood on neigh_suppress off\n\
             set vx-a up in host\n\
             add permanent neighbour 10.0.9.3 lladdr 02:42:0a:00:09:03 dev vx-a in host\n\
             replace fdb 02:42:0a:00:09:03 dev vx-a dst 203.0.113.12 self permanent\n\
             replace fdb 02:42:0a:00:09:03 dev vx-a master static\n"
        );
    }
}

#[test]
fn a_foreign_link_of_the_vxlan_name_is_not_deleted() {
    let desired = overlay_with(&[]);
    let mut observed = desired.clone();
    let l = observed.links.get_mut(VX).unwrap();
    l.group = 0;
    l.kind = LinkKind::Other(Some("dummy".into()));
    assert!(diff(&desired, &observed).iter().all(|op| !matches!(op, Op::DeleteLink { .. })));
}

#[test]
fn the_kernels_own_entries_and_foreign_devices_are_left_alone() {
    let desired = overlay_with(&[(3, "203.0.113.12")]);
    let mut observed = desired.clone();
    // The kernel's: a default (flood) entry, a multicast list entry, a multicast static.
    observed.fdb_self.insert((VX.into(), MacAddr([0; 6])), ip("203.0.113.200"));
    observed.fdb_self.insert((VX.into(), MacAddr([0x33, 0x33, 0, 0, 0, 1])), ip("0.0.0.0"));
    observed.fdb_master.insert((VX.into(), MacAddr([1, 0, 0x5e, 0, 0, 1])));
    // Someone else's VXLAN device with entries of its own.
    observed.links.insert(
        "flannel.1".into(),
        Link {
            kind: LinkKind::Vxlan(Vxlan::overlay(1, ip("203.0.113.11"), 8472)),
            mtu: 1450,
            up: true,
            master: None,
            group: 0,
            hairpin: false,
        },
    );
    observed.fdb_self.insert(("flannel.1".into(), mac(5)), ip("203.0.113.50"));
    observed.neighbours.insert(("flannel.1".into(), ip("10.244.1.0")), mac(5));
    assert_eq!(diff(&desired, &observed), []);
    // A stale entry of Cove's own on its device is not the kernel's: it goes.
    observed.fdb_self.insert((VX.into(), mac(6)), ip("203.0.113.60"));
    observed.fdb_master.insert((VX.into(), mac(6)));
    assert_eq!(
        render(&diff(&desired, &observed)),
        "delete fdb 02:42:0a:00:09:06 dev vx-a self\n\
         delete fdb 02:42:0a:00:09:06 dev vx-a master\n"
    );
}

#[test]
fn port_flags_that_drifted_are_set_again() {
    let desired = overlay_with(&[]);
    let mut observed = desired.clone();
    observed.port_flags.insert(VX.into(), PortFlags::DEFAULT);
    assert_eq!(
        diff(&desired, &observed),
        [Op::SetPortFlags { link: VX.into(), flags: PortFlags::OVERLAY_VXLAN }]
    );
}

#[test]
fn a_bridge_deleted_by_hand_takes_its_vxlan_port_back_with_flags_and_static_entries() {
    let desired = overlay_with(&[(3, "203.0.113.12")]);
    // What the kernel has after `ip link del ov-a`: the VXLAN device without master,
    // flags or bridge entries; its own entries and neighbours are still there.
    let mut observed = desired.clone();
    observed.links.remove("ov-a");
    observed.addresses.clear();
    observed.sysctls.clear();
    observed.links.get_mut(VX).unwrap().master = None;
    observed.port_flags.clear();
    observed.fdb_master.clear();
    assert_eq!(
        render(&diff(&desired, &observed)),
        "create bridge ov-a mtu 1500 mac 02:42:00:00:00:01\n\
         sysctl net/ipv6/conf/ov-a/disable_ipv6=1 in host\n\
         add address 10.0.9.1/24 to ov-a in host\n\
         set ov-a up in host\n\
         set master of vx-a to ov-a\n\
         set bridge port vx-a learning off flood off mcast_flood on bcast_flood on neigh_suppress off\n\
         replace fdb 02:42:0a:00:09:03 dev vx-a master static\n"
    );
}

#[test]
fn a_vxlan_set_down_gets_its_neighbours_back_after_it_is_up() {
    let desired = overlay_with(&[(3, "203.0.113.12")]);
    // The kernel flushes a device's neighbours (permanent ones too) when it goes down.
    let mut observed = desired.clone();
    observed.links.get_mut(VX).unwrap().up = false;
    observed.neighbours.clear();
    assert_eq!(
        render(&diff(&desired, &observed)),
        "set vx-a up in host\n\
         add permanent neighbour 10.0.9.3 lladdr 02:42:0a:00:09:03 dev vx-a in host\n"
    );
}

#[test]
fn a_removed_overlay_condemns_its_links_and_leaves_their_entries_to_them() {
    let got = diff(&HostState::default(), &overlay_with(&[(3, "203.0.113.12")]));
    assert_eq!(
        render(&got),
        "delete address 10.0.9.1/24 from ov-a in host\n\
         condemn ov-a (reaped in the background)\n\
         condemn vx-a (reaped in the background)\n"
    );
}

#[test]
fn inverses_undo_the_overlay_ops() {
    let ops = overlay_ops().into_iter().chain(peer_ops(3, "203.0.113.12"));
    let undo: Vec<String> = ops.filter_map(|o| o.inverse()).map(|o| o.to_string()).collect();
    assert_eq!(
        undo,
        [
            "delete link ov-a in host",
            "delete address 10.0.9.1/24 from ov-a in host",
            "delete link vx-a in host",
            "delete neighbour 10.0.9.3 dev vx-a in host",
            "delete fdb 02:42:0a:00:09:03 dev vx-a self",
            "delete fdb 02:42:0a:00:09:03 dev vx-a master",
        ]
    );
}
