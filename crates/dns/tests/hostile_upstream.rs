//! Hostile upstream replies (BI-18, CVE-2025-23028 class): never a crash or hang; the
//! client gets the valid reply that follows, or SERVFAIL.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use common::*;
use cove_dns::Forward;
use hickory_proto::rr::RecordType;

const GOOD: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// Enough A records for a ~64 KiB reply.
const RECORDS: u32 = 2300;
const BAD: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);

fn header(q: &[u8], qd: u16, an: u16) -> Vec<u8> {
    let mut h = vec![q[0], q[1], 0x81, 0x80];
    for c in [qd, an, 0, 0] {
        h.extend(c.to_be_bytes());
    }
    h
}

/// Header + the query's question (queries here carry no OPT, so it is `q[12..]`).
fn with_question(q: &[u8], an: u16) -> Vec<u8> {
    let mut m = header(q, 1, an);
    m.extend_from_slice(&q[12..]);
    m
}

fn a_record_tail(m: &mut Vec<u8>) {
    m.extend([0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    m.extend(BAD.octets());
}

type Hostile = fn(&[u8]) -> Vec<u8>;

fn cases() -> Vec<(&'static str, Hostile)> {
    vec![
        ("wrong id", |q| {
            let mut r = answer_for(q, &[BAD]);
            r[0] ^= 0x55;
            r
        }),
        ("wrong question", |q| {
            let id = u16::from_be_bytes([q[0], q[1]]);
            answer_for(&query(id, "other.example.", RecordType::A, None), &[BAD])
        }),
        ("wrong type", |q| {
            let id = u16::from_be_bytes([q[0], q[1]]);
            let mut r = answer_for(&query(id, "ext.example.", RecordType::A, None), &[]);
            let qtype_at = r.len() - 4;
            r[qtype_at + 1] = 16;
            r
        }),
        ("not a response", |q| q.to_vec()),
        ("no question with NOERROR", |q| {
            let mut m = header(q, 0, 1);
            m.extend([0]);
            a_record_tail(&mut m);
            m
        }),
        ("compression pointer loop", |q| {
            let mut m = with_question(q, 1);
            let at = m.len() as u8;
            m.extend([0xC0, at]);
            a_record_tail(&mut m);
            m
        }),
        ("pointer loop in question", |q| {
            let mut m = header(q, 1, 0);
            m.extend([0xC0, 12, 0, 1, 0, 1]);
            m
        }),
        ("pointer past end", |q| {
            let mut m = with_question(q, 1);
            m.extend([0xFF, 0xF0]);
            a_record_tail(&mut m);
            m
        }),
        ("label longer than 63", |q| {
            let mut m = with_question(q, 1);
            m.push(64);
            m.extend([b'a'; 64]);
            m.push(0);
            a_record_tail(&mut m);
            m
        }),
        ("name longer than 255", |q| {
            let mut m = with_question(q, 1);
            for _ in 0..5 {
                m.push(63);
                m.extend([b'a'; 63]);
            }
            m.push(0);
            a_record_tail(&mut m);
            m
        }),
        ("ANCOUNT 65535 with one record", |q| {
            let mut m = with_question(q, 0xFFFF);
            m.extend([0xC0, 12]);
            a_record_tail(&mut m);
            m
        }),
        ("truncated RR", |q| {
            let mut r = answer_for(q, &[BAD]);
            r.truncate(r.len() - 2);
            r
        }),
        ("header only", |q| {
            q[..12].iter().enumerate().map(|(i, b)| if i == 2 { b | 0x80 } else { *b }).collect()
        }),
        ("empty", |_| vec![]),
    ]
}

#[tokio::test]
async fn hostile_reply_then_valid_reply_yields_the_valid_one() {
    for (name, hostile) in cases() {
        let stub = Stub::start(Arc::new(move |q: &[u8]| {
            vec![Action::Reply(hostile(q)), Action::Reply(answer_for(q, &[GOOD]))]
        }))
        .await;
        let r = resolver(test_config(), Forward::Upstream(vec![stub.addr]));
        let (_h, udp, _) = serve(&r, "sb");
        let m = parse(&udp_ask(udp, &query(7, "ext.example.", RecordType::A, None)).await);
        assert_eq!(m.metadata.id, 7, "{name}");
        assert_eq!(addrs(&m), [IpAddr::V4(GOOD)], "{name}");
    }
}

#[tokio::test]
async fn hostile_reply_alone_yields_servfail() {
    let mut tasks = Vec::new();
    for (name, hostile) in cases() {
        tasks.push(tokio::spawn(async move {
            let stub = Stub::start(Arc::new(move |q: &[u8]| vec![Action::Reply(hostile(q))])).await;
            let r = resolver(test_config(), Forward::Upstream(vec![stub.addr]));
            let (_h, udp, tcp) = serve(&r, "sb");
            let m = parse(&udp_ask(udp, &query(8, "ext.example.", RecordType::A, None)).await);
            assert_eq!((m.metadata.id, rcode(&m)), (8, 2), "udp: {name}");
            let m = parse(&tcp_ask(tcp, &query(9, "ext.example.", RecordType::A, None)).await);
            assert_eq!((m.metadata.id, rcode(&m)), (9, 2), "tcp: {name}");
            // Still serving.
            let m = parse(&udp_ask(udp, &query(10, "web", RecordType::A, None)).await);
            assert_eq!(addrs(&m).len(), 1, "{name}");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn reply_from_wrong_source_port_is_ignored() {
    let stub = Stub::start(Arc::new(|q: &[u8]| {
        vec![
            Action::ReplyFromOther(answer_for(q, &[BAD])),
            Action::Sleep(std::time::Duration::from_millis(50)),
            Action::Reply(answer_for(q, &[GOOD])),
        ]
    }))
    .await;
    let r = resolver(test_config(), Forward::Upstream(vec![stub.addr]));
    let (_h, udp, _) = serve(&r, "sb");
    let m = parse(&udp_ask(udp, &query(1, "ext.example.", RecordType::A, None)).await);
    assert_eq!(addrs(&m), [IpAddr::V4(GOOD)]);
}

#[tokio::test]
async fn oversized_udp_reply_is_truncated_for_the_client() {
    // ~64 KiB, TC=0, over UDP: more than any client limit here.
    let stub = Stub::start(Arc::new(|q: &[u8]| {
        let ips: Vec<Ipv4Addr> = (0..RECORDS).map(|i| Ipv4Addr::from(0x0A00_0000 + i)).collect();
        let reply = answer_for(q, &ips);
        assert!(reply.len() > 60_000 && reply.len() <= 65_507, "{}", reply.len());
        vec![Action::Reply(reply)]
    }))
    .await;
    let r = resolver(test_config(), Forward::Upstream(vec![stub.addr]));
    let (_h, udp, tcp) = serve(&r, "sb");
    for edns in [None, Some(1232), Some(4096)] {
        let raw = udp_ask(udp, &query(3, "big.example.", RecordType::A, edns)).await;
        assert!(raw.len() <= edns.unwrap_or(512) as usize);
        let m = parse(&raw);
        assert!(m.metadata.truncation, "TC set so the client retries over TCP");
        assert_eq!((m.metadata.id, rcode(&m)), (3, 0));
        assert_eq!(m.queries[0].name().to_string(), "big.example.");
    }
    let m = parse(&tcp_ask(tcp, &query(4, "big.example.", RecordType::A, None)).await);
    assert_eq!(m.answers.len(), RECORDS as usize);
    assert!(!m.metadata.truncation);
}

#[tokio::test]
async fn oversized_reply_with_wrong_id_or_question_is_dropped() {
    let stub = Stub::start(Arc::new(|q: &[u8]| {
        let ips: Vec<Ipv4Addr> = (0..RECORDS).map(|i| Ipv4Addr::from(0x0A00_0000 + i)).collect();
        let mut wrong_id = answer_for(q, &ips);
        wrong_id[1] ^= 1;
        let id = u16::from_be_bytes([q[0], q[1]]);
        let wrong_q = answer_for(&query(id, "other.example.", RecordType::A, None), &ips);
        vec![Action::Reply(wrong_id), Action::Reply(wrong_q), Action::Reply(answer_for(q, &[GOOD]))]
    }))
    .await;
    let r = resolver(test_config(), Forward::Upstream(vec![stub.addr]));
    let (_h, udp, _) = serve(&r, "sb");
    let m = parse(&udp_ask(udp, &query(5, "big.example.", RecordType::A, None)).await);
    assert!(!m.metadata.truncation);
    assert_eq!(addrs(&m), [IpAddr::V4(GOOD)]);
}
