//! A minimal blocking HTTP/1.1 client over a unix socket: the bench measures the daemon,
//! not a client library.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// One request with `Connection: close`; returns (status, body).
pub(crate) fn request(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let mut s = UnixStream::connect(sock).with_context(|| format!("connect {}", sock.display()))?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: cove\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    if buf.is_empty() {
        bail!("{method} {path}: no response (did the daemon die?)");
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).context("malformed response")?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_string() };
    Ok((status, body))
}

/// The payload of a `Transfer-Encoding: chunked` body.
fn dechunk(mut rest: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").context("malformed chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .context("malformed chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..size).context("short chunk")?);
        rest = after.get(size..).context("short chunk")?.trim_start_matches("\r\n");
    }
}

/// A Docker Engine API server the bench drives (Cove's daemon, a private dockerd).
pub(crate) trait Engine {
    /// A request (path without the version prefix) that must answer `want`; the body.
    fn api(&self, method: &str, path: &str, body: Option<&str>, want: u16) -> Result<String>;
}

/// A request that must answer `want`; returns the body.
pub(crate) fn expect(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    want: u16,
) -> Result<String> {
    let (status, text) = request(sock, method, path, body)?;
    if status != want {
        bail!("{method} {path}: {status} {text}");
    }
    Ok(text)
}

/// A request that must answer `want` with a JSON body.
pub(crate) fn json(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    want: u16,
) -> Result<serde_json::Value> {
    let text = expect(sock, method, path, body, want)?;
    serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dechunk() {
        assert_eq!(super::dechunk("5\r\nhello\r\n1\r\n!\r\n0\r\n\r\n").unwrap(), "hello!");
    }
}
