//! What the services bench asks of a fake host: the real `docker` CLI against its daemon
//! (what a user types), and the API's view of services, tasks and nodes.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cove_testkit::FakeHost;
use serde_json::Value;

/// `docker <args>` against `h`'s daemon (under `timeout`); its stdout, trimmed.
pub(crate) fn docker(h: &FakeHost, args: &[&str]) -> Result<String> {
    let out = Command::new("timeout")
        .args(["-k", "5", "180", "docker"])
        .args(args)
        .env("DOCKER_HOST", h.host_uri())
        .env("DOCKER_CONFIG", h.dir().join("docker-config"))
        .env_remove("DOCKER_CONTEXT")
        .output()
        .context("run docker")?;
    if !out.status.success() {
        bail!(
            "[{}] docker {}: {}",
            h.name(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `GET path` on `h`'s API, as JSON.
pub(crate) fn get(h: &FakeHost, path: &str) -> Result<Value> {
    let (code, body) = h.try_api("GET", path, None).with_context(|| format!("GET {path}"))?;
    if code != 200 {
        bail!("GET {path}: {code} {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON"))
}

/// The busybox httpd a service's tasks run: each serves its task's name (the hostname is
/// `{{.Task.Name}}`) on port 80.
pub(crate) const PAGE: &str =
    "mkdir -p /www; echo $HOSTNAME > /www/index.html; exec httpd -f -p 80 -h /www";

/// `docker service create -d` of `name` with `replicas` on `net` serving [`PAGE`], plus
/// `extra` flags before the image.
pub(crate) fn create_web(
    h: &FakeHost,
    name: &str,
    replicas: usize,
    net: &str,
    extra: &[&str],
) -> Result<()> {
    let n = replicas.to_string();
    let mut args = vec!["service", "create", "-d", "--name", name, "--replicas", &n];
    args.extend(["--network", net, "--hostname", "{{.Task.Name}}"]);
    args.extend_from_slice(extra);
    args.extend(["bb", "sh", "-c", PAGE]);
    docker(h, &args).map(|_| ())
}

/// The first VIP of service `name` (no prefix length).
pub(crate) fn vip(h: &FakeHost, name: &str) -> Result<String> {
    let s = get(h, &format!("/services/{name}"))?;
    let a = s["Endpoint"]["VirtualIPs"][0]["Addr"].as_str().context("no VIP")?;
    Ok(a.split('/').next().unwrap_or(a).to_owned())
}

/// A task that runs and is meant to.
#[derive(Debug, Clone)]
pub(crate) struct Task {
    /// `<service>.<slot>.<id>`: its container's name, and the page it serves.
    pub(crate) name: String,
    pub(crate) node: String,
    pub(crate) container: String,
    /// Its address on the service's first network.
    pub(crate) ip: String,
}

/// Every task of service `name` that runs and is meant to, as `h` sees them.
pub(crate) fn running(h: &FakeHost, name: &str) -> Result<Vec<Task>> {
    let svc = get(h, &format!("/services/{name}"))?;
    let id = svc["ID"].as_str().context("service ID")?;
    let tasks = get(h, &format!("/tasks?filters=%7B%22service%22%3A%5B%22{id}%22%5D%7D"))?;
    let mut out = vec![];
    for t in tasks.as_array().context("tasks")? {
        if t["ServiceID"] != id
            || t["DesiredState"] != "running"
            || t["Status"]["State"] != "running"
        {
            continue;
        }
        let ip = t["NetworksAttachments"][0]["Addresses"][0].as_str().unwrap_or_default();
        out.push(Task {
            name: format!(
                "{name}.{}.{}",
                t["Slot"].as_u64().map_or_else(|| t["NodeID"].to_string(), |s| s.to_string()),
                t["ID"].as_str().unwrap_or_default()
            ),
            node: t["NodeID"].as_str().unwrap_or_default().to_owned(),
            container: t["Status"]["ContainerStatus"]["ContainerID"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            ip: ip.split('/').next().unwrap_or(ip).to_owned(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Polls `f` every 50 ms for up to `secs`; an error naming `what` if it never held.
pub(crate) fn wait_until(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<Duration> {
    let t = Instant::now();
    let mut last = None;
    loop {
        match f() {
            Ok(true) => return Ok(t.elapsed()),
            Ok(false) => {}
            Err(e) => last = Some(e),
        }
        if t.elapsed() > Duration::from_secs(secs) {
            match last {
                Some(e) => bail!("{what}: not after {secs} s (last error: {e:#})"),
                None => bail!("{what}: not after {secs} s"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until service `name` runs exactly `n` tasks on `h`'s view; returns them.
pub(crate) fn wait_running(h: &FakeHost, name: &str, n: usize, secs: u64) -> Result<Vec<Task>> {
    let mut tasks = vec![];
    wait_until(&format!("{n} running tasks of {name}"), secs, || {
        tasks = running(h, name)?;
        Ok(tasks.len() == n && tasks.iter().all(|t| !t.ip.is_empty()))
    })?;
    Ok(tasks)
}

/// How many containers of service `name` exist on `h` (any state).
pub(crate) fn containers_of(h: &FakeHost, name: &str) -> Result<usize> {
    let filter = format!("label=com.docker.swarm.service.name={name}");
    Ok(docker(h, &["ps", "-aq", "--filter", &filter])?.lines().count())
}

/// Container `c`'s network namespace path on `h`.
pub(crate) fn sandbox(h: &FakeHost, c: &str) -> Result<String> {
    let s = docker(h, &["inspect", "-f", "{{.NetworkSettings.SandboxKey}}", c])?;
    if s.is_empty() {
        bail!("{c} has no sandbox");
    }
    Ok(s)
}

/// Each node's fake host ([`host_of`]), id and state (`ready`, `down`).
pub(crate) fn nodes(h: &FakeHost) -> Result<Vec<(String, String, String)>> {
    let v = get(h, "/nodes")?;
    Ok(v.as_array()
        .context("nodes")?
        .iter()
        .map(|n| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (host_of(n), s(&n["ID"]), s(&n["Status"]["State"]))
        })
        .collect())
}

/// The fake host of the node that leads ([`host_of`]), on `h`'s view.
pub(crate) fn leader(h: &FakeHost) -> Result<Option<String>> {
    let v = get(h, "/nodes")?;
    Ok(v.as_array()
        .context("nodes")?
        .iter()
        .find_map(|n| (n["ManagerStatus"]["Leader"] == true).then(|| host_of(n))))
}

/// A node's fake host: its label `host` (the netlab's daemons have `--label host=<name>`),
/// else its hostname.
fn host_of(n: &Value) -> String {
    let label = n["Spec"]["Labels"]["host"].as_str();
    label.or(n["Description"]["Hostname"].as_str()).unwrap_or_default().to_owned()
}

/// A counter or histogram sum/count of the daemon's Prometheus metrics (`GET /metrics`),
/// summed over the series whose name is `name` and whose labels contain `labels`.
pub(crate) fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (n, rest) = key.split_once('{').unwrap_or((key, ""));
            (n == name && rest.contains(labels)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// `GET /metrics` of `h`'s daemon.
pub(crate) fn metrics(h: &FakeHost) -> Result<String> {
    let (code, body) = h.try_api("GET", "/metrics", None)?;
    if code != 200 {
        bail!("GET /metrics: {code}");
    }
    Ok(body)
}

/// Lines of `nft list ruleset` on `h`, sorted (to count what changed: a multiset diff).
pub(crate) fn ruleset(h: &FakeHost) -> Vec<String> {
    let out = h.sh("nft list ruleset");
    let mut v: Vec<String> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_owned()).collect();
    v.sort();
    v
}

/// Lines added and removed between two sorted [`ruleset`] listings.
pub(crate) fn ruleset_diff(before: &[String], after: &[String]) -> (usize, usize) {
    let (mut i, mut j, mut added, mut removed) = (0, 0, 0, 0);
    while i < before.len() || j < after.len() {
        match (before.get(i), after.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                removed += 1;
                i += 1;
            }
            (Some(_), Some(_)) | (None, Some(_)) => {
                added += 1;
                j += 1;
            }
            (Some(_), None) => {
                removed += 1;
                i += 1;
            }
            (None, None) => break,
        }
    }
    (added, removed)
}

/// The machine's load averages (1, 5, 15 min), as `/proc/loadavg` says.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::{metric, ruleset_diff};

    #[test]
    fn diff_counts_lines_added_and_removed() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(ruleset_diff(&s(&["a", "b", "b", "c"]), &s(&["b", "c", "d", "e"])), (2, 2));
        assert_eq!(ruleset_diff(&s(&[]), &s(&["a"])), (1, 0));
    }

    #[test]
    fn metric_sums_matching_series() {
        let text = "# HELP x\ncove_firewall_sync_seconds_count{write=\"full\"} 2\n\
                    cove_firewall_sync_seconds_count{write=\"elements\"} 5\n\
                    cove_firewall_sync_seconds_sum{write=\"elements\"} 0.25\n";
        assert_eq!(metric(text, "cove_firewall_sync_seconds_count", "elements"), 5.0);
        assert_eq!(metric(text, "cove_firewall_sync_seconds_count", ""), 7.0);
        assert_eq!(metric(text, "cove_firewall_sync_seconds_sum", "elements"), 0.25);
    }
}
