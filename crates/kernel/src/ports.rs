//! Host-port reservations for published ports. Like Docker, Cove binds (but does not
//! listen on) a socket for every published host port and holds it while the container
//! runs: a port taken by another container or a host process is a clear conflict, and
//! nothing else on the host can take it later. The traffic itself never touches these
//! sockets: the kernel DNATs it (see `cove-firewall`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;

use nix::sys::socket::{
    bind, getsockname, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockProtocol,
    SockType, SockaddrStorage,
};

use cove_model::{Error, PortBinding, Proto, Result};

/// Sockets held for the published ports of running containers.
#[derive(Debug, Default)]
pub struct PortReservations {
    held: HashMap<String, Vec<OwnedFd>>,
}

fn protocol(proto: Proto) -> (SockType, SockProtocol) {
    match proto {
        Proto::Tcp => (SockType::Stream, SockProtocol::Tcp),
        Proto::Udp => (SockType::Datagram, SockProtocol::Udp),
        Proto::Sctp => (SockType::Stream, SockProtocol::Sctp),
    }
}

/// Bind one socket; returns it and the port the kernel gave (for port 0).
fn reserve_one(ip: IpAddr, port: u16, proto: Proto) -> Result<(OwnedFd, u16)> {
    let (ty, p) = protocol(proto);
    let family = if ip.is_ipv6() { AddressFamily::Inet6 } else { AddressFamily::Inet };
    let fd = socket(family, ty, SockFlag::SOCK_CLOEXEC, p)
        .map_err(|e| Error::unavailable(format!("cannot reserve {proto} port {port}: {e}")))?;
    if ip.is_ipv6() {
        // [::]:port must not also claim the IPv4 port; that is reserved separately.
        let _ = setsockopt(&fd, sockopt::Ipv6V6Only, &true);
    }
    let addr = SockaddrStorage::from(SocketAddr::new(ip, port));
    let shown = if ip.is_ipv6() { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr).map_err(|e| match e {
        nix::errno::Errno::EADDRINUSE => {
            Error::conflict(format!("Bind for {shown} failed: port is already allocated"))
        }
        nix::errno::Errno::EADDRNOTAVAIL => {
            Error::invalid(format!("cannot publish on {ip}: it is not an address of this host"))
        }
        e => Error::unavailable(format!("bind {proto} {shown}: {e}")),
    })?;
    let bound: SockaddrStorage = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd))
        .map_err(|e| Error::internal(format!("getsockname: {e}")))?;
    let port = bound
        .as_sockaddr_in()
        .map(|a| a.port())
        .or_else(|| bound.as_sockaddr_in6().map(|a| a.port()))
        .unwrap_or(port);
    Ok((fd, port))
}

/// The host addresses a binding listens on: its own, or (none given) every address of each
/// family the container has: `0.0.0.0`, and `::` when it has IPv6.
fn host_ips(b: &PortBinding, has_v6: bool) -> Vec<IpAddr> {
    match b.host_ip {
        Some(ip) => vec![ip],
        None if has_v6 => {
            vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED), IpAddr::V6(Ipv6Addr::UNSPECIFIED)]
        }
        None => vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
    }
}

impl PortReservations {
    /// Reserve every binding of a container (all or nothing); returns the bindings with
    /// the host addresses and ports actually bound (ephemeral ones chosen by the kernel).
    pub fn reserve(
        &mut self,
        container_id: &str,
        bindings: &[PortBinding],
        has_v6: bool,
    ) -> Result<Vec<PortBinding>> {
        let mut held = vec![];
        let mut actual = vec![];
        for b in bindings {
            // One entry per family actually bound (as Docker reports them), all on the
            // port the first bind got.
            let mut port = b.host_port;
            for ip in host_ips(b, has_v6) {
                let (fd, p) = reserve_one(ip, port, b.protocol)?;
                held.push(fd);
                port = p;
                actual.push(PortBinding { host_ip: Some(ip), host_port: port, ..b.clone() });
            }
        }
        self.held.insert(container_id.to_string(), held);
        Ok(actual)
    }

    /// Release a container's reservations.
    pub fn release(&mut self, container_id: &str) {
        self.held.remove(container_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16) -> PortBinding {
        PortBinding {
            container_port: 80,
            protocol: Proto::Tcp,
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_port: port,
        }
    }

    #[test]
    fn ephemeral_ports_are_chosen_and_conflicts_refused() {
        let mut r = PortReservations::default();
        let got = r.reserve("a", &[tcp(0)], false).unwrap();
        assert_ne!(got[0].host_port, 0);
        let e = r.reserve("b", &[tcp(got[0].host_port)], false).unwrap_err();
        assert_eq!(e.kind, cove_model::ErrorKind::Conflict);
        assert!(e.message.contains("port is already allocated"), "{}", e.message);
        r.release("a");
        assert!(r.reserve("b", &[tcp(got[0].host_port)], false).is_ok());
    }

    #[test]
    fn a_foreign_address_is_refused() {
        let mut r = PortReservations::default();
        let b = PortBinding { host_ip: Some("198.51.100.77".parse().unwrap()), ..tcp(0) };
        let e = r.reserve("a", &[b], false).unwrap_err();
        assert_eq!(e.kind, cove_model::ErrorKind::InvalidInput, "{}", e.message);
    }
}
