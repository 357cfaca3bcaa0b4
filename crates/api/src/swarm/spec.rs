//! Docker's `ServiceSpec` (the body of `POST /services/create` and `/services/{id}/update`)
//! to the controller's [`ServiceRequest`]: parsed once, here, with a 400 naming the field
//! for anything malformed and a 501 for what Cove does not do (rather than accepting a
//! spec and silently ignoring part of it).

use std::collections::BTreeMap;

use cove_controller::ServiceRequest;
use cove_model::{
    Constraint, EndpointMode, Proto, PublishMode, ServiceMode, ServicePlan, ServicePort,
    TaskTemplate,
};
use serde_json::Value;

use crate::ApiError;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg.into())
}

/// A struct field of Docker's JSON: Go's decoder matches field names case-insensitively
/// (docker-py sends `"replicated"` for `Replicated`), so the exact name first, then any
/// case.
fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.get(name).or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// [`field`] on an optional value.
fn sub<'a>(v: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    v.and_then(|v| field(v, name))
}

fn strings(v: Option<&Value>, field: &str) -> Result<Vec<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("{field}: expected strings")))
            })
            .collect(),
        Some(_) => Err(bad(format!("{field}: expected an array of strings"))),
    }
}

fn labels(v: Option<&Value>, field: &str) -> Result<BTreeMap<String, String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| bad(format!("{field}.{k}: expected a string")))
            })
            .collect(),
        Some(_) => Err(bad(format!("{field}: expected an object of strings"))),
    }
}

fn string(v: Option<&Value>, field: &str) -> Result<String, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad(format!("{field}: expected a string"))),
    }
}

/// Fields Cove refuses when they are set: accepting them would run something other than
/// what was asked.
const UNSUPPORTED_CONTAINER: &[(&str, &str)] = &[
    ("Mounts", "mounts"),
    ("Secrets", "secrets"),
    ("Configs", "configs"),
    ("Privileges", "privileges"),
];

/// Whether a value asks for something: not null, empty, false, zero or made only of those
/// (`docker stack deploy` sends `"Privileges": {"CredentialSpec": null, ...}`).
fn non_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Array(a)) => a.iter().any(|x| non_empty(Some(x))),
        Some(Value::Object(o)) => o.values().any(|x| non_empty(Some(x))),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::Bool(true)) => true,
    }
}

/// Parse a service spec. Network targets stay as the client named them (the controller
/// resolves them); the returned spec has them replaced by the controller afterwards.
pub(crate) fn parse(spec: Value) -> Result<ServiceRequest, ApiError> {
    if !spec.is_object() {
        return Err(bad("service spec: expected a JSON object"));
    }
    let obj = &spec;
    let name = string(field(obj, "Name"), "Name")?;
    if name.is_empty() {
        return Err(bad("service spec: Name must be set"));
    }
    let tt = field(obj, "TaskTemplate").filter(|t| t.is_object());
    let Some(cs) = sub(tt, "ContainerSpec").filter(|c| c.is_object()) else {
        return Err(bad("TaskTemplate.ContainerSpec: a container spec is required"));
    };
    if non_empty(sub(tt, "PluginSpec")) {
        return Err(ApiError::not_implemented("plugin services are not supported by Cove"));
    }
    for (key, what) in UNSUPPORTED_CONTAINER {
        if non_empty(field(cs, key)) {
            return Err(ApiError::not_implemented(format!(
                "TaskTemplate.ContainerSpec.{key}: {what} are not supported by Cove's services"
            )));
        }
    }
    let task = TaskTemplate {
        image: string(field(cs, "Image"), "ContainerSpec.Image")?,
        command: strings(field(cs, "Command"), "ContainerSpec.Command")?,
        args: strings(field(cs, "Args"), "ContainerSpec.Args")?,
        env: strings(field(cs, "Env"), "ContainerSpec.Env")?,
        labels: labels(field(cs, "Labels"), "ContainerSpec.Labels")?,
        hostname: string(field(cs, "Hostname"), "ContainerSpec.Hostname")?,
        dir: string(field(cs, "Dir"), "ContainerSpec.Dir")?,
    };
    if task.image.is_empty() {
        return Err(bad("ContainerSpec: image reference must be provided"));
    }
    let mode = parse_mode(field(obj, "Mode"))?;
    // Networks: the task template's, or the deprecated top-level field.
    let nets =
        sub(tt, "Networks").filter(|v| non_empty(Some(v))).or_else(|| field(obj, "Networks"));
    let networks = parse_networks(nets)?;
    let constraints = sub(tt, "Placement")
        .map(|p| strings(field(p, "Constraints"), "Placement.Constraints"))
        .transpose()?
        .unwrap_or_default()
        .iter()
        .map(|c| c.parse::<Constraint>().map_err(|e| bad(e.0)))
        .collect::<Result<Vec<_>, _>>()?;
    let (endpoint_mode, ports) = parse_endpoint(field(obj, "EndpointSpec"))?;
    let plan = ServicePlan {
        name,
        labels: labels(field(obj, "Labels"), "Labels")?,
        task,
        mode,
        networks: vec![],
        endpoint_mode,
        ports,
        constraints,
    };
    let spec = with_canonical_mode(spec, plan.mode);
    Ok(ServiceRequest { spec, plan, networks })
}

/// The spec with its `Mode` spelled as Docker returns it (`{"Replicated": {"Replicas":
/// N}}` or `{"Global": {}}`), whatever case the client used: clients read it back by
/// those names.
fn with_canonical_mode(mut spec: Value, mode: ServiceMode) -> Value {
    if let Some(o) = spec.as_object_mut() {
        o.retain(|k, _| !k.eq_ignore_ascii_case("Mode"));
        let m = match mode {
            ServiceMode::Replicated { replicas } => {
                serde_json::json!({ "Replicated": { "Replicas": replicas } })
            }
            ServiceMode::Global => serde_json::json!({ "Global": {} }),
        };
        o.insert("Mode".into(), m);
    }
    spec
}

fn parse_mode(v: Option<&Value>) -> Result<ServiceMode, ApiError> {
    let Some(m) = v.filter(|m| m.is_object()) else {
        return Ok(ServiceMode::Replicated { replicas: 1 });
    };
    if field(m, "Global").is_some() {
        return Ok(ServiceMode::Global);
    }
    if field(m, "ReplicatedJob").is_some() || field(m, "GlobalJob").is_some() {
        return Err(ApiError::not_implemented("job services are not supported by Cove"));
    }
    let replicas = match sub(field(m, "Replicated"), "Replicas") {
        None | Some(Value::Null) => 1,
        Some(n) => n.as_u64().ok_or_else(|| bad("Mode.Replicated.Replicas: expected a count"))?,
    };
    Ok(ServiceMode::Replicated { replicas })
}

fn parse_networks(v: Option<&Value>) -> Result<Vec<(String, Vec<String>)>, ApiError> {
    let Some(Value::Array(a)) = v else { return Ok(vec![]) };
    a.iter()
        .enumerate()
        .map(|(i, n)| {
            let target = string(field(n, "Target"), &format!("Networks[{i}].Target"))?;
            if target.is_empty() {
                return Err(bad(format!("Networks[{i}]: Target must be set")));
            }
            Ok((target, strings(field(n, "Aliases"), &format!("Networks[{i}].Aliases"))?))
        })
        .collect()
}

fn parse_endpoint(v: Option<&Value>) -> Result<(EndpointMode, Vec<ServicePort>), ApiError> {
    let Some(e) = v.filter(|e| e.is_object()) else { return Ok((EndpointMode::Vip, vec![])) };
    let mode = match field(e, "Mode").and_then(Value::as_str).unwrap_or("") {
        "" | "vip" => EndpointMode::Vip,
        "dnsrr" => EndpointMode::Dnsrr,
        other => {
            return Err(bad(format!("EndpointSpec.Mode: unknown mode {other:?} (vip, dnsrr)")))
        }
    };
    let mut ports = Vec::new();
    if let Some(Value::Array(a)) = field(e, "Ports") {
        for (i, p) in a.iter().enumerate() {
            let at = format!("EndpointSpec.Ports[{i}]");
            let proto = match field(p, "Protocol").and_then(Value::as_str).unwrap_or("tcp") {
                "" => Proto::Tcp,
                s => s.parse::<Proto>().map_err(|e| bad(format!("{at}.Protocol: {e}")))?,
            };
            let port = |key: &str| -> Result<Option<u16>, ApiError> {
                match field(p, key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(n) => match n.as_u64() {
                        Some(0) => Ok(None),
                        Some(n) if n <= 65535 => Ok(Some(n as u16)),
                        _ => Err(bad(format!("{at}.{key}: invalid port {n}"))),
                    },
                }
            };
            let target =
                port("TargetPort")?.ok_or_else(|| bad(format!("{at}: TargetPort must be set")))?;
            let mode = match field(p, "PublishMode").and_then(Value::as_str).unwrap_or("") {
                "" | "ingress" => PublishMode::Ingress,
                "host" => PublishMode::Host,
                other => {
                    return Err(bad(format!(
                        "{at}.PublishMode: unknown mode {other:?} (ingress, host)"
                    )))
                }
            };
            ports.push(ServicePort { proto, target, published: port("PublishedPort")?, mode });
        }
    }
    Ok((mode, ports))
}

/// The spec as stored: network targets replaced by the ids the controller resolved (as
/// swarmkit stores them), in the task template, where current clients put them.
pub(crate) fn with_network_ids(mut spec: Value, ids: &[String]) -> Value {
    let nets: Vec<Value> = {
        let tt = sub(field(&spec, "TaskTemplate"), "Networks");
        let src = tt.filter(|v| non_empty(Some(v))).or_else(|| field(&spec, "Networks"));
        match src {
            Some(Value::Array(a)) => a
                .iter()
                .zip(ids)
                .map(|(n, id)| {
                    let mut n = n.clone();
                    n["Target"] = Value::String(id.clone());
                    n
                })
                .collect(),
            _ => vec![],
        }
    };
    if let Some(obj) = spec.as_object_mut() {
        obj.remove("Networks");
    }
    if !nets.is_empty() {
        spec["TaskTemplate"]["Networks"] = Value::Array(nets);
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docker_cli_spec() -> Value {
        // What `docker service create -d --name web --replicas 3 --network ov1
        // -p 8080:80 --constraint node.hostname==h2 bb httpd -f -p 80` sends.
        json!({
            "Name": "web",
            "Labels": {},
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "bb",
                    "Args": ["httpd", "-f", "-p", "80"],
                    "Init": false,
                    "StopGracePeriod": 10000000000u64,
                    "DNSConfig": {},
                    "Isolation": "default"
                },
                "Resources": { "Limits": {}, "Reservations": {} },
                "RestartPolicy": { "Condition": "any", "MaxAttempts": 0 },
                "Placement": { "Constraints": ["node.hostname==h2"] },
                "Networks": [{ "Target": "ov1" }],
                "ForceUpdate": 0,
                "Runtime": "container"
            },
            "Mode": { "Replicated": { "Replicas": 3 } },
            "UpdateConfig": { "Parallelism": 1, "FailureAction": "pause", "Order": "stop-first" },
            "EndpointSpec": {
                "Mode": "vip",
                "Ports": [{ "Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress" }]
            }
        })
    }

    #[test]
    fn the_docker_cli_spec_parses() {
        let r = parse(docker_cli_spec()).unwrap();
        assert_eq!(r.plan.name, "web");
        assert_eq!(r.plan.task.image, "bb");
        assert_eq!(r.plan.task.args, ["httpd", "-f", "-p", "80"]);
        assert_eq!(r.plan.mode, ServiceMode::Replicated { replicas: 3 });
        assert_eq!(r.networks, [("ov1".to_string(), vec![])]);
        assert_eq!(r.plan.constraints.len(), 1);
        assert_eq!(
            r.plan.ports,
            [ServicePort {
                proto: Proto::Tcp,
                target: 80,
                published: Some(8080),
                mode: PublishMode::Ingress
            }]
        );
    }

    #[test]
    fn bad_specs_name_the_field() {
        let mut s = docker_cli_spec();
        s["EndpointSpec"]["Ports"][0]["PublishMode"] = json!("everywhere");
        assert!(parse(s).unwrap_err().message.contains("EndpointSpec.Ports[0].PublishMode"));
        let mut s = docker_cli_spec();
        s["Mode"] = json!({ "Replicated": { "Replicas": "three" } });
        assert!(parse(s).unwrap_err().message.contains("Replicas"));
        let mut s = docker_cli_spec();
        s["TaskTemplate"]["Placement"]["Constraints"] = json!(["node.hostname=h2"]);
        assert!(parse(s).unwrap_err().message.contains("==, !="));
        let mut s = docker_cli_spec();
        s["TaskTemplate"]["ContainerSpec"]["Mounts"] = json!([{ "Type": "volume" }]);
        let e = parse(s).unwrap_err();
        assert_eq!(e.status, 501);
        assert!(e.message.contains("Mounts"), "{}", e.message);
        let mut s = docker_cli_spec();
        s["Mode"] = json!({ "ReplicatedJob": {} });
        assert_eq!(parse(s).unwrap_err().status, 501);
        assert!(parse(json!({ "Name": "x" })).unwrap_err().message.contains("ContainerSpec"));
        assert!(parse(json!([])).is_err());
    }

    #[test]
    fn field_names_match_in_any_case_and_the_mode_is_stored_canonical() {
        // docker-py's ServiceMode('replicated', replicas=2).
        let mut s = docker_cli_spec();
        s["Mode"] = json!({ "replicated": { "Replicas": 2 } });
        s["TaskTemplate"]["ContainerSpec"]["Privileges"] =
            json!({ "CredentialSpec": null, "SELinuxContext": null });
        let r = parse(s).unwrap();
        assert_eq!(r.plan.mode, ServiceMode::Replicated { replicas: 2 });
        assert_eq!(r.spec["Mode"], json!({ "Replicated": { "Replicas": 2 } }));
    }

    #[test]
    fn global_mode_and_defaults() {
        let mut s = docker_cli_spec();
        s["Mode"] = json!({ "Global": {} });
        s.as_object_mut().unwrap().remove("EndpointSpec");
        let r = parse(s).unwrap();
        assert_eq!(r.plan.mode, ServiceMode::Global);
        assert_eq!(r.plan.endpoint_mode, EndpointMode::Vip);
        assert!(r.plan.ports.is_empty());
    }

    #[test]
    fn stored_specs_name_networks_by_id_in_the_task_template() {
        let mut s = docker_cli_spec();
        s["TaskTemplate"].as_object_mut().unwrap().remove("Networks");
        s["Networks"] = json!([{ "Target": "ov1", "Aliases": ["a"] }]);
        let stored = with_network_ids(s, &["abc123".into()]);
        assert!(stored.get("Networks").is_none());
        assert_eq!(
            stored["TaskTemplate"]["Networks"],
            json!([{ "Target": "abc123", "Aliases": ["a"] }])
        );
    }
}
