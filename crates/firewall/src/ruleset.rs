//! The full ruleset: both tables with every chain, counter, set and map.
//!
//! Every rule here is static. What varies with networks, containers and ports lives only in
//! the named sets and maps ([`crate::elements`]), so the hot path is a few element lines.
//!
//! Hook priorities follow the nftables wiki's tables ("Netfilter hooks", section "Priority
//! within hook", and "Bridge filtering"):
//!
//! * `inet` prerouting `raw` (-300): before conntrack (-200) and DNAT (-100), so a packet
//!   addressed to 127.0.0.1 is judged by its original destination, before NAT could turn it
//!   into a container address and before it creates a conntrack entry.
//! * `inet` nat prerouting `dstnat` (-100) and nat output -100: the standard DNAT slots.
//! * `inet` forward `filter` (0): after conntrack and DNAT, so `ct status dnat` and
//!   `ct state` are known.
//! * `inet` nat postrouting `srcnat` (100): the standard SNAT slot.
//! * `bridge` prerouting -350: every frame a container port sends, as it sent it: before
//!   bridge-family dstnat (-300) and filter (-200) chains of other tables, and before
//!   br_netfilter (0), which hands IP frames to the `inet` hooks.
//! * `bridge` forward `filter` (-200): before br_netfilter's forward hook, so a frame
//!   between two icc=false ports is dropped at L2 before it is ever seen as IP.

use std::fmt::Write as _;

use crate::elements::{in_text_order, Contents, Family, SetDecl, SetElement, DECLS};
use crate::model::FirewallModel;
use crate::names::*;

/// A chain: header line (empty for a regular chain), then rules (lines starting with `#`
/// are comments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    pub(crate) name: String,
    pub(crate) hook: String,
    pub(crate) rules: Vec<String>,
}

/// `counter name "<counter>" drop`.
fn counted_drop(counter: &str) -> String {
    format!("counter name \"{counter}\" drop")
}

fn comment(text: &str) -> String {
    format!("# {text}")
}

/// DNAT for published ports, shared by prerouting and output. Only for packets to one of
/// the host's own addresses (`fib daddr type local`): a map entry must never capture traffic
/// that merely passes through the host (CVE-2025-67499). The address-specific maps come
/// first; the controller never lets both kinds hold one port.
fn dnat_rules(rules: &mut Vec<String>) {
    let local = "fib daddr type local";
    let any = "meta l4proto . th dport";
    rules.extend([
        format!("{local} dnat ip to meta l4proto . ip daddr . th dport map @{MAP_DNAT4_ADDR}"),
        format!("{local} meta nfproto ipv4 dnat ip to {any} map @{MAP_DNAT4_ANY}"),
        format!("{local} dnat ip6 to meta l4proto . ip6 daddr . th dport map @{MAP_DNAT6_ADDR}"),
        format!("{local} meta nfproto ipv6 dnat ip6 to {any} map @{MAP_DNAT6_ANY}"),
    ]);
}

/// The rules that drop VXLAN datagrams from anyone but the cluster's nodes.
fn vxlan_guard(g: &crate::VxlanGuard) -> Vec<String> {
    let mut peers: Vec<std::net::IpAddr> = g.peers.clone();
    peers.sort();
    peers.dedup();
    let (v4, v6): (Vec<_>, Vec<_>) = peers.iter().partition(|a| a.is_ipv4());
    let drop = counted_drop(COUNTER_DROP_VXLAN_FOREIGN);
    let port = g.port;
    let rule = |family: &str, field: &str, addrs: &[&std::net::IpAddr]| {
        if addrs.is_empty() {
            format!("meta nfproto {family} udp dport {port} {drop}")
        } else {
            let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
            format!("udp dport {port} {field} saddr != {{ {} }} {drop}", list.join(", "))
        }
    };
    vec![rule("ipv4", "ip", &v4), rule("ipv6", "ip6", &v6)]
}

fn inet_chains(model: &FirewallModel) -> Vec<Chain> {
    let raw = vec![
        comment("loopback destinations only from lo: route_localnet on the bridges must not"),
        comment("let the LAN or a container reach 127.0.0.1 (moby#41872, CVE-2020-8558)"),
        format!(
            "iifname != \"lo\" ip daddr 127.0.0.0/8 {}",
            counted_drop(COUNTER_DROP_REMOTE_LOOPBACK)
        ),
        format!("iifname != \"lo\" ip6 daddr ::1 {}", counted_drop(COUNTER_DROP_REMOTE_LOOPBACK)),
    ];
    let mut raw = raw;
    if let Some(g) = &model.vxlan {
        raw.push(comment("VXLAN only from the nodes of the cluster (GHSA-vwm3-crmr-xfxw)"));
        raw.extend(vxlan_guard(g));
    }

    // Services come first (and only with service_lb, so the ruleset without them is
    // exactly what it was before they existed).
    let svc = |rules: Vec<String>| if model.service_lb { rules } else { Vec::new() };
    let mut prerouting = svc(crate::services::nat_rules());
    prerouting.push(comment("published ports, for clients outside the host and in containers"));
    dnat_rules(&mut prerouting);
    let mut output = svc(crate::services::nat_rules());
    output.push(comment("published ports, for the host itself (its addresses, 127.0.0.1, ::1)"));
    dnat_rules(&mut output);

    let (br, internal) = (SET_BRIDGES, SET_INTERNAL);
    let mut forward = vec![
        "ct state established,related accept".to_string(),
        comment("traffic that stays on one bridge is L2; it only gets here through br_netfilter"),
        format!("iifname . oifname @{SET_BRIDGE_SELF} accept"),
        comment("internal networks: nothing in, nothing out, not even published ports"),
        format!("iifname @{internal} {}", counted_drop(COUNTER_DROP_INTERNAL)),
        format!("oifname @{internal} {}", counted_drop(COUNTER_DROP_INTERNAL)),
        comment("published ports, from anywhere (other networks included)"),
        format!("oifname @{br} ct status dnat accept"),
        comment("inter-network isolation"),
        format!("iifname @{br} oifname @{br} {}", counted_drop(COUNTER_DROP_ISOLATION)),
        comment("direct routing to container addresses from outside"),
        format!("oifname @{br} {}", counted_drop(COUNTER_DROP_DIRECT)),
        comment("containers to the outside"),
        format!("iifname @{br} accept"),
    ];
    if model.drop_foreign_forwarding {
        forward.push(comment("Cove enabled forwarding: nothing else is forwarded"));
        forward.push(counted_drop(COUNTER_DROP_FOREIGN));
    }

    let mut postrouting = svc(crate::services::postrouting_rules());
    postrouting.extend([
        comment("the host reaching a published port through 127.0.0.1 / ::1"),
        format!("oifname @{br} ip saddr 127.0.0.0/8 masquerade"),
        format!("oifname @{br} ip6 saddr ::1 masquerade"),
        comment("hairpin: a container reaching a published port through a host address"),
        format!("oifname @{br} ct status dnat ip saddr @{SET_SUBNETS4} masquerade"),
        format!("oifname @{br} ct status dnat ip6 saddr @{SET_SUBNETS6} masquerade"),
        comment("outbound NAT; outside clients keep their own source address"),
        format!("oifname != @{br} ip saddr @{SET_MASQ4} masquerade"),
        format!("oifname != @{br} ip6 saddr @{SET_MASQ6} masquerade"),
    ]);

    let mut chains = vec![
        Chain {
            name: CHAIN_RAW_PREROUTING.into(),
            hook: "type filter hook prerouting priority raw; policy accept;".into(),
            rules: raw,
        },
        Chain {
            name: CHAIN_NAT_PREROUTING.into(),
            hook: "type nat hook prerouting priority dstnat; policy accept;".into(),
            rules: prerouting,
        },
        // nft 1.0.6 refuses the name `dstnat` in the output hook; -100 is its value.
        Chain {
            name: CHAIN_NAT_OUTPUT.into(),
            hook: "type nat hook output priority -100; policy accept;".into(),
            rules: output,
        },
        Chain {
            name: CHAIN_FORWARD.into(),
            hook: "type filter hook forward priority filter; policy accept;".into(),
            rules: forward,
        },
        Chain {
            name: CHAIN_NAT_POSTROUTING.into(),
            hook: "type nat hook postrouting priority srcnat; policy accept;".into(),
            rules: postrouting,
        },
        Chain {
            name: CHAIN_LO6_MARK.into(),
            hook: "type filter hook prerouting priority -90; policy accept;".into(),
            rules: vec![
                comment("a reply un-NATed to ::1 (the host used a port published on [::1]);"),
                comment("under br_netfilter this runs at the bridge, before IPv6 input"),
                format!(
                    "iifname != \"lo\" ip6 daddr ::1 ct direction reply \
                     meta mark set meta mark | {MARK_LO6:#010x}"
                ),
            ],
        },
    ];
    if model.service_lb {
        chains.extend(crate::services::base_chains());
        chains.extend(service_chains(model));
    }
    // Encrypted overlays' guards: chains of their own (crate::encryption).
    if let Some(g) = &model.encryption {
        chains.extend(crate::encryption::chains(g));
    }
    chains
}

/// The per-service chains of `model` (none without `service_lb`), sorted by name.
pub(crate) fn service_chains(model: &FirewallModel) -> Vec<Chain> {
    if !model.service_lb {
        return Vec::new();
    }
    crate::services::chains(&crate::services::Plan::of(model))
}

/// The `netdev` ingress chain of every IPv6 bridge. IPv6 input drops a `::1` destination
/// on any link but `lo` before routing; where br_netfilter already un-NATed a reply to
/// `::1` at the bridge, the chain hands it to `lo` instead, conntrack entry and all.
/// Without br_netfilter the un-NAT happens later, in IP prerouting, and the bridge's
/// `local ::1` route delivers it; the mark is then never set here, so nothing is moved.
fn netdev_chains(model: &FirewallModel) -> Vec<Chain> {
    lo6_bridges(model)
        .into_iter()
        .map(|br| Chain {
            name: format!("{CHAIN_LO6_PREFIX}{br}"),
            hook: format!("type filter hook ingress device \"{br}\" priority 0; policy accept;"),
            // lo's address is all zeros: with the bridge's MAC still on it, the frame would
            // be "for another host" on lo and dropped.
            rules: vec![format!(
                "ip6 daddr ::1 meta mark & {MARK_LO6:#010x} == {MARK_LO6:#010x} \
                 ether daddr set 00:00:00:00:00:00 fwd to \"lo\""
            )],
        })
        .collect()
}

/// The bridges that get a `netdev` chain: those of networks with IPv6, sorted.
pub(crate) fn lo6_bridges(model: &FirewallModel) -> Vec<&str> {
    let mut v: Vec<&str> = model
        .networks
        .iter()
        .filter(|n| !n.subnets6.is_empty() && crate::model::valid_ifname(&n.bridge))
        .map(|n| n.bridge.as_str())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn bridge_chains() -> Vec<Chain> {
    let port = "iifname . ether saddr";
    let prerouting = vec![
        format!("iifname != @{SET_GUARDED} accept"),
        comment("a container port sends only from its own MAC, untagged"),
        format!("{port} != @{SET_PORT_MAC} {}", counted_drop(COUNTER_DROP_SPOOF_MAC)),
        format!("ether type {{ 8021q, 8021ad }} {}", counted_drop(COUNTER_DROP_SPOOF_MAC)),
        comment("containers are never routers (CVE-2020-13401, CVE-2020-10749)"),
        format!(
            "icmpv6 type {{ nd-router-advert, nd-redirect }} {}",
            counted_drop(COUNTER_DROP_ROUTER)
        ),
        format!("icmp type redirect {}", counted_drop(COUNTER_DROP_ROUTER)),
        comment("IPv4 source and ARP sender: its own address and MAC"),
        format!(
            "ether type arp iifname . arp saddr ether . arp saddr ip != @{SET_PORT_IP4} {}",
            counted_drop(COUNTER_DROP_SPOOF_IP4)
        ),
        format!(
            "ether type ip {port} . ip saddr != @{SET_PORT_IP4} {}",
            counted_drop(COUNTER_DROP_SPOOF_IP4)
        ),
        comment("IPv6 source: its own address, link-local, or :: (DAD); NA only for its own"),
        format!(
            "ether type ip6 ip6 saddr != {{ ::, fe80::/64 }} \
             {port} . ip6 saddr != @{SET_PORT_IP6} {}",
            counted_drop(COUNTER_DROP_SPOOF_IP6)
        ),
        // The NA target address is @th,64,128; its first half fe80:: means link-local.
        format!(
            "icmpv6 type nd-neighbor-advert @th,64,64 != 0xfe80000000000000 \
             {port} . @th,64,128 != @{SET_PORT_ND6} {}",
            counted_drop(COUNTER_DROP_SPOOF_IP6)
        ),
    ];
    const ND: &str = "nd-neighbor-solicit, nd-neighbor-advert";
    let forward = vec![
        comment("legacy links through icc=false (Docker's link rules): ARP and neighbour"),
        comment("discovery between the pair, the linked container's exposed ports, replies"),
        format!("iifname . oifname @{SET_LINK_PAIRS} ether type arp accept"),
        format!("oifname . iifname @{SET_LINK_PAIRS} ether type arp accept"),
        format!("iifname . oifname @{SET_LINK_PAIRS} icmpv6 type {{ {ND} }} accept"),
        format!("oifname . iifname @{SET_LINK_PAIRS} icmpv6 type {{ {ND} }} accept"),
        format!("iifname . oifname . meta l4proto . th dport @{SET_LINK_FWD} accept"),
        format!("iifname . oifname . meta l4proto . th sport @{SET_LINK_REV} accept"),
        comment("icc=false: no frame at all between two containers of the network"),
        format!("iifname @{SET_ICC_OFF} oifname @{SET_ICC_OFF} {}", counted_drop(COUNTER_DROP_ICC)),
    ];
    vec![
        Chain {
            name: CHAIN_BRIDGE_PREROUTING.into(),
            hook: "type filter hook prerouting priority -350; policy accept;".into(),
            rules: prerouting,
        },
        Chain {
            name: CHAIN_BRIDGE_FORWARD.into(),
            hook: "type filter hook forward priority filter; policy accept;".into(),
            rules: forward,
        },
    ]
}

fn write_table(
    out: &mut String,
    family: Family,
    counters: &[&str],
    contents: &Contents,
    chains: &[Chain],
    service_lb: bool,
    extra: &str,
) {
    let table = family.table();
    // Create-if-missing, then delete, then create: one transaction that replaces the
    // table whatever state it was in (absent, current, stale, half-flushed).
    let _ = writeln!(out, "table {table} {{}}\ndelete table {table}\ntable {table} {{");
    for c in counters {
        let _ = writeln!(out, "\tcounter {c} {{}}");
    }
    out.push_str(extra);
    let wanted = |d: &SetDecl| d.family == family && (service_lb || !d.service);
    for (d, elements) in DECLS.iter().zip(&contents.sets).filter(|(d, _)| wanted(d)) {
        let _ = writeln!(out, "\n\t{} {} {{", if d.map { "map" } else { "set" }, d.name);
        for s in d.spec {
            let _ = writeln!(out, "\t\t{s}");
        }
        if !elements.is_empty() {
            let items: Vec<String> = in_text_order(elements).iter().map(SetElement::text).collect();
            let _ = writeln!(out, "\t\telements = {{\n\t\t\t{}\n\t\t}}", items.join(",\n\t\t\t"));
        }
        out.push_str("\t}\n");
    }
    for chain in chains {
        let _ = writeln!(out, "\n\tchain {} {{", chain.name);
        if !chain.hook.is_empty() {
            let _ = writeln!(out, "\t\t{}", chain.hook);
        }
        for r in &chain.rules {
            let _ = writeln!(out, "\t\t{r}");
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
}

/// Renders the complete ruleset (see [`crate::render`]).
pub(crate) fn render(model: &FirewallModel) -> String {
    let contents = Contents::build(model);
    let mut out = String::from(
        "# Cove's firewall, generated by cove-firewall: apply with `nft -f -` (one transaction).\n\
         # Cove owns exactly these three tables and never touches any other.\n",
    );
    let mut inet_counters = INET_COUNTERS.to_vec();
    if model.service_lb {
        inet_counters.extend(SERVICE_COUNTERS);
    }
    let lb = model.service_lb;
    let enc = model.encryption.as_ref().map(crate::encryption::declarations).unwrap_or_default();
    write_table(&mut out, Family::Inet, &inet_counters, &contents, &inet_chains(model), lb, &enc);
    write_table(&mut out, Family::Bridge, BRIDGE_COUNTERS, &contents, &bridge_chains(), lb, "");
    write_table(&mut out, Family::Netdev, &[], &contents, &netdev_chains(model), lb, "");
    out
}
