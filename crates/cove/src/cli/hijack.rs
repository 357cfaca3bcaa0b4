//! Container output streams: docker's multiplexed frame format (8-byte header
//! `[stream, 0, 0, 0, size: u32 BE]` then payload), and hijacked connections
//! (`Connection: Upgrade`, `Upgrade: tcp`, answered with `101 Switching Protocols`) written
//! by hand over a plain unix stream, exactly as the docker CLI does for exec/attach.

use super::client::{next_chunk, Client, DaemonError, API_PREFIX, HOST_HEADER, USER_AGENT};
use anyhow::Context as _;
use hyper::body::Incoming;
use std::io::Write;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Content type of a raw (TTY) stream.
pub const RAW_STREAM: &str = "application/vnd.docker.raw-stream";
/// Content type of a multiplexed stream.
pub const MUX_STREAM: &str = "application/vnd.docker.multiplexed-stream";

/// Splits a multiplexed byte stream into `(stream type, payload)` frames.
#[derive(Debug, Default)]
pub struct Demux {
    buf: Vec<u8>,
    pos: usize,
}

impl Demux {
    /// Append received bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if any. Errors on an unknown stream type.
    pub fn next_frame(&mut self) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
        let rest = &self.buf[self.pos..];
        if rest.len() < 8 {
            return Ok(None);
        }
        let kind = rest[0];
        anyhow::ensure!(kind <= 3, "unrecognized stream type {kind} in multiplexed output");
        let size = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        if rest.len() < 8 + size {
            return Ok(None);
        }
        let payload = rest[8..8 + size].to_vec();
        self.pos += 8 + size;
        Ok(Some((kind, payload)))
    }

    /// Bytes of an incomplete frame still buffered.
    #[cfg(test)]
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// Does `data` start like a multiplexed frame header?
fn looks_multiplexed(data: &[u8]) -> bool {
    data.len() < 4 || (data[0] <= 3 && data[1..4] == [0, 0, 0])
}

/// Writes a container's output stream to our stdout/stderr.
#[derive(Debug)]
pub struct Printer {
    raw: bool,
    started: bool,
    demux: Demux,
}

impl Printer {
    /// `raw`: the stream is a TTY stream (no framing).
    pub fn new(raw: bool) -> Printer {
        Printer { raw, started: false, demux: Demux::default() }
    }

    /// Pick the mode from a response's content type, else `tty`.
    pub fn for_content_type(content_type: Option<&str>, tty: bool) -> Printer {
        match content_type {
            Some(ct) if ct.starts_with(RAW_STREAM) => Printer::new(true),
            Some(ct) if ct.starts_with(MUX_STREAM) => Printer::new(false),
            _ => Printer::new(tty),
        }
    }

    /// Handle received bytes.
    pub fn feed(&mut self, data: &[u8]) -> anyhow::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.started {
            self.started = true;
            // A daemon that sent a raw stream although we expected frames: pass it through.
            if !self.raw && !looks_multiplexed(data) {
                self.raw = true;
            }
        }
        if self.raw {
            let mut out = std::io::stdout().lock();
            out.write_all(data)?;
            return Ok(out.flush()?);
        }
        self.demux.push(data);
        while let Some((kind, payload)) = self.demux.next_frame()? {
            match kind {
                0 | 1 => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&payload)?;
                    out.flush()?;
                }
                2 => {
                    let mut err = std::io::stderr().lock();
                    err.write_all(&payload)?;
                    err.flush()?;
                }
                _ => anyhow::bail!(
                    "error from daemon in stream: {}",
                    String::from_utf8_lossy(&payload)
                ),
            }
        }
        Ok(())
    }
}

/// Copy a streaming response body (logs) to stdout/stderr.
pub async fn print_response(resp: hyper::Response<Incoming>, tty: bool) -> anyhow::Result<()> {
    let ct = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut printer = Printer::for_content_type(ct.as_deref(), tty);
    let mut body = resp.into_body();
    while let Some(chunk) = next_chunk(&mut body).await? {
        printer.feed(&chunk)?;
    }
    Ok(())
}

/// How the bytes after the response head are framed.
#[derive(Debug)]
enum Framing {
    Raw,
    Length(usize),
    Chunked(ChunkState),
}

#[derive(Debug, Default)]
struct ChunkState {
    buf: Vec<u8>,
    remaining: usize,
    done: bool,
}

impl ChunkState {
    /// Decode what can be decoded of a chunked body; returns payload bytes.
    fn decode(&mut self, data: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        let mut pos = 0;
        while !self.done {
            if self.remaining > 0 {
                let take = self.remaining.min(self.buf.len() - pos);
                if take == 0 {
                    break;
                }
                out.extend_from_slice(&self.buf[pos..pos + take]);
                pos += take;
                self.remaining -= take;
                continue;
            }
            let Some(eol) = self.buf[pos..].windows(2).position(|w| w == b"\r\n") else { break };
            let line = String::from_utf8_lossy(&self.buf[pos..pos + eol]).to_string();
            pos += eol + 2;
            let size = line.split(';').next().unwrap_or("").trim();
            if size.is_empty() {
                continue; // CRLF after a chunk's data
            }
            match usize::from_str_radix(size, 16) {
                Ok(0) | Err(_) => self.done = true,
                Ok(n) => self.remaining = n,
            }
        }
        self.buf.drain(..pos);
        out
    }
}

/// An established hijacked connection.
#[derive(Debug)]
pub struct Hijacked {
    stream: UnixStream,
    leftover: Vec<u8>,
    framing: Framing,
    pub content_type: Option<String>,
}

/// Parsed status line and headers.
fn parse_head(head: &[u8]) -> anyhow::Result<(u16, Vec<(String, String)>)> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("malformed HTTP answer from the daemon: {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok((status, headers))
}

/// POST `path` with a JSON body asking to hijack the connection.
pub async fn hijack<T: serde::Serialize + ?Sized>(
    client: &Client,
    path: &str,
    body: &T,
) -> anyhow::Result<Hijacked> {
    let body = serde_json::to_string(body).context("encoding the request body")?;
    let mut stream = client.connect().await?;
    let request = format!(
        "POST {API_PREFIX}{path} HTTP/1.1\r\nHost: {HOST_HEADER}\r\nUser-Agent: {USER_AGENT}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: Upgrade\r\n\
         Upgrade: tcp\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.context("sending the request to the daemon")?;
    let mut buf = Vec::with_capacity(4096);
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        anyhow::ensure!(buf.len() < 64 * 1024, "the daemon's answer head is too long");
        let n = stream.read_buf(&mut buf).await.context("reading the daemon's answer")?;
        anyhow::ensure!(n > 0, "the daemon closed the connection without answering");
    };
    let (status, headers) = parse_head(&buf[..head_end])?;
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let framing = if status == 101 {
        Framing::Raw
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked(ChunkState::default())
    } else if let Some(n) = header("content-length").and_then(|v| v.parse().ok()) {
        Framing::Length(n)
    } else {
        Framing::Raw
    };
    let content_type = header("content-type").map(str::to_string);
    let mut hijacked =
        Hijacked { stream, leftover: buf.split_off(head_end), framing, content_type };
    if status != 101 && status != 200 {
        let mut body = Vec::new();
        hijacked.read_to_end(|d| body.extend_from_slice(d)).await?;
        return Err(DaemonError::from_body(status, &body).into());
    }
    Ok(hijacked)
}

/// Read `reader` to its end (or the body's end), passing payload bytes to `sink`.
async fn read_framed<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut R,
    mut data: Vec<u8>,
    framing: &mut Framing,
    mut sink: impl FnMut(&[u8]),
) -> anyhow::Result<()> {
    let mut chunk = vec![0u8; 32 * 1024];
    loop {
        match framing {
            Framing::Raw => sink(&data),
            Framing::Length(left) => {
                let take = (*left).min(data.len());
                sink(&data[..take]);
                *left -= take;
                if *left == 0 {
                    return Ok(());
                }
            }
            Framing::Chunked(state) => {
                sink(&state.decode(&data));
                if state.done {
                    return Ok(());
                }
            }
        }
        let n = reader.read(&mut chunk).await.context("reading the daemon's stream")?;
        if n == 0 {
            return Ok(());
        }
        data = chunk[..n].to_vec();
    }
}

impl Hijacked {
    async fn read_to_end(&mut self, sink: impl FnMut(&[u8])) -> anyhow::Result<()> {
        let data = std::mem::take(&mut self.leftover);
        read_framed(&mut self.stream, data, &mut self.framing, sink).await
    }

    /// Print the output stream until the daemon closes it; with `stdin`, copy our stdin
    /// to the daemon and half-close at EOF. Without it nothing is sent and the write side
    /// stays open until the output ends, like the docker CLI.
    pub async fn pump(self, stdin: bool, tty: bool) -> anyhow::Result<()> {
        let Hijacked { stream, leftover, mut framing, content_type } = self;
        let mut printer = Printer::for_content_type(content_type.as_deref(), tty);
        let (mut read, mut write) = stream.into_split();
        // Dropping an owned write half shuts it down, so keep it alive in both cases.
        let (stdin_task, _keep_open) = if stdin {
            let task = tokio::spawn(async move {
                let mut input = tokio::io::stdin();
                let _ = tokio::io::copy(&mut input, &mut write).await;
                let _ = write.shutdown().await;
                write
            });
            (Some(task), None)
        } else {
            (None, Some(write))
        };
        let mut failure = None;
        let result = read_framed(&mut read, leftover, &mut framing, |d| {
            if failure.is_none() {
                failure = printer.feed(d).err();
            }
        })
        .await;
        if let Some(task) = stdin_task {
            task.abort();
        }
        result?;
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![kind, 0, 0, 0];
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn demux_whole_and_split_frames() {
        let mut stream = frame(1, b"hello\n");
        stream.extend(frame(2, b"oops\n"));
        stream.extend(frame(1, b""));
        stream.extend(frame(1, &[b'x'; 70_000]));
        // Feed one byte at a time: frames come out only when complete.
        let mut d = Demux::default();
        let mut got = Vec::new();
        for b in &stream {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], (1, b"hello\n".to_vec()));
        assert_eq!(got[1], (2, b"oops\n".to_vec()));
        assert_eq!(got[2], (1, Vec::new()));
        assert_eq!(got[3].1.len(), 70_000);
        assert_eq!(d.pending(), 0);
        // All at once.
        let mut d = Demux::default();
        d.push(&stream);
        let mut n = 0;
        while d.next_frame().unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 4);
    }

    #[test]
    fn demux_partial_and_bad_frames() {
        let mut d = Demux::default();
        d.push(&frame(1, b"abc")[..6]);
        assert!(d.next_frame().unwrap().is_none());
        assert_eq!(d.pending(), 6);
        let mut d = Demux::default();
        d.push(&[9, 0, 0, 0, 0, 0, 0, 1, b'x']);
        assert!(d.next_frame().is_err());
        assert!(looks_multiplexed(&frame(2, b"x")));
        assert!(!looks_multiplexed(b"hello world"));
    }

    #[test]
    fn chunked_decoding() {
        let mut c = ChunkState::default();
        let mut out = c.decode(b"5\r\nhel");
        out.extend(c.decode(b"lo\r\n3;ext=1\r\n ab\r\n"));
        assert!(!c.done);
        out.extend(c.decode(b"0\r\n\r\n"));
        assert!(c.done);
        assert_eq!(out, b"hello ab");
    }

    #[test]
    fn head_parsing() {
        let (status, headers) =
            parse_head(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nUpgrade: tcp\r\n\r\n")
                .unwrap();
        assert_eq!(status, 101);
        assert_eq!(headers[0], ("content-type".to_string(), RAW_STREAM.to_string()));
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }
}
