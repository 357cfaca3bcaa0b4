//! Embedded DNS wiring: the controller keeps the resolver's name table in step with its
//! state and serves `127.0.0.11:53` inside the sandbox of every running container that is
//! on a user-defined network.
//!
//! The resolver itself (`cove-dns`) runs on the daemon's tokio runtime. Only its two
//! sockets live in the container: they are created by a short-lived thread that entered
//! the sandbox's network namespace, and a socket keeps the namespace it was created in for
//! its whole life, so the daemon can serve it from any thread. Forwarded queries leave from
//! the daemon's own namespace (as Docker's do for the servers of the host's resolv.conf),
//! so host resolvers work even when the container has no route to them, loopback ones such
//! as systemd-resolved's 127.0.0.53 included; for that reason a sandbox whose networks are
//! all `--internal` never forwards (CVE-2024-29018).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use cove_dns::{EndpointNames, Forward, Resolver, SandboxView, ServeHandle, EMBEDDED_DNS_IP};
use cove_model::{ContainerRecord, EndpointRecord, Error, NetworkMode, NetworkRecord, PeerRecord};
use cove_model::{Result, Status};
use tracing::{debug, warn};

use crate::state::State;
use crate::Controller;

/// The resolver and the sockets it serves, one pair per sandbox (keyed by container id).
#[derive(Debug)]
pub(crate) struct Dns {
    resolver: Arc<Resolver>,
    serving: Mutex<HashMap<String, ServeHandle>>,
    /// The services' records registered with the resolver, by (network id, record id).
    services: Mutex<std::collections::BTreeMap<(String, String), EndpointNames>>,
}

impl Dns {
    /// A resolver with Docker's defaults and nothing served.
    pub(crate) fn new(metrics: Arc<cove_metrics::DnsMetrics>) -> Self {
        Dns {
            resolver: Resolver::with_metrics(cove_dns::Config::default(), metrics),
            serving: Default::default(),
            services: Default::default(),
        }
    }

    fn serving(&self) -> std::sync::MutexGuard<'_, HashMap<String, ServeHandle>> {
        self.serving.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether a network has embedded DNS: user-defined networks (not the default network,
/// which has legacy links instead, and not `host`/`none`, which are built-in too).
pub(crate) fn has_dns(net: &NetworkRecord) -> bool {
    !net.builtin
}

/// Whether a container (in its own sandbox) gets the embedded resolver: it is on at least
/// one user-defined network. Decided from the record, so it is known before any endpoint
/// exists (for the `resolv.conf` written at create).
pub(crate) fn dns_enabled(st: &State, c: &ContainerRecord) -> bool {
    c.host_config.network_mode == NetworkMode::Sandbox
        && c.networks.iter().any(|(id, _)| st.networks.get(id).is_some_and(has_dns))
}

/// The pseudo-network holding the `--link` aliases one container sees on user-defined
/// networks (Docker scopes those aliases to the linking container).
fn links_network(container_id: &str) -> String {
    format!("links/{container_id}")
}

/// The DNS names of one endpoint, in Docker's `DNSNames` order.
fn endpoint_names(c: &ContainerRecord, ep: &EndpointRecord) -> EndpointNames {
    EndpointNames {
        endpoint_id: ep.id.to_string(),
        container_name: c.name.clone(),
        aliases: ep.aliases.clone(),
        short_id: Some(cove_model::short_id(&c.id).to_string()),
        hostname: (!c.config.hostname.is_empty()).then(|| c.config.hostname.clone()),
        ipv4: ep.ipv4.map(|a| a.addr()),
        ipv6: ep.ipv6.map(|a| a.addr()),
    }
}

/// Upstreams for a sandbox: its `--dns` servers, else the daemon's resolv.conf servers,
/// loopback ones included: the resolver forwards from the daemon's namespace, where e.g.
/// systemd-resolved's `127.0.0.53` is the host's own resolver, and Docker forwards to the
/// host's servers from the host's namespace too (`HostLoopback`). Never to 127.0.0.11
/// (the resolver drops its own address), never from internal networks (`Forward::None`).
fn upstreams(c: &ContainerRecord) -> Vec<SocketAddr> {
    if c.host_config.dns.is_empty() {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        return cove_dns::upstreams_from_resolv_conf(&host);
    }
    let servers: Vec<SocketAddr> = c
        .host_config
        .dns
        .iter()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        // A loopback `--dns` means a server inside the container's namespace (Docker dials
        // `--dns` servers from there), which the resolver, forwarding from the daemon's
        // namespace, cannot reach; skipped rather than sent to the host's loopback.
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.len() < c.host_config.dns.len() {
        warn!(container = %c.name, "loopback --dns servers are not used by the embedded resolver");
    }
    servers
}

impl Controller {
    /// A network was created (or found at start): its name is the PTR suffix and makes
    /// `<container>.<network>` resolvable.
    pub(crate) fn dns_network_added(&self, net: &NetworkRecord) {
        if has_dns(net) {
            self.dns.resolver.set_network(&net.id, &net.name);
        }
    }

    /// A network was removed.
    pub(crate) fn dns_network_removed(&self, network_id: &str) {
        self.dns.resolver.remove_network(network_id);
    }

    /// What a container's sandbox sees: its user-defined networks in connection order,
    /// then its private `--link` aliases; and where non-local names go.
    fn dns_view(st: &State, c: &ContainerRecord) -> SandboxView {
        let eps = st.endpoints_of_container(&c.id);
        let mut networks: Vec<String> = eps
            .iter()
            .filter(|e| st.networks.get(&e.network_id).is_some_and(has_dns))
            .map(|e| e.network_id.to_string())
            .collect();
        // Every network internal (the default bridge counts too: it has a way out):
        // nothing may leave the host on the container's behalf.
        let internal =
            eps.iter().all(|e| st.networks.get(&e.network_id).is_none_or(|n| n.internal));
        if crate::links::has_links(c) {
            networks.push(links_network(&c.id));
        }
        let forward = if internal { Forward::None } else { Forward::Upstream(upstreams(c)) };
        SandboxView { networks, forward }
    }

    /// Brings the resolver in line with one container's current state: its endpoints'
    /// names, its link aliases, its view, and whether its sandbox is served. Called after
    /// every change of the container's endpoints; idempotent.
    pub(crate) async fn dns_sync(&self, st: &State, c: &ContainerRecord) -> Result<()> {
        let r = &self.dns.resolver;
        // During start the record is not Running yet, but its sandbox already exists.
        let running = c.state.status == Status::Running || !c.state.sandbox_key.is_empty();
        if !dns_enabled(st, c) || !running {
            self.dns_detach(st, c);
            return Ok(());
        }
        for ep in st.endpoints_of_container(&c.id) {
            if st.networks.get(&ep.network_id).is_some_and(has_dns) {
                r.set_endpoint(&ep.network_id, endpoint_names(c, ep));
            }
        }
        self.dns_sync_links(st, c);
        r.set_sandbox(&c.id, Self::dns_view(st, c));
        if self.dns.serving().contains_key(c.id.as_str()) {
            return Ok(());
        }
        let path = if c.state.sandbox_key.is_empty() {
            self.sandbox_path(&c.id)
        } else {
            PathBuf::from(&c.state.sandbox_key)
        };
        self.dns_serve(&c.id, &path).await
    }

    /// A running container connected to or disconnected from a network: its names, view
    /// and serving, its resolv.conf (the embedded resolver comes with the first
    /// user-defined network and goes with the last), and the aliases its linkers see.
    pub(crate) async fn dns_after_change(&self, st: &State, c: &ContainerRecord) {
        if let Err(e) = self.dns_sync(st, c).await {
            warn!(container = %c.name, error = %e, "could not update embedded DNS");
        }
        self.refresh_resolv(st, c);
        self.refresh_linkers(st, &c.id).await;
    }

    /// Serves `127.0.0.11:53` in the sandbox at `path` for container `id`.
    async fn dns_serve(&self, id: &str, path: &Path) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| {
            Error::internal(format!("embedded DNS: cannot serve 127.0.0.11:53 in the sandbox: {e}"))
        };
        let addr = SocketAddr::from((EMBEDDED_DNS_IP, 53));
        let (udp, tcp) = self.kernel.bind_in_netns(path, addr).await.map_err(|e| fail(&e))?;
        let handle = self.dns.resolver.serve(id, udp, tcp).map_err(|e| fail(&e))?;
        debug!(container = %cove_model::short_id(id), "embedded DNS serving");
        self.dns.serving().insert(id.to_string(), handle);
        Ok(())
    }

    /// Forgets a container: stops serving its sandbox (closing the sockets, which would
    /// otherwise keep its namespace and veths alive), drops its view, names and aliases.
    pub(crate) fn dns_detach(&self, st: &State, c: &ContainerRecord) {
        drop(self.dns.serving().remove(c.id.as_str()));
        let r = &self.dns.resolver;
        r.remove_sandbox(&c.id);
        r.remove_network(&links_network(&c.id));
        for ep in st.endpoints_of_container(&c.id) {
            r.remove_endpoint(&ep.network_id, &ep.id);
        }
    }

    /// Another host's container on a global network answers to its names here too.
    pub(crate) fn dns_peer_added(&self, st: &State, p: &PeerRecord) {
        let ep = &p.endpoint.endpoint;
        if !st.networks.get(ep.network_id.as_str()).is_some_and(has_dns) {
            return;
        }
        self.dns.resolver.set_endpoint(
            &ep.network_id,
            EndpointNames {
                endpoint_id: ep.id.to_string(),
                container_name: p.endpoint.container_name.clone(),
                aliases: ep.aliases.clone(),
                short_id: Some(ep.container_id.short().to_string()),
                hostname: None,
                ipv4: ep.ipv4.map(|a| a.addr()),
                ipv6: ep.ipv6.map(|a| a.addr()),
            },
        );
    }

    /// Removes one endpoint's names (the container left that network).
    /// Bring the services' records in line with `want`, keyed by `(network id, record
    /// id)`: a service's VIP (`vip/<service id>`, answering the service's name), its tasks
    /// (`task/<task id>`, answering `tasks.<service>`, and the service's name in dnsrr
    /// mode).
    pub(crate) fn dns_services(
        &self,
        want: &std::collections::BTreeMap<(String, String), EndpointNames>,
    ) {
        let mut have = self.dns.services.lock().unwrap_or_else(PoisonError::into_inner);
        let r = &self.dns.resolver;
        for ((net, id), _) in have.iter().filter(|(k, v)| want.get(*k) != Some(*v)) {
            r.remove_endpoint(net, id);
        }
        for ((net, _), names) in want.iter().filter(|(k, v)| have.get(*k) != Some(*v)) {
            r.set_endpoint(net, names.clone());
        }
        *have = want.clone();
    }

    pub(crate) fn dns_endpoint_removed(&self, ep: &EndpointRecord) {
        self.dns.resolver.remove_endpoint(&ep.network_id, &ep.id);
    }

    /// `--link c:alias` on user-defined networks: `alias` (and `c`) resolve to `c`'s
    /// address on the first user-defined network both share, for the linking container
    /// only. Kept in a pseudo-network listed last in the linking container's view.
    fn dns_sync_links(&self, st: &State, c: &ContainerRecord) {
        let r = &self.dns.resolver;
        let net = links_network(&c.id);
        r.remove_network(&net);
        if !crate::links::has_links(c) {
            return;
        }
        r.set_network(&net, "links");
        let mine = st.endpoints_of_container(&c.id);
        for (name, alias) in crate::links::all_links(c) {
            let Ok(child) = st.container(&name) else { continue };
            let theirs = st.endpoints_of_container(&child.id);
            let shared = mine.iter().find_map(|m| {
                let dns = st.networks.get(&m.network_id).is_some_and(has_dns);
                theirs.iter().find(|t| dns && t.network_id == m.network_id)
            });
            if let Some(ep) = shared {
                r.set_endpoint(
                    &net,
                    EndpointNames {
                        endpoint_id: format!("{}/{alias}", child.id),
                        container_name: alias.clone(),
                        ipv4: ep.ipv4.map(|a| a.addr()),
                        ipv6: ep.ipv6.map(|a| a.addr()),
                        ..Default::default()
                    },
                );
            }
        }
    }

    /// A container's endpoints went away (it stopped): the `--link` aliases that running
    /// linkers had for it go too, so they never answer with a stale address. (Their
    /// `/etc/hosts` keeps the entry until it starts again, as in Docker.)
    pub(crate) fn dns_unlink(&self, st: &State, child: &ContainerRecord) {
        // Called on every stop: skip the (usual) containers without links before parsing.
        for l in st.containers.values().filter(|l| crate::links::has_links(l)) {
            let links = crate::links::all_links(l);
            let linked = links.iter().any(|(n, _)| n == &child.name || n == &child.id);
            if linked && l.state.status == Status::Running && dns_enabled(st, l) {
                self.dns_sync_links(st, l);
            }
        }
    }

    /// After a daemon restart: names of every network and every running container, and
    /// serving again in each adopted sandbox (the old daemon's sockets died with it).
    pub(crate) async fn dns_restore(&self, st: &State) {
        for net in st.networks.values() {
            self.dns_network_added(net);
        }
        for p in st.peers.values() {
            self.dns_peer_added(st, p);
        }
        for c in st.containers.values() {
            if c.state.status != Status::Running {
                continue;
            }
            if let Err(e) = self.dns_sync(st, c).await {
                warn!(container = %c.name, error = %e, "could not restore embedded DNS");
            }
        }
    }
}

/// What the tests can see of the resolver (its fields are private to this module).
#[cfg(test)]
impl Controller {
    /// The IPv4 addresses `name` resolves to in container `id`'s sandbox (None: not local
    /// or no view for that sandbox).
    pub(crate) fn dns_lookup(&self, id: &str, name: &str) -> Option<Vec<IpAddr>> {
        self.dns.resolver.with_table(|t| t.resolve(id, name, cove_dns::Family::V4))
    }

    /// Whether `127.0.0.11:53` is served in container `id`'s sandbox.
    pub(crate) fn dns_served(&self, id: &str) -> bool {
        self.dns.serving().contains_key(id)
    }
}
