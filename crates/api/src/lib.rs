//! Docker Engine API routes over the controller; error kind to HTTP status.
//!
//! The API **is** the Docker Engine API (shapes of versions 1.41 to 1.50), so the real
//! `docker` CLI and Docker SDKs work against Cove, and `cove` the CLI is a client of the same
//! routes. Every handler decodes Docker's JSON into a typed controller request, calls the
//! controller, and encodes the result in Docker's JSON shape (see [`encode`]).
//!
//! Errors are always JSON `{"message": "..."}` with the status [`status_of`] gives the
//! error's kind; unknown routes answer 501 with the same body.
#![warn(missing_docs)]

mod attach;
mod containers;
mod create;
#[cfg(test)]
mod decode_tests;
pub mod encode;
mod events;
mod exec;
mod filters;
mod hijack;
mod images;
mod json;
mod metrics;
mod networks;
mod prefix;
mod signal;
mod stream;
mod swarm;
mod system;
#[cfg(test)]
mod testutil;
mod top;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, head, post};
use axum::Router;
use cove_controller::SharedController;
use cove_model::ErrorKind;
use tower::Layer;

pub use metrics::serve_metrics;
pub use prefix::strip_version;

/// The API version Cove speaks (the newest whose shapes it follows).
pub const API_VERSION: &str = "1.50";
/// The oldest API version whose clients Cove serves.
pub const MIN_API_VERSION: &str = "1.41";
/// Cove's version, as `GET /version` reports it.
pub const VERSION: &str = "0.1.0-cove";

/// Body limit of JSON requests.
pub(crate) const JSON_LIMIT: usize = 16 << 20;
/// Body limit of image imports and loads.
pub(crate) const IMAGE_LIMIT: usize = 2 << 30;

/// How long [`serve`] waits for open connections after `shutdown` before it returns.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Map an error kind to an HTTP status. The one place this mapping lives.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer: a status and Docker's `{"message": ...}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The message (lowercase, naming the object and the problem).
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// A 501: something Cove does not do.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, message)
    }
}

impl From<cove_model::Error> for ApiError {
    fn from(e: cove_model::Error) -> Self {
        Self::new(status_of(e.kind), e.message)
    }
}

/// The message of an error response, kept for the request log.
#[derive(Debug, Clone)]
struct ErrorNote(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json::error_response(self.status, &self.message);
        r.extensions_mut().insert(ErrorNote(self.message));
        r
    }
}

/// `DELETE /nodes/{id}`: forget a node that is down.
async fn node_remove(State(st): State<AppState>, json::Id(id): json::Id) -> ApiResult {
    st.ctl.node_remove(&id).await?;
    Ok(StatusCode::OK.into_response())
}

/// `POST /nodes/{id}/rotate-key`: replace this node's tunnel key now (`{id}`: `self`, or
/// this node's id or hostname; a node rotates only its own key).
async fn node_rotate_key(State(st): State<AppState>, json::Id(id): json::Id) -> ApiResult {
    let me = st.ctl.node_list().await.ok().and_then(|l| l.into_iter().find(|n| n.this));
    let mine = id == "self"
        || me.as_ref().is_some_and(|n| {
            n.node.id == id || n.node.hostname == id || n.node.id.starts_with(&id)
        });
    if !mine {
        return Err(ApiError::bad_request(format!(
            "node {id} is not this node: a node rotates only its own key (run `cove node rotate-key` on it)"
        )));
    }
    let key = st.ctl.node_rotate_key().await?;
    Ok(axum::Json(serde_json::json!({ "PublicKey": key })).into_response())
}

/// Handler result.
pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

/// What every handler gets: the controller, and a signal that ends long streams (logs,
/// events, waits) when the server shuts down.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) ctl: SharedController,
    pub(crate) shutdown: stream::Shutdown,
}

impl AppState {
    fn new(ctl: SharedController, shutdown: stream::Shutdown) -> Self {
        Self { ctl, shutdown }
    }
}

/// The router over a shared controller: any `/vX.Y` prefix is stripped before routing, every
/// response carries `Api-Version`, and every request is logged (method, path, status,
/// duration). Serve it with `axum::serve(listener, app(ctl))`.
pub fn app(ctl: SharedController) -> Router {
    build(AppState::new(ctl, stream::Shutdown::never()))
}

/// Serve on an already-bound unix listener until `shutdown` resolves, then stop accepting,
/// end long-running streams, and let in-flight requests finish (for at most a few seconds).
pub async fn serve(
    listener: tokio::net::UnixListener,
    ctl: SharedController,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (trigger, signal) = stream::Shutdown::new();
    let app = build(AppState::new(ctl, signal.clone()));
    let graceful = async move {
        shutdown.await;
        trigger.fire();
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let mut after = signal;
    tokio::select! {
        r = server => r,
        _ = async { after.wait().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("api: connections still open {SHUTDOWN_GRACE:?} after shutdown; closing");
            Ok(())
        }
    }
}

fn build(state: AppState) -> Router {
    let metrics = Some(state.ctl.metrics().clone());
    wrap(route_table().with_state(state), metrics)
}

/// Strip the version prefix before `inner` routes; log, count (into `metrics`) and add
/// headers around it all.
fn wrap(inner: Router, metrics: Option<Arc<cove_metrics::Metrics>>) -> Router {
    let stripped = tower::util::MapRequestLayer::new(strip_version).layer(inner);
    Router::new()
        .fallback_service(stripped)
        .layer(axum::middleware::from_fn_with_state(metrics, log_and_headers))
}

fn route_table() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(events::events))
        .route("/nodes", get(swarm::nodes))
        .route("/nodes/{id}", get(swarm::node).delete(node_remove))
        .route("/nodes/{id}/rotate-key", post(node_rotate_key))
        .route("/swarm", get(swarm::swarm))
        .route("/swarm/{action}", post(swarm::membership))
        .route("/services", get(swarm::list))
        .route("/services/create", post(swarm::create))
        .route("/services/{id}", get(swarm::inspect).delete(swarm::remove))
        .route("/services/{id}/update", post(swarm::update))
        .route("/tasks", get(swarm::tasks))
        .route("/tasks/{id}", get(swarm::task))
        .route("/secrets", get(swarm::empty_list))
        .route("/secrets/create", post(swarm::unsupported_swarm))
        .route("/configs", get(swarm::empty_list))
        .route("/configs/create", post(swarm::unsupported_swarm))
        .route("/distribution/{*name}", get(swarm::distribution))
        .route("/networks", get(networks::list))
        .route("/networks/", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route("/networks/{id}", get(networks::inspect).delete(networks::remove))
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/top", get(top::top))
        .route("/containers/{id}", delete(containers::remove))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(containers::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/images/json", get(images::list))
        .route("/images/create", post(images::create))
        .route("/images/load", post(images::load))
        .route("/images/{*rest}", get(images::get_rest).delete(images::remove))
        .route("/session", head(unsupported).post(unsupported))
        .route("/metrics", get(metrics::metrics))
        .route_layer(axum::middleware::from_fn(failpoint_scope))
        .route_layer(axum::middleware::from_fn(note_route))
        .fallback(unsupported)
        .method_not_allowed_fallback(unsupported)
}

/// Name the request's operation for the daemon's failpoints (when they are on): its method
/// and route without parameters, `post-networks-connect` for `POST /networks/{id}/connect`.
async fn failpoint_scope(
    matched: Option<axum::extract::MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    if !cove_controller::failpoints::enabled() {
        return next.run(req).await;
    }
    let route = matched.as_ref().map_or("", |m| m.as_str());
    cove_controller::failpoints::scope(operation_name(req.method(), route), next.run(req)).await
}

/// The template of the route a request matched, for the metrics' `route` label.
#[derive(Debug, Clone)]
struct RouteNote(String);

/// Note the matched route's template (`/networks/{id}`, never the raw path, so the label
/// takes as many values as there are routes) on the response.
async fn note_route(
    matched: Option<axum::extract::MatchedPath>,
    req: Request,
    next: Next,
) -> Response {
    let route = matched.map(|m| m.as_str().to_string());
    let mut resp = next.run(req).await;
    if let Some(route) = route {
        resp.extensions_mut().insert(RouteNote(route));
    }
    resp
}

/// `post-networks-connect` for `POST` and `/networks/{id}/connect`.
fn operation_name(method: &Method, route: &str) -> String {
    let parts = route.split('/').filter(|p| !p.is_empty() && !p.starts_with('{'));
    std::iter::once(method.as_str().to_ascii_lowercase())
        .chain(parts.map(str::to_string))
        .collect::<Vec<_>>()
        .join("-")
}

/// Unknown routes: 501 with a JSON message naming the route.
async fn unsupported(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!("route {method} {} is not supported by cove", uri.path()),
    )
}

/// One log line per request, dockerd's check of the requested API version (400 outside
/// 1.41..=1.50), `Api-Version` (plus Docker's `Server`) on every response, and the request
/// counted by route template and status (`unmatched` when no route took it).
async fn log_and_headers(
    axum::extract::State(metrics): axum::extract::State<Option<Arc<cove_metrics::Metrics>>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut resp = match prefix::version_error(&path) {
        Some(msg) => ApiError::bad_request(msg).into_response(),
        None => next.run(req).await,
    };
    let headers = resp.headers_mut();
    headers.insert("api-version", HeaderValue::from_static(API_VERSION));
    headers.entry("server").or_insert(HeaderValue::from_static(concat!(
        "Cove/",
        env!("CARGO_PKG_VERSION"),
        " (linux)"
    )));
    let took = started.elapsed();
    let ms = took.as_secs_f64() * 1e3;
    let status = resp.status().as_u16();
    if let Some(m) = &metrics {
        let route = resp.extensions().get::<RouteNote>().map_or("unmatched", |r| r.0.as_str());
        m.api_request(method.as_str(), route, status, took);
    }
    match resp.extensions_mut().remove::<ErrorNote>() {
        Some(ErrorNote(error)) => tracing::info!(
            method = %method,
            path = %path,
            status,
            duration_ms = format_args!("{ms:.3}"),
            error = %error,
            "api request"
        ),
        None => tracing::info!(
            method = %method,
            path = %path,
            status,
            duration_ms = format_args!("{ms:.3}"),
            "api request"
        ),
    }
    resp
}

/// Decode `bytes` as every request body the API takes and run each through its conversion
/// to a controller request; panics if anything but a 4xx with a message comes out. For the
/// fuzz target (`crates/api/fuzz`) and the decoding proptests, not for the server.
#[doc(hidden)]
pub fn fuzz_decode(bytes: &[u8]) {
    fn check<T>(r: Result<T, ApiError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                assert!(e.status.is_client_error() && !e.message.is_empty(), "{e:?}");
                None
            }
        }
    }
    if let Some(b) = check(json::decode::<cove_wire::NetworkCreateRequest>(bytes)) {
        check(networks::create_request(b));
    }
    if let Some(b) = check(json::decode::<cove_wire::NetworkConnectRequest>(bytes)) {
        check(networks::connect_settings(b));
    }
    check(json::decode::<cove_wire::NetworkDisconnectRequest>(bytes));
    if let Some(b) = check(json::decode::<cove_wire::ContainerCreateRequest>(bytes)) {
        check(create::create_request(Some("x"), b));
    }
    if let Some(b) = check(json::decode::<cove_wire::ExecCreateRequest>(bytes)) {
        check(exec::create_request(b));
    }
    check(json::decode::<cove_wire::ExecStartRequest>(bytes));
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[test]
    fn failpoint_operations_are_named_after_their_routes() {
        assert_eq!(
            operation_name(&Method::POST, "/networks/{id}/connect"),
            "post-networks-connect"
        );
        assert_eq!(operation_name(&Method::DELETE, "/containers/{id}"), "delete-containers");
        assert_eq!(operation_name(&Method::POST, "/networks/create"), "post-networks-create");
    }

    async fn call(
        app: &Router,
        method: &str,
        uri: &str,
    ) -> (StatusCode, axum::http::HeaderMap, String) {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (parts.status, parts.headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[test]
    fn route_table_has_no_conflicts() {
        // Building the table panics on overlapping routes.
        let _ = route_table();
    }

    #[tokio::test]
    async fn prefix_is_stripped_before_routing_and_headers_are_added() {
        async fn path(uri: axum::http::Uri) -> String {
            uri.to_string()
        }
        let ping = || async { system::ping_response("inactive") };
        let inner = Router::new()
            .route("/_ping", get(ping).head(ping))
            .route("/networks", get(path))
            .route("/images/json", get(|| async { "list" }))
            .route("/images/create", post(|| async { "create" }))
            .route(
                "/images/{*rest}",
                get(|json::Id(rest): json::Id| async move { format!("rest={rest}") }),
            )
            .fallback(unsupported)
            .method_not_allowed_fallback(unsupported);
        let app = wrap(inner, None);
        let (st, h, body) = call(&app, "GET", "/v1.50/networks?filters=x").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body, "/networks?filters=x");
        assert_eq!(h["api-version"], API_VERSION);
        let (st, _, body) = call(&app, "GET", "/networks").await;
        assert_eq!((st, body.as_str()), (StatusCode::OK, "/networks"));

        let (st, h, body) = call(&app, "HEAD", "/v1.41/_ping").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(h["ostype"], "linux");
        assert!(body.is_empty());
        let (st, _, body) = call(&app, "GET", "/_ping").await;
        assert_eq!((st, body.as_str()), (StatusCode::OK, "OK"));

        let (st, h, body) = call(&app, "GET", "/v1.50/foo/bar").await;
        assert_eq!(st, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(h["api-version"], API_VERSION);
        assert_eq!(h["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["message"], "route GET /foo/bar is not supported by cove");

        let (_, _, body) = call(&app, "GET", "/v1.50/images/json").await;
        assert_eq!(body, "list");
        let (_, _, body) = call(&app, "GET", "/v1.50/images/localhost:5000/a/b:v1/json").await;
        assert_eq!(body, "rest=localhost:5000/a/b:v1/json");
        let (st, h, body) = call(&app, "GET", "/v1.40/_ping").await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(h["content-type"], "application/json");
        assert!(body.contains("client version 1.40 is too old"), "{body}");
        let (st, _, body) = call(&app, "HEAD", "/v1.51/networks").await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert!(body.contains("is too new"), "{body}");

        let (st, _, body) = call(&app, "DELETE", "/v1.50/images/json").await;
        assert_eq!(st, StatusCode::NOT_IMPLEMENTED);
        assert!(body.contains("route DELETE /images/json is not supported"), "{body}");
    }

    #[test]
    fn status_mapping() {
        let cases = [
            (ErrorKind::InvalidInput, 400),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::NotImplemented, 501),
            (ErrorKind::Internal, 500),
        ];
        for (kind, code) in cases {
            assert_eq!(status_of(kind).as_u16(), code, "{kind:?}");
        }
        let e: ApiError = cove_model::Error::conflict("network with name x already exists").into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        assert_eq!(e.message, "network with name x already exists");
    }
}
