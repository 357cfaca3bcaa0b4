//! `POST /containers/{id}/attach`: what `docker run` (without `-d`) and `docker start -a`
//! use to show a container's output. Cove has no console to attach to; it streams the
//! container's log from the moment of the attach (stdin is not forwarded).

use axum::extract::{Request, State};
use cove_controller::{LogEntry, SharedController};
use hyper::upgrade::OnUpgrade;
use tokio::sync::mpsc;

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
    // Subscribe to the live output before answering: the client starts the container only
    // after this response, and a container may exit (and be removed) at once.
    let live =
        if q.flag("stream") { Some(st.ctl.container_attach(&v.record.id).await?) } else { None };
    let job = Attach {
        ctl: st.ctl.clone(),
        id: v.record.id.to_string(),
        history: q.flag("logs"),
        live,
        opts: LogOptions { stdout, stderr, raw, ..Default::default() },
        attached_at,
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
    id: String,
    history: bool,
    live: Option<mpsc::Receiver<LogEntry>>,
    opts: LogOptions,
    attached_at: f64,
    shutdown: Shutdown,
}

impl Attach {
    async fn run(mut self, sink: &mut Sink) {
        if self.history {
            if let Ok(rx) = self.ctl.container_logs(&self.id, false, None).await {
                let opts = LogOptions { until: Some(self.attached_at), ..self.opts.clone() };
                forward(rx, &opts, sink, self.shutdown.clone()).await;
            }
        }
        if sink.is_gone() {
            return;
        }
        if let Some(rx) = self.live.take() {
            forward(rx, &self.opts, sink, self.shutdown.clone()).await;
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
