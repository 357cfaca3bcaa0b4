//! Exec: `POST /containers/{id}/exec`, `POST /exec/{id}/start` (hijacked or streamed),
//! `GET /exec/{id}/json`.

use std::os::unix::process::ExitStatusExt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cove_controller::{ExecRequest, ExecView, SharedController};
use cove_wire as wire;
use hyper::upgrade::OnUpgrade;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;

use crate::hijack::{
    spawn_hijacked, stream_type, streamed, switching_protocols, wants_upgrade, Sink,
};
use crate::json::{json_response, ok, DockerJson, Id, OptionalJson};
use crate::stream::{encode_output, STDERR, STDOUT};
use crate::{ApiError, ApiResult, AppState};

/// Docker's exec config to the controller's request.
pub(crate) fn create_request(b: wire::ExecCreateRequest) -> Result<ExecRequest, ApiError> {
    let cmd = b.cmd.unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad_request("no exec command specified (field Cmd is empty)"));
    }
    if b.privileged {
        return Err(ApiError::bad_request("privileged exec is not supported by cove"));
    }
    let wd = b.working_dir.trim();
    Ok(ExecRequest {
        cmd,
        env: b.env,
        working_dir: (!wd.is_empty()).then(|| wd.to_owned()),
        attach_stdin: b.attach_stdin,
        tty: b.tty,
    })
}

/// `POST /containers/{id}/exec`.
pub(crate) async fn create(
    State(st): State<AppState>,
    Id(id): Id,
    DockerJson(b): DockerJson<wire::ExecCreateRequest>,
) -> ApiResult {
    let req = create_request(b)?;
    let exec_id = st.ctl.exec_create(&id, req).await?;
    Ok(json_response(StatusCode::CREATED, &serde_json::json!({ "Id": exec_id })))
}

/// `POST /exec/{id}/start`.
pub(crate) async fn start(State(st): State<AppState>, Id(id): Id, mut req: Request) -> ApiResult {
    let hijack = wants_upgrade(req.headers());
    let on_upgrade = if hijack { req.extensions_mut().remove::<OnUpgrade>() } else { None };
    let OptionalJson(body) = OptionalJson::<wire::ExecStartRequest>::from_request(req, &()).await?;
    let view = st.ctl.exec_inspect(&id)?;
    let raw = body.tty || view.request.tty;
    let mut child = st.ctl.exec_start(&id).await?;
    let ctl = st.ctl.clone();
    if body.detach {
        drop(child.stdin.take());
        tokio::spawn(async move {
            let mut sink = Sink::Gone;
            finish(&ctl, &id, child, &mut sink, raw).await;
        });
        return Ok(StatusCode::OK.into_response());
    }
    match on_upgrade {
        Some(on) => {
            let what = format!("exec {id}");
            spawn_hijacked(on, what, move |rd, mut sink| async move {
                let stdin = child.stdin.take();
                let input = tokio::spawn(async move {
                    if let (Some(mut rd), Some(stdin)) = (rd, stdin) {
                        copy_stdin(&mut rd, stdin).await;
                    }
                });
                finish(&ctl, &id, child, &mut sink, raw).await;
                input.abort();
                sink.close().await;
            });
            Ok(switching_protocols(stream_type(raw)))
        }
        None => {
            drop(child.stdin.take());
            let (mut sink, out) = Sink::body();
            tokio::spawn(async move {
                finish(&ctl, &id, child, &mut sink, raw).await;
                sink.close().await;
            });
            Ok(streamed(stream_type(raw), out))
        }
    }
}

/// Client bytes into the child's stdin; closing it at the client's EOF (or half-close).
async fn copy_stdin(rd: &mut (impl AsyncRead + Unpin), mut stdin: ChildStdin) {
    let _ = tokio::io::copy(rd, &mut stdin).await;
    let _ = stdin.shutdown().await;
}

/// Forward the child's output until both pipes close, then record its exit code. The code
/// is recorded before the caller closes the connection, so the client's following
/// `GET /exec/{id}/json` sees it.
async fn finish(ctl: &SharedController, id: &str, mut child: Child, sink: &mut Sink, raw: bool) {
    let (tx, mut rx) = mpsc::channel::<(u8, Bytes)>(16);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(read_pipe(out, STDOUT, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(read_pipe(err, STDERR, tx.clone()));
    }
    drop(tx);
    while let Some((stream, bytes)) = rx.recv().await {
        if !sink.is_gone() {
            sink.send(encode_output(raw, stream, &bytes)).await;
        }
    }
    let code = match child.wait().await {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            tracing::warn!("exec {id}: wait: {e}");
            -1
        }
    };
    ctl.exec_finished(id, code);
}

async fn read_pipe(mut pipe: impl AsyncRead + Unpin, stream: u8, tx: mpsc::Sender<(u8, Bytes)>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send((stream, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// `GET /exec/{id}/json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Inspect {
    #[serde(rename = "ID")]
    id: String,
    running: bool,
    exit_code: Option<i32>,
    process_config: ProcessConfig,
    open_stdin: bool,
    open_stderr: bool,
    open_stdout: bool,
    can_remove: bool,
    #[serde(rename = "ContainerID")]
    container_id: String,
    detach_keys: &'static str,
    pid: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProcessConfig {
    tty: bool,
    entrypoint: String,
    arguments: Vec<String>,
    privileged: bool,
    user: &'static str,
}

pub(crate) fn encode_inspect(v: &ExecView) -> Inspect {
    let mut args = v.request.cmd.iter().cloned();
    let entrypoint = args.next().unwrap_or_default();
    Inspect {
        id: v.id.clone(),
        running: v.running,
        exit_code: if v.running { None } else { v.exit_code },
        process_config: ProcessConfig {
            tty: v.request.tty,
            entrypoint,
            arguments: args.collect(),
            privileged: false,
            user: "",
        },
        open_stdin: v.request.attach_stdin,
        open_stderr: true,
        open_stdout: true,
        can_remove: false,
        container_id: v.container_id.clone(),
        detach_keys: "",
        pid: v.pid,
    }
}

/// `GET /exec/{id}/json`.
pub(crate) async fn inspect(State(st): State<AppState>, Id(id): Id) -> ApiResult<Response> {
    let v = st.ctl.exec_inspect(&id)?;
    Ok(ok(&encode_inspect(&v)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::decode;

    #[test]
    fn create_body() {
        let b: wire::ExecCreateRequest = decode(
            br#"{"User":"","Privileged":false,"Tty":false,"ConsoleSize":[0,0],"AttachStdin":true,
            "AttachStderr":true,"AttachStdout":true,"Detach":false,"DetachKeys":"","Env":["A=1"],
            "WorkingDir":"/tmp","Cmd":["sh","-c","cat"]}"#,
        )
        .unwrap();
        let r = create_request(b).unwrap();
        assert_eq!(r.cmd, ["sh", "-c", "cat"]);
        assert_eq!(r.env, ["A=1"]);
        assert_eq!(r.working_dir.as_deref(), Some("/tmp"));
        assert!(r.attach_stdin && !r.tty);
        let r = create_request(decode(br#"{"Cmd":"ls","WorkingDir":""}"#).unwrap()).unwrap();
        assert_eq!(r.cmd, ["ls"]);
        assert_eq!(r.working_dir, None);
        let e = create_request(decode(br#"{"Cmd":[]}"#).unwrap()).unwrap_err();
        assert!(e.message.contains("no exec command"), "{}", e.message);
        let e =
            decode::<wire::ExecCreateRequest>(br#"{"Cmd":["a"],"AttachStdin":"yes"}"#).unwrap_err();
        assert!(e.message.contains("AttachStdin"), "{}", e.message);
        let s: wire::ExecStartRequest =
            decode(br#"{"Detach":true,"Tty":false,"ConsoleSize":null}"#).unwrap();
        assert!(s.detach && !s.tty);
    }

    #[test]
    fn inspect_shape() {
        let v = ExecView {
            id: "e1".into(),
            container_id: "c1".into(),
            running: true,
            exit_code: None,
            pid: 77,
            request: ExecRequest {
                cmd: vec!["sh".into(), "-c".into(), "true".into()],
                ..Default::default()
            },
        };
        let j = serde_json::to_value(encode_inspect(&v)).unwrap();
        assert_eq!(j["ID"], "e1");
        assert_eq!(j["ContainerID"], "c1");
        assert_eq!(j["Running"], true);
        assert!(j["ExitCode"].is_null());
        assert_eq!(j["Pid"], 77);
        assert_eq!(j["ProcessConfig"]["entrypoint"], "sh");
        assert_eq!(j["ProcessConfig"]["arguments"], serde_json::json!(["-c", "true"]));
        assert_eq!(j["ProcessConfig"]["tty"], false);
        assert_eq!(j["OpenStdout"], true);
        let done = ExecView { running: false, exit_code: Some(3), pid: 0, ..v };
        let j = serde_json::to_value(encode_inspect(&done)).unwrap();
        assert_eq!(j["ExitCode"], 3);
    }

    #[tokio::test]
    async fn stdin_copy_closes_at_eof() {
        let mut child = tokio::process::Command::new("cat")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut input: &[u8] = b"hello\n";
        copy_stdin(&mut input, stdin).await;
        let out = child.wait_with_output().await.unwrap();
        assert_eq!(out.stdout, b"hello\n");
    }
}
