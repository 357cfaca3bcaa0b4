//! TCP probes across the underlay: busybox `nc` in one node, a listener of the test
//! process in another, and proof of arrival (the token and the peer's address).

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, TcpListener};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::Netlab;

/// How long a probe waits for its connection (busybox `nc -w`).
const CONNECT_SECS: u64 = 2;

impl Netlab {
    /// Whether a TCP connection from node `from` reaches node `to` on `port` (0: any free
    /// port) over the underlay: `busybox nc` in `from` sends a token to `to`'s address; a
    /// listener in `to`'s network namespace must accept it from `from`'s address with that
    /// token. A connection that arrives from another address, or with another token, is a
    /// broken netlab and panics. A probe that does not reach takes about 2 s.
    #[track_caller]
    pub fn tcp_reaches(&self, from: &str, to: &str, port: u16) -> bool {
        let (src, dst) = (self.addr(from), self.addr(to));
        let listener = self
            .in_netns(to, || TcpListener::bind((dst, port)))
            .unwrap_or_else(|e| panic!("netlab: listening on {dst}:{port} in {to}: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
        listener.set_nonblocking(true).expect("netlab: nonblocking listener");
        let token = format!("netlab-probe {from} {to} {}", std::process::id());
        let script =
            format!("echo '{token}' | exec busybox nc -w {CONNECT_SECS} {dst} {port} >/dev/null");
        let mut nc = self.command(from, &["sh", "-c", &script]);
        nc.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = nc.spawn().unwrap_or_else(|e| panic!("netlab: running nc in {from}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(CONNECT_SECS + 3);
        let mut exited = false;
        let arrived = loop {
            match listener.accept() {
                Ok((stream, peer)) => break Some((stream, peer)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("netlab: accept in {to}: {e}"),
            }
            // One more look at the queue after nc has given up, then no.
            if exited || Instant::now() > deadline {
                break None;
            }
            exited = matches!(child.try_wait(), Ok(Some(_)));
            std::thread::sleep(Duration::from_millis(2));
        };
        let result = arrived.map(|(stream, peer)| {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            (peer, line)
        });
        // The listener closes, so nc ends; kill it in case it waits on.
        drop(listener);
        let _ = child.kill();
        let _ = child.wait();
        match result {
            None => false,
            Some((peer, line)) => {
                assert_eq!(
                    peer.ip(),
                    IpAddr::V4(src),
                    "netlab: the probe {from} -> {to} came from elsewhere"
                );
                assert_eq!(line.trim_end(), token, "netlab: the probe {from} -> {to} was mangled");
                true
            }
        }
    }
}
