//! Docker Engine API routes over the controller; error kind to HTTP status
#![warn(missing_docs)]
