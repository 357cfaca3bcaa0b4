//! dockerd's embedded DNS as a peer in the `dns` bench: a private dockerd in the fake host
//! ([`crate::dockerd`]), a user network with the container to resolve and the client's
//! container; the load client enters the client container's network namespace and asks
//! 127.0.0.11 (dockerd's resolver, reached through Docker's DNAT in that namespace) for
//! the other container's name. Its floor is the same do-nothing responder at
//! 127.0.0.12:53 in that namespace. Only local names: Cove drops forwarding it did not set
//! up (`drop_foreign_forwarding`, as Docker sets FORWARD to DROP), so Docker's containers
//! cannot reach the upstream from this fake host.

use anyhow::{Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::dockerd::Dockerd;

pub(crate) const TARGET: &str = "dk-target";
const CLIENT: &str = "dk-client";
const NET: &str = "dnsdk";
const SUBNET: &str = "10.247.0.0/24";

/// dockerd with the two containers.
pub(crate) struct DockerDns {
    pub(crate) daemon: Dockerd,
    /// The client container's network namespace (`/proc/<pid>/ns/net`).
    pub(crate) client_ns: PathBuf,
    pub(crate) target_ip: Ipv4Addr,
}

impl DockerDns {
    pub(crate) fn start(dir: &Path) -> Result<Self> {
        let daemon = Dockerd::start(&dir.join("dockerd"))?;
        daemon.import_busybox()?;
        daemon.cli(&["network", "create", "--subnet", SUBNET, NET])?;
        for name in [TARGET, CLIENT] {
            daemon.cli(&[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                NET,
                "busybox",
                "sleep",
                "1000000",
            ])?;
        }
        let pid = daemon.cli(&["inspect", "-f", "{{.State.Pid}}", CLIENT])?;
        let target_ip = daemon
            .cli(&[
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                TARGET,
            ])?
            .parse()
            .context("target address")?;
        Ok(DockerDns { daemon, client_ns: PathBuf::from(format!("/proc/{pid}/ns/net")), target_ip })
    }
}
