//! Docker's JSON shapes of Cove's records: typed structs whose field names are Docker's.

pub mod container;
pub mod container_inspect;
pub mod image;
pub mod network;
pub mod time;

#[cfg(test)]
mod tests;
