//! End-to-end: published ports in every `-p` form, reached with real traffic from a LAN
//! neighbour, the host itself (its address, 127.0.0.1) and containers (hairpin), the
//! client's address preserved; conflicts refused without side effects.
//!
//! The fake host's LAN address is 198.51.100.1 (`eth-lan`, neighbour 198.51.100.2) and its
//! "outside" address 203.0.113.1 (`eth-out`, outside host 203.0.113.2).

mod common;

use std::time::Duration;

use common::{
    assert_same_as, assert_served, container_pid, host, host_listeners, inspect, peer_server,
    published, steady, tcp_fetch, udp_ask, udp_echo, wait_until,
};

const LAN_HOST: &str = "198.51.100.1";
const LAN_NB: &str = "198.51.100.2";

#[test]
fn publish_reaches_the_container_from_lan_host_and_loopback_without_a_proxy() {
    let h = host("publish_reaches_the_container_from_lan_host_and_loopback_without_a_proxy");
    let nb = h.add_neighbour("lan", false);
    h.add_probe_counter("lan_8081", "iifname \"eth-lan\" tcp dport 8081");
    h.add_probe_counter("lan_8080", "iifname \"eth-lan\" tcp dport 8080");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.70.1.0/24", "pub"]).ok();
    let publish = ["--network", "pub", "--ip", "10.70.1.10", "-p", "8080:80"];
    let mut extra = publish.to_vec();
    extra.extend_from_slice(&["-p", "127.0.0.1:8081:80"]);
    peer_server(&h, "srv", &extra, &[80]);

    // From the LAN: the container sees the neighbour's own address (no SNAT, no proxy).
    assert_served(&nb.in_netns(|| tcp_fetch("198.51.100.1:8080", 3)), "srv:80", LAN_NB);
    // From the host itself, through its LAN address and through 127.0.0.1.
    let via_addr = h.in_netns(|| tcp_fetch("198.51.100.1:8080", 3));
    assert_served(&via_addr, "srv:80", LAN_HOST);
    let via_lo = h.in_netns(|| tcp_fetch("127.0.0.1:8080", 3));
    assert!(via_lo.as_ref().is_ok_and(|t| t.contains("srv:80")), "127.0.0.1:8080: {via_lo:?}");
    let lo_only = h.in_netns(|| tcp_fetch("127.0.0.1:8081", 3));
    assert!(lo_only.as_ref().is_ok_and(|t| t.contains("srv:80")), "127.0.0.1:8081: {lo_only:?}");

    // A port published on 127.0.0.1 is not reachable from the LAN through the host's
    // address, though the SYN reaches the host (counted); 8080 from the same neighbour is
    // the positive control above.
    let before = h.probe_counter("lan_8081");
    let r = nb.in_netns(|| tcp_fetch("198.51.100.1:8081", 2));
    assert!(r.is_err(), "127.0.0.1:8081 answered the LAN: {r:?}");
    assert!(h.probe_counter("lan_8081") > before, "the LAN probe to :8081 never reached the host");

    // No userland proxy: nothing in the fake host listens on the published ports (Cove
    // only holds bound, non-listening sockets), yet the traffic got through.
    for port in [8080, 8081] {
        assert_eq!(host_listeners(&h, port), Vec::<String>::new(), "a listener on {port}");
    }
    let procs = steady(&h.snapshot()).procs;
    assert!(!procs.iter().any(|p| p.contains("proxy")), "a proxy process: {procs:#?}");

    // `cove port` and inspect report both bindings.
    let r = h.cove(&["port", "srv"]);
    r.ok();
    assert!(r.stdout.contains("80/tcp -> 0.0.0.0:8080"), "{r}");
    assert!(r.stdout.contains("80/tcp -> 127.0.0.1:8081"), "{r}");
    let v = inspect(&h, &["inspect", "srv"]);
    let ports = v["NetworkSettings"]["Ports"]["80/tcp"].to_string();
    assert!(ports.contains("8080") && ports.contains("8081"), "{ports}");

    h.cove(&["rm", "-f", "srv"]).ok();
    // Gone with the container: the port no longer answers (the SYN still arrives).
    let before = h.probe_counter("lan_8080");
    let r = nb.in_netns(|| tcp_fetch("198.51.100.1:8080", 2));
    assert!(r.is_err(), "8080 still answers after rm: {r:?}");
    assert!(h.probe_counter("lan_8080") > before, "the probe to :8080 never reached the host");
    h.cove(&["network", "rm", "pub"]).ok();
    assert_same_as(&h, &baseline, "after removing the published container");
}

#[test]
fn publish_udp_port_echoes_with_the_clients_address() {
    let h = host("publish_udp_port_echoes_with_the_clients_address");
    let nb = h.add_neighbour("lan", false);
    h.add_probe_counter("tcp_8083", "iifname \"eth-lan\" tcp dport 8083");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.70.2.0/24", "udp"]).ok();
    common::sleeper(&h, "u", &["--network", "udp", "-p", "8083:80/udp"]);
    assert_eq!(published(&h, "u", "80/udp", "0.0.0.0:"), "0.0.0.0:8083");
    let echo = udp_echo(&h, "u", 80);

    let r = nb.in_netns(|| udp_ask("198.51.100.1:8083", "ping-lan"));
    assert_eq!(r.as_deref(), Ok("198.51.100.2 ping-lan"), "UDP from the LAN");
    let r = h.in_netns(|| udp_ask("198.51.100.1:8083", "ping-host"));
    assert!(r.as_ref().is_ok_and(|t| t.ends_with("ping-host")), "UDP from the host: {r:?}");
    let r = h.in_netns(|| udp_ask("127.0.0.1:8083", "ping-lo"));
    assert!(r.as_ref().is_ok_and(|t| t.ends_with("ping-lo")), "UDP via 127.0.0.1: {r:?}");
    // TCP on the same number is not published.
    let r = nb.in_netns(|| tcp_fetch("198.51.100.1:8083", 2));
    assert!(r.is_err(), "tcp/8083 answered though only udp was published: {r:?}");
    assert!(h.probe_counter("tcp_8083") > 0, "the TCP probe never reached the host");

    drop(echo);
    h.cove(&["rm", "-f", "u"]).ok();
    h.cove(&["network", "rm", "udp"]).ok();
    assert_same_as(&h, &baseline, "after the UDP test");
}

#[test]
fn ephemeral_ranges_and_publish_all() {
    let h = host("ephemeral_ranges_and_publish_all");
    let nb = h.add_neighbour("lan", false);
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.70.3.0/24", "eph"]).ok();

    // `-p 80`: an ephemeral host port, shown by `cove port` and inspect, that works.
    peer_server(&h, "e1", &["--network", "eph", "-p", "80"], &[80]);
    let bound = published(&h, "e1", "80/tcp", "0.0.0.0:");
    let port: u16 = bound.trim_start_matches("0.0.0.0:").parse().expect("a port number");
    assert!(port >= 1024, "ephemeral port {port}");
    let v = inspect(&h, &["inspect", "e1"]);
    assert_eq!(v["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"], port.to_string(), "{v}");
    let addr = format!("{LAN_HOST}:{port}");
    assert_served(&nb.in_netns(|| tcp_fetch(&addr, 3)), "e1:80", LAN_NB);

    // A range: each host port to its container port.
    peer_server(&h, "e2", &["--network", "eph", "-p", "8090-8091:80-81"], &[80, 81]);
    assert_served(&nb.in_netns(|| tcp_fetch("198.51.100.1:8090", 3)), "e2:80", LAN_NB);
    assert_served(&nb.in_netns(|| tcp_fetch("198.51.100.1:8091", 3)), "e2:81", LAN_NB);
    assert_eq!(published(&h, "e2", "81/tcp", "0.0.0.0:"), "0.0.0.0:8091");

    // `-P` publishes the `--expose`d port on an ephemeral host port.
    peer_server(&h, "e3", &["--network", "eph", "-P", "--expose", "80"], &[80]);
    let bound = published(&h, "e3", "80/tcp", "0.0.0.0:");
    let port3: u16 = bound.trim_start_matches("0.0.0.0:").parse().expect("a port number");
    assert_ne!(port3, port, "two containers got the same ephemeral port");
    let addr = format!("{LAN_HOST}:{port3}");
    assert_served(&nb.in_netns(|| tcp_fetch(&addr, 3)), "e3:80", LAN_NB);

    h.cove(&["rm", "-f", "e1", "e2", "e3"]).ok();
    h.cove(&["network", "rm", "eph"]).ok();
    assert_same_as(&h, &baseline, "after the ephemeral/range/-P test");
}

#[test]
fn containers_reach_published_ports_through_the_host_address_hairpin() {
    let h = host("containers_reach_published_ports_through_the_host_address_hairpin");
    let _nb = h.add_neighbour("lan", false); // gives the host 198.51.100.1
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.70.4.0/24", "ha"]).ok();
    h.cove(&["network", "create", "--subnet", "10.70.5.0/24", "hb"]).ok();
    peer_server(&h, "web", &["--network", "ha", "--ip", "10.70.4.10", "-p", "8080:80"], &[80]);
    common::sleeper(&h, "same", &["--network", "ha"]);
    common::sleeper(&h, "other", &["--network", "hb"]);
    common::sleeper(&h, "dflt", &[]);

    // The container itself, through the host's address (hairpin on its bridge port).
    for from in ["web", "same", "other", "dflt"] {
        let r = h.cove(&["exec", from, "nc", "-w", "3", LAN_HOST, "8080"]);
        assert!(r.stdout.contains("web:80"), "{from} -> {LAN_HOST}:8080 failed:\n{r}");
    }
    // Through the container's own address too (no published-port magic needed).
    let r = h.cove(&["exec", "web", "nc", "-w", "3", "10.70.4.10", "80"]);
    assert!(r.stdout.contains("web:80"), "{r}");

    h.cove(&["rm", "-f", "web", "same", "other", "dflt"]).ok();
    h.cove(&["network", "rm", "ha", "hb"]).ok();
    assert_same_as(&h, &baseline, "after the hairpin test");
}

#[test]
fn a_taken_host_port_is_a_conflict_and_changes_nothing() {
    let h = host("a_taken_host_port_is_a_conflict_and_changes_nothing");
    let nb = h.add_neighbour("lan", false);
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.70.6.0/24", "cf"]).ok();
    peer_server(&h, "first", &["--network", "cf", "-p", "8080:80"], &[80]);

    // Taken by another container: `run` fails with Docker's message, the second container
    // does not run, and nothing changed on the host (links, firewall, processes).
    let before = steady(&h.snapshot());
    let r = h.cove(&[
        "run",
        "-d",
        "--name",
        "dup",
        "--network",
        "cf",
        "-p",
        "8080:80",
        "busybox",
        "sleep",
        "600",
    ]);
    r.fails().stderr_has("port is already allocated");
    // Docker keeps such a container as "created"; either way it must not run.
    let v = h.cove(&["inspect", "dup"]);
    if v.success() {
        assert_eq!(v.json()[0]["State"]["Running"], false, "{v}");
    }
    // Through the API: start answers 409.
    h.cove(&[
        "create",
        "--name",
        "dup2",
        "--network",
        "cf",
        "-p",
        "8080:80",
        "busybox",
        "sleep",
        "600",
    ])
    .ok();
    let (code, body) = h.api("POST", "/v1.45/containers/dup2/start", None);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("port is already allocated"), "{body}");
    assert_same_as(&h, &before, "after the refused duplicate publish");
    assert_served(&nb.in_netns(|| tcp_fetch("198.51.100.1:8080", 3)), "first:80", LAN_NB);
    // The same number over UDP is another port: no conflict.
    common::sleeper(&h, "udp", &["--network", "cf", "-p", "8080:80/udp"]);

    // Taken by a host process: refused the same way, and the process keeps its port.
    let mut holder = h
        .command(&["busybox", "nc", "-l", "-p", "8099"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn nc");
    wait_until("the host's nc to listen on 8099", 10, || !host_listeners(&h, 8099).is_empty());
    let before = steady(&h.snapshot());
    let r = h.cove(&[
        "run",
        "-d",
        "--name",
        "clash",
        "--network",
        "cf",
        "-p",
        "8099:80",
        "busybox",
        "sleep",
        "600",
    ]);
    r.fails().stderr_has("port is already allocated");
    assert_same_as(&h, &before, "after the publish that clashed with a host process");
    let r = nb.in_netns(|| tcp_fetch("198.51.100.1:8099", 2));
    assert!(r.is_ok(), "the host process lost its port: {r:?}");
    let _ = holder.kill();
    let _ = holder.wait();

    // Once the first container is gone its port is free again.
    h.cove(&["rm", "-f", "first", "dup"]).ok();
    let (code, body) = h.api("POST", "/v1.45/containers/dup2/start", None);
    assert_eq!(code, 204, "{body}");
    assert!(container_pid(&h, "dup2") > 0);
    h.cove(&["rm", "-f", "dup2", "udp"]).ok();
    let _ = h.cove(&["rm", "-f", "clash"]);
    h.cove(&["network", "rm", "cf"]).ok();
    assert_same_as(&h, &baseline, "after the conflict test");
}

#[test]
fn a_port_bound_to_one_host_address_is_not_reachable_through_another() {
    let h = host("a_port_bound_to_one_host_address_is_not_reachable_through_another");
    let nb = h.add_neighbour("lan", false);
    let out = h.add_outside("out");
    h.add_probe_counter("out_8084", "iifname \"eth-out\" ip daddr 203.0.113.1 tcp dport 8084");
    h.add_probe_counter("out_8086", "iifname \"eth-out\" ip daddr 203.0.113.1 tcp dport 8086");
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.70.7.0/24", "ad"]).ok();
    let binding = "com.docker.network.bridge.host_binding_ipv4=198.51.100.1";
    h.cove(&["network", "create", "--subnet", "10.70.8.0/24", "-o", binding, "hb"]).ok();
    peer_server(
        &h,
        "s1",
        &["--network", "ad", "-p", "198.51.100.1:8084:80", "-p", "8085:80"],
        &[80],
    );
    peer_server(&h, "s2", &["--network", "hb", "-p", "8086:80"], &[80]);

    // Positive controls: the bound address from the LAN, and the outside host through the
    // host's outside address on a port published on all addresses.
    assert_served(&nb.in_netns(|| tcp_fetch("198.51.100.1:8084", 3)), "s1:80", LAN_NB);
    assert_served(&out.in_netns(|| tcp_fetch("203.0.113.1:8085", 3)), "s1:80", "203.0.113.2");
    // The bound port through the outside address: nothing, though the SYNs arrive.
    let not_via_outside = |port: u16, counter: &str| {
        let before = h.probe_counter(counter);
        let addr = format!("203.0.113.1:{port}");
        let r = out.in_netns(|| tcp_fetch(&addr, 2));
        assert!(r.is_err(), "{addr} answered though bound to 198.51.100.1: {r:?}");
        assert!(h.probe_counter(counter) > before, "the probe to {addr} never reached the host");
    };
    not_via_outside(8084, "out_8084");

    // The network's `host_binding_ipv4` is the default address of its published ports.
    assert_eq!(published(&h, "s2", "80/tcp", ""), "198.51.100.1:8086", "host_binding_ipv4");
    assert_served(&nb.in_netns(|| tcp_fetch("198.51.100.1:8086", 3)), "s2:80", LAN_NB);
    not_via_outside(8086, "out_8086");

    h.cove(&["rm", "-f", "s1", "s2"]).ok();
    h.cove(&["network", "rm", "ad", "hb"]).ok();
    assert_same_as(&h, &baseline, "after the host-address test");
}

#[test]
fn publish_over_ipv6_and_on_ipv6_loopback() {
    let h = host("publish_over_ipv6_and_on_ipv6_loopback");
    let nb = h.add_neighbour("lan", false);
    let baseline = h.snapshot();
    h.cove(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.70.9.0/24",
        "--subnet",
        "2001:db8:70::/64",
        "v6",
    ])
    .ok();
    peer_server(&h, "w6", &["--network", "v6", "-p", "8087:80"], &[80]);

    // The LAN neighbour through the host's IPv6 address; the container sees its address.
    let r = nb.in_netns(|| tcp_fetch("[2001:db8:1::1]:8087", 3));
    assert_served(&r, "w6:80", "2001:db8:1::2");
    let r = h.in_netns(|| tcp_fetch("[2001:db8:1::1]:8087", 3));
    assert!(r.as_ref().is_ok_and(|t| t.contains("w6:80")), "host via its IPv6 address: {r:?}");
    // IPv4 still works for the same container.
    assert_served(&nb.in_netns(|| tcp_fetch("198.51.100.1:8087", 3)), "w6:80", LAN_NB);
    // Docker reports both families of a dual-stack container's binding.
    let r = h.cove(&["port", "w6", "80/tcp"]);
    assert!(r.stdout.contains("0.0.0.0:8087") && r.stdout.contains("[::]:8087"), "{r}");

    // [::1]: Docker serves it with its proxy. Cove has none: the kernel does it. Without
    // br_netfilter on IPv6, the reply un-NATed to ::1 is delivered by the bridge's `local
    // ::1` route; with it, the un-NAT happens at the bridge and the `netdev` chain hands
    // the reply to lo. Both ways are checked (the sysctl is per network namespace: the
    // test sets it in the fake host only).
    const NF6: &str = "/proc/sys/net/bridge/bridge-nf-call-ip6tables";
    let nf6_before = h.in_netns(|| std::fs::read_to_string(NF6).ok());
    let settings: &[Option<&str>] =
        if nf6_before.is_some() { &[Some("1"), Some("0")] } else { &[None] };
    let lo6 = ["--network", "v6", "-p", "[::1]:8082:80"];
    for nf6 in settings {
        if let Some(v) = nf6 {
            h.in_netns(|| std::fs::write(NF6, v)).unwrap();
        }
        peer_server(&h, "lo6", &lo6, &[80]);
        let r = h.in_netns(|| tcp_fetch("[::1]:8082", 3));
        assert!(r.as_ref().is_ok_and(|t| t.contains("lo6:80")), "[::1]:8082 ({nf6:?}): {r:?}");
        // Only ::1: not the host's other addresses, not the LAN.
        let r = nb.in_netns(|| tcp_fetch("[2001:db8:1::1]:8082", 2));
        assert!(r.is_err(), "[::1]:8082 answered the LAN: {r:?}");
        let r = h.in_netns(|| tcp_fetch("[2001:db8:1::1]:8082", 2));
        assert!(r.is_err(), "[::1]:8082 answered on the host's LAN address: {r:?}");
        h.cove(&["rm", "-f", "lo6"]).ok();
    }
    if let Some(v) = nf6_before {
        h.in_netns(|| std::fs::write(NF6, v.trim())).unwrap();
    }
    h.cove(&["rm", "-f", "w6"]).ok();
    h.cove(&["network", "rm", "v6"]).ok();
    assert_same_as(&h, &baseline, "after the IPv6 publish test");
}

// ---- SCTP: libc sockets (std has none); one-to-one style, like TCP ----

/// Whether this kernel speaks SCTP.
fn sctp_available() -> bool {
    // SAFETY: socket(2) has no memory arguments.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_SCTP) };
    if fd < 0 {
        return false;
    }
    // SAFETY: closing the descriptor just made.
    unsafe { libc::close(fd) };
    true
}

fn sctp_socket(timeout_secs: i64) -> Result<std::os::fd::OwnedFd, String> {
    use std::os::fd::FromRawFd;
    // SAFETY: socket(2) has no memory arguments.
    let fd = unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, libc::IPPROTO_SCTP)
    };
    if fd < 0 {
        return Err(format!("sctp socket: {}", std::io::Error::last_os_error()));
    }
    let tv = libc::timeval { tv_sec: timeout_secs, tv_usec: 0 };
    for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: the option value is a valid timeval of the length given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                std::ptr::from_ref(&tv).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

fn sockaddr4(ip: std::net::Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from_ne_bytes(ip.octets()) },
        sin_zero: [0; 8],
    }
}

const SIN_LEN: u32 = std::mem::size_of::<libc::sockaddr_in>() as u32;

/// An SCTP server on 0.0.0.0:`port` in `container`'s netns that answers one association
/// with `sctp <peer address>` (served by a test thread, within 15 s).
fn sctp_server(
    h: &cove_testkit::FakeHost,
    container: &str,
    port: u16,
) -> std::thread::JoinHandle<()> {
    use std::os::fd::AsRawFd;
    let ns = common::container_netns(h, container);
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        // SAFETY: setns(2) on an open namespace descriptor, for this thread only.
        let r = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
        let fd = sctp_socket(15).expect("sctp socket");
        let sa = sockaddr4(std::net::Ipv4Addr::UNSPECIFIED, port);
        // SAFETY: `sa` is a valid sockaddr_in of the length given.
        let r = unsafe { libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&sa).cast(), SIN_LEN) };
        assert_eq!(r, 0, "sctp bind: {}", std::io::Error::last_os_error());
        // SAFETY: listen(2) has no memory arguments.
        assert_eq!(unsafe { libc::listen(fd.as_raw_fd(), 4) }, 0, "sctp listen");
        let _ = tx.send(());
        // SAFETY: a zeroed sockaddr_in is valid; the lengths match.
        let mut peer: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = SIN_LEN;
        // SAFETY: `peer` and `len` are valid for the lengths given.
        let c =
            unsafe { libc::accept(fd.as_raw_fd(), std::ptr::from_mut(&mut peer).cast(), &mut len) };
        if c < 0 {
            return; // nobody came (the client reports that)
        }
        let ip = std::net::Ipv4Addr::from(peer.sin_addr.s_addr.to_ne_bytes());
        let msg = format!("sctp {ip}");
        // SAFETY: the buffer is valid for its length; `c` is our accepted socket.
        unsafe {
            libc::write(c, msg.as_ptr().cast(), msg.len());
            libc::close(c);
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("the SCTP server did not start");
    handle
}

/// Connect over SCTP to `ip:port` from the calling thread's netns; what the server sent.
fn sctp_fetch(ip: std::net::Ipv4Addr, port: u16) -> Result<String, String> {
    use std::os::fd::AsRawFd;
    let fd = sctp_socket(3)?;
    let sa = sockaddr4(ip, port);
    // SAFETY: `sa` is a valid sockaddr_in of the length given.
    let r = unsafe { libc::connect(fd.as_raw_fd(), std::ptr::from_ref(&sa).cast(), SIN_LEN) };
    if r != 0 {
        return Err(format!("sctp connect {ip}:{port}: {}", std::io::Error::last_os_error()));
    }
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Err(format!("sctp read: {}", std::io::Error::last_os_error()));
    }
    Ok(String::from_utf8_lossy(&buf[..n as usize]).into_owned())
}

#[test]
fn publish_sctp_port() {
    if !sctp_available() {
        cove_testkit::skip!(
            "this kernel has no SCTP (socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP) fails)"
        );
    }
    let h = host("publish_sctp_port");
    let nb = h.add_neighbour("lan", false);
    let baseline = h.snapshot();
    h.cove(&["network", "create", "--subnet", "10.70.10.0/24", "sc"]).ok();
    common::sleeper(&h, "s", &["--network", "sc", "-p", "8096:80/sctp"]);
    assert_eq!(published(&h, "s", "80/sctp", "0.0.0.0:"), "0.0.0.0:8096");
    let server = sctp_server(&h, "s", 80);
    let lan: std::net::Ipv4Addr = LAN_HOST.parse().unwrap();
    let r = nb.in_netns(|| sctp_fetch(lan, 8096));
    assert_eq!(r.as_deref(), Ok("sctp 198.51.100.2"), "SCTP from the LAN");
    server.join().expect("SCTP server");
    h.cove(&["rm", "-f", "s"]).ok();
    h.cove(&["network", "rm", "sc"]).ok();
    assert_same_as(&h, &baseline, "after the SCTP test");
}

#[test]
fn ip6tables_false_keeps_ipv4_publishing_and_programs_nothing_for_ipv6() {
    let h = common::host_with("ip6tables_false", |_| {}, &["--ip6tables=false"]);
    let nb = h.add_neighbour("lan", false);
    let baseline = h.snapshot();
    let net = ["--ipv6", "--subnet", "10.70.11.0/24", "--subnet", "2001:db8:71::/64", "d6"];
    h.cove(&[&["network", "create"][..], &net].concat()).ok();
    peer_server(&h, "w", &["--network", "d6", "-p", "8091:80"], &[80]);
    // IPv4 is programmed as usual (positive control).
    assert_served(&nb.in_netns(|| tcp_fetch("198.51.100.1:8091", 3)), "w:80", LAN_NB);
    // Nothing for IPv6: no IPv6 subnet or published port in the tables, no ::1 route.
    let ruleset = h.sh_ok("nft list ruleset");
    assert!(ruleset.contains("dnat4_any"), "{ruleset}");
    for set in ["subnets6", "dnat6_any", "masq6"] {
        let listed = h.sh_ok(&format!(
            "nft list {} inet cove {set}",
            if set.starts_with("dnat") { "map" } else { "set" }
        ));
        assert!(
            !listed.contains("elements"),
            "{set} has elements with --ip6tables=false: {listed}"
        );
    }
    let netdev = h.sh_ok("nft list table netdev cove");
    assert!(!netdev.contains("chain"), "an IPv6 loopback chain: {netdev}");
    assert!(!h.sh_ok("ip -6 route show table local").contains("local ::1 dev br-"));
    // [::1] needs the IPv6 firewall: refused, nothing created.
    let r = h.cove(&[
        "run",
        "-d",
        "--name",
        "l6",
        "--network",
        "d6",
        "-p",
        "[::1]:8092:80",
        "busybox",
        "sleep",
        "60",
    ]);
    r.fails().stderr_has("--ip6tables=false");
    assert_eq!(h.cove(&["ps", "-aq", "--filter", "name=l6"]).out(), "");
    h.cove(&["rm", "-f", "w"]).ok();
    h.cove(&["network", "rm", "d6"]).ok();
    assert_same_as(&h, &baseline, "after the --ip6tables=false test");
}
