//! Netlab: fake hosts in namespaces, probes and leak audits for Cove tests
#![warn(missing_docs)]
