// SPDX-License-Identifier: Apache-2.0
//! Privileged test harness of cove-tunnel: every test runs inside a network namespace and a
//! private mount namespace of its own (as in cove-kernel's tests), and builds its "hosts" as
//! further namespaces there, joined by an underlay switch (a bridge in a namespace of its
//! own) with TEST-NET-3 addresses 203.0.113.1N. Tunnel addresses are 10.255.0.N/16,
//! containers 10.0.9.N+1/24. Nothing touches the real host's links, routes or sysctls.

#![allow(dead_code)]

pub mod wggo;

use std::future::Future;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cove_tunnel::{Peer, PrivateKey, Tunnel, TunnelConfig};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Inode of the netns of the calling thread.
pub fn thread_netns_inode() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net").expect("stat own netns").ino()
}

/// Run `f` on a new thread that first unshares its netns and mount ns (made private
/// recursively, so no mount leaks to the host), mounts a tmpfs on the temp dir and on
/// `/run` (wireguard-go and `wg` keep their sockets in `/run/wireguard`), then runs
/// `f(scratch_dir)` on a current-thread runtime inside those namespaces. Panics (never
/// skips silently) when not root or when the namespaces cannot be created.
pub fn in_fresh_netns<F, Fut>(f: F)
where
    F: FnOnce(PathBuf) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    assert!(
        nix::unistd::geteuid().is_root(),
        "cove-tunnel integration tests need root (CAP_SYS_ADMIN, CAP_NET_ADMIN): run them as \
         root; each test creates and uses only its own network and mount namespaces"
    );
    let res = std::thread::spawn(move || {
        let before = thread_netns_inode();
        unshare(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
            .unwrap_or_else(|e| panic!("cannot unshare net+mount namespaces: {e}"));
        assert_ne!(thread_netns_inode(), before, "unshare did not give a fresh netns");
        mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
            .unwrap_or_else(|e| panic!("cannot make / private in the test mount ns: {e}"));
        let base = std::env::temp_dir();
        for (dir, size) in [(base.as_path(), "64m"), (Path::new("/run"), "16m")] {
            mount(
                Some("tmpfs"),
                dir,
                Some("tmpfs"),
                MsFlags::empty(),
                Some(format!("mode=0755,size={size}").as_str()),
            )
            .unwrap_or_else(|e| panic!("cannot mount a tmpfs on {}: {e}", dir.display()));
        }
        let scratch = base.join("cove-tunnel-test");
        std::fs::create_dir_all(&scratch).expect("scratch dir");
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.block_on(async move { f(scratch).await })
        }));
        drop(rt);
        let _ = umount2("/run", MntFlags::MNT_DETACH);
        let _ = umount2(&base, MntFlags::MNT_DETACH);
        if let Err(p) = out {
            std::panic::resume_unwind(p);
        }
    })
    .join();
    if let Err(p) = res {
        std::panic::resume_unwind(p);
    }
}

/// Run `f` on a thread that entered the netns mounted at `path`.
pub fn in_netns<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Run a command from a thread inside the netns at `path` and return its stdout; panics
/// with its stderr when it fails.
pub fn run_in(ns: &Path, cmd: &[&str]) -> String {
    try_run_in(ns, cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// Run a command inside the netns at `path`: its stdout, or the failure with stderr.
pub fn try_run_in(ns: &Path, cmd: &[&str]) -> Result<String, String> {
    let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    in_netns(ns, move || {
        let out = std::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            .output()
            .map_err(|e| format!("{cmd:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

/// Run each line of `script` as an `ip`/`bridge`/... command in `ns`.
pub fn sh(ns: &Path, script: &str) {
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        run_in(ns, &words);
    }
}

/// Poll `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A simulated host: its namespace and its addresses.
#[derive(Debug, Clone)]
pub struct Host {
    pub n: u8,
    pub ns: PathBuf,
    pub underlay: IpAddr,
    pub tunnel_ip: IpAddr,
    pub container: PathBuf,
    pub container_ip: IpAddr,
}

impl Host {
    /// The UDP address the host's tunnel listens on.
    pub fn listen(&self) -> SocketAddr {
        SocketAddr::new(self.underlay, cove_tunnel::DEFAULT_PORT)
    }

    /// This host as a peer of others, with `key`'s public key.
    pub fn peer(&self, key: &PrivateKey) -> Peer {
        Peer { public_key: key.public_key(), endpoint: self.listen(), allowed_ip: self.tunnel_ip }
    }

    /// The configuration of this host's Cove tunnel (`cvwg0`, MTU 1420).
    pub fn tunnel_config(&self, key: &PrivateKey) -> TunnelConfig {
        TunnelConfig {
            netns: Some(self.ns.clone()),
            ifname: "cvwg0".into(),
            tunnel_addr: ipnet::IpNet::new(self.tunnel_ip, 16).unwrap(),
            mtu: 1420,
            listen: self.listen(),
            key: key.clone(),
        }
    }

    /// Start a Cove tunnel (`cvwg0`, MTU 1420) in this host.
    pub fn tunnel(&self, key: &PrivateKey) -> Tunnel {
        Tunnel::start(self.tunnel_config(key))
            .unwrap_or_else(|e| panic!("start the tunnel in h{}: {e:?}", self.n))
    }
}

/// Turn IPv6 off in the namespace `ns` (every link, present and future), so the kernel's
/// own IPv6 chatter (router solicitations, MLD) stays off the captured links.
pub fn quiet_ipv6(ns: &Path) {
    in_netns(ns, || {
        for k in ["default", "all"] {
            std::fs::write(format!("/proc/sys/net/ipv6/conf/{k}/disable_ipv6"), "1").unwrap();
        }
    });
}

/// `n` hosts h1..hn on an underlay switch (a bridge in the namespace `ul`), each with
/// `ul0` at 203.0.113.1N/24.
pub async fn hosts(dir: &Path, n: u8) -> Vec<Host> {
    let k = cove_kernel::Kernel::new().await.unwrap();
    let sw = dir.join("netns/ul");
    k.create_netns(&sw).await.unwrap();
    quiet_ipv6(&sw);
    sh(&sw, "ip link add sw0 type bridge\nip link set sw0 up");
    let mut out = Vec::new();
    for i in 1..=n {
        let h = Host {
            n: i,
            ns: dir.join(format!("netns/h{i}")),
            underlay: format!("203.0.113.1{i}").parse().unwrap(),
            tunnel_ip: format!("10.255.0.{i}").parse().unwrap(),
            container: dir.join(format!("netns/c{i}")),
            container_ip: format!("10.0.9.{}", i + 1).parse().unwrap(),
        };
        k.create_netns(&h.ns).await.unwrap();
        quiet_ipv6(&h.ns);
        let swp = format!("h{i}");
        run_in(
            &h.ns,
            &[
                "ip",
                "link",
                "add",
                "ul0",
                "type",
                "veth",
                "peer",
                "name",
                &swp,
                "netns",
                &path(&sw),
            ],
        );
        sh(&sw, &format!("ip link set {swp} master sw0\nip link set {swp} up"));
        sh(&h.ns, &format!("ip addr add {}/24 dev ul0\nip link set ul0 up", h.underlay));
        out.push(h);
    }
    out
}

pub fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The MAC of host `n`'s container (fixed, so tests can pin neighbour entries).
pub fn container_mac(n: u8) -> String {
    format!("02:42:0a:00:09:{:02x}", n + 1)
}

/// On `h`: bridge `br{vni}` with VXLAN device `vx{vni}` (VNI `vni`, `local`, every frame to
/// `remote` via the all-zero forwarding entry, MTU `mtu`) and the host's container on it
/// (`eth0`, MAC [`container_mac`], `ip`/24, MTU `mtu`), with a permanent neighbour entry
/// for the other container so probes need no ARP. Containers are created on first use.
pub async fn overlay(
    h: &Host,
    vni: u32,
    local: IpAddr,
    remote: IpAddr,
    mtu: u32,
    peer: (IpAddr, u8),
) {
    let c = h.container.with_file_name(format!("c{}-{vni}", h.n));
    if !c.exists() {
        cove_kernel::Kernel::new().await.unwrap().create_netns(&c).await.unwrap();
        quiet_ipv6(&c);
    }
    let (br, vx, port) = (format!("br{vni}"), format!("vx{vni}"), format!("cv{vni}"));
    sh(
        &h.ns,
        &format!(
            "ip link add {br} mtu {mtu} type bridge
             ip link set {br} up
             ip link add {vx} mtu {mtu} type vxlan id {vni} local {local} dstport 4789 nolearning
             ip link set {vx} master {br}
             ip link set {vx} up
             bridge fdb append 00:00:00:00:00:00 dev {vx} dst {remote}
             ip link add {port} mtu {mtu} master {br} type veth peer name eth0 mtu {mtu} netns {cns} address {mac}
             ip link set {port} up",
            cns = path(&c),
            mac = container_mac(h.n),
        ),
    );
    sh(
        &c,
        &format!(
            "ip addr add {ip}/24 dev eth0
             ip link set eth0 up
             ip neigh replace {pip} lladdr {pmac} dev eth0 nud permanent",
            ip = h.container_ip,
            pip = peer.0,
            pmac = container_mac(peer.1),
        ),
    );
}

/// The container namespace [`overlay`] made for `h` and `vni`.
pub fn container(h: &Host, vni: u32) -> PathBuf {
    h.container.with_file_name(format!("c{}-{vni}", h.n))
}

/// A link counter from `ip -s -s -j link show` (`tx.packets`, `tx.errors`, `rx.bytes`...).
pub fn link_counter(ns: &Path, link: &str, dir: &str, field: &str) -> u64 {
    let out = run_in(ns, &["ip", "-s", "-s", "-j", "link", "show", "dev", link]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    v[0]["stats64"][dir][field].as_u64().unwrap_or_else(|| panic!("{dir}.{field} in {out}"))
}

/// A TCP listener in `ns` on `at`.
pub fn listen_in(ns: &Path, at: SocketAddr) -> TcpListener {
    in_netns(ns, move || TcpListener::bind(at).unwrap())
}

/// Connect from `ns` to `to` (3 s timeout).
pub fn connect_from(ns: &Path, to: SocketAddr) -> std::io::Result<TcpStream> {
    in_netns(ns, move || {
        let s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(s)
    })
}

/// TCP from `from` to `to` (served by `l`): a message out, its echo back. The serving end
/// runs on a thread of its own, so messages larger than the socket buffers work.
pub fn tcp_round_trip(from: &Path, to: SocketAddr, l: &TcpListener, msg: &[u8]) {
    let l = l.try_clone().unwrap();
    let len = msg.len();
    let server = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = vec![0u8; len];
        s.read_exact(&mut got).unwrap();
        s.write_all(&got).unwrap();
        got
    });
    let mut c = connect_from(from, to).unwrap_or_else(|e| panic!("connect to {to}: {e}"));
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(msg).unwrap();
    let mut back = vec![0u8; len];
    c.read_exact(&mut back).unwrap();
    assert!(server.join().unwrap() == msg, "the server got the message");
    assert!(back == msg, "the echo came back whole");
}

/// A UDP socket bound in `ns` (700 ms read timeout).
pub fn udp_in(ns: &Path, at: SocketAddr) -> UdpSocket {
    in_netns(ns, move || {
        let s = UdpSocket::bind(at).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        s
    })
}

/// Send `payload` from a socket bound to `from` in `ns` to `to`, up to `tries` times until
/// `rx` gets it; whether it did.
pub fn udp_arrives(
    ns: &Path,
    from: SocketAddr,
    to: SocketAddr,
    rx: &UdpSocket,
    payload: &[u8],
    tries: usize,
) -> bool {
    let tx = udp_in(ns, from);
    let mut buf = vec![0u8; 65536];
    for _ in 0..tries {
        tx.send_to(payload, to).unwrap();
        loop {
            match rx.recv_from(&mut buf) {
                Ok((n, _)) if &buf[..n] == payload => return true,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    false
}

/// What a capture saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub frames: u64,
    /// UDP datagrams from or to port 4789 (VXLAN).
    pub vxlan: u64,
    /// UDP datagrams from or to port 51820 (the tunnel).
    pub wireguard: u64,
    /// Other UDP datagrams.
    pub other_udp: u64,
    /// VXLAN datagrams by VNI.
    pub vnis: std::collections::BTreeMap<u32, u64>,
    /// Frames containing the marker.
    pub marker: u64,
    /// Frames the kernel dropped before the capture read them (PACKET_STATISTICS).
    pub dropped: u64,
}

/// An AF_PACKET capture of every frame in and out of one link, on a thread of its own.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Seen>>,
}

impl Capture {
    /// Start capturing on `link` in `ns`, counting frames containing `marker`. The socket
    /// is bound before this returns: every frame after it is seen.
    pub fn start(ns: &Path, link: &str, marker: &[u8]) -> Capture {
        let link = link.to_string();
        let fd = in_netns(ns, move || open_packet_socket(&link));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, marker) = (stop.clone(), marker.to_vec());
        let thread = std::thread::spawn(move || capture_loop(fd, &s, &marker));
        Capture { stop, thread: Some(thread) }
    }

    /// Stop (after reading what is queued) and report.
    pub fn finish(mut self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_packet_socket(link: &str) -> OwnedFd {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the fd is owned right after.
    let fd =
        unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto as i32) };
    assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just created and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let index = nix::net::if_::if_nametoindex(link).expect("capture link index");
    // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: binds a valid sockaddr_ll of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "bind the capture: {}", std::io::Error::last_os_error());
    let big: libc::c_int = 16 << 20;
    // SAFETY: an int option of the right size; FORCE works as root past rmem_max.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&raw const big).cast(),
            4,
        )
    };
    fd
}

fn capture_loop(fd: OwnedFd, stop: &AtomicBool, marker: &[u8]) -> Seen {
    let mut seen = Seen::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        let flags = if stopping { libc::MSG_DONTWAIT } else { 0 };
        let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        if !stopping {
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 50) };
            if p.revents == 0 {
                continue;
            }
        }
        // SAFETY: reading into `buf` of its own length.
        let n = unsafe {
            libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags | libc::MSG_TRUNC)
        };
        if n < 0 {
            if stopping {
                break;
            }
            continue;
        }
        let n = (n as usize).min(buf.len());
        classify(&buf[..n], marker, &mut seen);
    }
    #[repr(C)]
    struct TpacketStats {
        packets: u32,
        drops: u32,
    }
    let mut st = TpacketStats { packets: 0, drops: 0 };
    let mut len = std::mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: PACKET_STATISTICS fills a struct tpacket_stats of the size given.
    unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&raw mut st).cast(),
            &mut len,
        )
    };
    seen.dropped = st.drops as u64;
    seen
}

fn classify(frame: &[u8], marker: &[u8], seen: &mut Seen) {
    seen.frames += 1;
    if !marker.is_empty() && frame.windows(marker.len()).any(|w| w == marker) {
        seen.marker += 1;
    }
    if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
        return;
    }
    let ip = &frame[14..];
    let ihl = (ip[0] & 0x0f) as usize * 4;
    if ip[9] != 17 || ip.len() < ihl + 8 {
        return;
    }
    let udp = &ip[ihl..];
    let (sport, dport) =
        (u16::from_be_bytes([udp[0], udp[1]]), u16::from_be_bytes([udp[2], udp[3]]));
    if sport == 4789 || dport == 4789 {
        seen.vxlan += 1;
        if udp.len() >= 16 {
            let vni = u32::from_be_bytes([0, udp[12], udp[13], udp[14]]);
            *seen.vnis.entry(vni).or_default() += 1;
        }
    } else if sport == 51820 || dport == 51820 {
        seen.wireguard += 1;
    } else {
        seen.other_udp += 1;
    }
}

/// A random marker `COVE-LEAK-<hex>`.
pub fn marker() -> String {
    let k = PrivateKey::generate().unwrap().to_bytes();
    let hex: String = k[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("COVE-LEAK-{hex}")
}

/// User + system CPU time in a `/proc/.../stat` line (fields 14 and 15, in clock ticks).
pub fn cpu_of_stat(stat: &str) -> Duration {
    // The command name (field 2) may hold spaces: count fields after its closing paren.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return Duration::ZERO };
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 1000 / hz)
}

/// CPU time of this process's threads whose name starts with `prefix` (`cvwg-`: Cove's
/// tunnel threads).
pub fn threads_cpu(prefix: &str) -> Duration {
    let mut total = Duration::ZERO;
    for t in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            total +=
                cpu_of_stat(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default());
        }
    }
    total
}

/// Byte `i` of a test stream: period 16 KiB, so chunks of any multiple of it line up.
pub fn pattern(i: usize) -> u8 {
    let j = i % (1 << 14);
    (j.wrapping_mul(31) ^ (j >> 7)) as u8
}

/// Send `total` bytes of [`pattern`] from `from` to `to` (served by `l`) over one TCP
/// connection and assert that every byte arrived, in order.
pub fn large_transfer(from: &Path, l: TcpListener, to: SocketAddr, total: usize) {
    let reader = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (mut got, mut buf, mut bad) = (0usize, vec![0u8; 1 << 16], 0usize);
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                return (got, bad);
            }
            bad += buf[..n].iter().enumerate().filter(|(i, b)| **b != pattern(got + i)).count();
            got += n;
        }
    });
    let mut c = connect_from(from, to).unwrap_or_else(|e| panic!("connect to {to}: {e}"));
    let chunk: Vec<u8> = (0..1 << 16).map(pattern).collect();
    for _ in 0..total / chunk.len() {
        c.write_all(&chunk).unwrap();
    }
    drop(c);
    let (got, bad) = reader.join().unwrap();
    assert_eq!((got, bad), (total, 0), "bytes received, bytes wrong");
}
