//! Pure IPAM: address pools, subnet choice, address allocation
#![warn(missing_docs)]
