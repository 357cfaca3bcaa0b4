//! Shared set-up for the end-to-end tests: a fake host with the daemon started and the
//! busybox test image imported.
#![allow(dead_code)]

pub mod clients;
pub mod failpoints;
pub mod leak;
pub mod multihost;
pub mod raw;

use cove_testkit::{FakeHost, Snapshot};
use std::path::Path;
use std::time::{Duration, Instant};

/// A fake host running the daemon, with the `busybox` image imported.
pub fn host(test: &str) -> FakeHost {
    let mut h = FakeHost::new(test, Path::new(env!("CARGO_BIN_EXE_cove")));
    h.start_daemon(&[]);
    h.import_busybox("busybox");
    h
}

/// JSON of `cove inspect` / `network inspect` for one object.
pub fn inspect(h: &FakeHost, args: &[&str]) -> serde_json::Value {
    let r = h.cove(args);
    r.ok();
    let v = r.json();
    v.as_array().and_then(|a| a.first()).cloned().unwrap_or(v)
}

/// A container's address on a network, from `cove inspect`.
pub fn ip_of(h: &FakeHost, container: &str, network: &str) -> String {
    let v = inspect(h, &["inspect", container]);
    v["NetworkSettings"]["Networks"][network]["IPAddress"]
        .as_str()
        .unwrap_or_else(|| panic!("{container} has no address on {network}: {v}"))
        .to_string()
}

/// Start a TCP server container that answers every connection with `reply`.
pub fn tcp_server(h: &FakeHost, name: &str, extra: &[&str], reply: &str) {
    let script = format!("while true; do echo {reply} | nc -l -p 8080; done");
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    h.cove(&args).ok();
}

/// Connect from a new container (`--rm`) with `extra` run flags to `ip:8080`; its output.
pub fn tcp_probe(h: &FakeHost, extra: &[&str], ip: &str) -> cove_testkit::CmdResult {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(extra);
    let cmd = format!("nc -w 3 {ip} 8080");
    args.extend_from_slice(&["busybox", "sh", "-c", &cmd]);
    h.cove(&args)
}

/// Start `busybox sleep 600` detached as `name`, with `extra` run flags.
#[track_caller]
pub fn sleeper(h: &FakeHost, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sleep", "600"]);
    h.cove(&args).ok();
}

/// `cove exec <container> <argv...>`, which must succeed; its stdout.
#[track_caller]
pub fn exec_ok(h: &FakeHost, container: &str, argv: &[&str]) -> String {
    let mut args = vec!["exec", container];
    args.extend_from_slice(argv);
    let r = h.cove(&args);
    r.ok();
    r.stdout
}

/// Poll `f` every 50 ms until it holds; panic naming `what` after `secs` seconds.
#[track_caller]
pub fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Wait until something in `container`'s network namespace listens on TCP `port`
/// (read from `/proc/net/tcp{,6}` inside it), so that probes do not race the server.
#[track_caller]
pub fn wait_listening(h: &FakeHost, container: &str, port: u16) {
    let needle = format!(":{port:04X} ");
    wait_until(&format!("{container} to listen on {port}"), 10, || {
        let r = h.cove(&["exec", container, "cat", "/proc/net/tcp", "/proc/net/tcp6"]);
        r.stdout.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && format!("{} ", f[1]).ends_with(&needle) && f[3] == "0A"
        })
    });
}

/// Connect from the running container `from` to `ip:8080` with `nc` (via `exec`).
pub fn exec_probe(h: &FakeHost, from: &str, ip: &str) -> cove_testkit::CmdResult {
    h.cove(&["exec", from, "nc", "-w", "2", ip, "8080"])
}

/// Add a counter `name` in a table of the `bridge` family (`table bridge cove_test_probe`,
/// prerouting), counting frames that enter any bridge port and match one of `matches`
/// (e.g. `arp daddr ip 10.0.0.5`): proof that a probe reached the host's bridge even when
/// it never became an IP packet. Add it before the baseline snapshot.
#[track_caller]
pub fn add_bridge_counter(h: &FakeHost, name: &str, matches: &[&str]) {
    let mut script = format!(
        "add table bridge cove_test_probe\n\
         add chain bridge cove_test_probe pre {{ type filter hook prerouting priority -300; policy accept; }}\n\
         add counter bridge cove_test_probe {name}\n"
    );
    for m in matches {
        script.push_str(&format!(
            "add rule bridge cove_test_probe pre {m} counter name \"{name}\"\n"
        ));
    }
    let path = h.dir().join(format!("bridge-counter-{name}.nft"));
    std::fs::write(&path, &script).expect("writing the nft script");
    h.sh_ok(&format!("nft -f {}", path.display()));
}

/// Packets counted so far by the bridge counter `name` (see [`add_bridge_counter`]).
#[track_caller]
pub fn bridge_counter(h: &FakeHost, name: &str) -> u64 {
    nft_packets(h, "bridge cove_test_probe", name)
}

/// Packets counted so far by the named nft counter `name` of `table` (`FAMILY NAME`).
#[track_caller]
pub fn nft_packets(h: &FakeHost, table: &str, name: &str) -> u64 {
    let out = h.sh_ok(&format!("nft list counter {table} {name}"));
    let mut words = out.split_whitespace();
    while let Some(w) = words.next() {
        if w == "packets" {
            if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
                return n;
            }
        }
    }
    panic!("no packet count in {out}")
}

/// `s` without the `nc -l` that a [`tcp_server`] starts again after each connection
/// (a new pid each time, not a leak).
pub fn steady(s: &Snapshot) -> Snapshot {
    let mut s = s.clone();
    s.procs = s.procs.iter().filter(|p| !p.contains(": nc -l")).cloned().collect();
    s
}

/// [`FakeHost::assert_no_leaks`] comparing [`steady`] snapshots: the fake host's links,
/// addresses, routes, nft, mounts and container processes are (within 5 s) what they were
/// in `before`; `when` names the moment in the panic message.
#[track_caller]
pub fn assert_same_as(h: &FakeHost, before: &Snapshot, when: &str) {
    let want = steady(before);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = steady(&h.snapshot());
        if now == want {
            return;
        }
        if Instant::now() > deadline {
            panic!("{when}: the fake host changed:\n  {}", want.diff(&now).join("\n  "));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- Firewall and published-port tests ----

/// [`host`] with a step before the daemon starts (e.g. a sysctl) and extra daemon flags.
pub fn host_with(test: &str, before: impl FnOnce(&FakeHost), daemon_args: &[&str]) -> FakeHost {
    let mut h = FakeHost::new(test, Path::new(env!("CARGO_BIN_EXE_cove")));
    before(&h);
    h.start_daemon(daemon_args);
    h.import_busybox("busybox");
    h
}

/// The pid of a running container's init process (`State.Pid`).
#[track_caller]
pub fn container_pid(h: &FakeHost, container: &str) -> u32 {
    let v = inspect(h, &["inspect", container]);
    let pid = v["State"]["Pid"].as_u64().unwrap_or(0);
    assert!(pid > 0, "{container} has no pid: {}", v["State"]);
    pid as u32
}

/// The network namespace of a running container, opened.
#[track_caller]
pub fn container_netns(h: &FakeHost, container: &str) -> std::fs::File {
    let pid = container_pid(h, container);
    std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .unwrap_or_else(|e| panic!("opening the netns of {container}: {e}"))
}

/// Run `f` on a thread inside the network namespace of the running container (what a
/// process in it with `CAP_NET_RAW`/`CAP_NET_ADMIN` could do; commands spawned from `f`
/// run in that namespace too).
#[track_caller]
pub fn in_container_netns<T: Send>(
    h: &FakeHost,
    container: &str,
    f: impl FnOnce() -> T + Send,
) -> T {
    use std::os::fd::AsRawFd;
    let ns = container_netns(h, container);
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns(2) on an open namespace descriptor, for this thread only.
            let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns into {container}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// A TCP client in the calling thread's network namespace: connect to `addr` (`ip:port`
/// or `[v6]:port`) within `secs` seconds and read until EOF. `Ok(what the server sent)`
/// when the connection was made, `Err` (refused, timed out, unreachable) when not.
pub fn tcp_fetch(addr: &str, secs: u64) -> Result<String, String> {
    use std::io::Read;
    let sa: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let t = Duration::from_secs(secs);
    let mut s = std::net::TcpStream::connect_timeout(&sa, t).map_err(|e| format!("{addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(t));
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Start a container `name` (`extra` run flags) that answers every TCP connection on each
/// of `ports` with a line `<name>:<port>` and its own TCP tables (`/proc/net/tcp{,6}`), so
/// the client learns which source address the container saw (see [`peers_in`]). Busybox
/// `nc -ll -e`: one persistent listener per port. Waits until all ports listen.
#[track_caller]
pub fn peer_server(h: &FakeHost, name: &str, extra: &[&str], ports: &[u16]) {
    let mut script = String::new();
    for p in ports {
        script.push_str(&format!(
            "nc -ll -p {p} -e sh -c 'echo {name}:{p}; cat /proc/net/tcp /proc/net/tcp6' & "
        ));
    }
    script.push_str("wait");
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    h.cove(&args).ok();
    for p in ports {
        wait_listening(h, name, *p);
    }
}

fn proc_net_addr(hex: &str) -> Option<(std::net::IpAddr, u16)> {
    let (a, p) = hex.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let words: Vec<u32> = (0..a.len() / 8)
        .map(|i| u32::from_str_radix(&a[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?).to_canonical(),
        _ => return None,
    };
    Some((ip, port))
}

/// The remote addresses of the established connections to local `port`, from the TCP
/// tables a [`peer_server`] sends back: the client addresses the container saw.
pub fn peers_in(reply: &str, port: u16) -> Vec<std::net::IpAddr> {
    reply
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // ESTABLISHED, or CLOSE_WAIT when the client already shut down its side.
            if f.len() < 4 || !matches!(f[3], "01" | "08") {
                return None;
            }
            let (_, lport) = proc_net_addr(f[1])?;
            let (rip, _) = proc_net_addr(f[2])?;
            (lport == port).then_some(rip)
        })
        .collect()
}

/// Assert that `reply` (from a [`peer_server`]) came from `marker` (`name:port`) and that
/// the container saw the connection come from `client`.
#[track_caller]
pub fn assert_served(reply: &Result<String, String>, marker: &str, client: &str) {
    let text = match reply {
        Ok(t) => t,
        Err(e) => panic!("expected an answer from {marker}, got: {e}"),
    };
    assert!(text.contains(marker), "expected {marker}, got:\n{text}");
    let port: u16 = marker.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let peers = peers_in(text, port);
    let want: std::net::IpAddr = client.parse().expect("client address");
    assert!(
        peers.contains(&want),
        "{marker} saw the connection from {peers:?}, not {client}; it sent:\n{text}"
    );
}

/// A UDP echo server in a running container's network namespace (a socket there, served
/// by a test thread: busybox's `nc` has no UDP). Each datagram is answered with
/// `<source address> <datagram>`. Stops when dropped.
#[derive(Debug)]
pub struct UdpEcho {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

/// Start a [`UdpEcho`] on `[::]:port` (both families) in `container`'s network namespace.
#[track_caller]
pub fn udp_echo(h: &FakeHost, container: &str, port: u16) -> UdpEcho {
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;
    let ns = container_netns(h, container);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        // SAFETY: setns(2) on an open namespace descriptor, for this thread only.
        let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        let sock = std::net::UdpSocket::bind(("::", port)).expect("bind the UDP echo server");
        sock.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        let _ = tx.send(());
        let mut buf = [0u8; 1500];
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]);
                let _ =
                    sock.send_to(format!("{} {msg}", peer.ip().to_canonical()).as_bytes(), peer);
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("the UDP echo server did not start");
    UdpEcho { stop, handle: Some(handle) }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Send `msg` to the UDP `addr` from the calling thread's namespace and wait for one answer
/// (three tries, 1 s each).
pub fn udp_ask(addr: &str, msg: &str) -> Result<String, String> {
    let sa: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let local = if sa.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let s = std::net::UdpSocket::bind(local).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.to_string())?;
    let mut last = String::new();
    for _ in 0..3 {
        if let Err(e) = s.send_to(msg.as_bytes(), sa) {
            last = e.to_string();
            continue;
        }
        let mut buf = [0u8; 1500];
        match s.recv_from(&mut buf) {
            Ok((n, _)) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("{addr}: no answer ({last})"))
}

/// Run `nft -f -` fed with `script` through `cmd` (a command for `["nft", "-f", "-"]` in
/// some namespace); panic with its output on failure.
#[track_caller]
pub fn nft_script(mut cmd: std::process::Command, script: &str) {
    use std::io::Write;
    use std::process::Stdio;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn nft");
    child.stdin.take().expect("stdin").write_all(script.as_bytes()).expect("write nft script");
    let out = child.wait_with_output().expect("wait for nft");
    assert!(
        out.status.success(),
        "nft -f - failed: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The packet count in the output of `nft list counter ...`.
#[track_caller]
pub fn packets_in(listing: &str) -> u64 {
    let mut words = listing.split_whitespace();
    while let Some(w) = words.next() {
        if w == "packets" {
            if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
                return n;
            }
        }
    }
    panic!("no packet count in {listing}")
}

/// Add a counter `name` in a neighbour (`table inet nb_probe`, prerouting, priority -400)
/// counting packets that match `matches`: what actually arrived there.
#[track_caller]
pub fn add_neighbour_counter(nb: &cove_testkit::Neighbour, name: &str, matches: &str) {
    let script = format!(
        "add table inet nb_probe\n\
         add chain inet nb_probe pre {{ type filter hook prerouting priority -400; policy accept; }}\n\
         add counter inet nb_probe {name}\n\
         add rule inet nb_probe pre {matches} counter name \"{name}\"\n"
    );
    nft_script(nb.command(&["nft", "-f", "-"]), &script);
}

/// Packets counted so far by the neighbour counter `name`.
#[track_caller]
pub fn neighbour_counter(nb: &cove_testkit::Neighbour, name: &str) -> u64 {
    packets_in(&nb.sh_ok(&format!("nft list counter inet nb_probe {name}")))
}

/// Like [`add_bridge_counter`] but at bridge prerouting priority -400, before Cove's own
/// bridge rules (-350) can drop the frame (`table bridge cove_test_early`).
#[track_caller]
pub fn add_early_bridge_counter(h: &FakeHost, name: &str, matches: &[&str]) {
    let mut script = format!(
        "add table bridge cove_test_early\n\
         add chain bridge cove_test_early pre {{ type filter hook prerouting priority -400; policy accept; }}\n\
         add counter bridge cove_test_early {name}\n"
    );
    for m in matches {
        script.push_str(&format!(
            "add rule bridge cove_test_early pre {m} counter name \"{name}\"\n"
        ));
    }
    nft_script(h.command(&["nft", "-f", "-"]), &script);
}

/// Packets counted so far by the early bridge counter `name`.
#[track_caller]
pub fn early_bridge_counter(h: &FakeHost, name: &str) -> u64 {
    packets_in(&h.sh_ok(&format!("nft list counter bridge cove_test_early {name}")))
}

/// The host address of `cove port <container> <spec>` that starts with `prefix` (e.g.
/// `0.0.0.0:`), as printed.
#[track_caller]
pub fn published(h: &FakeHost, container: &str, spec: &str, prefix: &str) -> String {
    let r = h.cove(&["port", container, spec]);
    r.ok();
    r.stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} binding for {spec} of {container}:\n{r}"))
        .to_string()
}

/// TCP listeners (`ss -Hltn` lines) of the fake host itself on `port`.
pub fn host_listeners(h: &FakeHost, port: u16) -> Vec<String> {
    h.sh_ok("ss -Hltnp")
        .lines()
        .filter(|l| l.split_whitespace().nth(3).is_some_and(|a| a.ends_with(&format!(":{port}"))))
        .map(str::to_string)
        .collect()
}

/// A container's MAC on its interface `ifname` (from sysfs inside it).
#[track_caller]
pub fn mac_in(h: &FakeHost, container: &str, ifname: &str) -> raw::Mac {
    raw::mac(&exec_ok(h, container, &["cat", &format!("/sys/class/net/{ifname}/address")]))
}
