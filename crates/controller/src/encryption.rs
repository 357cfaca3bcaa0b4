//! Encrypted overlay networks (`--opt encrypted`, issue 18): this node's tunnel, its key,
//! its tunnel address, its peers, and why encryption cannot be enforced here when it
//! cannot.
//!
//! A node of a cluster with a store (`--cluster-store`) gets, at start: a static key
//! (`<data-root>/wg.key`, 0600), an address from the cluster's tunnel pool (the first node
//! stores the pool in the cluster store; addresses are reserved there by create-if-absent,
//! as IPAM's), the route guard (`blackhole <pool>`, highest metric) and the tunnel
//! (`cvwg0`, through the [`Tunnels`] seam). Its node record then carries its public key,
//! tunnel address and endpoint. Peers are the nodes that have an endpoint on an encrypted
//! network this node has an endpoint on, each allowed its tunnel address only. The firewall
//! guards (`cove_firewall::encryption`) exist whenever the node could have encrypted
//! networks at all.
//!
//! Anything missing (no `/dev/net/tun`, no key, no pool, the firewall off) leaves a
//! reason: encrypted networks are then refused here, by create and by endpoint, naming it;
//! nothing is ever sent in clear instead.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tracing::{debug, error, info, warn};

use cove_firewall::EncryptionGuard;
use cove_model::{Error, NetworkRecord, NodeRecord, Result, TunnelRecord};
use cove_store::{Batch, Table};
use cove_tunnel::{Peer, PrivateKey, PublicKey, TunnelConfig, TunnelStats};

use crate::cluster::ClusterSeam;
use crate::lock;
use crate::seams::Tunnels;
use crate::state::State;
use crate::Controller;

/// The tunnel device's name.
pub const TUNNEL_DEVICE: &str = "cvwg0";
/// The cluster store key (table `cluster`) of the cluster's tunnel pool.
const POOL_KEY: &str = "tunnel-pool";
/// The cluster store keys (table `cluster`) of tunnel address reservations:
/// `tunnel-ips/<address>` = the node's id.
const ADDRESS_PREFIX: &str = "tunnel-ips/";
/// How many addresses a node tries when others take them first.
const ADDRESS_TRIES: usize = 16;

/// The daemon's encryption flags.
#[derive(Debug, Clone)]
pub struct EncryptionSettings {
    /// The UDP port of the tunnel (`--encryption-port`, 51820).
    pub port: u16,
    /// The tunnel pool this node proposes (`--encryption-tunnel-pool`); the first node's is
    /// the cluster's.
    pub pool: IpNet,
    /// How often the node's static key is replaced (`--encryption-key-rotation`; zero:
    /// never by timer).
    pub rotation: Duration,
    /// The cluster store is reached with mutual TLS (it distributes the public keys).
    pub mutual_tls: bool,
}

impl EncryptionSettings {
    /// Docker's and WireGuard's defaults: port 51820, pool 10.255.0.0/16, a new key every
    /// 12 hours.
    pub fn defaults(mutual_tls: bool) -> EncryptionSettings {
        EncryptionSettings {
            port: cove_tunnel::DEFAULT_PORT,
            pool: "10.255.0.0/16".parse().expect("a valid prefix"),
            rotation: Duration::from_secs(12 * 3600),
            mutual_tls,
        }
    }
}

/// The encryption part of a cluster membership: the flags and the tunnel seam.
#[derive(Debug, Clone)]
pub struct EncryptionSeam {
    /// The flags.
    pub settings: EncryptionSettings,
    /// The tunnel.
    pub tunnels: Arc<dyn Tunnels>,
}

/// What the controller knows of its tunnel.
#[derive(Debug, Default)]
pub(crate) struct EncState {
    /// Why encrypted networks cannot be enforced here (None: they can).
    pub(crate) refusal: Option<String>,
    /// The set-up failed on the cluster store (unreachable at start): the cluster loop
    /// tries again.
    retry: bool,
    /// The node's current key.
    key: Option<PrivateKey>,
    /// The cluster's tunnel pool.
    pool: Option<IpNet>,
    /// The node's tunnel record (published with its node record) while the tunnel runs.
    pub(crate) record: Option<TunnelRecord>,
    /// The peers last given to the tunnel, and their nodes' names.
    peers: Vec<Peer>,
    names: BTreeMap<PublicKey, String>,
}

/// One peer of an encrypted network, as `network inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionPeer {
    /// The peer node's hostname.
    pub node: String,
    /// Where its tunnel receives.
    pub endpoint: SocketAddr,
    /// Its public key.
    pub public_key: String,
    /// When the current session was established (`None`: no session yet).
    pub last_handshake: Option<std::time::SystemTime>,
    /// Inner bytes received from it.
    pub rx_bytes: u64,
    /// Inner bytes sent to it.
    pub tx_bytes: u64,
}

/// An encrypted network's encryption, as `network inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionView {
    /// `wireguard`.
    pub protocol: &'static str,
    /// This node's public key.
    pub public_key: Option<String>,
    /// Peers on this network (hosts with endpoints on it, when this host has one too).
    pub peers: Vec<EncryptionPeer>,
    /// Why this host cannot carry the network, if it cannot.
    pub refusal: Option<String>,
}

/// An error with its sources, `a: b: c`.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(&format!(": {c}"));
        cur = c.source();
    }
    s
}

/// The `n`th usable address of `pool` (skipping the network address).
fn nth_address(pool: IpNet, n: u128) -> Option<IpAddr> {
    match pool {
        IpNet::V4(p) => {
            let base = u32::from(p.network()) as u128;
            let size = 1u128 << (32 - p.prefix_len());
            (n + 1 < size.saturating_sub(1))
                .then(|| IpAddr::V4(std::net::Ipv4Addr::from((base + n + 1) as u32)))
        }
        IpNet::V6(p) => {
            let base = u128::from(p.network());
            let bits = 128 - u32::from(p.prefix_len());
            let size = if bits >= 128 { u128::MAX } else { 1u128 << bits };
            (n + 1 < size).then(|| IpAddr::V6(std::net::Ipv6Addr::from(base + n + 1)))
        }
    }
}

impl Controller {
    fn encryption_seam(&self) -> Option<(&ClusterSeam, &EncryptionSeam)> {
        let c = self.cluster()?;
        Some((c, c.encryption.as_ref()?))
    }

    /// This node as the cluster should know it now (with its tunnel, when it has one).
    pub(crate) fn this_node(&self) -> Option<NodeRecord> {
        let c = self.cluster()?;
        Some(NodeRecord { tunnel: lock(&self.enc).record.clone(), ..c.node.clone() })
    }

    /// The tunnel address encrypted networks send from, when encryption can be enforced.
    pub(crate) fn tunnel_ip(&self) -> Option<IpAddr> {
        let e = lock(&self.enc);
        e.refusal.is_none().then(|| e.record.as_ref().map(|r| r.tunnel_ip)).flatten()
    }

    /// Why encrypted networks cannot be enforced here (None: they can).
    pub(crate) fn encryption_refusal(&self) -> Option<String> {
        lock(&self.enc).refusal.clone()
    }

    /// An error of a driver about an encrypted network, with why this host cannot carry it.
    pub(crate) fn explain_encryption(&self, e: Error) -> Error {
        match (e.kind, self.encryption_refusal()) {
            (cove_model::ErrorKind::Unavailable, Some(why))
                if e.message.contains(TUNNEL_DEVICE) =>
            {
                Error::unavailable(format!("{}: {why}", e.message))
            }
            _ => e,
        }
    }

    /// Whether `net` is encrypted.
    pub(crate) fn is_encrypted(&self, net: &NetworkRecord) -> bool {
        self.drivers.of(net).is_ok_and(|d| d.encrypted(&net.config))
    }

    /// Set up this node's end of encryption at start (see the module's doc). Never fails
    /// the daemon: what is missing becomes the reason encrypted networks are refused.
    pub(crate) async fn encryption_start(&self) {
        let refusal = match self.encryption_seam() {
            None if self.cluster().is_some_and(ClusterSeam::is_local) => Some(
                "encrypted overlay networks need a cluster store (--cluster-store): a host on \
                 its own has no other host to encrypt its traffic to"
                    .to_string(),
            ),
            None => Some("this daemon runs without encryption".to_string()),
            Some(_) if !self.cfg.firewall => Some(
                "the firewall is off (--iptables=false), so the guards of encrypted networks \
                 cannot be installed"
                    .to_string(),
            ),
            Some((c, e)) => match self.encryption_setup(c, e).await {
                Ok(()) => None,
                Err((err, retry)) => {
                    lock(&self.enc).retry = retry;
                    Some(err.message)
                }
            },
        };
        if let Some(why) = &refusal {
            if self.encryption_seam().is_some() {
                error!(reason = %why, "encrypted overlay networks cannot be enforced on this host: they are refused here");
            }
        }
        lock(&self.enc).refusal = refusal;
    }

    /// Try the set-up again when it failed on the cluster store; returns whether the tunnel
    /// is up now (the node's record and the host's datapath must follow).
    pub(crate) async fn encryption_retry(&self) -> bool {
        let Some((c, e)) = self.encryption_seam() else { return false };
        if !lock(&self.enc).retry {
            return false;
        }
        match self.encryption_setup(c, e).await {
            Ok(()) => {
                let mut s = lock(&self.enc);
                s.retry = false;
                s.refusal = None;
                info!("encrypted overlay networks can be enforced on this host again");
                true
            }
            Err((err, retry)) => {
                let mut s = lock(&self.enc);
                s.retry = retry;
                s.refusal = Some(err.message);
                false
            }
        }
    }

    /// The set-up; an error says whether trying again later can help (the cluster store
    /// did not answer).
    async fn encryption_setup(
        &self,
        c: &ClusterSeam,
        e: &EncryptionSeam,
    ) -> std::result::Result<(), (Error, bool)> {
        let fatal = |e: Error| (e, false);
        let store = |e: Error| {
            let retry = e.kind == cove_model::ErrorKind::Unavailable;
            (e, retry)
        };
        if !e.settings.mutual_tls && !lock(&self.enc).retry {
            warn!(
                "SECURITY: the cluster store is not reached with mutual TLS (--cluster-store-opt \
                 kv.cacertfile/kv.certfile/kv.keyfile), yet it distributes the nodes' public keys \
                 for encrypted overlay networks: whoever can write to it can make itself a peer"
            );
        }
        let key = self.load_or_create_key().map_err(fatal)?;
        let pool = Self::cluster_pool(c, e).map_err(store)?;
        // The route guard first: from here on, traffic to the pool never follows the
        // default route, whatever happens to the tunnel.
        let guard =
            cove_plan::Op::BlackholeRoute { dst: pool, metric: cove_plan::BLACKHOLE_METRIC };
        self.kernel.apply(&[guard]).await.map_err(|ke| {
            fatal(Error::from(ke).context(format!("install the route guard blackhole {pool}")))
        })?;
        lock(&self.enc).pool = Some(pool);
        let ip = Self::reserve_tunnel_ip(c, pool).map_err(store)?;
        let mtu = c.underlay.mtu.saturating_sub(cove_tunnel::OVERHEAD);
        let listen = SocketAddr::new(c.node.advertise, e.settings.port);
        let config = TunnelConfig {
            netns: None,
            ifname: TUNNEL_DEVICE.into(),
            tunnel_addr: IpNet::new(ip, pool.prefix_len())
                .map_err(|er| fatal(Error::internal(er.to_string())))?,
            mtu,
            listen,
            key: key.clone(),
        };
        e.tunnels.start(config).map_err(|why| {
            fatal(Error::unavailable(format!("start the encrypted tunnel {TUNNEL_DEVICE}: {why}")))
        })?;
        let mut st = lock(&self.enc);
        st.record = Some(TunnelRecord {
            wg_pubkey: key.public_key().to_base64(),
            tunnel_ip: ip,
            wg_endpoint: listen,
        });
        st.key = Some(key);
        st.pool = Some(pool);
        info!(tunnel_ip = %ip, %pool, endpoint = %listen, "encrypted tunnel up");
        Ok(())
    }

    /// Put the route guard back if someone removed it (`ip route replace`: idempotent).
    pub(crate) async fn encryption_route_guard(&self) {
        let Some(pool) = lock(&self.enc).pool else { return };
        let op = cove_plan::Op::BlackholeRoute { dst: pool, metric: cove_plan::BLACKHOLE_METRIC };
        if let Err(e) = self.kernel.apply(&[op]).await {
            warn!(error = %Error::from(e), "could not restore the route guard of encrypted networks");
        }
    }

    fn key_path(&self) -> PathBuf {
        self.cfg.data_root.join("wg.key")
    }

    /// The node's key from `<data-root>/wg.key`, made (0600) if there is none. A file that
    /// others may read is refused, not used.
    fn load_or_create_key(&self) -> Result<PrivateKey> {
        let path = self.key_path();
        if path.exists() {
            return PrivateKey::load(&path)
                .map_err(|e| Error::unavailable(format!("the node's key: {}", chain(&e))));
        }
        std::fs::create_dir_all(&self.cfg.data_root).map_err(|e| {
            Error::unavailable(format!("create {}: {e}", self.cfg.data_root.display()))
        })?;
        let key = PrivateKey::generate()
            .map_err(|e| Error::unavailable(format!("generate the node's key: {}", chain(&e))))?;
        key.save(&path)
            .map_err(|e| Error::unavailable(format!("the node's key: {}", chain(&e))))?;
        info!(path = %path.display(), "generated this node's tunnel key");
        Ok(key)
    }

    /// The cluster's tunnel pool: the one stored, or this node's, stored if none is.
    fn cluster_pool(c: &ClusterSeam, e: &EncryptionSeam) -> Result<IpNet> {
        let ours = e.settings.pool.trunc();
        for _ in 0..3 {
            if let Some(text) = c.store.get::<String>(Table::Cluster, POOL_KEY)? {
                let pool: IpNet = text.parse().map_err(|_| {
                    Error::unavailable(format!(
                        "the cluster's tunnel pool {text:?} is not a prefix"
                    ))
                })?;
                if pool != ours {
                    warn!(cluster = %pool, flag = %ours, "the cluster's tunnel pool differs from --encryption-tunnel-pool; using the cluster's");
                }
                return Ok(pool);
            }
            let mut b = Batch::new();
            b.require_absent(Table::Cluster, POOL_KEY);
            b.put(Table::Cluster, POOL_KEY, &ours.to_string());
            match c.store.commit(b) {
                Ok(_) => return Ok(ours),
                Err(er) if er.kind == cove_model::ErrorKind::Conflict => continue,
                Err(er) => return Err(er.context("store the cluster's tunnel pool")),
            }
        }
        Err(Error::unavailable("the cluster's tunnel pool keeps changing"))
    }

    /// This node's tunnel address: the one it holds in the cluster, or the lowest free one
    /// of `pool`, reserved (create-if-absent) for it.
    fn reserve_tunnel_ip(c: &ClusterSeam, pool: IpNet) -> Result<IpAddr> {
        let me = &c.node.id;
        for _ in 0..ADDRESS_TRIES {
            let held: BTreeMap<IpAddr, String> = c
                .store
                .list::<serde_json::Value>(Table::Cluster)?
                .into_iter()
                .filter_map(|(k, v)| {
                    let ip = k.strip_prefix(ADDRESS_PREFIX)?.parse().ok()?;
                    Some((ip, v.as_str()?.to_string()))
                })
                .collect();
            if let Some((ip, _)) = held.iter().find(|(ip, n)| *n == me && pool.contains(*ip)) {
                return Ok(*ip);
            }
            let free = (0..)
                .map_while(|n| nth_address(pool, n))
                .find(|ip| !held.contains_key(ip))
                .ok_or_else(|| Error::unavailable(format!("the tunnel pool {pool} is full")))?;
            let key = format!("{ADDRESS_PREFIX}{free}");
            let mut b = Batch::new();
            b.require_absent(Table::Cluster, &key);
            b.put(Table::Cluster, &key, me);
            match c.store.commit(b) {
                Ok(_) => return Ok(free),
                Err(er) if er.kind == cove_model::ErrorKind::Conflict => continue,
                Err(er) => return Err(er.context("reserve a tunnel address")),
            }
        }
        Err(Error::unavailable(format!("no tunnel address of {pool} could be reserved")))
    }

    /// The firewall's guards of encrypted networks: on every node that could carry them
    /// (with a tunnel or not: without the device, the guards drop everything of them).
    pub(crate) fn encryption_guard(&self, st: &State) -> Option<EncryptionGuard> {
        let (c, _) = self.encryption_seam()?;
        let mut vnis: Vec<u32> = st
            .networks
            .values()
            .filter(|n| self.is_encrypted(n))
            .filter_map(|n| self.drivers.of(n).ok()?.segment_of(n))
            .collect();
        vnis.sort_unstable();
        Some(EncryptionGuard { device: TUNNEL_DEVICE.into(), port: c.underlay.port, vnis })
    }

    /// Give the tunnel the peers the cluster's records call for: nodes with a tunnel that
    /// have an endpoint on an encrypted network this node has an endpoint on.
    pub(crate) fn encryption_peers(
        &self,
        st: &State,
        nodes: &std::collections::HashMap<String, NodeRecord>,
        endpoints: &[cove_model::ClusterEndpoint],
    ) {
        let Some((c, e)) = self.encryption_seam() else { return };
        if lock(&self.enc).record.is_none() {
            return;
        }
        let mine: BTreeSet<&str> = st
            .endpoints
            .values()
            .filter(|ep| {
                st.networks.get(ep.network_id.as_str()).is_some_and(|n| self.is_encrypted(n))
            })
            .map(|ep| ep.network_id.as_str())
            .collect();
        let wanted: BTreeSet<&str> = endpoints
            .iter()
            .filter(|ep| ep.node != c.node.id && mine.contains(ep.network_id().as_str()))
            .map(|ep| ep.node.as_str())
            .collect();
        let mut peers = vec![];
        let mut names = BTreeMap::new();
        for id in wanted {
            let Some(node) = nodes.get(id) else { continue };
            let Some(t) = &node.tunnel else { continue };
            let Ok(key) = t.wg_pubkey.parse::<PublicKey>() else {
                warn!(node = %node.hostname, "a node's tunnel key is not a key; not peering with it");
                continue;
            };
            peers.push(Peer { public_key: key, endpoint: t.wg_endpoint, allowed_ip: t.tunnel_ip });
            names.insert(key, node.hostname.clone());
        }
        peers.sort_by_key(|p| p.allowed_ip);
        let mut s = lock(&self.enc);
        if s.peers == peers {
            s.names = names;
            return;
        }
        match e.tunnels.set_peers(&peers) {
            Ok(()) => {
                debug!(peers = peers.len(), "tunnel peers updated");
                s.peers = peers;
                s.names = names;
            }
            Err(why) => warn!(error = %why, "could not update the tunnel's peers"),
        }
    }

    /// Replace this node's static key now: a new key (saved 0600 first), the tunnel
    /// switched to it, and the new public key published with the node's record, whence
    /// every peer takes it. Returns the new public key.
    pub async fn node_rotate_key(&self) -> Result<String> {
        let Some((c, e)) = self.encryption_seam() else {
            return Err(Error::unavailable(
                "this node has no encrypted tunnel: it runs without a cluster store (--cluster-store)",
            ));
        };
        if let Some(why) = self.encryption_refusal() {
            return Err(Error::unavailable(format!(
                "this node's encrypted tunnel is not running: {why}"
            )));
        }
        let key = PrivateKey::generate()
            .map_err(|er| Error::unavailable(format!("generate a new key: {er}")))?;
        key.save(&self.key_path())
            .map_err(|er| Error::unavailable(format!("save the new key: {}", chain(&er))))?;
        e.tunnels.set_key(&key);
        let public = key.public_key().to_base64();
        {
            let mut s = lock(&self.enc);
            if let Some(r) = s.record.as_mut() {
                r.wg_pubkey = public.clone();
            }
            s.key = Some(key);
        }
        self.publish_node(c)?;
        info!(public_key = %public, "rotated this node's tunnel key");
        Ok(public)
    }

    /// Write this node's records (lasting and, on its current lease, liveness) again.
    fn publish_node(&self, c: &ClusterSeam) -> Result<()> {
        let node = self.this_node().expect("in a cluster");
        let mut b = Batch::new();
        b.put(Table::NodeStates, &c.node.id, &node);
        match self.node_lease_id() {
            Some(lease) => {
                let live = NodeRecord { lease: Some(lease.0), ..node };
                b.put_with_lease(Table::Nodes, &c.node.id, &live, lease);
            }
            None if c.leases.is_none() => {
                b.put(Table::Nodes, &c.node.id, &node);
            }
            // Registering again (the lease lapsed) publishes the record with the new key.
            None => {}
        }
        c.store.commit(b).map(drop)
    }

    /// Rotate the key every `--encryption-key-rotation`.
    pub(crate) fn spawn_key_rotation(self: &Arc<Self>) {
        let Some((_, e)) = self.encryption_seam() else { return };
        let every = e.settings.rotation;
        if every.is_zero() || self.encryption_refusal().is_some() {
            return;
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(ctl) = weak.upgrade() else { return };
                if let Err(e) = ctl.node_rotate_key().await {
                    warn!(error = %e, "could not rotate this node's tunnel key; trying again later");
                }
            }
        });
    }

    /// `network inspect`'s `Encryption` of an encrypted network.
    pub(crate) fn encryption_view(
        &self,
        st: &State,
        net: &NetworkRecord,
    ) -> Option<EncryptionView> {
        if !self.is_encrypted(net) {
            return None;
        }
        let stats: Option<TunnelStats> =
            self.encryption_seam().and_then(|(_, e)| e.tunnels.stats());
        let on_net: BTreeSet<IpAddr> = st
            .peers
            .values()
            .filter(|p| p.endpoint.endpoint.network_id == net.id)
            .filter_map(|p| p.tunnel)
            .collect();
        let s = lock(&self.enc);
        let peers = stats
            .as_ref()
            .map(|t| {
                t.peers
                    .iter()
                    .filter(|p| on_net.contains(&p.allowed_ip))
                    .map(|p| EncryptionPeer {
                        node: s.names.get(&p.public_key).cloned().unwrap_or_default(),
                        endpoint: p.endpoint,
                        public_key: p.public_key.to_base64(),
                        last_handshake: p.last_handshake,
                        rx_bytes: p.rx_bytes,
                        tx_bytes: p.tx_bytes,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(EncryptionView {
            protocol: "wireguard",
            public_key: s.record.as_ref().map(|r| r.wg_pubkey.clone()),
            peers,
            refusal: s.refusal.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tunnel_addresses_skip_the_network_and_broadcast_addresses() {
        let p: IpNet = "10.255.0.0/30".parse().unwrap();
        let got: Vec<IpAddr> = (0..).map_while(|n| nth_address(p, n)).collect();
        assert_eq!(
            got,
            vec!["10.255.0.1".parse::<IpAddr>().unwrap(), "10.255.0.2".parse().unwrap()]
        );
    }

    #[test]
    fn the_drivers_overhead_is_the_tunnels() {
        assert_eq!(cove_drivers::overlay::TUNNEL_OVERHEAD, cove_tunnel::OVERHEAD);
    }
}
