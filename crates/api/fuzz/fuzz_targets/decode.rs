//! Every request body the API decodes, from arbitrary bytes: no panic, and every refusal is
//! a 4xx with a message (`cove_api::fuzz_decode` asserts it).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    cove_api::fuzz_decode(data);
});
