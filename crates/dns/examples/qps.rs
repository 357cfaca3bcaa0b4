//! Rough local-name throughput: one blocking UDP client over 127.0.0.1 keeping N queries in
//! flight against a resolver on a one-worker tokio runtime.
//!
//! `cargo run --release -p cove-dns --example qps -- [in_flight] [seconds]`

use std::io::{IoSlice, IoSliceMut};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use cove_dns::{Config, EndpointNames, Forward, Resolver, SandboxView};
use nix::sys::socket::{
    recvmmsg, sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};

fn main() {
    let mut args = std::env::args().skip(1);
    let in_flight: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);

    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let r = Resolver::new(Config::default());
    r.set_network("n1", "front");
    for i in 0..1000u32 {
        r.set_endpoint(
            "n1",
            EndpointNames {
                endpoint_id: format!("e{i}"),
                container_name: format!("c{i}"),
                ipv4: Some(std::net::Ipv4Addr::from(0x0A01_0000 + i)),
                ..EndpointNames::default()
            },
        );
    }
    r.set_sandbox("sb", SandboxView { networks: vec!["n1".into()], forward: Forward::None });
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = udp.local_addr().unwrap();
    // `echo` as third argument: a bare tokio recv/send loop, to see the kernel+client floor.
    let echo = std::env::args().nth(3).is_some_and(|a| a == "echo");
    let _h = rt.block_on(async {
        if echo {
            udp.set_nonblocking(true).unwrap();
            let s = tokio::net::UdpSocket::from_std(udp).unwrap();
            tokio::spawn(async move {
                let mut b = [0u8; 512];
                loop {
                    let (n, p) = s.recv_from(&mut b).await.unwrap();
                    b[2] |= 0x80;
                    s.send_to(&b[..n], p).await.unwrap();
                }
            });
            None
        } else {
            Some(r.serve("sb", udp, tcp).unwrap())
        }
    });

    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(server).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let queries: Vec<Vec<u8>> = (0..1000u32)
        .map(|i| {
            let name = format!("c{i}");
            let mut q = vec![0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, name.len() as u8];
            q.extend(name.as_bytes());
            q.extend([0, 0, 1, 0, 1]);
            q
        })
        .collect();
    // The client batches too (sendmmsg/recvmmsg), so that it is not the bottleneck.
    let fd = client.as_raw_fd();
    let mut next = 0usize;
    let mut send = |k: usize| {
        let batch: Vec<[IoSlice<'_>; 1]> = (0..k)
            .map(|_| {
                next += 1;
                [IoSlice::new(&queries[next % queries.len()])]
            })
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(k, None);
        let dests = vec![None; k];
        let cmsgs: [ControlMessage<'_>; 0] = [];
        let sent = sendmmsg(fd, &mut headers, &batch, &dests, cmsgs, MsgFlags::empty()).unwrap();
        assert_eq!(sent.count(), k);
    };
    send(in_flight);
    let mut bufs = vec![0u8; 512 * in_flight];
    let (mut answered, mut lost) = (0u64, 0u64);
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    while Instant::now() < end {
        let k = {
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(in_flight, None);
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> =
                bufs.chunks_mut(512).map(|c| [IoSliceMut::new(c)]).collect();
            match recvmmsg(fd, &mut headers, iovs.iter_mut(), MsgFlags::MSG_WAITFORONE, None) {
                Ok(got) => got.map(|m| assert!(m.bytes > 12)).count(),
                Err(_) => {
                    lost += 1;
                    1
                }
            }
        };
        for i in 0..k.min(in_flight) {
            assert_eq!(bufs[i * 512 + 3] & 0x0F, 0, "NOERROR");
        }
        answered += k as u64;
        send(k);
    }
    let el = start.elapsed().as_secs_f64();
    println!(
        "{in_flight} in flight: {answered} answers in {el:.2}s = {:.0} qps ({lost} timeouts)",
        answered as f64 / el
    );
}
