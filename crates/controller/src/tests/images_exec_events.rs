//! Images, exec instances and the event stream on fakes.

use std::collections::BTreeMap;

use cove_model::ErrorKind;

use super::containers::{record, run, until_stopped};
use super::{ctr, host, net};
use crate::fake::FakeHost;
use crate::{Event, EventType, ExecRequest};

// ---- images ---------------------------------------------------------------------------

#[tokio::test]
async fn an_imported_image_is_listed_found_and_usable() {
    let h = host().await;
    let info = h.ctl.image_import(vec![0; 7], "alpine:3").await.unwrap();
    assert_eq!(info.tags, ["alpine:3"]);
    let tags: Vec<String> =
        h.ctl.image_list().await.unwrap().into_iter().flat_map(|i| i.tags).collect();
    assert_eq!(tags, ["alpine:3", "busybox:latest"]);
    assert_eq!(h.ctl.image_get("alpine:3").await.unwrap().id, info.id);
    let mut req = ctr("web", "bridge");
    req.config.image = "alpine:3".into();
    let id = h.ctl.container_create(req).await.unwrap();
    assert_eq!(record(&h, &id).unwrap().config.image_id, info.id);
}

#[tokio::test]
async fn an_unused_image_is_removed() {
    let h = host().await;
    h.ctl.image_import(vec![0; 3], "alpine:3").await.unwrap();
    h.ctl.image_remove("alpine:3", false).await.unwrap();
    assert_eq!(h.ctl.image_get("alpine:3").await.unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(h.ctl.image_list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_image_used_by_a_container_is_kept_unless_forced() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    let e = h.ctl.image_remove("busybox", false).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains(cove_model::short_id(&id)), "{}", e.message);
    assert!(e.message.contains("must force"), "{}", e.message);
    assert!(h.ctl.image_get("busybox").await.is_ok());
    h.ctl.image_remove("busybox", true).await.unwrap();
    assert!(h.ctl.image_get("busybox").await.is_err());
    // The container stays.
    assert!(record(&h, &id).is_some());
}

#[tokio::test]
async fn an_image_is_free_again_once_its_container_is_removed() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    h.ctl.container_remove(&id, false).await.unwrap();
    h.ctl.image_remove("busybox", false).await.unwrap();
}

#[tokio::test]
async fn removing_a_missing_image_is_not_found() {
    let h = host().await;
    let e = h.ctl.image_remove("nginx", true).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn image_import_and_removal_are_events() {
    let h = host().await;
    let info = h.ctl.image_import(vec![1; 5], "alpine:3").await.unwrap();
    h.ctl.image_remove("alpine:3", false).await.unwrap();
    let ev: Vec<(String, String)> = events(&h)
        .into_iter()
        .filter(|e| e.kind == EventType::Image)
        .map(|e| (e.action, e.id))
        .collect();
    assert_eq!(ev, [("import".into(), info.id.clone()), ("untag".into(), info.id)]);
}

// ---- exec -----------------------------------------------------------------------------

fn sh() -> ExecRequest {
    ExecRequest { cmd: vec!["sh".into()], ..Default::default() }
}

#[tokio::test]
async fn exec_in_a_container_that_is_not_running_is_a_conflict() {
    let h = host().await;
    h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    let e = h.ctl.exec_create("web", sh()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains("is not running"), "{}", e.message);
}

#[tokio::test]
async fn exec_in_an_unknown_container_is_not_found() {
    let h = host().await;
    assert_eq!(h.ctl.exec_create("ghost", sh()).await.unwrap_err().kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn exec_without_a_command_is_refused() {
    let h = host().await;
    run(&h, ctr("web", "bridge")).await;
    let e = h.ctl.exec_create("web", ExecRequest::default()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidInput);
    assert_eq!(e.message, "no exec command specified");
}

#[tokio::test]
async fn an_exec_is_created_not_running_and_inspectable() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    let mut req = sh();
    req.env = vec!["A=1".into()];
    let x = h.ctl.exec_create("web", req).await.unwrap();
    let v = h.ctl.exec_inspect(&x).unwrap();
    assert_eq!(v.container_id, id);
    assert!(!v.running);
    assert_eq!(v.exit_code, None);
    assert_eq!(v.request.env, ["A=1"]);
}

#[tokio::test]
async fn inspecting_an_unknown_exec_is_not_found() {
    let h = host().await;
    let e = h.ctl.exec_inspect("nope").unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert_eq!(e.message, "No such exec instance: nope");
}

#[tokio::test]
async fn a_refused_exec_start_leaves_it_startable_and_a_finished_one_is_not() {
    let h = host().await;
    run(&h, ctr("web", "bridge")).await;
    let x = h.ctl.exec_create("web", sh()).await.unwrap();
    // The fake runtime cannot exec: the error comes back, the instance is not marked.
    let e = h.ctl.exec_start(&x).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotImplemented);
    assert!(!h.ctl.exec_inspect(&x).unwrap().running);
    h.ctl.exec_finished(&x, 3);
    let v = h.ctl.exec_inspect(&x).unwrap();
    assert_eq!(v.exit_code, Some(3));
    let e = h.ctl.exec_start(&x).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.message.contains("already been started"), "{}", e.message);
}

// ---- events ---------------------------------------------------------------------------

fn events(h: &FakeHost) -> Vec<Event> {
    h.ctl.events_subscribe().0
}

/// `(type, action)` of the events about object `id`, in order.
fn actions_of(h: &FakeHost, id: &str) -> Vec<String> {
    events(h).into_iter().filter(|e| e.id == id).map(|e| e.action).collect()
}

#[tokio::test]
async fn a_containers_life_is_create_start_die_destroy() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    h.runtime.exit(&id, 3);
    until_stopped(&h, &id).await;
    h.ctl.container_remove(&id, false).await.unwrap();
    assert_eq!(actions_of(&h, &id), ["create", "start", "die", "destroy"]);
    let all = events(&h);
    let die = all.iter().find(|e| e.id == id && e.action == "die").unwrap();
    assert_eq!(die.kind, EventType::Container);
    assert_eq!(
        die.attributes,
        BTreeMap::from([
            ("exitCode".to_string(), "3".to_string()),
            ("image".to_string(), "busybox".to_string()),
            ("name".to_string(), "web".to_string()),
        ])
    );
}

#[tokio::test]
async fn stop_is_kill_die_stop_with_the_signal() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    h.ctl.container_stop(&id, Some(1)).await.unwrap();
    assert_eq!(actions_of(&h, &id), ["create", "start", "kill", "die", "stop"]);
    let kill = events(&h).into_iter().find(|e| e.id == id && e.action == "kill").unwrap();
    assert_eq!(kill.attributes["signal"], "15");
}

#[tokio::test]
async fn restart_ends_with_a_restart_event() {
    let h = host().await;
    let id = run(&h, ctr("web", "bridge")).await;
    h.ctl.container_restart(&id, Some(1)).await.unwrap();
    let a = actions_of(&h, &id);
    assert_eq!(a.last().map(String::as_str), Some("restart"), "{a:?}");
    assert_eq!(a.iter().filter(|x| *x == "start").count(), 2, "{a:?}");
}

#[tokio::test]
async fn labels_are_event_attributes() {
    let h = host().await;
    let mut req = ctr("web", "bridge");
    req.config.labels.insert("tier".into(), "front".into());
    let id = h.ctl.container_create(req).await.unwrap();
    let ev = events(&h).into_iter().find(|e| e.id == id).unwrap();
    assert_eq!(ev.attributes["tier"], "front");
}

#[tokio::test]
async fn start_and_exit_connect_and_disconnect_the_containers_networks() {
    let h = host().await;
    let nid = h.ctl.network_create(net("app", Some("10.60.0.0/24"))).await.unwrap();
    let id = run(&h, ctr("web", "app")).await;
    h.runtime.exit(&id, 0);
    until_stopped(&h, &id).await;
    let net_events: Vec<(String, String)> = events(&h)
        .into_iter()
        .filter(|e| e.kind == EventType::Network && e.id == nid)
        .map(|e| (e.action, e.attributes.get("container").cloned().unwrap_or_default()))
        .collect();
    assert_eq!(
        net_events,
        [
            ("create".into(), String::new()),
            ("connect".into(), id.clone()),
            ("disconnect".into(), id)
        ]
    );
}

#[tokio::test]
async fn network_connect_and_disconnect_of_a_running_container_are_events() {
    let h = host().await;
    let nid = h.ctl.network_create(net("app", Some("10.61.0.0/24"))).await.unwrap();
    let id = run(&h, ctr("web", "bridge")).await;
    let (_, mut rx) = h.ctl.events_subscribe();
    h.ctl.network_connect("app", "web", Default::default()).await.unwrap();
    h.ctl.network_disconnect("app", "web", false).await.unwrap();
    let mut got = vec![];
    while let Ok(e) = rx.try_recv() {
        if e.id == nid {
            assert_eq!(e.attributes["container"], id);
            assert_eq!(e.attributes["name"], "app");
            assert_eq!(e.attributes["type"], "bridge");
            got.push(e.action);
        }
    }
    assert_eq!(got, ["connect", "disconnect"]);
}

#[tokio::test]
async fn a_refused_start_emits_no_start_event() {
    let h = host().await;
    let id = h.ctl.container_create(ctr("web", "bridge")).await.unwrap();
    h.runtime.model().fail_start.insert(id.to_string());
    h.ctl.container_start(&id).await.unwrap_err();
    assert_eq!(actions_of(&h, &id), ["create"]);
    let connects = events(&h).into_iter().filter(|e| e.action == "connect").count();
    assert_eq!(connects, 0);
}

#[tokio::test]
async fn subscribers_are_counted() {
    let h = host().await;
    assert_eq!(h.ctl.events_listeners(), 0);
    let (_, rx) = h.ctl.events_subscribe();
    assert_eq!(h.ctl.events_listeners(), 1);
    drop(rx);
    assert_eq!(h.ctl.events_listeners(), 0);
}
