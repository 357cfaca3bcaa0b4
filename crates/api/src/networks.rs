//! `/networks` routes: list, inspect, create, remove, connect, disconnect, prune.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cove_controller::{IpamConfigRequest, NetworkCreate, NetworkView};
use cove_model::{EndpointSettings, MacAddr, NetworkRecord};
use cove_wire as wire;

use crate::encode::{network, time};
use crate::filters::{filter_bool, label_matches, name_matches, Filters};
use crate::json::{json_response, ok, DockerJson, Id, Params};
use crate::{ApiError, ApiResult, AppState};

const LIST_FILTERS: &[&str] = &["name", "id", "label", "driver", "scope", "type", "dangling"];

/// `GET /networks`.
pub(crate) async fn list(State(st): State<AppState>, q: Params) -> ApiResult {
    let f = Filters::parse(q.get("filters"))?;
    let select = list_filter(&f)?;
    let nets = st.ctl.network_list().await;
    let out: Vec<_> = nets.iter().filter(|v| select(v)).map(network::summary).collect();
    Ok(ok(&out))
}

/// Validate `GET /networks` filters and build the predicate.
fn list_filter(f: &Filters) -> Result<impl Fn(&NetworkView) -> bool + '_, ApiError> {
    f.validate(LIST_FILTERS)?;
    for t in f.get("type").unwrap_or_default() {
        if t != "custom" && t != "builtin" {
            return Err(ApiError::bad_request(format!("invalid filter: 'type'='{t}'")));
        }
    }
    for s in f.get("scope").unwrap_or_default() {
        if !matches!(s.as_str(), "local" | "swarm" | "global") {
            return Err(ApiError::bad_request(format!("invalid filter: 'scope'='{s}'")));
        }
    }
    let dangling = match f.get("dangling") {
        None => None,
        Some([one]) => Some(filter_bool("dangling", one)?),
        Some(_) => return Err(ApiError::bad_request("invalid filter: 'dangling' takes one value")),
    };
    Ok(move |v: &NetworkView| {
        let r = &v.record;
        f.any("name", |p| name_matches(p, &r.name))
            && f.any("id", |p| r.id.starts_with(p))
            && f.all("label", |l| label_matches(l, &r.labels))
            && f.any("driver", |d| d == r.driver.as_str())
            && f.any("scope", |s| s == v.scope)
            && f.any("type", |t| (t == "builtin") == r.builtin)
            && dangling.is_none_or(|d| d == (!r.builtin && v.endpoints.is_empty()))
    })
}

/// `GET /networks/{id}?verbose=&scope=`: a network of another scope finds nothing (404,
/// as dockerd answers for a local network asked in the swarm scope). Cove's cluster-wide
/// networks are `global` (the classic overlay's scope) and also answer to `swarm`, the
/// scope Docker's CLI asks for when it resolves a service's networks.
pub(crate) async fn inspect(State(st): State<AppState>, Id(id): Id, q: Params) -> ApiResult {
    let v = st.ctl.network_get(&id).await?;
    match q.get("scope").map(str::trim) {
        None | Some("") => {}
        Some(s) if s == v.scope => {}
        Some("swarm") if v.scope == "global" => {}
        Some(_) => return Err(ApiError::not_found(format!("network {id} not found"))),
    }
    Ok(ok(&network::inspect(&v)))
}

/// `DELETE /networks/{id}`.
pub(crate) async fn remove(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    st.ctl.network_remove(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Docker's create body to the controller's request; refuses what Cove does not do.
pub(crate) fn create_request(b: wire::NetworkCreateRequest) -> Result<NetworkCreate, ApiError> {
    let name = b.name.trim().to_owned();
    if name.is_empty() {
        return Err(ApiError::bad_request("network name is required (field Name is empty)"));
    }
    let unsupported =
        |what: &str| ApiError::bad_request(format!("{what} is not supported by cove"));
    if b.ingress {
        return Err(unsupported("ingress networks (Ingress: true)"));
    }
    if b.config_only {
        return Err(unsupported("config-only networks (ConfigOnly: true)"));
    }
    if b.config_from.as_ref().is_some_and(|c| !c.network.is_empty()) {
        return Err(unsupported("ConfigFrom"));
    }
    if !matches!(b.scope.as_str(), "" | "local" | "global") {
        return Err(unsupported(&format!(
            "scope \"{}\" (local and global networks only)",
            b.scope
        )));
    }
    if b.enable_ipv4 == Some(false) {
        return Err(unsupported("disabling IPv4 (EnableIPv4: false)"));
    }
    let ipam = b.ipam.unwrap_or_default();
    Ok(NetworkCreate {
        name,
        driver: b.driver,
        internal: b.internal,
        attachable: b.attachable,
        enable_ipv6: b.enable_ipv6.unwrap_or(false),
        ipam_driver: ipam.driver,
        ipam_options: ipam.options,
        ipam_config: ipam
            .config
            .into_iter()
            .map(|c| {
                let aux: Vec<(String, String)> = c.auxiliary_addresses.into_iter().collect();
                IpamConfigRequest::parse(Some(&c.subnet), Some(&c.ip_range), Some(&c.gateway), &aux)
            })
            .collect::<Result<_, _>>()?,
        options: b.options,
        labels: b.labels,
    })
}

/// `POST /networks/create`.
pub(crate) async fn create(
    State(st): State<AppState>,
    DockerJson(b): DockerJson<wire::NetworkCreateRequest>,
) -> ApiResult {
    let req = create_request(b)?;
    let id = st.ctl.network_create(req).await?;
    Ok(json_response(StatusCode::CREATED, &serde_json::json!({ "Id": id, "Warning": "" })))
}

fn parse_ip(s: &str, v6: bool) -> Result<Option<IpAddr>, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let fam = if v6 { "IPv6" } else { "IPv4" };
    match s.parse::<IpAddr>() {
        Ok(ip) if ip.is_ipv6() == v6 => Ok(Some(ip)),
        _ => Err(ApiError::bad_request(format!("invalid {fam} address: {s}"))),
    }
}

/// Parse a MAC address field ("" = none).
pub(crate) fn parse_mac(s: &str) -> Result<Option<MacAddr>, ApiError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    MacAddr::parse(s).map(Some).map_err(ApiError::from)
}

/// A request's endpoint settings to the controller's.
pub(crate) fn endpoint_settings(b: &wire::EndpointSettings) -> Result<EndpointSettings, ApiError> {
    let (v4, v6) = match &b.ipam_config {
        Some(c) => (parse_ip(&c.ipv4_address, false)?, parse_ip(&c.ipv6_address, true)?),
        None => (None, None),
    };
    Ok(EndpointSettings {
        ipv4_address: v4,
        ipv6_address: v6,
        mac_address: parse_mac(&b.mac_address)?,
        aliases: b.aliases.iter().filter(|a| !a.is_empty()).cloned().collect(),
        links: b.links.iter().filter(|l| !l.is_empty()).cloned().collect(),
    })
}

fn require_container(c: &str) -> Result<&str, ApiError> {
    let c = c.trim();
    if c.is_empty() {
        Err(ApiError::bad_request("container is required (field Container is empty)"))
    } else {
        Ok(c)
    }
}

/// A connect body to the container reference and the endpoint settings asked for.
pub(crate) fn connect_settings(
    b: wire::NetworkConnectRequest,
) -> Result<(String, EndpointSettings), ApiError> {
    let container = require_container(&b.container)?.to_owned();
    Ok((container, endpoint_settings(&b.endpoint_config.unwrap_or_default())?))
}

/// `POST /networks/{id}/connect`.
pub(crate) async fn connect(
    State(st): State<AppState>,
    Id(id): Id,
    DockerJson(b): DockerJson<wire::NetworkConnectRequest>,
) -> ApiResult {
    let (container, settings) = connect_settings(b)?;
    st.ctl.network_connect(&id, &container, settings).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /networks/{id}/disconnect`.
pub(crate) async fn disconnect(
    State(st): State<AppState>,
    Id(id): Id,
    DockerJson(b): DockerJson<wire::NetworkDisconnectRequest>,
) -> ApiResult {
    let container = require_container(&b.container)?;
    st.ctl.network_disconnect(&id, container, b.force).await?;
    Ok(StatusCode::OK.into_response())
}

/// Parse a Go duration (`10m`, `1h30m`, `1.5h`, `300ms`).
pub(crate) fn parse_go_duration(s: &str) -> Option<f64> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(total)
}

/// `until` filter value: a time (unix or RFC 3339) or a duration before `now`.
fn until_cutoff(v: &str, now: f64) -> Result<f64, ApiError> {
    if let Some(d) = parse_go_duration(v) {
        return Ok(now - d);
    }
    time::parse_query_time(v).ok_or_else(|| {
        ApiError::bad_request(format!("invalid filter 'until={v}': not a time or a duration"))
    })
}

/// The predicate of `POST /networks/prune` filters (`until`, `label`, `label!`).
pub(crate) fn prune_filter(
    f: &Filters,
    now: f64,
) -> Result<impl Fn(&NetworkRecord) -> bool + Send + Sync, ApiError> {
    f.validate(&["until", "label", "label!"])?;
    let cutoffs: Vec<f64> = f
        .get("until")
        .unwrap_or_default()
        .iter()
        .map(|v| until_cutoff(v, now))
        .collect::<Result<_, _>>()?;
    let with: Vec<String> = f.get("label").unwrap_or_default().to_vec();
    let without: Vec<String> = f.get("label!").unwrap_or_default().to_vec();
    Ok(move |r: &NetworkRecord| {
        let created = time::unix_f64(&r.created);
        cutoffs.iter().all(|c| created < *c)
            && with.iter().all(|l| label_matches(l, &r.labels))
            && !without.iter().any(|l| label_matches(l, &r.labels))
    })
}

/// `POST /networks/prune`.
pub(crate) async fn prune(State(st): State<AppState>, q: Params) -> ApiResult<Response> {
    let f = Filters::parse(q.get("filters"))?;
    let now = chrono::Utc::now();
    let now = now.timestamp() as f64 + f64::from(now.timestamp_subsec_nanos()) / 1e9;
    let select = prune_filter(&f, now)?;
    let deleted = st.ctl.network_prune(&select).await?;
    Ok(ok(&serde_json::json!({ "NetworksDeleted": deleted })))
}

#[cfg(test)]
#[path = "networks_tests.rs"]
mod tests;
