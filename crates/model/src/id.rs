//! Object identifiers: 64 lowercase hex characters, as Docker's.

use rand::RngCore;

/// A new random 64-hex-character identifier (256 bits), as Docker generates.
pub fn new_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// The 12-character short form Docker prints.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Lowercase hex encoding.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether `s` could be a full id or an id prefix (non-empty lowercase hex, at most 64).
pub fn looks_like_id_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Validate an object name the way Docker does for containers: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_name(kind: &str, name: &str) -> crate::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(format!(
            "invalid {kind} name \"{name}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed (at most 128 characters)"
        )))
    }
}

/// Resolve `reference` (a name, a full id or a unique id prefix) among `(id, name)` pairs,
/// with Docker's precedence: full id, then exact name, then unique id prefix.
pub fn resolve<'a, I>(kind: &str, reference: &str, objects: I) -> crate::Result<String>
where
    I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
{
    if let Some((id, _)) = objects.clone().into_iter().find(|(id, _)| *id == reference) {
        return Ok(id.to_string());
    }
    if let Some((id, _)) = objects.clone().into_iter().find(|(_, name)| *name == reference) {
        return Ok(id.to_string());
    }
    if looks_like_id_prefix(reference) {
        let mut matches = objects.into_iter().filter(|(id, _)| id.starts_with(reference));
        if let Some((id, _)) = matches.next() {
            if matches.next().is_some() {
                return Err(crate::Error::invalid(format!(
                    "{kind} {reference} is ambiguous: more than one {kind} has an id starting with it"
                )));
            }
            return Ok(id.to_string());
        }
    }
    Err(crate::Error::not_found(format!("{kind} {reference} not found")))
}

/// Typed identifiers of the CNM's objects. Each is 64 lowercase hex characters, checked
/// once where it enters (a new id, a stored record); past that point a `NetworkId` cannot
/// be passed where a `ContainerId` is meant. They read as `&str` (`Deref`, `Borrow<str>`),
/// so maps keyed by them are looked up with a plain string.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new random id.
            pub fn random() -> Self {
                Self(new_id())
            }

            /// Parse a full id: exactly 64 lowercase hex characters.
            pub fn parse(s: &str) -> crate::Result<Self> {
                if s.len() == 64 && looks_like_id_prefix(s) {
                    Ok(Self(s.to_string()))
                } else {
                    Err(crate::Error::invalid(format!(
                        "invalid {} id \"{s}\": want 64 lowercase hex characters",
                        $kind
                    )))
                }
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The 12-character short form Docker prints.
            pub fn short(&self) -> &str {
                short_id(&self.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> crate::Result<Self> {
                Self::parse(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(|e| serde::de::Error::custom(e.message))
            }
        }
    };
}

id_type!(
    /// A network's id.
    NetworkId,
    "network"
);
id_type!(
    /// A container's id (its sandbox's too: one sandbox per container).
    ContainerId,
    "container"
);
id_type!(
    /// An endpoint's id.
    EndpointId,
    "endpoint"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_distinct() {
        let a = new_id();
        let b = new_id();
        assert_eq!(a.len(), 64);
        assert!(looks_like_id_prefix(&a));
        assert_ne!(a, b);
        assert_eq!(short_id(&a).len(), 12);
    }

    #[test]
    fn resolve_prefers_full_id_then_name_then_prefix() {
        let objs = [("abc123", "web"), ("abd456", "abc123x"), ("ff00", "abc")];
        assert_eq!(resolve("network", "abc123", objs).unwrap(), "abc123");
        assert_eq!(resolve("network", "abc", objs).unwrap(), "ff00");
        assert_eq!(resolve("network", "abd", objs).unwrap(), "abd456");
        let e = resolve("network", "ab", objs).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::InvalidInput);
        let e = resolve("network", "nope", objs).unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::NotFound);
        assert_eq!(e.message, "network nope not found");
    }

    #[test]
    fn names_follow_docker_rules() {
        assert!(validate_name("container", "web-1.a_b").is_ok());
        for bad in ["", "-x", "a b", "a/b", "..", "é"] {
            assert!(validate_name("container", bad).is_err(), "{bad}");
        }
    }
}
