//! JSON in and out: the request-body extractor (400 with a message naming the problem,
//! never axum's plain-text rejection), the error body; the request bodies and the serde
//! helpers for Docker's loosely typed fields are in `cove-wire`.

use axum::body::{Body, Bytes};
use std::collections::HashMap;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ApiError;

/// A JSON response with `status`.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Err(e) => {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, &format!("encode response: {e}"))
        }
    }
}

/// A 200 JSON response.
pub(crate) fn ok<T: Serialize>(value: &T) -> Response {
    json_response(StatusCode::OK, value)
}

/// Docker's error body: `{"message": "..."}`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "message": message });
    let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
    bytes.push(b'\n');
    (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

/// Read a whole request body, at most `limit` bytes (413 beyond).
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(e) => Err(ApiError::bad_request(format!("error reading request body: {e}"))),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {} MiB", limit >> 20),
    )
}

/// Refuse a declared `Content-Length` over `limit` before reading anything.
pub(crate) fn check_length(req: &Request, limit: usize) -> Result<(), ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(too_large(limit)),
        _ => Ok(()),
    }
}

/// Docker accepts a missing `Content-Type` or `application/json` (with parameters).
fn check_content_type(req: &Request) -> Result<(), ApiError> {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE) else { return Ok(()) };
    let ct = ct.to_str().unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.is_empty() || mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        )))
    }
}

/// Decode Docker's JSON: unknown fields are tolerated, wrong types are errors naming the
/// field path (`HostConfig.PortBindings`).
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every Docker request body is one JSON object: serde would also take an array as the
    // fields in order, which no client means.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::bad_request("invalid JSON: the request body must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let result = serde_path_to_error::deserialize::<_, T>(&mut *de);
    // Anything after the object (a second document, trailing garbage) is refused.
    if result.is_ok() {
        if let Err(e) = de.end() {
            return Err(ApiError::bad_request(format!("invalid JSON: {e}")));
        }
    }
    match result {
        Ok(v) => Ok(v),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let data_error = inner.classify() == serde_json::error::Category::Data;
            let msg = if !data_error || path.is_empty() || path == "." || path == "?" {
                format!("invalid JSON: {inner}")
            } else {
                format!("invalid JSON at {path}: {inner}")
            };
            Err(ApiError::bad_request(msg))
        }
    }
}

/// A required JSON request body (`400` when empty or malformed, `413` over 16 MiB).
#[derive(Debug)]
pub(crate) struct DockerJson<T>(pub T);

/// An optional JSON request body: an empty body decodes as `T::default()`.
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub T);

async fn body_bytes(req: Request) -> Result<Bytes, ApiError> {
    check_content_type(&req)?;
    check_length(&req, crate::JSON_LIMIT)?;
    read_body(req.into_body(), crate::JSON_LIMIT).await
}

fn is_blank(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_whitespace())
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for DockerJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req).await?;
        if is_blank(&bytes) {
            return Err(ApiError::bad_request("invalid JSON: the request body is empty"));
        }
        decode(&bytes).map(DockerJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req).await?;
        if is_blank(&bytes) || &bytes[..] == b"null" {
            return Ok(OptionalJson(T::default()));
        }
        decode(&bytes).map(OptionalJson)
    }
}

/// The query string as a map (last value wins); never axum's plain-text rejection.
#[derive(Debug, Default)]
pub(crate) struct Params(pub HashMap<String, String>);

impl Params {
    /// A value.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    /// A Docker boolean (absent: false).
    pub(crate) fn flag(&self, key: &str) -> bool {
        qbool(self.get(key))
    }
    /// An integer value, 400 when it is not one.
    pub(crate) fn int<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for query parameter {key}: {v:?} is not an integer"
                ))
            }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {}", e.body_text())))
    }
}

/// The `{id}` path segment (percent-decoded), with a JSON rejection.
#[derive(Debug)]
pub(crate) struct Id(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| Id(p.0))
            .map_err(|e| ApiError::bad_request(format!("invalid path: {}", e.body_text())))
    }
}

/// Docker's query booleans: anything but "", "0", "no", "false", "none" is true.
pub(crate) fn qbool(v: Option<&str>) -> bool {
    match v {
        None => false,
        Some(v) => {
            !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "no" | "false" | "none")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cove_wire::de::{nullable, str_or_vec};
    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Probe {
        #[serde(default, deserialize_with = "nullable")]
        name: String,
        #[serde(default, deserialize_with = "str_or_vec")]
        cmd: Option<Vec<String>>,
        #[serde(default)]
        inner: Inner,
    }
    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "PascalCase")]
    struct Inner {
        #[serde(default)]
        tty: bool,
    }

    #[test]
    fn decodes_docker_shapes() {
        let p: Probe = decode(br#"{"Name":null,"Cmd":"echo hi","Unknown":[1,2]}"#).unwrap();
        assert_eq!(p.name, "");
        assert_eq!(p.cmd, Some(vec!["echo hi".to_string()]));
        let p: Probe = decode(br#"{"Cmd":["a","b"]}"#).unwrap();
        assert_eq!(p.cmd, Some(vec!["a".to_string(), "b".to_string()]));
        let p: Probe = decode(br#"{"Cmd":null}"#).unwrap();
        assert_eq!(p.cmd, None);
    }

    #[test]
    fn trailing_content_and_arrays_are_refused() {
        for bad in [&b"{} trailing"[..], br#"{"Name":"a"}{"Name":"b"}"#, br#"["a"]"#] {
            let e = decode::<Probe>(bad).unwrap_err();
            assert!(format!("{e:?}").contains("JSON"), "{e:?}");
        }
        assert!(decode::<Probe>(b" {} \n").is_ok());
    }

    #[test]
    fn bad_types_name_the_field() {
        let e = decode::<Probe>(br#"{"Inner":{"Tty":"yes"}}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("Inner.Tty"), "{}", e.message);
        assert!(e.message.contains("invalid type"), "{}", e.message);
        let e = decode::<Probe>(br#"{"Cmd":5}"#).unwrap_err();
        assert!(
            e.message.contains("Cmd") && e.message.contains("string or a list"),
            "{}",
            e.message
        );
        let e = decode::<Probe>(b"{not json").unwrap_err();
        assert!(e.message.starts_with("invalid JSON: key must be a string"), "{}", e.message);
        let e = decode::<Probe>(br#"{"Name":"x","#).unwrap_err();
        assert!(e.message.starts_with("invalid JSON: EOF"), "{}", e.message);
    }

    #[tokio::test]
    async fn extractor_checks_content_type_and_emptiness() {
        let req = |ct: Option<&str>, body: &'static str| {
            let mut b = Request::builder().method("POST").uri("/x");
            if let Some(ct) = ct {
                b = b.header("content-type", ct);
            }
            b.body(Body::from(body)).unwrap()
        };
        let ok = DockerJson::<Probe>::from_request(req(Some("application/json"), "{}"), &()).await;
        assert!(ok.is_ok());
        let ok = DockerJson::<Probe>::from_request(req(None, r#"{"Name":"x"}"#), &()).await;
        assert_eq!(ok.unwrap().0.name, "x");
        let e = DockerJson::<Probe>::from_request(req(Some("text/plain"), "{}"), &())
            .await
            .unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("Content-Type"), "{}", e.message);
        let e = DockerJson::<Probe>::from_request(req(None, ""), &()).await.unwrap_err();
        assert!(e.message.contains("empty"), "{}", e.message);
        let d = OptionalJson::<Probe>::from_request(req(None, ""), &()).await.unwrap();
        assert_eq!(d.0, Probe::default());
    }

    #[tokio::test]
    async fn body_limit_is_413() {
        let e = read_body(Body::from(vec![b' '; 64]), 16).await.unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let r =
            Request::builder().header("content-length", "99999999999").body(Body::empty()).unwrap();
        assert_eq!(check_length(&r, 16).unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn query_bools() {
        for t in ["1", "true", "True", "yes", "x"] {
            assert!(qbool(Some(t)), "{t}");
        }
        for f in ["", "0", "false", "no", "none", "FALSE"] {
            assert!(!qbool(Some(f)), "{f}");
        }
        assert!(!qbool(None));
    }
}
