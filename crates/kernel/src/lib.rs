//! Kernel effects: network namespaces, netlink, sysctl
#![warn(missing_docs)]
