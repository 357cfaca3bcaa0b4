//! Property "fuzz" tests (FZ-1..FZ-3 in miniature): arbitrary and mutated input to the
//! query handler, the upstream-reply validator and the TCP framer never panics, and
//! output stays bounded.

mod common;

use common::*;
use cove_dns::wire::{parse_query, MIN_UDP_SIZE};
use cove_dns::{validate_reply, Forward, Frame, Framer, Outcome, Transport};
use hickory_proto::rr::RecordType;
use proptest::prelude::*;

fn seeds() -> Vec<Vec<u8>> {
    vec![
        query(1, "web", RecordType::A, None),
        query(2, "www.", RecordType::AAAA, Some(1232)),
        query(3, "2.0.1.10.in-addr.arpa.", RecordType::PTR, None),
        query(4, "example.com.", RecordType::TXT, Some(4096)),
        answer_for(&query(5, "ext.example.", RecordType::A, None), &["192.0.2.1".parse().unwrap()]),
    ]
}

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (0..5usize, proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8), any::<usize>())
        .prop_map(|(i, flips, cut)| {
            let mut m = seeds()[i].clone();
            for (at, v) in flips {
                let len = m.len();
                m[at % len] = v;
            }
            let keep = m.len() - cut % (m.len() / 2 + 1);
            m.truncate(keep);
            m
        })
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..600), mutated()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn respond_never_panics_and_stays_in_bounds(bytes in input()) {
        let r = resolver(test_config(), Forward::Upstream(vec!["192.0.2.53:53".parse().unwrap()]));
        let mut out = Vec::new();
        for t in [Transport::Udp, Transport::Tcp] {
            match r.respond("sb", &bytes, t, &mut out) {
                Outcome::Reply => {
                    prop_assert!(out.len() >= 12);
                    prop_assert!(out[2] & 0x80 != 0, "replies are responses");
                    let limit = match (t, parse_query(&bytes)) {
                        (Transport::Udp, Ok(q)) => q.max_udp_size(),
                        (Transport::Udp, Err(_)) => MIN_UDP_SIZE,
                        (Transport::Tcp, _) => 65535,
                    };
                    prop_assert!(out.len() <= limit);
                    // Whatever we answer must be a well-formed message.
                    prop_assert!(hickory_proto::op::Message::from_vec(&out).is_ok());
                }
                Outcome::Drop => prop_assert!(bytes.len() < 12 || bytes[2] & 0x80 != 0),
                Outcome::Forward(plan) => prop_assert_eq!(plan.upstreams().len(), 1),
            }
        }
    }

    #[test]
    fn reply_validator_never_panics(reply in input(), q in mutated()) {
        if let Ok(pq) = parse_query(&q) {
            let id = pq.id;
            if let Ok(rc) = validate_reply(&pq, id, &reply) {
                prop_assert!(rc < 16);
                prop_assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), id);
            }
        }
    }

    #[test]
    fn framer_consumes_or_waits(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20)) {
        let mut f = Framer::new();
        let mut total_in = 0usize;
        let mut total_out = 0usize;
        'outer: for c in chunks {
            total_in += c.len();
            f.push(&c);
            // Each loop turn either consumes a frame or stops: bounded by the input size.
            for _ in 0..=total_in {
                match f.next_frame() {
                    Frame::Message(m) => total_out += m.len() + 2,
                    Frame::Incomplete => continue 'outer,
                    Frame::Invalid => break 'outer,
                }
            }
            prop_assert!(false, "framer produced more frames than bytes");
        }
        prop_assert!(total_out <= total_in);
        prop_assert!(f.pending() <= total_in - total_out);
    }
}
