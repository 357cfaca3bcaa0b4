//! `/containers` routes: create, lifecycle, wait, list, inspect, logs.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cove_controller::{ContainerView, WaitCondition};
use cove_model::{ContainerRecord, Status};

use crate::create::create_request;
use crate::encode::{container, container_inspect, time};
use crate::filters::{filter_bool, label_matches, name_matches, Filters};
use crate::hijack::{stream_type, streamed};
use crate::json::{json_response, ok, DockerJson, Id, Params};
use crate::signal::parse_signal;
use crate::stream::{deferred_body, log_body, LogOptions};
use crate::{ApiError, ApiResult, AppState};
use cove_wire::ContainerCreateRequest;

pub(crate) use crate::attach::attach;

/// `POST /containers/create?name=`.
pub(crate) async fn create(
    State(st): State<AppState>,
    q: Params,
    DockerJson(b): DockerJson<ContainerCreateRequest>,
) -> ApiResult {
    let req = create_request(q.get("name"), b)?;
    let id = st.ctl.container_create(req).await?;
    Ok(json_response(StatusCode::CREATED, &serde_json::json!({ "Id": id, "Warnings": [] })))
}

fn done_or_not_modified(changed: bool) -> Response {
    if changed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_MODIFIED.into_response()
    }
}

/// `POST /containers/{id}/start`: 204, or 304 when already running.
pub(crate) async fn start(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    let started = st.ctl.container_start(&id).await?;
    Ok(done_or_not_modified(started))
}

/// `POST /containers/{id}/stop?t=`: 204, or 304 when not running.
pub(crate) async fn stop(State(st): State<AppState>, Id(id): Id, q: Params) -> ApiResult {
    let t = q.int::<i64>("t")?;
    Ok(done_or_not_modified(st.ctl.container_stop(&id, t).await?))
}

/// `POST /containers/{id}/restart?t=`.
pub(crate) async fn restart(State(st): State<AppState>, Id(id): Id, q: Params) -> ApiResult {
    let t = q.int::<i64>("t")?;
    st.ctl.container_restart(&id, t).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /containers/{id}/kill?signal=`.
pub(crate) async fn kill(State(st): State<AppState>, Id(id): Id, q: Params) -> ApiResult {
    let sig = parse_signal(q.get("signal").unwrap_or(""))?;
    st.ctl.container_kill(&id, sig).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /containers/{id}?force=&v=`.
pub(crate) async fn remove(State(st): State<AppState>, Id(id): Id, q: Params) -> ApiResult {
    if q.flag("link") {
        return Err(ApiError::bad_request(
            "removing legacy links (link=true) is not supported by cove",
        ));
    }
    st.ctl.container_remove(&id, q.flag("force")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `condition` of `POST /containers/{id}/wait`.
pub(crate) fn wait_condition(v: Option<&str>) -> Result<WaitCondition, ApiError> {
    match v.unwrap_or("") {
        "" | "not-running" => Ok(WaitCondition::NotRunning),
        "next-exit" => Ok(WaitCondition::NextExit),
        "removed" => Ok(WaitCondition::Removed),
        other => Err(ApiError::bad_request(format!(
            "invalid condition: \"{other}\" (expected not-running, next-exit or removed)"
        ))),
    }
}

/// The body of a wait's answer.
fn wait_body(result: Result<i32, cove_model::Error>) -> Bytes {
    let body = match result {
        Ok(code) => serde_json::json!({ "StatusCode": code, "Error": null }),
        Err(e) => serde_json::json!({ "StatusCode": -1, "Error": { "Message": e.message } }),
    };
    let mut b = serde_json::to_vec(&body).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

/// `POST /containers/{id}/wait`: the headers go out at once (the CLI starts the container
/// only after they arrive); the body `{"StatusCode", "Error"}` when the condition is met.
pub(crate) async fn wait(State(st): State<AppState>, Id(id): Id, q: Params) -> ApiResult {
    let cond = wait_condition(q.get("condition"))?;
    let full_id = st.ctl.container_get(&id).await?.record.id;
    let ctl = st.ctl.clone();
    let mut fut = Box::pin(async move { ctl.container_wait_until(&full_id, cond).await });
    // Poll once before the headers go out, so the wait is registered before the client
    // (which waits for the headers) starts the container.
    let body = match futures::poll!(&mut fut) {
        std::task::Poll::Ready(r) => {
            deferred_body(std::future::ready(wait_body(r)), st.shutdown.clone())
        }
        std::task::Poll::Pending => {
            deferred_body(async move { wait_body(fut.await) }, st.shutdown.clone())
        }
    };
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, "application/json".parse().expect("static"));
    Ok(r)
}

const LIST_FILTERS: &[&str] = &[
    "name", "id", "status", "label", "network", "ancestor", "exited", "before", "since", "is-task",
];
const STATUSES: &[&str] =
    &["created", "restarting", "running", "removing", "paused", "exited", "dead"];

/// Whether `image` (as a filter value) names the container's image.
fn ancestor_matches(v: &str, r: &ContainerRecord) -> bool {
    let c = &r.config;
    let with_tag = |s: &str| {
        if s.rsplit('/').next().unwrap_or(s).contains(':') {
            s.to_owned()
        } else {
            format!("{s}:latest")
        }
    };
    v == c.image
        || with_tag(v) == with_tag(&c.image)
        || (!v.is_empty()
            && (c.image_id == v
                || c.image_id.strip_prefix("sha256:").is_some_and(|h| h.starts_with(v))))
}

/// Select and order `GET /containers/json` results (newest first, as Docker).
pub(crate) fn select(
    views: Vec<ContainerView>,
    f: &Filters,
    all: bool,
    limit: Option<i64>,
) -> Result<Vec<ContainerView>, ApiError> {
    f.validate(LIST_FILTERS)?;
    for s in f.get("status").unwrap_or_default() {
        if !STATUSES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!("invalid filter 'status={s}'")));
        }
    }
    let exited: Vec<i32> = f
        .get("exited")
        .unwrap_or_default()
        .iter()
        .map(|v| {
            v.parse().map_err(|_| ApiError::bad_request(format!("invalid filter 'exited={v}'")))
        })
        .collect::<Result<_, _>>()?;
    for v in f.get("is-task").unwrap_or_default() {
        filter_bool("is-task", v)?;
    }
    let mut views = views;
    views.sort_by(|a, b| {
        time::unix_f64(&b.record.created).total_cmp(&time::unix_f64(&a.record.created))
    });
    let find = |key: &str| -> Result<Option<f64>, ApiError> {
        let Some(v) = f.get(key).and_then(|v| v.first()) else { return Ok(None) };
        let c = views
            .iter()
            .find(|c| {
                c.record.name == v.trim_start_matches('/') || c.record.id.starts_with(v.as_str())
            })
            .ok_or_else(|| ApiError::not_found(format!("No such container: {v}")))?;
        Ok(Some(time::unix_f64(&c.record.created)))
    };
    let (before, since) = (find("before")?, find("since")?);
    let all = all
        || f.get("status").is_some()
        || limit.is_some_and(|l| l > 0)
        || before.is_some()
        || since.is_some();
    let mut out: Vec<ContainerView> = views
        .into_iter()
        .filter(|v| {
            let r = &v.record;
            let created = time::unix_f64(&r.created);
            (all || r.state.status == Status::Running)
                && f.any("name", |p| {
                    name_matches(p, &r.name) || name_matches(p, &format!("/{}", r.name))
                })
                && f.any("id", |p| r.id.starts_with(p))
                && f.any("status", |s| s == r.state.status.as_str())
                && f.all("label", |l| label_matches(l, &r.config.labels))
                && f.any("network", |n| {
                    v.networks.iter().any(|(net, _)| net.name == n || net.id.starts_with(n))
                })
                && f.any("ancestor", |a| ancestor_matches(a, r))
                && (exited.is_empty()
                    || (r.state.status == Status::Exited && exited.contains(&r.state.exit_code)))
                && before.is_none_or(|b| created < b)
                && since.is_none_or(|s| created > s)
                && f.any("is-task", |t| t == "false" || t == "0")
        })
        .collect();
    if let Some(l) = limit.filter(|l| *l > 0) {
        out.truncate(l as usize);
    }
    Ok(out)
}

/// `GET /containers/json?all=&limit=&filters=`.
pub(crate) async fn list(State(st): State<AppState>, q: Params) -> ApiResult {
    let f = Filters::parse(q.get("filters"))?;
    let limit = q.int::<i64>("limit")?;
    let views = select(st.ctl.container_list().await, &f, q.flag("all"), limit)?;
    let now = chrono::Utc::now();
    let out: Vec<_> = views.iter().map(|v| container::summary(v, now)).collect();
    Ok(ok(&out))
}

/// `GET /containers/{id}/json`.
pub(crate) async fn inspect(State(st): State<AppState>, Id(id): Id) -> ApiResult {
    let v = st.ctl.container_get(&id).await?;
    Ok(ok(&container_inspect::inspect(&v, &st.ctl.config().data_root)))
}

/// `tail`: `all` (or absent) or a number of lines.
pub(crate) fn parse_tail(v: Option<&str>) -> Result<Option<usize>, ApiError> {
    match v.map(str::trim) {
        None | Some("") | Some("all") => Ok(None),
        Some(n) => match n.parse::<i64>() {
            Ok(n) if n < 0 => Ok(None),
            Ok(n) => Ok(Some(n as usize)),
            Err(_) => Err(ApiError::bad_request(format!("invalid value for tail: {n:?}"))),
        },
    }
}

fn query_time(q: &Params, key: &str) -> Result<Option<f64>, ApiError> {
    match q.get(key).map(str::trim) {
        None | Some("") | Some("0") => Ok(None),
        Some(v) => time::parse_query_time(v)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("invalid value for {key}: {v:?}"))),
    }
}

/// Log options from the query of `logs` (and `attach`).
pub(crate) fn log_options(q: &Params, raw: bool) -> Result<LogOptions, ApiError> {
    let opts = LogOptions {
        stdout: q.flag("stdout"),
        stderr: q.flag("stderr"),
        timestamps: q.flag("timestamps"),
        raw,
        since: query_time(q, "since")?,
        until: query_time(q, "until")?,
    };
    if !opts.stdout && !opts.stderr {
        return Err(ApiError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    Ok(opts)
}

/// `GET /containers/{id}/logs`: a streamed multiplexed (raw for a tty) body.
pub(crate) async fn logs(State(st): State<AppState>, Id(id): Id, q: Params) -> ApiResult {
    let v = st.ctl.container_get(&id).await?;
    let raw = v.record.config.tty;
    let opts = log_options(&q, raw)?;
    let tail = parse_tail(q.get("tail"))?;
    let rx = st.ctl.container_logs(&v.record.id, q.flag("follow"), tail).await?;
    Ok(streamed(stream_type(raw), log_body(rx, opts, st.shutdown.clone())))
}

/// `POST /containers/{id}/resize`, `POST /exec/{id}/resize`: nothing to resize (no ttys).
pub(crate) async fn resize() -> StatusCode {
    StatusCode::OK
}

#[cfg(test)]
#[path = "containers_tests.rs"]
mod tests;
