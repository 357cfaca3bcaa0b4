//! TCP robustness (BI-17, SEC-12, CVE-2024-8418, CVE-2026-35406).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use cove_dns::{Config, Forward, SandboxView};
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A second client must be answered promptly whatever the first one does.
async fn assert_prompt_answer(tcp: SocketAddr) {
    let started = Instant::now();
    let m = parse(&tcp_ask(tcp, &query(77, "web", RecordType::A, None)).await);
    assert_eq!(addrs(&m), [IpAddr::from([10, 1, 0, 2])]);
    assert!(started.elapsed() < Duration::from_millis(200), "took {:?}", started.elapsed());
}

/// Reads until EOF/error; returns how long that took.
async fn time_to_close(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
            Err(_) => panic!("connection not closed"),
        }
    }
}

#[tokio::test]
async fn truncated_prefix_then_eof_or_rst_does_not_spin() {
    let r = resolver(test_config(), Forward::None);
    let (_h, _, tcp) = serve(&r, "sb");
    // Length 0x003c, then close.
    let mut s = TcpStream::connect(tcp).await.unwrap();
    s.write_all(&[0x00, 0x3c]).await.unwrap();
    drop(s);
    // Length prefix, a byte, then RST.
    let s = TcpStream::connect(tcp).await.unwrap();
    let mut s = s;
    s.write_all(&[0x00, 0x3c, 0x12]).await.unwrap();
    #[allow(deprecated)] // RST on close is the point here.
    s.set_linger(Some(Duration::ZERO)).unwrap();
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reads = r.stats().tcp_reads;
    assert!(reads <= 8, "{reads} reads for two dead connections");
    assert_prompt_answer(tcp).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(r.stats().tcp_reads <= reads + 4, "no reads while idle");
}

#[tokio::test]
async fn zero_length_and_short_frames_close_the_connection() {
    let r = resolver(test_config(), Forward::None);
    let (_h, _, tcp) = serve(&r, "sb");
    for bytes in [&[0u8, 0][..], &[0, 1, 0xAB], &[0, 5, 1, 2, 3, 4, 5]] {
        let mut s = TcpStream::connect(tcp).await.unwrap();
        s.write_all(bytes).await.unwrap();
        assert!(time_to_close(&mut s).await < Duration::from_millis(300));
    }
    assert_prompt_answer(tcp).await;
}

#[tokio::test]
async fn idle_slowloris_and_partial_connections_time_out_without_blocking_others() {
    let r = resolver(test_config(), Forward::None);
    let (_h, _, tcp) = serve(&r, "sb");
    let mut idle = TcpStream::connect(tcp).await.unwrap();
    let mut partial = TcpStream::connect(tcp).await.unwrap();
    partial.write_all(&[0xFF, 0xFF, 0x01]).await.unwrap(); // 65535 announced, 1 byte sent
    let mut slow = TcpStream::connect(tcp).await.unwrap();
    let q = query(1, "web", RecordType::A, None);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend(&q);
    let drip = tokio::spawn(async move {
        // One byte every 100 ms: would take seconds; must be cut at tcp_timeout (500 ms).
        for b in framed {
            if slow.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        slow
    });
    assert_prompt_answer(tcp).await;
    assert!(time_to_close(&mut idle).await < Duration::from_millis(900));
    assert!(time_to_close(&mut partial).await < Duration::from_millis(900));
    let mut slow = drip.await.unwrap();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "the dripped query was never answered");
    assert_prompt_answer(tcp).await;
}

#[tokio::test]
async fn pipelined_queries_are_all_answered() {
    let r = resolver(test_config(), Forward::None);
    let (_h, _, tcp) = serve(&r, "sb");
    let mut s = TcpStream::connect(tcp).await.unwrap();
    let mut all = Vec::new();
    for id in 0..1000u16 {
        let q = query(id, if id % 2 == 0 { "web" } else { "www" }, RecordType::A, None);
        all.extend((q.len() as u16).to_be_bytes());
        all.extend(q);
    }
    s.write_all(&all).await.unwrap();
    for id in 0..1000u16 {
        let m = parse(&tokio::time::timeout(TIMEOUT, read_framed(&mut s)).await.unwrap().unwrap());
        assert_eq!(m.metadata.id, id);
        assert_eq!(addrs(&m).len(), 1);
    }
}

#[tokio::test]
async fn connection_cap_is_per_sandbox() {
    let cfg =
        Config { tcp_max_connections: 4, tcp_timeout: Duration::from_secs(5), ..test_config() };
    let r = resolver(cfg, Forward::None);
    r.set_sandbox("other", SandboxView { networks: vec!["n1".into()], forward: Forward::None });
    let (_h, _, tcp) = serve(&r, "sb");
    let (_h2, _, tcp2) = serve(&r, "other");
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(tcp).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut extra = TcpStream::connect(tcp).await.unwrap();
    assert!(time_to_close(&mut extra).await < Duration::from_millis(300));
    assert_eq!(r.stats().tcp_rejected, 1);
    assert_prompt_answer(tcp2).await;
    // Freeing a slot lets a new client in.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_prompt_answer(tcp).await;
}
