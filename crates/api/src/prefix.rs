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
