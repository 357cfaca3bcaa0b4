// SPDX-License-Identifier: Apache-2.0
//! TUN offloads, the sending half: the `virtio_net_hdr` that prefixes every read and write
//! of a TUN device opened with `IFF_VNET_HDR`, Internet checksums, and the segmentation of
//! the GSO super-packets the kernel hands over (up to 64 KiB of one TCP or UDP flow) into
//! MTU-sized IP packets, each then encrypted on its own.
//!
//! Three shapes of super-packet arrive: TCP (`TUN_F_TSO4/6`), UDP (`TUN_F_USO4/6`, a
//! sender using `UDP_SEGMENT`), and either of them inside a UDP tunnel
//! (`TUN_F_UDP_TUNNEL_GSO`, Linux 6.17+): the kernel's VXLAN device of an encrypted
//! overlay routes its datagrams into the tunnel's device, so the overlay's TCP reaches us
//! as VXLAN super-packets, outer IP/UDP/VXLAN/Ethernet headers in front of the inner IP and
//! TCP headers. Each segment gets every header copied and its lengths, IPv4 ids and header
//! checksums, TCP sequence number and flags (FIN and PSH on the last segment only, CWR on
//! the first only, as the kernel's own segmentation does) and transport checksums set;
//! the kernel's header length field is not trusted (it can cover a whole first packet),
//! it is recomputed from the transport header. The receiving half is [`crate::gro`].

/// Bytes of the virtio header before every packet: `struct virtio_net_hdr_v1_hash_tunnel`
/// (the legacy 10-byte header, `num_buffers`, the hash fields, the two tunnel offsets).
/// Kernels without UDP tunnel offload take the same size and ignore the tail.
pub(crate) const VNET_HDR_LEN: usize = 24;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset` holds only the
/// pseudo-header sum; the rest is to be computed (`CHECKSUM_PARTIAL`).
pub(crate) const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_UDP_TUNNEL_CSUM`: the outer UDP header of a tunnel needs its checksum.
pub(crate) const F_UDP_TUNNEL_CSUM: u8 = 8;

/// `VIRTIO_NET_HDR_GSO_*` (linux/virtio_net.h).
pub(crate) const GSO_NONE: u8 = 0;
pub(crate) const GSO_TCPV4: u8 = 1;
pub(crate) const GSO_TCPV6: u8 = 4;
pub(crate) const GSO_UDP_L4: u8 = 5;
pub(crate) const GSO_UDP_TUNNEL_IPV4: u8 = 0x20;
pub(crate) const GSO_UDP_TUNNEL_IPV6: u8 = 0x40;
pub(crate) const GSO_ECN: u8 = 0x80;

pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_PSH: u8 = 0x08;
pub(crate) const TCP_ACK: u8 = 0x10;
pub(crate) const TCP_CWR: u8 = 0x80;

pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;

/// The fields of the virtio header this crate uses (little-endian on the wire: virtio 1.0,
/// which is what TUN speaks on a little-endian host).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VnetHdr {
    pub(crate) flags: u8,
    pub(crate) gso_type: u8,
    pub(crate) hdr_len: u16,
    pub(crate) gso_size: u16,
    pub(crate) csum_start: u16,
    pub(crate) csum_offset: u16,
    /// Offset of the outer UDP header of a tunnelled super-packet.
    pub(crate) outer_th: u16,
    /// Offset of the inner IP header of a tunnelled super-packet.
    pub(crate) inner_nh: u16,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl VnetHdr {
    /// Decode the first [`VNET_HDR_LEN`] bytes of `b`.
    pub(crate) fn parse(b: &[u8]) -> VnetHdr {
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le16(b, 2),
            gso_size: le16(b, 4),
            csum_start: le16(b, 6),
            csum_offset: le16(b, 8),
            outer_th: le16(b, 20),
            inner_nh: le16(b, 22),
        }
    }

    /// Encode into the first [`VNET_HDR_LEN`] bytes of `b` (the unused fields zero).
    pub(crate) fn write(&self, b: &mut [u8]) {
        b[..VNET_HDR_LEN].fill(0);
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b[20..22].copy_from_slice(&self.outer_th.to_le_bytes());
        b[22..24].copy_from_slice(&self.inner_nh.to_le_bytes());
    }
}

/// The one's-complement sum of `data` as big-endian 16-bit words, added to `initial`, not
/// folded. Summing 32-bit words into 64 bits is equivalent (RFC 1071 §2) and lets the
/// compiler vectorise.
pub(crate) fn sum(data: &[u8], initial: u64) -> u64 {
    let mut acc = initial;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

/// Fold a sum from [`sum`] to 16 bits.
pub(crate) fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The Internet checksum of `data` with `initial` (a pseudo-header sum) added.
pub(crate) fn checksum(data: &[u8], initial: u64) -> u16 {
    !fold(sum(data, initial))
}

/// The pseudo-header sum of a TCP or UDP segment of `len` bytes in the IP packet whose
/// header starts at `ip[0]` (IPv4 or IPv6, by its version).
pub(crate) fn pseudo(ip: &[u8], proto: u8, len: usize) -> u64 {
    let addrs = if ip[0] >> 4 == 6 { &ip[8..40] } else { &ip[12..20] };
    sum(addrs, u64::from(proto) + len as u64)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Set the length of the IP packet whose header starts at `ip[at]` and ends at `end`, add
/// `id_step` to an IPv4 id and recompute an IPv4 header checksum.
pub(crate) fn fix_ip(p: &mut [u8], at: usize, end: usize, id_step: u16) {
    if p[at] >> 4 == 6 {
        put16(p, at + 4, (end - at - 40) as u16);
        return;
    }
    let ihl = usize::from(p[at] & 0x0f) * 4;
    put16(p, at + 2, (end - at) as u16);
    if id_step != 0 {
        let id = be16(p, at + 4).wrapping_add(id_step);
        put16(p, at + 4, id);
    }
    put16(p, at + 10, 0);
    let c = checksum(&p[at..at + ihl], 0);
    put16(p, at + 10, c);
}

/// Why a super-packet could not be segmented (the kernel never sends these; the packet is
/// dropped and counted).
pub(crate) type Malformed = &'static str;

/// Where the headers of a super-packet are.
struct Layout {
    /// The outer UDP header of a tunnel (the outer IP header starts at 0).
    outer_th: Option<usize>,
    /// The (inner) IP header.
    nh: usize,
    /// The (inner) transport header.
    th: usize,
    /// All headers: where the payload starts.
    hdr_len: usize,
    tcp: bool,
}

fn layout(p: &[u8], h: &VnetHdr) -> Result<Layout, Malformed> {
    let tunnel = h.gso_type & (GSO_UDP_TUNNEL_IPV4 | GSO_UDP_TUNNEL_IPV6) != 0;
    let tcp = match h.gso_type & !(GSO_ECN | GSO_UDP_TUNNEL_IPV4 | GSO_UDP_TUNNEL_IPV6) {
        GSO_TCPV4 | GSO_TCPV6 => true,
        GSO_UDP_L4 => false,
        _ => return Err("unsupported GSO type"),
    };
    let (outer_th, nh) = if tunnel {
        let (o, n) = (usize::from(h.outer_th), usize::from(h.inner_nh));
        if o < 20 || o + 8 > n || !matches!(p[0] >> 4, 4 | 6) {
            return Err("bad tunnel offsets");
        }
        (Some(o), n)
    } else {
        (None, 0)
    };
    let th = usize::from(h.csum_start);
    if nh + 20 > th || th + 20 > p.len() {
        return Err("bad transport offset");
    }
    let min_ip = match p[nh] >> 4 {
        4 => usize::from(p[nh] & 0x0f) * 4,
        6 => 40,
        _ => return Err("not IP inside"),
    };
    if nh + min_ip > th {
        return Err("transport header inside the IP header");
    }
    let thl = if tcp { usize::from(p[th + 12] >> 4) * 4 } else { 8 };
    if tcp && !(20..=60).contains(&thl) {
        return Err("bad TCP header length");
    }
    let hdr_len = th + thl;
    if hdr_len > p.len() {
        return Err("headers longer than the packet");
    }
    Ok(Layout { outer_th, nh, th, hdr_len, tcp })
}

/// Hand each IP packet of what one TUN read returned (`p`, after its virtio header `h`) to
/// `emit`, in order: `p` itself, its checksum completed if the kernel left it partial, or
/// the segments of a GSO super-packet, built one at a time in `scratch` (which must hold
/// one segment: headers plus `gso_size`). Returns the number of packets emitted.
pub(crate) fn segment(
    p: &mut [u8],
    h: &VnetHdr,
    scratch: &mut [u8],
    mut emit: impl FnMut(&[u8]),
) -> Result<usize, Malformed> {
    if h.gso_type == GSO_NONE {
        if h.flags & F_NEEDS_CSUM != 0 {
            let start = usize::from(h.csum_start);
            let at = start + usize::from(h.csum_offset);
            if at + 2 > p.len() {
                return Err("checksum offset past the end");
            }
            // The field holds the pseudo-header sum: it is part of the sum.
            let c = checksum(&p[start..], 0);
            put16(p, at, c);
        }
        emit(p);
        return Ok(1);
    }
    let l = layout(p, h)?;
    let gso = usize::from(h.gso_size);
    if gso == 0 || l.hdr_len + gso > scratch.len() {
        return Err("bad segment size");
    }
    let (proto, csum_at) = if l.tcp { (PROTO_TCP, l.th + 16) } else { (PROTO_UDP, l.th + 6) };
    let seq0 = u32::from_be_bytes([p[l.th + 4], p[l.th + 5], p[l.th + 6], p[l.th + 7]]);
    let outer_csum = h.flags & F_UDP_TUNNEL_CSUM != 0 || p[0] >> 4 == 6;
    let (mut start, mut i) = (l.hdr_len, 0usize);
    while start < p.len() {
        let end = (start + gso).min(p.len());
        let len = l.hdr_len + end - start;
        let last = end == p.len();
        let out = &mut scratch[..len];
        out[..l.hdr_len].copy_from_slice(&p[..l.hdr_len]);
        out[l.hdr_len..].copy_from_slice(&p[start..end]);
        fix_ip(out, l.nh, len, i as u16);
        if l.tcp {
            let seq = seq0.wrapping_add((i * gso) as u32);
            out[l.th + 4..l.th + 8].copy_from_slice(&seq.to_be_bytes());
            if !last {
                out[l.th + 13] &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                out[l.th + 13] &= !TCP_CWR;
            }
        } else {
            put16(out, l.th + 4, (len - l.th) as u16);
        }
        put16(out, csum_at, 0);
        let mut c = checksum(&out[l.th..], pseudo(&out[l.nh..], proto, len - l.th));
        if !l.tcp && c == 0 {
            c = 0xffff;
        }
        put16(out, csum_at, c);
        if let Some(o) = l.outer_th {
            fix_ip(out, 0, len, i as u16);
            put16(out, o + 4, (len - o) as u16);
            put16(out, o + 6, 0);
            if outer_csum {
                let c = checksum(&out[o..], pseudo(out, PROTO_UDP, len - o));
                put16(out, o + 6, if c == 0 { 0xffff } else { c });
            }
        }
        emit(out);
        start = end;
        i += 1;
    }
    Ok(i)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// RFC 1071 the slow way: 16-bit words, carries folded as they come.
    pub(crate) fn reference_checksum(parts: &[&[u8]]) -> u16 {
        let bytes: Vec<u8> = parts.concat();
        let mut s: u32 = 0;
        for w in bytes.chunks(2) {
            let v = u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
            s += v;
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    /// The pseudo-header as bytes, for the reference computation.
    pub(crate) fn pseudo_bytes(ip: &[u8], proto: u8, len: usize) -> Vec<u8> {
        let mut v = if ip[0] >> 4 == 6 { ip[8..40].to_vec() } else { ip[12..20].to_vec() };
        if ip[0] >> 4 == 6 {
            v.extend_from_slice(&(len as u32).to_be_bytes());
            v.extend_from_slice(&[0, 0, 0, proto]);
        } else {
            v.extend_from_slice(&[0, proto]);
            v.extend_from_slice(&(len as u16).to_be_bytes());
        }
        v
    }

    /// An IPv4 header (no options) for `payload_len` bytes of `proto`.
    pub(crate) fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, payload_len: usize) -> Vec<u8> {
        let mut h = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, proto, 0, 0];
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        put16(&mut h, 2, (20 + payload_len) as u16);
        let c = reference_checksum(&[&h]);
        put16(&mut h, 10, c);
        h
    }

    /// An IPv6 header for `payload_len` bytes of `proto`.
    pub(crate) fn ipv6(proto: u8, payload_len: usize) -> Vec<u8> {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, proto, 64];
        h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        put16(&mut h, 4, payload_len as u16);
        h
    }

    /// A TCP header (with a 12-byte timestamp option) with `flags` and `seq`.
    pub(crate) fn tcp(seq: u32, flags: u8) -> Vec<u8> {
        let mut t = vec![0x9c, 0x40, 0x14, 0x51];
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&7u32.to_be_bytes());
        t.extend_from_slice(&[0x80, flags, 0x01, 0xf5, 0, 0, 0, 0]);
        t.extend_from_slice(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);
        t
    }

    pub(crate) fn payload(n: usize, salt: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt)).collect()
    }

    /// Checks one segment: IP length and header checksum, transport checksum, all against
    /// the reference computation.
    pub(crate) fn check_ip(p: &[u8], at: usize) {
        if p[at] >> 4 == 4 {
            assert_eq!(usize::from(be16(p, at + 2)), p.len() - at, "IPv4 total length");
            assert_eq!(reference_checksum(&[&p[at..at + 20]]), 0, "IPv4 header checksum");
        } else {
            assert_eq!(usize::from(be16(p, at + 4)), p.len() - at - 40, "IPv6 payload length");
        }
    }

    pub(crate) fn check_transport(p: &[u8], nh: usize, th: usize, proto: u8) {
        let ph = pseudo_bytes(&p[nh..], proto, p.len() - th);
        assert_eq!(reference_checksum(&[&ph, &p[th..]]), 0, "transport checksum");
    }

    #[test]
    fn fast_checksum_matches_the_reference_at_every_length() {
        for n in 0..300 {
            let d = payload(n, n as u8);
            for init in [0u64, 0x1234, 0xffff_fffe] {
                let ref_init = fold(init).to_be_bytes();
                assert_eq!(checksum(&d, init), reference_checksum(&[&ref_init, &d]), "len {n}");
            }
        }
    }

    #[test]
    fn header_round_trips() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4,
            hdr_len: 102,
            gso_size: 1318,
            csum_start: 70,
            csum_offset: 16,
            outer_th: 20,
            inner_nh: 50,
        };
        let mut b = [0xaau8; VNET_HDR_LEN];
        h.write(&mut b);
        assert_eq!(VnetHdr::parse(&b), h);
        assert_eq!(b[10..20], [0; 10]);
    }

    fn tso(v6: bool, body: usize, mss: u16, flags: u8) -> (Vec<u8>, VnetHdr, Vec<u8>) {
        let data = payload(body, 3);
        let mut t = tcp(1000, flags);
        let mut p = if v6 {
            ipv6(PROTO_TCP, t.len() + body)
        } else {
            ipv4([10, 255, 0, 1], [10, 255, 0, 2], PROTO_TCP, t.len() + body)
        };
        let th = p.len();
        // The kernel leaves the pseudo-header sum in the checksum field.
        let ps = fold(pseudo(&p, PROTO_TCP, t.len() + body));
        t[16..18].copy_from_slice(&ps.to_be_bytes());
        p.extend_from_slice(&t);
        p.extend_from_slice(&data);
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: p.len() as u16, // untrusted: the whole packet, as on the forward path
            gso_size: mss,
            csum_start: th as u16,
            csum_offset: 16,
            ..Default::default()
        };
        (p, h, data)
    }

    #[test]
    fn tcp_super_packets_split_into_checksummed_segments() {
        for v6 in [false, true] {
            // Odd sizes: a last segment shorter than the rest, a single short one, and one
            // that is exactly full.
            for (body, mss) in [(10_001, 1368), (501, 1368), (1368 * 3, 1368), (65_000, 1448)] {
                let (mut p, h, data) = tso(v6, body, mss, TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR);
                let mut scratch = vec![0u8; 65_536];
                let mut segs: Vec<Vec<u8>> = Vec::new();
                let n = segment(&mut p, &h, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
                assert_eq!(n, body.div_ceil(usize::from(mss)));
                assert_eq!(segs.len(), n);
                let th = if v6 { 40 } else { 20 };
                let mut got = Vec::new();
                for (i, s) in segs.iter().enumerate() {
                    check_ip(s, 0);
                    check_transport(s, 0, th, PROTO_TCP);
                    let seq = u32::from_be_bytes(s[th + 4..th + 8].try_into().unwrap());
                    assert_eq!(seq, 1000 + (i * usize::from(mss)) as u32);
                    let last = i == n - 1;
                    let f = s[th + 13];
                    assert_eq!(f & (TCP_PSH | TCP_FIN) != 0, last, "PSH/FIN on the last only");
                    assert_eq!(f & TCP_CWR != 0, i == 0, "CWR on the first only");
                    assert!(f & TCP_ACK != 0);
                    if !v6 {
                        assert_eq!(be16(s, 4), 0x1234u16.wrapping_add(i as u16), "IPv4 id");
                    }
                    let body = &s[th + 32..];
                    assert!(body.len() == usize::from(mss) || last, "only the last is short");
                    got.extend_from_slice(body);
                }
                assert!(got == data, "the payload comes out whole and in order");
            }
        }
    }

    #[test]
    fn udp_super_packets_split_with_lengths_and_checksums() {
        let data = payload(3000, 9);
        let mut p = ipv4([10, 255, 0, 1], [10, 255, 0, 2], PROTO_UDP, 8 + data.len());
        p.extend_from_slice(&[0x30, 0x39, 0x23, 0x28, 0, 0, 0, 0]);
        p.extend_from_slice(&data);
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            gso_size: 1200,
            csum_start: 20,
            csum_offset: 6,
            ..Default::default()
        };
        let mut scratch = vec![0u8; 4096];
        let mut segs = Vec::new();
        segment(&mut p, &h, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
        let lens: Vec<usize> = segs.iter().map(Vec::len).collect();
        assert_eq!(lens, [1228, 1228, 628]);
        for s in &segs {
            check_ip(s, 0);
            assert_eq!(usize::from(be16(s, 24)), s.len() - 20, "UDP length");
            check_transport(s, 0, 20, PROTO_UDP);
        }
    }

    #[test]
    fn a_partial_checksum_is_completed() {
        let (mut p, mut h, _) = tso(false, 700, 1368, TCP_ACK);
        h.gso_type = GSO_NONE;
        let mut segs = Vec::new();
        segment(&mut p, &h, &mut [], |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(segs.len(), 1);
        check_transport(&segs[0], 0, 20, PROTO_TCP);
    }

    /// VXLAN (outer IPv4, UDP, VXLAN, Ethernet) around inner IPv4 TCP, as the kernel hands
    /// it over with `TUN_F_UDP_TUNNEL_GSO`.
    pub(crate) fn vxlan_tso(body: usize, mss: u16, outer_csum: bool) -> (Vec<u8>, VnetHdr) {
        let (inner, ih, _) = tso(false, body, mss, TCP_ACK | TCP_PSH);
        let mut p = ipv4([10, 255, 0, 1], [10, 255, 0, 2], PROTO_UDP, 8 + 8 + 14 + inner.len());
        p.extend_from_slice(&[0xc3, 0x50, 0x12, 0xb5, 0, 0, 0, 0]);
        p.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 42, 0]);
        p.extend_from_slice(&[2, 0x42, 10, 0, 9, 3, 2, 0x42, 10, 0, 9, 2, 0x08, 0x00]);
        let nh = p.len();
        p.extend_from_slice(&inner);
        let h = VnetHdr {
            flags: F_NEEDS_CSUM | if outer_csum { F_UDP_TUNNEL_CSUM } else { 0 },
            gso_type: GSO_TCPV4 | GSO_UDP_TUNNEL_IPV4,
            gso_size: mss,
            csum_start: (nh + 20) as u16,
            csum_offset: 16,
            outer_th: 20,
            inner_nh: nh as u16,
            hdr_len: ih.hdr_len,
        };
        (p, h)
    }

    #[test]
    fn vxlan_super_packets_split_with_inner_and_outer_headers_fixed() {
        for outer_csum in [false, true] {
            let (mut p, h) = vxlan_tso(20_000, 1318, outer_csum);
            let whole = p.clone();
            let mut scratch = vec![0u8; 65_536];
            let mut segs = Vec::new();
            segment(&mut p, &h, &mut scratch, |s| segs.push(s.to_vec())).unwrap();
            assert_eq!(segs.len(), 20_000usize.div_ceil(1318));
            let mut got = Vec::new();
            for (i, s) in segs.iter().enumerate() {
                assert!(s.len() <= 1420, "{}", s.len());
                check_ip(s, 0);
                check_ip(s, 50);
                assert_eq!(usize::from(be16(s, 24)), s.len() - 20, "outer UDP length");
                if outer_csum {
                    check_transport(s, 0, 20, PROTO_UDP);
                } else {
                    assert_eq!(be16(s, 26), 0, "no outer UDP checksum");
                }
                check_transport(s, 50, 70, PROTO_TCP);
                assert_eq!(s[28..50], whole[28..50], "VXLAN and Ethernet headers copied");
                assert_eq!(s[70 + 13] & TCP_PSH != 0, i == segs.len() - 1);
                got.extend_from_slice(&s[102..]);
            }
            assert!(got == whole[102..], "payload whole");
        }
    }

    #[test]
    fn malformed_super_packets_are_refused() {
        let (mut p, mut h, _) = tso(false, 3000, 1368, TCP_ACK);
        let mut scratch = vec![0u8; 65_536];
        h.csum_start = 4;
        assert!(segment(&mut p, &h, &mut scratch, |_| {}).is_err());
        h.csum_start = 20;
        h.gso_size = 0;
        assert!(segment(&mut p, &h, &mut scratch, |_| {}).is_err());
        h.gso_size = 1368;
        h.gso_type = 3; // UFO
        assert!(segment(&mut p, &h, &mut scratch, |_| {}).is_err());
        h.gso_type = GSO_TCPV4;
        p[32] = 0x10; // a 4-byte TCP header
        assert!(segment(&mut p, &h, &mut scratch, |_| {}).is_err());
    }
}
