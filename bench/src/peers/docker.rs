//! Docker (Debian's `docker.io`): a private dockerd in the fake host (see
//! [`crate::dockerd`]), driven through its API like Cove, and through its CLI for the
//! CLI rows. Its containers are real (the busybox web server Cove's bench runs), with one
//! published port each.

use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;

use super::{Op, Peer, FILL_PORT, NETWORKS, PROBE_PORT};
use crate::dockerd::Dockerd;
use crate::http::Engine;
use crate::ports;
use crate::stats::ms;

/// Networks `dnet<k>`, subnets 10.(100+k).0.0/16.
const BASE: usize = 100;
/// Requests in flight while filling and emptying.
const WORKERS: usize = 3;

pub(crate) fn installed() -> bool {
    crate::dockerd::installed()
}

pub(crate) struct Docker {
    d: Dockerd,
}

impl Docker {
    pub(crate) fn start(dir: &Path) -> Result<Self> {
        let d = Dockerd::start(dir)?;
        d.import_busybox()?;
        Ok(Self { d })
    }

    /// Creates and starts; returns the id and the start's milliseconds.
    fn run(&self, name: &str, network: &str, port: Option<u16>) -> Result<(String, f64)> {
        let id = ports::create(&self.d, name, network, port)?;
        let t = Instant::now();
        ports::start(&self.d, &id)?;
        Ok((id, ms(t)))
    }
}

impl Peer for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn prepare(&mut self) -> Result<()> {
        for k in 0..NETWORKS {
            let body = format!(
                r#"{{"Name":"dnet{k}","IPAM":{{"Config":[{{"Subnet":"10.{}.0.0/16"}}]}}}}"#,
                BASE + k
            );
            self.d.api("POST", "/networks/create", Some(&body), 201)?;
        }
        // The running container that each iteration connects and disconnects.
        self.run("subject", "dnet0", None)?;
        Ok(())
    }

    async fn fill(&mut self, from: usize, to: usize) -> Result<()> {
        let errors =
            crate::daemon::for_each_parallel(to.saturating_sub(from), WORKERS, true, |j| {
                let i = from + j;
                let net = format!("dnet{}", i % NETWORKS);
                self.run(&format!("fill-{i}"), &net, Some(FILL_PORT + i as u16)).map(|_| ())
            });
        match errors.into_iter().next() {
            Some(e) => Err(e.context("fill dockerd with containers")),
            None => Ok(()),
        }
    }

    async fn iteration(&mut self, probe: usize) -> Result<Vec<(Op, f64)>> {
        let port = Some(PROBE_PORT + (probe % 4000) as u16);
        let mut order = [true, false];
        rand::seq::SliceRandom::shuffle(&mut order[..], &mut rand::rng());
        let (mut with_port, mut none) = (None, None);
        for publish in order {
            if publish {
                with_port = Some(self.run(&format!("probe-p{probe}"), "dnet0", port)?);
            } else {
                none = Some(self.run(&format!("probe-none{probe}"), "none", None)?);
            }
        }
        let (with_port, none) = (with_port.context("ran")?, none.context("ran")?);
        let net = format!("dx{probe}");
        let t = Instant::now();
        self.d.api("POST", "/networks/create", Some(&format!(r#"{{"Name":"{net}"}}"#)), 201)?;
        let create = ms(t);
        let body = r#"{"Container":"subject"}"#;
        let t = Instant::now();
        self.d.api("POST", &format!("/networks/{net}/connect"), Some(body), 200)?;
        let attach = ms(t);
        let t = Instant::now();
        self.d.api("POST", &format!("/networks/{net}/disconnect"), Some(body), 200)?;
        let detach = ms(t);
        let t = Instant::now();
        self.d.cli(&["network", "connect", &net, "subject"])?;
        let cli_attach = ms(t);
        let t = Instant::now();
        self.d.cli(&["network", "disconnect", &net, "subject"])?;
        let cli_detach = ms(t);
        let t = Instant::now();
        self.d.api("DELETE", &format!("/networks/{net}"), None, 204)?;
        let rm = ms(t);
        let body = format!(r#"{{"Container":"{}"}}"#, with_port.0);
        let t = Instant::now();
        self.d.api("POST", "/networks/dnet0/disconnect", Some(&body), 200)?;
        let detach_port = ms(t);
        ports::remove(&self.d, &with_port.0)?;
        ports::remove(&self.d, &none.0)?;
        Ok(vec![
            (Op::Attach, attach),
            (Op::Detach, detach),
            (Op::AttachPort, with_port.1 - none.1),
            (Op::DetachPort, detach_port),
            (Op::NetworkCreate, create),
            (Op::NetworkRm, rm),
            (Op::CliAttach, cli_attach),
            (Op::CliDetach, cli_detach),
        ])
    }

    async fn clean(&mut self) -> Result<()> {
        let list = self.d.api("GET", "/containers/json?all=1", None, 200)?;
        let ids = crate::daemon::container_ids(&serde_json::from_str(&list)?)?;
        let errors = crate::daemon::for_each_parallel(ids.len(), WORKERS, false, |i| {
            ports::remove(&self.d, &ids[i])
        });
        // Stopping dockerd removes the rest (networks, its data) whatever happened.
        self.d.stop();
        errors.into_iter().next().map_or(Ok(()), Err)
    }
}
