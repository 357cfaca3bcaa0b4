//! `/_ping`, `/version`, `/info`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::json::ok;
use crate::{AppState, API_VERSION, MIN_API_VERSION, VERSION};

/// `GET|HEAD /_ping`. `Swarm: active/manager` when this host is a node of a cluster (of
/// one, without a cluster store): Docker's CLI shows its `service`, `node` and `stack`
/// commands only then.
pub(crate) async fn ping(State(st): State<AppState>) -> Response {
    let swarm = if st.ctl.in_cluster() { "active/manager" } else { "inactive" };
    ping_response(swarm)
}

pub(crate) fn ping_response(swarm: &'static str) -> Response {
    (
        [
            ("api-version", API_VERSION),
            ("ostype", "linux"),
            ("docker-experimental", "false"),
            ("swarm", swarm),
            ("cache-control", "no-cache, no-store, must-revalidate"),
            ("pragma", "no-cache"),
            ("content-type", "text/plain; charset=utf-8"),
        ],
        "OK",
    )
        .into_response()
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned()).unwrap_or_default()
}

fn kernel_version() -> String {
    read_trimmed("/proc/sys/kernel/osrelease")
}

/// Go's name of the architecture (`amd64`, `arm64`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The `GET /version` object.
pub(crate) fn version_json() -> serde_json::Value {
    let kernel = kernel_version();
    json!({
        "Platform": { "Name": "Cove" },
        "Components": [{
            "Name": "Engine",
            "Version": VERSION,
            "Details": {
                "ApiVersion": API_VERSION,
                "MinAPIVersion": MIN_API_VERSION,
                "Os": "linux",
                "Arch": go_arch(),
                "KernelVersion": kernel,
                "GitCommit": "",
                "GoVersion": "",
                "BuildTime": "",
                "Experimental": "false",
            }
        }],
        "Version": VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    })
}

/// `GET /version`.
pub(crate) async fn version() -> Response {
    ok(&version_json())
}

fn mem_total() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// `GET /info`: the fields clients look at.
pub(crate) async fn info(State(st): State<AppState>) -> Response {
    let containers = st.ctl.container_list().await;
    let count =
        |s: cove_model::Status| containers.iter().filter(|c| c.record.state.status == s).count();
    let running = count(cove_model::Status::Running);
    let images = st.ctl.image_list().await.map(|i| i.len()).unwrap_or(0);
    let hostname = read_trimmed("/proc/sys/kernel/hostname");
    let data_root = st.ctl.config().data_root.display().to_string();
    let id: String = Sha256::digest(format!("{hostname}\0{data_root}").as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02X}"))
        .collect();
    let networks = st.ctl.network_list().await;
    let (cluster_store, cluster_advertise) = st.ctl.cluster_info().unwrap_or_default();
    let mut plugins = vec!["bridge", "host", "null"];
    if st.ctl.in_cluster() {
        plugins.push("overlay");
    }
    let swarm = crate::swarm::swarm_info(st.ctl.swarm_view().ok().flatten().as_ref());
    ok(&json!({
        "ID": id,
        "Containers": containers.len(),
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": containers.len() - running,
        "Images": images,
        "Driver": "overlay",
        "Plugins": { "Volume": [], "Network": plugins, "Authorization": null, "Log": ["json-file"] },
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "NEventsListener": st.ctl.events_listeners(),
        "KernelVersion": kernel_version(),
        "OperatingSystem": "Cove",
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "",
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total(),
        "DockerRootDir": data_root,
        "Name": hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": VERSION,
        "Runtimes": { "runc": { "path": "runc" } },
        "DefaultRuntime": "runc",
        "Swarm": swarm,
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "SecurityOptions": [],
        "Warnings": null,
        "Networks": networks.len(),
        "ClusterStore": cluster_store,
        "ClusterAdvertise": cluster_advertise,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ping_headers() {
        let r = ping_response("inactive");
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert_eq!(h["api-version"], API_VERSION);
        assert_eq!(h["ostype"], "linux");
        assert_eq!(h["docker-experimental"], "false");
        assert_eq!(h["cache-control"], "no-cache, no-store, must-revalidate");
        assert_eq!(h["pragma"], "no-cache");
        assert_eq!(h["swarm"], "inactive");
    }

    #[test]
    fn version_shape() {
        let v = version_json();
        assert_eq!(v["Version"], VERSION);
        assert_eq!(v["ApiVersion"], "1.50");
        assert_eq!(v["MinAPIVersion"], "1.41");
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Components"][0]["Name"], "Engine");
        assert_eq!(v["Components"][0]["Details"]["ApiVersion"], "1.50");
        assert_eq!(v["Platform"]["Name"], "Cove");
        assert!(v["KernelVersion"].is_string());
    }
}
