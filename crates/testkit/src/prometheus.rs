//! [`Prometheus`]: a real Prometheus server (Debian's `prometheus` 2.42) run inside a fake
//! host, scraping a target there; [`promtool_check_metrics`]; [`require_prometheus!`];
//! and [`FakeHost::http_get`], a plain HTTP GET from inside a fake host.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::env::have_command;
use crate::host::{tail, FakeHost};

/// Where the server listens, inside the fake host's own network namespace.
const LISTEN: &str = "127.0.0.1:9090";
/// How long the server may take to start and scrape its target up (it takes ~2 s here).
const UP_LIMIT: Duration = Duration::from_secs(60);

/// Skip the current test (with [`skip!`](crate::skip)) when `prometheus` or `promtool` is
/// not installed and `COVE_REQUIRE_PROMETHEUS` is unset; panics when one is missing but
/// required.
#[macro_export]
macro_rules! require_prometheus {
    () => {
        if let Some(why) = $crate::Prometheus::missing() {
            $crate::skip!("{}", why);
        }
    };
}

impl FakeHost {
    /// `GET path` from the TCP server at `addr` (`127.0.0.1:9323`), from inside the fake
    /// host's network namespace: the status and the body.
    pub fn http_get(&self, addr: &str, path: &str) -> std::io::Result<(u16, String)> {
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")))?;
        self.in_netns(|| crate::http::get_tcp(addr, path, Duration::from_secs(10)))
    }
}

/// `promtool check metrics` on `exposition`: `Err` with promtool's complaints (lint
/// included) when it finds any.
pub fn promtool_check_metrics(exposition: &str) -> Result<(), String> {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run promtool: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(exposition.as_bytes()).map_err(|e| format!("write to promtool: {e}"))?;
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| format!("run promtool: {e}"))?;
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.trim().is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics ({}): {said}", out.status))
    }
}

/// A Prometheus server in a fake host, scraping one target every second; killed when
/// dropped (its data is in the fake host's directory, removed with it).
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    log: PathBuf,
}

impl Prometheus {
    /// Why the tests cannot run a Prometheus here (`None`: they can). Panics instead when
    /// `COVE_REQUIRE_PROMETHEUS` is set.
    pub fn missing() -> Option<String> {
        let absent: Vec<&str> =
            ["prometheus", "promtool"].into_iter().filter(|c| !have_command(c)).collect();
        if absent.is_empty() {
            return None;
        }
        let why = format!(
            "{} not installed (Debian prometheus; scripts/setup.sh installs it)",
            absent.join(" and ")
        );
        if std::env::var_os("COVE_REQUIRE_PROMETHEUS").is_some() {
            panic!("netlab: {why}, and COVE_REQUIRE_PROMETHEUS is set");
        }
        Some(why)
    }

    /// Start a server in `h` (listening on 127.0.0.1:9090 there) that scrapes
    /// `http://<target>/metrics` as job `cove`.
    #[track_caller]
    pub fn start(h: &FakeHost, target: &str) -> Prometheus {
        let dir = h.dir().join("prometheus");
        std::fs::create_dir_all(dir.join("data"))
            .unwrap_or_else(|e| panic!("netlab: creating {}: {e}", dir.display()));
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: cove\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap_or_else(|e| panic!("netlab: writing {}: {e}", config.display()));
        let log = dir.join("prometheus.log");
        let log_file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("netlab: creating {}: {e}", log.display()));
        let (config, data) = (config.display().to_string(), dir.join("data").display().to_string());
        let child = h
            .command(&[
                "prometheus",
                &format!("--config.file={config}"),
                &format!("--storage.tsdb.path={data}"),
                &format!("--web.listen-address={LISTEN}"),
            ])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("netlab: starting prometheus: {e}"));
        Prometheus { child, log }
    }

    /// Run the instant query `expr` through the server's HTTP API; its `data.result`.
    pub fn query(&self, h: &FakeHost, expr: &str) -> Result<serde_json::Value, String> {
        let path = format!("/api/v1/query?query={}", encode(expr));
        let (status, body) = h.http_get(LISTEN, &path).map_err(|e| format!("GET {path}: {e}"))?;
        let v: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {path}: {status}: {e}: {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("GET {path}: {status}: {body}"));
        }
        Ok(v["data"]["result"].clone())
    }

    /// Wait until the server reports its target up (`up == 1`), polling its HTTP API; on
    /// timeout, panic with the targets' state (`lastError`) and the server's log.
    #[track_caller]
    pub fn wait_up(&mut self, h: &FakeHost) {
        let deadline = Instant::now() + UP_LIMIT;
        loop {
            let last = match self.query(h, "up") {
                Ok(r) if r[0]["value"][1] == "1" => return,
                Ok(r) => format!("up = {r}"),
                Err(e) => e,
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("netlab: prometheus exited ({status}):\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                let targets = h
                    .http_get(LISTEN, "/api/v1/targets")
                    .map(|(_, b)| b)
                    .unwrap_or_else(|e| e.to_string());
                panic!(
                    "netlab: prometheus did not scrape its target up in {UP_LIMIT:?}: {last}\n\
                     targets: {targets}\nlog:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Prometheus {
    fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 30)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `expr` percent-encoded for a query string.
fn encode(expr: &str) -> String {
    expr.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(super::encode(r#"up{job="cove"}"#), "up%7Bjob%3D%22cove%22%7D");
    }
}
