//! What a metrics scrape reads: the objects (counted under the state lock, which is all
//! in memory), then the kernel's values (link statistics, the firewall's named counters)
//! after the lock is released, so a scrape never holds a request up behind a netlink dump
//! or an `nft` process.

use std::collections::HashMap;
use std::sync::Arc;

use cove_metrics::{DropSample, EndpointTraffic, IpamSample, Metrics, NetworkSample, Snapshot};
use tracing::debug;

use crate::state::State;
use crate::Controller;

/// An endpoint whose traffic a scrape reads: its host-side link, container and network.
struct Port {
    host_ifname: String,
    container: String,
    network: String,
}

impl Controller {
    /// The daemon's metrics (the API records its requests here).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The exposition for one scrape (Prometheus' text format).
    pub async fn metrics_text(&self) -> String {
        let snap = self.metrics_snapshot().await;
        self.metrics.render(&snap)
    }

    /// Everything a scrape reads; parts the kernel would not give are left out (and
    /// counted in `cove_metrics_scrape_errors_total`).
    pub async fn metrics_snapshot(&self) -> Snapshot {
        let (mut snap, ports) = {
            let st = self.state.lock().await;
            self.object_samples(&st)
        };
        if self.metrics.options().per_endpoint && !ports.is_empty() {
            match self.kernel.link_stats().await {
                Ok(stats) => snap.endpoints = traffic(&ports, stats),
                Err(e) => {
                    debug!(error = %cove_model::Error::from(e), "metrics: no link statistics");
                    self.metrics.scrape_error("links");
                }
            }
        }
        if self.cfg.firewall {
            snap.drops = self.drop_samples().await;
        }
        snap
    }

    /// Networks, endpoints, IPAM and containers, from the in-memory state.
    fn object_samples(&self, st: &State) -> (Snapshot, Vec<Port>) {
        let mut endpoints: HashMap<&str, u64> = HashMap::new();
        for ep in st.endpoints.values() {
            *endpoints.entry(ep.network_id.as_str()).or_default() += 1;
        }
        let mut peers: HashMap<&str, u64> = HashMap::new();
        for p in st.peers.values() {
            *peers.entry(p.endpoint.endpoint.network_id.as_str()).or_default() += 1;
        }
        let mut networks: Vec<NetworkSample> = st
            .networks
            .values()
            .map(|n| {
                let global = self.is_global(n);
                let ipam = [(false, "ipv4"), (true, "ipv6")]
                    .into_iter()
                    .filter_map(|(v6, family)| {
                        let p = st.pools.get(&(n.id.to_string(), v6))?;
                        Some(IpamSample {
                            family,
                            used: p.allocated_count() as f64,
                            free: p.free_count() as f64,
                        })
                    })
                    .collect();
                NetworkSample {
                    name: n.name.clone(),
                    driver: n.driver.clone(),
                    scope: if global { "global" } else { "local" }.into(),
                    endpoints: endpoints.get(n.id.as_str()).copied().unwrap_or(0),
                    ipam,
                    fdb_entries: global.then(|| peers.get(n.id.as_str()).copied().unwrap_or(0)),
                }
            })
            .collect();
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        let mut snap = Snapshot { networks, ..Snapshot::default() };
        for c in st.containers.values() {
            *snap.containers.entry(c.state.status.as_str().to_string()).or_default() += 1;
        }
        let ports = st
            .endpoints
            .values()
            .filter_map(|ep| {
                Some(Port {
                    host_ifname: ep.host_ifname.clone()?,
                    container: st.containers.get(&ep.container_id)?.name.clone(),
                    network: st.networks.get(&ep.network_id)?.name.clone(),
                })
            })
            .collect();
        (snap, ports)
    }

    /// The firewall's named drop counters (`drop_<reason>` in `inet cove` and `bridge
    /// cove`).
    async fn drop_samples(&self) -> Vec<DropSample> {
        let mut out = Vec::new();
        let tables = [
            format!("inet {}", cove_firewall::names::INET_TABLE),
            format!("bridge {}", cove_firewall::names::BRIDGE_TABLE),
        ];
        for table in &tables {
            match self.firewall.counters(table).await {
                Ok(counters) => out.extend(counters.into_iter().filter_map(|c| {
                    let reason = c.name.strip_prefix("drop_")?.to_string();
                    Some(DropSample { reason, packets: c.packets, bytes: c.bytes })
                })),
                Err(e) => {
                    debug!(error = %cove_model::Error::from(e), "metrics: no firewall counters");
                    self.metrics.scrape_error("nft");
                }
            }
        }
        out
    }
}

/// Each port's traffic from the container's side: the host end's `rx` is what the
/// container sent.
fn traffic(ports: &[Port], stats: Vec<cove_kernel::LinkStats>) -> Vec<EndpointTraffic> {
    let by_name: HashMap<String, cove_kernel::LinkStats> =
        stats.into_iter().map(|s| (s.name.clone(), s)).collect();
    let mut out: Vec<EndpointTraffic> = ports
        .iter()
        .filter_map(|p| {
            let s = by_name.get(&p.host_ifname)?;
            Some(EndpointTraffic {
                container: p.container.clone(),
                network: p.network.clone(),
                rx_bytes: s.tx_bytes,
                rx_packets: s.tx_packets,
                rx_dropped: s.tx_dropped,
                tx_bytes: s.rx_bytes,
                tx_packets: s.rx_packets,
                tx_dropped: s.rx_dropped,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.container, &a.network).cmp(&(&b.container, &b.network)));
    out
}
