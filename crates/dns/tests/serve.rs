//! In-process tests over 127.0.0.1: local answers, forwarding policy, bounds.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use cove_dns::{Config, Forward, SandboxView};
use hickory_proto::rr::{RData, RecordType};

const EXT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

#[tokio::test]
async fn local_names_over_udp_and_tcp() {
    let stub = Stub::answering(EXT).await;
    let r = resolver(test_config(), Forward::Upstream(vec![stub.addr]));
    let (_h, udp, tcp) = serve(&r, "sb");

    for (i, name) in ["web", "WEB.", "www.", "web.front."].iter().enumerate() {
        let q = query(i as u16, name, RecordType::A, None);
        let raw = udp_ask(udp, &q).await;
        assert_eq!(raw[12..q.len()], q[12..], "question echoed byte for byte");
        let m = parse(&raw);
        assert_eq!(m.metadata.id, i as u16);
        assert_eq!(rcode(&m), 0);
        assert!(m.metadata.recursion_available);
        assert_eq!(addrs(&m), [IpAddr::from([10, 1, 0, 2])], "{name}");
        assert_eq!(m.answers[0].ttl, 600);
    }
    let m = parse(&tcp_ask(tcp, &query(7, "web", RecordType::A, Some(1232))).await);
    assert_eq!(addrs(&m), [IpAddr::from([10, 1, 0, 2])]);
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(4096), "OPT echoed");

    // Local name, no AAAA: NODATA, not forwarded. Same for other types.
    for t in [RecordType::AAAA, RecordType::TXT, RecordType::MX] {
        let m = parse(&udp_ask(udp, &query(8, "web", t, None)).await);
        assert_eq!(rcode(&m), 0);
        assert!(m.answers.is_empty());
    }
    // PTR: <container>.<network>.
    let m = parse(&udp_ask(udp, &query(9, "2.0.1.10.in-addr.arpa.", RecordType::PTR, None)).await);
    match &m.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_string(), "web.front."),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(stub.count(), 0, "nothing local may reach the upstream");
}

#[tokio::test]
async fn forwards_udp_and_tcp_passing_edns() {
    let stub = Stub::answering(EXT).await;
    let r = resolver(test_config(), Forward::Upstream(vec![stub.addr]));
    let (_h, udp, tcp) = serve(&r, "sb");

    let m = parse(&udp_ask(udp, &query(0x4242, "example.com.", RecordType::A, Some(1232))).await);
    assert_eq!(m.metadata.id, 0x4242);
    assert_eq!(addrs(&m), [IpAddr::V4(EXT)]);
    let m = parse(&tcp_ask(tcp, &query(0x4343, "example.org.", RecordType::A, None)).await);
    assert_eq!(m.metadata.id, 0x4343);
    assert_eq!(addrs(&m), [IpAddr::V4(EXT)]);

    let seen = stub.queries();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].queries[0].name().to_string(), "example.com.");
    assert_eq!(seen[0].edns.as_ref().map(|e| e.max_payload()), Some(1232), "client OPT passed on");
    assert_eq!(seen[1].queries[0].name().to_string(), "example.org.");
    // Non-local PTR is forwarded too (as Docker).
    let m = parse(&udp_ask(udp, &query(1, "9.9.9.10.in-addr.arpa.", RecordType::PTR, None)).await);
    assert_eq!(rcode(&m), 0);
    assert_eq!(stub.count(), 3);
}

#[tokio::test]
async fn internal_network_sends_nothing_upstream() {
    let stub = Stub::answering(EXT).await;
    let r = resolver(test_config(), Forward::Upstream(vec![stub.addr]));
    r.set_sandbox("internal", SandboxView { networks: vec!["n1".into()], forward: Forward::None });
    let (_h, udp, tcp) = serve(&r, "internal");
    for (i, t) in [RecordType::A, RecordType::TXT].into_iter().enumerate() {
        let started = Instant::now();
        let m = parse(&udp_ask(udp, &query(i as u16, "leak-8f3a.example.", t, None)).await);
        assert_eq!(rcode(&m), 2, "SERVFAIL");
        assert!(started.elapsed() < Duration::from_millis(300), "answered at once");
        let m = parse(&tcp_ask(tcp, &query(i as u16, "leak-8f3a.example.", t, None)).await);
        assert_eq!(rcode(&m), 2);
    }
    let m = parse(&udp_ask(udp, &query(5, "web", RecordType::A, None)).await);
    assert_eq!(addrs(&m), [IpAddr::from([10, 1, 0, 2])], "local names still resolve");
    assert_eq!(stub.count(), 0, "the upstream log must stay empty");
    // An unknown sandbox is treated the same way.
    let (_h2, udp2, _) = serve(&r, "no-such-sandbox");
    let m = parse(&udp_ask(udp2, &query(6, "example.com", RecordType::A, None)).await);
    assert_eq!(rcode(&m), 2);
    assert_eq!(stub.count(), 0);
}

#[tokio::test]
async fn self_loop_upstreams_are_skipped() {
    let stub = Stub::answering(EXT).await;
    let r = resolver(test_config(), Forward::None);
    let (_h, udp, tcp) = serve(&r, "sb");
    let embedded: SocketAddr = "127.0.0.11:53".parse().unwrap();
    r.set_sandbox(
        "sb",
        SandboxView {
            networks: vec!["n1".into()],
            forward: Forward::Upstream(vec![udp, embedded, tcp, stub.addr]),
        },
    );
    let m = parse(&udp_ask(udp, &query(1, "example.com", RecordType::A, None)).await);
    assert_eq!(addrs(&m), [IpAddr::V4(EXT)]);
    assert_eq!(r.stats().queries, 1, "the resolver never received its own forwarded query");
    assert_eq!(stub.count(), 1);

    r.set_sandbox(
        "sb",
        SandboxView {
            networks: vec!["n1".into()],
            forward: Forward::Upstream(vec![udp, embedded]),
        },
    );
    let started = Instant::now();
    let m = parse(&udp_ask(udp, &query(2, "example.com", RecordType::A, None)).await);
    assert_eq!(rcode(&m), 2, "only self upstreams: SERVFAIL");
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(r.stats().queries, 2);
}

#[tokio::test]
async fn failing_or_silent_upstream_falls_through_to_the_next() {
    let servfail = Stub::start(Arc::new(|q: &[u8]| {
        let mut r = answer_for(q, &[]);
        r[3] = (r[3] & 0xF0) | 2;
        vec![Action::Reply(r)]
    }))
    .await;
    let silent = Stub::start(Arc::new(|_: &[u8]| vec![])).await;
    let good = Stub::answering(EXT).await;
    let r = resolver(test_config(), Forward::Upstream(vec![servfail.addr, silent.addr, good.addr]));
    let (_h, udp, _) = serve(&r, "sb");
    let m = parse(&udp_ask(udp, &query(1, "example.com", RecordType::A, None)).await);
    assert_eq!(addrs(&m), [IpAddr::V4(EXT)]);
    assert_eq!((servfail.count(), silent.count(), good.count()), (1, 1, 1));

    // None answers: SERVFAIL after the per-upstream timeouts.
    let r = resolver(test_config(), Forward::Upstream(vec![silent.addr]));
    let (_h, udp, _) = serve(&r, "sb");
    let m = parse(&udp_ask(udp, &query(2, "example.com", RecordType::A, None)).await);
    assert_eq!(rcode(&m), 2);
}

#[tokio::test]
async fn inflight_bound_refuses_at_once() {
    let silent = Stub::start(Arc::new(|_: &[u8]| vec![])).await;
    let cfg =
        Config { max_inflight: 2, upstream_timeout: Duration::from_millis(800), ..test_config() };
    let r = resolver(cfg, Forward::Upstream(vec![silent.addr]));
    let (_h, udp, _) = serve(&r, "sb");
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for id in 0..2u16 {
        client
            .send_to(&query(id, &format!("slow{id}.example"), RecordType::A, None), udp)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    client.send_to(&query(99, "third.example", RecordType::A, None), udp).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = client.recv_from(&mut buf).await.unwrap();
    let m = parse(&buf[..n]);
    assert_eq!((m.metadata.id, rcode(&m)), (99, 5), "REFUSED");
    assert!(started.elapsed() < Duration::from_millis(300));
    // Local names are still answered while the bound is reached.
    let m = parse(&udp_ask(udp, &query(100, "web", RecordType::A, None)).await);
    assert_eq!(addrs(&m).len(), 1);
    // The two slow ones end with SERVFAIL.
    for _ in 0..2 {
        let (n, _) =
            tokio::time::timeout(TIMEOUT, client.recv_from(&mut buf)).await.unwrap().unwrap();
        assert_eq!(rcode(&parse(&buf[..n])), 2);
    }
    assert_eq!(r.stats().refused, 1);
}

#[tokio::test]
async fn updates_are_visible_to_the_next_query() {
    let r = resolver(test_config(), Forward::None);
    let (_h, udp, _) = serve(&r, "sb");
    let ask = |id| query(id, "web", RecordType::A, None);
    assert_eq!(addrs(&parse(&udp_ask(udp, &ask(1)).await)), [IpAddr::from([10, 1, 0, 2])]);
    r.set_endpoint("n1", ep("e1", "web", &[], "10.1.0.99"));
    assert_eq!(addrs(&parse(&udp_ask(udp, &ask(2)).await)), [IpAddr::from([10, 1, 0, 99])]);
    r.remove_endpoint("n1", "e1");
    let m = parse(&udp_ask(udp, &ask(3)).await);
    assert_eq!((rcode(&m), m.answers.len()), (2, 0), "gone: not local, not forwardable");
    r.set_endpoint("n1", ep("e1", "web", &[], "10.1.0.5"));
    r.set_sandbox("sb", SandboxView { networks: vec![], forward: Forward::None });
    assert_eq!(rcode(&parse(&udp_ask(udp, &ask(4)).await)), 2, "sandbox left the network");
}

#[tokio::test]
async fn big_local_answers_truncate_over_udp_only() {
    let r = resolver(test_config(), Forward::None);
    for i in 0..100u8 {
        r.set_endpoint(
            "n1",
            ep(&format!("x{i}"), &format!("c{i}"), &["many"], &format!("10.1.1.{i}")),
        );
    }
    let (_h, udp, tcp) = serve(&r, "sb");
    let raw = udp_ask(udp, &query(1, "many", RecordType::A, None)).await;
    assert!(raw.len() <= 512);
    let m = parse(&raw);
    assert!(m.metadata.truncation);
    assert!(!m.answers.is_empty() && m.answers.len() < 100);
    let raw = udp_ask(udp, &query(1, "many", RecordType::A, Some(4096))).await;
    assert_eq!(parse(&raw).answers.len(), 100);
    let m = parse(&tcp_ask(tcp, &query(2, "many", RecordType::A, None)).await);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
}

#[tokio::test]
async fn dropping_the_handle_closes_the_sockets() {
    let r = resolver(test_config(), Forward::None);
    let (h, udp, tcp) = serve(&r, "sb");
    drop(h);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let u = std::net::UdpSocket::bind(udp);
        let t = std::net::TcpListener::bind(tcp);
        if u.is_ok() && t.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "sockets still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn udp_garbage_never_stops_the_server() {
    let r = resolver(test_config(), Forward::None);
    let (_h, udp, _) = serve(&r, "sb");
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut junk: Vec<Vec<u8>> =
        vec![vec![], b"InvalidQuery\n".to_vec(), vec![0xff; 11], vec![0; 65507]];
    let mut seed = 0x2545F491u32;
    for len in [12usize, 13, 40, 512, 4096, 65000] {
        junk.push(
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect(),
        );
    }
    // A response (QR=1) to us is dropped; QDCOUNT=2 is FORMERR.
    let mut resp = query(5, "web", RecordType::A, None);
    resp[2] |= 0x80;
    junk.push(resp);
    for j in &junk {
        client.send_to(j, udp).await.unwrap();
    }
    let mut two = query(6, "web", RecordType::A, None);
    two[5] = 2;
    let m = parse(&udp_ask(udp, &two).await);
    assert_eq!((m.metadata.id, rcode(&m)), (6, 1), "FORMERR");
    let m = parse(&udp_ask(udp, &query(7, "web", RecordType::A, None)).await);
    assert_eq!(addrs(&m), [IpAddr::from([10, 1, 0, 2])]);
    assert!(r.stats().dropped >= 2, "empty datagram and the response were dropped");
}

#[tokio::test]
async fn concurrent_clients_each_get_their_own_answers() {
    // Replies are sent in batches: each must go to the client that asked.
    let r = resolver(test_config(), Forward::None);
    for i in 0..20u8 {
        r.set_endpoint("n1", ep(&format!("c{i}"), &format!("c{i}"), &[], &format!("10.1.2.{i}")));
    }
    let (_h, udp, _) = serve(&r, "sb");
    let mut clients = Vec::new();
    for i in 0..20u8 {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for j in 0..5u16 {
            let q = query(u16::from(i) * 100 + j, &format!("c{i}"), RecordType::A, None);
            s.send_to(&q, udp).await.unwrap();
        }
        clients.push((i, s));
    }
    for (i, s) in clients {
        let mut ids = Vec::new();
        let mut buf = vec![0u8; 512];
        for _ in 0..5 {
            let (n, _) =
                tokio::time::timeout(TIMEOUT, s.recv_from(&mut buf)).await.unwrap().unwrap();
            let m = parse(&buf[..n]);
            assert_eq!(addrs(&m), [IpAddr::from([10, 1, 2, i])]);
            ids.push(m.metadata.id);
        }
        ids.sort();
        let want: Vec<u16> = (0..5).map(|j| u16::from(i) * 100 + j).collect();
        assert_eq!(ids, want);
    }
}

#[tokio::test]
async fn many_sandboxes_are_served_concurrently() {
    let r = resolver(test_config(), Forward::None);
    let mut handles = Vec::new();
    for i in 0..300 {
        let id = format!("sb{i}");
        r.set_sandbox(&id, SandboxView { networks: vec!["n1".into()], forward: Forward::None });
        handles.push(serve(&r, &id));
    }
    let client = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (i, (_, udp, _)) in handles.iter().enumerate() {
        client.send_to(&query(i as u16, "web", RecordType::A, None), udp).await.unwrap();
    }
    let mut seen = vec![false; handles.len()];
    let mut buf = vec![0u8; 512];
    for _ in 0..handles.len() {
        let (n, from) =
            tokio::time::timeout(TIMEOUT, client.recv_from(&mut buf)).await.unwrap().unwrap();
        let m = parse(&buf[..n]);
        let i = m.metadata.id as usize;
        assert_eq!(from, handles[i].1, "answered from the socket asked");
        assert_eq!(addrs(&m), [IpAddr::from([10, 1, 0, 2])]);
        seen[i] = true;
    }
    assert!(seen.iter().all(|s| *s));
}
