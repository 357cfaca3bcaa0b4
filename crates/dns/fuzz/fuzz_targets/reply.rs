//! FZ-2: arbitrary bytes as an upstream reply to a fixed outstanding query. Oracles: no
//! panic; anything accepted carries the expected id, is a response and has a sane rcode.
//!
//! Two shapes, chosen by the first byte, so the fuzzer does not spend its time guessing
//! the id: the input as a whole reply (its own id expected), or the query's header and
//! question echoed as a response with fuzzed section counts, followed by fuzzed records
//! (exercises the full parse of answers, authority and additional sections).
#![no_main]

use cove_dns::validate_reply;
use cove_dns::wire::parse_query;
use libfuzzer_sys::fuzz_target;

const QUERY: &[u8] =
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ext\x07example\x00\x00\x01\x00\x01";

fuzz_target!(|data: &[u8]| {
    let q = parse_query(QUERY).expect("seed query parses");
    let Some((&mode, rest)) = data.split_first() else { return };
    let (id, reply) = if mode & 1 == 0 {
        let id = rest.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
        (id, rest.to_vec())
    } else {
        // Header flags and the answer/authority/additional counts from the input.
        let mut r = QUERY.to_vec();
        r[2] = 0x81 | (rest.first().copied().unwrap_or(0) & 0x7e);
        r[3] = rest.get(1).copied().unwrap_or(0x80);
        for (i, b) in rest.iter().skip(2).take(6).enumerate() {
            r[6 + i] = *b & if i % 2 == 0 { 0 } else { 0x0f };
        }
        r.extend_from_slice(rest.get(8..).unwrap_or(&[]));
        (0x1234, r)
    };
    if let Ok(rc) = validate_reply(&q, id, &reply) {
        assert_eq!(u16::from_be_bytes([reply[0], reply[1]]), id);
        assert!(reply[2] & 0x80 != 0);
        assert!(rc < 16);
    }
});
