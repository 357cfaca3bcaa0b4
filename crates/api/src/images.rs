//! `/images` routes: list, inspect, import (`create?fromSrc=-`), load, remove.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use cove_controller::ImageInfo;
use serde_json::json;

use crate::encode::image;
use crate::filters::{filter_bool, name_matches, Filters};
use crate::json::{check_length, json_response, ok, read_body, Id, Params};
use crate::{ApiError, ApiResult, AppState, IMAGE_LIMIT};

/// `GET /images/json`.
pub(crate) async fn list(State(st): State<AppState>, q: Params) -> ApiResult {
    let f = Filters::parse(q.get("filters"))?;
    f.validate(&["reference", "dangling", "label"])?;
    let dangling = match f.get("dangling").and_then(|v| v.first()) {
        Some(v) => Some(filter_bool("dangling", v)?),
        None => None,
    };
    let images = st.ctl.image_list().await?;
    let out: Vec<_> = images
        .iter()
        .filter(|i| {
            f.any("reference", |r| i.tags.iter().any(|t| reference_matches(r, t)))
                && dangling.is_none_or(|d| d == i.tags.is_empty())
                && f.get("label").is_none()
        })
        .map(image::summary)
        .collect();
    Ok(ok(&out))
}

/// `reference` filter: `name`, `name:tag`, or a pattern with a trailing `*`.
fn reference_matches(pattern: &str, tag: &str) -> bool {
    let (name, _) = split_tag(tag);
    match pattern.strip_suffix('*') {
        Some(prefix) => tag.starts_with(prefix),
        None => pattern == tag || pattern == name || name_matches(&format!("^{pattern}$"), tag),
    }
}

/// `name:tag` split at the tag's colon (not a registry port's).
fn split_tag(r: &str) -> (&str, Option<&str>) {
    let slash = r.rfind('/').map_or(0, |i| i + 1);
    match r[slash..].rfind(':') {
        Some(i) => (&r[..slash + i], Some(&r[slash + i + 1..])),
        None => (r, None),
    }
}

/// A reference with Docker's default tag.
pub(crate) fn normalize(r: &str) -> String {
    match split_tag(r) {
        (_, Some(_)) => r.to_owned(),
        _ if r.contains('@') => r.to_owned(),
        (name, None) => format!("{name}:latest"),
    }
}

/// `GET /images/{name}/json` (the name may contain `/` and `:`).
pub(crate) async fn get_rest(State(st): State<AppState>, Id(rest): Id) -> ApiResult {
    match rest.strip_suffix("/json") {
        Some(name) if !name.is_empty() => Ok(ok(&image::inspect(&st.ctl.image_get(name).await?))),
        _ => Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("route GET /images/{rest} is not supported by cove"),
        )),
    }
}

/// The image a pull (`POST /images/create?fromImage=&tag=`) asks for.
pub(crate) fn pull_reference(q: &Params) -> Option<String> {
    let img = q.get("fromImage").filter(|s| !s.is_empty())?;
    Some(match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if !img.contains('@') => format!("{img}:{t}"),
        _ => img.to_owned(),
    })
}

fn no_pull(reference: &str) -> ApiError {
    ApiError::not_found(format!(
        "No such image: {reference} (cove does not pull from registries; use `cove image load` or `cove image import`)"
    ))
}

/// The reference of `POST /images/create?fromSrc=-&repo=&tag=`.
pub(crate) fn import_reference(q: &Params) -> Result<String, ApiError> {
    if let Some(full) = pull_reference(q) {
        return Err(no_pull(&full));
    }
    match q.get("fromSrc") {
        Some("-") => {}
        Some(src) if !src.is_empty() => {
            return Err(ApiError::bad_request(format!(
                "importing from {src:?} is not supported by cove: send the tarball in the request body (fromSrc=-)"
            )))
        }
        _ => return Err(ApiError::bad_request("one of fromSrc or fromImage is required")),
    }
    let repo = q.get("repo").unwrap_or("").trim();
    Ok(match q.get("tag").map(str::trim).filter(|t| !t.is_empty()) {
        Some(tag) if !repo.is_empty() => format!("{repo}:{tag}"),
        _ => repo.to_owned(),
    })
}

async fn tar_body(req: Request) -> Result<Vec<u8>, ApiError> {
    check_length(&req, IMAGE_LIMIT)?;
    let bytes = read_body(req.into_body(), IMAGE_LIMIT).await?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty: send the image tarball"));
    }
    Ok(bytes.to_vec())
}

/// `POST /images/create`: import a root filesystem tarball from the body. A pull succeeds
/// only when the image is already here (the CLI pulls after any 404 of a container create,
/// then retries the create, which then reports its real error).
pub(crate) async fn create(State(st): State<AppState>, q: Params, req: Request) -> ApiResult {
    if let Some(full) = pull_reference(&q) {
        let info = st.ctl.image_get(&full).await.map_err(|_| no_pull(&full))?;
        let shown = info.tags.first().cloned().unwrap_or(full);
        let mut body =
            json!({ "status": format!("Status: Image is up to date for {shown}") }).to_string();
        body.push('\n');
        let mut r = Response::new(axum::body::Body::from(body));
        r.headers_mut()
            .insert(axum::http::header::CONTENT_TYPE, "application/json".parse().expect("static"));
        return Ok(r);
    }
    let reference = import_reference(&q)?;
    let tar = tar_body(req).await?;
    let info = st.ctl.image_import(tar, &reference).await?;
    Ok(json_response(StatusCode::OK, &json!({ "status": info.id })))
}

/// The JSON-message stream lines of a load.
pub(crate) fn load_lines(images: &[ImageInfo]) -> String {
    let mut out = String::new();
    for i in images {
        let lines: Vec<String> = if i.tags.is_empty() {
            vec![format!("Loaded image ID: {}\n", i.id)]
        } else {
            i.tags.iter().map(|t| format!("Loaded image: {t}\n")).collect()
        };
        for l in lines {
            out.push_str(&json!({ "stream": l }).to_string());
            out.push('\n');
        }
    }
    out
}

/// `POST /images/load`: a `docker save` archive in the body.
pub(crate) async fn load(State(st): State<AppState>, req: Request) -> ApiResult {
    let tar = tar_body(req).await?;
    let images = st.ctl.image_load(tar).await?;
    let mut r = Response::new(axum::body::Body::from(load_lines(&images)));
    r.headers_mut()
        .insert(axum::http::header::CONTENT_TYPE, "application/json".parse().expect("static"));
    Ok(r)
}

/// `[{"Untagged"}, {"Deleted"}]` for a removal of `reference` that returned `info`.
pub(crate) fn remove_report(reference: &str, info: &ImageInfo) -> serde_json::Value {
    let hex = info.id.strip_prefix("sha256:").unwrap_or(&info.id);
    let bare = reference.strip_prefix("sha256:").unwrap_or(reference);
    let by_id =
        bare.len() >= 4 && hex.starts_with(bare) && bare.bytes().all(|b| b.is_ascii_hexdigit());
    let mut out = vec![];
    if by_id {
        out.extend(info.tags.iter().map(|t| json!({ "Untagged": t })));
        out.push(json!({ "Deleted": info.id }));
    } else {
        let r = normalize(reference);
        let left = info.tags.iter().filter(|t| **t != r).count();
        out.push(json!({ "Untagged": r }));
        if left == 0 {
            out.push(json!({ "Deleted": info.id }));
        }
    }
    serde_json::Value::Array(out)
}

/// `DELETE /images/{name}?force=`.
pub(crate) async fn remove(State(st): State<AppState>, Id(name): Id, q: Params) -> ApiResult {
    let info = st.ctl.image_remove(&name, q.flag("force")).await?;
    Ok(ok(&remove_report(&name, &info)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>())
    }

    #[test]
    fn import_references() {
        let r = |p: &[(&str, &str)]| import_reference(&params(p));
        assert_eq!(
            r(&[("fromSrc", "-"), ("repo", "busybox"), ("tag", "1.35")]).unwrap(),
            "busybox:1.35"
        );
        assert_eq!(
            r(&[("fromSrc", "-"), ("repo", "busybox:1.35"), ("tag", "")]).unwrap(),
            "busybox:1.35"
        );
        assert_eq!(r(&[("fromSrc", "-"), ("repo", "busybox")]).unwrap(), "busybox");
        let e = r(&[("fromImage", "busybox"), ("tag", "latest")]).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(e.message.starts_with("No such image: busybox:latest"), "{}", e.message);
        assert_eq!(
            r(&[("fromSrc", "http://x/y.tar")]).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(r(&[]).unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn references() {
        assert_eq!(normalize("busybox"), "busybox:latest");
        assert_eq!(normalize("busybox:1"), "busybox:1");
        assert_eq!(normalize("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(split_tag("localhost:5000/a:v1"), ("localhost:5000/a", Some("v1")));
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busybox:latest", "busybox:latest"));
        assert!(reference_matches("busy*", "busybox:latest"));
        assert!(!reference_matches("busy", "busybox:latest"));
    }

    fn img(tags: &[&str]) -> ImageInfo {
        ImageInfo {
            id: "sha256:abcdef0123".into(),
            tags: tags.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn load_and_remove_reports() {
        let s = load_lines(&[img(&["a:1", "b:2"]), img(&[])]);
        let lines: Vec<serde_json::Value> =
            s.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["stream"], "Loaded image: a:1\n");
        assert_eq!(lines[1]["stream"], "Loaded image: b:2\n");
        assert_eq!(lines[2]["stream"], "Loaded image ID: sha256:abcdef0123\n");
        assert_eq!(
            remove_report("busybox", &img(&["busybox:latest"])),
            json!([{ "Untagged": "busybox:latest" }, { "Deleted": "sha256:abcdef0123" }])
        );
        assert_eq!(remove_report("busybox", &img(&[])), remove_report("busybox:latest", &img(&[])));
        assert_eq!(remove_report("a:1", &img(&["a:1", "b:2"])), json!([{ "Untagged": "a:1" }]));
        assert_eq!(
            remove_report("abcdef", &img(&["a:1"])),
            json!([{ "Untagged": "a:1" }, { "Deleted": "sha256:abcdef0123" }])
        );
    }
}
