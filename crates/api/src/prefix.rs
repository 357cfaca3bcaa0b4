//! Docker clients prefix every path with the API version (`/v1.50/networks`). Routes are
//! declared without it; the prefix is stripped before routing (a `Router::layer` middleware
//! runs after routing and cannot do this).

use axum::extract::Request;
use axum::http::uri::{PathAndQuery, Uri};

/// Strip a leading `/vX.Y` (or `/vX`) segment from the request path, keeping the query.
pub fn strip_version(mut req: Request) -> Request {
    if let Some(rest) = version_rest(req.uri().path()) {
        let rest = if rest.is_empty() { "/" } else { rest };
        let pq = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        if let Ok(pq) = PathAndQuery::try_from(pq) {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Docker's check of the version a client asks for: 400 below [`crate::MIN_API_VERSION`]
/// or above [`crate::API_VERSION`], with dockerd's messages. `None` when the path has no
/// version prefix or the version is served.
pub(crate) fn version_error(path: &str) -> Option<String> {
    let rest = version_rest(path)?;
    let version = &path[2..path.len() - rest.len()];
    let parse = |v: &str| -> (u32, u32) {
        let mut p = v.split('.').map(|x| x.parse::<u32>().unwrap_or(u32::MAX));
        (p.next().unwrap_or(0), p.next().unwrap_or(0))
    };
    let (asked, min, max) =
        (parse(version), parse(crate::MIN_API_VERSION), parse(crate::API_VERSION));
    if asked < min {
        Some(format!(
            "client version {version} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
            crate::MIN_API_VERSION
        ))
    } else if asked > max {
        Some(format!(
            "client version {version} is too new. Maximum supported API version is {}",
            crate::API_VERSION
        ))
    } else {
        None
    }
}

/// The path after a `/vN[.N]` first segment, or None when there is none.
fn version_rest(path: &str) -> Option<&str> {
    let after = path.strip_prefix("/v")?;
    let end = after.find('/').unwrap_or(after.len());
    let (version, rest) = after.split_at(end);
    let mut parts = version.split('.');
    let valid = version.split('.').count() <= 2
        && parts.all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    valid.then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(uri: &str) -> String {
        let req = Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap();
        strip_version(req).uri().to_string()
    }

    #[test]
    fn strips_version_prefixes() {
        assert_eq!(strip("/v1.41/networks"), "/networks");
        assert_eq!(strip("/v1.50/networks/abc/connect"), "/networks/abc/connect");
        assert_eq!(
            strip("/v1.50/networks?filters=%7B%22name%22%3A%7B%22x%22%3Atrue%7D%7D"),
            "/networks?filters=%7B%22name%22%3A%7B%22x%22%3Atrue%7D%7D"
        );
        assert_eq!(strip("/v1/_ping"), "/_ping");
        assert_eq!(strip("/v1.24"), "/");
    }

    #[test]
    fn versions_outside_the_range_are_refused() {
        assert_eq!(version_error("/v1.41/networks"), None);
        assert_eq!(version_error("/v1.50/_ping"), None);
        assert_eq!(version_error("/v1.45"), None);
        assert_eq!(version_error("/networks"), None);
        let old = version_error("/v1.40/networks").unwrap();
        assert!(
            old.starts_with(
                "client version 1.40 is too old. Minimum supported API version is 1.41"
            ),
            "{old}"
        );
        let new = version_error("/v1.51/networks").unwrap();
        assert_eq!(new, "client version 1.51 is too new. Maximum supported API version is 1.50");
        assert!(version_error("/v2.0/x").is_some());
        assert!(version_error("/v1/_ping").is_some());
        assert!(version_error("/v1.99999999999/x").is_some());
    }

    #[test]
    fn leaves_other_paths_alone() {
        for p in [
            "/networks",
            "/_ping",
            "/version",
            "/v1.x/networks",
            "/vx/networks",
            "/v/x",
            "/v1.2.3/x",
        ] {
            assert_eq!(strip(p), p);
        }
        // A path that only looks versioned in a later segment.
        assert_eq!(strip("/images/v1.2/json"), "/images/v1.2/json");
    }
}
