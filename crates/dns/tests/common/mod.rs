//! Shared helpers: a DNS client, message builders and a recording stub upstream.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cove_dns::{Config, EndpointNames, Forward, Resolver, SandboxView, ServeHandle};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

pub const TIMEOUT: Duration = Duration::from_secs(3);

pub fn query(id: u16, name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_str(name).unwrap(), rtype));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

pub fn parse(b: &[u8]) -> Message {
    Message::from_vec(b).expect("resolver reply must parse")
}

pub fn rcode(m: &Message) -> u16 {
    u16::from(m.metadata.response_code)
}

pub fn addrs(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// A NOERROR reply to `q` (raw) with one A record per address.
pub fn answer_for(q: &[u8], ips: &[Ipv4Addr]) -> Vec<u8> {
    let qm = Message::from_vec(q).unwrap();
    let mut m = Message::response(qm.metadata.id, OpCode::Query);
    m.metadata.recursion_desired = qm.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    let question = qm.queries[0].clone();
    for ip in ips {
        m.answers.push(Record::from_rdata(question.name().clone(), 60, RData::A(rdata::A(*ip))));
    }
    m.add_query(question);
    m.to_vec().unwrap()
}

pub async fn udp_ask(server: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(msg, server).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(TIMEOUT, s.recv_from(&mut buf))
        .await
        .expect("udp reply in time")
        .unwrap();
    buf.truncate(n);
    buf
}

pub async fn tcp_ask(server: SocketAddr, msg: &[u8]) -> Vec<u8> {
    let fut = async {
        let mut s = TcpStream::connect(server).await.unwrap();
        s.write_all(&(msg.len() as u16).to_be_bytes()).await.unwrap();
        s.write_all(msg).await.unwrap();
        read_framed(&mut s).await.unwrap()
    };
    tokio::time::timeout(TIMEOUT, fut).await.expect("tcp reply in time")
}

pub async fn read_framed(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = s.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

pub fn test_config() -> Config {
    Config {
        upstream_timeout: Duration::from_millis(400),
        tcp_timeout: Duration::from_millis(500),
        ..Config::default()
    }
}

pub fn ep(id: &str, name: &str, aliases: &[&str], v4: &str) -> EndpointNames {
    EndpointNames {
        endpoint_id: id.into(),
        container_name: name.into(),
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        short_id: None,
        hostname: None,
        ipv4: Some(v4.parse().unwrap()),
        ipv6: None,
    }
}

/// A resolver with network "front" (web 10.1.0.2, alias www) and sandbox `sb` on it.
pub fn resolver(cfg: Config, forward: Forward) -> Arc<Resolver> {
    let r = Resolver::new(cfg);
    r.set_network("n1", "front");
    r.set_endpoint("n1", ep("e1", "web", &["www"], "10.1.0.2"));
    r.set_sandbox("sb", SandboxView { networks: vec!["n1".into()], forward });
    r
}

pub fn serve(r: &Arc<Resolver>, sandbox: &str) -> (ServeHandle, SocketAddr, SocketAddr) {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let h = r.serve(sandbox, udp, tcp).unwrap();
    let (u, t) = h.local_addrs();
    (h, u, t)
}

/// What the stub does for one received query.
#[derive(Debug, Clone)]
pub enum Action {
    Reply(Vec<u8>),
    /// Reply from a different socket (wrong source port).
    ReplyFromOther(Vec<u8>),
    Sleep(Duration),
}

pub type Behaviour = Arc<dyn Fn(&[u8]) -> Vec<Action> + Send + Sync>;

/// A UDP+TCP upstream on one 127.0.0.1 port that logs every query it receives.
pub struct Stub {
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<Vec<u8>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Stub {
    pub async fn start(behaviour: Behaviour) -> Stub {
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        let log: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (l1, b1) = (log.clone(), behaviour.clone());
        let udp_task = tokio::spawn(async move {
            let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut buf = vec![0u8; 65536];
            loop {
                let (n, peer) = udp.recv_from(&mut buf).await.unwrap();
                let q = buf[..n].to_vec();
                l1.lock().unwrap().push(q.clone());
                for a in b1(&q) {
                    match a {
                        Action::Reply(r) => {
                            udp.send_to(&r, peer).await.unwrap();
                        }
                        Action::ReplyFromOther(r) => {
                            other.send_to(&r, peer).await.unwrap();
                        }
                        Action::Sleep(d) => tokio::time::sleep(d).await,
                    }
                }
            }
        });
        let (l2, b2) = (log.clone(), behaviour);
        let tcp_task = tokio::spawn(async move {
            loop {
                let (mut s, _) = tcp.accept().await.unwrap();
                let (l, b) = (l2.clone(), b2.clone());
                tokio::spawn(async move {
                    while let Ok(q) = read_framed(&mut s).await {
                        l.lock().unwrap().push(q.clone());
                        for a in b(&q) {
                            match a {
                                Action::Reply(r) | Action::ReplyFromOther(r) => {
                                    let _ = s.write_all(&(r.len() as u16).to_be_bytes()).await;
                                    let _ = s.write_all(&r).await;
                                }
                                Action::Sleep(d) => tokio::time::sleep(d).await,
                            }
                        }
                    }
                });
            }
        });
        Stub { addr, log, tasks: vec![udp_task, tcp_task] }
    }

    /// A stub answering every A query with `ip`.
    pub async fn answering(ip: Ipv4Addr) -> Stub {
        Stub::start(Arc::new(move |q: &[u8]| vec![Action::Reply(answer_for(q, &[ip]))])).await
    }

    pub fn queries(&self) -> Vec<Message> {
        self.log.lock().unwrap().iter().map(|q| parse(q)).collect()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}
