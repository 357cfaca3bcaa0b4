//! Kernel operations and the host diff, from `cove-plan` (kept at this path for the
//! executor and the benches).

pub use cove_plan::*;
