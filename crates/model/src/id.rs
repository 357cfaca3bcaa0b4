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
