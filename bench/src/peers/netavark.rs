//! netavark (Debian's, as podman runs it): `netavark --config DIR setup|teardown NETNS`
//! with the container's network options as JSON on stdin. netavark does no IPAM (podman
//! does): addresses are given. DNS is off, as on podman's default network.

use anyhow::Result;
use std::path::{Path, PathBuf};

use super::{address, exec_timed, Op, Peer, Sandboxes, FILL_PORT, NETWORKS, PROBE_PORT};

const BINARY: &str = "/usr/lib/podman/netavark";
const AARDVARK: &str = "/usr/lib/podman/aardvark-dns";
/// Networks `nv<k>` on bridges `nvbr<k>`, subnets 10.(160+k).0.0/16.
const BASE: u8 = 160;

pub(crate) fn installed() -> bool {
    Path::new(BINARY).exists()
}

pub(crate) struct Netavark {
    config: PathBuf,
    sandboxes: Sandboxes,
    /// Containers of the fill, for the teardown at the end.
    filled: usize,
}

impl Netavark {
    pub(crate) async fn new(dir: &Path) -> Result<Self> {
        let config = dir.join("config");
        std::fs::create_dir_all(&config)?;
        Ok(Self { config, sandboxes: Sandboxes::new(&dir.join("ns")).await?, filled: 0 })
    }

    fn network_info(k: usize) -> serde_json::Value {
        let name = format!("nv{k}");
        serde_json::json!({
            "name": name,
            "id": format!("{:064x}", 0xc0e0_0000u64 + k as u64),
            "driver": "bridge",
            "network_interface": format!("nvbr{k}"),
            "created": "2026-01-01T00:00:00Z",
            "subnets": [{ "subnet": format!("10.{}.0.0/16", BASE as usize + k), "gateway": format!("10.{}.0.1", BASE as usize + k) }],
            "ipv6_enabled": false,
            "internal": false,
            "dns_enabled": false,
            "ipam_options": { "driver": "host-local" },
        })
    }

    /// The options of container `i`, with a published host port or none.
    fn options(i: usize, port: Option<u16>) -> String {
        let (k, ip) = address(BASE, i);
        let name = format!("nv{k}");
        let mappings: Vec<serde_json::Value> = port
            .into_iter()
            .map(|p| {
                serde_json::json!({ "host_ip": "", "container_port": 80, "host_port": p,
                                    "range": 1, "protocol": "tcp" })
            })
            .collect();
        serde_json::json!({
            "container_id": format!("{:064x}", 0xc0e0_0000_0000u64 + i as u64),
            "container_name": format!("nvc{i}"),
            "port_mappings": mappings,
            "networks": { &name: { "static_ips": [ip.to_string()], "interface_name": "eth0" } },
            "network_info": { &name: Self::network_info(k) },
        })
        .to_string()
    }

    fn run(&self, command: &str, netns: &Path, options: &str) -> Result<f64> {
        let config = self.config.to_string_lossy();
        let netns = netns.to_string_lossy();
        let args = ["--config", &config, "-a", AARDVARK, command, &netns];
        Ok(exec_timed(Path::new(BINARY), &args, &[], options)?.0)
    }

    async fn setup(&self, i: usize, port: Option<u16>) -> Result<f64> {
        let ns = self.sandboxes.create(&format!("c{i}")).await?;
        self.run("setup", &ns, &Self::options(i, port))
    }

    async fn teardown(&self, i: usize, port: Option<u16>) -> Result<f64> {
        let ms =
            self.run("teardown", &self.sandboxes.path(&format!("c{i}")), &Self::options(i, port))?;
        self.sandboxes.remove(&format!("c{i}")).await?;
        Ok(ms)
    }
}

impl Peer for Netavark {
    fn name(&self) -> &'static str {
        "netavark"
    }

    async fn fill(&mut self, from: usize, to: usize) -> Result<()> {
        for i in from..to {
            self.setup(i, Some(FILL_PORT + i as u16)).await?;
            self.filled = i + 1;
        }
        Ok(())
    }

    async fn iteration(&mut self, probe: usize) -> Result<Vec<(Op, f64)>> {
        // Network 0, which always has a container of the fill: no bridge comes or goes.
        let i = 10_000 + probe * NETWORKS;
        let port = Some(PROBE_PORT + (probe % 4000) as u16);
        Ok(vec![
            (Op::Attach, self.setup(i, None).await?),
            (Op::Detach, self.teardown(i, None).await?),
            (Op::AttachPort, self.setup(i, port).await?),
            (Op::DetachPort, self.teardown(i, port).await?),
        ])
    }

    async fn clean(&mut self) -> Result<()> {
        let mut first = None;
        for i in 0..self.filled {
            if let Err(e) = self.teardown(i, Some(FILL_PORT + i as u16)).await {
                first.get_or_insert(e);
            }
        }
        self.filled = 0;
        self.sandboxes.remove_all().await;
        // netavark deletes a bridge with its last container; after an error some may stay.
        super::delete_links((0..NETWORKS).map(|k| format!("nvbr{k}")));
        let _ = std::fs::remove_dir_all(&self.config);
        first.map_or(Ok(()), Err)
    }
}
