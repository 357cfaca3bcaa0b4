//! `POST /containers/create`: Docker's body ([`cove_wire::ContainerCreateRequest`]) to the
//! controller's [`ContainerCreate`].

use std::net::IpAddr;

use cove_controller::ContainerCreate;
use cove_model::{
    ContainerConfig, EndpointSettings, HostConfig, NetworkMode, ParsePortSpecError, PortBinding,
    PortSpec,
};
use cove_wire as wire;

use crate::networks::{endpoint_settings, parse_mac};
use crate::ApiError;

/// A port key (`80/tcp`, `53/udp`, `80`), by the model's parser (the one the CLI uses too).
pub(crate) fn parse_port_key(key: &str) -> Result<PortSpec, ApiError> {
    key.parse().map_err(|e| {
        let why = match e {
            ParsePortSpecError::Proto(_) => "protocol must be tcp, udp or sctp".to_owned(),
            e => e.to_string(),
        };
        ApiError::bad_request(format!("invalid port \"{key}\": {why}"))
    })
}

fn parse_binding(
    spec: PortSpec,
    key: &str,
    b: &wire::PortBinding,
) -> Result<PortBinding, ApiError> {
    let host_ip = match b.host_ip.trim() {
        "" => None,
        ip => Some(ip.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().map_err(
            |_| {
                ApiError::bad_request(format!(
                    "invalid host IP \"{ip}\" in the port binding of {key}"
                ))
            },
        )?),
    };
    let host_port = match b.host_port.trim() {
        "" => 0,
        p if p.contains('-') => {
            return Err(ApiError::bad_request(format!(
                "host port range \"{p}\" in the port binding of {key} is not supported by cove: give one port"
            )))
        }
        p => p.parse::<u16>().map_err(|_| {
            ApiError::bad_request(format!("invalid host port \"{p}\" in the port binding of {key}"))
        })?,
    };
    Ok(PortBinding { container_port: spec.port, protocol: spec.proto, host_ip, host_port })
}

fn port_bindings(h: &wire::HostConfig) -> Result<Vec<PortBinding>, ApiError> {
    let mut out = vec![];
    for (key, list) in &h.port_bindings {
        let spec = parse_port_key(key)?;
        match list.as_deref() {
            // An empty list publishes on an ephemeral port (Docker before API 1.52).
            None | Some([]) => out.push(parse_binding(spec, key, &wire::PortBinding::default())?),
            Some(list) => {
                for b in list {
                    out.push(parse_binding(spec, key, b)?);
                }
            }
        }
    }
    Ok(out)
}

/// `HostConfig.NetworkMode` to the record's mode and the name as shown.
pub(crate) fn network_mode(raw: &str) -> Result<(NetworkMode, String), ApiError> {
    let name = match raw.trim() {
        "" | "default" => "bridge",
        m => m,
    };
    let mode = match name {
        "host" => NetworkMode::Host,
        "none" => NetworkMode::None,
        m => match m.strip_prefix("container:") {
            Some("") => {
                return Err(ApiError::bad_request(
                    "invalid network mode \"container:\": no container named",
                ))
            }
            Some(target) => NetworkMode::Container(target.to_owned()),
            None => NetworkMode::Sandbox,
        },
    };
    Ok((mode, name.to_owned()))
}

/// Decode the body of `POST /containers/create?name=`.
pub(crate) fn create_request(
    name: Option<&str>,
    b: wire::ContainerCreateRequest,
) -> Result<ContainerCreate, ApiError> {
    let image = b.image.trim().to_owned();
    if image.is_empty() {
        return Err(ApiError::bad_request("no image specified (field Image is empty)"));
    }
    let name =
        name.map(|n| n.trim().trim_start_matches('/')).filter(|n| !n.is_empty()).map(str::to_owned);
    let mut exposed_ports = vec![];
    for key in b.exposed_ports.keys() {
        let k = parse_port_key(key)?.to_string();
        if !exposed_ports.contains(&k) {
            exposed_ports.push(k);
        }
    }
    let h = &b.host_config;
    let (mode, mode_name) = if b.network_disabled {
        (NetworkMode::None, "none".to_owned())
    } else {
        network_mode(&h.network_mode)?
    };
    let mut endpoints: Vec<(String, EndpointSettings)> = vec![];
    for (net, body) in &b.networking_config.endpoints_config {
        let settings = body
            .as_ref()
            .map_or_else(|| Ok(EndpointSettings::default()), endpoint_settings)
            .map_err(|e| ApiError::bad_request(format!("network {net}: {}", e.message)))?;
        // The CLI keys the default network's settings "default" when no --network is given.
        let net = if net == "default" { "bridge" } else { net.as_str() };
        if endpoints.iter().any(|(n, _)| n == net) {
            return Err(ApiError::bad_request(format!(
                "network {net} appears twice in NetworkingConfig.EndpointsConfig"
            )));
        }
        endpoints.push((net.to_owned(), settings));
    }
    // The network the mode names goes first, as Docker connects it first.
    if let Some(i) = endpoints.iter().position(|(n, _)| *n == mode_name) {
        let first = endpoints.remove(i);
        endpoints.insert(0, first);
    }
    if let Some(mac) = parse_mac(&b.mac_address)? {
        if mode != NetworkMode::Sandbox {
            return Err(ApiError::bad_request(format!(
                "conflicting options: mac-address and the network mode \"{mode_name}\""
            )));
        }
        match endpoints.iter_mut().find(|(n, _)| *n == mode_name) {
            Some((_, s)) => {
                s.mac_address.get_or_insert(mac);
            }
            None => endpoints.insert(
                0,
                (
                    mode_name.clone(),
                    EndpointSettings { mac_address: Some(mac), ..Default::default() },
                ),
            ),
        }
    }
    let config = ContainerConfig {
        image_id: String::new(),
        image,
        entrypoint: b.entrypoint.unwrap_or_default(),
        cmd: b.cmd.unwrap_or_default(),
        env: b.env,
        working_dir: b.working_dir,
        hostname: b.hostname,
        domainname: b.domainname,
        labels: b.labels,
        tty: b.tty,
        open_stdin: b.open_stdin,
        exposed_ports,
    };
    let host_config = HostConfig {
        port_bindings: port_bindings(h)?,
        network_mode: mode,
        network_mode_name: mode_name,
        dns: h.dns.clone(),
        dns_search: h.dns_search.clone(),
        dns_options: h.dns_options.clone(),
        extra_hosts: h.extra_hosts.clone(),
        auto_remove: h.auto_remove,
        publish_all_ports: h.publish_all_ports,
        links: h.links.clone(),
    };
    Ok(ContainerCreate { name, config, host_config, endpoints })
}

#[cfg(test)]
#[path = "create_tests.rs"]
mod tests;
