//! Values gathered when a scrape comes: objects, IPAM, per-endpoint traffic, firewall drops.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Options;

/// Docker's container states, each always exposed (zero included).
const CONTAINER_STATES: [&str; 5] = ["created", "running", "exited", "removing", "dead"];

/// One network.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkSample {
    /// Its name.
    pub name: String,
    /// Its driver (`bridge`, `overlay`, ...).
    pub driver: String,
    /// `local` or `global` (in the cluster store).
    pub scope: String,
    /// Endpoints on it (this host's).
    pub endpoints: u64,
    /// Its pools' addresses, by family.
    pub ipam: Vec<IpamSample>,
    /// Forwarding entries to other hosts' endpoints (overlay networks only).
    pub fdb_entries: Option<u64>,
}

/// Addresses of one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct IpamSample {
    /// `ipv4` or `ipv6`.
    pub family: &'static str,
    /// Addresses given to endpoints (this host's and, on global networks, other hosts').
    pub used: f64,
    /// Addresses still free for dynamic allocation (of the ip-range when there is one).
    pub free: f64,
}

/// One endpoint's traffic, from the container's side: what it received (`rx`) and sent
/// (`tx`). Read from the host end of its veth, whose directions are the other way round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointTraffic {
    /// The container's name.
    pub container: String,
    /// The network's name.
    pub network: String,
    /// Bytes received by the container.
    pub rx_bytes: u64,
    /// Packets received by the container.
    pub rx_packets: u64,
    /// Packets to the container dropped on the way.
    pub rx_dropped: u64,
    /// Bytes sent by the container.
    pub tx_bytes: u64,
    /// Packets sent by the container.
    pub tx_packets: u64,
    /// Packets from the container dropped on the way.
    pub tx_dropped: u64,
}

/// One of the firewall's named drop counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropSample {
    /// The counter's name without `drop_` (`isolation`, `spoof_mac`, ...).
    pub reason: String,
    /// Packets dropped.
    pub packets: u64,
    /// Bytes dropped.
    pub bytes: u64,
}

/// Everything a scrape gathers; empty parts (a read that failed, the firewall off,
/// per-endpoint series off) are left out of the exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Every network.
    pub networks: Vec<NetworkSample>,
    /// Containers by state (`running`, ...).
    pub containers: BTreeMap<String, u64>,
    /// Per-endpoint traffic.
    pub endpoints: Vec<EndpointTraffic>,
    /// Firewall drops by reason.
    pub drops: Vec<DropSample>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriverScope {
    driver: String,
    scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetworkDriver {
    network: String,
    driver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NetworkOnly {
    network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pool {
    network: String,
    family: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    container: String,
    network: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

type Gauges<L> = Family<L, Gauge>;
type Counters<L> = Family<L, Counter>;

impl Snapshot {
    pub(crate) fn register(&self, reg: &mut Registry, options: Options) {
        self.register_objects(reg);
        if options.per_endpoint && !self.endpoints.is_empty() {
            self.register_endpoints(reg);
        }
        if !self.drops.is_empty() {
            let packets = Counters::<Reason>::default();
            let bytes = Counters::<Reason>::default();
            for d in &self.drops {
                let l = Reason { reason: d.reason.clone() };
                packets.get_or_create(&l).inc_by(d.packets);
                bytes.get_or_create(&l).inc_by(d.bytes);
            }
            reg.register(
                "firewall_drops",
                "Packets dropped by the firewall, by reason (its named nft counters)",
                packets,
            );
            reg.register(
                "firewall_dropped_bytes",
                "Bytes dropped by the firewall, by reason (its named nft counters)",
                bytes,
            );
        }
    }

    fn register_objects(&self, reg: &mut Registry) {
        let networks = Gauges::<DriverScope>::default();
        let endpoints = Gauges::<NetworkDriver>::default();
        let addresses = Family::<Pool, Gauge<f64, AtomicU64>>::default();
        let fdb = Gauges::<NetworkOnly>::default();
        for n in &self.networks {
            let ds = DriverScope { driver: n.driver.clone(), scope: n.scope.clone() };
            networks.get_or_create(&ds).inc();
            let nd = NetworkDriver { network: n.name.clone(), driver: n.driver.clone() };
            endpoints.get_or_create(&nd).set(gauge(n.endpoints));
            for p in &n.ipam {
                for (state, v) in [("used", p.used), ("free", p.free)] {
                    let l = Pool { network: n.name.clone(), family: p.family, state };
                    addresses.get_or_create(&l).set(v);
                }
            }
            if let Some(e) = n.fdb_entries {
                fdb.get_or_create(&NetworkOnly { network: n.name.clone() }).set(gauge(e));
            }
        }
        let containers = Gauges::<State>::default();
        for s in CONTAINER_STATES {
            let _ = containers.get_or_create(&State { state: s.to_string() });
        }
        for (s, n) in &self.containers {
            containers.get_or_create(&State { state: s.clone() }).set(gauge(*n));
        }
        reg.register("networks", "Networks, by driver and scope", networks);
        reg.register("endpoints", "Endpoints of this host, by network", endpoints);
        reg.register("containers", "Containers, by state", containers);
        reg.register(
            "ipam_addresses",
            "Addresses of each network's pools: used, and free for dynamic allocation",
            addresses,
        );
        if self.networks.iter().any(|n| n.fdb_entries.is_some()) {
            reg.register(
                "overlay_fdb_entries",
                "Forwarding entries to other hosts' endpoints, by overlay network",
                fdb,
            );
        }
    }

    fn register_endpoints(&self, reg: &mut Registry) {
        type Pick = fn(&EndpointTraffic) -> u64;
        let series: [(&str, &str, Pick); 6] = [
            ("endpoint_rx_bytes", "Bytes received by the container on the endpoint", |t| {
                t.rx_bytes
            }),
            ("endpoint_rx_packets", "Packets received by the container on the endpoint", |t| {
                t.rx_packets
            }),
            ("endpoint_rx_dropped", "Packets to the container dropped on the endpoint", |t| {
                t.rx_dropped
            }),
            ("endpoint_tx_bytes", "Bytes sent by the container on the endpoint", |t| t.tx_bytes),
            ("endpoint_tx_packets", "Packets sent by the container on the endpoint", |t| {
                t.tx_packets
            }),
            ("endpoint_tx_dropped", "Packets from the container dropped on the endpoint", |t| {
                t.tx_dropped
            }),
        ];
        for (name, help, pick) in series {
            let family = Counters::<Endpoint>::default();
            for t in &self.endpoints {
                let l = Endpoint { container: t.container.clone(), network: t.network.clone() };
                family.get_or_create(&l).inc_by(pick(t));
            }
            reg.register(name, help, family);
        }
    }
}

/// A count as a gauge's value (saturating: no count comes near `i64::MAX`).
fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
