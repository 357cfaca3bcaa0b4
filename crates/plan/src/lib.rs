//! The pure core of Cove's kernel plans: the operations the executor runs ([`op`]), the
//! host namespace's objects as desired and as observed ([`host`]), and the difference
//! between them as ordered operations ([`diff()`]). No I/O.
//!
//! Network create, network remove and reconciliation (at start, on a timer) all go through
//! the diff; rollback runs the inverses ([`Op::inverse`]) of what was applied.
#![warn(missing_docs)]

mod diff;
pub mod host;
pub mod op;

pub use diff::diff;
pub use host::{kernel_fdb_mac, HostState, Link, LinkKind, Vxlan};
pub use op::{Netns, Op, PortFlags, BLACKHOLE_METRIC, OWNED_LINK_GROUP, RETIRED_LINK_GROUP};
