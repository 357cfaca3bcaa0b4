//! `POST /containers/{id}/attach`: what `docker run` (without `-d`) and `docker start -a`
//! use to show a container's output. Cove has no console to attach to; it streams the
//! container's log from the moment of the attach (stdin is not forwarded).

use axum::extract::{Request, State};
use cove_controller::{LogEntry, SharedController};
use cove_model::{ContainerRecord, ErrorKind, Status};
use hyper::upgrade::OnUpgrade;
use tokio::sync::{broadcast, mpsc};

use crate::containers::{nap, ran_since};
use crate::hijack::{
    spawn_hijacked, stream_type, streamed, switching_protocols, wants_upgrade, Sink,
};
use crate::json::{Id, Params};
use crate::stream::{LogOptions, Shutdown};
use crate::{ApiError, ApiResult, AppState};

/// `POST /containers/{id}/attach?stream=&logs=&stdout=&stderr=&stdin=`.
pub(crate) async fn attach(
    State(st): State<AppState>,
    Id(id): Id,
    q: Params,
    mut req: Request,
) -> ApiResult {
    let v = st.ctl.container_get(&id).await?;
    let raw = v.record.config.tty;
    let (stdout, stderr) = (q.flag("stdout"), q.flag("stderr"));
    if !stdout && !stderr && !q.flag("stdin") {
        return Err(ApiError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    let now = chrono::Utc::now();
    let attached_at = now.timestamp() as f64 + f64::from(now.timestamp_subsec_nanos()) / 1e9;
    let job = Attach {
        ctl: st.ctl.clone(),
        initial: v.record,
        history: q.flag("logs"),
        follow: q.flag("stream"),
        opts: LogOptions { stdout, stderr, raw, ..Default::default() },
        attached_at,
        started: st.started.subscribe(),
        shutdown: st.shutdown.clone(),
    };
    let on_upgrade = if wants_upgrade(req.headers()) {
        req.extensions_mut().remove::<OnUpgrade>()
    } else {
        None
    };
    match on_upgrade {
        Some(on) => {
            spawn_hijacked(on, format!("attach {id}"), move |_stdin, mut sink| async move {
                job.run(&mut sink).await;
                sink.close().await;
            });
            Ok(switching_protocols(stream_type(raw)))
        }
        None => {
            let (mut sink, body) = Sink::body();
            tokio::spawn(async move {
                job.run(&mut sink).await;
                sink.close().await;
            });
            Ok(streamed(stream_type(raw), body))
        }
    }
}

struct Attach {
    ctl: SharedController,
    initial: ContainerRecord,
    history: bool,
    follow: bool,
    opts: LogOptions,
    attached_at: f64,
    started: broadcast::Receiver<String>,
    shutdown: Shutdown,
}

impl Attach {
    async fn run(mut self, sink: &mut Sink) {
        let id = self.initial.id.clone();
        if self.history {
            if let Ok(rx) = self.ctl.container_logs(&id, false, None).await {
                let opts = LogOptions { until: Some(self.attached_at), ..self.opts.clone() };
                forward(rx, &opts, sink, self.shutdown.clone()).await;
            }
        }
        if !self.follow || sink.is_gone() {
            return;
        }
        // Output from now on: wait for the container to run (the CLI attaches, then starts).
        loop {
            let r = match self.ctl.container_get(&id).await {
                Ok(v) => v.record,
                Err(e) if e.kind == ErrorKind::NotFound => return,
                Err(e) => {
                    tracing::warn!("attach {id}: {e}");
                    return;
                }
            };
            if r.state.status == Status::Running || ran_since(&self.initial, &r) {
                break;
            }
            let mut sd = self.shutdown.clone();
            tokio::select! {
                _ = nap(&mut self.started, &r) => {}
                _ = sd.wait() => return,
            }
        }
        match self.ctl.container_logs(&id, true, None).await {
            Ok(rx) => {
                let opts = LogOptions { since: Some(self.attached_at), ..self.opts.clone() };
                forward(rx, &opts, sink, self.shutdown.clone()).await;
            }
            Err(e) => tracing::warn!("attach {id}: logs: {e}"),
        }
    }
}

async fn forward(
    mut rx: mpsc::Receiver<LogEntry>,
    opts: &LogOptions,
    sink: &mut Sink,
    mut shutdown: Shutdown,
) {
    loop {
        let e = tokio::select! {
            e = rx.recv() => match e { Some(e) => e, None => return },
            _ = shutdown.wait() => return,
        };
        if let Some(b) = opts.render(&e) {
            sink.send(b).await;
            if sink.is_gone() {
                return;
            }
        }
    }
}
