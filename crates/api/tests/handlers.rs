//! In-process handler tests: the router over a real controller, called without a socket,
//! checking Docker's status codes and `{"message"}` bodies. The controller owns a network
//! namespace, so the checks run in a second process of this test binary inside a netlab
//! fake host (its own network and mount namespaces); the outer test starts it there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use axum::Router;
use cove_controller::{Controller, ControllerConfig};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Set (to a state directory inside the fake host) for the inner run only.
const INNER: &str = "COVE_API_HANDLERS_INNER";

#[test]
fn handlers_answer_with_dockers_status_codes_and_bodies() {
    let h = cove_testkit::FakeHost::new("api_handlers", Path::new("/nonexistent/cove"));
    let exe = std::env::current_exe().expect("test binary");
    let exe = exe.display().to_string();
    let mut cmd = h.command(&[
        &exe,
        "inner_handler_checks",
        "--exact",
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env(INNER, h.state_dir());
    let out = cmd.output().expect("run the inner checks");
    let text = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the in-process handler checks failed:\n{text}");
    assert!(text.contains("handler checks: all passed"), "the checks did not run:\n{text}");
}

/// A request through the router: status, headers and the body as JSON (or a string).
async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> (u16, axum::http::HeaderMap, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b.body(body.map_or_else(Body::empty, |s| Body::from(s.to_owned()))).unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (parts.status.as_u16(), parts.headers, v)
}

/// Assert an error answer: `status` and a JSON message containing `needle`.
#[track_caller]
fn refused(got: (u16, axum::http::HeaderMap, Value), status: u16, needle: &str) {
    let (code, headers, v) = got;
    assert_eq!(code, status, "{v}");
    assert_eq!(headers["content-type"], "application/json", "{v}");
    let msg = v["message"].as_str().unwrap_or_else(|| panic!("no message in {v}"));
    assert!(msg.contains(needle), "{msg:?} does not contain {needle:?}");
}

fn now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

#[test]
#[ignore = "runs inside a fake host, started by handlers_answer_with_dockers_status_codes_and_bodies"]
fn inner_handler_checks() {
    let Some(root) = std::env::var_os(INNER).map(PathBuf::from) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(checks(&root));
    println!("handler checks: all passed");
}

async fn checks(root: &Path) {
    let cfg = ControllerConfig {
        data_root: root.join("data"),
        exec_root: root.join("run"),
        bip: None,
        fixed_cidr: None,
        default_address_pools: vec![],
        mtu: 1500,
        firewall: true,
        firewall6: true,
        ip_forward: true,
        cgroup_parent: "/cove-api-handlers".into(),
        icc: true,
        reconcile_interval: std::time::Duration::ZERO,
    };
    let ctl = Controller::start(cfg).await.expect("controller");
    ctl.image_import(cove_testkit::busybox_rootfs_tar().to_vec(), "busybox").await.unwrap();
    let app = cove_api::app(ctl.clone());
    let app = &app;
    let t0 = now();

    // Version negotiation.
    let (code, hd, v) = call(app, "GET", "/_ping", None).await;
    assert_eq!((code, v), (200, Value::from("OK")));
    assert_eq!(hd["api-version"], "1.50");
    let (code, hd, _) = call(app, "HEAD", "/v1.41/_ping", None).await;
    assert_eq!(code, 200);
    assert_eq!(hd["ostype"], "linux");
    assert_eq!(hd["docker-experimental"], "false");
    let (code, _, v) = call(app, "GET", "/v1.45/version", None).await;
    assert_eq!(code, 200);
    assert_eq!(v["ApiVersion"], "1.50");
    refused(call(app, "GET", "/v1.40/version", None).await, 400, "is too old");
    refused(call(app, "GET", "/v1.51/version", None).await, 400, "is too new");
    refused(call(app, "GET", "/v1.50/swarm", None).await, 501, "route GET /swarm is not supported");
    refused(call(app, "PUT", "/v1.50/networks", None).await, 501, "route PUT /networks");

    // Networks.
    refused(call(app, "GET", "/v1.50/networks/nope", None).await, 404, "network nope not found");
    let body = json!({
        "Name": "n1", "CheckDuplicate": true, "Attachable": true, "Labels": {"a": "b"},
        "IPAM": {"Driver": "default", "Options": {"o": "1"}, "Config": [{"Subnet": "10.50.0.0/24"}]},
        "SomethingNew": {"ignored": true},
    })
    .to_string();
    let (code, _, v) = call(app, "POST", "/v1.50/networks/create", Some(&body)).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["Id"].as_str().map(str::len), Some(64), "{v}");
    assert_eq!(v["Warning"], "");
    refused(
        call(app, "POST", "/v1.50/networks/create", Some(&body)).await,
        409,
        "network with name n1 already exists",
    );
    let overlap =
        json!({"Name": "n2", "IPAM": {"Config": [{"Subnet": "10.50.0.128/25"}]}}).to_string();
    let (code, _, v) = call(app, "POST", "/v1.50/networks/create", Some(&overlap)).await;
    assert!(matches!(code, 400 | 403 | 409), "{code} {v}");
    refused(
        call(app, "POST", "/networks/create", Some(r#"{"Name":"x","Driver":"overlay"}"#)).await,
        404,
        "plugin \"overlay\" not found",
    );
    refused(call(app, "POST", "/networks/create", Some("{")).await, 400, "invalid JSON");
    refused(call(app, "POST", "/networks/create", Some(r#"{"Name":5}"#)).await, 400, "Name");
    refused(call(app, "POST", "/networks/create", Some("")).await, 400, "empty");
    refused(
        call(app, "POST", "/networks/create", Some(r#"{"Name":""}"#)).await,
        400,
        "name is required",
    );
    let big = format!(r#"{{"Name":"big","Labels":{{"x":"{}"}}}}"#, "x".repeat(17 << 20));
    refused(call(app, "POST", "/networks/create", Some(&big)).await, 413, "limit");
    for builtin in ["bridge", "host", "none"] {
        refused(
            call(app, "DELETE", &format!("/v1.50/networks/{builtin}"), None).await,
            403,
            "is a pre-defined network and cannot be removed",
        );
    }
    refused(
        call(app, "GET", "/networks?filters=%7B%22colour%22%3A%5B%22x%22%5D%7D", None).await,
        400,
        "invalid filter 'colour'",
    );
    refused(call(app, "GET", "/networks?filters=nope", None).await, 400, "invalid filters");
    let (code, _, v) =
        call(app, "GET", "/networks?filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D", None).await;
    assert_eq!(code, 200);
    assert_eq!(v.as_array().map(|a| a.len()), Some(1), "{v}");
    assert_eq!(v[0]["IPAM"]["Options"]["o"], "1");
    assert_eq!(v[0]["Attachable"], true);
    refused(call(app, "GET", "/networks/n1?scope=swarm", None).await, 404, "network n1 not found");
    let (code, _, v) = call(app, "GET", "/networks/n1?scope=local&verbose=true", None).await;
    assert_eq!((code, v["Name"].as_str()), (200, Some("n1")));

    // Containers.
    let create = |image: &str, net: &str| {
        json!({"Image": image, "Cmd": ["true"], "Labels": {"app": "x"}, "HostConfig": {"NetworkMode": net}})
            .to_string()
    };
    refused(
        call(app, "POST", "/containers/create?name=c1", Some(&create("nosuch:1", "n1"))).await,
        404,
        "No such image: nosuch:1",
    );
    refused(
        call(app, "POST", "/containers/create", Some(&create("busybox", "ghostnet"))).await,
        404,
        "network ghostnet not found",
    );
    let (code, _, v) =
        call(app, "POST", "/containers/create?name=c1", Some(&create("busybox", "n1"))).await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["Warnings"], json!([]));
    refused(
        call(app, "POST", "/containers/create?name=c1", Some(&create("busybox", "n1"))).await,
        409,
        "already in use",
    );
    refused(
        call(app, "POST", "/containers/create", Some(r#"{"Image":""}"#)).await,
        400,
        "no image",
    );
    let f = "%7B%22label%22%3A%5B%22app%3Dx%22%5D%2C%22network%22%3A%5B%22n1%22%5D%2C%22status%22%3A%5B%22created%22%5D%7D";
    let (code, _, v) = call(app, "GET", &format!("/containers/json?all=1&filters={f}"), None).await;
    assert_eq!(code, 200);
    assert_eq!(v[0]["Names"], json!(["/c1"]), "{v}");
    refused(
        call(app, "GET", "/containers/json?filters=%7B%22status%22%3A%5B%22bogus%22%5D%7D", None)
            .await,
        400,
        "status=bogus",
    );
    refused(
        call(app, "GET", "/containers/ghost/json", None).await,
        404,
        "No such container: ghost",
    );
    refused(call(app, "GET", "/containers/c1/top", None).await, 409, "is not running");
    refused(call(app, "POST", "/containers/c1/kill", None).await, 409, "is not running");
    refused(
        call(app, "POST", "/containers/c1/wait?condition=bogus", None).await,
        400,
        "invalid condition",
    );
    refused(call(app, "GET", "/containers/c1/logs", None).await, 400, "at least one stream");
    refused(call(app, "GET", "/images/nosuch/json", None).await, 404, "No such image");

    // Connect and disconnect.
    refused(
        call(app, "POST", "/networks/n1/connect", Some(r#"{"Container":"ghost"}"#)).await,
        404,
        "No such container: ghost",
    );
    refused(
        call(app, "POST", "/networks/n1/connect", Some(r#"{"Container":""}"#)).await,
        400,
        "container is required",
    );
    refused(
        call(app, "POST", "/networks/nope/connect", Some(r#"{"Container":"c1"}"#)).await,
        404,
        "network nope not found",
    );
    let (code, _, v) = call(
        app,
        "POST",
        "/networks/bridge/connect",
        Some(r#"{"Container":"c1","EndpointConfig":{"MacAddress":"02:42:ac:11:00:99"}}"#),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    refused(
        call(app, "POST", "/networks/bridge/connect", Some(r#"{"Container":"c1"}"#)).await,
        403,
        "already exists in network bridge",
    );
    refused(
        call(
            app,
            "POST",
            "/networks/bridge/connect",
            Some(r#"{"Container":"c1","EndpointConfig":{"Aliases":["a"]}}"#),
        )
        .await,
        403,
        "already exists",
    );
    let (code, _, v) = call(
        app,
        "POST",
        "/networks/bridge/disconnect",
        Some(r#"{"Container":"c1","Force":true}"#),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    refused(
        call(app, "POST", "/networks/bridge/disconnect", Some(r#"{"Container":"c1"}"#)).await,
        404,
        "is not connected to network bridge",
    );
    refused(
        call(
            app,
            "POST",
            "/networks/bridge/disconnect",
            Some(r#"{"Container":"c1","Force":"yes"}"#),
        )
        .await,
        400,
        "Force",
    );

    // Removal, prune, and the events of it all.
    let (code, _, _) = call(app, "DELETE", "/containers/c1", None).await;
    assert_eq!(code, 204);
    refused(call(app, "DELETE", "/containers/c1", None).await, 404, "No such container: c1");
    let (code, _, v) =
        call(app, "POST", "/networks/prune?filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D", None)
            .await;
    assert_eq!((code, v), (200, json!({"NetworksDeleted": ["n1"]})));
    refused(
        call(app, "GET", "/events?filters=%7B%22colour%22%3A%5B%22x%22%5D%7D", None).await,
        400,
        "invalid filter",
    );
    refused(call(app, "GET", "/events?since=soon", None).await, 400, "since");
    let until = now();
    let (code, hd, v) = tokio::time::timeout(
        Duration::from_secs(10),
        call(app, "GET", &format!("/v1.50/events?since={t0}&until={until}"), None),
    )
    .await
    .expect("an events request with a past `until` ends");
    assert_eq!(code, 200);
    assert_eq!(hd["content-type"], "application/json");
    let text = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let seen: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            format!(
                "{} {} {}",
                e["Type"].as_str().unwrap(),
                e["Action"].as_str().unwrap(),
                e["Actor"]["Attributes"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            "network create n1",
            "container create c1",
            "network connect bridge",
            "network disconnect bridge",
            "container destroy c1",
            "network destroy n1",
        ],
        "{text}"
    );

    // A live stream (no since/until): it is counted by /info and sees what happens next.
    let req = Request::builder()
        .uri("/v1.50/events?filters=%7B%22type%22%3A%5B%22network%22%5D%7D")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (_, _, info) = call(app, "GET", "/info", None).await;
    assert_eq!(info["NEventsListener"], 1, "{info}");
    let (code, _, _) = call(app, "POST", "/networks/create", Some(r#"{"Name":"live"}"#)).await;
    assert_eq!(code, 201);
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a live event within 5 s")
        .expect("a frame")
        .expect("no error");
    let line = frame.into_data().expect("data");
    let e: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!((e["Type"].as_str(), e["Action"].as_str()), (Some("network"), Some("create")));
    assert_eq!(e["Actor"]["Attributes"]["name"], "live");
    assert!(line.ends_with(b"\n"), "one event per line");
    drop(body);
    let (_, _, info) = call(app, "GET", "/info", None).await;
    assert_eq!(info["NEventsListener"], 0, "{info}");
    let (code, _, _) = call(app, "DELETE", "/networks/live", None).await;
    assert_eq!(code, 204);
}
