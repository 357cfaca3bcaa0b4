//! The name table: which names each network answers, and which networks each sandbox sees.
//!
//! Pure data, no I/O. The resolver keeps one table behind an `RwLock`; queries take the read
//! lock for the few hundred nanoseconds it takes to write an answer, updates take the write
//! lock briefly, so an update is visible to the very next query.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::wire::{encode_name, ptr_to_ip, MAX_NAME_LEN};

/// The DNS names and addresses of one endpoint (a container's attachment to one network).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointNames {
    /// Endpoint id, unique within the network; the key for updates and removal.
    pub endpoint_id: String,
    /// Container name (a leading `/`, as Docker stores it, is ignored). Also the PTR target.
    /// Empty for records that only answer names (a service's tasks, `tasks.<service>`):
    /// they never take an address's PTR from the container it belongs to.
    pub container_name: String,
    /// Network-scoped aliases (`--network-alias`); several endpoints may share one.
    pub aliases: Vec<String>,
    /// The 12-character short container id, if it should resolve.
    pub short_id: Option<String>,
    /// The container's hostname, if it should resolve.
    pub hostname: Option<String>,
    /// IPv4 address on this network.
    pub ipv4: Option<Ipv4Addr>,
    /// IPv6 address on this network.
    pub ipv6: Option<Ipv6Addr>,
}

impl EndpointNames {
    /// All names of the endpoint, in Docker's `DNSNames` order: name, aliases, short id,
    /// hostname.
    pub fn dns_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.container_name.trim_start_matches('/'))
            .filter(|n| !n.is_empty())
            .chain(self.aliases.iter().map(String::as_str))
            .chain(self.short_id.as_deref())
            .chain(self.hostname.as_deref())
    }
}

/// Where a sandbox's non-local queries go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// Never forward (internal networks): non-local names are answered SERVFAIL at once.
    None,
    /// Forward from the daemon's namespace to these servers, in order (at most the first
    /// [`crate::Config::max_upstreams`] are tried). The resolver's own addresses are skipped.
    Upstream(Vec<SocketAddr>),
}

/// What one sandbox (container) sees: its networks, in attach order, and its forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxView {
    /// Network ids. A name is looked up in each in turn; the first network that knows the
    /// name answers (as Docker's `Sandbox.ResolveName`).
    pub networks: Vec<String>,
    /// Forwarding policy for names that are not local.
    pub forward: Forward,
}

/// Address family asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A records.
    V4,
    /// AAAA records.
    V6,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    endpoint: Arc<str>,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

impl Entry {
    fn addr(&self, f: Family) -> Option<IpAddr> {
        match f {
            Family::V4 => self.v4.map(IpAddr::V4),
            Family::V6 => self.v6.map(IpAddr::V6),
        }
    }
}

#[derive(Debug, Default)]
struct NetworkRecords {
    /// Network name in wire form, original case, without the root label (PTR suffix).
    name_labels: Box<[u8]>,
    /// Lower-cased wire form with root, for `container.network` lookups.
    name_key: Option<Box<[u8]>>,
    endpoints: HashMap<String, EndpointNames>,
    by_name: HashMap<Box<[u8]>, Vec<Entry>>,
    /// Address -> (endpoint id, container name labels in original case without root).
    by_ip: HashMap<IpAddr, (Arc<str>, Box<[u8]>)>,
}

fn strip_root(wire: Vec<u8>) -> Box<[u8]> {
    let mut w = wire;
    w.pop();
    w.into_boxed_slice()
}

impl NetworkRecords {
    fn set_name(&mut self, name: &str) {
        self.name_labels = encode_name(name, false).map(strip_root).unwrap_or_default();
        self.name_key = encode_name(name, true).map(Vec::into_boxed_slice);
    }

    fn unindex(&mut self, ep: &EndpointNames) {
        for name in ep.dns_names() {
            if let Some(key) = encode_name(name, true) {
                if let Some(v) = self.by_name.get_mut(key.as_slice()) {
                    v.retain(|e| *e.endpoint != *ep.endpoint_id);
                    if v.is_empty() {
                        self.by_name.remove(key.as_slice());
                    }
                }
            }
        }
        for ip in [ep.ipv4.map(IpAddr::V4), ep.ipv6.map(IpAddr::V6)].into_iter().flatten() {
            if self.by_ip.get(&ip).is_some_and(|(id, _)| **id == *ep.endpoint_id) {
                self.by_ip.remove(&ip);
            }
        }
    }

    fn index(&mut self, ep: &EndpointNames) {
        let id: Arc<str> = Arc::from(ep.endpoint_id.as_str());
        for name in ep.dns_names() {
            let Some(key) = encode_name(name, true) else {
                tracing::debug!(name, "skipping name that is not a valid DNS name");
                continue;
            };
            let v = self.by_name.entry(key.into_boxed_slice()).or_default();
            // A name equal to an alias must not list the same endpoint twice.
            if !v.iter().any(|e| e.endpoint == id) {
                v.push(Entry { endpoint: id.clone(), v4: ep.ipv4, v6: ep.ipv6 });
            }
        }
        let name = ep.container_name.trim_start_matches('/');
        if let Some(labels) = encode_name(name, false).filter(|_| !name.is_empty()) {
            let labels = strip_root(labels);
            for ip in [ep.ipv4.map(IpAddr::V4), ep.ipv6.map(IpAddr::V6)].into_iter().flatten() {
                self.by_ip.insert(ip, (id.clone(), labels.clone()));
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct SandboxState {
    pub(crate) networks: Vec<String>,
    /// `None`: never forward.
    pub(crate) upstreams: Option<Arc<[SocketAddr]>>,
    rr: AtomicUsize,
}

/// A local answer for a name: the entries of the first network that knows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit<'a> {
    entries: &'a [Entry],
    rotation: usize,
}

impl<'a> Hit<'a> {
    /// Addresses of one family, rotated by one position per query (round robin).
    pub(crate) fn addrs(self, f: Family) -> impl Iterator<Item = IpAddr> + 'a {
        let n = self.entries.iter().filter(|e| e.addr(f).is_some()).count();
        let start = if n == 0 { 0 } else { self.rotation % n };
        let matching = self.entries.iter().filter_map(move |e| e.addr(f));
        matching.clone().skip(start).chain(matching.take(start))
    }
}

/// Per-network DNS records and per-sandbox views. See the module docs.
#[derive(Debug, Default)]
pub struct NameTable {
    networks: HashMap<String, NetworkRecords>,
    sandboxes: HashMap<String, SandboxState>,
}

impl NameTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates or renames a network. Its name is the PTR suffix (`<container>.<network>`)
    /// and makes `<name>.<network>` resolvable. Until set, the network id is used.
    pub fn set_network(&mut self, network_id: &str, name: &str) {
        self.network_mut(network_id).set_name(name);
    }

    /// Removes a network and all of its endpoints.
    pub fn remove_network(&mut self, network_id: &str) {
        self.networks.remove(network_id);
    }

    fn network_mut(&mut self, network_id: &str) -> &mut NetworkRecords {
        self.networks.entry(network_id.to_owned()).or_insert_with(|| {
            let mut n = NetworkRecords::default();
            n.set_name(network_id);
            n
        })
    }

    /// Adds or replaces an endpoint's records on a network (keyed by `endpoint_id`).
    pub fn set_endpoint(&mut self, network_id: &str, ep: EndpointNames) {
        let net = self.network_mut(network_id);
        if let Some(old) = net.endpoints.remove(&ep.endpoint_id) {
            net.unindex(&old);
        }
        net.index(&ep);
        net.endpoints.insert(ep.endpoint_id.clone(), ep);
    }

    /// Removes an endpoint's records from a network. Returns whether it was there.
    pub fn remove_endpoint(&mut self, network_id: &str, endpoint_id: &str) -> bool {
        let Some(net) = self.networks.get_mut(network_id) else {
            return false;
        };
        match net.endpoints.remove(endpoint_id) {
            Some(old) => {
                net.unindex(&old);
                true
            }
            None => false,
        }
    }

    /// Sets (or replaces) what a sandbox sees.
    pub fn set_sandbox(&mut self, sandbox_id: &str, view: SandboxView) {
        let upstreams = match view.forward {
            Forward::None => None,
            Forward::Upstream(v) => Some(Arc::from(v)),
        };
        let rr = self.sandboxes.get(sandbox_id).map_or(0, |s| s.rr.load(Ordering::Relaxed));
        self.sandboxes.insert(
            sandbox_id.to_owned(),
            SandboxState { networks: view.networks, upstreams, rr: AtomicUsize::new(rr) },
        );
    }

    /// Forgets a sandbox; its sockets then get SERVFAIL for everything.
    pub fn remove_sandbox(&mut self, sandbox_id: &str) {
        self.sandboxes.remove(sandbox_id);
    }

    pub(crate) fn sandbox(&self, sandbox_id: &str) -> Option<&SandboxState> {
        self.sandboxes.get(sandbox_id)
    }

    /// Looks up a lower-cased wire-form name for a sandbox; `None` if not local.
    pub(crate) fn lookup<'a>(&'a self, sb: &SandboxState, key: &[u8]) -> Option<Hit<'a>> {
        let hit = |entries: &'a Vec<Entry>| Hit {
            entries,
            rotation: sb.rr.fetch_add(1, Ordering::Relaxed),
        };
        let nets = || sb.networks.iter().filter_map(|id| self.networks.get(id));
        if let Some(e) = nets().find_map(|n| n.by_name.get(key)) {
            return Some(hit(e));
        }
        // `<name>.<network>`: split at each label boundary and look the prefix up in the
        // sandbox's network of that name.
        let mut pos = 0;
        loop {
            let len = *key.get(pos)? as usize;
            if len == 0 {
                break;
            }
            pos += 1 + len;
            // Stop before the suffix would be the root alone.
            let suffix = key.get(pos..)?;
            if suffix.len() <= 1 {
                break;
            }
            for n in nets().filter(|n| n.name_key.as_deref() == Some(suffix)) {
                let mut buf = [0u8; MAX_NAME_LEN];
                buf[..pos].copy_from_slice(&key[..pos]);
                if let Some(e) = n.by_name.get(&buf[..pos + 1]) {
                    return Some(hit(e));
                }
            }
        }
        None
    }

    /// Finds the PTR target of an address on the sandbox's networks: container-name labels
    /// and network-name labels (both without the root label).
    pub(crate) fn lookup_ptr<'a>(
        &'a self,
        sb: &SandboxState,
        ip: IpAddr,
    ) -> Option<(&'a [u8], &'a [u8])> {
        sb.networks.iter().filter_map(|id| self.networks.get(id)).find_map(|n| {
            let (_, labels) = n.by_ip.get(&ip)?;
            // Keep the whole target within 255 bytes; fall back to the bare name.
            let suffix: &[u8] = if labels.len() + n.name_labels.len() < MAX_NAME_LEN {
                &n.name_labels
            } else {
                &[]
            };
            Some((&labels[..], suffix))
        })
    }

    /// Resolves `name` for a sandbox: `None` if the name is not local (it would be
    /// forwarded), `Some(vec![])` if it is local but has no address of that family (NODATA).
    /// Each call rotates the order (round robin).
    pub fn resolve(&self, sandbox_id: &str, name: &str, family: Family) -> Option<Vec<IpAddr>> {
        let sb = self.sandboxes.get(sandbox_id)?;
        let key = encode_name(name, true)?;
        Some(self.lookup(sb, &key)?.addrs(family).collect())
    }

    /// The PTR answer for an address as seen by a sandbox: `<container>.<network>.`, or
    /// `None` if no network of the sandbox has that address.
    pub fn resolve_ptr(&self, sandbox_id: &str, ip: IpAddr) -> Option<String> {
        let sb = self.sandboxes.get(sandbox_id)?;
        let (a, b) = self.lookup_ptr(sb, ip)?;
        let mut wire = a.to_vec();
        wire.extend_from_slice(b);
        wire.push(0);
        Some(crate::wire::display_wire(&wire))
    }

    /// Like [`Self::resolve_ptr`] but from a reverse name (`4.3.2.1.in-addr.arpa`).
    pub fn resolve_ptr_name(&self, sandbox_id: &str, name: &str) -> Option<String> {
        let key = encode_name(name, true)?;
        self.resolve_ptr(sandbox_id, ptr_to_ip(&key)?)
    }

    /// Number of distinct names on a network (for diagnostics).
    pub fn name_count(&self, network_id: &str) -> usize {
        self.networks.get(network_id).map_or(0, |n| n.by_name.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, name: &str, aliases: &[&str], v4: &str) -> EndpointNames {
        EndpointNames {
            endpoint_id: id.into(),
            container_name: name.into(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            short_id: Some(format!("{id:0<12}")),
            hostname: None,
            ipv4: Some(v4.parse().unwrap()),
            ipv6: None,
        }
    }

    fn sandbox(t: &mut NameTable, id: &str, nets: &[&str]) {
        t.set_sandbox(
            id,
            SandboxView {
                networks: nets.iter().map(|s| s.to_string()).collect(),
                forward: Forward::None,
            },
        );
    }

    fn v4(t: &NameTable, sb: &str, name: &str) -> Option<Vec<String>> {
        t.resolve(sb, name, Family::V4).map(|v| v.into_iter().map(|a| a.to_string()).collect())
    }

    fn table() -> NameTable {
        let mut t = NameTable::new();
        t.set_network("n1", "front");
        t.set_network("n2", "back");
        t.set_endpoint("n1", ep("e1", "/web", &["www"], "10.1.0.2"));
        t.set_endpoint("n2", ep("e2", "db", &[], "10.2.0.2"));
        t.set_endpoint("n2", ep("e3", "web2", &[], "10.2.0.3"));
        sandbox(&mut t, "s-front", &["n1"]);
        sandbox(&mut t, "s-both", &["n1", "n2"]);
        t
    }

    #[test]
    fn scoping_across_networks() {
        let t = table();
        assert_eq!(v4(&t, "s-front", "web").unwrap(), ["10.1.0.2"]);
        assert_eq!(v4(&t, "s-front", "db"), None, "db is on a network s-front is not on");
        assert_eq!(v4(&t, "s-both", "db").unwrap(), ["10.2.0.2"]);
        assert_eq!(v4(&t, "unknown-sandbox", "web"), None);
        assert_eq!(t.resolve_ptr("s-front", "10.2.0.2".parse().unwrap()), None);
    }

    #[test]
    fn names_aliases_short_id_hostname_case_and_dot() {
        let mut t = table();
        let mut e = ep("abcdef123456", "api", &["API-Alias"], "10.1.0.9");
        e.hostname = Some("api-host".into());
        t.set_endpoint("n1", e);
        for n in ["api", "API.", "api-alias", "Api-Alias.", "abcdef123456", "api-host"] {
            assert_eq!(v4(&t, "s-front", n).unwrap(), ["10.1.0.9"], "{n}");
        }
        // `<name>.<network>` form.
        assert_eq!(v4(&t, "s-both", "db.back").unwrap(), ["10.2.0.2"]);
        assert_eq!(v4(&t, "s-both", "DB.Back.").unwrap(), ["10.2.0.2"]);
        assert_eq!(v4(&t, "s-front", "db.back"), None);
        assert_eq!(v4(&t, "s-both", "db.front"), None);
    }

    #[test]
    fn nodata_for_missing_family() {
        let t = table();
        assert_eq!(t.resolve("s-front", "web", Family::V6), Some(vec![]));
    }

    #[test]
    fn shared_alias_round_robin() {
        let mut t = table();
        t.set_endpoint("n1", ep("e4", "web-b", &["www"], "10.1.0.3"));
        t.set_endpoint("n1", ep("e5", "web-c", &["www"], "10.1.0.4"));
        let mut firsts = std::collections::BTreeSet::new();
        for _ in 0..6 {
            let mut got = v4(&t, "s-front", "www").unwrap();
            firsts.insert(got[0].clone());
            got.sort();
            assert_eq!(got, ["10.1.0.2", "10.1.0.3", "10.1.0.4"]);
        }
        assert_eq!(firsts.len(), 3, "each address comes first in turn");
    }

    #[test]
    fn first_network_with_the_name_wins() {
        let mut t = table();
        t.set_endpoint("n2", ep("e9", "web", &[], "10.2.0.9"));
        assert_eq!(v4(&t, "s-both", "web").unwrap(), ["10.1.0.2"]);
        sandbox(&mut t, "s-rev", &["n2", "n1"]);
        assert_eq!(v4(&t, "s-rev", "web").unwrap(), ["10.2.0.9"]);
    }

    #[test]
    fn ptr() {
        let mut t = table();
        assert_eq!(t.resolve_ptr("s-front", "10.1.0.2".parse().unwrap()).unwrap(), "web.front.");
        assert_eq!(t.resolve_ptr_name("s-both", "2.0.2.10.in-addr.arpa.").unwrap(), "db.back.");
        let mut e = ep("e6", "v6", &[], "10.1.0.6");
        e.ipv6 = Some("2001:db8::6".parse().unwrap());
        t.set_endpoint("n1", e);
        assert_eq!(t.resolve_ptr("s-front", "2001:db8::6".parse().unwrap()).unwrap(), "v6.front.");
    }

    #[test]
    fn removal_and_update_leave_no_stale_answers() {
        let mut t = table();
        // Update: new address, alias dropped.
        t.set_endpoint("n1", ep("e1", "web", &[], "10.1.0.20"));
        assert_eq!(v4(&t, "s-front", "web").unwrap(), ["10.1.0.20"]);
        assert_eq!(v4(&t, "s-front", "www"), None);
        assert_eq!(t.resolve_ptr("s-front", "10.1.0.2".parse().unwrap()), None);
        assert!(t.remove_endpoint("n1", "e1"));
        assert!(!t.remove_endpoint("n1", "e1"));
        assert_eq!(v4(&t, "s-front", "web"), None);
        assert_eq!(t.resolve_ptr("s-front", "10.1.0.20".parse().unwrap()), None);
        assert_eq!(t.name_count("n1"), 0);
        // Sandbox leaves a network.
        sandbox(&mut t, "s-both", &["n1"]);
        assert_eq!(v4(&t, "s-both", "db"), None);
        t.remove_sandbox("s-both");
        assert_eq!(v4(&t, "s-both", "web"), None);
        t.remove_network("n2");
        sandbox(&mut t, "s-x", &["n2"]);
        assert_eq!(v4(&t, "s-x", "db"), None);
    }

    #[test]
    fn invalid_names_are_skipped() {
        let mut t = table();
        t.set_endpoint("n1", ep("e7", "bad..name", &[&"x".repeat(64)], "10.1.0.7"));
        assert_eq!(v4(&t, "s-front", "e70000000000").unwrap(), ["10.1.0.7"]);
        assert_eq!(t.resolve_ptr("s-front", "10.1.0.7".parse().unwrap()), None);
    }

    #[test]
    fn name_only_records_never_take_the_ptr() {
        let mut t = table();
        t.set_endpoint("n1", ep("e8", "/task1", &[], "10.1.0.8"));
        let mut svc = ep("task/e8", "", &["tasks.web"], "10.1.0.8");
        svc.short_id = None;
        t.set_endpoint("n1", svc);
        assert_eq!(v4(&t, "s-front", "tasks.web").unwrap(), ["10.1.0.8"]);
        assert_eq!(
            t.resolve_ptr("s-front", "10.1.0.8".parse().unwrap()).as_deref(),
            Some("task1.front.")
        );
        // Removing the record leaves the container's PTR alone.
        assert!(t.remove_endpoint("n1", "task/e8"));
        assert_eq!(v4(&t, "s-front", "tasks.web"), None);
        assert_eq!(
            t.resolve_ptr("s-front", "10.1.0.8".parse().unwrap()).as_deref(),
            Some("task1.front.")
        );
    }
}
