//! Streaming responses: Docker's multiplexed stream frames, streamed log bodies, and the
//! shutdown signal that ends long streams so the server can stop gracefully.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use cove_controller::{LogEntry, Stream};
use tokio::sync::{mpsc, watch};

/// Fires once when the server shuts down.
#[derive(Debug)]
pub(crate) struct Trigger(watch::Sender<bool>);

impl Trigger {
    pub(crate) fn fire(&self) {
        let _ = self.0.send(true);
    }
}

/// Resolves when the server shuts down (never, for a router built by [`crate::app`]).
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub(crate) fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Shutdown(rx))
    }
    /// A signal that never fires.
    pub(crate) fn never() -> Shutdown {
        Shutdown::new().1
    }
    /// Wait for the shutdown.
    pub(crate) async fn wait(&mut self) {
        loop {
            if *self.0.borrow_and_update() {
                return;
            }
            if self.0.changed().await.is_err() {
                // The trigger is gone without firing: never.
                std::future::pending::<()>().await;
            }
        }
    }
}

/// Stream ids of the multiplexed stream.
pub(crate) const STDOUT: u8 = 1;
/// See [`STDOUT`].
pub(crate) const STDERR: u8 = 2;

/// Docker's `stdcopy` frame: `[stream, 0, 0, 0, len (u32 big-endian)]` then the payload.
pub(crate) fn frame(stream: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.push(stream);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Encode output for the wire: a frame, or the raw bytes when the client expects a raw
/// stream (a tty).
pub(crate) fn encode_output(raw: bool, stream: u8, payload: &[u8]) -> Bytes {
    if raw {
        Bytes::copy_from_slice(payload)
    } else {
        frame(stream, payload)
    }
}

/// What `GET /containers/{id}/logs` asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogOptions {
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) timestamps: bool,
    /// Raw stream (the container has a tty): no frame headers.
    pub(crate) raw: bool,
    /// Only entries at or after this time (unix seconds).
    pub(crate) since: Option<f64>,
    /// Only entries before this time (unix seconds).
    pub(crate) until: Option<f64>,
}

impl LogOptions {
    /// The bytes to send for one entry, or None when it is filtered out.
    pub(crate) fn render(&self, e: &LogEntry) -> Option<Bytes> {
        let id = match e.stream {
            Stream::Stdout if self.stdout => STDOUT,
            Stream::Stderr if self.stderr => STDERR,
            _ => return None,
        };
        if self.since.is_some() || self.until.is_some() {
            let t = crate::encode::time::unix_f64(&e.time);
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return None;
            }
        }
        if self.timestamps {
            let mut line = Vec::with_capacity(e.time.len() + 1 + e.line.len());
            line.extend_from_slice(e.time.as_bytes());
            line.push(b' ');
            line.extend_from_slice(&e.line);
            Some(encode_output(self.raw, id, &line))
        } else {
            Some(encode_output(self.raw, id, &e.line))
        }
    }
}

/// A streamed log body: ends when the controller closes the channel or the server stops.
pub(crate) fn log_body(rx: mpsc::Receiver<LogEntry>, opts: LogOptions, shutdown: Shutdown) -> Body {
    let s =
        futures::stream::unfold((rx, opts, shutdown), |(mut rx, opts, mut shutdown)| async move {
            loop {
                let entry = tokio::select! {
                    e = rx.recv() => e?,
                    _ = shutdown.wait() => return None,
                };
                if let Some(bytes) = opts.render(&entry) {
                    return Some((Ok::<_, Infallible>(bytes), (rx, opts, shutdown)));
                }
            }
        });
    Body::from_stream(s)
}

/// A body whose only chunk is produced by `fut` later: the headers go out at once (Docker's
/// `wait` sends them before the container exits; the CLI starts the container only after).
pub(crate) fn deferred_body<F>(fut: F, mut shutdown: Shutdown) -> Body
where
    F: std::future::Future<Output = Bytes> + Send + 'static,
{
    let s = futures::stream::once(async move {
        tokio::select! {
            b = fut => Ok::<_, std::io::Error>(b),
            _ = shutdown.wait() => Err(std::io::Error::other("server shutting down")),
        }
    });
    Body::from_stream(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn frames_have_dockers_header() {
        let f = frame(STDOUT, b"hello\n");
        assert_eq!(&f[..8], &[1, 0, 0, 0, 0, 0, 0, 6]);
        assert_eq!(&f[8..], b"hello\n");
        let big = vec![b'x'; 0x01_02_03];
        let f = frame(STDERR, &big);
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 1, 2, 3]);
        assert_eq!(f.len(), 8 + big.len());
        assert_eq!(&encode_output(true, STDOUT, b"raw")[..], b"raw");
        assert_eq!(frame(STDOUT, b"").len(), 8);
    }

    fn entry(stream: Stream, line: &str, time: &str) -> LogEntry {
        LogEntry { stream, line: line.as_bytes().to_vec(), time: time.into() }
    }

    #[test]
    fn log_options_filter_streams_and_times() {
        let e_out = entry(Stream::Stdout, "a\n", "2024-01-01T00:00:10.5Z");
        let e_err = entry(Stream::Stderr, "b\n", "2024-01-01T00:00:20Z");
        let only_err = LogOptions { stderr: true, ..Default::default() };
        assert!(only_err.render(&e_out).is_none());
        assert_eq!(&only_err.render(&e_err).unwrap()[..], &frame(STDERR, b"b\n")[..]);
        let ts = LogOptions { stdout: true, timestamps: true, raw: true, ..Default::default() };
        assert_eq!(&ts.render(&e_out).unwrap()[..], b"2024-01-01T00:00:10.5Z a\n");
        let t0 = 1_704_067_200.0; // 2024-01-01T00:00:00Z
        let since =
            LogOptions { stdout: true, stderr: true, since: Some(t0 + 15.0), ..Default::default() };
        assert!(since.render(&e_out).is_none());
        assert!(since.render(&e_err).is_some());
        let until =
            LogOptions { stdout: true, stderr: true, until: Some(t0 + 15.0), ..Default::default() };
        assert!(until.render(&e_out).is_some());
        assert!(until.render(&e_err).is_none());
    }

    #[tokio::test]
    async fn log_body_ends_when_channel_closes() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(entry(Stream::Stdout, "x\n", "2024-01-01T00:00:00Z")).await.unwrap();
        tx.send(entry(Stream::Stderr, "y\n", "2024-01-01T00:00:00Z")).await.unwrap();
        drop(tx);
        let opts = LogOptions { stdout: true, ..Default::default() };
        let body = log_body(rx, opts, Shutdown::never()).collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], &frame(STDOUT, b"x\n")[..]);
    }
}
