//! FZ-2: arbitrary bytes as an upstream reply to a fixed outstanding query. Oracles: no
//! panic; anything accepted carries the query's id and is a response.
#![no_main]

use cove_dns::validate_reply;
use cove_dns::wire::parse_query;
use libfuzzer_sys::fuzz_target;

const QUERY: &[u8] = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03ext\x07example\x00\x00\x01\x00\x01";

fuzz_target!(|data: &[u8]| {
    let q = parse_query(QUERY).expect("seed query parses");
    if validate_reply(&q, 0x1234, data).is_ok() {
        assert_eq!(&data[..2], &[0x12, 0x34]);
        assert!(data[2] & 0x80 != 0);
    }
});
