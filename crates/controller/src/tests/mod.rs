//! Transition tests of the controller on recording fakes (`crate::fake`): given a state and
//! an event, the kernel operations, the firewall writes, the runtime calls and the store's
//! records that follow. No root, no kernel: they run in milliseconds.

mod cluster;
mod cluster_ipam;
mod containers;
mod dns_links;
mod encryption;
mod endpoints;
mod images_exec_events;
mod metrics;
mod network_lifecycle;
mod networks;
mod parallel;
mod ports;
mod reconcile;

use std::path::Path;

use cove_model::{
    ContainerConfig, ContainerRecord, EndpointRecord, EndpointSettings, HostConfig, NetworkRecord,
};
use cove_store::Table;

use crate::fake::{config, FakeHost};
use crate::{ContainerCreate, ControllerConfig, IpamConfigRequest, NetworkCreate};

/// A state directory nothing is written to (the fakes keep everything in memory).
pub(crate) const NOWHERE: &str = "/nonexistent/cove-fake";

/// The fake host's default configuration.
pub(crate) fn cfg() -> ControllerConfig {
    config(Path::new(NOWHERE))
}

/// A controller on fresh fakes with the default configuration.
pub(crate) async fn host() -> FakeHost {
    FakeHost::start(cfg()).await.expect("controller on fakes")
}

/// A controller on fresh fakes with a changed configuration.
pub(crate) async fn host_with(f: impl FnOnce(&mut ControllerConfig)) -> FakeHost {
    let mut c = cfg();
    f(&mut c);
    FakeHost::start(c).await.expect("controller on fakes")
}

/// `network create --subnet <subnet> <name>` (no subnet: chosen from the default pools).
pub(crate) fn net(name: &str, subnet: Option<&str>) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        ipam_config: subnet
            .map(|s| {
                vec![IpamConfigRequest { subnet: Some(s.parse().unwrap()), ..Default::default() }]
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// `create --name <name> --network <network> busybox sleep 600`.
pub(crate) fn ctr(name: &str, network: &str) -> ContainerCreate {
    ContainerCreate {
        name: Some(name.into()),
        config: ContainerConfig {
            image: "busybox".into(),
            cmd: vec!["sleep".into(), "600".into()],
            ..Default::default()
        },
        host_config: HostConfig { network_mode_name: network.into(), ..Default::default() },
        endpoints: vec![],
    }
}

/// [`ctr`] with settings for its network (`--ip`, `--alias`...).
pub(crate) fn ctr_on(name: &str, network: &str, s: EndpointSettings) -> ContainerCreate {
    let mut c = ctr(name, network);
    c.endpoints.push((network.into(), s));
    c
}

/// What a refused request must leave as it was: the records, the kernel's journal, links,
/// addresses and neighbours, and the firewall's writes.
pub(crate) fn snapshot(h: &FakeHost) -> String {
    let nets = h.store.list::<NetworkRecord>(Table::Networks).unwrap();
    let eps = h.store.list::<EndpointRecord>(Table::Endpoints).unwrap();
    let ctrs = h.store.list::<ContainerRecord>(Table::Containers).unwrap();
    let k = h.kernel.model();
    let fw = h.firewall.log();
    format!(
        "{nets:?}\n{eps:?}\n{ctrs:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        k.journal, k.links, k.addresses, k.neighbours, fw.rulesets, fw.deltas
    )
}

/// The endpoint records in the store.
pub(crate) fn stored_endpoints(h: &FakeHost) -> Vec<EndpointRecord> {
    h.store.list::<EndpointRecord>(Table::Endpoints).unwrap().into_iter().map(|(_, e)| e).collect()
}

/// Create and start a container; its id.
pub(crate) async fn run(h: &FakeHost, req: ContainerCreate) -> String {
    let id = h.ctl.container_create(req).await.expect("create");
    h.ctl.container_start(&id).await.expect("start");
    id.to_string()
}

/// The endpoint of a running container on a network (by name).
pub(crate) async fn endpoint(h: &FakeHost, container: &str, network: &str) -> EndpointRecord {
    let v = h.ctl.container_get(container).await.expect("container");
    v.networks
        .into_iter()
        .find(|(n, _)| n.name == network)
        .and_then(|(_, e)| e)
        .unwrap_or_else(|| panic!("{container} has no endpoint on {network}"))
}
