//! The overlay bench's anchor: Docker 20.10's classic overlay (`dockerd --cluster-store
//! etcd://... --cluster-advertise ...`), one private dockerd in each of two fake hosts of the
//! overlay bench's netlab, on the same underlay switch and the same etcd (which then also
//! serves its v2 API: libkv, Docker's store client, speaks nothing else).
//!
//! Each dockerd runs inside its fake host's network and mount namespaces (so its iptables
//! rules, bridges, `/run/docker` and the overlay's hidden namespaces stay there) and in a
//! UTS namespace of its own with the host's name: serf, which classic overlay uses to tell
//! peers about endpoints (gossip on 7946/tcp+udp), names its members after the hostname, and
//! two members of one name are one member to it. Its roots, socket, trust key (`daemon.json`
//! `deprecated-key-path`) and containerd state are under the fake host's directory, its
//! containers' cgroups under the fake host's cgroup parent; [`Dockerd::stop`] removes what
//! it made and the netlab removes the rest.

use anyhow::{bail, Context, Result};
use cove_testkit::FakeHost;

use crate::dockerd::{Dockerd, Launch};
use crate::http::Engine as _;
use crate::overlay::Cluster;

/// Why the anchor cannot run here, or `None`.
pub(crate) fn missing() -> Option<String> {
    if !crate::dockerd::installed() {
        return Some(
            "dockerd or the docker CLI is not installed (scripts/bench.sh installs Debian's \
             docker.io, 20.10)"
                .into(),
        );
    }
    for tool in ["unshare", "hostname"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// Two dockerds in classic cluster mode, with the bench's networks and containers.
pub(crate) struct Docker<'a> {
    hosts: [&'a FakeHost; 2],
    names: [String; 2],
    // Dropped (stopped) in order, while etcd still runs.
    daemons: Vec<Dockerd>,
}

impl<'a> Docker<'a> {
    /// Starts a dockerd in each of `hosts` against the etcd at `store` (an `etcd://` URL),
    /// loads busybox into each, makes the overlay network `ov` and the bridge network `br`
    /// (subnets `overlay` and `bridge`), `c1` and `c2` on `ov`, one per host, and `att` on
    /// host 0's default bridge.
    pub(crate) fn start(
        hosts: [&'a FakeHost; 2],
        store: &str,
        overlay: &str,
        bridge: &str,
    ) -> Result<Self> {
        let mut me = Docker {
            hosts,
            names: [hosts[0].name().to_owned(), hosts[1].name().to_owned()],
            daemons: vec![],
        };
        for h in hosts {
            let addr = h.underlay_addr().context("a netlab host has an underlay address")?;
            let name = h.name().to_owned();
            let wrap = |argv: &[&str]| {
                let mut full =
                    vec!["unshare", "--uts", "sh", "-c", "hostname \"$0\" && exec \"$@\""];
                full.push(&name);
                full.extend_from_slice(argv);
                h.command(&full)
            };
            let launch = Launch {
                flags: vec![
                    "--cluster-store".into(),
                    store.into(),
                    "--cluster-advertise".into(),
                    format!("{addr}:2376"),
                    "--cgroup-parent".into(),
                    h.cgroup_parent(),
                ],
                wrap: Some(&wrap),
            };
            let d = Dockerd::start_with(&h.dir().join("dockerd"), &launch)
                .with_context(|| format!("dockerd on {name}"))?;
            let info = d.api("GET", "/info", None, 200)?;
            let info: serde_json::Value = serde_json::from_str(&info).context("/info")?;
            if info["ClusterStore"].as_str() != Some(store) {
                bail!("dockerd on {name} is not in cluster mode: /info says {info}");
            }
            d.import_busybox().with_context(|| format!("load busybox into dockerd on {name}"))?;
            me.daemons.push(d);
        }
        me.cli(0, &["network", "create", "-d", "overlay", "--subnet", overlay, "ov"])?;
        me.cli(0, &["network", "create", "--subnet", bridge, "br"])?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !me.cli(1, &["network", "ls", "--format", "{{.Name}}"])?.lines().any(|l| l == "ov") {
            if std::time::Instant::now() > deadline {
                bail!("{} never saw the overlay network", me.names[1]);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        for (i, c) in [(0, "c1"), (1, "c2")] {
            me.cli(
                i,
                &["run", "-d", "--network", "ov", "--name", c, "busybox", "sleep", "100000"],
            )?;
        }
        me.cli(0, &["run", "-d", "--name", "att", "busybox", "sleep", "100000"])?;
        Ok(me)
    }
}

impl Cluster for Docker<'_> {
    fn label(&self) -> &'static str {
        "Docker 20.10"
    }

    fn host(&self, i: usize) -> &FakeHost {
        self.hosts[i]
    }

    fn image(&self) -> &'static str {
        "busybox"
    }

    fn cli(&self, i: usize, args: &[&str]) -> Result<String> {
        self.daemons.get(i).context("no dockerd")?.cli(args)
    }

    fn post(&self, path: &str, body: &str) -> Result<()> {
        self.daemons.first().context("no dockerd")?.api("POST", path, Some(body), 200).map(|_| ())
    }

    /// The container's MAC, and the neighbour and VXLAN forwarding entries in host 0's
    /// overlay namespaces (`<exec-root>/netns/1-<network>`, where classic overlay keeps its
    /// bridge and VXLAN device): what the peer database programmed for it, if anything.
    fn diagnose(&self, name: &str, ip: &str) -> String {
        let format = r#"{{(index .NetworkSettings.Networks "ov").MacAddress}}"#;
        let mac = self.cli(1, &["inspect", "-f", format, name]).unwrap_or_default();
        let netns = self.hosts[0].dir().join("dockerd/exec/netns");
        let script = format!(
            "for n in {}/1-*; do echo \"neigh: $(nsenter --net=$n ip neigh show to {ip})\"; \
             echo \"vxlan fdb: $(nsenter --net=$n bridge fdb show dev vxlan0 | grep -v \
             '^33:33\\|^01:00' | tr '\\n' ';')\"; done",
            netns.display()
        );
        let out = self.hosts[0].sh(&script);
        format!(
            "; its MAC {mac}; {}'s overlay namespace: {}",
            self.names[0],
            String::from_utf8_lossy(&out.stdout).trim().replace('\n', "; ")
        )
    }
}
