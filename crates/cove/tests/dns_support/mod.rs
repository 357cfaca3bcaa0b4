//! DNS helpers for `e2e_dns`: a compiled client that queries from inside a container's
//! network namespace, and an upstream resolver in a neighbour namespace that logs every
//! query it receives.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cove_testkit::{FakeHost, Neighbour};
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::common::in_container_netns;

/// The embedded resolver as a container sees it.
pub const RESOLVER: &str = "127.0.0.11:53";
/// The address the upstream answers every `ext-*` A query with.
pub const EXT_ANSWER: &str = "192.0.2.77";

/// What came back for one query.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The response code.
    pub rcode: ResponseCode,
    /// A/AAAA addresses in the answer section, in order.
    pub addrs: Vec<IpAddr>,
    /// PTR targets in the answer section.
    pub names: Vec<String>,
    /// The TC bit.
    pub truncated: bool,
}

impl Answer {
    /// The addresses as strings, sorted.
    pub fn sorted(&self) -> Vec<String> {
        let mut v: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        v.sort();
        v
    }
}

/// A query message (random id, RD set).
pub fn query(name: &str, rtype: RecordType) -> (u16, Vec<u8>) {
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).expect("query name"), rtype));
    m.metadata.recursion_desired = true;
    (m.metadata.id, m.to_vec().expect("encode query"))
}

fn parse(id: u16, reply: &[u8]) -> Result<Answer, String> {
    let m = Message::from_vec(reply).map_err(|e| format!("unparsable reply: {e}"))?;
    if m.metadata.id != id {
        return Err(format!("reply id {} for query {id}", m.metadata.id));
    }
    let mut a = Answer {
        rcode: m.metadata.response_code,
        addrs: vec![],
        names: vec![],
        truncated: m.metadata.truncation,
    };
    for r in &m.answers {
        match &r.data {
            RData::A(x) => a.addrs.push(IpAddr::V4(x.0)),
            RData::AAAA(x) => a.addrs.push(IpAddr::V6(x.0)),
            RData::PTR(p) => a.names.push(p.to_string()),
            _ => {}
        }
    }
    Ok(a)
}

/// One UDP query to `server` from the calling thread's namespace (one try, `secs` s).
pub fn udp_query(server: &str, name: &str, rtype: RecordType, secs: u64) -> Result<Answer, String> {
    let (id, q) = query(name, rtype);
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(secs))).map_err(|e| e.to_string())?;
    s.send_to(&q, server).map_err(|e| format!("send to {server}: {e}"))?;
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).map_err(|e| format!("{name} {rtype} via {server}: {e}"))?;
    parse(id, &buf[..n])
}

/// One TCP query to `server` from the calling thread's namespace.
pub fn tcp_query(server: &str, name: &str, rtype: RecordType, secs: u64) -> Result<Answer, String> {
    let (id, q) = query(name, rtype);
    let sa: SocketAddr = server.parse().map_err(|e| format!("{server}: {e}"))?;
    let t = Duration::from_secs(secs);
    let mut s = TcpStream::connect_timeout(&sa, t).map_err(|e| format!("connect {server}: {e}"))?;
    s.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&q);
    s.write_all(&framed).map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| format!("{name} over TCP: {e}"))?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).map_err(|e| format!("{name} over TCP: {e}"))?;
    parse(id, &buf)
}

/// A UDP query to the embedded resolver from inside `container`.
#[track_caller]
pub fn ask(h: &FakeHost, container: &str, name: &str, rtype: RecordType) -> Answer {
    in_container_netns(h, container, || udp_query(RESOLVER, name, rtype, 6))
        .unwrap_or_else(|e| panic!("{container}: {e}"))
}

/// A TCP query to the embedded resolver from inside `container`.
#[track_caller]
pub fn ask_tcp(h: &FakeHost, container: &str, name: &str, rtype: RecordType) -> Answer {
    in_container_netns(h, container, || tcp_query(RESOLVER, name, rtype, 6))
        .unwrap_or_else(|e| panic!("{container} (tcp): {e}"))
}

/// The A addresses `container` gets for `name`, sorted (empty on NXDOMAIN/NODATA).
#[track_caller]
pub fn a_of(h: &FakeHost, container: &str, name: &str) -> Vec<String> {
    ask(h, container, name, RecordType::A).sorted()
}

/// An upstream DNS server in a neighbour namespace, on UDP and TCP port 53 of each of its
/// addresses. It logs `<proto> <local address> <name> <type>` for every query and
/// answers: `ext-big-*` A with 60 addresses (192.0.2.1-60), other `ext-*` A with
/// [`EXT_ANSWER`] and AAAA with 2001:db8::77, anything else NXDOMAIN. Stops when dropped.
#[derive(Debug)]
pub struct Upstream {
    log: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

fn answer(q: &[u8]) -> Option<(Vec<u8>, String)> {
    let m = Message::from_vec(q).ok()?;
    let question = m.queries.first()?.clone();
    let name = question.name().to_ascii().to_lowercase();
    let rtype = question.query_type();
    let mut r = Message::new(m.metadata.id, MessageType::Response, OpCode::Query);
    r.metadata.recursion_desired = m.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_query(question.clone());
    if name.starts_with("ext-big-") && rtype == RecordType::A {
        // 60 addresses: far more than fits in 512 bytes.
        for i in 1..=60u8 {
            let ip = std::net::Ipv4Addr::new(192, 0, 2, i);
            r.add_answer(Record::from_rdata(question.name().clone(), 60, RData::A(A(ip))));
        }
    } else if name.starts_with("ext-") {
        if rtype == RecordType::A {
            let ip = EXT_ANSWER.parse().expect("ip");
            r.add_answer(Record::from_rdata(question.name().clone(), 60, RData::A(A(ip))));
        } else if rtype == RecordType::AAAA {
            let ip = "2001:db8::77".parse().expect("ip");
            r.add_answer(Record::from_rdata(question.name().clone(), 60, RData::AAAA(AAAA(ip))));
        }
    } else {
        r.metadata.response_code = ResponseCode::NXDomain;
    }
    Some((r.to_vec().ok()?, format!("{name} {rtype}")))
}

/// The UDP socket and TCP listener of an upstream on `sa`, in the calling thread's netns.
fn bind_both(sa: SocketAddr) -> (UdpSocket, TcpListener) {
    (
        UdpSocket::bind(sa).unwrap_or_else(|e| panic!("bind upstream udp {sa}: {e}")),
        TcpListener::bind(sa).unwrap_or_else(|e| panic!("bind upstream tcp {sa}: {e}")),
    )
}

impl Upstream {
    /// Starts serving on `addrs` (addresses of `nb`).
    #[track_caller]
    pub fn start(nb: &Neighbour, addrs: &[&str]) -> Upstream {
        Self::start_with(addrs, |sa| nb.in_netns(|| bind_both(sa)))
    }

    /// Starts serving on `addrs` inside the fake host's own network namespace (e.g. a
    /// loopback address, as systemd-resolved's 127.0.0.53 on a real host).
    #[track_caller]
    pub fn start_on_host(h: &FakeHost, addrs: &[&str]) -> Upstream {
        Self::start_with(addrs, |sa| h.in_netns(|| bind_both(sa)))
    }

    fn start_with(
        addrs: &[&str],
        bind: impl Fn(SocketAddr) -> (UdpSocket, TcpListener),
    ) -> Upstream {
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = vec![];
        for a in addrs {
            let sa: SocketAddr = format!("{a}:53").parse().expect("upstream address");
            let (udp, tcp) = bind(sa);
            udp.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
            tcp.set_nonblocking(true).expect("nonblocking");
            let (log2, stop2) = (log.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop2.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else { continue };
                    if let Some((reply, what)) = answer(&buf[..n]) {
                        log2.lock().unwrap().push(format!("udp {} {what}", sa.ip()));
                        let _ = udp.send_to(&reply, peer);
                    }
                }
            }));
            let (log2, stop2) = (log.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if s.read_exact(&mut q).is_err() {
                        continue;
                    }
                    if let Some((reply, what)) = answer(&q) {
                        log2.lock().unwrap().push(format!("tcp {} {what}", sa.ip()));
                        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        let _ = s.write_all(&framed);
                    }
                }
            }));
        }
        Upstream { log, stop, threads }
    }

    /// Every query received so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Whether some logged query mentions `needle` (a lower-case name).
    pub fn saw(&self, needle: &str) -> bool {
        self.log().iter().any(|l| l.contains(needle))
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A label no cache or earlier test can have seen.
pub fn random_label(prefix: &str) -> String {
    let mut b = [0u8; 6];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).expect("urandom");
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{prefix}{hex}")
}
