// SPDX-License-Identifier: Apache-2.0
//! The crate's errors.

use std::path::PathBuf;

/// What went wrong setting up or configuring a tunnel, or with a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The kernel's random source failed.
    #[error("read random bytes for a key")]
    Random(#[source] std::io::Error),
    /// Text that is not 32 bytes of standard base64 (only its first characters are shown).
    #[error("key {0:?}... is not 32 bytes of base64")]
    KeyEncoding(String),
    /// A key file could not be read or written.
    #[error("key file {}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file that others may read (or write): refused.
    #[error(
        "key file {} has mode {mode:o}: group or others may access it; chmod 600 it (or \
         replace the key: it may have leaked)",
        path.display()
    )]
    KeyFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file without a key in it.
    #[error("key file {} holds no base64 key of 32 bytes", .0.display())]
    KeyFileContent(PathBuf),
    /// The configuration is unusable (names the problem).
    #[error("invalid tunnel configuration: {0}")]
    Config(String),
    /// The network namespace could not be entered.
    #[error("enter network namespace {}", path.display())]
    Netns {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `/dev/net/tun` could not be opened or the device not created.
    #[error("create TUN device {ifname} (/dev/net/tun)")]
    Tun {
        /// The device name asked for.
        ifname: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Configuring the TUN device (MTU, address, up) over netlink failed.
    #[error("configure TUN device {ifname}: {what}")]
    Link {
        /// The device.
        ifname: String,
        /// The step that failed.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The UDP socket could not be bound.
    #[error("bind UDP socket {addr}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A worker thread could not be started.
    #[error("start tunnel thread {name}")]
    Thread {
        /// The thread's name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
