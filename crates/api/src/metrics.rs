//! `GET /metrics`: the daemon's Prometheus metrics, on the API socket and on the TCP
//! listener of `cove daemon --metrics-addr` ([`serve_metrics`]).

use std::future::Future;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use cove_controller::SharedController;

use crate::AppState;

/// The exposition (Prometheus' text format 0.0.4).
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    render(&state.ctl).await
}

async fn render(ctl: &SharedController) -> Response {
    ([(CONTENT_TYPE, cove_metrics::CONTENT_TYPE)], ctl.metrics_text().await).into_response()
}

/// The metrics listener's routes: `GET /metrics` and nothing else (404, plain text).
fn router(ctl: SharedController) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(ctl): State<SharedController>| async move { render(&ctl).await }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found: the metrics are at /metrics\n") })
        .with_state(ctl)
}

/// Serve `GET /metrics` on `listener` (`--metrics-addr`) until `shutdown` resolves. Its
/// requests are not counted in the API's metrics.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    ctl: SharedController,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(ctl)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::extract::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(app: &Router, uri: &str) -> (StatusCode, String, String) {
        let req = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let ct = resp
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn api_requests_are_counted_by_route_template_and_served_on_both_listeners() {
        let cfg = cove_controller::fake::config(std::path::Path::new("/nonexistent/cove-fake"));
        let h = cove_controller::fake::FakeHost::start(cfg).await.unwrap();
        let api = crate::app(h.ctl.clone());
        h.ctl
            .network_create(cove_controller::NetworkCreate {
                name: "app".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        for uri in ["/v1.50/networks/app", "/networks/bridge", "/networks/nope", "/no/such/route"] {
            get(&api, uri).await;
        }
        let (status, ct, text) = get(&api, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ct, cove_metrics::CONTENT_TYPE);
        let series = |s: &str| text.lines().find(|l| l.starts_with(s)).map(str::to_string);
        assert_eq!(
            series(r#"cove_api_requests_total{method="GET",route="/networks/{id}",code="200"}"#)
                .as_deref(),
            Some(r#"cove_api_requests_total{method="GET",route="/networks/{id}",code="200"} 2"#),
            "{text}"
        );
        assert!(
            series(r#"cove_api_requests_total{method="GET",route="/networks/{id}",code="404"}"#)
                .is_some(),
            "{text}"
        );
        assert!(
            series(r#"cove_api_requests_total{method="GET",route="unmatched",code="501"}"#)
                .is_some(),
            "{text}"
        );
        // Raw paths never become labels.
        assert!(!text.contains("/networks/app") && !text.contains("/no/such"), "{text}");
        assert!(text.contains("cove_networks{driver=\"bridge\",scope=\"local\"} 2\n"), "{text}");

        let listener = router(h.ctl.clone());
        let (status, ct, text) = get(&listener, "/metrics").await;
        assert_eq!((status, ct.as_str()), (StatusCode::OK, cove_metrics::CONTENT_TYPE));
        assert!(text.contains("cove_containers{state=\"running\"} 0\n"), "{text}");
        let (status, _, _) = get(&listener, "/networks").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
