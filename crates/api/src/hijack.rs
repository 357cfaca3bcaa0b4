//! Docker's connection hijack: `Upgrade: tcp` requests (exec start, attach) are answered
//! `101 Switching Protocols`, then the raw connection carries the client's stdin one way and
//! the (multiplexed) output the other. Without the header, output goes in a streamed body.

use std::convert::Infallible;
use std::future::Future;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

/// `Content-Type` of a raw (tty) stream.
pub(crate) const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
/// `Content-Type` of a multiplexed stream.
pub(crate) const MUX_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// The content type for a stream: raw for a tty, multiplexed otherwise.
pub(crate) fn stream_type(raw: bool) -> &'static str {
    if raw {
        RAW_STREAM
    } else {
        MUX_STREAM
    }
}

/// The hijacked connection.
pub(crate) type Conn = TokioIo<Upgraded>;

/// Whether the client asked to hijack the connection (`Upgrade: tcp`).
pub(crate) fn wants_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("tcp")))
}

/// `101 Switching Protocols` with Docker's headers.
pub(crate) fn switching_protocols(content_type: &'static str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type.parse().expect("static header"));
    h.insert(header::CONNECTION, "Upgrade".parse().expect("static header"));
    h.insert(header::UPGRADE, "tcp".parse().expect("static header"));
    r
}

/// A 200 streamed response of `content_type` with `body`.
pub(crate) fn streamed(content_type: &'static str, body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, content_type.parse().expect("static header"));
    r
}

/// Where output goes: the hijacked connection, or a streamed response body.
#[derive(Debug)]
pub(crate) enum Sink {
    /// The write half of the hijacked connection.
    Conn(WriteHalf<Conn>),
    /// The sender of a streamed body.
    Body(mpsc::Sender<Bytes>),
    /// The client is gone: output is dropped.
    Gone,
}

impl Sink {
    /// A sink feeding a streamed body.
    pub(crate) fn body() -> (Sink, Body) {
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let s = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
        });
        (Sink::Body(tx), Body::from_stream(s))
    }

    /// Send bytes; after the first failure the sink drops everything.
    pub(crate) async fn send(&mut self, b: Bytes) {
        let ok = match self {
            Sink::Conn(w) => w.write_all(&b).await.and(w.flush().await).is_ok(),
            Sink::Body(tx) => tx.send(b).await.is_ok(),
            Sink::Gone => true,
        };
        if !ok {
            *self = Sink::Gone;
        }
    }

    /// Whether the client went away.
    pub(crate) fn is_gone(&self) -> bool {
        matches!(self, Sink::Gone)
    }

    /// End the output: shut the connection down, or end the body.
    pub(crate) async fn close(self) {
        if let Sink::Conn(mut w) = self {
            let _ = w.shutdown().await;
        }
    }
}

/// After the 101 goes out, run `f` on the connection's halves (on `None` and a gone sink
/// when the upgrade failed, so `f` can still clean up).
pub(crate) fn spawn_hijacked<F, Fut>(on: OnUpgrade, what: String, f: F)
where
    F: FnOnce(Option<ReadHalf<Conn>>, Sink) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        match on.await {
            Ok(up) => {
                let (rd, wr) = tokio::io::split(TokioIo::new(up));
                f(Some(rd), Sink::Conn(wr)).await;
            }
            Err(e) => {
                tracing::warn!("{what}: connection upgrade failed: {e}");
                f(None, Sink::Gone).await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn upgrade_detection_and_headers() {
        let mut h = HeaderMap::new();
        assert!(!wants_upgrade(&h));
        h.insert(header::UPGRADE, "tcp".parse().unwrap());
        assert!(wants_upgrade(&h));
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert!(!wants_upgrade(&h));
        let r = switching_protocols(MUX_STREAM);
        assert_eq!(r.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(r.headers()[header::UPGRADE], "tcp");
        assert_eq!(r.headers()[header::CONNECTION], "Upgrade");
        assert_eq!(r.headers()[header::CONTENT_TYPE], MUX_STREAM);
        assert_eq!(stream_type(true), RAW_STREAM);
    }

    #[tokio::test]
    async fn body_sink_streams_until_closed() {
        let (mut sink, body) = Sink::body();
        tokio::spawn(async move {
            sink.send(Bytes::from_static(b"ab")).await;
            sink.send(Bytes::from_static(b"cd")).await;
            sink.close().await;
        });
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcd");
    }
}
