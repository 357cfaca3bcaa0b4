//! A small Engine API client: HTTP/1.1 over the daemon's unix socket (hyper 1), one
//! connection per request, every path prefixed with [`API_PREFIX`].

use super::value::Val;
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::UnixStream;

/// API version prefix of every request.
pub const API_PREFIX: &str = "/v1.45";
/// Default daemon address.
pub const DEFAULT_HOST: &str = "unix:///run/cove/cove.sock";
/// Value of the `Host` header (as the docker CLI sends).
pub const HOST_HEADER: &str = "api.moby.localhost";
/// Value of the `User-Agent` header.
pub const USER_AGENT: &str = concat!("Cove-Client/", env!("CARGO_PKG_VERSION"), " (linux)");

/// An error answer from the daemon (`{"message": "..."}` with a non-2xx status).
#[derive(Debug)]
pub struct DaemonError {
    pub status: u16,
    pub message: String,
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for DaemonError {}

impl DaemonError {
    /// Build from a status and a response body.
    pub fn from_body(status: u16, body: &[u8]) -> DaemonError {
        let message = serde_json::from_slice::<Val>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(Val::as_str).map(str::to_string))
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(body).trim().to_string();
                if text.is_empty() {
                    hyper::StatusCode::from_u16(status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("unknown error")
                        .to_lowercase()
                } else {
                    text
                }
            });
        DaemonError { status, message }
    }
}

/// The daemon's socket could not be reached.
#[derive(Debug)]
pub struct ConnectError {
    pub host: String,
    pub source: std::io::Error,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Cannot connect to the Cove daemon at {}: {}. Is the daemon running?",
            self.host, self.source
        )
    }
}

impl std::error::Error for ConnectError {}

/// `-H` flag, else `COVE_HOST`, else `DOCKER_HOST`, else the default socket.
pub fn resolve_host(flag: Option<String>) -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    flag.or_else(|| env("COVE_HOST"))
        .or_else(|| env("DOCKER_HOST"))
        .unwrap_or_else(|| DEFAULT_HOST.into())
}

/// Percent-encode a query value or path segment (RFC 3986 unreserved characters kept).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Build `path?k=v&...` from pairs, encoding values.
pub fn with_query(path: &str, params: &[(&str, String)]) -> String {
    if params.is_empty() {
        return path.to_string();
    }
    let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    format!("{path}?{}", q.join("&"))
}

/// A request body: nothing, bytes, or a stream read from a file or stdin.
pub enum ReqBody {
    Empty,
    Full(Option<Bytes>),
    Reader(Pin<Box<dyn AsyncRead + Send>>, Vec<u8>),
}

impl fmt::Debug for ReqBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReqBody::Empty => f.write_str("Empty"),
            ReqBody::Full(b) => write!(f, "Full({:?} bytes)", b.as_ref().map(Bytes::len)),
            ReqBody::Reader(..) => f.write_str("Reader"),
        }
    }
}

impl ReqBody {
    /// A JSON body: a typed request (`cove_wire`) serialized.
    pub fn json<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<ReqBody> {
        let bytes = serde_json::to_vec(v).context("encoding the request body")?;
        Ok(ReqBody::Full(Some(Bytes::from(bytes))))
    }

    pub fn reader(r: impl AsyncRead + Send + 'static) -> ReqBody {
        ReqBody::Reader(Box::pin(r), vec![0; 64 * 1024])
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ReqBody::Reader(r, buf) => {
                let mut rb = ReadBuf::new(buf);
                match r.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(None),
                    Poll::Ready(Ok(())) => {
                        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(rb.filled())))))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Full(b) => b.is_none(),
            ReqBody::Reader(..) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty | ReqBody::Full(None) => SizeHint::with_exact(0),
            ReqBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ReqBody::Reader(..) => SizeHint::default(),
        }
    }
}

/// Client for one daemon address.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    path: PathBuf,
}

impl Client {
    /// Parse a `unix:///path` address.
    pub fn new(host: &str) -> anyhow::Result<Client> {
        let path = match host.split_once("://") {
            Some(("unix", path)) if !path.is_empty() => path,
            Some(("unix", _)) => anyhow::bail!("invalid host {host:?}: empty socket path"),
            _ => anyhow::bail!(
                "unsupported host {host:?}: only unix:// addresses are supported (e.g. {DEFAULT_HOST})"
            ),
        };
        Ok(Client { host: host.to_string(), path: PathBuf::from(path) })
    }

    #[cfg(test)]
    pub fn socket_path(&self) -> &std::path::Path {
        &self.path
    }

    /// Open a raw connection to the daemon.
    pub async fn connect(&self) -> anyhow::Result<UnixStream> {
        UnixStream::connect(&self.path)
            .await
            .map_err(|source| ConnectError { host: self.host.clone(), source }.into())
    }

    /// Send a request; non-2xx answers become [`DaemonError`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        content_type: Option<&str>,
    ) -> anyhow::Result<Response<Incoming>> {
        let stream = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake with the daemon")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{API_PREFIX}{path}"))
            .header(hyper::header::HOST, HOST_HEADER)
            .header(hyper::header::USER_AGENT, USER_AGENT);
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let resp = sender
            .send_request(req.body(body)?)
            .await
            .map_err(|e| anyhow::anyhow!("error during connect: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            return Err(DaemonError::from_body(status.as_u16(), &body).into());
        }
        Ok(resp)
    }

    /// Send and read the whole answer.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        ct: Option<&str>,
    ) -> anyhow::Result<Bytes> {
        let resp = self.send(method, path, body, ct).await?;
        Ok(resp.into_body().collect().await.context("reading the daemon's answer")?.to_bytes())
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Bytes> {
        self.call(Method::GET, path, ReqBody::Empty, None).await
    }

    /// GET and parse JSON (order-preserving).
    pub async fn get_val(&self, path: &str) -> anyhow::Result<Val> {
        let body = self.get(path).await?;
        serde_json::from_slice(&body).context("decoding the daemon's answer")
    }

    /// POST without a body.
    pub async fn post(&self, path: &str) -> anyhow::Result<Bytes> {
        self.call(Method::POST, path, ReqBody::Empty, None).await
    }

    /// POST a JSON body (a typed request from `cove_wire`).
    pub async fn post_json<T: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
    ) -> anyhow::Result<Bytes> {
        self.call(Method::POST, path, ReqBody::json(body)?, Some("application/json")).await
    }

    /// POST without a body and parse a JSON answer.
    pub async fn post_val(&self, path: &str) -> anyhow::Result<Val> {
        parse_answer(&self.post(path).await?)
    }

    /// POST a JSON body and parse a JSON answer.
    pub async fn post_json_val<T: serde::Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
    ) -> anyhow::Result<Val> {
        parse_answer(&self.post_json(path, body).await?)
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Bytes> {
        self.call(Method::DELETE, path, ReqBody::Empty, None).await
    }
}

/// A JSON answer (`Null` when the body is empty).
fn parse_answer(bytes: &[u8]) -> anyhow::Result<Val> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Val::Null);
    }
    serde_json::from_slice(bytes).context("decoding the daemon's answer")
}

/// Read the next data chunk of a streaming response body (`None` at the end).
pub async fn next_chunk(body: &mut Incoming) -> anyhow::Result<Option<Bytes>> {
    loop {
        match body.frame().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(anyhow::anyhow!("reading the daemon's stream: {e}")),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing() {
        assert_eq!(
            Client::new("unix:///run/x.sock").unwrap().socket_path(),
            std::path::Path::new("/run/x.sock")
        );
        let err = Client::new("tcp://127.0.0.1:2375").unwrap_err().to_string();
        assert!(err.contains("only unix://"), "{err}");
        assert!(Client::new("unix://").is_err());
        assert_eq!(resolve_host(Some("unix:///a".into())), "unix:///a");
    }

    #[test]
    fn encoding_and_errors() {
        assert_eq!(
            encode(r#"{"name":{"a b":true}}"#),
            "%7B%22name%22%3A%7B%22a%20b%22%3Atrue%7D%7D"
        );
        assert_eq!(
            with_query("/x", &[("t", "5".into()), ("signal", "SIGKILL".into())]),
            "/x?t=5&signal=SIGKILL"
        );
        assert_eq!(
            DaemonError::from_body(404, br#"{"message":"network n not found"}"#).message,
            "network n not found"
        );
        assert_eq!(DaemonError::from_body(404, b"").message, "not found");
        assert_eq!(
            DaemonError::from_body(500, b"boom\n").to_string(),
            "Error response from daemon: boom"
        );
    }
}
