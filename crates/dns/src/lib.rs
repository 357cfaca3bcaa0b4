//! `cove-dns`: the embedded DNS resolver containers on user-defined networks reach at
//! `127.0.0.11:53` in their own network namespace.
//!
//! # What it answers
//!
//! - `A`/`AAAA` for container names, network aliases, short ids and hostnames of endpoints on
//!   the networks the querying sandbox is attached to, and `<name>.<network>`. The first
//!   network (in the sandbox's order) that knows a name answers, as Docker does; several
//!   endpoints sharing an alias give all their addresses, rotated per query.
//! - A local name with no address of the asked family, or asked with another type (MX, TXT,
//!   ...), gets NOERROR with no answers (NODATA) and is never forwarded: container names must
//!   not leak upstream or be answered by an upstream (CVE-2025-8283 class). Docker forwards
//!   types other than A/AAAA/MX/PTR/SRV; we deliberately do not.
//! - `PTR` for an address on one of the sandbox's networks: `<container name>.<network name>.`
//!   (as moby's `Network.ResolveIP`: `elem.name + "." + nwName`).
//! - Everything else is forwarded according to the sandbox's [`Forward`] policy, from the
//!   process's own network namespace (the daemon's: the host's), so a loopback upstream
//!   such as systemd-resolved's 127.0.0.53 is the host's, as moby does for the servers of
//!   the host's resolv.conf (`extDNSEntry.HostLoopback`, dialled without entering the
//!   container). Never to the resolver's own address (127.0.0.11, any port). With
//!   [`Forward::None`] (internal networks) nothing is ever sent upstream and the answer is
//!   SERVFAIL at once. That is what Docker's client ends up with too: moby's `serveDNS`
//!   replies SERVFAIL whenever `forwardExtDNS` yields nothing, and for internal networks it
//!   skips host-namespace upstreams (`!proxyDNS && extDNS.HostLoopback`, CVE-2024-29018).
//!
//! # Design
//!
//! - **hickory-proto, not hickory-server.** Each served socket needs its own context (the
//!   sandbox id) looked up at query time; a hand-written tokio loop per socket gets that for
//!   free, costs two tasks per sandbox and no timers when idle. The hot path (client
//!   queries, local answers) is a small allocation-free codec in [`wire`]; every *upstream*
//!   reply, which is untrusted, goes through hickory-proto's full `Message` parser before it
//!   is relayed ([`validate_reply`]).
//! - **UDP loop.** `recvmmsg`/`sendmmsg` (through nix, no unsafe here) move up to 32
//!   datagrams per system call when a client keeps queries in flight; the buffers are per
//!   worker thread, so an idle sandbox holds no buffer memory.
//! - **Upstream sockets.** Each forwarded query uses a fresh socket with a kernel-chosen
//!   ephemeral port, `connect`ed to the upstream, and a random id: 32 bits an off-path
//!   spoofer must guess, the kernel drops datagrams from any other source, no shared id map
//!   to exhaust, and nothing exists while idle. Docker also dials per query. Forwarded
//!   throughput is bounded by that (tens of thousands per second), local names are not.
//!   The receive buffer is the client's limit plus one byte: a longer reply is recognised
//!   by its header and question alone and answered with TC, so memory per query in flight
//!   stays small whatever an upstream sends.
//! - **Bounds.** Per sandbox at most [`Config::max_inflight`] forwarded queries (Docker:
//!   1024); beyond that REFUSED at once (Docker waits up to 4 s for a slot, then REFUSED).
//!   At most [`Config::tcp_max_connections`] TCP connections, each handled in its own task
//!   and closed if a query does not arrive in full within [`Config::tcp_timeout`].
//! - **Name table.** One `RwLock`: queries hold the read lock only while writing the
//!   answer, updates are visible to the very next query.
//!
//! Docker behaviours followed (moby `daemon/libnetwork/resolver.go`): TTL 600, at most 3
//! upstreams, 4 s per exchange, SERVFAIL/REFUSED from an upstream means try the next one,
//! SERVFAIL when none answers, never the resolver's own address as upstream
//! (`filterExtServers`, `TestIntDNSAsExtDNS`), local answers truncated to the client's
//! EDNS size (512 without), unknown PTR names forwarded.

#![forbid(unsafe_code)]

mod forward;
mod names;
mod resolv_conf;
mod tcp;
mod udp;
pub mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use cove_metrics::{DnsMetrics, Forwarded};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use forward::{validate_reply, ReplyError};
pub use names::{EndpointNames, Family, Forward, NameTable, SandboxView};
pub use resolv_conf::upstreams_from_resolv_conf;
pub use tcp::{Frame, Framer};
use wire::{rcode, ParsedQuery, QueryError, Rdata};

/// The address of the embedded resolver inside every container.
pub const EMBEDDED_DNS_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A socket could not be set up for serving.
    #[error("dns socket setup: {0}")]
    Io(#[from] std::io::Error),
}

/// Tunables. `Default` gives Docker-like values.
#[derive(Debug, Clone)]
pub struct Config {
    /// TTL of local answers (Docker: 600 s).
    pub ttl: u32,
    /// Timeout of one attempt with one upstream (Docker's `extIOTimeout`: 4 s).
    pub upstream_timeout: Duration,
    /// How many upstreams are tried per query (Docker's `maxExtDNS`: 3).
    pub max_upstreams: usize,
    /// Forwarded queries in flight per sandbox before REFUSED (Docker: 1024).
    pub max_inflight: usize,
    /// TCP: a query must arrive in full within this time after the previous one (or the
    /// connection's start), and a reply must be written within it; else the connection is
    /// closed.
    pub tcp_timeout: Duration,
    /// Concurrent TCP connections per sandbox; more are closed at once.
    pub tcp_max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ttl: 600,
            upstream_timeout: Duration::from_secs(4),
            max_upstreams: 3,
            max_inflight: 1024,
            tcp_timeout: Duration::from_secs(8),
            tcp_max_connections: 128,
        }
    }
}

/// Counters, for tests and metrics.
#[derive(Debug, Default)]
struct Stats {
    queries: AtomicU64,
    dropped: AtomicU64,
    forwarded: AtomicU64,
    refused: AtomicU64,
    tcp_reads: AtomicU64,
    tcp_rejected: AtomicU64,
}

/// A snapshot of the resolver's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Messages handed to [`Resolver::respond`].
    pub queries: u64,
    /// Messages dropped without a reply (responses, runts).
    pub dropped: u64,
    /// Queries forwarded upstream.
    pub forwarded: u64,
    /// Queries refused because too many were in flight.
    pub refused: u64,
    /// Read calls made on TCP connections (to detect busy loops).
    pub tcp_reads: u64,
    /// TCP connections closed at once because of the per-sandbox cap.
    pub tcp_rejected: u64,
}

/// Transport a query arrived on (decides the reply size limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: replies are limited to the client's EDNS size (512 without EDNS).
    Udp,
    /// TCP: replies up to 65535 bytes.
    Tcp,
}

/// What [`Resolver::respond`] decided.
#[derive(Debug)]
pub enum Outcome {
    /// The reply is in the output buffer.
    Reply,
    /// Send nothing.
    Drop,
    /// The name is not local: forward to upstreams.
    Forward(Box<ForwardPlan>),
}

/// A query to forward, with the upstreams left after removing the resolver's own addresses.
#[derive(Debug)]
pub struct ForwardPlan {
    upstreams: Vec<SocketAddr>,
    query: ParsedQuery,
}

impl ForwardPlan {
    /// Upstreams to try, in order.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }
}

/// The embedded resolver: a name table plus the sockets serving it. Share it as `Arc`.
#[derive(Debug)]
pub struct Resolver {
    table: RwLock<NameTable>,
    config: Config,
    /// Addresses of served sockets, with how many sockets use each (all sandboxes share
    /// 127.0.0.11:53, each in its own namespace).
    own_addrs: RwLock<HashMap<SocketAddr, usize>>,
    stats: Stats,
    /// Replies by rcode and type, forwarding outcomes, upstream latency (Prometheus).
    metrics: Arc<DnsMetrics>,
}

impl Resolver {
    /// A resolver with an empty table.
    pub fn new(config: Config) -> Arc<Self> {
        Self::with_metrics(config, Arc::default())
    }

    /// A resolver with an empty table that records into `metrics`.
    pub fn with_metrics(config: Config, metrics: Arc<DnsMetrics>) -> Arc<Self> {
        Arc::new(Resolver {
            table: RwLock::new(NameTable::new()),
            config,
            own_addrs: RwLock::new(HashMap::new()),
            stats: Stats::default(),
            metrics,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn write_table(&self) -> std::sync::RwLockWriteGuard<'_, NameTable> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` with read access to the table.
    pub fn with_table<R>(&self, f: impl FnOnce(&NameTable) -> R) -> R {
        f(&self.table.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// See [`NameTable::set_network`].
    pub fn set_network(&self, network_id: &str, name: &str) {
        self.write_table().set_network(network_id, name);
    }

    /// See [`NameTable::remove_network`].
    pub fn remove_network(&self, network_id: &str) {
        self.write_table().remove_network(network_id);
    }

    /// See [`NameTable::set_endpoint`].
    pub fn set_endpoint(&self, network_id: &str, ep: EndpointNames) {
        self.write_table().set_endpoint(network_id, ep);
    }

    /// See [`NameTable::remove_endpoint`].
    pub fn remove_endpoint(&self, network_id: &str, endpoint_id: &str) -> bool {
        self.write_table().remove_endpoint(network_id, endpoint_id)
    }

    /// See [`NameTable::set_sandbox`].
    pub fn set_sandbox(&self, sandbox_id: &str, view: SandboxView) {
        self.write_table().set_sandbox(sandbox_id, view);
    }

    /// See [`NameTable::remove_sandbox`].
    pub fn remove_sandbox(&self, sandbox_id: &str) {
        self.write_table().remove_sandbox(sandbox_id);
    }

    /// Current counters.
    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.stats;
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            queries: l(&s.queries),
            dropped: l(&s.dropped),
            forwarded: l(&s.forwarded),
            refused: l(&s.refused),
            tcp_reads: l(&s.tcp_reads),
            tcp_rejected: l(&s.tcp_rejected),
        }
    }

    /// Whether `addr` is this resolver: 127.0.0.11 on any port, or a served socket.
    fn is_self(&self, addr: &SocketAddr) -> bool {
        if addr.ip() == IpAddr::V4(EMBEDDED_DNS_IP) {
            return true;
        }
        let own = self.own_addrs.read().unwrap_or_else(PoisonError::into_inner);
        // A socket bound to the unspecified address also answers on loopback.
        own.contains_key(addr)
            || (addr.ip().is_loopback()
                && own.keys().any(|o| o.ip().is_unspecified() && o.port() == addr.port()))
    }

    /// Answers one query for a sandbox. Local answers and errors are written to `out`
    /// (cleared first); non-local names yield [`Outcome::Forward`]. Never panics, whatever
    /// the input; the reply never exceeds the client's limit for `transport`.
    pub fn respond(
        &self,
        sandbox_id: &str,
        query: &[u8],
        transport: Transport,
        out: &mut Vec<u8>,
    ) -> Outcome {
        self.stats.queries.fetch_add(1, Ordering::Relaxed);
        out.clear();
        let q = match wire::parse_query(query) {
            Ok(q) => q,
            Err(QueryError::Drop) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                return Outcome::Drop;
            }
            Err(QueryError::FormErr { id, opcode }) => {
                wire::write_header_error(out, id, opcode, rcode::FORMERR);
                self.metrics.query(rcode::FORMERR.into(), 0);
                return Outcome::Reply;
            }
            Err(QueryError::NotImp { id, opcode }) => {
                wire::write_header_error(out, id, opcode, rcode::NOTIMP);
                self.metrics.query(rcode::NOTIMP.into(), 0);
                return Outcome::Reply;
            }
        };
        if q.edns.is_some_and(|e| e.version != 0) {
            // RFC 6891 §6.1.3: BADVERS (extended rcode 16).
            wire::write_rcode(out, &q, query, 16, false);
            self.metrics.query(16, q.qtype);
            return Outcome::Reply;
        }
        let max = match transport {
            Transport::Udp => q.max_udp_size(),
            Transport::Tcp => u16::MAX as usize,
        };
        let table = self.table.read().unwrap_or_else(PoisonError::into_inner);
        let Some(sb) = table.sandbox(sandbox_id) else {
            // Unknown context: answer nothing, forward nothing.
            drop(table);
            wire::write_rcode(out, &q, query, rcode::SERVFAIL as u16, false);
            self.metrics.query(rcode::SERVFAIL.into(), q.qtype);
            return Outcome::Reply;
        };
        let key = q.key.as_bytes();
        if q.qclass == wire::CLASS_IN {
            if q.qtype == wire::TYPE_PTR {
                if let Some((a, b)) = wire::ptr_to_ip(key).and_then(|ip| table.lookup_ptr(sb, ip)) {
                    let rec = std::iter::once(Rdata::Ptr(a, b));
                    wire::write_answer(out, &q, query, self.config.ttl, max, rec);
                    self.metrics.query(rcode::NOERROR.into(), q.qtype);
                    return Outcome::Reply;
                }
            } else if let Some(hit) = table.lookup(sb, key) {
                let ttl = self.config.ttl;
                match q.qtype {
                    wire::TYPE_A => wire::write_answer(
                        out,
                        &q,
                        query,
                        ttl,
                        max,
                        hit.addrs(Family::V4).map(Rdata::Addr),
                    ),
                    wire::TYPE_AAAA => wire::write_answer(
                        out,
                        &q,
                        query,
                        ttl,
                        max,
                        hit.addrs(Family::V6).map(Rdata::Addr),
                    ),
                    _ => wire::write_rcode(out, &q, query, 0, false),
                }
                self.metrics.query(rcode::NOERROR.into(), q.qtype);
                return Outcome::Reply;
            }
        }
        let upstreams = sb.upstreams.clone();
        drop(table);
        let usable: Vec<SocketAddr> = upstreams
            .iter()
            .flat_map(|u| u.iter())
            .filter(|u| !self.is_self(u))
            .take(self.config.max_upstreams)
            .copied()
            .collect();
        if usable.is_empty() {
            wire::write_rcode(out, &q, query, rcode::SERVFAIL as u16, false);
            self.metrics.query(rcode::SERVFAIL.into(), q.qtype);
            return Outcome::Reply;
        }
        Outcome::Forward(Box::new(ForwardPlan { upstreams: usable, query: q }))
    }

    /// Forwards a planned query (the original `query` bytes from the client) and returns the
    /// reply to send: the upstream's validated answer with the client's id, truncated to the
    /// client's limit for UDP, or SERVFAIL if no upstream gave a usable answer.
    pub async fn forward(&self, plan: &ForwardPlan, query: &[u8], transport: Transport) -> Vec<u8> {
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        let (reply, answered) =
            forward::forward(&self.config, &self.metrics, plan, query, transport).await;
        self.metrics.forwarded(if answered { Forwarded::Answered } else { Forwarded::Failed });
        self.metrics.query(reply.get(3).map_or(0, |b| u16::from(b & 0x0F)), plan.query.qtype);
        reply
    }

    fn refused(&self, plan: &ForwardPlan, query: &[u8], out: &mut Vec<u8>) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        wire::write_rcode(out, &plan.query, query, rcode::REFUSED as u16, false);
        self.metrics.forwarded(Forwarded::Refused);
        self.metrics.query(rcode::REFUSED.into(), plan.query.qtype);
    }

    /// Serves a sandbox's already-bound sockets (normally 127.0.0.11:53 created inside the
    /// container's netns) on the current tokio runtime, answering with `sandbox_id`'s view.
    /// Must be called within a tokio runtime. Dropping the handle stops serving and closes
    /// the sockets.
    pub fn serve(
        self: &Arc<Self>,
        sandbox_id: &str,
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) -> Result<ServeHandle, Error> {
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let addrs = vec![udp.local_addr()?, tcp.local_addr()?];
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let mut own = self.own_addrs.write().unwrap_or_else(PoisonError::into_inner);
        for a in &addrs {
            *own.entry(*a).or_default() += 1;
        }
        drop(own);
        let sandbox: Arc<str> = Arc::from(sandbox_id);
        let fwd = Arc::new(Semaphore::new(self.config.max_inflight));
        let conns = Arc::new(Semaphore::new(self.config.tcp_max_connections));
        let tasks = vec![
            tokio::spawn(udp::serve_udp(self.clone(), sandbox.clone(), udp, fwd.clone())),
            tokio::spawn(tcp::serve_tcp(self.clone(), sandbox, tcp, conns, fwd)),
        ];
        Ok(ServeHandle { resolver: self.clone(), addrs, tasks })
    }
}

/// Serving tasks of one sandbox; dropping it stops them and closes the sockets.
#[derive(Debug)]
pub struct ServeHandle {
    resolver: Arc<Resolver>,
    addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl ServeHandle {
    /// The UDP and the TCP address served.
    pub fn local_addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.addrs[0], self.addrs[1])
    }
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        let mut own = self.resolver.own_addrs.write().unwrap_or_else(PoisonError::into_inner);
        for a in &self.addrs {
            if let Some(n) = own.get_mut(a) {
                *n -= 1;
                if *n == 0 {
                    own.remove(a);
                }
            }
        }
    }
}
