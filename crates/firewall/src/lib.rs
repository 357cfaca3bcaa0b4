//! Cove's firewall as a pure model: a [`FirewallModel`] (networks, endpoints, published
//! ports) in, nftables text out. No I/O: the kernel executor feeds the text to `nft -f -`.
//!
//! Cove owns two tables, `inet cove` and `bridge cove` ([`names`]), and never touches any
//! other. Every rule is static; what varies with networks, containers and ports lives in
//! named sets and maps, so attaching a container or publishing a port is a handful of
//! element lines in one transaction ([`render_delta`]), whose cost does not grow with the
//! number of containers or ports.
//!
//! # What the rules do
//!
//! `inet cove` (IPv4 and IPv6 alike):
//!
//! * `raw_prerouting` (priority raw): packets to 127.0.0.0/8 or ::1 that did not arrive on
//!   `lo` are dropped, before NAT can rewrite them: `route_localnet` on the bridges (needed
//!   for host → 127.0.0.1 → container) cannot be abused by the LAN or by containers.
//! * `nat_prerouting` / `nat_output` (dstnat): published ports, `fib daddr type local` only,
//!   looked up in `dnat4_addr` (`proto . host address . port`), then `dnat4_any`
//!   (`proto . port`), and the IPv6 twins. A port bound to one host address is DNAT'ed
//!   only for that address. Output covers the host itself, 127.0.0.1 and ::1 included.
//! * `forward` (filter): replies pass; traffic staying on one bridge passes; nothing is
//!   forwarded into or out of an internal network's bridge; DNAT'ed traffic to a bridge
//!   passes (published ports, also from other networks); bridge to other bridge is dropped
//!   (isolation); anything else to a bridge is dropped (no direct routing to container
//!   addresses); bridges to the outside pass; with `drop_foreign_forwarding`, anything
//!   else is dropped.
//! * `nat_postrouting` (srcnat): masquerade 127.0.0.0/8 and ::1 sources leaving through a
//!   bridge (host → localhost-published port), DNAT'ed traffic from a Cove subnet leaving
//!   through a bridge (hairpin, and other networks reaching a published port, as Docker
//!   does), and masquerading subnets leaving through a non-Cove interface. Outside clients
//!   of a published port keep their source address.
//!
//! `bridge cove`:
//!
//! * `prerouting` (-350): every frame from a container port (`guarded`) must carry the
//!   port's MAC (`port_mac`), be untagged, carry its IPv4 address as IPv4 source and ARP
//!   sender (`port_ip4`), its IPv6 address or `::` or fe80::/64 as IPv6 source
//!   (`port_ip6`), and advertise only its own addresses in neighbour advertisements
//!   (`port_nd6`); router advertisements and redirects are dropped.
//! * `forward` (filter): frames between two ports of icc=false networks (`icc_off`) are
//!   dropped, whatever their protocol (raw Ethernet included).
//!
//! With `service_lb`, `inet cove` also balances services' virtual IPs over their backends
//! and publishes routing-mesh ports (kube-proxy's nftables model; see the `services`
//! module and ADR 0020): verdict maps keyed by VIP, protocol and port lead to one chain
//! per service (`numgen random`) and one per backend (DNAT); filter chains refuse a service
//! without backends and drop anything else sent to a VIP.
//!
//! Every drop has a named counter ([`names`]`::COUNTER_*`), so a test can prove where a
//! probe died.
//!
//! # What the executor must do besides `nft -f -`
//!
//! * Apply [`render`] at start and on every reconcile; it replaces both tables atomically
//!   (counters restart at 0). Apply [`render_delta`] on the hot path; if `nft` refuses it
//!   (a table is missing or was changed behind Cove's back), apply [`render`] instead.
//!   Watch for the tables disappearing (flush, firewall reload) and re-apply [`render`].
//! * Sysctls: `net.ipv4.conf.<bridge>.route_localnet=1` on every Cove bridge and nowhere
//!   else (never `all`/`default`, CVE-2020-8558): without it 127.0.0.1-published ports do
//!   not work. `accept_ra=0` on bridges and host-side veths. `ip_forward` /
//!   `conf.all.forwarding`, and then `drop_foreign_forwarding = true`.
//! * Hairpin mode on every container bridge port (`IFLA_BRPORT_MODE`, as Docker does
//!   without its userland proxy): when br_netfilter is active
//!   (`net.bridge.bridge-nf-call-iptables=1`, the default in every netns once the module is
//!   loaded), a container's packet to its own published port is DNAT'ed and bridged back
//!   out of the port it came in on, which the bridge refuses without hairpin mode.
//! * br_netfilter itself is not needed, and the rules are correct with it on or off. With it
//!   on, DNAT'ed traffic between two containers of one icc=false network is bridged, so the
//!   L2 icc drop stops it too (containers of such a network cannot reach each other's
//!   published ports, their own included); the kernel offers no conntrack in the bridge
//!   family to tell those frames apart.
//! * `[::1]:port` publishing needs more than nftables: Linux drops packets addressed to ::1
//!   on any interface but `lo` (`ip6_rcv_core`), and refuses to route them from another
//!   interface. It works when br_netfilter does not hook IPv6 in the daemon's netns
//!   (`net.bridge.bridge-nf-call-ip6tables=0`) and the replies have a route: one rule
//!   `ip -6 rule add to ::1 lookup <T>` and per IPv6 bridge `ip -6 route add local ::1 dev
//!   <bridge> table <T>`. Where the executor cannot arrange that, the controller must refuse
//!   `[::1]` bindings with a clear error rather than accept a port that never answers.
//! * Nothing here makes an `accept` final: another table's drop (Docker's iptables FORWARD
//!   policy DROP, a user's firewall) still wins.
#![warn(missing_docs)]

mod counters;
mod delta;
mod elements;
pub mod encryption;
mod model;
pub mod names;
pub mod netlink;
mod ruleset;
mod services;

pub use counters::{parse_counters, NamedCounter};
pub use cove_model::{MacAddr, Proto};
pub use delta::{ChainEdit, ElementDelta, SetChange};
pub use elements::{FieldValue, SetElement};
pub use encryption::EncryptionGuard;
pub use model::{
    valid_ifname, EndpointRules, FirewallModel, LinkRule, NetworkRules, PublishedPort, VxlanGuard,
    MAX_IFNAME_LEN,
};
pub use services::{Backend, IngressPort, ServiceLb, ServicePort};

/// The complete ruleset: tables `inet cove` and `bridge cove` with all chains, counters,
/// named sets and maps and their elements. Fed to `nft -f -` it replaces any previous
/// version of both tables in one transaction (`table X {}` / `delete table X` /
/// `table X { ... }`). Deterministic: the same model always renders the same text.
///
/// Entries the ruleset cannot express are left out rather than making the whole file fail;
/// [`FirewallModel::problems`] lists them.
pub fn render(model: &FirewallModel) -> String {
    ruleset::render(model)
}

/// Only the element changes from `before` to `after`: `delete element` lines (first),
/// the per-service chains that appear, change or go (see [`ChainEdit`]), and `add element`
/// lines for the named sets and maps, to apply in one `nft -f -` transaction on top of a
/// kernel holding `before`. Returns `""` when nothing changed.
///
/// When a rule changes too (`drop_foreign_forwarding` differs), there is no element delta:
/// it returns the full [`render`] of `after`, which is just as valid to apply.
pub fn render_delta(before: &FirewallModel, after: &FirewallModel) -> String {
    delta::render_delta(before, after)
}

/// The element changes (`delete element` / `add element`) that turn what `before`
/// contributes into what `after` contributes, for *partial* models: the same networks (or
/// the networks before and after a change) and only the endpoints and ports that changed.
/// Elements of unchanged networks cancel out, so the cost follows the size of the change,
/// not of the host. A service whose backends change is a rewrite of that service's chains
/// (`svc-<id>`, its backend chains) plus a few elements, whatever the number of services.
/// A typed value: [`ElementDelta::render_text`] gives the nft text,
/// [`ElementDelta::to_netlink`] the kernel's bytes (element changes only). `None` when a
/// static rule must change (an IPv6 bridge's chain appears or goes, `drop_foreign_forwarding`,
/// the VXLAN guard or `service_lb` differs): then only the full [`render`] can say it.
pub fn element_delta(before: &FirewallModel, after: &FirewallModel) -> Option<ElementDelta> {
    delta::element_delta_of(before, after)
}
