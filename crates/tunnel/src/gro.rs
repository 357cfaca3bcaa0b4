// SPDX-License-Identifier: Apache-2.0
//! TUN offloads, the receiving half: decrypted packets of one flow, received in one batch,
//! are coalesced into one super-packet with a `virtio_net_hdr` describing it (GRO in
//! userspace, as wireguard-go's `handleGRO`), and written to the TUN device in one `write`.
//!
//! Two kinds coalesce:
//! * TCP segments (IPv4 or IPv6) into a TSO super-packet: one trip through the stack for
//!   up to 64 segments. A segment joins the latest super-packet of its flow only if every
//!   header matches but the fields that vary per segment (lengths, IPv4 id and checksum,
//!   sequence number, window, PSH), its sequence number follows, and no segment before it
//!   was short or had PSH.
//! * UDP datagrams of one flow, all of one size but a shorter last, into a USO super-packet
//!   (only when the kernel takes `TUN_F_USO`). This is what carries the encrypted overlay:
//!   its VXLAN datagrams between tunnel addresses, one outer flow per inner TCP flow (the
//!   source port hashes it). The kernel splits the super-packet again at its UDP socket
//!   (a VXLAN socket does not take GSO), but only after one write and one trip through IP,
//!   and the VXLAN device's GRO cells then see the whole run at once and coalesce the
//!   inner TCP. (A UDP tunnel super-packet, `VIRTIO_NET_HDR_GSO_UDP_TUNNEL_*`, would go
//!   further, but Linux 6.18 refuses it on writes to a layer-3 TUN device: it expects an
//!   Ethernet header before the outer IP header.)
//!
//! The super-packet goes up with its checksum marked partial, which the kernel trusts, so
//! every packet's checksum is verified before it joins one: TCP's, UDP's when present,
//! and, when the UDP datagram is VXLAN carrying TCP, the inner TCP's too (both sums share
//! one pass over the TCP segment). A packet that fails stays alone, written as it came,
//! and nothing joins it. Order within a flow is kept; flows may interleave differently.

use crate::offload::{
    fix_ip, fold, pseudo, sum, VnetHdr, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, PROTO_TCP,
    PROTO_UDP, TCP_ACK, TCP_PSH, VNET_HDR_LEN,
};

/// Super-packets (or single packets) held before a flush.
pub(crate) const MAX_ITEMS: usize = 64;

/// Segments in one super-packet: `UDP_MAX_SEGMENTS` of kernels before 6.8.
const MAX_SEGMENTS: u16 = 64;

/// The largest IP packet.
const MAX_PACKET: usize = 65_535;

/// Where the headers of a coalescable packet are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// The transport header (after the IP header at 0).
    th: usize,
    /// Where the transport payload starts.
    hdr_len: usize,
    tcp: bool,
}

/// One packet or super-packet being built: `bufs[i]` holds it after the header room.
#[derive(Debug, Clone, Copy)]
struct Item {
    len: usize,
    shape: Option<Shape>,
    segments: u16,
    gso_size: u16,
    next_seq: u32,
    /// A short or PSH segment ended it, or its checksum is wrong: nothing may follow.
    closed: bool,
    /// Its checksums were verified (done when a second packet first joins).
    verified: bool,
}

/// A batch of decrypted packets on their way to the TUN device.
pub(crate) struct Gro {
    bufs: Vec<Box<[u8]>>,
    items: Vec<Item>,
    /// Whether the kernel takes UDP super-packets (`TUN_F_USO4/6`).
    udp: bool,
}

/// What [`Gro::flush`] hands to its writer: a whole TUN write (virtio header first) and the
/// number of inner packets in it.
pub(crate) type Write<'a> = (&'a [u8], usize);

impl Gro {
    pub(crate) fn new(udp: bool) -> Gro {
        Gro {
            bufs: (0..=MAX_ITEMS)
                .map(|_| vec![0u8; VNET_HDR_LEN + MAX_PACKET].into_boxed_slice())
                .collect(),
            items: Vec::with_capacity(MAX_ITEMS),
            udp,
        }
    }

    /// Whether [`Gro::flush`] must run before the next packet.
    pub(crate) fn is_full(&self) -> bool {
        self.items.len() == MAX_ITEMS
    }

    /// Whether nothing is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The buffer to decrypt the next packet into; then [`Gro::commit`] it.
    pub(crate) fn slot(&mut self) -> &mut [u8] {
        &mut self.bufs[self.items.len()][VNET_HDR_LEN..]
    }

    /// Take the first `len` bytes of [`Gro::slot`]: appended to the latest super-packet of
    /// its flow, or held as a new one.
    pub(crate) fn commit(&mut self, len: usize) {
        let k = self.items.len();
        let shape = self.shape(&self.bufs[k][VNET_HDR_LEN..VNET_HDR_LEN + len]);
        if let Some(s) = shape {
            // The latest item of this flow, if any: only it may be continued.
            let pkt = &self.bufs[k][VNET_HDR_LEN..VNET_HDR_LEN + s.hdr_len];
            let latest = self.items.iter().enumerate().rev().find_map(|(j, it)| {
                let head = &self.bufs[j][VNET_HDR_LEN..VNET_HDR_LEN + s.hdr_len];
                (it.shape == Some(s) && same_flow(head, pkt, s)).then_some(j)
            });
            if latest.is_some_and(|j| self.try_append(j, k, len, s)) {
                return;
            }
        }
        let pkt = &self.bufs[k][VNET_HDR_LEN..];
        let item = match shape {
            Some(s) => {
                let payload = len - s.hdr_len;
                Item {
                    len,
                    shape,
                    segments: 1,
                    gso_size: payload as u16,
                    next_seq: if s.tcp { seq(pkt, s.th).wrapping_add(payload as u32) } else { 0 },
                    closed: s.tcp && pkt[s.th + 13] & TCP_PSH != 0,
                    verified: false,
                }
            }
            None => Item {
                len,
                shape,
                segments: 1,
                gso_size: 0,
                next_seq: 0,
                closed: true,
                verified: false,
            },
        };
        self.items.push(item);
    }

    /// Append the packet in `bufs[k]` to item `j` if it continues it.
    fn try_append(&mut self, j: usize, k: usize, len: usize, s: Shape) -> bool {
        let it = self.items[j];
        let payload = len - s.hdr_len;
        let (head, pkt) = pair(&mut self.bufs, j, k);
        let (head, pkt) = (&mut head[VNET_HDR_LEN..], &pkt[VNET_HDR_LEN..VNET_HDR_LEN + len]);
        if it.closed
            || it.segments >= MAX_SEGMENTS
            || payload > usize::from(it.gso_size)
            || it.len + payload > MAX_PACKET
            || (s.tcp && seq(pkt, s.th) != it.next_seq)
            || !checksums_ok(pkt, s)
        {
            return false;
        }
        if !it.verified {
            if !checksums_ok(&head[..it.len], s) {
                // Never merge into a packet with a bad checksum: it stays alone.
                self.items[j].closed = true;
                return false;
            }
            self.items[j].verified = true;
        }
        head[it.len..it.len + payload].copy_from_slice(&pkt[s.hdr_len..]);
        let psh = s.tcp && pkt[s.th + 13] & TCP_PSH != 0;
        if psh {
            head[s.th + 13] |= TCP_PSH;
        }
        let it = &mut self.items[j];
        it.len += payload;
        it.segments += 1;
        it.next_seq = it.next_seq.wrapping_add(payload as u32);
        it.closed = psh || payload < usize::from(it.gso_size);
        true
    }

    /// The shape of a packet that may coalesce, or `None`.
    fn shape(&self, p: &[u8]) -> Option<Shape> {
        let (th, proto) = match p.first()? >> 4 {
            4 if p.len() >= 28 && p[0] == 0x45 && plain_ipv4(p) => (20, p[9]),
            6 if p.len() >= 48 && usize::from(be16(p, 4)) == p.len() - 40 => (40, p[6]),
            _ => return None,
        };
        match proto {
            PROTO_TCP if p.len() >= th + 20 => {
                let thl = usize::from(p[th + 12] >> 4) * 4;
                // Only plain data segments (ACK, maybe PSH) with a payload coalesce.
                let data = (20..=60).contains(&thl) && p.len() > th + thl;
                (data && p[th + 13] & !TCP_PSH == TCP_ACK).then_some(Shape {
                    th,
                    hdr_len: th + thl,
                    tcp: true,
                })
            }
            PROTO_UDP if self.udp && usize::from(be16(p, th + 4)) == p.len() - th => {
                (p.len() > th + 8).then_some(Shape { th, hdr_len: th + 8, tcp: false })
            }
            _ => None,
        }
    }

    /// Write everything held, each item with its virtio header, through `write`, and start
    /// over.
    pub(crate) fn flush(&mut self, mut write: impl FnMut(Write<'_>) -> bool) {
        for (i, it) in self.items.iter().enumerate() {
            let b = &mut self.bufs[i];
            let hdr = match it.shape {
                Some(s) if it.segments > 1 => {
                    finish(&mut b[VNET_HDR_LEN..VNET_HDR_LEN + it.len], s, it)
                }
                _ => VnetHdr::default(),
            };
            hdr.write(b);
            write((&b[..VNET_HDR_LEN + it.len], usize::from(it.segments)));
        }
        self.items.clear();
    }
}

/// Lengths, the IPv4 header checksum, the partial transport checksum and the virtio header
/// of a coalesced super-packet.
fn finish(p: &mut [u8], s: Shape, it: &Item) -> VnetHdr {
    let len = p.len();
    fix_ip(p, 0, len, 0);
    let v6 = p[0] >> 4 == 6;
    let (proto, gso_type, csum_offset) = match (s.tcp, v6) {
        (true, false) => (PROTO_TCP, GSO_TCPV4, 16),
        (true, true) => (PROTO_TCP, GSO_TCPV6, 16),
        (false, _) => (PROTO_UDP, GSO_UDP_L4, 6),
    };
    if !s.tcp {
        p[s.th + 4..s.th + 6].copy_from_slice(&((len - s.th) as u16).to_be_bytes());
    }
    // CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented.
    let ps = fold(pseudo(p, proto, len - s.th));
    let at = s.th + csum_offset;
    p[at..at + 2].copy_from_slice(&ps.to_be_bytes());
    VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type,
        hdr_len: s.hdr_len as u16,
        gso_size: it.gso_size,
        csum_start: s.th as u16,
        csum_offset: csum_offset as u16,
        ..Default::default()
    }
}

/// An IPv4 header without fragmentation whose total length is the packet's.
fn plain_ipv4(p: &[u8]) -> bool {
    usize::from(be16(p, 2)) == p.len() && be16(p, 6) & 0x3fff == 0
}

/// Whether two packets of shape `s` belong to one flow: every header byte equal but those
/// that vary per segment.
fn same_flow(a: &[u8], b: &[u8], s: Shape) -> bool {
    let ip = if a[0] >> 4 == 6 {
        a[..4] == b[..4] && a[6..40] == b[6..40]
    } else {
        // Version to TOS; flags to protocol; addresses. Not: length, id, checksum.
        a[..2] == b[..2] && a[6..10] == b[6..10] && a[12..20] == b[12..20]
    };
    let t = s.th;
    if !ip || a[t..t + 4] != b[t..t + 4] {
        return false;
    }
    if !s.tcp {
        // With a checksum or without, alike.
        return (a[t + 6..t + 8] == [0, 0]) == (b[t + 6..t + 8] == [0, 0]);
    }
    // Acknowledgement, header length; flags but PSH; urgent pointer; options.
    a[t + 8..t + 13] == b[t + 8..t + 13]
        && a[t + 13] & !TCP_PSH == b[t + 13] & !TCP_PSH
        && a[t + 18..s.hdr_len] == b[t + 18..s.hdr_len]
}

/// Whether the checksums of a packet of shape `s` are right: TCP's; UDP's when it has one;
/// and the inner TCP's of VXLAN in UDP (outer IPv4 or IPv6, inner IPv4 without options or
/// IPv6). The inner TCP segment is summed once for both: the outer sum is the inner one
/// plus the headers between (an even number of bytes).
fn checksums_ok(p: &[u8], s: Shape) -> bool {
    let ok = |sum: u64| fold(sum) == 0xffff;
    if s.tcp {
        return ok(sum(&p[s.th..], pseudo(p, PROTO_TCP, p.len() - s.th)));
    }
    let udp_csum = p[s.th + 6..s.th + 8] != [0, 0];
    match inner_tcp(p, s.hdr_len) {
        Some((nh, th)) => {
            let segment = sum(&p[th..], 0);
            ok(segment + pseudo(&p[nh..], PROTO_TCP, p.len() - th))
                && (!udp_csum
                    || ok(segment + sum(&p[s.th..th], pseudo(p, PROTO_UDP, p.len() - s.th))))
        }
        None => !udp_csum || ok(sum(&p[s.th..], pseudo(p, PROTO_UDP, p.len() - s.th))),
    }
}

/// The inner IP and TCP header offsets of VXLAN (8 bytes, the I flag) carrying Ethernet
/// carrying TCP, starting at `at`.
fn inner_tcp(p: &[u8], at: usize) -> Option<(usize, usize)> {
    let nh = at + 8 + 14;
    if p.len() < nh + 40 || p[at] & 0x08 == 0 {
        return None;
    }
    match (be16(p, nh - 2), p[nh]) {
        (0x0800, 0x45)
            if p[nh + 9] == PROTO_TCP && usize::from(be16(p, nh + 2)) == p.len() - nh =>
        {
            Some((nh, nh + 20))
        }
        (0x86dd, v) if v >> 4 == 6 && p.len() >= nh + 60 && p[nh + 6] == PROTO_TCP => {
            Some((nh, nh + 40))
        }
        _ => None,
    }
}

fn seq(p: &[u8], th: usize) -> u32 {
    u32::from_be_bytes([p[th + 4], p[th + 5], p[th + 6], p[th + 7]])
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Two distinct buffers of `bufs`, the first mutable.
fn pair(bufs: &mut [Box<[u8]>], j: usize, k: usize) -> (&mut [u8], &[u8]) {
    debug_assert!(j < k);
    let (lo, hi) = bufs.split_at_mut(k);
    (&mut lo[j], &hi[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::tests::*;
    use crate::offload::{checksum, segment, TCP_FIN};

    /// Segments as the peer's tunnel would send them: a super-packet split by `segment`.
    fn segments_of(mut p: Vec<u8>, h: VnetHdr) -> Vec<Vec<u8>> {
        let mut scratch = vec![0u8; 65_536];
        let mut out = Vec::new();
        segment(&mut p, &h, &mut scratch, |s| out.push(s.to_vec())).unwrap();
        out
    }

    fn feed(g: &mut Gro, pkts: &[Vec<u8>]) -> Vec<(VnetHdr, Vec<u8>, usize)> {
        let mut out = Vec::new();
        for p in pkts {
            if g.is_full() {
                g.flush(|(b, n)| {
                    out.push((VnetHdr::parse(b), b[VNET_HDR_LEN..].to_vec(), n));
                    true
                });
            }
            g.slot()[..p.len()].copy_from_slice(p);
            g.commit(p.len());
        }
        g.flush(|(b, n)| {
            out.push((VnetHdr::parse(b), b[VNET_HDR_LEN..].to_vec(), n));
            true
        });
        out
    }

    /// A TCP flow of `body` bytes in segments of `mss` over IPv4 or IPv6, the last with PSH.
    fn flow(v6: bool, seq0: u32, body: usize, mss: usize, salt: u8) -> (Vec<Vec<u8>>, Vec<u8>) {
        let data = payload(body, salt);
        let mut pkts = Vec::new();
        for (i, chunk) in data.chunks(mss).enumerate() {
            let last = (i + 1) * mss >= body;
            let mut t = tcp(seq0 + (i * mss) as u32, TCP_ACK | if last { TCP_PSH } else { 0 });
            t[1] = salt; // the source port tells flows apart
            let mut p = if v6 {
                ipv6(PROTO_TCP, t.len() + chunk.len())
            } else {
                ipv4([10, 255, 0, 2], [10, 255, 0, 1], PROTO_TCP, t.len() + chunk.len())
            };
            let th = p.len();
            p.extend_from_slice(&t);
            p.extend_from_slice(chunk);
            if !v6 {
                // Consecutive IPv4 ids, as the sender's segmentation leaves them.
                let end = p.len();
                fix_ip(&mut p, 0, end, i as u16);
            }
            let c = checksum(&p[th..], pseudo(&p, PROTO_TCP, p.len() - th));
            p[th + 16..th + 18].copy_from_slice(&c.to_be_bytes());
            pkts.push(p);
        }
        (pkts, data)
    }

    /// What the kernel does with a super-packet written to the TUN device: segment it (the
    /// same way as in the sending half, which is tested against the reference checksum).
    fn resegment(hdr: VnetHdr, p: &[u8]) -> Vec<Vec<u8>> {
        if hdr.gso_type == 0 {
            return vec![p.to_vec()];
        }
        segments_of(p.to_vec(), hdr)
    }

    #[test]
    fn segments_of_a_flow_coalesce_into_one_write_and_resegment_identically() {
        for v6 in [false, true] {
            // Odd total: the last segment is shorter.
            let (pkts, data) = flow(v6, 7000, 20_001, 1368, 1);
            let mut g = Gro::new(true);
            let out = feed(&mut g, &pkts);
            assert_eq!(out.len(), 1, "one write");
            let (hdr, sp, n) = &out[0];
            assert_eq!(*n, pkts.len());
            assert_eq!(hdr.flags, F_NEEDS_CSUM);
            assert_eq!(hdr.gso_type, if v6 { GSO_TCPV6 } else { GSO_TCPV4 });
            assert_eq!(usize::from(hdr.gso_size), 1368);
            let th = usize::from(hdr.csum_start);
            check_ip(sp, 0);
            assert_eq!(sp[th + 13], TCP_ACK | TCP_PSH, "PSH of the last segment kept");
            assert_eq!(&sp[th + 32..], &data[..]);
            // The pseudo-header sum in the checksum field completes to a valid checksum.
            let mut full = sp.clone();
            let c = checksum(&full[th..], 0);
            full[th + 16..th + 18].copy_from_slice(&c.to_be_bytes());
            check_transport(&full, 0, th, PROTO_TCP);
            assert!(resegment(*hdr, sp) == pkts, "the kernel's segments are the originals");
        }
    }

    #[test]
    fn vxlan_datagrams_coalesce_into_a_udp_super_packet() {
        for outer_csum in [false, true] {
            vxlan_coalesces(outer_csum);
        }
    }

    fn vxlan_coalesces(outer_csum: bool) {
        // What the peer's tunnel sends: an overlay TCP super-packet in VXLAN, segmented.
        let (p, h) = vxlan_tso(30_000, 1318, outer_csum);
        let pkts = segments_of(p.clone(), h);
        let out = feed(&mut Gro::new(true), &pkts);
        assert_eq!(out.len(), 1, "one write");
        let (hdr, sp, n) = &out[0];
        assert_eq!(*n, pkts.len());
        assert_eq!((hdr.flags, hdr.gso_type), (F_NEEDS_CSUM, GSO_UDP_L4));
        assert_eq!((hdr.csum_start, hdr.csum_offset, hdr.hdr_len), (20, 6, 28));
        assert_eq!(usize::from(hdr.gso_size), 1420 - 28);
        check_ip(sp, 0);
        assert_eq!(usize::from(be16(sp, 24)), sp.len() - 20, "UDP length");
        let ps = fold(pseudo(sp, PROTO_UDP, sp.len() - 20));
        assert_eq!(be16(sp, 26), ps, "partial: the pseudo-header sum");
        // The kernel's split gives the datagrams back (with a checksum where there was
        // none: the split computes one).
        let mut again = resegment(*hdr, sp);
        if !outer_csum {
            again.iter_mut().for_each(|d| d[26..28].fill(0));
        }
        assert!(again == pkts);

        // A datagram whose outer checksum is wrong, or whose inner TCP checksum is (the
        // outer one fixed up to match), stays alone and nothing joins it.
        let mut bad = pkts.clone();
        bad[3][120] ^= 1;
        if outer_csum {
            let d = &mut bad[3];
            d[26..28].fill(0);
            let c = checksum(&d[20..], pseudo(d, PROTO_UDP, d.len() - 20));
            d[26..28].copy_from_slice(&c.to_be_bytes());
            let mut bad_outer = pkts.clone();
            bad_outer[3][26] ^= 0x40;
            let out = feed(&mut Gro::new(true), &bad_outer);
            assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [3, 1, pkts.len() - 4]);
        }
        let out = feed(&mut Gro::new(true), &bad);
        assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [3, 1, pkts.len() - 4]);
        assert!(out[1].0 == VnetHdr::default() && out[1].1 == bad[3], "written as it came");

        // Without USO each datagram is written alone.
        let out = feed(&mut Gro::new(false), &pkts);
        assert_eq!(out.len(), pkts.len());
        assert!(out.iter().all(|(h, _, n)| *h == VnetHdr::default() && *n == 1));
    }

    #[test]
    fn interleaved_flows_coalesce_apart_and_keep_their_order() {
        let (a, da) = flow(false, 1, 9000, 1000, 1);
        let (b, db) = flow(false, 50_000, 6000, 1000, 2);
        let mut mixed = Vec::new();
        for i in 0..a.len().max(b.len()) {
            mixed.extend(a.get(i).cloned());
            mixed.extend(b.get(i).cloned());
        }
        let out = feed(&mut Gro::new(true), &mixed);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].1[52..], da[..]);
        assert_eq!(out[1].1[52..], db[..]);
    }

    #[test]
    fn what_must_not_coalesce_is_written_alone() {
        let (pkts, _) = flow(false, 1, 5000, 1000, 1);
        // A gap in the sequence: two super-packets.
        let gap: Vec<Vec<u8>> = [&pkts[0], &pkts[1], &pkts[3], &pkts[4]].map(|p| p.clone()).into();
        let out = feed(&mut Gro::new(true), &gap);
        assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [2, 2]);

        // A bad checksum: that segment alone, and nothing joins it.
        let mut bad = pkts.clone();
        bad[2][60] ^= 0xff;
        let out = feed(&mut Gro::new(true), &bad);
        assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [2, 1, 2]);
        assert!(out[1].0 == VnetHdr::default() && out[1].1 == bad[2], "written as it came");

        // PSH or a short segment ends a super-packet; FIN never joins.
        let (short, _) = flow(false, 1, 2500, 1000, 1);
        let mut after = short.clone();
        let (more, _) = flow(false, 2501, 2000, 1000, 1);
        after.extend(more);
        let out = feed(&mut Gro::new(true), &after);
        assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [3, 2]);
        let mut fin = pkts.clone();
        fin[1][20 + 13] |= TCP_FIN;
        let c = {
            let p = &mut fin[1];
            p[36..38].fill(0);
            checksum(&p[20..], pseudo(p, PROTO_TCP, p.len() - 20))
        };
        fin[1][36..38].copy_from_slice(&c.to_be_bytes());
        let out = feed(&mut Gro::new(true), &fin);
        assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [1, 1, 3]);

        // Plain UDP coalesces while the sizes hold (the shorter last ends it); a bad UDP
        // checksum stays alone; what is neither TCP nor UDP is written alone.
        let udp = |n: usize, salt: u8, csum_ok: bool| {
            let mut p = ipv4([10, 255, 0, 2], [10, 255, 0, 1], PROTO_UDP, 8 + n);
            p.extend_from_slice(&[0x30, 0x39, 0x23, 0x28]);
            p.extend_from_slice(&((8 + n) as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0]);
            p.extend_from_slice(&payload(n, salt));
            let c = checksum(&p[20..], pseudo(&p, PROTO_UDP, 8 + n)) ^ u16::from(!csum_ok);
            p[26..28].copy_from_slice(&c.to_be_bytes());
            p
        };
        let dgrams =
            [udp(1000, 1, true), udp(1000, 2, true), udp(500, 3, true), udp(1000, 4, true)];
        let out = feed(&mut Gro::new(true), &dgrams);
        assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [3, 1]);
        let bad = [udp(1000, 1, true), udp(1000, 2, false), udp(1000, 3, true)];
        let out = feed(&mut Gro::new(true), &bad);
        assert_eq!(out.iter().map(|o| o.2).collect::<Vec<_>>(), [1, 1, 1]);
        let mut icmp = ipv4([10, 255, 0, 2], [10, 255, 0, 1], 1, 64);
        icmp.extend_from_slice(&payload(64, 0));
        let out = feed(&mut Gro::new(true), &[icmp.clone(), icmp.clone()]);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn a_full_batch_flushes_and_nothing_exceeds_64k() {
        // 100 single-segment flows: more items than fit.
        let pkts: Vec<Vec<u8>> =
            (0..100).map(|i| flow(false, 1, 100, 100, i as u8).0[0].clone()).collect();
        let out = feed(&mut Gro::new(true), &pkts);
        assert_eq!(out.len(), 100);
        // One long flow: super-packets stay within an IP packet's size.
        let (pkts, data) = flow(false, 1, 300_000, 1448, 7);
        let out = feed(&mut Gro::new(true), &pkts);
        assert!(out.iter().all(|(_, sp, _)| sp.len() <= 65_535));
        let joined: Vec<u8> = out.iter().flat_map(|(_, sp, _)| sp[52..].to_vec()).collect();
        assert!(joined == data);
        assert_eq!(out.iter().map(|o| o.2).sum::<usize>(), pkts.len());
    }
}
