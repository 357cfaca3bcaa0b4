//! `cove daemon`: configuration, tracing, the API listener and signal handling.

use anyhow::{bail, Context};
use clap::Args;
use ipnet::IpNet;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tracing::info;

use cove_controller::{Controller, ControllerConfig};

/// Flags of `cove daemon`, named as dockerd's where Docker has the same thing.
#[derive(Debug, Args, Default)]
pub struct DaemonArgs {
    /// Daemon socket to listen on (unix only) [default: unix:///run/cove/cove.sock].
    #[arg(short = 'H', long = "host")]
    pub host: Option<String>,
    /// Root of persistent state [default: /var/lib/cove].
    #[arg(long)]
    pub data_root: Option<PathBuf>,
    /// Root of runtime state [default: /run/cove].
    #[arg(long)]
    pub exec_root: Option<PathBuf>,
    /// Default bridge address and prefix, e.g. 172.17.0.1/16.
    #[arg(long)]
    pub bip: Option<String>,
    /// Range for dynamic addresses on the default bridge, e.g. 172.17.1.0/24.
    #[arg(long)]
    pub fixed_cidr: Option<String>,
    /// Pool for new networks' subnets: base=CIDR,size=N (repeatable).
    #[arg(long = "default-address-pool")]
    pub default_address_pool: Vec<String>,
    /// MTU of the default bridge and default for new networks.
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Program the firewall (nftables tables `inet cove`, `bridge cove`): NAT, published
    /// ports, isolation. `--iptables=false` programs none (Docker's flag name).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub iptables: Option<bool>,
    /// The IPv6 half of the firewall (`--ip6tables=false` to disable).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub ip6tables: Option<bool>,
    /// Turn on IP forwarding (net.ipv4.ip_forward) if it is off.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub ip_forward: Option<bool>,
    /// Inter-container communication on the default bridge; `--icc=false` lets containers
    /// there reach each other only through `--link` (the linked container's exposed ports).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub icc: Option<bool>,
    /// Parent cgroup of the containers' cgroups [default: /cove].
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Seconds between two comparisons of the host's network objects with the records
    /// (what was deleted or changed by hand is repaired); 0: only at start [default: 15].
    #[arg(long, value_name = "SECONDS")]
    pub reconcile_interval: Option<u64>,
    /// Seconds a node of the cluster may stay down before its service tasks are
    /// rescheduled on other nodes [default: 10].
    #[arg(long, value_name = "SECONDS")]
    pub node_down_grace: Option<u64>,
    /// Milliseconds a service task is out of the load balancers and DNS before its
    /// container is stopped (new connections stop first) [default: 1000].
    #[arg(long, value_name = "MS")]
    pub task_drain: Option<u64>,
    /// Node labels (`key=value`), matched by service constraints `node.labels.<key>`.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Log level: error, warn, info, debug, trace.
    #[arg(short = 'l', long)]
    pub log_level: Option<String>,
    /// Serve Prometheus metrics at `http://ADDR:PORT/metrics` (dockerd's flag; its port is
    /// 9323). Off unless given; loopback addresses only, unless --metrics-allow-remote.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_addr: Option<String>,
    /// Let --metrics-addr be an address other hosts can reach (the metrics have no
    /// authentication).
    #[arg(long)]
    pub metrics_allow_remote: bool,
    /// Per-endpoint traffic series (one per container and network);
    /// `--metrics-per-endpoint=false` leaves them out to bound the number of series.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub metrics_per_endpoint: Option<bool>,
    /// TOML configuration file with the same keys as the flags (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Membership of a cluster (overlay networks).
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
    /// Crash tests: `trace` logs every step of every operation, `<step>=abort` aborts the
    /// daemon there (comma-separated). For tests only; off by default.
    #[arg(long, env = "COVE_FAILPOINTS", hide = true)]
    pub failpoints: Option<String>,
}

/// The configuration file: the flags' names as keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    host: Option<String>,
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    bip: Option<String>,
    fixed_cidr: Option<String>,
    #[serde(default)]
    default_address_pools: Vec<String>,
    mtu: Option<u32>,
    log_level: Option<String>,
    iptables: Option<bool>,
    ip6tables: Option<bool>,
    ip_forward: Option<bool>,
    icc: Option<bool>,
    cgroup_parent: Option<String>,
    reconcile_interval: Option<u64>,
    metrics_addr: Option<String>,
    metrics_allow_remote: Option<bool>,
    metrics_per_endpoint: Option<bool>,
}

/// Fully resolved daemon settings.
#[derive(Debug)]
struct Settings {
    socket: PathBuf,
    log_level: String,
    /// Where the metrics are served, if anywhere.
    metrics_addr: Option<std::net::SocketAddr>,
    controller: ControllerConfig,
}

/// The path of a `unix://` address.
pub fn unix_path(host: &str) -> anyhow::Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if p.starts_with('/') => Ok(PathBuf::from(p)),
        Some(_) => bail!("invalid host {host}: the socket path must be absolute"),
        None => bail!(
            "invalid host {host}: only unix:// sockets are supported (no TCP, no abstract sockets)"
        ),
    }
}

/// `--metrics-addr`: an IP address and a port; loopback only unless `allow_remote`.
fn parse_metrics_addr(v: &str, allow_remote: bool) -> anyhow::Result<std::net::SocketAddr> {
    let addr: std::net::SocketAddr = v.parse().map_err(|_| {
        anyhow::anyhow!(
            "invalid --metrics-addr {v:?}: expected an IP address and a port, such as 127.0.0.1:9323 or [::1]:9323"
        )
    })?;
    if !addr.ip().is_loopback() && !allow_remote {
        bail!(
            "--metrics-addr {addr} is not a loopback address: the metrics have no authentication, so other hosts may read them only with --metrics-allow-remote"
        );
    }
    Ok(addr)
}

fn parse_cidr(flag: &str, v: &str) -> anyhow::Result<IpNet> {
    v.parse::<IpNet>()
        .with_context(|| format!("invalid {flag} {v:?}: expected an address with a prefix length"))
}

fn resolve(args: DaemonArgs) -> anyhow::Result<Settings> {
    let file: FileConfig = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("read config file {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("invalid config file {}", p.display()))?
        }
        None => FileConfig::default(),
    };
    let host = args.host.or(file.host).unwrap_or_else(|| "unix:///run/cove/cove.sock".into());
    let bip = args.bip.or(file.bip).map(|v| parse_cidr("--bip", &v)).transpose()?;
    let fixed_cidr =
        args.fixed_cidr.or(file.fixed_cidr).map(|v| parse_cidr("--fixed-cidr", &v)).transpose()?;
    if let (Some(b), Some(f)) = (bip, fixed_cidr) {
        if !b.trunc().contains(&f) {
            bail!("invalid --fixed-cidr {f}: it is not inside the --bip subnet {}", b.trunc());
        }
    }
    let pools_src = if args.default_address_pool.is_empty() {
        file.default_address_pools
    } else {
        args.default_address_pool
    };
    let default_address_pools = pools_src
        .iter()
        .map(|p| {
            cove_ipam::parse_pool_spec(p)
                .map_err(|e| anyhow::anyhow!("invalid --default-address-pool {p:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mtu = args.mtu.or(file.mtu).unwrap_or(1500);
    if !(68..=65535).contains(&mtu) {
        bail!("invalid --mtu {mtu}: must be between 68 and 65535");
    }
    let allow_remote = args.metrics_allow_remote || file.metrics_allow_remote.unwrap_or(false);
    let metrics_addr = args
        .metrics_addr
        .or(file.metrics_addr)
        .filter(|a| !a.is_empty())
        .map(|a| parse_metrics_addr(&a, allow_remote))
        .transpose()?;
    let per_endpoint = args.metrics_per_endpoint.or(file.metrics_per_endpoint).unwrap_or(true);
    Ok(Settings {
        socket: unix_path(&host)?,
        log_level: args.log_level.or(file.log_level).unwrap_or_else(|| "info".into()),
        metrics_addr,
        controller: ControllerConfig {
            data_root: args.data_root.or(file.data_root).unwrap_or_else(|| "/var/lib/cove".into()),
            exec_root: args.exec_root.or(file.exec_root).unwrap_or_else(|| "/run/cove".into()),
            bip,
            fixed_cidr,
            default_address_pools,
            mtu,
            firewall: args.iptables.or(file.iptables).unwrap_or(true),
            firewall6: args.ip6tables.or(file.ip6tables).unwrap_or(true),
            ip_forward: args.ip_forward.or(file.ip_forward).unwrap_or(true),
            icc: args.icc.or(file.icc).unwrap_or(true),
            reconcile_interval: std::time::Duration::from_secs(
                args.reconcile_interval.or(file.reconcile_interval).unwrap_or(15),
            ),
            cgroup_parent: args
                .cgroup_parent
                .or(file.cgroup_parent)
                .unwrap_or_else(|| cove_runtime::DEFAULT_CGROUP_PARENT.into()),
            metrics: cove_metrics::Options { per_endpoint },
            node_down_grace: args
                .node_down_grace
                .map_or(cove_controller::NODE_DOWN_GRACE, std::time::Duration::from_secs),
            task_drain: args
                .task_drain
                .map_or(cove_controller::TASK_DRAIN, std::time::Duration::from_millis),
        },
    })
}

fn init_tracing(level: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("COVE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .with_context(|| format!("invalid log level {level:?}"))?;
    // COVE_LOG_SPANS=1: one line per closed span with its busy and idle time (e.g. with
    // COVE_LOG=debug, where each step of a container start takes its time).
    let spans = match std::env::var("COVE_LOG_SPANS").as_deref() {
        Ok("1") => tracing_subscriber::fmt::format::FmtSpan::CLOSE,
        _ => tracing_subscriber::fmt::format::FmtSpan::NONE,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(spans)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

/// Bind the API socket with mode 0660 from the start (umask during bind), refusing to
/// steal a socket another daemon is serving.
fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("another daemon is already listening on {}", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("remove stale socket {}", path.display()))?;
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let listener = tokio::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener.with_context(|| format!("listen on {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// One daemon per network namespace: it owns the bridges, veths and (later) firewall
/// tables there. The lock is an abstract unix socket, which is scoped to the network
/// namespace and released by the kernel when the process dies, even by SIGKILL. (It is
/// never listened on; the API socket is a path socket.)
fn lock_netns() -> anyhow::Result<std::os::unix::net::UnixDatagram> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(b"cove-daemon-lock")?;
    std::os::unix::net::UnixDatagram::bind_addr(&addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!("another cove daemon is already running in this network namespace")
        } else {
            anyhow::anyhow!("take the daemon lock: {e}")
        }
    })
}

/// `--label key=value` flags: this node's labels.
fn node_labels(flags: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    flags
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => anyhow::bail!("--label {l:?}: expected key=value"),
        })
        .collect()
}

/// Run the daemon until SIGTERM/SIGINT. Containers keep running across a daemon restart;
/// the next start reconciles with them.
pub async fn run(args: DaemonArgs) -> anyhow::Result<()> {
    let cluster_args = args.cluster.clone();
    let failpoints = args.failpoints.clone();
    let labels = node_labels(&args.labels)?;
    let settings = resolve(args)?;
    init_tracing(&settings.log_level)?;
    // Both checks come before the controller starts: its reconcile removes kernel objects
    // it does not own, which would wreck another daemon's networks.
    let _netns_lock = lock_netns()?;
    let listener = bind_socket(&settings.socket)?;
    let metrics_listener = match settings.metrics_addr {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen on --metrics-addr {addr}"))?,
        ),
        None => None,
    };
    let mut cluster = crate::cluster::seam(&cluster_args, &settings.controller.data_root)?;
    if let Some(c) = cluster.as_mut() {
        c.node.labels = labels;
    }
    if let Some(spec) = &failpoints {
        let spec: cove_controller::failpoints::FailpointSpec =
            spec.parse().map_err(|e: cove_model::Error| anyhow::anyhow!("--failpoints: {e}"))?;
        cove_controller::failpoints::install(spec);
        tracing::warn!("failpoints are on: this daemon may abort on purpose");
    }
    let ctl = Controller::start_in_cluster(settings.controller, cluster)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let metrics_server = metrics_listener.map(|l| {
        if let Some(addr) = settings.metrics_addr {
            info!(%addr, "serving metrics at http://{addr}/metrics");
        }
        let ctl = ctl.clone();
        tokio::spawn(async move {
            if let Err(e) = cove_api::serve_metrics(l, ctl, std::future::pending()).await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        })
    });
    info!(socket = %settings.socket.display(), "cove daemon ready");
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("signal handler");
        let mut int = signal(SignalKind::interrupt()).expect("signal handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        info!("shutting down");
    };
    cove_api::serve(listener, ctl.clone(), shutdown).await.context("serve API")?;
    if let Some(m) = metrics_server {
        m.abort();
    }
    ctl.shutdown().await;
    let _ = std::fs::remove_file(&settings.socket);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_file_and_pools_parse() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cove.toml");
        std::fs::write(&f, "mtu = 1400\nbip = \"10.99.0.1/24\"\ndefault-address-pools = [\"base=10.200.0.0/16,size=24\"]\n").unwrap();
        let s =
            resolve(DaemonArgs { config: Some(f), mtu: Some(1450), ..Default::default() }).unwrap();
        assert_eq!(s.controller.mtu, 1450);
        assert_eq!(s.controller.bip.unwrap().to_string(), "10.99.0.1/24");
        assert_eq!(s.controller.default_address_pools.len(), 1);
        assert_eq!(s.socket, PathBuf::from("/run/cove/cove.sock"));
    }

    #[test]
    fn bad_config_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cove.toml");
        std::fs::write(&f, "nope = 1\n").unwrap();
        let e = resolve(DaemonArgs { config: Some(f), ..Default::default() }).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
        for args in [
            DaemonArgs { host: Some("tcp://0.0.0.0:2375".into()), ..Default::default() },
            DaemonArgs { bip: Some("nope".into()), ..Default::default() },
            DaemonArgs { mtu: Some(10), ..Default::default() },
            DaemonArgs {
                default_address_pool: vec!["base=10.0.0.0/8".into()],
                ..Default::default()
            },
            DaemonArgs {
                bip: Some("10.1.0.1/24".into()),
                fixed_cidr: Some("10.2.0.0/24".into()),
                ..Default::default()
            },
        ] {
            assert!(resolve(args).is_err());
        }
    }

    #[test]
    fn metrics_flags_are_checked() {
        let metrics = |addr: &str, allow_remote: bool| {
            resolve(DaemonArgs {
                metrics_addr: Some(addr.into()),
                metrics_allow_remote: allow_remote,
                ..Default::default()
            })
            .map(|s| s.metrics_addr)
            .map_err(|e| format!("{e:#}"))
        };
        assert_eq!(metrics("127.0.0.1:9323", false), Ok(Some("127.0.0.1:9323".parse().unwrap())));
        assert_eq!(metrics("[::1]:9323", false), Ok(Some("[::1]:9323".parse().unwrap())));
        let e = metrics("0.0.0.0:9323", false).unwrap_err();
        assert!(
            e.contains("not a loopback address") && e.contains("--metrics-allow-remote"),
            "{e}"
        );
        let e = metrics("192.0.2.1:9323", false).unwrap_err();
        assert!(e.contains("not a loopback address"), "{e}");
        assert_eq!(metrics("0.0.0.0:9323", true), Ok(Some("0.0.0.0:9323".parse().unwrap())));
        for bad in ["9323", "localhost:9323", "127.0.0.1", "127.0.0.1:port", "[::1]"] {
            let e = metrics(bad, false).unwrap_err();
            assert!(
                e.contains("invalid --metrics-addr") && e.contains("127.0.0.1:9323"),
                "{bad}: {e}"
            );
        }
        let s = resolve(DaemonArgs::default()).unwrap();
        assert_eq!(s.metrics_addr, None);
        assert!(s.controller.metrics.per_endpoint);

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("cove.toml");
        std::fs::write(&f, "metrics-addr = \"127.0.0.1:9400\"\nmetrics-per-endpoint = false\n")
            .unwrap();
        let s = resolve(DaemonArgs { config: Some(f.clone()), ..Default::default() }).unwrap();
        assert_eq!(s.metrics_addr, Some("127.0.0.1:9400".parse().unwrap()));
        assert!(!s.controller.metrics.per_endpoint);
        let s = resolve(DaemonArgs {
            config: Some(f),
            metrics_per_endpoint: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert!(s.controller.metrics.per_endpoint, "the flag wins over the file");
    }
}
