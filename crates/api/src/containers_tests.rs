use super::*;
use crate::testutil::{container_view, net};
use std::collections::HashMap;

fn views() -> Vec<ContainerView> {
    let mut running = container_view(Status::Running);
    running.record.created = "2024-01-01T00:00:02Z".into();
    let mut exited = container_view(Status::Exited);
    exited.record.id = format!("{:b<64}", "b").parse().unwrap();
    exited.record.name = "other".into();
    exited.record.state.exit_code = 3;
    exited.record.state.finished_at = "2024-01-01T00:00:05Z".into();
    exited.record.config.labels.clear();
    exited.record.config.image = "alpine:3".into();
    exited.record.created = "2024-01-01T00:00:01Z".into();
    let mut created = container_view(Status::Created);
    created.record.id = format!("{:c<64}", "c").parse().unwrap();
    created.record.name = "fresh".into();
    created.record.created = "2024-01-01T00:00:03Z".into();
    created.networks = vec![(net("bridge", true), None)];
    vec![exited, running, created]
}

fn names(filters: &str, all: bool, limit: Option<i64>) -> Result<Vec<String>, ApiError> {
    let f = Filters::parse(Some(filters))?;
    Ok(select(views(), &f, all, limit)?.into_iter().map(|v| v.record.name).collect())
}

#[test]
fn list_selection() {
    assert_eq!(names("{}", false, None).unwrap(), ["test"]);
    assert_eq!(names("{}", true, None).unwrap(), ["fresh", "test", "other"], "newest first");
    assert_eq!(names("{}", false, Some(1)).unwrap(), ["fresh"], "limit implies all");
    assert_eq!(
        names(r#"{"status":["exited"]}"#, false, None).unwrap(),
        ["other"],
        "status implies all"
    );
    assert_eq!(names(r#"{"name":["/test"]}"#, true, None).unwrap(), ["test"]);
    assert_eq!(names(r#"{"name":["^/oth"]}"#, true, None).unwrap(), ["other"]);
    assert_eq!(names(r#"{"name":{"e":true}}"#, true, None).unwrap(), ["fresh", "test", "other"]);
    assert_eq!(names(r#"{"id":["bbbb"]}"#, true, None).unwrap(), ["other"]);
    assert_eq!(names(r#"{"label":["app=web"]}"#, true, None).unwrap(), ["fresh", "test"]);
    assert_eq!(names(r#"{"label":["app"],"status":["running"]}"#, true, None).unwrap(), ["test"]);
    assert_eq!(names(r#"{"network":["bridge"]}"#, true, None).unwrap(), ["fresh"]);
    assert_eq!(names(r#"{"network":["web"]}"#, true, None).unwrap(), ["test", "other"]);
    assert_eq!(names(r#"{"network":["7ea29f"]}"#, true, None).unwrap(), ["test", "other"]);
    assert_eq!(names(r#"{"ancestor":["alpine:3"]}"#, true, None).unwrap(), ["other"]);
    assert_eq!(names(r#"{"ancestor":["busybox:latest"]}"#, true, None).unwrap(), ["fresh", "test"]);
    assert_eq!(names(r#"{"ancestor":["aaaa"]}"#, true, None).unwrap().len(), 3);
    assert_eq!(names(r#"{"exited":["3"]}"#, true, None).unwrap(), ["other"]);
    assert!(names(r#"{"exited":["0"]}"#, true, None).unwrap().is_empty());
    assert_eq!(names(r#"{"before":["fresh"]}"#, false, None).unwrap(), ["test", "other"]);
    assert_eq!(names(r#"{"since":["other"]}"#, false, None).unwrap(), ["fresh", "test"]);
    for bad in [r#"{"status":["sleeping"]}"#, r#"{"colour":["x"]}"#, r#"{"exited":["x"]}"#] {
        assert_eq!(names(bad, true, None).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
    }
    assert_eq!(
        names(r#"{"before":["nope"]}"#, true, None).unwrap_err().status,
        StatusCode::NOT_FOUND
    );
}

fn params(pairs: &[(&str, &str)]) -> Params {
    Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>())
}

#[test]
fn log_query() {
    assert_eq!(parse_tail(None).unwrap(), None);
    assert_eq!(parse_tail(Some("all")).unwrap(), None);
    assert_eq!(parse_tail(Some("10")).unwrap(), Some(10));
    assert_eq!(parse_tail(Some("-1")).unwrap(), None);
    assert!(parse_tail(Some("ten")).is_err());
    let o = log_options(
        &params(&[("stdout", "1"), ("timestamps", "true"), ("since", "1704067200")]),
        true,
    )
    .unwrap();
    assert!(o.stdout && !o.stderr && o.timestamps && o.raw);
    assert_eq!(o.since, Some(1_704_067_200.0));
    let e = log_options(&params(&[("follow", "1")]), false).unwrap_err();
    assert_eq!(e.message, "Bad parameters: you must choose at least one stream");
    assert!(log_options(&params(&[("stdout", "1"), ("until", "soon")]), false).is_err());
}
