//! `cove daemon --cluster-store …`: this host's membership of a cluster, from the flags
//! (Docker 20.10's names) to the controller's [`ClusterSeam`].

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;

use cove_controller::ClusterSeam;
use cove_drivers::Underlay;
use cove_model::NodeRecord;

/// The cluster store's key prefix: everything Cove keeps in etcd is under it.
pub const PREFIX: &str = "/cove/v1/";
/// VXLAN's IANA port, Docker's default data-path port.
pub const DEFAULT_DATA_PATH_PORT: u16 = 4789;

/// Cluster flags of `cove daemon`.
#[derive(Debug, Args, Default, Clone)]
pub struct ClusterArgs {
    /// The cluster store: etcd://host:port[,host:port...] (Docker's --cluster-store).
    #[arg(long)]
    pub cluster_store: Option<String>,
    /// Options of the cluster store: kv.cacertfile=, kv.certfile=, kv.keyfile= (repeatable).
    #[arg(long = "cluster-store-opt")]
    pub cluster_store_opt: Vec<String>,
    /// The address (or interface) other hosts reach this one at.
    #[arg(long, alias = "advertise-addr")]
    pub cluster_advertise: Option<String>,
    /// The UDP port of the overlay's tunnels; the same on every host [default: 4789].
    #[arg(long)]
    pub data_path_port: Option<u16>,
    /// The UDP port of the encrypted tunnel (`--opt encrypted` networks) [default: 51820].
    #[arg(long)]
    pub encryption_port: Option<u16>,
    /// The pool of tunnel addresses, one per node; the first node's is the cluster's
    /// [default: 10.255.0.0/16].
    #[arg(long, value_name = "CIDR")]
    pub encryption_tunnel_pool: Option<String>,
    /// How often the node's tunnel key is replaced: `12h`, `30m`, `90s`; `0` never
    /// [default: 12h].
    #[arg(long, value_name = "DURATION")]
    pub encryption_key_rotation: Option<String>,
}

/// `--encryption-key-rotation`: a number with `s`, `m`, `h` or `d` (seconds without one).
fn parse_rotation(v: &str) -> anyhow::Result<std::time::Duration> {
    let v = v.trim();
    let (num, unit) = v.find(|c: char| !c.is_ascii_digit()).map_or((v, ""), |i| v.split_at(i));
    let n: u64 = num.parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid --encryption-key-rotation {v:?}: expected a duration such as 12h, 30m or 90s"
        )
    })?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("invalid --encryption-key-rotation {v:?}: the unit must be s, m, h or d"),
    };
    if secs != 0 && secs < 10 {
        bail!("invalid --encryption-key-rotation {v:?}: at least 10s (or 0 for never)");
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// The encryption flags, for a node of a cluster with a store.
fn encryption(args: &ClusterArgs) -> anyhow::Result<cove_controller::EncryptionSettings> {
    let opt = |k: &str| args.cluster_store_opt.iter().any(|o| o.starts_with(&format!("{k}=")));
    let mut s = cove_controller::EncryptionSettings::defaults(
        opt("kv.cacertfile") && opt("kv.certfile") && opt("kv.keyfile"),
    );
    if let Some(p) = args.encryption_port {
        if p == 0 {
            bail!("invalid --encryption-port 0");
        }
        s.port = p;
    }
    if let Some(pool) = &args.encryption_tunnel_pool {
        let net: ipnet::IpNet = pool.parse().map_err(|_| {
            anyhow::anyhow!("invalid --encryption-tunnel-pool {pool:?}: expected a prefix such as 10.255.0.0/16")
        })?;
        let host_bits = if net.addr().is_ipv4() { 32 } else { 128 } - u32::from(net.prefix_len());
        if host_bits < 2 {
            bail!("invalid --encryption-tunnel-pool {pool}: too small for even two nodes");
        }
        s.pool = net.trunc();
    }
    if let Some(r) = &args.encryption_key_rotation {
        s.rotation = parse_rotation(r)?;
    }
    Ok(s)
}

/// The interface holding `addr`, or `addr` of the interface named so, and its MTU.
fn resolve_advertise(spec: &str) -> anyhow::Result<(IpAddr, u32)> {
    // Docker accepts `addr:port` or `iface:port`; the port is the engine's, not ours.
    let spec = match spec.parse::<IpAddr>() {
        Ok(_) => spec,
        Err(_) => spec.rsplit_once(':').map_or(spec, |(h, _)| h),
    };
    let want: Option<IpAddr> = spec.parse().ok();
    let addrs = nix::ifaddrs::getifaddrs().context("list the host's addresses")?;
    for ifa in addrs {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        let matches = match want {
            Some(w) => w == ip,
            None => ifa.interface_name == spec && ip.is_ipv4(),
        };
        if matches {
            let mtu = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", ifa.interface_name))
                .ok()
                .and_then(|m| m.trim().parse().ok())
                .unwrap_or(1500);
            return Ok((ip, mtu));
        }
    }
    bail!("--cluster-advertise {spec}: no interface of this host has that address or name")
}

/// This host's id in the cluster, kept in the data root so it survives restarts.
fn node_id(data_root: &Path) -> anyhow::Result<String> {
    let path = data_root.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    std::fs::create_dir_all(data_root)?;
    let id = cove_model::new_id();
    std::fs::write(&path, &id).with_context(|| format!("write {}", path.display()))?;
    Ok(id)
}

/// This host as a node: its kept id, its hostname (`fallback` when it has none) and the
/// address the others reach it at. Labels and the tunnel come later.
fn this_node(data_root: &Path, advertise: IpAddr, fallback: &str) -> anyhow::Result<NodeRecord> {
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| fallback.to_string());
    Ok(NodeRecord {
        id: node_id(data_root)?,
        hostname,
        advertise,
        lease: None,
        labels: Default::default(),
        tunnel: None,
    })
}

/// The cluster membership the flags describe, if any.
pub fn seam(args: &ClusterArgs, data_root: &Path) -> anyhow::Result<Option<ClusterSeam>> {
    let Some(url) = &args.cluster_store else {
        if args.cluster_advertise.is_some() {
            bail!("--cluster-advertise needs --cluster-store");
        }
        return local_seam(data_root).map(Some);
    };
    let Some(advertise) = &args.cluster_advertise else {
        bail!(
            "--cluster-store needs --cluster-advertise (the address other hosts reach this one at)"
        );
    };
    let config = cove_etcd::EtcdConfig::from_flags(url, &args.cluster_store_opt)
        .map_err(|e| anyhow::anyhow!("--cluster-store {url}: {}", e.0))?
        .with_prefix(PREFIX);
    // A TLS file that cannot work stops the daemon here, named ("cluster store etcd://…:
    // kv.cacertfile=/path: cannot read it: …"); a store that is down or refuses this host
    // does not (requests fail, naming why).
    let store =
        Arc::new(cove_etcd::EtcdStore::connect(config).map_err(|e| anyhow::anyhow!("{}", e.0))?);
    let settings = encryption(args)?;
    let (addr, mtu) = resolve_advertise(advertise)?;
    Ok(Some(ClusterSeam {
        store: cove_store::Records::new(store.clone()),
        url: store.url().to_string(),
        leases: Some(store),
        node: this_node(data_root, addr, &addr.to_string())?,
        underlay: Underlay {
            advertise: addr,
            mtu,
            port: args.data_path_port.unwrap_or(DEFAULT_DATA_PATH_PORT),
            tunnel: None,
        },
        // Every node of a cluster with a store has a tunnel (started with the daemon; see
        // docs/adr/0021-encrypted-overlays.md).
        encryption: Some(cove_controller::EncryptionSeam {
            settings,
            tunnels: Arc::new(cove_controller::RealTunnels::default()),
        }),
    }))
}

/// A single host's own cluster of one, as a one-node swarm: its records in a store of
/// its own beside the host's (`<data-root>/cluster.redb`), no leases (the one node is
/// always up and always the leader), and loopback as the underlay (nothing is ever sent
/// to another host).
fn local_seam(data_root: &Path) -> anyhow::Result<ClusterSeam> {
    std::fs::create_dir_all(data_root)
        .with_context(|| format!("create {}", data_root.display()))?;
    let path = data_root.join("cluster.redb");
    let store = cove_store::Records::open(&path)
        .map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
    let addr: IpAddr = std::net::Ipv4Addr::LOCALHOST.into();
    Ok(ClusterSeam {
        store,
        url: String::new(),
        leases: None,
        node: this_node(data_root, addr, "localhost")?,
        underlay: Underlay {
            advertise: addr,
            mtu: 1500,
            port: DEFAULT_DATA_PATH_PORT,
            tunnel: None,
        },
        encryption: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_must_come_together_and_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let local = seam(&ClusterArgs::default(), dir.path()).unwrap().unwrap();
        assert!(local.is_local() && local.leases.is_none());
        let only_store = ClusterArgs {
            cluster_store: Some("etcd://203.0.113.2:2379".into()),
            ..Default::default()
        };
        let e = seam(&only_store, dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("needs --cluster-advertise"), "{e:#}");
        let only_adv = ClusterArgs { cluster_advertise: Some("lo".into()), ..Default::default() };
        assert!(format!("{:#}", seam(&only_adv, dir.path()).unwrap_err())
            .contains("needs --cluster-store"));
        let bad = ClusterArgs {
            cluster_store: Some("consul://x:1".into()),
            cluster_advertise: Some("127.0.0.1".into()),
            ..Default::default()
        };
        assert!(seam(&bad, dir.path()).is_err());
        let nowhere = ClusterArgs {
            cluster_store: Some("etcd://203.0.113.2:2379".into()),
            cluster_advertise: Some("198.51.100.254".into()),
            ..Default::default()
        };
        let e = seam(&nowhere, dir.path()).unwrap_err();
        assert!(format!("{e:#}").contains("no interface of this host"), "{e:#}");
    }

    #[test]
    fn encryption_flags_are_checked() {
        let a = ClusterArgs::default();
        let s = encryption(&a).unwrap();
        assert_eq!((s.port, s.pool.to_string()), (51820, "10.255.0.0/16".to_string()));
        assert_eq!(s.rotation, std::time::Duration::from_secs(12 * 3600));
        assert!(!s.mutual_tls);
        let tls = ClusterArgs {
            cluster_store_opt: vec![
                "kv.cacertfile=/a".into(),
                "kv.certfile=/b".into(),
                "kv.keyfile=/c".into(),
            ],
            encryption_key_rotation: Some("30m".into()),
            encryption_tunnel_pool: Some("10.254.1.7/24".into()),
            ..Default::default()
        };
        let s = encryption(&tls).unwrap();
        assert!(s.mutual_tls);
        assert_eq!(s.rotation, std::time::Duration::from_secs(1800));
        assert_eq!(s.pool.to_string(), "10.254.1.0/24");
        for bad in [
            ClusterArgs { encryption_key_rotation: Some("1w".into()), ..Default::default() },
            ClusterArgs { encryption_key_rotation: Some("5s".into()), ..Default::default() },
            ClusterArgs {
                encryption_tunnel_pool: Some("10.0.0.1/32".into()),
                ..Default::default()
            },
            ClusterArgs { encryption_tunnel_pool: Some("nope".into()), ..Default::default() },
            ClusterArgs { encryption_port: Some(0), ..Default::default() },
        ] {
            let e = format!("{:#}", encryption(&bad).unwrap_err());
            assert!(e.contains("--encryption-"), "{e}");
        }
    }

    #[test]
    fn the_node_id_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = node_id(dir.path()).unwrap();
        assert_eq!(node_id(dir.path()).unwrap(), a);
        assert_eq!(a.len(), 64);
    }
}
