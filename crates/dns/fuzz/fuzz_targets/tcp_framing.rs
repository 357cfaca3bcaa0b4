//! FZ-3: the TCP framer driven by an arbitrary sequence of partial reads. Oracles: no
//! panic, no busy loop (frames never exceed the bytes pushed), buffered bytes bounded.
#![no_main]

use cove_dns::{Frame, Framer};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
enum Op {
    Push(Vec<u8>),
    Drain,
}

fuzz_target!(|ops: Vec<Op>| {
    let mut f = Framer::new();
    let (mut pushed, mut framed) = (0usize, 0usize);
    for op in ops {
        match op {
            Op::Push(b) => {
                pushed += b.len();
                f.push(&b);
            }
            Op::Drain => {
                let mut turns = 0;
                loop {
                    turns += 1;
                    assert!(turns <= pushed + 1, "framer looped without consuming input");
                    match f.next_frame() {
                        Frame::Message(m) => framed += m.len() + 2,
                        Frame::Incomplete => break,
                        Frame::Invalid => return,
                    }
                }
            }
        }
        assert!(framed <= pushed);
        assert_eq!(f.pending(), pushed - framed);
    }
});
