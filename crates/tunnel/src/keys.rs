// SPDX-License-Identifier: Apache-2.0
//! Static X25519 keys: generation, `wg`'s text form (base64), and the key file (mode 0600).

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use boringtun::x25519;

use crate::error::TunnelError;

/// A node's static private key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct PrivateKey(x25519::StaticSecret);

/// A static public key, printed and parsed in `wg`'s form (44 characters of base64).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

impl PrivateKey {
    /// A fresh key from the kernel's random source (`getrandom(2)`), clamped as `wg genkey`
    /// does, so `wg pubkey` reads it unchanged.
    pub fn generate() -> Result<PrivateKey, TunnelError> {
        let mut bytes = [0u8; 32];
        let mut filled = 0;
        while filled < bytes.len() {
            // SAFETY: the pointer and length describe the unfilled tail of `bytes`, which
            // lives for the whole call; flags 0 blocks until the pool is initialised.
            let n = unsafe {
                libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(TunnelError::Random(e));
            }
            filled += n as usize;
        }
        Ok(PrivateKey::from_bytes(clamp(bytes)))
    }

    /// The key with these 32 bytes (as `wg` stores them).
    pub fn from_bytes(bytes: [u8; 32]) -> PrivateKey {
        PrivateKey(x25519::StaticSecret::from(bytes))
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519::PublicKey::from(&self.0).to_bytes())
    }

    /// `wg`'s text form of the private key (what `wg genkey` prints).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.to_bytes())
    }

    /// Parse `wg`'s text form (surrounding whitespace allowed, as in a key file).
    pub fn from_base64(text: &str) -> Result<PrivateKey, TunnelError> {
        decode32(text).map(PrivateKey::from_bytes)
    }

    /// Read a key file written by [`PrivateKey::save`] or `wg genkey > file`. Refuses a file
    /// that its group or others may read or write: a key that leaked is no key.
    pub fn load(path: &Path) -> Result<PrivateKey, TunnelError> {
        let io = |source| TunnelError::KeyFile { path: path.to_owned(), source };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TunnelError::KeyFileMode { path: path.to_owned(), mode });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        PrivateKey::from_base64(&text).map_err(|_| TunnelError::KeyFileContent(path.to_owned()))
    }

    /// Write the key to `path` with mode 0600, atomically: a temporary file in the same
    /// directory, synced, then renamed over `path`.
    pub fn save(&self, path: &Path) -> Result<(), TunnelError> {
        let io = |source| TunnelError::KeyFile { path: path.to_owned(), source };
        let name = path.file_name().ok_or_else(|| io(std::io::ErrorKind::InvalidInput.into()))?;
        let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
        let _ = std::fs::remove_file(&tmp);
        let write = || -> std::io::Result<()> {
            let mut f =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            // The umask cannot widen 0600, but a pre-set ACL default could: say it again.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            writeln!(f, "{}", self.to_base64())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }

    pub(crate) fn secret(&self) -> &x25519::StaticSecret {
        &self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_key())
    }
}

impl PublicKey {
    /// `wg`'s text form (what `wg pubkey` prints and `wg set ... peer` takes).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub(crate) fn x25519(&self) -> x25519::PublicKey {
        x25519::PublicKey::from(self.0)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = TunnelError;

    fn from_str(s: &str) -> Result<PublicKey, TunnelError> {
        decode32(s).map(PublicKey)
    }
}

/// Curve25519 clamping (RFC 7748 §5), as `wg genkey` applies it before printing.
fn clamp(mut k: [u8; 32]) -> [u8; 32] {
    k[0] &= 248;
    k[31] &= 127;
    k[31] |= 64;
    k
}

fn decode32(text: &str) -> Result<[u8; 32], TunnelError> {
    let text = text.trim();
    let bad = || TunnelError::KeyEncoding(text.chars().take(8).collect());
    let bytes = STANDARD.decode(text).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7748 §6.1: Alice's private and public key.
    #[test]
    fn public_key_matches_the_rfc_vector() {
        let hex = |s: &str| -> [u8; 32] {
            let v: Vec<u8> =
                (0..64).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
            v.try_into().unwrap()
        };
        let k = PrivateKey::from_bytes(hex(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            k.public_key().0,
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
    }

    #[test]
    fn base64_round_trips_in_wg_form() {
        let k = PrivateKey::generate().unwrap();
        let text = k.to_base64();
        assert_eq!(text.len(), 44);
        assert!(text.ends_with('='));
        assert_eq!(
            PrivateKey::from_base64(&format!(" {text}\n")).unwrap().to_bytes(),
            k.to_bytes()
        );
        let p = k.public_key();
        assert_eq!(p.to_string().parse::<PublicKey>().unwrap(), p);
        assert!("abc".parse::<PublicKey>().is_err());
        // 33 bytes of base64 is no key either.
        assert!(STANDARD.encode([0u8; 33]).parse::<PublicKey>().is_err());
    }

    #[test]
    fn generated_keys_are_clamped_and_distinct() {
        let (a, b) = (PrivateKey::generate().unwrap(), PrivateKey::generate().unwrap());
        assert_ne!(a.to_bytes(), b.to_bytes());
        let k = a.to_bytes();
        assert_eq!(k[0] & 7, 0);
        assert_eq!(k[31] & 0xc0, 0x40);
        assert!(!format!("{a:?}").contains(&a.to_base64()), "Debug hides the key");
    }

    #[test]
    fn save_writes_0600_and_load_refuses_wider_modes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg.key");
        let k = PrivateKey::generate().unwrap();
        k.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(PrivateKey::load(&path).unwrap().to_bytes(), k.to_bytes());
        // Saving again replaces it.
        let k2 = PrivateKey::generate().unwrap();
        k2.save(&path).unwrap();
        assert_eq!(PrivateKey::load(&path).unwrap().to_bytes(), k2.to_bytes());

        for bad in [0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bad)).unwrap();
            let e = PrivateKey::load(&path).unwrap_err();
            assert!(matches!(e, TunnelError::KeyFileMode { mode, .. } if mode == bad), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:o}")) && msg.contains("chmod 600"), "{msg}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(PrivateKey::load(&path).is_ok(), "owner read-only is fine");

        std::fs::write(&path, "not a key\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(PrivateKey::load(&path), Err(TunnelError::KeyFileContent(_))));
        assert!(matches!(
            PrivateKey::load(&dir.path().join("missing")),
            Err(TunnelError::KeyFile { .. })
        ));
    }
}
