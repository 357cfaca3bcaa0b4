//! One error type with a kind; the API maps the kind to an HTTP status in one place.

use std::fmt;

/// What went wrong, in the terms a client can act on. The API layer turns this into an
/// HTTP status (see `cove-api`), so every crate speaks the same language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or names an impossible configuration (HTTP 400).
    InvalidInput,
    /// The object named does not exist (HTTP 404).
    NotFound,
    /// The request clashes with existing state: duplicate name, address in use (HTTP 409).
    Conflict,
    /// The operation is not allowed on this object, e.g. removing a built-in network (HTTP 403).
    Forbidden,
    /// A dependency (kernel, store, runtime) is unavailable right now (HTTP 503).
    Unavailable,
    /// The feature is not implemented (HTTP 501).
    NotImplemented,
    /// A bug or an unexpected kernel/store failure (HTTP 500).
    Internal,
}

/// An error with a kind and a message that names the object and the problem.
///
/// Messages are lowercase with no trailing period, as Docker's are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    /// The error's kind, mapped to an HTTP status by the API.
    pub kind: ErrorKind,
    /// Human-readable message naming the object and the problem.
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Shorthand result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
    /// A 400-class error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// A 404-class error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// A 409-class error.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// A 403-class error.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    /// A 503-class error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// A 501-class error.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotImplemented, message)
    }
    /// A 500-class error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// Prefix the message with context, keeping the kind.
    pub fn context(self, what: impl fmt::Display) -> Self {
        Self { kind: self.kind, message: format!("{what}: {}", self.message) }
    }
}
