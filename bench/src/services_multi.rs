//! Services across the netlab's three hosts (etcd, one daemon each):
//!
//! * scale: `docker service scale -d web=N` on h1 (from 1) to every one of the N tasks
//!   answering through the VIP from a client container on h3 (a [`Watch`] polling every
//!   5 ms, each answer naming its task), and to the API listing N running tasks;
//! * failover: a service of 3 tasks (one per host); the daemon of a host that runs one of
//!   them and does not lead is killed (SIGKILL; its containers keep running); timed from
//!   the kill to the node seen down, its task no longer running (orphaned), 3 tasks
//!   running again, the last answer through the VIP from the dead host's task, and the
//!   first from its replacement, seen from a client on the third host (polled every
//!   20 ms). Then the daemon comes back and removes its moved task's container.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cove_testkit::Netlab;

use crate::services::{Options, HOSTS};
use crate::services_lab::{
    containers_of, create_web, docker, leader, nodes, running, sandbox, vip, wait_running,
    wait_until,
};
use crate::stats::Series;
use crate::svcprobe::Watch;

/// The scale figures.
pub(crate) struct Scale {
    n: usize,
    to_api: Series,
    to_all_answer: Series,
    /// Tasks per host at N, per repetition.
    spread: Vec<BTreeMap<String, usize>>,
    /// Attempts through the VIP that failed during the scale, per repetition, by kind.
    errors: Vec<BTreeMap<String, usize>>,
}

/// The failover figures (ms from the kill).
pub(crate) struct Failover {
    down: Series,
    orphaned: Series,
    three: Series,
    last_dead: Series,
    first_new: Series,
    restored: Series,
    errors: Vec<BTreeMap<String, usize>>,
    victims: Vec<String>,
}

impl Scale {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "n": self.n,
            "scale_to_api_running_ms": self.to_api.to_json(),
            "scale_to_all_answer_ms": self.to_all_answer.to_json(),
            "spread": self.spread,
            "failed_attempts": self.errors,
        })
    }
}

impl Failover {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "node_down_ms": self.down.to_json(),
            "task_orphaned_ms": self.orphaned.to_json(),
            "three_running_ms": self.three.to_json(),
            "last_answer_from_dead_host_ms": self.last_dead.to_json(),
            "first_answer_from_replacement_ms": self.first_new.to_json(),
            "restored_ms": self.restored.to_json(),
            "failed_attempts": self.errors,
            "victims": self.victims,
        })
    }
}

/// Parts 4 and 5 on `lab`'s h1..h3 (daemon flags `flags`, `{addr}`/`{name}` unexpanded).
pub(crate) fn run(lab: &mut Netlab, flags: &[String], o: &Options) -> Result<(Scale, Failover)> {
    let h1 = lab.host("h1");
    wait_until("3 nodes ready", 30, || {
        Ok(nodes(h1)?.iter().filter(|n| n.2 == "ready").count() == 3)
    })?;
    let ov = ["network", "create", "-d", "overlay", "--attachable", "--subnet", "10.30.0.0/22"];
    docker(h1, &[&ov[..], &["ovc"]].concat())?;
    let mut clients = BTreeMap::new();
    for h in HOSTS {
        let host = lab.host(h);
        wait_until(&format!("{h} sees ovc"), 10, || {
            Ok(docker(host, &["network", "ls", "--format", "{{.Name}}"])?.contains("ovc"))
        })?;
        let name = format!("cl-{h}");
        docker(
            host,
            &["run", "-d", "--name", &name, "--network", "ovc", "bb", "sleep", "1000000"],
        )?;
        clients.insert(h.to_owned(), sandbox(host, &name)?);
    }
    let scale = scale(lab, &clients["h3"], o)?;
    let failover = failover(lab, &clients, flags, o)?;
    Ok((scale, failover))
}

fn scale(lab: &Netlab, cl: &str, o: &Options) -> Result<Scale> {
    let (h1, h3) = (lab.host("h1"), lab.host("h3"));
    create_web(h1, "web", 1, "ovc", &[])?;
    wait_running(h1, "web", 1, 60)?;
    let vip = vip(h1, "web")?;
    let mut s = Scale {
        n: o.scale_to,
        to_api: Series::new(format!("scale 1 → {}: command → API lists them running", o.scale_to)),
        to_all_answer: Series::new(format!(
            "scale 1 → {}: command → all answer through the VIP from h3",
            o.scale_to
        )),
        spread: vec![],
        errors: vec![],
    };
    let by_id: BTreeMap<String, String> = nodes(h1)?.into_iter().map(|n| (n.1, n.0)).collect();
    for rep in 0..o.scale_reps {
        eprintln!("services: scale 1 → {} ({}/{})", o.scale_to, rep + 1, o.scale_reps);
        let w = Watch::start(h3, cl, &vip, 80, 5)?;
        let t0 = Instant::now();
        docker(h1, &["service", "scale", "-d", &format!("web={}", o.scale_to)])?;
        let (mut seen, mut errors, mut api, mut next_poll) =
            (BTreeMap::<String, Instant>::new(), BTreeMap::new(), None, Instant::now());
        while seen.len() < o.scale_to || api.is_none() {
            if t0.elapsed() > Duration::from_secs(180) {
                bail!("scale to {}: {} answered, API done {api:?}", o.scale_to, seen.len());
            }
            for (t, a) in w.take(Duration::from_millis(50)) {
                match a {
                    Ok(a) if t >= t0 => {
                        seen.entry(a).or_insert(t);
                    }
                    Err(e) if t >= t0 => *errors.entry(e).or_insert(0) += 1,
                    _ => {}
                }
            }
            if api.is_none() && Instant::now() >= next_poll {
                next_poll = Instant::now() + Duration::from_millis(250);
                if running(h1, "web")?.len() == o.scale_to {
                    api = Some(Instant::now());
                }
            }
        }
        drop(w);
        let last = seen.values().max().copied().unwrap_or(t0);
        s.to_all_answer.push((last - t0).as_secs_f64() * 1e3);
        s.to_api.push((api.unwrap_or(t0) - t0).as_secs_f64() * 1e3);
        s.errors.push(errors);
        let mut spread = BTreeMap::new();
        for t in running(h1, "web")? {
            *spread.entry(by_id.get(&t.node).cloned().unwrap_or(t.node)).or_insert(0) += 1;
        }
        s.spread.push(spread);
        docker(h1, &["service", "scale", "-d", "web=1"])?;
        wait_until("web back to 1 container", 120, || {
            let mut n = 0;
            for h in HOSTS {
                n += containers_of(lab.host(h), "web")?;
            }
            Ok(n == 1 && running(h1, "web")?.len() == 1)
        })?;
    }
    docker(h1, &["service", "rm", "web"])?;
    Ok(s)
}

fn failover(
    lab: &mut Netlab,
    clients: &BTreeMap<String, String>,
    flags: &[String],
    o: &Options,
) -> Result<Failover> {
    let mut f = Failover {
        down: Series::new("kill → node down"),
        orphaned: Series::new("kill → its task no longer running (orphaned)"),
        three: Series::new("kill → 3 tasks running again"),
        last_dead: Series::new("kill → last answer from the dead host's task"),
        first_new: Series::new("kill → first answer from the replacement"),
        restored: Series::new("kill → 3 running and only live tasks answer"),
        errors: vec![],
        victims: vec![],
    };
    for rep in 0..o.failovers {
        eprintln!("services: failover {}/{}", rep + 1, o.failovers);
        let led = leader(lab.host("h1"))?.context("no leader")?;
        let api = lab.host(&led);
        let ids: BTreeMap<String, String> = nodes(api)?.into_iter().map(|n| (n.0, n.1)).collect();
        create_web(api, "fo", 3, "ovc", &[])?;
        let tasks = wait_running(api, "fo", 3, 120)?;
        let victim = HOSTS
            .into_iter()
            .find(|h| *h != led && tasks.iter().any(|t| Some(&t.node) == ids.get(*h)))
            .context("no task on a host that does not lead")?;
        let client = HOSTS.into_iter().find(|h| *h != led && *h != victim).context("client")?;
        let dead_task = tasks.iter().find(|t| Some(&t.node) == ids.get(victim)).context("task")?;
        let (dead_name, dead_node) = (dead_task.name.clone(), ids[victim].clone());
        let vip = vip(api, "fo")?;
        let w = Watch::start(lab.host(client), &clients[client], &vip, 80, 20)?;
        let old: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
        let t0 = Instant::now();
        lab.host_mut(victim).kill_daemon();
        let api = lab.host(&led);
        let (mut down, mut orphaned, mut three, mut last_dead, mut first_new) =
            (None, None, None, None, None);
        let (mut errors, mut next_poll) = (BTreeMap::new(), Instant::now());
        let done = |three: Option<Instant>, first_new: Option<Instant>, last: Option<Instant>| {
            let (Some(t3), Some(_)) = (three, first_new) else { return false };
            Instant::now() > t3.max(last.unwrap_or(t0)) + Duration::from_secs(3)
        };
        while !done(three, first_new, last_dead) {
            if t0.elapsed() > Duration::from_secs(120) {
                bail!("failover of {victim}: not done after 120 s");
            }
            for (t, a) in w.take(Duration::from_millis(50)) {
                match a {
                    Ok(a) if a == dead_name => last_dead = Some(t),
                    Ok(a) if !old.contains(&a) => {
                        first_new.get_or_insert(t);
                    }
                    Err(e) if t >= t0 => *errors.entry(e).or_insert(0) += 1,
                    _ => {}
                }
            }
            if Instant::now() >= next_poll {
                next_poll = Instant::now() + Duration::from_millis(250);
                let now = Instant::now();
                if down.is_none() && nodes(api)?.iter().any(|n| n.1 == dead_node && n.2 == "down") {
                    down = Some(now);
                }
                let r = running(api, "fo")?;
                if orphaned.is_none() && !r.iter().any(|t| t.name == dead_name) {
                    orphaned = Some(now);
                }
                if three.is_none() && r.len() == 3 && r.iter().all(|t| t.node != dead_node) {
                    three = Some(now);
                }
            }
        }
        drop(w);
        let rel = |t: Option<Instant>| t.map_or(f64::NAN, |t| (t - t0).as_secs_f64() * 1e3);
        f.down.push(rel(down));
        f.orphaned.push(rel(orphaned));
        f.three.push(rel(three));
        f.last_dead.push(rel(last_dead));
        f.first_new.push(rel(first_new));
        f.restored.push(rel(three).max(rel(last_dead)).max(rel(first_new)));
        f.errors.push(errors);
        f.victims.push(format!("{victim} (leader {led})"));

        // The dead come back and remove their moved task's container; then a clean slate.
        let args: Vec<String> = flags
            .iter()
            .map(|a| a.replace("{addr}", &lab.addr(victim).to_string()).replace("{name}", victim))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lab.host_mut(victim).start_daemon(&args);
        let (api, back) = (lab.host(&led), lab.host(victim));
        wait_until(&format!("{victim} ready again"), 60, || {
            Ok(nodes(api)?.iter().any(|n| n.1 == dead_node && n.2 == "ready"))
        })?;
        wait_until(&format!("{victim} removed its moved task"), 60, || {
            Ok(containers_of(back, "fo")? == 0)
        })?;
        docker(api, &["service", "rm", "fo"])?;
        wait_until("fo's containers gone", 60, || {
            let mut n = 0;
            for h in HOSTS {
                n += containers_of(lab.host(h), "fo")?;
            }
            Ok(n == 0)
        })?;
    }
    Ok(f)
}

/// The section's markdown.
pub(crate) fn markdown(o: &Options, s: &Scale, f: &Failover) -> String {
    let mut md = format!(
        "\n### Scale 1 → {} across three hosts (etcd)\n\n\
         | measure | median ms | p90 ms | n |\n|---|---|---|---|\n",
        s.n
    );
    let row = |md: &mut String, x: &Series| {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {} |\n",
            x.name,
            x.median(),
            x.quantile(0.9),
            x.len()
        ))
    };
    row(&mut md, &s.to_api);
    row(&mut md, &s.to_all_answer);
    let spread: Vec<String> = s
        .spread
        .iter()
        .map(|m| m.iter().map(|(h, n)| format!("{h} {n}")).collect::<Vec<_>>().join(", "))
        .collect();
    md.push_str(&format!(
        "\nTasks per host at {}: {}; failed attempts through the VIP during the scale: {:?}. \
         The client polls every 5 ms, so the last task is seen on average about {} ms after \
         it answers.\n",
        s.n,
        spread.join("; "),
        s.errors,
        5 * s.n
    ));
    md.push_str(&format!(
        "\n### Failover after a node's daemon is killed (`--node-down-grace {}`)\n\n\
         | measure | median ms | p90 ms | n |\n|---|---|---|---|\n",
        o.grace
    ));
    for x in [&f.down, &f.orphaned, &f.three, &f.last_dead, &f.first_new, &f.restored] {
        row(&mut md, x);
    }
    md.push_str(&format!(
        "\nKilled: {}; failed attempts through the VIP (one per 20 ms) from the kill to the \
         end: {:?}. Expected: the node's lease (10 s TTL) runs out, then the grace period \
         ({} s), then a replacement task starts.\n",
        f.victims.join(", "),
        f.errors,
        o.grace
    ));
    md
}
