//! The cluster store as configured: Docker's `--cluster-store etcd://host:port[,host:port...]`
//! and `--cluster-store-opt kv.cacertfile=... kv.certfile=... kv.keyfile=...`, parsed once
//! into [`EtcdConfig`].

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// etcd's default client port, used when the URL names none.
pub const DEFAULT_PORT: u16 = 2379;

/// A configuration that cannot work, with a message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// One etcd member's client address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// A host name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The client port.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `etcd://host:port[,host:port...]`: the members of one etcd cluster. Shown as parsed
/// (ports filled in), which is how error messages name the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    endpoints: Vec<Endpoint>,
}

impl ClusterUrl {
    /// The members, in the order given.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }
    /// The gRPC URLs of the members: `http://host:port`, or `https://` with TLS.
    pub fn grpc_urls(&self, tls: bool) -> Vec<String> {
        let scheme = if tls { "https" } else { "http" };
        self.endpoints.iter().map(|e| format!("{scheme}://{e}")).collect()
    }
}

impl fmt::Display for ClusterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("etcd://")?;
        for (i, e) in self.endpoints.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl FromStr for ClusterUrl {
    type Err = ConfigError;

    fn from_str(url: &str) -> Result<Self, ConfigError> {
        let bad = |why: String| ConfigError(format!("cluster store {url:?}: {why}"));
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad("not a URL (expected etcd://host:port[,host:port...])".into()));
        };
        if scheme != "etcd" {
            return Err(bad(format!("unsupported scheme {scheme:?} (only etcd:// is supported)")));
        }
        if let Some(c) = rest.chars().find(|c| matches!(c, '?' | '#' | '@')) {
            return Err(bad(format!("unexpected {c:?}: only host:port pairs may follow etcd://")));
        }
        // A trailing slash is harmless; a key path is not supported (keys live under the
        // store's prefix).
        let hosts = rest.strip_suffix('/').unwrap_or(rest);
        if let Some(at) = hosts.find('/') {
            return Err(bad(format!(
                "a key path ({:?}) is not supported; Cove's keys live under its own prefix",
                &hosts[at..]
            )));
        }
        if hosts.is_empty() {
            return Err(bad("no endpoint".into()));
        }
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for part in hosts.split(',') {
            let e = parse_endpoint(part).map_err(&bad)?;
            if endpoints.contains(&e) {
                return Err(bad(format!("endpoint {e} is listed twice")));
            }
            endpoints.push(e);
        }
        Ok(ClusterUrl { endpoints })
    }
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    if s.is_empty() {
        return Err("empty endpoint (two commas, or a comma at an end)".into());
    }
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return Err(format!("endpoint {s:?}: missing ']' after an IPv6 address"));
        };
        if addr.parse::<Ipv6Addr>().is_err() {
            return Err(format!("endpoint {s:?}: {addr:?} is not an IPv6 address"));
        }
        match after {
            "" => (addr, None),
            _ => match after.strip_prefix(':') {
                Some(p) => (addr, Some(p)),
                None => return Err(format!("endpoint {s:?}: expected ':port' after ']'")),
            },
        }
    } else {
        match s.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(format!("endpoint {s:?}: an IPv6 address needs brackets ([::1]:2379)"))
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(format!("endpoint {s:?}: empty host"));
    }
    let hostname_ok = |h: &str| {
        h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    };
    if !hostname_ok(host) {
        return Err(format!("endpoint {s:?}: {host:?} is not a host name or IP address"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("endpoint {s:?}: bad port {p:?} (1-65535)")),
            Ok(n) => n,
        },
    };
    Ok(Endpoint { host: host.to_string(), port })
}

/// Files for mutual TLS to etcd (Docker's `kv.*` cluster store options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed etcd's server certificate (`kv.cacertfile`).
    pub ca: PathBuf,
    /// This client's certificate and key (`kv.certfile`, `kv.keyfile`), for etcd's
    /// `--client-cert-auth`.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Option names Docker's `--cluster-store-opt` used, which Cove accepts.
pub const OPT_CACERT: &str = "kv.cacertfile";
/// See [`OPT_CACERT`].
pub const OPT_CERT: &str = "kv.certfile";
/// See [`OPT_CACERT`].
pub const OPT_KEY: &str = "kv.keyfile";

impl TlsFiles {
    /// The TLS files from `key=value` options, `None` when none is given.
    pub fn from_opts(opts: &[impl AsRef<str>]) -> Result<Option<TlsFiles>, ConfigError> {
        let (mut ca, mut cert, mut key) = (None, None, None);
        for opt in opts {
            let opt = opt.as_ref();
            let bad = |why: &str| ConfigError(format!("cluster store option {opt:?}: {why}"));
            let Some((name, value)) = opt.split_once('=') else {
                return Err(bad("expected key=value"));
            };
            let slot = match name {
                OPT_CACERT => &mut ca,
                OPT_CERT => &mut cert,
                OPT_KEY => &mut key,
                _ => {
                    return Err(bad(&format!(
                        "unknown option (known: {OPT_CACERT}, {OPT_CERT}, {OPT_KEY})"
                    )))
                }
            };
            if value.is_empty() {
                return Err(bad("empty path"));
            }
            if slot.is_some() {
                return Err(bad(&format!("{name} is given twice")));
            }
            *slot = Some(PathBuf::from(value));
        }
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError(format!("cluster store: {OPT_CERT} needs {OPT_KEY}")))
            }
            (None, Some(_)) => {
                return Err(ConfigError(format!("cluster store: {OPT_KEY} needs {OPT_CERT}")))
            }
        };
        match (ca, identity) {
            (Some(ca), identity) => Ok(Some(TlsFiles { ca, identity })),
            (None, None) => Ok(None),
            (None, Some(_)) => Err(ConfigError(format!(
                "cluster store: {OPT_CERT} and {OPT_KEY} need {OPT_CACERT} (the CA that signed \
                 etcd's certificate)"
            ))),
        }
    }
}

/// Everything an [`EtcdStore`](crate::EtcdStore) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// The members.
    pub url: ClusterUrl,
    /// TLS, if the options asked for it.
    pub tls: Option<TlsFiles>,
    /// Prepended to every key (and stripped from keys read), so callers use the same
    /// relative keys as with the local store. Default [`EtcdConfig::DEFAULT_PREFIX`].
    pub prefix: String,
    /// How long one request may take before it fails as unreachable. Default 5 s.
    pub deadline: Duration,
    /// How many changes may queue for one watcher before it is cut off (`Lagged`).
    pub watch_buffer: usize,
    /// HTTP/2 keep-alive (ping interval, answer timeout): a connection that stops answering
    /// is dropped after about their sum, so watches reconnect instead of waiting on a dead
    /// peer. Default 10 s and 5 s.
    pub keepalive: (Duration, Duration),
}

impl EtcdConfig {
    /// Where Cove's keys live in etcd.
    pub const DEFAULT_PREFIX: &'static str = "/cove/v1/";
    /// The default per-request deadline.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
    /// The default watch buffer (as the local stores').
    pub const DEFAULT_WATCH_BUFFER: usize = 1024;

    /// The configuration for `url`, without TLS, with the defaults.
    pub fn new(url: ClusterUrl) -> Self {
        Self {
            url,
            tls: None,
            prefix: Self::DEFAULT_PREFIX.to_string(),
            deadline: Self::DEFAULT_DEADLINE,
            watch_buffer: Self::DEFAULT_WATCH_BUFFER,
            keepalive: (Duration::from_secs(10), Duration::from_secs(5)),
        }
    }

    /// From the daemon's flags: `--cluster-store URL` and each `--cluster-store-opt`.
    pub fn from_flags(url: &str, opts: &[impl AsRef<str>]) -> Result<Self, ConfigError> {
        let mut c = Self::new(url.parse()?);
        c.tls = TlsFiles::from_opts(opts)?;
        Ok(c)
    }

    /// With another key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// With another per-request deadline.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// With another HTTP/2 keep-alive interval and timeout.
    pub fn with_keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive = (interval, timeout);
        self
    }

    /// With another watch buffer (at least 2: one slot is kept for the last event).
    pub fn with_watch_buffer(mut self, n: usize) -> Self {
        self.watch_buffer = n.max(2);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Result<String, String> {
        s.parse::<ClusterUrl>().map(|u| u.to_string()).map_err(|e| e.0)
    }

    #[test]
    fn docker_style_urls_parse() {
        assert_eq!(url("etcd://203.0.113.2:2379"), Ok("etcd://203.0.113.2:2379".into()));
        assert_eq!(
            url("etcd://203.0.113.2:2379,203.0.113.3:2379"),
            Ok("etcd://203.0.113.2:2379,203.0.113.3:2379".into())
        );
        assert_eq!(url("etcd://kv.example:12379/"), Ok("etcd://kv.example:12379".into()));
        assert_eq!(url("etcd://kv"), Ok("etcd://kv:2379".into()));
        assert_eq!(
            url("etcd://[2001:db8::2]:2379,[::1]"),
            Ok("etcd://[2001:db8::2]:2379,[::1]:2379".into())
        );
        let u: ClusterUrl = "etcd://203.0.113.2:2379,[::1]:4001".parse().unwrap();
        assert_eq!(u.grpc_urls(false), ["http://203.0.113.2:2379", "http://[::1]:4001"]);
        assert_eq!(u.grpc_urls(true)[0], "https://203.0.113.2:2379");
        assert_eq!(u.endpoints()[1], Endpoint { host: "::1".into(), port: 4001 });
    }

    #[test]
    fn bad_urls_name_the_problem() {
        let cases = [
            ("203.0.113.2:2379", "not a URL (expected etcd://host:port[,host:port...])"),
            ("consul://kv:8500", "unsupported scheme \"consul\" (only etcd:// is supported)"),
            ("etcd://", "no endpoint"),
            ("etcd://a:2379,,b:2379", "empty endpoint (two commas, or a comma at an end)"),
            ("etcd://a:2379,", "empty endpoint"),
            ("etcd://a:http", "bad port \"http\" (1-65535)"),
            ("etcd://a:0", "bad port \"0\""),
            ("etcd://a:65536", "bad port \"65536\""),
            ("etcd://:2379", "empty host"),
            ("etcd://2001:db8::2:2379", "an IPv6 address needs brackets ([::1]:2379)"),
            ("etcd://[2001:db8::2:2379", "missing ']' after an IPv6 address"),
            ("etcd://[kv]:2379", "\"kv\" is not an IPv6 address"),
            ("etcd://[::1]2379", "expected ':port' after ']'"),
            ("etcd://kv:2379/docker/nodes", "a key path (\"/docker/nodes\") is not supported"),
            ("etcd://user@kv:2379", "unexpected '@'"),
            ("etcd://kv:2379?x=1", "unexpected '?'"),
            ("etcd://k v:2379", "\"k v\" is not a host name or IP address"),
            ("etcd://a:1,a:1", "endpoint a:1 is listed twice"),
        ];
        for (input, want) in cases {
            let got = url(input).unwrap_err();
            assert!(got.starts_with(&format!("cluster store {input:?}: ")), "{got}");
            assert!(got.contains(want), "{input}: {got}");
        }
    }

    #[test]
    fn tls_options_use_dockers_names() {
        assert_eq!(TlsFiles::from_opts(&[] as &[&str]), Ok(None));
        let tls = TlsFiles::from_opts(&["kv.cacertfile=/ca.pem"]).unwrap().unwrap();
        assert_eq!(tls, TlsFiles { ca: "/ca.pem".into(), identity: None });
        let tls = TlsFiles::from_opts(&[
            "kv.certfile=/c.pem",
            "kv.keyfile=/k.pem",
            "kv.cacertfile=/ca.pem",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(tls.identity, Some(("/c.pem".into(), "/k.pem".into())));
        let c = EtcdConfig::from_flags("etcd://kv:2379", &["kv.cacertfile=/ca.pem"]).unwrap();
        assert_eq!(c.url.to_string(), "etcd://kv:2379");
        assert_eq!((c.prefix.as_str(), c.deadline), ("/cove/v1/", Duration::from_secs(5)));
        assert!(c.tls.is_some());
    }

    #[test]
    fn bad_tls_options_name_the_problem() {
        let cases: [(&[&str], &str); 7] = [
            (&["kv.cacertfile"], "cluster store option \"kv.cacertfile\": expected key=value"),
            (
                &["discovery.ttl=20"],
                "cluster store option \"discovery.ttl=20\": unknown option (known: kv.cacertfile, kv.certfile, kv.keyfile)",
            ),
            (&["kv.keyfile="], "cluster store option \"kv.keyfile=\": empty path"),
            (
                &["kv.cacertfile=/a", "kv.cacertfile=/b"],
                "cluster store option \"kv.cacertfile=/b\": kv.cacertfile is given twice",
            ),
            (&["kv.cacertfile=/a", "kv.certfile=/c"], "cluster store: kv.certfile needs kv.keyfile"),
            (&["kv.cacertfile=/a", "kv.keyfile=/k"], "cluster store: kv.keyfile needs kv.certfile"),
            (
                &["kv.certfile=/c", "kv.keyfile=/k"],
                "cluster store: kv.certfile and kv.keyfile need kv.cacertfile (the CA that signed etcd's certificate)",
            ),
        ];
        for (opts, want) in cases {
            assert_eq!(TlsFiles::from_opts(opts).unwrap_err().0, want, "{opts:?}");
        }
        let e = EtcdConfig::from_flags("etcd://kv", &["kv.x=1"]).unwrap_err();
        assert!(e.0.contains("unknown option"), "{e}");
        let e = EtcdConfig::from_flags("redis://kv", &["kv.cacertfile=/a"]).unwrap_err();
        assert!(e.0.contains("unsupported scheme"), "{e}");
    }
}
