//! Forwarding to upstream servers, and validation of their (untrusted) replies.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use hickory_proto::op::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::wire::{self, labels, rcode, ParsedQuery, HEADER_LEN};
use crate::{Config, ForwardPlan, Transport};

/// Why an upstream reply was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Shorter than a header.
    #[error("reply shorter than a DNS header")]
    TooShort,
    /// QR=0: not a response.
    #[error("not a response")]
    NotAResponse,
    /// The id is not the one of the outstanding query.
    #[error("reply id {got} does not match query id {want}")]
    WrongId {
        /// Id received.
        got: u16,
        /// Id expected.
        want: u16,
    },
    /// hickory-proto could not parse it (pointer loops, bad labels, wrong counts, ...).
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// The question is not the one asked.
    #[error("reply is for another question")]
    WrongQuestion,
}

/// Checks an upstream reply against the outstanding query (`q`, sent with id `id`): it must
/// parse completely with hickory-proto, be a response with that id and echo the question.
/// Returns the reply's rcode. A reply without a question is accepted only as a failure.
pub fn validate_reply(q: &ParsedQuery, id: u16, reply: &[u8]) -> Result<u8, ReplyError> {
    if reply.len() < HEADER_LEN {
        return Err(ReplyError::TooShort);
    }
    if reply[2] & 0x80 == 0 {
        return Err(ReplyError::NotAResponse);
    }
    let got = u16::from_be_bytes([reply[0], reply[1]]);
    if got != id {
        return Err(ReplyError::WrongId { got, want: id });
    }
    let msg = Message::from_vec(reply).map_err(|e| ReplyError::Malformed(e.to_string()))?;
    let rc = reply[3] & 0x0F;
    match msg.queries.as_slice() {
        [one] => {
            let same_name = {
                let mut theirs = one.name().iter();
                let mut ours = labels(q.key.as_bytes());
                loop {
                    match (theirs.next(), ours.next()) {
                        (None, None) => break true,
                        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {}
                        _ => break false,
                    }
                }
            };
            if !same_name
                || u16::from(one.query_type()) != q.qtype
                || u16::from(one.query_class()) != q.qclass
            {
                return Err(ReplyError::WrongQuestion);
            }
            Ok(rc)
        }
        [] if rc != rcode::NOERROR => Ok(rc),
        _ => Err(ReplyError::WrongQuestion),
    }
}

fn unspecified_for(up: &SocketAddr) -> SocketAddr {
    match up {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

/// What an upstream sent back over UDP.
enum UdpReply {
    /// A validated reply that fits the client's limit.
    Fits(Vec<u8>),
    /// A reply longer than the client accepts, with this rcode: only its header and
    /// question were checked (the rest was never read), and only TC goes to the client.
    TooBig(u8),
}

/// Header and question of a reply that is too long to read whole: a response, our id,
/// exactly our question (uncompressed, as every server writes the first name). Returns the
/// rcode.
fn validate_prefix(q: &ParsedQuery, id: u16, reply: &[u8]) -> Option<u8> {
    let h = reply.get(..HEADER_LEN)?;
    if h[2] & 0x80 == 0 || u16::from_be_bytes([h[0], h[1]]) != id || h[4..6] != [0, 1] {
        return None;
    }
    let key = q.key.as_bytes();
    let name = reply.get(HEADER_LEN..HEADER_LEN + key.len())?;
    let mut pos = 0;
    // Same label lengths, same bytes up to ASCII case.
    while pos < key.len() {
        let len = key[pos] as usize;
        if name[pos] != key[pos]
            || !name[pos + 1..pos + 1 + len].eq_ignore_ascii_case(&key[pos + 1..pos + 1 + len])
        {
            return None;
        }
        pos += 1 + len;
    }
    let tail = reply.get(HEADER_LEN + key.len()..HEADER_LEN + key.len() + 4)?;
    if tail[..2] != q.qtype.to_be_bytes() || tail[2..] != q.qclass.to_be_bytes() {
        return None;
    }
    Some(h[3] & 0x0F)
}

/// One UDP exchange on a fresh connected socket. Replies that fail validation are dropped
/// and the wait goes on (the caller's timeout bounds it), so a spoofed or garbled datagram
/// cannot displace the real answer. The receive buffer is one byte more than the client
/// accepts, so memory per query in flight stays small whatever the upstream sends.
async fn exchange_udp(
    up: SocketAddr,
    msg: &[u8],
    q: &ParsedQuery,
    id: u16,
) -> io::Result<UdpReply> {
    let sock = UdpSocket::bind(unspecified_for(&up)).await?;
    sock.connect(up).await?;
    sock.send(msg).await?;
    let limit = q.max_udp_size();
    let mut buf = vec![0u8; limit + 1];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await?;
        // `connect` already filters in the kernel; checked again in case of v4-mapped quirks.
        if from != up {
            continue;
        }
        if n > limit {
            match validate_prefix(q, id, &buf[..n]) {
                Some(rc) => return Ok(UdpReply::TooBig(rc)),
                None => tracing::debug!(upstream = %up, "dropping oversized upstream reply"),
            }
            continue;
        }
        match validate_reply(q, id, &buf[..n]) {
            Ok(_) => {
                buf.truncate(n);
                return Ok(UdpReply::Fits(buf));
            }
            Err(e) => tracing::debug!(upstream = %up, error = %e, "dropping upstream reply"),
        }
    }
}

/// One TCP exchange on a fresh connection.
async fn exchange_tcp(up: SocketAddr, msg: &[u8], q: &ParsedQuery, id: u16) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(up).await?;
    s.set_nodelay(true)?;
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    framed.extend_from_slice(msg);
    s.write_all(&framed).await?;
    let len = s.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    validate_reply(q, id, &buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(buf)
}

/// Tries the plan's upstreams in turn; see [`crate::Resolver::forward`].
/// Returns the reply and whether an upstream's answer is in it (else it is SERVFAIL).
pub(crate) async fn forward(
    cfg: &Config,
    metrics: &cove_metrics::DnsMetrics,
    plan: &ForwardPlan,
    query: &[u8],
    transport: Transport,
) -> (Vec<u8>, bool) {
    let q = &plan.query;
    // The client's message is passed on as is (its OPT record included), under a new id.
    let mut msg = query.to_vec();
    for &up in &plan.upstreams {
        let id: u16 = rand::random();
        msg[..2].copy_from_slice(&id.to_be_bytes());
        let attempt = async {
            match transport {
                Transport::Udp => exchange_udp(up, &msg, q, id).await,
                Transport::Tcp => exchange_tcp(up, &msg, q, id).await.map(UdpReply::Fits),
            }
        };
        let started = std::time::Instant::now();
        let reply = tokio::time::timeout(cfg.upstream_timeout, attempt).await;
        metrics.upstream(started.elapsed());
        let reply = match reply {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(upstream = %up, error = %e, "upstream failed");
                continue;
            }
            Err(_) => {
                tracing::debug!(upstream = %up, "upstream timed out");
                continue;
            }
        };
        let rc = match &reply {
            UdpReply::Fits(r) => r[3] & 0x0F,
            UdpReply::TooBig(rc) => *rc,
        };
        // As Docker: SERVFAIL and REFUSED may be transient, so try the next server.
        if rc == rcode::SERVFAIL || rc == rcode::REFUSED {
            continue;
        }
        match reply {
            UdpReply::Fits(mut r) => {
                r[..2].copy_from_slice(&q.id.to_be_bytes());
                return (r, true);
            }
            UdpReply::TooBig(rc) => {
                // Too big for the client: an empty TC reply makes it retry over TCP.
                let mut out = Vec::new();
                wire::write_rcode(&mut out, q, query, rc as u16, true);
                return (out, true);
            }
        }
    }
    let mut out = Vec::new();
    wire::write_rcode(&mut out, q, query, rcode::SERVFAIL as u16, false);
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::parse_query;
    use proptest::prelude::*;

    const QUERY: &[u8] =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ext\x07example\x00\x00\x01\x00\x01";

    #[test]
    fn prefix_check() {
        let q = parse_query(QUERY).unwrap();
        let mut r = QUERY.to_vec();
        r[2] |= 0x80;
        r[13] = b'E';
        r.extend([0u8; 600]);
        assert_eq!(validate_prefix(&q, 0x1234, &r), Some(0));
        assert_eq!(validate_prefix(&q, 0x1235, &r), None);
        let mut other = r.clone();
        other[14] = b'y';
        assert_eq!(validate_prefix(&q, 0x1234, &other), None);
        let mut other = r.clone();
        other[26] = 28;
        assert_eq!(validate_prefix(&q, 0x1234, &other), None);
        assert_eq!(validate_prefix(&q, 0x1234, &r[..20]), None);
        assert_eq!(validate_prefix(&q, 0x1234, QUERY), None, "QR=0");
    }

    proptest! {
        #[test]
        fn prefix_check_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let q = parse_query(QUERY).unwrap();
            let _ = validate_prefix(&q, 0x1234, &bytes);
        }
    }
}
