//! The subset of Docker's Swarm API Cove serves: services, tasks, nodes and the cluster,
//! so that `docker service`, `docker node`, `docker stack` and docker-py work unchanged.
//! What Cove does not serve answers 501 with the reason; joining and leaving point to the
//! daemon's flags, as Cove's cluster is its cluster store.

mod objects;
mod spec;

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use cove_model::{ServiceMode, ServiceRecord, TaskRecord, TaskState};

use crate::filters::{label_matches, Filters};
use crate::json::{json_response, ok, DockerJson, Id, Params};
use crate::{ApiError, ApiResult, AppState};

pub(crate) use objects::info as swarm_info;

/// Resolve the spec's networks to ids (so the stored spec names them as swarmkit's
/// does) and parse it.
async fn request(st: &AppState, body: Value) -> Result<cove_controller::ServiceRequest, ApiError> {
    let mut req = spec::parse(body)?;
    let mut ids = Vec::with_capacity(req.networks.len());
    for (reference, _) in &req.networks {
        ids.push(st.ctl.network_get(reference).await?.record.id.to_string());
    }
    req.spec = spec::with_network_ids(req.spec, &ids);
    for ((reference, _), id) in req.networks.iter_mut().zip(&ids) {
        *reference = id.clone();
    }
    Ok(req)
}

/// `POST /services/create`.
pub(crate) async fn create(
    State(st): State<AppState>,
    DockerJson(body): DockerJson<Value>,
) -> ApiResult {
    let req = request(&st, body).await?;
    let svc = st.ctl.service_create(req).await?;
    Ok(json_response(StatusCode::CREATED, &json!({ "ID": svc.id, "Warnings": null })))
}

/// `POST /services/{id}/update?version=N`.
pub(crate) async fn update(
    State(st): State<AppState>,
    Id(id): Id,
    q: Params,
    DockerJson(body): DockerJson<Value>,
) -> ApiResult {
    let version = q
        .get("version")
        .ok_or_else(|| {
            ApiError::bad_request("service update: the version query parameter is required")
        })?
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request("service update: version must be a number"))?;
    let req = request(&st, body).await?;
    st.ctl.service_update(&id, version, req).await?;
    Ok(ok(&json!({ "Warnings": null })))
}

/// `DELETE /services/{id}`.
pub(crate) async fn remove(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    st.ctl.service_remove(&id).await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /services/{id}`.
pub(crate) async fn inspect(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    let svc = st.ctl.service_get(&id)?;
    Ok(ok(&objects::service(&svc, None)))
}

fn mode_name(svc: &ServiceRecord) -> &'static str {
    match svc.plan.mode {
        ServiceMode::Replicated { .. } => "replicated",
        ServiceMode::Global => "global",
    }
}

/// `GET /services` (`filters`: id, name, label, mode; `status=true`: task counts).
pub(crate) async fn list(State(st): State<AppState>, q: Params) -> ApiResult {
    let f = Filters::parse(q.get("filters"))?;
    f.validate(&["id", "name", "label", "mode"])?;
    let status = q.get("status").is_some_and(|s| s == "1" || s.eq_ignore_ascii_case("true"));
    let tasks = if status { Some(st.ctl.task_list()?) } else { None };
    let out: Vec<Value> = st
        .ctl
        .service_list()?
        .iter()
        .filter(|s| f.any("id", |v| s.id.starts_with(v)))
        .filter(|s| f.any("name", |v| s.plan.name.starts_with(v)))
        .filter(|s| f.all("label", |v| label_matches(v, &s.plan.labels)))
        .filter(|s| f.any("mode", |v| v == mode_name(s)))
        .map(|s| objects::service(s, tasks.as_deref()))
        .collect();
    Ok(ok(&out))
}

fn services_by_id(st: &AppState) -> Result<HashMap<String, ServiceRecord>, ApiError> {
    Ok(st.ctl.service_list()?.into_iter().map(|s| (s.id.clone(), s)).collect())
}

/// `GET /tasks` (`filters`: id, name, service, node, desired-state, label, `_up-to-date`).
pub(crate) async fn tasks(State(st): State<AppState>, q: Params) -> ApiResult {
    let f = Filters::parse(q.get("filters"))?;
    f.validate(&["id", "name", "service", "node", "desired-state", "label", "_up-to-date"])?;
    let services = services_by_id(&st)?;
    let nodes = st.ctl.node_list().await?;
    let node_matches = |t: &TaskRecord, v: &str| {
        t.node_id.as_deref().is_some_and(|id| {
            id == v
                || nodes
                    .iter()
                    .any(|n| n.node.id == id && (n.node.hostname == v || n.node.id.starts_with(v)))
        })
    };
    let service_matches = |t: &TaskRecord, v: &str| {
        services
            .get(&t.service_id)
            .is_some_and(|s| s.id == v || s.plan.name == v || s.id.starts_with(v))
    };
    let up_to_date = |t: &TaskRecord| {
        services.get(&t.service_id).is_some_and(|s| t.spec_version >= s.task_version)
    };
    let out: Vec<Value> = st
        .ctl
        .task_list()?
        .iter()
        .filter(|t| f.any("id", |v| t.id.starts_with(v)))
        .filter(|t| {
            f.any("name", |v| {
                services.get(&t.service_id).is_some_and(|s| t.name(&s.plan.name).starts_with(v))
            })
        })
        .filter(|t| f.any("service", |v| service_matches(t, v)))
        .filter(|t| f.any("node", |v| node_matches(t, v)))
        .filter(|t| f.any("desired-state", |v| desired_matches(t, v)))
        .filter(|t| f.get("_up-to-date").is_none() || up_to_date(t))
        .map(|t| objects::task(t, &services))
        .collect();
    Ok(ok(&out))
}

/// Swarmkit's desired-state filter: `running` also matches tasks still on their way
/// there, `accepted` the same; `shutdown` matches tasks meant to stop.
fn desired_matches(t: &TaskRecord, v: &str) -> bool {
    match v {
        "running" | "accepted" => t.desired == TaskState::Running,
        "shutdown" => t.desired == TaskState::Shutdown,
        other => t.desired.as_str() == other,
    }
}

/// `GET /tasks/{id}`.
pub(crate) async fn task(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    let t = st.ctl.task_get(&id)?;
    Ok(ok(&objects::task(&t, &services_by_id(&st)?)))
}

/// `GET /nodes`.
pub(crate) async fn nodes(State(st): State<AppState>, q: Params) -> ApiResult {
    let f = Filters::parse(q.get("filters"))?;
    f.validate(&["id", "name", "role", "membership", "label", "node.label"])?;
    let leader = st.ctl.leader_id();
    let out: Vec<Value> = st
        .ctl
        .node_list()
        .await?
        .iter()
        .filter(|n| f.any("id", |v| n.node.id.starts_with(v)))
        .filter(|n| f.any("name", |v| n.node.hostname.starts_with(v)))
        .filter(|_| f.any("role", |v| v == "manager"))
        .filter(|_| f.any("membership", |v| v == "accepted"))
        .filter(|n| f.all("node.label", |v| label_matches(v, &n.node.labels)))
        .filter(|n| f.all("label", |v| label_matches(v, &n.node.labels)))
        .map(|n| objects::node(n, leader.as_deref()))
        .collect();
    Ok(ok(&out))
}

/// `GET /nodes/{id}` (id, id prefix or hostname).
pub(crate) async fn node(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    let leader = st.ctl.leader_id();
    let nodes = st.ctl.node_list().await?;
    let n = nodes
        .iter()
        .find(|n| n.node.id == id || n.node.hostname == id)
        .or_else(|| {
            let mut m = nodes.iter().filter(|n| n.node.id.starts_with(&id));
            match (m.next(), m.next()) {
                (Some(n), None) => Some(n),
                _ => None,
            }
        })
        .ok_or_else(|| ApiError::not_found(format!("node {id} not found")))?;
    Ok(ok(&objects::node(n, leader.as_deref())))
}

/// `GET /swarm`.
pub(crate) async fn swarm(State(st): State<AppState>) -> ApiResult {
    match st.ctl.swarm_view()? {
        Some(v) => Ok(ok(&objects::swarm(&v))),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "This node is not a swarm manager. Start the daemon with --cluster-store and \
             --cluster-advertise to make it part of a cluster.",
        )),
    }
}

/// `POST /swarm/init|join|leave|update|unlock`: Cove's cluster is its cluster store. The
/// body is read first: answering before the client finished sending it breaks its pipe.
pub(crate) async fn membership(
    axum::extract::Path(action): axum::extract::Path<String>,
    body: axum::body::Body,
) -> Response {
    let _ = crate::json::read_body(body, 1 << 20).await;
    ApiError::not_implemented(format!(
        "POST /swarm/{action} is not supported by Cove: Cove does not form clusters through \
         the Swarm API; every daemon started with `cove daemon --cluster-store \
         etcd://ADDR:2379 --cluster-advertise ADDR` is a node of that cluster (a daemon \
         without a cluster store is a cluster of one)"
    ))
    .into_response()
}

/// `GET /secrets`, `GET /configs`: there are none (`docker stack rm` lists them).
pub(crate) async fn empty_list() -> Response {
    ok(&Vec::<Value>::new())
}

/// `POST /secrets/create`, `/configs/create`: not served (body read first, as above).
pub(crate) async fn unsupported_swarm(uri: axum::http::Uri, body: axum::body::Body) -> Response {
    let _ = crate::json::read_body(body, 1 << 20).await;
    ApiError::not_implemented(format!(
        "POST {} is not supported by Cove: secrets and configs are not supported by Cove's \
         services",
        uri.path()
    ))
    .into_response()
}

/// `GET /distribution/{name}/json`: Cove has no registry to ask (the CLI then records no
/// digest and goes on).
pub(crate) async fn distribution() -> Response {
    ApiError::not_found("Cove has no registry access: image digests cannot be resolved")
        .into_response()
}
