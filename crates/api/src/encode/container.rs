//! Docker's container objects: `GET /containers/json` entries and `GET /containers/{id}/json`.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use cove_controller::ContainerView;
use cove_model::{
    ContainerRecord, EndpointRecord, EndpointSettings, NetworkRecord, PortBinding, Status,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::time;

/// `EndpointSettings` as containers show it, per network.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    #[serde(rename = "IPAMConfig")]
    pub(crate) ipam_config: Option<EndpointIpam>,
    pub(crate) links: Option<Vec<String>>,
    pub(crate) aliases: Option<Vec<String>>,
    pub(crate) mac_address: String,
    pub(crate) driver_opts: Option<BTreeMap<String, String>>,
    pub(crate) gw_priority: i64,
    #[serde(rename = "NetworkID")]
    pub(crate) network_id: String,
    #[serde(rename = "EndpointID")]
    pub(crate) endpoint_id: String,
    pub(crate) gateway: String,
    #[serde(rename = "IPAddress")]
    pub(crate) ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub(crate) ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub(crate) ipv6_gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub(crate) global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub(crate) global_ipv6_prefix_len: u8,
    #[serde(rename = "DNSNames")]
    pub(crate) dns_names: Option<Vec<String>>,
}

/// `EndpointSettings.IPAMConfig`.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointIpam {
    #[serde(rename = "IPv4Address", skip_serializing_if = "String::is_empty")]
    pub(crate) ipv4_address: String,
    #[serde(rename = "IPv6Address", skip_serializing_if = "String::is_empty")]
    pub(crate) ipv6_address: String,
}

fn settings_for<'a>(r: &'a ContainerRecord, net: &NetworkRecord) -> Option<&'a EndpointSettings> {
    r.networks.iter().find(|(id, _)| *id == net.id).map(|(_, s)| s)
}

/// Names the embedded DNS answers for this container on `net` (none on the built-in
/// networks: the default network has no DNS, host and null have no endpoints).
fn dns_names(r: &ContainerRecord, net: &NetworkRecord, aliases: &[String]) -> Option<Vec<String>> {
    if net.builtin {
        return None;
    }
    let mut names = vec![r.name.clone()];
    names.extend(aliases.iter().cloned());
    names.push(r.id.chars().take(12).collect());
    if !r.config.hostname.is_empty() {
        names.push(r.config.hostname.clone());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    Some(names)
}

/// One network's entry of `NetworkSettings.Networks`.
pub fn endpoint(r: &ContainerRecord, net: &NetworkRecord, ep: Option<&EndpointRecord>) -> Endpoint {
    let settings = settings_for(r, net).cloned().unwrap_or_default();
    let ipam_config =
        (settings.ipv4_address.is_some() || settings.ipv6_address.is_some()).then(|| {
            EndpointIpam {
                ipv4_address: settings.ipv4_address.map(|a| a.to_string()).unwrap_or_default(),
                ipv6_address: settings.ipv6_address.map(|a| a.to_string()).unwrap_or_default(),
            }
        });
    let aliases = (!settings.aliases.is_empty()).then(|| settings.aliases.clone());
    let links = (!settings.links.is_empty()).then(|| settings.links.clone());
    let mut out = Endpoint {
        ipam_config,
        aliases,
        links,
        network_id: net.id.to_string(),
        mac_address: settings.mac_address.map(|m| m.to_string()).unwrap_or_default(),
        dns_names: dns_names(r, net, &settings.aliases),
        ..Default::default()
    };
    if let Some(ep) = ep {
        out.endpoint_id = ep.id.to_string();
        out.mac_address = ep.mac.to_string();
        if let Some(a) = ep.ipv4 {
            out.ip_address = a.addr().to_string();
            out.ip_prefix_len = a.prefix_len();
        }
        if let Some(a) = ep.ipv6 {
            out.global_ipv6_address = a.addr().to_string();
            out.global_ipv6_prefix_len = a.prefix_len();
        }
        out.gateway = ep.gateway4.map(|g| g.to_string()).unwrap_or_default();
        out.ipv6_gateway = ep.gateway6.map(|g| g.to_string()).unwrap_or_default();
    }
    out
}

pub(crate) fn networks(v: &ContainerView) -> BTreeMap<String, Endpoint> {
    v.networks.iter().map(|(n, ep)| (n.name.clone(), endpoint(&v.record, n, ep.as_ref()))).collect()
}

/// `Path` and `Args`: entrypoint followed by cmd, split at the first word.
pub(crate) fn path_args(r: &ContainerRecord) -> (String, Vec<String>) {
    let mut all = r.config.entrypoint.iter().chain(&r.config.cmd).cloned();
    let path = all.next().unwrap_or_default();
    (path, all.collect())
}

/// `PortSummary` of `GET /containers/json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortSummary {
    #[serde(rename = "IP", skip_serializing_if = "Option::is_none")]
    pub(crate) ip: Option<String>,
    pub(crate) private_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) public_port: Option<u16>,
    #[serde(rename = "Type")]
    pub(crate) proto: String,
}

fn split_port_key(key: &str) -> (u16, String) {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    (port.parse().unwrap_or(0), proto.to_owned())
}

fn port_key(b: &PortBinding) -> String {
    format!("{}/{}", b.container_port, b.protocol)
}

fn host_ip_shown(b: &PortBinding) -> String {
    b.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into())
}

fn ports_summary(r: &ContainerRecord) -> Vec<PortSummary> {
    let running = r.state.status == Status::Running;
    let mut out: Vec<PortSummary> = vec![];
    let mut shown: Vec<String> = vec![];
    if running {
        // The ports actually bound for this run (ephemeral ones resolved).
        for b in &r.state.ports {
            let public = (b.host_port != 0).then_some(b.host_port);
            if public.is_none() && shown.contains(&port_key(b)) {
                continue;
            }
            out.push(PortSummary {
                ip: public.map(|_| host_ip_shown(b)),
                private_port: b.container_port,
                public_port: public,
                proto: b.protocol.to_string(),
            });
            shown.push(port_key(b));
        }
    }
    for key in &r.config.exposed_ports {
        if shown.contains(key) {
            continue;
        }
        let (private_port, proto) = split_port_key(key);
        out.push(PortSummary { ip: None, private_port, public_port: None, proto });
    }
    out
}

/// One `{"HostIp", "HostPort"}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostPort {
    pub(crate) host_ip: String,
    pub(crate) host_port: String,
}

fn host_port(b: &PortBinding, shown: bool) -> HostPort {
    HostPort {
        host_ip: if shown {
            host_ip_shown(b)
        } else {
            b.host_ip.map(|i| i.to_string()).unwrap_or_default()
        },
        host_port: if b.host_port == 0 { String::new() } else { b.host_port.to_string() },
    }
}

/// `HostConfig.PortBindings`: as requested.
pub(crate) fn port_bindings(r: &ContainerRecord) -> BTreeMap<String, Vec<HostPort>> {
    let mut out: BTreeMap<String, Vec<HostPort>> = BTreeMap::new();
    for b in &r.host_config.port_bindings {
        out.entry(port_key(b)).or_default().push(host_port(b, false));
    }
    out
}

/// `NetworkSettings.Ports`: while running, every exposed or published port (null when not
/// published); `{}` otherwise.
pub(crate) fn ports_map(r: &ContainerRecord) -> BTreeMap<String, Option<Vec<HostPort>>> {
    let mut out: BTreeMap<String, Option<Vec<HostPort>>> = BTreeMap::new();
    if r.state.status != Status::Running {
        return out;
    }
    for key in &r.config.exposed_ports {
        out.insert(key.clone(), None);
    }
    for b in &r.state.ports {
        out.entry(port_key(b))
            .or_insert(None)
            .get_or_insert_with(Vec::new)
            .push(host_port(b, true));
    }
    out
}

/// A `GET /containers/json` entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    pub(crate) id: String,
    pub(crate) names: Vec<String>,
    pub(crate) image: String,
    #[serde(rename = "ImageID")]
    pub(crate) image_id: String,
    pub(crate) command: String,
    pub(crate) created: i64,
    pub(crate) ports: Vec<PortSummary>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) state: &'static str,
    pub(crate) status: String,
    pub(crate) host_config: SummaryHostConfig,
    pub(crate) network_settings: SummaryNetworks,
    pub(crate) mounts: Vec<serde_json::Value>,
}

/// `HostConfig` of a list entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryHostConfig {
    pub(crate) network_mode: String,
}

/// `NetworkSettings` of a list entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SummaryNetworks {
    pub(crate) networks: BTreeMap<String, Endpoint>,
}

/// Docker's `Command` column: path and arguments joined by spaces.
fn command(r: &ContainerRecord) -> String {
    let (path, args) = path_args(r);
    if args.is_empty() {
        path
    } else {
        format!("{path} {}", args.join(" "))
    }
}

/// The `GET /containers/json` entry of a container.
pub fn summary(v: &ContainerView, now: DateTime<Utc>) -> Summary {
    let r = &v.record;
    Summary {
        id: r.id.to_string(),
        names: vec![format!("/{}", r.name)],
        image: r.config.image.clone(),
        image_id: r.config.image_id.clone(),
        command: command(r),
        created: time::unix(&r.created),
        ports: ports_summary(r),
        labels: r.config.labels.clone(),
        state: r.state.status.as_str(),
        status: time::status_string(&r.state, now),
        host_config: SummaryHostConfig { network_mode: r.host_config.network_mode_name.clone() },
        network_settings: SummaryNetworks { networks: networks(v) },
        mounts: vec![],
    }
}

/// `SandboxID`: a stable 64-hex id derived from the sandbox key ("" when there is none).
pub(crate) fn sandbox_id(key: &str) -> String {
    if key.is_empty() {
        return String::new();
    }
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Paths of the files the container's `/etc` is made from.
pub(crate) fn etc_path(data_root: &Path, id: &str, file: &str) -> String {
    data_root.join("containers").join(id).join(file).display().to_string()
}
