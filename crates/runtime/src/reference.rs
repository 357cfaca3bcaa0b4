//! Image references: `name[:tag]`, normalized to `name:tag` the way Docker shows them
//! (`busybox` -> `busybox:latest`, `docker.io/library/busybox` -> `busybox:latest`).

use cove_model::Error;

/// The default tag.
pub(crate) const DEFAULT_TAG: &str = "latest";

fn invalid(why: &str) -> Error {
    if why.is_empty() {
        Error::invalid("invalid reference format")
    } else {
        Error::invalid(format!("invalid reference format: {why}"))
    }
}

/// Normalize `reference` to `name:tag`, or say why it is not a valid reference.
pub(crate) fn normalize(reference: &str) -> Result<String, Error> {
    if reference.contains('@') {
        return Err(invalid("digest references are not supported"));
    }
    let (name, tag) = split_tag(reference);
    let tag = tag.unwrap_or(DEFAULT_TAG);
    validate_tag(tag)?;
    let name = strip_default_registry(name);
    validate_name(name)?;
    Ok(format!("{name}:{tag}"))
}

/// Split `name[:tag]`: the tag is after the last `:` that follows the last `/`
/// (so `localhost:5000/x` has no tag).
fn split_tag(reference: &str) -> (&str, Option<&str>) {
    let slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[slash..].rfind(':') {
        Some(i) => (&reference[..slash + i], Some(&reference[slash + i + 1..])),
        None => (reference, None),
    }
}

fn strip_default_registry(name: &str) -> &str {
    for prefix in ["docker.io/library/", "index.docker.io/library/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            if !rest.contains('/') {
                return rest;
            }
        }
    }
    for prefix in ["docker.io/", "index.docker.io/"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return rest.strip_prefix("library/").unwrap_or(rest);
        }
    }
    name
}

fn validate_tag(tag: &str) -> Result<(), Error> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(""))
    }
}

fn validate_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > 255 {
        return Err(invalid(""));
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    // A first component with a dot or a port, or "localhost", is a registry host.
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            validate_host(first)?;
            parts.remove(0);
        }
    }
    for part in parts {
        validate_component(part)?;
    }
    Ok(())
}

fn validate_host(host: &str) -> Result<(), Error> {
    let (h, port) = match host.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (host, None),
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(invalid(""));
        }
    }
    let ok = !h.is_empty()
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(""))
    }
}

/// A path component: lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn validate_component(part: &str) -> Result<(), Error> {
    if part.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid("repository name must be lowercase"));
    }
    let b = part.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(invalid(""));
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            i += 1;
            continue;
        }
        // A separator run.
        let start = i;
        while i < b.len() && !(b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        let sep = &part[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return Err(invalid(""));
        }
    }
    Ok(())
}

/// Whether `s` could be (a prefix of) an image id: 1..=64 lowercase hex digits.
pub(crate) fn is_hex_prefix(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(normalize("busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize("busybox:1.36").unwrap(), "busybox:1.36");
        assert_eq!(normalize("docker.io/library/busybox").unwrap(), "busybox:latest");
        assert_eq!(normalize("docker.io/acme/app:v1").unwrap(), "acme/app:v1");
        assert_eq!(normalize("localhost:5000/app").unwrap(), "localhost:5000/app:latest");
        assert_eq!(normalize("registry.example.com/a/b:c").unwrap(), "registry.example.com/a/b:c");
        assert_eq!(
            normalize("my_app.x-y__z---w:TAG_1.0-rc").unwrap(),
            "my_app.x-y__z---w:TAG_1.0-rc"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            ":tag",
            "busybox:",
            "a//b",
            "-a",
            "a-",
            "a___b",
            "a:b:c",
            "a@sha256:00",
            "a b",
            "a:.x",
            "a/..",
            "a/./b",
        ] {
            assert!(normalize(bad).is_err(), "{bad:?}");
        }
        let e = normalize("BusyBox").unwrap_err();
        assert_eq!(e.message, "invalid reference format: repository name must be lowercase");
    }

    #[test]
    fn hex_prefixes() {
        assert!(is_hex_prefix("a"));
        assert!(is_hex_prefix("0123456789abcdef"));
        assert!(!is_hex_prefix(""));
        assert!(!is_hex_prefix("abcg"));
        assert!(!is_hex_prefix("ABC"));
        assert!(!is_hex_prefix(&"a".repeat(65)));
    }
}
