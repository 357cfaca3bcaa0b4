// SPDX-License-Identifier: Apache-2.0
//! The tunnel's two kernel handles, made inside the tunnel's network namespace: the TUN
//! device (created, sized, addressed and set up) and the UDP socket on the underlay.
//!
//! Both are made on a throwaway OS thread that entered the namespace (never a tokio worker:
//! a worker left in another namespace would corrupt later work on it). A TUN device and a
//! socket belong to the namespace they were created in, whichever thread uses them later.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use nix::sched::{setns, CloneFlags};

use crate::error::TunnelError;
use crate::Offloads;

/// `TUNSETIFF`: `_IOW('T', 202, int)` (linux/if_tun.h).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// Layer-3 device: packets are IP packets, no Ethernet header (linux/if_tun.h).
const IFF_TUN: libc::c_short = 0x0001;
/// No 4-byte packet-information prefix on reads and writes (linux/if_tun.h).
const IFF_NO_PI: libc::c_short = 0x1000;
/// A `virtio_net_hdr` before every packet read or written (linux/if_tun.h).
const IFF_VNET_HDR: libc::c_short = 0x4000;
/// `TUNSETOFFLOAD`: `_IOW('T', 208, unsigned int)`.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `TUNSETVNETHDRSZ`: `_IOW('T', 216, int)`.
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
/// `TUN_F_*` (linux/if_tun.h): what we can take from the kernel.
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;
/// TSO/USO inside a UDP tunnel (Linux 6.17+), with and without an outer UDP checksum.
const TUN_F_UDP_TUNNEL_GSO: libc::c_uint = 0x80;
const TUN_F_UDP_TUNNEL_GSO_CSUM: libc::c_uint = 0x100;

/// `struct ifreq` with the `ifr_flags` member of its union (linux/if.h): 40 bytes.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// What [`open`] makes.
#[derive(Debug)]
pub(crate) struct Handles {
    /// The TUN device's queue (non-blocking). Closing it removes the device: it is not
    /// persistent, so a dead process leaves no interface behind.
    pub(crate) tun: OwnedFd,
    /// The underlay socket (non-blocking).
    pub(crate) udp: UdpSocket,
    /// The TUN device's interface index.
    pub(crate) ifindex: u32,
    /// What the TUN device was opened with.
    pub(crate) offloads: Offloads,
}

/// What the device needs.
#[derive(Debug, Clone)]
pub(crate) struct DeviceSpec {
    pub(crate) netns: Option<PathBuf>,
    pub(crate) ifname: String,
    pub(crate) addr: IpNet,
    pub(crate) mtu: u32,
    pub(crate) listen: SocketAddr,
    /// Whether to ask for TUN offloads.
    pub(crate) offload: bool,
}

/// Create the TUN device and the UDP socket in `spec.netns` (the caller's netns when
/// `None`), on a thread of their own. On failure nothing is left: the device goes with its
/// fd.
pub(crate) fn open(spec: &DeviceSpec) -> Result<Handles, TunnelError> {
    let spec = spec.clone();
    std::thread::Builder::new()
        .name("cvwg-setup".into())
        .spawn(move || open_here(&spec))
        .map_err(|source| TunnelError::Thread { name: "cvwg-setup".into(), source })?
        .join()
        .map_err(|_| TunnelError::Config("the setup thread panicked".into()))?
}

fn open_here(spec: &DeviceSpec) -> Result<Handles, TunnelError> {
    if let Some(path) = &spec.netns {
        enter_netns(path)?;
    }
    let (tun, offloads) = create_tun(&spec.ifname, spec.offload)
        .map_err(|source| TunnelError::Tun { ifname: spec.ifname.clone(), source })?;
    let link_err = |what: &str, source| TunnelError::Link {
        ifname: spec.ifname.clone(),
        what: what.into(),
        source,
    };
    let ifindex = nix::net::if_::if_nametoindex(spec.ifname.as_str())
        .map_err(|e| link_err("look up its index", e.into()))?;
    if spec.addr.addr().is_ipv4() {
        // Nothing speaks IPv6 over an IPv4 tunnel; without this the kernel's own IPv6
        // chatter (router solicitations, MLD reports) is read from the device and dropped
        // as having no peer. Missing when IPv6 is disabled altogether: fine.
        let key = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", spec.ifname);
        match std::fs::write(&key, "1") {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(link_err("disable IPv6 on it", e));
            }
            _ => {}
        }
    }
    configure_link(ifindex, spec.addr, spec.mtu).map_err(|(what, e)| link_err(what, e))?;
    let udp = UdpSocket::bind(spec.listen)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .map_err(|source| TunnelError::Bind { addr: spec.listen, source })?;
    crate::batch::enable_gro(udp.as_raw_fd());
    crate::batch::grow_buffers(udp.as_raw_fd());
    Ok(Handles { tun, udp, ifindex, offloads })
}

fn enter_netns(path: &Path) -> Result<(), TunnelError> {
    let err = |source| TunnelError::Netns { path: path.to_owned(), source };
    let f = File::open(path).map_err(err)?;
    setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| err(e.into()))
}

/// Open `/dev/net/tun` and attach a new layer-3 device named `ifname` to it, in the calling
/// thread's netns (the device's netns is the opener's). With `offload`, the device carries
/// a virtio header and takes the largest set of offloads this kernel accepts; when it
/// accepts not even TSO, the device is made again without the header.
fn create_tun(ifname: &str, offload: bool) -> std::io::Result<(OwnedFd, Offloads)> {
    if ifname.is_empty() || ifname.len() >= libc::IFNAMSIZ || ifname.contains(['/', ' ']) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?} is empty, too long or has / or space"),
        ));
    }
    if offload {
        let fd = attach(ifname, IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)?;
        match enable_offloads(&fd) {
            Ok(o) => return Ok((fd, o)),
            // Closing the fd removes the device, so the name is free again.
            Err(e) => tracing::info!("{ifname}: no TUN offloads ({e}); one packet per call"),
        }
    }
    Ok((attach(ifname, IFF_TUN | IFF_NO_PI)?, Offloads::default()))
}

fn attach(ifname: &str, flags: libc::c_short) -> std::io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open("/dev/net/tun")?;
    let mut req = IfReqFlags { name: [0; libc::IFNAMSIZ], flags, _pad: [0; 22] };
    for (d, s) in req.name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is (same layout
    // and size, 40 bytes); the fd is open for the whole call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReqFlags) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OwnedFd::from(file))
}

/// Size the virtio header and enable the most offloads the kernel takes, richest first:
/// TSO and USO inside UDP tunnels (6.17+), USO (6.2+), TSO.
fn enable_offloads(fd: &OwnedFd) -> std::io::Result<Offloads> {
    let size = crate::offload::VNET_HDR_LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which points at `size`.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ, &size as *const libc::c_int) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    let uso = tso | TUN_F_USO4 | TUN_F_USO6;
    let tunnel = uso | TUN_F_UDP_TUNNEL_GSO | TUN_F_UDP_TUNNEL_GSO_CSUM;
    let mut last = None;
    for flags in [tunnel, uso, tso] {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; the fd is open.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) } == 0 {
            return Ok(Offloads {
                vnet_hdr: true,
                tso: true,
                uso: flags & TUN_F_USO4 != 0,
                udp_tunnel: flags & TUN_F_UDP_TUNNEL_GSO != 0,
            });
        }
        last = Some(std::io::Error::last_os_error());
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("TUNSETOFFLOAD")))
}

use std::os::unix::fs::OpenOptionsExt;

/// MTU, address and up, over rtnetlink from the calling thread's netns (a runtime of its
/// own on this throwaway thread).
fn configure_link(index: u32, addr: IpNet, mtu: u32) -> Result<(), (&'static str, std::io::Error)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| ("start a netlink runtime", e))?;
    rt.block_on(async move {
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| ("open a netlink socket", e))?;
        let conn = tokio::spawn(conn);
        let nl = std::io::Error::other;
        let msg = rtnetlink::LinkUnspec::new_with_index(index).mtu(mtu).build();
        handle.link().set(msg).execute().await.map_err(|e| ("set its MTU", nl(e)))?;
        handle
            .address()
            .add(index, addr.addr(), addr.prefix_len())
            .execute()
            .await
            .map_err(|e| ("add its address", nl(e)))?;
        let msg = rtnetlink::LinkUnspec::new_with_index(index).up().build();
        handle.link().set(msg).execute().await.map_err(|e| ("set it up", nl(e)))?;
        conn.abort();
        Ok(())
    })
}
