//! `GET /containers/{id}/json`: Docker's `ContainerInspectResponse`.

use std::collections::BTreeMap;
use std::path::Path;

use cove_controller::ContainerView;
use cove_model::{ContainerRecord, Status};
use serde::Serialize;

use super::container::{
    etc_path, networks, path_args, port_bindings, ports_map, sandbox_id, Endpoint, HostPort,
};

/// The inspect object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspect {
    pub(crate) id: String,
    pub(crate) created: String,
    pub(crate) path: String,
    pub(crate) args: Vec<String>,
    pub(crate) state: State,
    pub(crate) image: String,
    pub(crate) resolv_conf_path: String,
    pub(crate) hostname_path: String,
    pub(crate) hosts_path: String,
    pub(crate) log_path: String,
    pub(crate) name: String,
    pub(crate) restart_count: u32,
    pub(crate) driver: &'static str,
    pub(crate) platform: &'static str,
    pub(crate) mount_label: &'static str,
    pub(crate) process_label: &'static str,
    pub(crate) app_armor_profile: &'static str,
    #[serde(rename = "ExecIDs")]
    pub(crate) exec_ids: Option<Vec<String>>,
    pub(crate) host_config: HostConfig,
    pub(crate) config: Config,
    pub(crate) network_settings: NetworkSettings,
    pub(crate) mounts: Vec<serde_json::Value>,
}

/// `State`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    pub(crate) status: &'static str,
    pub(crate) running: bool,
    pub(crate) paused: bool,
    pub(crate) restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub(crate) oom_killed: bool,
    pub(crate) dead: bool,
    pub(crate) pid: u32,
    pub(crate) exit_code: i32,
    pub(crate) error: String,
    pub(crate) started_at: String,
    pub(crate) finished_at: String,
}

/// `HostConfig` (the networking part Cove keeps).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    pub(crate) network_mode: String,
    pub(crate) port_bindings: BTreeMap<String, Vec<HostPort>>,
    pub(crate) restart_policy: RestartPolicy,
    pub(crate) auto_remove: bool,
    pub(crate) dns: Vec<String>,
    pub(crate) dns_options: Vec<String>,
    pub(crate) dns_search: Vec<String>,
    pub(crate) extra_hosts: Vec<String>,
    pub(crate) links: Option<Vec<String>>,
    pub(crate) publish_all_ports: bool,
    pub(crate) log_config: LogConfig,
}

/// `HostConfig.LogConfig` (always `json-file`; the Python SDK's `run` reads it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub(crate) kind: &'static str,
    pub(crate) config: BTreeMap<String, String>,
}

/// `HostConfig.RestartPolicy` (always `no`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicy {
    pub(crate) name: &'static str,
    pub(crate) maximum_retry_count: u32,
}

/// `Config`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    pub(crate) hostname: String,
    pub(crate) domainname: String,
    pub(crate) user: &'static str,
    pub(crate) attach_stdin: bool,
    pub(crate) attach_stdout: bool,
    pub(crate) attach_stderr: bool,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) exposed_ports: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
    pub(crate) tty: bool,
    pub(crate) open_stdin: bool,
    pub(crate) stdin_once: bool,
    pub(crate) env: Vec<String>,
    pub(crate) cmd: Option<Vec<String>>,
    pub(crate) image: String,
    pub(crate) volumes: Option<()>,
    pub(crate) working_dir: String,
    pub(crate) entrypoint: Option<Vec<String>>,
    pub(crate) on_build: Option<()>,
    pub(crate) labels: BTreeMap<String, String>,
}

/// `NetworkSettings`, with the legacy top-level fields (API < 1.52) from the `bridge`
/// network's endpoint.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    pub(crate) bridge: String,
    #[serde(rename = "SandboxID")]
    pub(crate) sandbox_id: String,
    pub(crate) sandbox_key: String,
    pub(crate) ports: BTreeMap<String, Option<Vec<HostPort>>>,
    pub(crate) hairpin_mode: bool,
    #[serde(rename = "LinkLocalIPv6Address")]
    pub(crate) link_local_ipv6_address: String,
    #[serde(rename = "LinkLocalIPv6PrefixLen")]
    pub(crate) link_local_ipv6_prefix_len: u8,
    #[serde(rename = "SecondaryIPAddresses")]
    pub(crate) secondary_ip_addresses: Option<Vec<String>>,
    #[serde(rename = "SecondaryIPv6Addresses")]
    pub(crate) secondary_ipv6_addresses: Option<Vec<String>>,
    #[serde(rename = "EndpointID")]
    pub(crate) endpoint_id: String,
    pub(crate) gateway: String,
    #[serde(rename = "GlobalIPv6Address")]
    pub(crate) global_ipv6_address: String,
    #[serde(rename = "GlobalIPv6PrefixLen")]
    pub(crate) global_ipv6_prefix_len: u8,
    #[serde(rename = "IPAddress")]
    pub(crate) ip_address: String,
    #[serde(rename = "IPPrefixLen")]
    pub(crate) ip_prefix_len: u8,
    #[serde(rename = "IPv6Gateway")]
    pub(crate) ipv6_gateway: String,
    pub(crate) mac_address: String,
    pub(crate) networks: BTreeMap<String, Endpoint>,
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn config(r: &ContainerRecord) -> Config {
    let c = &r.config;
    Config {
        hostname: c.hostname.clone(),
        domainname: c.domainname.clone(),
        user: "",
        attach_stdin: false,
        attach_stdout: false,
        attach_stderr: false,
        exposed_ports: c
            .exposed_ports
            .iter()
            .map(|k| (k.clone(), serde_json::Map::new()))
            .collect(),
        tty: c.tty,
        open_stdin: c.open_stdin,
        stdin_once: false,
        env: c.env.clone(),
        cmd: non_empty(&c.cmd),
        image: c.image.clone(),
        volumes: None,
        working_dir: c.working_dir.clone(),
        entrypoint: non_empty(&c.entrypoint),
        on_build: None,
        labels: c.labels.clone(),
    }
}

fn host_config(r: &ContainerRecord) -> HostConfig {
    let h = &r.host_config;
    HostConfig {
        network_mode: h.network_mode_name.clone(),
        port_bindings: port_bindings(r),
        restart_policy: RestartPolicy { name: "no", maximum_retry_count: 0 },
        auto_remove: h.auto_remove,
        dns: h.dns.clone(),
        dns_options: h.dns_options.clone(),
        dns_search: h.dns_search.clone(),
        extra_hosts: h.extra_hosts.clone(),
        links: non_empty(&h.links),
        publish_all_ports: h.publish_all_ports,
        log_config: LogConfig { kind: "json-file", config: BTreeMap::new() },
    }
}

/// The inspect object of a container; `data_root` locates its `/etc` files.
pub fn inspect(v: &ContainerView, data_root: &Path) -> Inspect {
    let r = &v.record;
    let (path, args) = path_args(r);
    let nets = networks(v);
    let legacy = nets.get("bridge").cloned().unwrap_or_default();
    let st = &r.state;
    Inspect {
        id: r.id.to_string(),
        created: r.created.clone(),
        path,
        args,
        state: State {
            status: st.status.as_str(),
            running: st.status == Status::Running,
            paused: false,
            restarting: false,
            oom_killed: false,
            dead: st.status == Status::Dead,
            pid: st.pid,
            exit_code: st.exit_code,
            error: st.error.clone(),
            started_at: st.started_at.clone(),
            finished_at: st.finished_at.clone(),
        },
        image: r.config.image_id.clone(),
        resolv_conf_path: etc_path(data_root, &r.id, "resolv.conf"),
        hostname_path: etc_path(data_root, &r.id, "hostname"),
        hosts_path: etc_path(data_root, &r.id, "hosts"),
        log_path: String::new(),
        name: format!("/{}", r.name),
        restart_count: 0,
        driver: "overlay",
        platform: "linux",
        mount_label: "",
        process_label: "",
        app_armor_profile: "",
        exec_ids: None,
        host_config: host_config(r),
        config: config(r),
        network_settings: NetworkSettings {
            bridge: String::new(),
            sandbox_id: sandbox_id(&st.sandbox_key),
            sandbox_key: st.sandbox_key.clone(),
            ports: ports_map(r),
            hairpin_mode: false,
            link_local_ipv6_address: String::new(),
            link_local_ipv6_prefix_len: 0,
            secondary_ip_addresses: None,
            secondary_ipv6_addresses: None,
            endpoint_id: legacy.endpoint_id,
            gateway: legacy.gateway,
            global_ipv6_address: legacy.global_ipv6_address,
            global_ipv6_prefix_len: legacy.global_ipv6_prefix_len,
            ip_address: legacy.ip_address,
            ip_prefix_len: legacy.ip_prefix_len,
            ipv6_gateway: legacy.ipv6_gateway,
            mac_address: legacy.mac_address,
            networks: nets,
        },
        mounts: vec![],
    }
}
