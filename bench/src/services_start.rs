//! The cost of one task's start and stop on the ruleset, with N services already there
//! (each with one running task, on filler networks of 250), on the single host.
//!
//! A service `probe` (on `ov`, no task) is scaled 0 → 1: timed from the `docker service
//! scale` command to the first answer through its VIP from the client container (a
//! [`Watch`] polling every 5 ms), then 1 → 0 to the first refused connection. The floor,
//! interleaved: `docker run` of a plain container on the same network (a fixed address)
//! to its first answer, then `docker rm -f`. Around each: the daemon's firewall writes
//! (`cove_firewall_sync_seconds` count and sum, by kind, from `GET /metrics`) and the
//! lines of `nft -s list ruleset` added and removed, measured after a settle time.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cove_testkit::FakeHost;

use crate::daemon::for_each_parallel;
use crate::services::Options;
use crate::services_lab::{
    containers_of, create_web, docker, get, metric, metrics, ruleset, ruleset_diff, vip,
    wait_until, PAGE,
};
use crate::stats::{ms, Series};
use crate::svcprobe::Watch;

/// The floor container's fixed address on `ov`.
const FLOOR_IP: &str = "10.10.3.250";
/// Settle time before the after-metrics and ruleset are read.
const SETTLE: Duration = Duration::from_millis(500);
const PACE_MS: u64 = 5;

/// What one change cost the firewall: writes by kind, their seconds, ruleset lines.
#[derive(Default, Clone)]
struct Cost {
    elements: Vec<f64>,
    full: Vec<f64>,
    secs: Vec<f64>,
    added: Vec<f64>,
    removed: Vec<f64>,
}

impl Cost {
    fn push(&mut self, m0: &str, m1: &str, r0: &[String], r1: &[String]) {
        let d = |name: &str, l: &str| metric(m1, name, l) - metric(m0, name, l);
        self.elements.push(d("cove_firewall_sync_seconds_count", "\"elements\""));
        self.full.push(d("cove_firewall_sync_seconds_count", "\"full\""));
        self.secs.push(d("cove_firewall_sync_seconds_sum", "") * 1e3);
        let (a, r) = ruleset_diff(r0, r1);
        self.added.push(a as f64);
        self.removed.push(r as f64);
    }

    fn cells(&self) -> String {
        let med = |v: &[f64]| {
            let mut s = Series::new("");
            s.extend(v.iter().copied());
            s.median()
        };
        format!(
            "{:.0} / {:.0} | {:.1} | +{:.0} −{:.0}",
            med(&self.elements),
            med(&self.full),
            med(&self.secs),
            med(&self.added),
            med(&self.removed)
        )
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "element_writes": self.elements, "full_writes": self.full,
            "write_ms": self.secs, "nft_lines_added": self.added,
            "nft_lines_removed": self.removed,
        })
    }
}

/// The figures at one count of services.
pub(crate) struct StartRow {
    services: usize,
    start: Series,
    /// The command returned; the API lists the container running (both from the command).
    start_split: [Series; 2],
    stop: Series,
    floor_start: Series,
    floor_split: [Series; 2],
    floor_rm: Series,
    start_cost: Cost,
    stop_cost: Cost,
    floor_cost: Cost,
    floor_rm_cost: Cost,
    ruleset_lines: usize,
}

impl StartRow {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "services": self.services,
            "ruleset_lines": self.ruleset_lines,
            "scale_0_to_1_to_answer_ms": self.start.to_json(),
            "scale_0_to_1_returns_ms": self.start_split[0].to_json(),
            "scale_0_to_1_to_container_running_ms": self.start_split[1].to_json(),
            "scale_1_to_0_to_refused_ms": self.stop.to_json(),
            "run_to_answer_ms": self.floor_start.to_json(),
            "run_returns_ms": self.floor_split[0].to_json(),
            "run_to_container_running_ms": self.floor_split[1].to_json(),
            "rm_returns_ms": self.floor_rm.to_json(),
            "task_start_firewall": self.start_cost.json(),
            "task_stop_firewall": self.stop_cost.json(),
            "run_firewall": self.floor_cost.json(),
            "rm_firewall": self.floor_rm_cost.json(),
        })
    }
}

/// Running tasks of the filler services (`f<i>`), on `h`'s view.
fn fillers_running(h: &FakeHost) -> Result<usize> {
    let services = get(h, "/services")?;
    let ids: Vec<&str> = services
        .as_array()
        .context("services")?
        .iter()
        .filter(|s| s["Spec"]["Name"].as_str().is_some_and(|n| n.starts_with('f')))
        .filter_map(|s| s["ID"].as_str())
        .collect();
    let tasks = get(h, "/tasks")?;
    Ok(tasks
        .as_array()
        .context("tasks")?
        .iter()
        .filter(|t| t["ServiceID"].as_str().is_some_and(|id| ids.contains(&id)))
        .filter(|t| t["Status"]["State"] == "running")
        .count())
}

/// Services `f<from>`..`f<to>` (one `sleep` task each), 250 to a network `fill<k>`.
fn fill(h: &FakeHost, from: usize, to: usize) -> Result<()> {
    // Network k exists once some filler i < from had i / 250 == k.
    for k in (0..to.div_ceil(250)).filter(|k| k * 250 >= from) {
        let subnet = format!("10.{}.0.0/22", 20 + k);
        let name = format!("fill{k}");
        docker(h, &["network", "create", "-d", "overlay", "--subnet", &subnet, &name])?;
    }
    let errors = for_each_parallel(to - from, 3, true, |i| {
        let i = from + i;
        let (name, net) = (format!("f{i}"), format!("fill{}", i / 250));
        let args = ["service", "create", "-d", "--name", &name, "--network", &net, "bb"];
        docker(h, &[&args[..], &["sleep", "1000000"]].concat()).map(|_| ())
    });
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    wait_until(&format!("{to} filler tasks running"), 120 + to as u64, || {
        Ok(fillers_running(h)? == to)
    })?;
    Ok(())
}

/// Runs `cmd` (a `docker` command) on `h`, then `wait` (for the first answer), while
/// polling `GET path` every 10 ms for a container whose state is running. Returns when
/// the command returned and when the container was first seen running (ms from `t0`),
/// and what `wait` returned.
fn timed(
    h: &FakeHost,
    t0: Instant,
    cmd: &[&str],
    path: &str,
    wait: impl FnOnce() -> Option<Instant>,
) -> Result<(f64, Option<f64>, Option<Instant>)> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let poll = s.spawn(|| {
            let mut last = String::new();
            loop {
                let (code, body) = h.try_api("GET", path, None).unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let running = |c: &serde_json::Value| {
                    c["State"] == "running" || c["State"]["Running"] == true
                };
                if code == 200
                    && v.as_array().map_or_else(|| running(&v), |l| l.iter().any(running))
                {
                    return Some(ms(t0));
                }
                if done.load(Ordering::Relaxed) {
                    eprintln!("services: never saw it running at {path}: {code} {last:.300}");
                    return None;
                }
                last = body;
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let r = docker(h, cmd).map(|_| ms(t0));
        let up = if r.is_ok() { wait() } else { None };
        done.store(true, Ordering::Relaxed);
        let running = poll.join().expect("poll thread");
        Ok((r?, running, up))
    })
}

/// `GET /containers/json` filtered on service `name`'s label.
fn of_service(name: &str) -> String {
    let filter = format!(r#"{{"label":["com.docker.swarm.service.name={name}"]}}"#);
    let enc: String = filter
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("/containers/json?filters={enc}")
}

/// One scale 0 → 1 → 0 of `probe`.
fn task_round(h: &FakeHost, cl: &str, vip: &str, row: &mut StartRow) -> Result<()> {
    let (m0, r0) = (metrics(h)?, ruleset(h));
    let w = Watch::start(h, cl, vip, 80, PACE_MS)?;
    let t0 = Instant::now();
    let scale = ["service", "scale", "-d", "probe=1"];
    let (returned, running, up) = timed(h, t0, &scale, &of_service("probe"), || {
        w.first_answer_after(t0, Duration::from_secs(60))
    })?;
    let up = up.context("probe never answered")?;
    row.start.push((up - t0).as_secs_f64() * 1e3);
    row.start_split[0].push(returned);
    row.start_split[1].extend(running);
    std::thread::sleep(SETTLE);
    let (m1, r1) = (metrics(h)?, ruleset(h));
    row.start_cost.push(&m0, &m1, &r0, &r1);
    let t1 = Instant::now();
    docker(h, &["service", "scale", "-d", "probe=0"])?;
    let down = w
        .first_after(t1, Duration::from_secs(60), crate::svcprobe::Answer::is_err)
        .context("probe never refused")?;
    row.stop.push((down - t1).as_secs_f64() * 1e3);
    drop(w);
    wait_until("probe's container removed", 60, || Ok(containers_of(h, "probe")? == 0))?;
    std::thread::sleep(SETTLE);
    let (m2, r2) = (metrics(h)?, ruleset(h));
    row.stop_cost.push(&m1, &m2, &r1, &r2);
    Ok(())
}

/// One `docker run` → answer, then `rm -f`, of a plain container on `ov`.
fn floor_round(h: &FakeHost, cl: &str, row: &mut StartRow) -> Result<()> {
    let (m0, r0) = (metrics(h)?, ruleset(h));
    let t0 = Instant::now();
    let run = ["run", "-d", "--name", "floor", "--network", "ov", "--ip", FLOOR_IP, "bb"];
    let run = [&run[..], &["sh", "-c", PAGE]].concat();
    // The probe starts once `run` returned: one to an address nobody has yet would leave
    // a failed neighbour entry behind, and the next attempt would wait for ARP again.
    let mut w = None;
    let (returned, running, up) = timed(h, t0, &run, "/containers/floor/json", || {
        w = Some(Watch::start(h, cl, FLOOR_IP, 80, PACE_MS).ok()?);
        w.as_ref()?.first_answer_after(t0, Duration::from_secs(60))
    })?;
    row.floor_split[0].push(returned);
    row.floor_split[1].extend(running);
    let up = up.context("floor never answered")?;
    row.floor_start.push((up - t0).as_secs_f64() * 1e3);
    drop(w);
    std::thread::sleep(SETTLE);
    let (m1, r1) = (metrics(h)?, ruleset(h));
    row.floor_cost.push(&m0, &m1, &r0, &r1);
    let t1 = Instant::now();
    docker(h, &["rm", "-f", "floor"])?;
    row.floor_rm.push(ms(t1));
    std::thread::sleep(SETTLE);
    let (m2, r2) = (metrics(h)?, ruleset(h));
    row.floor_rm_cost.push(&m1, &m2, &r1, &r2);
    Ok(())
}

/// Part 3, on `h` with the client container's namespace `cl`.
pub(crate) fn run(h: &FakeHost, cl: &str, o: &Options) -> Result<Vec<StartRow>> {
    create_web(h, "probe", 0, "ov", &[])?;
    let vip = vip(h, "probe")?;
    let mut rows = vec![];
    let mut have = 0;
    for &n in &o.services {
        eprintln!("services: {n} services (filling from {have})");
        fill(h, have, n)?;
        have = n;
        let mut row = StartRow {
            services: n,
            start: Series::new("scale 0 → 1: command → answers through the VIP"),
            start_split: [
                Series::new("scale 0 → 1: command returns"),
                Series::new("scale 0 → 1: command → task's container running (API)"),
            ],
            stop: Series::new("scale 1 → 0: command → VIP refuses"),
            floor_start: Series::new("docker run → answers at its address (floor)"),
            floor_split: [
                Series::new("docker run returns (floor)"),
                Series::new("docker run → container running (API) (floor)"),
            ],
            floor_rm: Series::new("docker rm -f returns (floor)"),
            start_cost: Cost::default(),
            stop_cost: Cost::default(),
            floor_cost: Cost::default(),
            floor_rm_cost: Cost::default(),
            ruleset_lines: ruleset(h).len(),
        };
        for _ in 0..o.iterations {
            if rand::random::<bool>() {
                task_round(h, cl, &vip, &mut row)?;
                floor_round(h, cl, &mut row)?;
            } else {
                floor_round(h, cl, &mut row)?;
                task_round(h, cl, &vip, &mut row)?;
            }
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The section's markdown.
pub(crate) fn markdown(rows: &[StartRow]) -> String {
    let mut md = String::from(
        "\n### One task's start and stop with N services (one host)\n\n\
         | services | operation | median ms | p90 ms | n | firewall writes (elements / \
         full) | write ms | `nft -s list ruleset` lines |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let none = "- | - | -";
        for (s, c) in [
            (&r.start_split[0], None),
            (&r.start_split[1], None),
            (&r.start, Some(&r.start_cost)),
            (&r.stop, Some(&r.stop_cost)),
            (&r.floor_split[0], None),
            (&r.floor_split[1], None),
            (&r.floor_start, Some(&r.floor_cost)),
            (&r.floor_rm, Some(&r.floor_rm_cost)),
        ] {
            md.push_str(&format!(
                "| {} | {} | {:.1} | {:.1} | {} | {} |\n",
                r.services,
                s.name,
                s.median(),
                s.quantile(0.9),
                s.len(),
                c.map_or_else(|| none.to_owned(), Cost::cells)
            ));
        }
    }
    md.push_str(
        "\nFirewall columns are medians per operation of the daemon's own counters \
         (`cove_firewall_sync_seconds` count by `write` kind and sum) and of the lines of \
         `nft -s list ruleset` added and removed, read 0.5 s after the operation \
         completed. Ruleset size at each count: ",
    );
    let sizes: Vec<String> =
        rows.iter().map(|r| format!("{} lines at {}", r.ruleset_lines, r.services)).collect();
    md.push_str(&sizes.join(", "));
    md.push_str(".\n");
    md
}
