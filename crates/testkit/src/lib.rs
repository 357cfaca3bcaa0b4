//! Netlab: fake hosts in namespaces, probes and leak audits for Cove tests.
//!
//! Every privileged test runs against a [`FakeHost`]: its own network and mount namespace
//! (state on a private tmpfs, its own `/sys` and `/run`), the daemon under test started
//! inside it, and neighbours ([`Neighbour`]) wired to it by veth pairs on documentation
//! addresses (198.51.100.0/24 LAN, 203.0.113.0/24 outside, 2001:db8::/32). Nothing touches
//! the real host's links, routes, sysctls, firewall or mounts, and all test traffic stays in
//! these namespaces. Dropping a fake host kills everything that ran in it and removes its
//! temp dir; processes die with the test process; debris of crashed runs is removed by the
//! next run ([`cleanup_strays`]).
//!
//! ```no_run
//! use cove_testkit::{require_root, FakeHost};
//! # use std::path::Path;
//! require_root();
//! let mut host = FakeHost::new("net_create", Path::new("/path/to/cove"));
//! host.start_daemon(&[]);
//! let baseline = host.snapshot();
//! host.cove(&["network", "create", "n1"]).ok();
//! host.cove(&["network", "rm", "n1"]).ok();
//! host.assert_no_leaks(&baseline);
//! ```
//!
//! Environment: `COVE_BIN` (for [`FakeHost::from_env`]), `COVE_NETLAB_TIMEOUT` (seconds per
//! command, default 120), `COVE_NETLAB_KEEP` (keep temp dirs after drop, for debugging).
#![warn(missing_docs)]

mod audit;
mod cgroups;
mod daemon;
mod env;
mod etcd;
pub use etcd::{Etcd, EtcdCerts};
mod holder;
mod host;
mod http;
mod image;
mod neighbour;
mod netlab;
mod procs;
mod prometheus;
pub use prometheus::{promtool_check_metrics, Prometheus};
mod run;
mod snapshot;
mod strays;

pub use env::{current_test_name, have_command, print_skip, probe_link_kind, require_root};
pub use host::FakeHost;
pub use image::{busybox_rootfs_tar, BUSYBOX};
pub use neighbour::Neighbour;
pub use netlab::{Attach, FrameCounter, Frames, Netlab, NetlabSnapshot, Node};
pub use procs::ns_inode;
pub use run::CmdResult;
pub use snapshot::Snapshot;
pub use strays::cleanup_strays;

/// Skip the current test: print `SKIPPED: <test>: <reason>` to stderr and `return` from
/// the enclosing function (which must return `()`). The reason takes `format!` arguments.
///
/// ```no_run
/// # fn t() {
/// if !cove_testkit::probe_link_kind("ipvlan") {
///     cove_testkit::skip!("ipvlan links are not available on this kernel");
/// }
/// # }
/// ```
#[macro_export]
macro_rules! skip {
    ($($reason:tt)+) => {{
        fn __netlab_here() {}
        let __path = ::std::any::type_name_of_val(&__netlab_here);
        let __path = __path.strip_suffix("::__netlab_here").unwrap_or(__path);
        $crate::print_skip(&$crate::current_test_name(__path), &::std::format!($($reason)+));
        return;
    }};
}

/// `skip!(reason)` unless `cond` holds.
///
/// ```no_run
/// # fn t() {
/// cove_testkit::skip_unless!(cove_testkit::probe_link_kind("macvlan"), "no macvlan");
/// # }
/// ```
#[macro_export]
macro_rules! skip_unless {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            $crate::skip!($($reason)+);
        }
    };
}
