//! The CNI reference plugins (Debian's `containernetworking-plugins`), called as a CNI
//! runtime calls them: the `bridge` plugin (masquerade on, `host-local` IPAM) and, for a
//! published port, `portmap` chained after it with the bridge's result as `prevResult`;
//! DEL runs the chain in reverse. One process per plugin call.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{exec_timed, Op, Peer, Sandboxes, FILL_PORT, NETWORKS, PROBE_PORT};

const PLUGINS: &str = "/usr/lib/cni";
/// Networks `cni<k>` on bridges `cnibr<k>`, subnets 10.(130+k).0.0/16.
const BASE: usize = 130;
const VERSION: &str = "1.0.0";

pub(crate) fn installed() -> bool {
    Path::new(PLUGINS).join("bridge").exists() && Path::new(PLUGINS).join("portmap").exists()
}

pub(crate) struct Cni {
    ipam: PathBuf,
    sandboxes: Sandboxes,
    /// Attached containers: their port and the plugins' results, for DEL.
    attached: HashMap<usize, (Option<u16>, serde_json::Value, Option<serde_json::Value>)>,
}

impl Cni {
    pub(crate) async fn new(dir: &Path) -> Result<Self> {
        let ipam = dir.join("ipam");
        std::fs::create_dir_all(&ipam)?;
        Ok(Self {
            ipam,
            sandboxes: Sandboxes::new(&dir.join("ns")).await?,
            attached: HashMap::new(),
        })
    }

    fn bridge_config(&self, k: usize) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": VERSION, "name": format!("cni{k}"), "type": "bridge",
            "bridge": format!("cnibr{k}"), "isGateway": true, "ipMasq": true,
            "ipam": { "type": "host-local",
                      "ranges": [[{ "subnet": format!("10.{}.0.0/16", BASE + k) }]],
                      "routes": [{ "dst": "0.0.0.0/0" }],
                      "dataDir": self.ipam },
        })
    }

    fn portmap_config(k: usize, port: u16, prev: &serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "cniVersion": VERSION, "name": format!("cni{k}"), "type": "portmap",
            "capabilities": { "portMappings": true }, "snat": true,
            "runtimeConfig": { "portMappings": [{ "hostPort": port, "containerPort": 80, "protocol": "tcp" }] },
            "prevResult": prev,
        })
    }

    fn call(
        &self,
        plugin: &str,
        command: &str,
        i: usize,
        config: &serde_json::Value,
    ) -> Result<(f64, String)> {
        let netns = self.sandboxes.path(&format!("c{i}"));
        let id = format!("cove-bench-cni-{i}");
        let env = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id.as_str()),
            ("CNI_NETNS", netns.to_str().context("netns path")?),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", PLUGINS),
        ];
        exec_timed(&Path::new(PLUGINS).join(plugin), &[], &env, &config.to_string())
    }

    async fn add(&mut self, i: usize, port: Option<u16>) -> Result<f64> {
        let k = i % NETWORKS;
        self.sandboxes.create(&format!("c{i}")).await?;
        let (mut ms, out) = self.call("bridge", "ADD", i, &self.bridge_config(k))?;
        let bridge: serde_json::Value = serde_json::from_str(&out).context("bridge result")?;
        let mut portmap = None;
        if let Some(p) = port {
            let (t, out) = self.call("portmap", "ADD", i, &Self::portmap_config(k, p, &bridge))?;
            ms += t;
            portmap = Some(serde_json::from_str(&out).context("portmap result")?);
        }
        self.attached.insert(i, (port, bridge, portmap));
        Ok(ms)
    }

    async fn del(&mut self, i: usize) -> Result<f64> {
        let k = i % NETWORKS;
        let (port, bridge, portmap) = self.attached.remove(&i).context("not attached")?;
        let mut ms = 0.0;
        if let Some(p) = port {
            let prev = portmap.as_ref().unwrap_or(&bridge);
            ms += self.call("portmap", "DEL", i, &Self::portmap_config(k, p, prev))?.0;
        }
        let mut config = self.bridge_config(k);
        config["prevResult"] = bridge;
        ms += self.call("bridge", "DEL", i, &config)?.0;
        self.sandboxes.remove(&format!("c{i}")).await?;
        Ok(ms)
    }
}

impl Peer for Cni {
    fn name(&self) -> &'static str {
        "cni"
    }

    async fn fill(&mut self, from: usize, to: usize) -> Result<()> {
        for i in from..to {
            self.add(i, Some(FILL_PORT + i as u16)).await?;
        }
        Ok(())
    }

    async fn iteration(&mut self, probe: usize) -> Result<Vec<(Op, f64)>> {
        // Network 0, which always has a container of the fill: no bridge comes or goes.
        let i = 10_000 + probe * NETWORKS;
        let port = Some(PROBE_PORT + (probe % 4000) as u16);
        Ok(vec![
            (Op::Attach, self.add(i, None).await?),
            (Op::Detach, self.del(i).await?),
            (Op::AttachPort, self.add(i, port).await?),
            (Op::DetachPort, self.del(i).await?),
        ])
    }

    async fn clean(&mut self) -> Result<()> {
        let mut first = None;
        let mut ids: Vec<usize> = self.attached.keys().copied().collect();
        ids.sort_unstable();
        for i in ids {
            if let Err(e) = self.del(i).await {
                first.get_or_insert(e);
            }
        }
        self.sandboxes.remove_all().await;
        // The bridge plugin never deletes its bridge.
        super::delete_links((0..NETWORKS).map(|k| format!("cnibr{k}")));
        let _ = std::fs::remove_dir_all(&self.ipam);
        first.map_or(Ok(()), Err)
    }
}
