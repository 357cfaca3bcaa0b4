//! Errors of kernel operations: what was being done, and why the kernel said no.

use std::io;
use std::path::PathBuf;

use cove_model::ErrorKind;

/// Why a kernel operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Cause {
    /// The kernel refused: a netlink error reply or a failed system call.
    #[error(transparent)]
    Os(#[from] io::Error),
    /// The link an operation names does not exist.
    #[error("link {0} not found")]
    NoSuchLink(String),
    /// The network namespace path does not exist.
    #[error("network namespace {} does not exist", .0.display())]
    NoSuchNetns(PathBuf),
    /// The path exists but is not a network namespace (a stale file, not an nsfs mount).
    #[error("{} is not a network namespace", .0.display())]
    NotNetns(PathBuf),
    /// The operation itself is malformed (a planner bug), e.g. a sysctl key escaping /proc/sys.
    #[error("invalid operation: {0}")]
    Invalid(String),
    /// Netlink protocol trouble: closed connection, unexpected reply, endlessly interrupted dump.
    #[error("{0}")]
    Protocol(String),
}

impl Cause {
    /// The OS error number behind this cause, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Cause::Os(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// Whether this means "the object is already gone", which teardown counts as done.
    pub fn is_gone(&self) -> bool {
        match self {
            Cause::Os(e) => matches!(
                e.raw_os_error(),
                Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
            ),
            Cause::NoSuchLink(_) | Cause::NoSuchNetns(_) | Cause::NotNetns(_) => true,
            Cause::Invalid(_) | Cause::Protocol(_) => false,
        }
    }

    /// The model's error kind for this cause.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Cause::Os(e) => match e.raw_os_error() {
                Some(libc::EEXIST) => ErrorKind::Conflict,
                Some(libc::ENOENT | libc::ENODEV) => ErrorKind::NotFound,
                _ => ErrorKind::Internal,
            },
            Cause::NoSuchLink(_) | Cause::NoSuchNetns(_) | Cause::NotNetns(_) => {
                ErrorKind::NotFound
            }
            Cause::Invalid(_) | Cause::Protocol(_) => ErrorKind::Internal,
        }
    }
}

impl From<nix::errno::Errno> for Cause {
    fn from(e: nix::errno::Errno) -> Self {
        Cause::Os(io::Error::from_raw_os_error(e as i32))
    }
}

impl From<rtnetlink::Error> for Cause {
    fn from(e: rtnetlink::Error) -> Self {
        match e {
            rtnetlink::Error::NetlinkError(m) => Cause::Os(m.to_io()),
            other => Cause::Protocol(other.to_string()),
        }
    }
}

/// A failed kernel operation: what was being done (usually the [`Op`](cove_drivers::plan::Op)'s
/// Display) and why it failed. Displays as `"<context>: <cause>"`, e.g.
/// `create bridge cove1 mtu 1500: File exists (os error 17)`.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {cause}")]
pub struct KernelError {
    /// What was being done.
    pub context: String,
    /// Why it failed.
    pub cause: Cause,
}

impl KernelError {
    /// An error for `context` failing because of `cause`.
    pub fn new(context: impl Into<String>, cause: impl Into<Cause>) -> Self {
        Self { context: context.into(), cause: cause.into() }
    }

    /// The model's error kind: EEXIST is a conflict, ENOENT/ENODEV (and a missing link or
    /// namespace) is not-found, anything else internal.
    pub fn kind(&self) -> ErrorKind {
        self.cause.kind()
    }

    /// The OS error number behind this error, if there is one.
    pub fn errno(&self) -> Option<i32> {
        self.cause.errno()
    }

    /// Whether the object the operation targets is already gone (ENODEV, ENOENT, ESRCH,
    /// EADDRNOTAVAIL, missing link or namespace).
    pub fn is_gone(&self) -> bool {
        self.cause.is_gone()
    }
}

impl From<KernelError> for cove_model::Error {
    fn from(e: KernelError) -> Self {
        cove_model::Error::new(e.kind(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(errno: i32) -> KernelError {
        KernelError::new("create veth vethab12", io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn kinds_follow_errno() {
        assert_eq!(os(libc::EEXIST).kind(), ErrorKind::Conflict);
        assert_eq!(os(libc::ENOENT).kind(), ErrorKind::NotFound);
        assert_eq!(os(libc::ENODEV).kind(), ErrorKind::NotFound);
        assert_eq!(os(libc::EPERM).kind(), ErrorKind::Internal);
        assert_eq!(
            KernelError::new("x", Cause::NoSuchLink("br0".into())).kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            KernelError::new("x", Cause::Protocol("closed".into())).kind(),
            ErrorKind::Internal
        );
    }

    #[test]
    fn gone_covers_missing_objects_only() {
        for errno in [libc::ENODEV, libc::ENOENT, libc::ESRCH, libc::EADDRNOTAVAIL] {
            assert!(os(errno).is_gone(), "errno {errno}");
        }
        assert!(!os(libc::EEXIST).is_gone());
        assert!(!os(libc::EBUSY).is_gone());
        assert!(KernelError::new("x", Cause::NoSuchNetns("/run/netns/a".into())).is_gone());
    }

    #[test]
    fn model_error_names_the_op() {
        let e: cove_model::Error = os(libc::EEXIST).into();
        assert_eq!(e.kind, ErrorKind::Conflict);
        assert_eq!(e.message, "create veth vethab12: File exists (os error 17)");
    }

    #[test]
    fn netlink_error_reply_keeps_errno() {
        let mut m = netlink_packet_core::ErrorMessage::default();
        m.code = std::num::NonZeroI32::new(-libc::ENODEV);
        let c = Cause::from(rtnetlink::Error::NetlinkError(m));
        assert_eq!(c.errno(), Some(libc::ENODEV));
        assert!(c.is_gone());
    }
}
