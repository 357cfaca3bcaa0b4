//! The pure core of Cove's kernel plans: the operations the executor runs ([`op`]), the
//! host namespace's objects as desired and as observed ([`host`]), and the difference
//! between them as ordered operations ([`host::diff`]). No I/O.
//!
//! Network create, network remove and reconciliation (at start, on a timer) all go through
//! the diff; rollback runs the inverses ([`Op::inverse`]) of what was applied.
#![warn(missing_docs)]

pub mod host;
pub mod op;

pub use host::{diff, HostState, Link, LinkKind};
pub use op::{Netns, Op, OWNED_LINK_GROUP, RETIRED_LINK_GROUP};
