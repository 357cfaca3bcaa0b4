//! `cove service create|ls|ps|inspect|scale|update|rm`: the same routes as `docker
//! service` (Docker's Swarm API subset the daemon serves), with Docker's flag names.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{encode, Client};
use super::report;

/// Service commands.
#[derive(Debug, Subcommand)]
pub enum ServiceCmd {
    /// Create a service
    Create(Box<CreateArgs>),
    /// List services
    #[command(alias = "list")]
    Ls(LsArgs),
    /// List the tasks of services
    Ps(PsArgs),
    /// Show services in JSON
    Inspect(NamesArgs),
    /// Set the number of replicas: `web=5`
    Scale(ScaleArgs),
    /// Change a service
    Update(Box<UpdateArgs>),
    /// Remove services
    #[command(alias = "remove")]
    Rm(NamesArgs),
}

/// `cove service create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Service name.
    #[arg(long)]
    pub name: String,
    /// Number of tasks (replicated mode).
    #[arg(long)]
    pub replicas: Option<u64>,
    /// `replicated` or `global`.
    #[arg(long, default_value = "replicated")]
    pub mode: String,
    /// Networks to attach the tasks to.
    #[arg(long = "network")]
    pub networks: Vec<String>,
    /// `vip` or `dnsrr`.
    #[arg(long, default_value = "vip")]
    pub endpoint_mode: String,
    /// Publish a port: `8080:80[/udp]` (routing mesh) or
    /// `published=8080,target=80,protocol=tcp,mode=host`.
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Placement constraints (`node.hostname==h2`).
    #[arg(long = "constraint")]
    pub constraints: Vec<String>,
    /// Environment variables.
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Service labels.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Task hostname (Go templates such as `{{.Task.Name}}` are expanded).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Image.
    pub image: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true)]
    pub args: Vec<String>,
}

/// `cove service ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `cove service ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Services.
    #[arg(required = true)]
    pub services: Vec<String>,
}

/// Service names or ids.
#[derive(Debug, Args)]
pub struct NamesArgs {
    /// Services.
    #[arg(required = true)]
    pub services: Vec<String>,
}

/// `cove service scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// `SERVICE=REPLICAS`.
    #[arg(required = true)]
    pub scales: Vec<String>,
}

/// `cove service update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Number of tasks.
    #[arg(long)]
    pub replicas: Option<u64>,
    /// New image.
    #[arg(long)]
    pub image: Option<String>,
    /// Add or change environment variables.
    #[arg(long = "env-add")]
    pub env_add: Vec<String>,
    /// Publish another port (as `create -p`).
    #[arg(long = "publish-add")]
    pub publish_add: Vec<String>,
    /// Service.
    pub service: String,
}

/// A `-p` value as Docker's `PortConfig`.
fn port_config(spec: &str) -> anyhow::Result<Value> {
    if spec.contains('=') {
        let mut p = json!({ "Protocol": "tcp", "PublishMode": "ingress" });
        for kv in spec.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--publish {spec}: expected key=value"))?;
            match k {
                "published" => p["PublishedPort"] = json!(v.parse::<u16>()?),
                "target" => p["TargetPort"] = json!(v.parse::<u16>()?),
                "protocol" => p["Protocol"] = json!(v),
                "mode" => p["PublishMode"] = json!(v),
                _ => anyhow::bail!("--publish {spec}: unknown key {k}"),
            }
        }
        return Ok(p);
    }
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let (published, target) = match ports.split_once(':') {
        Some((p, t)) => (Some(p.parse::<u16>()?), t.parse::<u16>()?),
        None => (None, ports.parse::<u16>()?),
    };
    let mut p = json!({ "Protocol": proto, "TargetPort": target, "PublishMode": "ingress" });
    if let Some(published) = published {
        p["PublishedPort"] = json!(published);
    }
    Ok(p)
}

fn labels(list: &[String]) -> Value {
    let m: serde_json::Map<String, Value> = list
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), json!(v)),
            None => (l.clone(), json!("")),
        })
        .collect();
    Value::Object(m)
}

/// The spec `create` sends.
fn create_spec(a: &CreateArgs) -> anyhow::Result<Value> {
    let mode = match a.mode.as_str() {
        "replicated" => json!({ "Replicated": { "Replicas": a.replicas.unwrap_or(1) } }),
        "global" if a.replicas.is_none() => json!({ "Global": {} }),
        "global" => anyhow::bail!("--replicas can only be used with replicated mode"),
        other => anyhow::bail!("--mode {other}: expected replicated or global"),
    };
    let ports = a.publish.iter().map(|p| port_config(p)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut cs = json!({ "Image": a.image, "Env": a.env, "Labels": {} });
    if !a.args.is_empty() {
        cs["Args"] = json!(a.args);
    }
    if let Some(h) = &a.hostname {
        cs["Hostname"] = json!(h);
    }
    let nets: Vec<Value> = a.networks.iter().map(|n| json!({ "Target": n })).collect();
    Ok(json!({
        "Name": a.name,
        "Labels": labels(&a.labels),
        "TaskTemplate": {
            "ContainerSpec": cs,
            "Placement": { "Constraints": a.constraints },
            "Networks": nets,
        },
        "Mode": mode,
        "EndpointSpec": { "Mode": a.endpoint_mode, "Ports": ports },
    }))
}

/// Run a service command.
pub async fn run(client: &Client, cmd: ServiceCmd) -> anyhow::Result<i32> {
    match cmd {
        ServiceCmd::Create(a) => {
            let spec = create_spec(&a)?;
            let v: Value =
                serde_json::from_slice(&client.post_json("/services/create", &spec).await?)?;
            println!("{}", v["ID"].as_str().unwrap_or_default());
            Ok(0)
        }
        ServiceCmd::Ls(a) => {
            let list: Value = serde_json::from_slice(&client.get("/services?status=true").await?)?;
            let list = list.as_array().cloned().unwrap_or_default();
            if a.quiet {
                list.iter().for_each(|s| println!("{}", s["ID"].as_str().unwrap_or_default()));
                return Ok(0);
            }
            println!(
                "{:<14}{:<20}{:<12}{:<10}{:<20}PORTS",
                "ID", "NAME", "MODE", "REPLICAS", "IMAGE"
            );
            for s in &list {
                let id = s["ID"].as_str().unwrap_or_default();
                let mode =
                    if s["Spec"]["Mode"].get("Global").is_some() { "global" } else { "replicated" };
                let st = &s["ServiceStatus"];
                let ports: Vec<String> = s["Endpoint"]["Ports"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|p| {
                                format!(
                                    "*:{}->{}/{}",
                                    p["PublishedPort"],
                                    p["TargetPort"],
                                    p["Protocol"].as_str().unwrap_or("tcp")
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "{:<14}{:<20}{:<12}{:<10}{:<20}{}",
                    &id[..id.len().min(12)],
                    s["Spec"]["Name"].as_str().unwrap_or_default(),
                    mode,
                    format!("{}/{}", st["RunningTasks"], st["DesiredTasks"]),
                    s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
                        .as_str()
                        .unwrap_or_default(),
                    ports.join(", ")
                );
            }
            Ok(0)
        }
        ServiceCmd::Ps(a) => {
            println!(
                "{:<14}{:<24}{:<16}{:<10}{:<10}ERROR",
                "ID", "NAME", "NODE", "DESIRED", "CURRENT"
            );
            let nodes: Value = serde_json::from_slice(&client.get("/nodes").await?)?;
            let host_of = |id: &str| {
                nodes
                    .as_array()
                    .and_then(|n| n.iter().find(|n| n["ID"] == id))
                    .map_or(String::new(), |n| {
                        n["Description"]["Hostname"].as_str().unwrap_or_default().to_string()
                    })
            };
            for svc in &a.services {
                let s: Value = serde_json::from_slice(
                    &client.get(&format!("/services/{}", encode(svc))).await?,
                )?;
                let name = s["Spec"]["Name"].as_str().unwrap_or_default();
                let filters = json!({ "service": { svc.as_str(): true } }).to_string();
                let tasks: Value = serde_json::from_slice(
                    &client.get(&format!("/tasks?filters={}", encode(&filters))).await?,
                )?;
                for t in tasks.as_array().cloned().unwrap_or_default() {
                    let id = t["ID"].as_str().unwrap_or_default();
                    let node = t["NodeID"].as_str().unwrap_or_default();
                    let slot =
                        t["Slot"].as_u64().map_or_else(|| node.to_string(), |s| s.to_string());
                    println!(
                        "{:<14}{:<24}{:<16}{:<10}{:<10}{}",
                        &id[..id.len().min(12)],
                        format!("{name}.{slot}"),
                        host_of(node),
                        t["DesiredState"].as_str().unwrap_or_default(),
                        t["Status"]["State"].as_str().unwrap_or_default(),
                        t["Status"]["Err"].as_str().unwrap_or_default()
                    );
                }
            }
            Ok(0)
        }
        ServiceCmd::Inspect(a) => {
            let mut out = Vec::new();
            let mut code = 0;
            for s in &a.services {
                match client.get(&format!("/services/{}", encode(s))).await {
                    Ok(b) => out.push(serde_json::from_slice::<Value>(&b)?),
                    Err(e) => {
                        report(&e);
                        code = 1;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(code)
        }
        ServiceCmd::Scale(a) => {
            let mut code = 0;
            for s in &a.scales {
                let Some((name, n)) = s.split_once('=') else {
                    anyhow::bail!("invalid scale specifier {s:?}: expected SERVICE=REPLICAS");
                };
                let n: u64 =
                    n.parse().map_err(|_| anyhow::anyhow!("invalid replicas value {n:?}"))?;
                let r = update(client, name, |spec| {
                    if spec["Mode"].get("Global").is_some() {
                        anyhow::bail!("scale can only be used with replicated mode");
                    }
                    spec["Mode"] = json!({ "Replicated": { "Replicas": n } });
                    Ok(())
                })
                .await;
                match r {
                    Ok(()) => println!("{name} scaled to {n}"),
                    Err(e) => {
                        report(&e);
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        ServiceCmd::Update(a) => {
            update(client, &a.service, |spec| {
                if let Some(n) = a.replicas {
                    spec["Mode"] = json!({ "Replicated": { "Replicas": n } });
                }
                let cs = &mut spec["TaskTemplate"]["ContainerSpec"];
                if let Some(i) = &a.image {
                    cs["Image"] = json!(i);
                }
                if !a.env_add.is_empty() {
                    let mut env: Vec<String> = cs["Env"]
                        .as_array()
                        .map(|e| e.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                    for add in &a.env_add {
                        let key = add.split('=').next().unwrap_or(add);
                        env.retain(|e| e.split('=').next() != Some(key));
                        env.push(add.clone());
                    }
                    cs["Env"] = json!(env);
                }
                for p in &a.publish_add {
                    let port = port_config(p)?;
                    let ports = &mut spec["EndpointSpec"]["Ports"];
                    if !ports.is_array() {
                        *ports = json!([]);
                    }
                    ports.as_array_mut().expect("an array").push(port);
                }
                Ok(())
            })
            .await?;
            println!("{}", a.service);
            Ok(0)
        }
        ServiceCmd::Rm(a) => {
            let mut code = 0;
            for s in &a.services {
                match client.delete(&format!("/services/{}", encode(s))).await {
                    Ok(_) => println!("{s}"),
                    Err(e) => {
                        report(&e);
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
    }
}

/// Read a service, change its spec, write it back at the version read.
async fn update(
    client: &Client,
    name: &str,
    change: impl FnOnce(&mut Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let s: Value =
        serde_json::from_slice(&client.get(&format!("/services/{}", encode(name))).await?)?;
    let version = s["Version"]["Index"].as_u64().unwrap_or(0);
    let mut spec = s["Spec"].clone();
    change(&mut spec)?;
    let path =
        format!("/services/{}/update?version={version}", encode(s["ID"].as_str().unwrap_or(name)));
    client.post_json(&path, &spec).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_flags_become_docker_port_configs() {
        assert_eq!(
            port_config("8080:80").unwrap(),
            json!({ "Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress" })
        );
        assert_eq!(port_config("53/udp").unwrap()["Protocol"], "udp");
        assert_eq!(
            port_config("published=8081,target=80,mode=host").unwrap()["PublishMode"],
            "host"
        );
        assert!(port_config("published=x,target=80").is_err());
        assert!(port_config("a=b").is_err());
    }
}
