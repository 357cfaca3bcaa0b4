//! Container runtime: images, OCI bundles, runc, logs, exec
#![warn(missing_docs)]
