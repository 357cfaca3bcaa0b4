//! The difference between the desired and the observed host as ordered ops.

use std::collections::BTreeSet;

use crate::host::{kernel_fdb_mac, HostState, Link, LinkKind, Vxlan};
use crate::op::{Netns, Op, OWNED_LINK_GROUP};

/// The ops that take the host from `observed` to `desired`, in an order the kernel accepts:
/// Cove's unwanted objects first (neighbours and forwarding entries nobody wants, links
/// nobody wants condemned, their addresses removed first so their subnets are free at
/// once, VXLAN devices whose attributes drifted deleted), then missing bridges created,
/// then missing VXLAN devices (on their bridges, with their port flags), sysctls,
/// addresses, links up, masters and hairpin, port flags, neighbours, forwarding entries,
/// routes. Only Cove's objects are removed: links of its group, and addresses, neighbours
/// and forwarding entries on links it wants (never the kernel's own entries:
/// [`kernel_fdb_mac`]).
///
/// A missing veth is not re-created (its peer is in a sandbox); a veth whose bridge came
/// back is enslaved to it again, with hairpin mode. A forwarding entry whose destination
/// changed is replaced in one op, never deleted and added.
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
    let (mut create, mut create_vxlan, mut sysctls, mut addrs, mut ups, mut masters) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut ports, mut neigh, mut fdb, mut routes) = (vec![], vec![], vec![], vec![]);
    // Links created by this diff, and those of them that existed before (deleted first):
    // whatever the kernel had on the latter went with them.
    let mut fresh = BTreeSet::new();
    let mut recreated = BTreeSet::new();
    // Ports enslaved again: a new port has the kernel's default flags and no entries.
    let mut reslaved = BTreeSet::new();
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
            (o, LinkKind::Vxlan(v))
                if o.is_none_or(|o| o.group == OWNED_LINK_GROUP && o.kind != d.kind) =>
            {
                let Some(master) = &d.master else { continue };
                if o.is_some() {
                    gone.push(Op::DeleteLink { netns: host(), name: name.clone() });
                    recreated.insert(name.clone());
                }
                create_vxlan.push(vxlan_op(name, d, v, master));
                if let Some(flags) = desired.port_flags.get(name) {
                    create_vxlan.push(Op::SetPortFlags { link: name.clone(), flags: *flags });
                }
                fresh.insert(name.clone());
                if d.up {
                    ups.push(Op::SetUp { netns: host(), link: name.clone() });
                }
            }
            (None, LinkKind::Macvlan(Some((parent, mac)))) => {
                // After the bridges: it sits on one.
                create_vxlan.push(Op::CreateMacvlan {
                    name: name.clone(),
                    group: d.group,
                    parent: parent.clone(),
                    mac: *mac,
                    mtu: d.mtu,
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
                    reslaved.insert(name.clone());
                    if d.hairpin {
                        masters.push(Op::Hairpin { link: name.clone() });
                    }
                }
            }
        }
    }
    let exists = |link: &str| observed.links.contains_key(link) || fresh.contains(link);
    // Whether the observed objects on a link are still there when its turn comes.
    let kept = |link: &str| !recreated.contains(link);
    let port_kept = |link: &str| kept(link) && !reslaved.contains(link);
    let owned = |link: &str| desired.owns(link) && observed.owns(link);
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
        if owned(link) && kept(link) {
            gone.push(Op::DelAddress { netns: host(), link: link.clone(), addr: *addr });
        }
    }
    for (link, flags) in &desired.port_flags {
        let differs = !port_kept(link) || observed.port_flags.get(link) != Some(flags);
        if exists(link) && !fresh.contains(link) && differs {
            ports.push(Op::SetPortFlags { link: link.clone(), flags: *flags });
        }
    }
    for ((link, addr), mac) in &desired.neighbours {
        let differs = !kept(link) || observed.neighbours.get(&(link.clone(), *addr)) != Some(mac);
        if differs && exists(link) {
            neigh.push(Op::Neighbor { netns: host(), link: link.clone(), addr: *addr, mac: *mac });
        }
    }
    for (link, addr) in observed.neighbours.keys() {
        if desired.owns(link)
            && kept(link)
            && !desired.neighbours.contains_key(&(link.clone(), *addr))
        {
            gone.push(Op::DelNeighbor { netns: host(), link: link.clone(), addr: *addr });
        }
    }
    for ((link, mac), dst) in &desired.fdb_self {
        let differs = !kept(link) || observed.fdb_self.get(&(link.clone(), *mac)) != Some(dst);
        if differs && exists(link) {
            fdb.push(Op::VxlanFdb { link: link.clone(), mac: *mac, dst: *dst });
        }
    }
    for key @ (link, mac) in observed.fdb_self.keys() {
        if owned(link) && kept(link) && !kernel_fdb_mac(mac) && !desired.fdb_self.contains_key(key)
        {
            gone.push(Op::DelVxlanFdb { link: link.clone(), mac: *mac });
        }
    }
    for key @ (link, mac) in &desired.fdb_master {
        if exists(link) && (!port_kept(link) || !observed.fdb_master.contains(key)) {
            fdb.push(Op::BridgeFdb { link: link.clone(), mac: *mac });
        }
    }
    for (link, mac) in observed.fdb_master.difference(&desired.fdb_master) {
        if owned(link) && port_kept(link) && !kernel_fdb_mac(mac) {
            gone.push(Op::DelBridgeFdb { link: link.clone(), mac: *mac });
        }
    }
    for link in desired.loopback6.difference(&observed.loopback6) {
        if exists(link) {
            routes.push(Op::LoopbackRoute6 { link: link.clone() });
        }
    }
    let mut ops = gone;
    ops.extend(condemned);
    for part in [create, create_vxlan, sysctls, addrs, ups, masters, ports, neigh, fdb, routes] {
        ops.extend(part);
    }
    ops
}

fn vxlan_op(name: &str, d: &Link, v: &Vxlan, master: &str) -> Op {
    Op::CreateVxlan {
        name: name.to_string(),
        group: d.group,
        vni: v.vni,
        // A desired VXLAN device always has its local address (it comes from the op).
        local: v.local.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
        port: v.port,
        mtu: d.mtu,
        master: master.to_string(),
    }
}

#[cfg(test)]
mod tests;
