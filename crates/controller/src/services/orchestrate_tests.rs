use std::collections::BTreeMap;
use std::time::Duration;

use cove_model::{
    Constraint, EndpointMode, Proto, PublishMode, ServiceMode, ServicePlan, ServicePort,
    ServiceRecord, TaskRecord, TaskState, TaskTemplate,
};

use super::*;

fn node(id: &str) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        hostname: format!("host-{id}"),
        labels: BTreeMap::new(),
        ready: true,
        gone: false,
    }
}

fn service(id: &str, mode: ServiceMode) -> ServiceRecord {
    ServiceRecord {
        id: id.into(),
        version: 1,
        task_version: 1,
        created_at: String::new(),
        updated_at: String::new(),
        spec: serde_json::Value::Null,
        previous_spec: None,
        plan: ServicePlan {
            name: id.into(),
            task: TaskTemplate { image: "bb".into(), ..Default::default() },
            mode,
            endpoint_mode: EndpointMode::Vip,
            ..Default::default()
        },
        vips: vec![],
    }
}

fn replicated(id: &str, n: u64) -> ServiceRecord {
    service(id, ServiceMode::Replicated { replicas: n })
}

fn task(svc: &str, slot: u64, node: &str, state: TaskState) -> TaskRecord {
    TaskRecord {
        id: format!("{svc}-{slot}-{node}-{}", state.as_str()),
        service_id: svc.into(),
        slot,
        node_id: Some(node.into()),
        desired: TaskState::Running,
        state,
        message: String::new(),
        err: None,
        spec_version: 1,
        container_id: None,
        exit_code: None,
        addresses: vec![],
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
    }
}

fn run(services: &[ServiceRecord], tasks: &[TaskRecord], nodes: &[NodeInfo]) -> Vec<TaskChange> {
    run_aged(services, tasks, nodes, Duration::from_secs(3600))
}

fn run_aged(
    services: &[ServiceRecord],
    tasks: &[TaskRecord],
    nodes: &[NodeInfo],
    age: Duration,
) -> Vec<TaskChange> {
    let age = move |_: &TaskRecord| age;
    plan(Snapshot { services, tasks, nodes, now: "2026-01-02T00:00:00Z", age: &age })
}

fn created(changes: &[TaskChange]) -> Vec<&TaskRecord> {
    changes
        .iter()
        .filter_map(|c| match c {
            TaskChange::Create(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn updated(changes: &[TaskChange]) -> Vec<&TaskRecord> {
    changes
        .iter()
        .filter_map(|c| match c {
            TaskChange::Update(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn deleted(changes: &[TaskChange]) -> Vec<&str> {
    changes
        .iter()
        .filter_map(|c| match c {
            TaskChange::Delete(id) => Some(id.as_str()),
            _ => None,
        })
        .collect()
}

/// Apply a plan's changes to a task list, as the store would.
fn apply(tasks: &mut Vec<TaskRecord>, changes: &[TaskChange]) {
    for c in changes {
        match c {
            TaskChange::Create(t) => tasks.push(t.clone()),
            TaskChange::Update(t) => {
                let slot = tasks.iter_mut().find(|o| o.id == t.id).expect("updated task exists");
                *slot = t.clone();
            }
            TaskChange::Delete(id) => tasks.retain(|t| &t.id != id),
        }
    }
}

#[test]
fn replicas_spread_over_the_ready_nodes() {
    let nodes = [node("a"), node("b"), node("c")];
    let changes = run(&[replicated("web", 3)], &[], &nodes);
    let new = created(&changes);
    assert_eq!(new.len(), 3);
    let mut on: Vec<&str> = new.iter().map(|t| t.node_id.as_deref().unwrap()).collect();
    on.sort();
    assert_eq!(on, ["a", "b", "c"]);
    let mut slots: Vec<u64> = new.iter().map(|t| t.slot).collect();
    slots.sort();
    assert_eq!(slots, [1, 2, 3]);
    assert!(new.iter().all(|t| t.state == TaskState::Assigned && t.desired == TaskState::Running));
}

#[test]
fn more_replicas_than_nodes_still_spread_evenly() {
    let nodes = [node("a"), node("b")];
    let changes = run(&[replicated("web", 5)], &[], &nodes);
    let on_a = created(&changes).iter().filter(|t| t.node_id.as_deref() == Some("a")).count();
    assert!(on_a == 2 || on_a == 3, "{on_a} of 5 on a");
}

#[test]
fn down_nodes_get_nothing() {
    let mut b = node("b");
    b.ready = false;
    let changes = run(&[replicated("web", 2)], &[], &[node("a"), b]);
    assert!(created(&changes).iter().all(|t| t.node_id.as_deref() == Some("a")));
}

#[test]
fn constraints_choose_the_node() {
    let mut svc = replicated("web", 2);
    svc.plan.constraints = vec!["node.hostname==host-b".parse::<Constraint>().unwrap()];
    let changes = run(&[svc], &[], &[node("a"), node("b"), node("c")]);
    assert!(created(&changes).iter().all(|t| t.node_id.as_deref() == Some("b")));
}

#[test]
fn unsatisfiable_constraints_leave_the_task_pending_with_the_reason() {
    let mut svc = replicated("web", 1);
    svc.plan.constraints = vec!["node.hostname==nowhere".parse::<Constraint>().unwrap()];
    let changes = run(std::slice::from_ref(&svc), &[], &[node("a")]);
    let t = created(&changes)[0].clone();
    assert_eq!(t.state, TaskState::Pending);
    assert!(t.node_id.is_none());
    assert!(t.err.as_deref().unwrap().contains("scheduling constraints not satisfied"), "{t:?}");
    // Once a node fits, the same task is assigned.
    svc.plan.constraints = vec![];
    let changes = run(&[svc], std::slice::from_ref(&t), &[node("a")]);
    let u = updated(&changes);
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].id.as_str(), u[0].state), (t.id.as_str(), TaskState::Assigned));
    assert!(created(&changes).is_empty());
}

#[test]
fn a_converged_service_plans_nothing() {
    let tasks = [task("web", 1, "a", TaskState::Running), task("web", 2, "b", TaskState::Running)];
    assert!(run(&[replicated("web", 2)], &tasks, &[node("a"), node("b")]).is_empty());
}

#[test]
fn scale_down_shuts_the_highest_slots_down() {
    let tasks: Vec<TaskRecord> = (1..=3).map(|s| task("web", s, "a", TaskState::Running)).collect();
    let changes = run(&[replicated("web", 1)], &tasks, &[node("a")]);
    let u = updated(&changes);
    let mut slots: Vec<u64> = u.iter().map(|t| t.slot).collect();
    slots.sort();
    assert_eq!(slots, [2, 3]);
    assert!(u.iter().all(|t| t.desired == TaskState::Shutdown && t.state == TaskState::Running));
    assert!(created(&changes).is_empty());
}

#[test]
fn a_failed_task_is_replaced_after_the_restart_delay() {
    let tasks = vec![task("web", 1, "a", TaskState::Failed)];
    let svc = [replicated("web", 1)];
    let mut tasks2 = tasks.clone();
    let changes = run_aged(&svc, &tasks, &[node("a")], Duration::ZERO);
    assert_eq!(updated(&changes)[0].desired, TaskState::Shutdown);
    assert!(created(&changes).is_empty());
    apply(&mut tasks2, &changes);
    // Within the delay: nothing new.
    assert!(created(&run_aged(&svc, &tasks2, &[node("a")], Duration::from_secs(1))).is_empty());
    // After it: a new task in the same slot.
    let changes = run_aged(&svc, &tasks2, &[node("a")], RESTART_DELAY);
    let new = created(&changes);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].slot, 1);
}

#[test]
fn a_rejected_task_moves_to_another_node_at_once() {
    let svc = [replicated("web", 1)];
    let mut tasks = vec![task("web", 1, "a", TaskState::Rejected)];
    let nodes = [node("a"), node("b")];
    let changes = run_aged(&svc, &tasks, &nodes, Duration::ZERO);
    apply(&mut tasks, &changes);
    let changes = run_aged(&svc, &tasks, &nodes, Duration::ZERO);
    let new = created(&changes);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].node_id.as_deref(), Some("b"));
    // With no other node, it waits for the delay instead of looping.
    let mut alone = vec![task("web", 1, "a", TaskState::Rejected)];
    let changes = run_aged(&svc, &alone, &[node("a")], Duration::ZERO);
    apply(&mut alone, &changes);
    assert!(created(&run_aged(&svc, &alone, &[node("a")], Duration::ZERO)).is_empty());
}

#[test]
fn tasks_of_a_gone_node_are_orphaned_and_replaced_elsewhere() {
    let svc = [replicated("web", 2)];
    let mut tasks =
        vec![task("web", 1, "a", TaskState::Running), task("web", 2, "b", TaskState::Running)];
    let mut b = node("b");
    b.ready = false;
    // Down but within the grace period: nothing moves.
    assert!(run(&svc, &tasks, &[node("a"), b.clone()]).is_empty());
    b.gone = true;
    let nodes = [node("a"), b];
    let changes = run(&svc, &tasks, &nodes);
    let u = updated(&changes);
    assert_eq!(u.len(), 1);
    assert_eq!((u[0].state, u[0].desired), (TaskState::Orphaned, TaskState::Shutdown));
    // Replaced in the same round, on the node that is left.
    let new = created(&changes);
    assert_eq!(new.len(), 1);
    assert_eq!((new[0].slot, new[0].node_id.as_deref()), (2, Some("a")));
    apply(&mut tasks, &changes);
    // Nothing more to do, and the orphan stays for history while its node is gone.
    assert!(run(&svc, &tasks, &nodes).is_empty());
}

#[test]
fn global_mode_runs_one_task_per_fitting_ready_node() {
    let mut svc = service("agent", ServiceMode::Global);
    let mut c = node("c");
    c.labels.insert("role".into(), "db".into());
    svc.plan.constraints = vec!["node.labels.role!=db".parse().unwrap()];
    let mut d = node("d");
    d.ready = false;
    let tasks = vec![task("agent", 0, "a", TaskState::Running)];
    let changes = run(&[svc], &tasks, &[node("a"), node("b"), c, d]);
    let new = created(&changes);
    assert_eq!(new.len(), 1);
    assert_eq!((new[0].slot, new[0].node_id.as_deref()), (0, Some("b")));
}

#[test]
fn a_removed_service_shuts_its_tasks_down_then_forgets_them() {
    let mut tasks = vec![task("web", 1, "a", TaskState::Running)];
    let changes = run(&[], &tasks, &[node("a")]);
    assert_eq!(updated(&changes)[0].desired, TaskState::Shutdown);
    apply(&mut tasks, &changes);
    // The node stops the container and reports it.
    tasks[0].state = TaskState::Shutdown;
    let changes = run(&[], &tasks, &[node("a")]);
    assert_eq!(deleted(&changes), [tasks[0].id.as_str()]);
}

#[test]
fn an_update_replaces_one_task_at_a_time() {
    let mut svc = replicated("web", 3);
    svc.version = 2;
    svc.task_version = 2;
    let nodes = [node("a"), node("b"), node("c")];
    let mut tasks: Vec<TaskRecord> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, n)| task("web", i as u64 + 1, n, TaskState::Running))
        .collect();
    let svcs = [svc];
    let changes = run(&svcs, &tasks, &nodes);
    assert_eq!(updated(&changes).len(), 1);
    assert_eq!(created(&changes).len(), 1);
    assert_eq!(created(&changes)[0].spec_version, 2);
    // A version that leaves the task template alone (a scale) replaces nothing.
    let mut scaled = svcs[0].clone();
    scaled.version = 3;
    scaled.task_version = 1;
    let running: Vec<TaskRecord> = tasks.clone();
    assert!(run(&[scaled], &running, &nodes).is_empty());
    apply(&mut tasks, &changes);
    // The replacement has not started yet: nothing else is replaced.
    assert!(run(&svcs, &tasks, &nodes).is_empty());
    for t in tasks.iter_mut().filter(|t| t.desired == TaskState::Running) {
        t.state = TaskState::Running;
    }
    let changes = run(&svcs, &tasks, &nodes);
    assert_eq!(created(&changes).len(), 1);
}

#[test]
fn two_tasks_never_share_a_host_mode_port_on_a_node() {
    let mut svc = replicated("web", 2);
    svc.plan.ports = vec![ServicePort {
        proto: Proto::Tcp,
        target: 80,
        published: Some(8081),
        mode: PublishMode::Host,
    }];
    let changes = run(&[svc], &[], &[node("a")]);
    let new = created(&changes);
    assert_eq!(new.len(), 2);
    let pending: Vec<_> = new.iter().filter(|t| t.state == TaskState::Pending).collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].err.as_deref(),
        Some("no suitable node (host-mode port already in use on 1 node)")
    );
}

#[test]
fn ended_tasks_are_kept_for_history_then_forgotten() {
    let mut tasks: Vec<TaskRecord> = (0..7)
        .map(|i| {
            let mut t = task("web", 1, "a", TaskState::Failed);
            t.id = format!("old{i}");
            t.desired = TaskState::Shutdown;
            t.updated_at = format!("2026-01-01T00:00:0{i}Z");
            t
        })
        .collect();
    tasks.push(task("web", 1, "a", TaskState::Running));
    let changes = run(&[replicated("web", 1)], &tasks, &[node("a")]);
    let mut gone = deleted(&changes);
    gone.sort();
    assert_eq!(gone, ["old0", "old1"]);
}
