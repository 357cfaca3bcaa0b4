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
    let text = String::from_utf8_lossy(&buf);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).context("malformed response")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// A request that must answer `want`.
pub(crate) fn expect(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    want: u16,
) -> Result<()> {
    let (status, text) = request(sock, method, path, body)?;
    if status != want {
        bail!("{method} {path}: {status} {text}");
    }
    Ok(())
}
