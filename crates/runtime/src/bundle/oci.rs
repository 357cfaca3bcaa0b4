//! The OCI runtime config (`config.json`) for runc 1.1, as a pure function of the bundle
//! spec: Docker's defaults for capabilities, mounts, masked and read-only paths, devices.

use std::path::Path;

use serde_json::{json, Value};

use crate::{BundleNetwork, BundleSpec};

/// The PATH a container gets when its environment has none (Docker's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set.
pub(crate) const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The process environment: `env` plus PATH and HOSTNAME when absent (Docker puts them first).
pub(crate) fn process_env(env: &[String], hostname: &str) -> Vec<String> {
    let has = |key: &str| env.iter().any(|e| e.split('=').next() == Some(key));
    let mut out = Vec::with_capacity(env.len() + 2);
    if !has("PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has("HOSTNAME") && !hostname.is_empty() {
        out.push(format!("HOSTNAME={hostname}"));
    }
    out.extend(env.iter().cloned());
    out
}

fn device(kind: &str, major: Option<i64>, minor: Option<i64>, access: &str) -> Value {
    let mut d = json!({"allow": true, "type": kind, "access": access});
    if let Some(m) = major {
        d["major"] = json!(m);
    }
    if let Some(m) = minor {
        d["minor"] = json!(m);
    }
    d
}

/// Docker's RLIMIT_NOFILE for containers.
pub(crate) const DEFAULT_NOFILE: u64 = 1_048_576;

/// The config.json for `spec`, with the generated files of `bundle_dir` bind-mounted, joining
/// the network namespace at `netns` (None: the host's, i.e. no network namespace entry), with
/// RLIMIT_NOFILE `nofile` (soft and hard), in cgroup `cgroup`.
pub(crate) fn config(
    spec: &BundleSpec,
    bundle_dir: &Path,
    netns: Option<&Path>,
    nofile: u64,
    cgroup: &str,
) -> Value {
    let sandbox = spec.network == BundleNetwork::Sandbox;
    let caps: Vec<&str> = DEFAULT_CAPS.to_vec();
    let cwd = if spec.cwd.is_empty() { "/" } else { spec.cwd.as_str() };

    let sys = if sandbox {
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]})
    } else {
        // A fresh sysfs is only allowed in a network namespace we own; share the host's.
        json!({"destination": "/sys", "type": "bind", "source": "/sys",
               "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    };
    let etc = |name: &str| {
        json!({"destination": format!("/etc/{name}"), "type": "bind",
               "source": bundle_dir.join(name).to_string_lossy(),
               "options": ["rbind", "rprivate"]})
    };
    let mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        sys,
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]}),
        etc("resolv.conf"),
        etc("hostname"),
        etc("hosts"),
    ];

    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "ipc"})];
    if sandbox {
        namespaces.push(json!({"type": "uts"}));
    }
    namespaces.push(json!({"type": "mount"}));
    if let Some(p) = netns {
        namespaces.push(json!({"type": "network", "path": p.to_string_lossy()}));
    }

    let mut devices = vec![json!({"allow": false, "access": "rwm"})];
    devices.push(device("c", None, None, "m"));
    devices.push(device("b", None, None, "m"));
    for (major, minor) in
        [(1, 3), (1, 8), (1, 7), (5, 0), (1, 5), (1, 9), (5, 1), (5, 2), (10, 200)]
    {
        devices.push(device("c", Some(major), Some(minor), "rwm"));
    }
    devices.push(device("c", Some(136), None, "rwm"));

    let mut cfg = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": spec.args,
            "env": process_env(&spec.env, &spec.hostname),
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": false
        },
        "root": {"path": "rootfs", "readonly": false},
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
            "cgroupsPath": cgroup,
            "resources": {"devices": devices}
        }
    });
    if sandbox {
        cfg["hostname"] = json!(spec.hostname);
        if !spec.domainname.is_empty() {
            cfg["domainname"] = json!(spec.domainname);
        }
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(network: BundleNetwork) -> BundleSpec {
        BundleSpec {
            id: "c1".into(),
            image_id: "sha256:00".into(),
            args: vec!["sh".into(), "-c".into(), "echo hi".into()],
            env: vec!["FOO=bar".into()],
            cwd: String::new(),
            hostname: "box".into(),
            domainname: "example.org".into(),
            hosts: String::new(),
            resolv_conf: String::new(),
            network,
        }
    }

    fn destinations(cfg: &Value) -> Vec<String> {
        cfg["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap().into())
            .collect()
    }

    #[test]
    fn sandbox_config() {
        let cfg = config(
            &spec(BundleNetwork::Sandbox),
            Path::new("/b/c1"),
            Some(Path::new("/run/netns/x")),
            DEFAULT_NOFILE,
            "/cove/c1",
        );
        assert_eq!(cfg["ociVersion"], "1.0.2");
        let p = &cfg["process"];
        assert_eq!(p["terminal"], false);
        assert_eq!(p["user"], json!({"uid": 0, "gid": 0}));
        assert_eq!(p["args"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(p["env"], json!([format!("PATH={DEFAULT_PATH}"), "HOSTNAME=box", "FOO=bar"]));
        assert_eq!(p["cwd"], "/");
        assert_eq!(p["noNewPrivileges"], false);
        for set in ["bounding", "effective", "permitted"] {
            let caps = p["capabilities"][set].as_array().unwrap();
            assert_eq!(caps.len(), 14);
            assert!(caps.contains(&json!("CAP_NET_BIND_SERVICE")));
            assert!(!caps.contains(&json!("CAP_SYS_ADMIN")));
        }
        assert_eq!(
            p["rlimits"][0],
            json!({"type": "RLIMIT_NOFILE", "hard": 1048576, "soft": 1048576})
        );
        assert_eq!(cfg["root"], json!({"path": "rootfs", "readonly": false}));
        assert_eq!(cfg["hostname"], "box");
        assert_eq!(cfg["domainname"], "example.org");
        assert_eq!(
            destinations(&cfg),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/sys",
                "/sys/fs/cgroup",
                "/dev/mqueue",
                "/dev/shm",
                "/etc/resolv.conf",
                "/etc/hostname",
                "/etc/hosts"
            ]
        );
        assert_eq!(cfg["mounts"][3]["type"], "sysfs");
        assert_eq!(
            cfg["mounts"][9],
            json!({"destination": "/etc/hosts", "type": "bind", "source": "/b/c1/hosts", "options": ["rbind", "rprivate"]})
        );
        let l = &cfg["linux"];
        assert_eq!(
            l["namespaces"],
            json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
                   {"type": "network", "path": "/run/netns/x"}])
        );
        assert_eq!(l["cgroupsPath"], "/cove/c1");
        assert!(l["maskedPaths"].as_array().unwrap().contains(&json!("/proc/kcore")));
        assert!(l["readonlyPaths"].as_array().unwrap().contains(&json!("/proc/sys")));
        let devs = l["resources"]["devices"].as_array().unwrap();
        assert_eq!(devs[0], json!({"allow": false, "access": "rwm"}));
        assert!(devs.contains(
            &json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"})
        ));
    }

    #[test]
    fn host_network_config() {
        let cfg = config(
            &spec(BundleNetwork::Host),
            Path::new("/b/c1"),
            None,
            DEFAULT_NOFILE,
            "/cove/c1",
        );
        let ns: Vec<&str> = cfg["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["pid", "ipc", "mount"]);
        assert!(cfg.get("hostname").is_none());
        assert_eq!(cfg["mounts"][3]["type"], "bind");
        assert_eq!(cfg["mounts"][3]["source"], "/sys");
        // Docker sets HOSTNAME in host mode too (the caller passes the host's name).
        assert_eq!(
            cfg["process"]["env"],
            json!([format!("PATH={DEFAULT_PATH}"), "HOSTNAME=box", "FOO=bar"])
        );
    }

    #[test]
    fn sandbox_without_netns_has_no_network_entry() {
        let cfg = config(&spec(BundleNetwork::Sandbox), Path::new("/b"), None, 1024, "/cove/c1");
        let ns = cfg["linux"]["namespaces"].as_array().unwrap();
        assert!(!ns.iter().any(|n| n["type"] == "network"));
    }

    #[test]
    fn env_keeps_given_path_and_hostname() {
        let env = vec!["PATH=/bin".to_string(), "HOSTNAME=mine".to_string()];
        assert_eq!(process_env(&env, "box"), env);
        let mut s = spec(BundleNetwork::Sandbox);
        s.cwd = "/srv".into();
        assert_eq!(config(&s, Path::new("/b"), None, 1024, "/cove/c1")["process"]["cwd"], "/srv");
    }
}
