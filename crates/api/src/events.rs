//! `GET /events`: the controller's events as Docker's JSON lines, with `since`, `until` and
//! `filters` (`type`, `event`, `container`, `network`, `image`, `label`, `scope`).

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use cove_controller::{Event, EventType};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use crate::encode::time;
use crate::filters::{label_matches, Filters};
use crate::json::Params;
use crate::stream::Shutdown;
use crate::{ApiError, ApiResult, AppState};

const FILTERS: &[&str] = &[
    "type",
    "event",
    "container",
    "network",
    "image",
    "label",
    "scope",
    "daemon",
    "volume",
    "plugin",
    "node",
    "service",
    "secret",
    "config",
];
const TYPES: &[&str] = &[
    "container",
    "network",
    "image",
    "volume",
    "daemon",
    "plugin",
    "node",
    "service",
    "secret",
    "config",
];

/// Docker's `events.Message` JSON for one event.
pub(crate) fn message(e: &Event) -> Value {
    let secs = e.time_nano.div_euclid(1_000_000_000);
    let mut v = json!({
        "Type": e.kind.as_str(),
        "Action": e.action,
        "Actor": { "ID": e.id, "Attributes": e.attributes },
        "scope": "local",
        "time": secs,
        "timeNano": e.time_nano,
    });
    // The pre-1.22 fields, still sent by dockerd for containers and images.
    if e.kind != EventType::Network {
        let from = e.attributes.get("image").cloned().unwrap_or_default();
        let obj = v.as_object_mut().expect("object");
        obj.insert("status".into(), json!(e.action));
        obj.insert("id".into(), json!(e.id));
        if e.kind == EventType::Container {
            obj.insert("from".into(), json!(from));
        }
    }
    v
}

/// Which events a request wants.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    filters: Filters,
    since: Option<i64>,
    until: Option<i64>,
}

/// Docker's `FuzzyMatch`: no values for `key`, or one is a prefix of `source`.
fn fuzzy(f: &Filters, key: &str, source: &str) -> bool {
    f.get(key).is_none_or(|vals| vals.iter().any(|v| source.starts_with(v.as_str())))
}

impl Selection {
    /// Parse `since`, `until` and `filters` (400 on unknown keys or values).
    pub(crate) fn parse(q: &Params) -> Result<Self, ApiError> {
        let filters = Filters::parse(q.get("filters"))?;
        filters.validate(FILTERS)?;
        for t in filters.get("type").unwrap_or_default() {
            if !TYPES.contains(&t.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter 'type={t}'")));
            }
        }
        for s in filters.get("scope").unwrap_or_default() {
            if !matches!(s.as_str(), "local" | "swarm") {
                return Err(ApiError::bad_request(format!("invalid filter 'scope={s}'")));
            }
        }
        let nanos = |key: &str| -> Result<Option<i64>, ApiError> {
            match q.get(key).map(str::trim) {
                None | Some("") => Ok(None),
                Some(v) => {
                    time::parse_query_time(v).map(|t| Some((t * 1e9) as i64)).ok_or_else(|| {
                        ApiError::bad_request(format!("invalid value for {key}: {v:?}"))
                    })
                }
            }
        };
        let (since, until) = (nanos("since")?, nanos("until")?);
        if let (Some(s), Some(u)) = (since, until) {
            if s > u {
                let (qs, qu) = (q.get("since").unwrap_or(""), q.get("until").unwrap_or(""));
                return Err(ApiError::bad_request(format!(
                    "`since` time ({qs}) cannot be after `until` time ({qu})"
                )));
            }
        }
        Ok(Self { filters, since, until })
    }

    /// Whether `e` passes the filters (dockerd's `events.Filter.Include`).
    pub(crate) fn includes(&self, e: &Event) -> bool {
        let f = &self.filters;
        let name = e.attributes.get("name").map(String::as_str).unwrap_or("");
        let typed = |t: EventType, key: &str| {
            f.get(key).is_none() || (e.kind == t && (fuzzy(f, key, &e.id) || fuzzy(f, key, name)))
        };
        f.any("event", |a| a == e.action)
            && f.any("type", |t| t == e.kind.as_str())
            && f.any("scope", |s| s == "local")
            && typed(EventType::Container, "container")
            && typed(EventType::Network, "network")
            && (f.get("image").is_none()
                || (e.kind == EventType::Image
                    && (fuzzy(f, "image", &e.id) || fuzzy(f, "image", name)))
                || e.attributes.get("image").is_some_and(|i| fuzzy(f, "image", i)))
            && f.all("label", |l| label_matches(l, &e.attributes))
            && ["daemon", "volume", "plugin", "node", "service", "secret", "config"]
                .iter()
                .all(|k| f.get(k).is_none())
    }

    fn in_window(&self, e: &Event) -> bool {
        self.since.is_none_or(|s| e.time_nano >= s) && self.until.is_none_or(|u| e.time_nano <= u)
    }
}

fn line(e: &Event) -> Bytes {
    let mut b = serde_json::to_vec(&message(e)).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// `GET /events`: past events (as dockerd: only when `since` or `until` is given, from the
/// last 1024), then live ones until `until` passes, the client goes away or the server
/// stops.
pub(crate) async fn events(State(st): State<AppState>, q: Params) -> ApiResult<Response> {
    let sel = Selection::parse(&q)?;
    let (past, rx) = st.ctl.events_subscribe();
    let backlog: Vec<Bytes> = if sel.since.is_some() || sel.until.is_some() {
        past.iter().filter(|e| sel.in_window(e) && sel.includes(e)).map(line).collect()
    } else {
        vec![]
    };
    let ended = sel.until.is_some_and(|u| u <= now_nanos());
    let live = futures::stream::unfold(
        (rx, sel, st.shutdown.clone(), ended),
        |(mut rx, sel, mut shutdown, ended): (_, Selection, Shutdown, bool)| async move {
            if ended {
                return None;
            }
            let deadline = sel.until.map(|u| Duration::from_nanos((u - now_nanos()).max(0) as u64));
            loop {
                let next = tokio::select! {
                    r = rx.recv() => r,
                    _ = shutdown.wait() => return None,
                    _ = sleep_or_forever(deadline) => return None,
                };
                match next {
                    Ok(e) if sel.until.is_some_and(|u| e.time_nano > u) => return None,
                    Ok(e) if sel.includes(&e) => {
                        return Some((Ok::<_, Infallible>(line(&e)), (rx, sel, shutdown, false)))
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                }
            }
        },
    );
    let past = futures::stream::iter(backlog.into_iter().map(Ok::<_, Infallible>));
    let body = Body::from_stream(futures::StreamExt::chain(past, live));
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, "application/json".parse().expect("static"));
    Ok(r)
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, HashMap};

    fn ev(kind: EventType, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            kind,
            action: action.into(),
            id: id.into(),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            time_nano: 1_704_067_200_123_456_789,
        }
    }

    fn sel(pairs: &[(&str, &str)]) -> Result<Selection, ApiError> {
        Selection::parse(&Params(
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
        ))
    }

    #[test]
    fn message_shapes_are_dockers() {
        let c = ev(
            EventType::Container,
            "die",
            "abc",
            &[("image", "busybox"), ("name", "web"), ("exitCode", "0")],
        );
        let v = message(&c);
        assert_eq!(v["Type"], "container");
        assert_eq!(v["Action"], "die");
        assert_eq!(v["status"], "die");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["from"], "busybox");
        assert_eq!(v["Actor"]["ID"], "abc");
        assert_eq!(v["Actor"]["Attributes"]["exitCode"], "0");
        assert_eq!(v["scope"], "local");
        assert_eq!(v["time"], 1_704_067_200_i64);
        assert_eq!(v["timeNano"], 1_704_067_200_123_456_789_i64);
        let n = ev(
            EventType::Network,
            "connect",
            "n1",
            &[("name", "dk"), ("type", "bridge"), ("container", "abc")],
        );
        let v = message(&n);
        assert_eq!(v["Type"], "network");
        assert!(v.get("status").is_none() && v.get("from").is_none());
        assert_eq!(v["Actor"]["Attributes"]["container"], "abc");
    }

    #[test]
    fn filters_follow_dockerd() {
        let c = ev(
            EventType::Container,
            "start",
            "abc123",
            &[("image", "busybox"), ("name", "web"), ("app", "x")],
        );
        let n = ev(EventType::Network, "create", "def456", &[("name", "dk"), ("type", "bridge")]);
        let yes = |s: &Selection, e: &Event| s.includes(e);
        let s = sel(&[]).unwrap();
        assert!(yes(&s, &c) && yes(&s, &n));
        let s = sel(&[("filters", r#"{"type":["network"]}"#)]).unwrap();
        assert!(!yes(&s, &c) && yes(&s, &n));
        let s = sel(&[("filters", r#"{"event":["start","die"]}"#)]).unwrap();
        assert!(yes(&s, &c) && !yes(&s, &n));
        let s = sel(&[("filters", r#"{"container":["web"]}"#)]).unwrap();
        assert!(yes(&s, &c) && !yes(&s, &n), "container filters leave other types out");
        let s = sel(&[("filters", r#"{"container":["abc"]}"#)]).unwrap();
        assert!(yes(&s, &c));
        let s = sel(&[("filters", r#"{"network":["dk"]}"#)]).unwrap();
        assert!(!yes(&s, &c) && yes(&s, &n));
        let s = sel(&[("filters", r#"{"label":["app=x"]}"#)]).unwrap();
        assert!(yes(&s, &c) && !yes(&s, &n));
        let s = sel(&[("filters", r#"{"image":["busybox"]}"#)]).unwrap();
        assert!(yes(&s, &c) && !yes(&s, &n));
        let s = sel(&[("filters", r#"{"scope":["local"]}"#)]).unwrap();
        assert!(yes(&s, &c));
        for bad in [r#"{"colour":["x"]}"#, r#"{"type":["x"]}"#, r#"{"scope":["x"]}"#] {
            assert_eq!(sel(&[("filters", bad)]).unwrap_err().status, 400, "{bad}");
        }
        assert_eq!(sel(&[("since", "soon")]).unwrap_err().status, 400);
        assert_eq!(sel(&[("since", "20"), ("until", "10")]).unwrap_err().status, 400);
        let s = sel(&[("since", "1704067200.1"), ("until", "1704067200.2")]).unwrap();
        assert!(s.in_window(&c));
        let s = sel(&[("since", "1704067201")]).unwrap();
        assert!(!s.in_window(&c));
        let _: BTreeMap<String, String> = c.attributes;
    }
}
