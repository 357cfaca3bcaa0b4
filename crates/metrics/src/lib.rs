//! `cove-metrics`: the daemon's Prometheus metrics.
//!
//! Two kinds of values:
//!
//! - **Live counters and histograms** ([`Metrics`], [`DnsMetrics`]): fed on the request
//!   path by the API, the controller and the resolver. Each record is an atomic add (a
//!   histogram takes a short mutex); labels come from bounded sets ([`labels`]).
//! - **Scrape-time values** ([`Snapshot`]): objects, IPAM, per-endpoint traffic and the
//!   firewall's drop counters, gathered by the controller when a scrape comes (the kernel's
//!   values outside its state lock) and rendered with the live ones.
//!
//! [`Metrics::render`] writes Prometheus' text exposition format 0.0.4
//! ([`CONTENT_TYPE`]); names start with `cove_`, are in base units (seconds, bytes), and
//! counters end in `_total`. `docs/api.md` lists every metric.
#![warn(missing_docs)]

pub mod labels;
mod snapshot;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use snapshot::{DropSample, EndpointTraffic, IpamSample, NetworkSample, Snapshot};

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the latency histograms: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

type Latencies<L> = Family<L, Histogram, fn() -> Histogram>;

fn latencies<L: Clone + std::hash::Hash + Eq>() -> Latencies<L> {
    Family::new_with_constructor(latency as fn() -> Histogram)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    write: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

/// What the operator chose (`cove daemon --metrics-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Per-endpoint traffic series (`--metrics-per-endpoint`): one series per endpoint and
    /// counter, the one part whose size grows with the containers.
    pub per_endpoint: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { per_endpoint: true }
    }
}

/// How a firewall write went out: the whole ruleset, or element changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallWrite {
    /// `nft -f -` with the whole ruleset.
    Full,
    /// Set and map element changes.
    Elements,
}

/// Why the whole ruleset was written again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreCause {
    /// Another process changed or deleted Cove's tables (`nft monitor`).
    OutsideChange,
    /// The kernel refused an element change.
    DeltaRefused,
}

/// The daemon's metrics. One per daemon, shared (`Arc`) by the controller, the API and
/// the resolver.
#[derive(Debug)]
pub struct Metrics {
    options: Options,
    api_requests: Family<RequestLabels, Counter>,
    api_seconds: Latencies<RouteLabels>,
    network_actions: Latencies<ActionLabels>,
    firewall_sync: Latencies<WriteLabels>,
    firewall_sync_failures: Counter,
    firewall_restores: Family<CauseLabels, Counter>,
    in_cluster: AtomicBool,
    cluster_store_up: Gauge,
    cluster_requests: Latencies<OpLabels>,
    cluster_watch_resyncs: Counter,
    nodes: Family<NodeLabels, Gauge>,
    reconcile_fixes: Family<KindLabels, Counter>,
    scrape_errors: Family<SourceLabels, Counter>,
    dns: Arc<DnsMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Options::default())
    }
}

impl Metrics {
    /// Metrics with `options`, every counter at zero.
    pub fn new(options: Options) -> Self {
        Metrics {
            options,
            api_requests: Family::default(),
            api_seconds: latencies(),
            network_actions: latencies(),
            firewall_sync: latencies(),
            firewall_sync_failures: Counter::default(),
            firewall_restores: Family::default(),
            in_cluster: AtomicBool::new(false),
            cluster_store_up: Gauge::default(),
            cluster_requests: latencies(),
            cluster_watch_resyncs: Counter::default(),
            nodes: Family::default(),
            reconcile_fixes: Family::default(),
            scrape_errors: Family::default(),
            dns: Arc::new(DnsMetrics::default()),
        }
    }

    /// The options it was made with.
    pub fn options(&self) -> Options {
        self.options
    }

    /// The resolver's share (hand it to `cove_dns::Resolver`).
    pub fn dns(&self) -> &Arc<DnsMetrics> {
        &self.dns
    }

    /// An API request answered: `route` is the matched route's template
    /// (`/networks/{id}`), never the raw path; `unmatched` for anything no route took.
    pub fn api_request(&self, method: &str, route: &str, code: u16, took: Duration) {
        let method = labels::method(method);
        let route = route.to_string();
        self.api_requests
            .get_or_create(&RequestLabels { method, route: route.clone(), code })
            .inc();
        self.api_seconds.get_or_create(&RouteLabels { method, route }).observe(secs(took));
    }

    /// A network operation's duration (`create`, `remove`, `connect`, `disconnect`), as
    /// dockerd's `engine_daemon_network_actions_seconds`.
    pub fn network_action(&self, action: &'static str, took: Duration) {
        self.network_actions.get_or_create(&ActionLabels { action }).observe(secs(took));
    }

    /// Times a network operation until the returned guard is dropped (see
    /// [`Metrics::network_action`]).
    pub fn network_action_timer(&self, action: &'static str) -> ActionTimer<'_> {
        ActionTimer { metrics: self, action, started: std::time::Instant::now() }
    }

    /// A firewall write that went to the kernel (failed or not).
    pub fn firewall_sync(&self, write: FirewallWrite, took: Duration, ok: bool) {
        let write = match write {
            FirewallWrite::Full => "full",
            FirewallWrite::Elements => "elements",
        };
        self.firewall_sync.get_or_create(&WriteLabels { write }).observe(secs(took));
        if !ok {
            self.firewall_sync_failures.inc();
        }
    }

    /// The whole ruleset written again because of `cause`.
    pub fn firewall_restore(&self, cause: RestoreCause) {
        let cause = match cause {
            RestoreCause::OutsideChange => "outside_change",
            RestoreCause::DeltaRefused => "delta_refused",
        };
        self.firewall_restores.get_or_create(&CauseLabels { cause }).inc();
    }

    /// This host is in a cluster: the cluster's series are exposed.
    pub fn set_in_cluster(&self) {
        self.in_cluster.store(true, Ordering::Relaxed);
    }

    /// A call to the cluster store (`op`: `list`, `write`) and whether it worked; the
    /// store counts as up after a call that worked, down after one that failed.
    pub fn cluster_request(&self, op: &'static str, took: Duration, ok: bool) {
        self.cluster_requests.get_or_create(&OpLabels { op }).observe(secs(took));
        self.cluster_store_up.set(i64::from(ok));
    }

    /// The cluster's nodes as last listed: `ready` ones (their daemons keep their leases
    /// alive) and `down` ones.
    pub fn cluster_nodes(&self, ready: u64, down: u64) {
        for (state, n) in [("ready", ready), ("down", down)] {
            self.nodes
                .get_or_create(&NodeLabels { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// The cluster store's watch was started again (lagged, compacted or broken): the
    /// next sync lists everything.
    pub fn cluster_watch_resync(&self) {
        self.cluster_watch_resyncs.inc();
    }

    /// A repair of the host's objects: `kind` is the op's kind (see
    /// [`labels::variant`]).
    pub fn reconcile_fix(&self, kind: String) {
        self.reconcile_fixes.get_or_create(&KindLabels { kind }).inc();
    }

    /// A scrape could not read `source` (`nft`, `links`): its series are missing from
    /// that scrape.
    pub fn scrape_error(&self, source: &'static str) {
        self.scrape_errors.get_or_create(&SourceLabels { source }).inc();
    }

    /// The exposition: the live metrics and `snap`'s, in Prometheus' text format.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut reg = Registry::with_prefix("cove");
        self.register(&mut reg);
        self.dns.register(&mut reg);
        snap.register(&mut reg, self.options);
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg)
            .expect("writing to a String cannot fail");
        out
    }

    fn register(&self, reg: &mut Registry) {
        reg.register(
            "api_requests",
            "API requests answered, by method, route template and status code",
            self.api_requests.clone(),
        );
        reg.register(
            "api_request_seconds",
            "Time from an API request's arrival to its response's headers",
            self.api_seconds.clone(),
        );
        reg.register(
            "network_actions_seconds",
            "Duration of network operations (create, remove, connect, disconnect)",
            self.network_actions.clone(),
        );
        reg.register(
            "firewall_sync_seconds",
            "Duration of firewall writes to the kernel (full ruleset or element changes)",
            self.firewall_sync.clone(),
        );
        reg.register(
            "firewall_sync_failures",
            "Firewall writes the kernel refused",
            self.firewall_sync_failures.clone(),
        );
        reg.register(
            "firewall_restores",
            "Whole-ruleset rewrites after an outside change or a refused element change",
            self.firewall_restores.clone(),
        );
        reg.register(
            "reconcile_fixes",
            "Host network objects found differing from the records and repaired, by op kind",
            self.reconcile_fixes.clone(),
        );
        reg.register(
            "metrics_scrape_errors",
            "Scrapes that could not read a kernel source (nft, links)",
            self.scrape_errors.clone(),
        );
        if self.in_cluster.load(Ordering::Relaxed) {
            reg.register(
                "cluster_store_up",
                "Whether the last call to the cluster store worked (1) or not (0)",
                self.cluster_store_up.clone(),
            );
            reg.register(
                "cluster_store_request_seconds",
                "Duration of calls to the cluster store, by operation",
                self.cluster_requests.clone(),
            );
            reg.register(
                "cluster_watch_resyncs",
                "Times the cluster store's watch was started again",
                self.cluster_watch_resyncs.clone(),
            );
            reg.register(
                "nodes",
                "Nodes of the cluster as last listed, by state (ready, down)",
                self.nodes.clone(),
            );
        }
    }
}

/// Records a network operation's duration when dropped.
#[derive(Debug)]
pub struct ActionTimer<'a> {
    metrics: &'a Metrics,
    action: &'static str,
    started: std::time::Instant,
}

impl Drop for ActionTimer<'_> {
    fn drop(&mut self) {
        self.metrics.network_action(self.action, self.started.elapsed());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueryLabels {
    rcode: &'static str,
    qtype: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// How a forwarded query ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// An upstream's answer was relayed (whatever its rcode).
    Answered,
    /// No upstream gave a usable answer: SERVFAIL.
    Failed,
    /// Too many queries in flight for the sandbox: REFUSED without asking.
    Refused,
}

/// The embedded resolver's metrics.
#[derive(Debug)]
pub struct DnsMetrics {
    queries: Family<QueryLabels, Counter>,
    forwarded: Family<ResultLabels, Counter>,
    upstream: Histogram,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        DnsMetrics { queries: Family::default(), forwarded: Family::default(), upstream: latency() }
    }
}

impl DnsMetrics {
    /// A reply sent with `rcode` to a query of type `qtype` (0 when the query could not be
    /// parsed).
    pub fn query(&self, rcode: u16, qtype: u16) {
        let l = QueryLabels { rcode: labels::rcode(rcode), qtype: labels::qtype(qtype) };
        self.queries.get_or_create(&l).inc();
    }

    /// A query that was not local, and how forwarding it ended.
    pub fn forwarded(&self, how: Forwarded) {
        let result = match how {
            Forwarded::Answered => "answered",
            Forwarded::Failed => "failed",
            Forwarded::Refused => "refused",
        };
        self.forwarded.get_or_create(&ResultLabels { result }).inc();
    }

    /// One exchange with one upstream (answered, failed or timed out).
    pub fn upstream(&self, took: Duration) {
        self.upstream.observe(secs(took));
    }

    fn register(&self, reg: &mut Registry) {
        reg.register(
            "dns_queries",
            "Replies of the embedded resolver, by response code and query type",
            self.queries.clone(),
        );
        reg.register(
            "dns_forwarded",
            "Queries forwarded upstream, by how they ended (answered, failed, refused)",
            self.forwarded.clone(),
        );
        reg.register(
            "dns_upstream_seconds",
            "Duration of one exchange with one upstream server",
            self.upstream.clone(),
        );
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests;
