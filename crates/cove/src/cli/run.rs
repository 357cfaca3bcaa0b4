//! `cove create` and `cove run`: docker's container-create body, start, and the
//! foreground flow (attach or logs, wait, signal proxying, exit code).

use super::client::{with_query, Client, ReqBody};
use super::hijack::{hijack, print_response};
use super::ports::{parse_expose, parse_publish};
use super::value::Val;
use super::{is_status, kv_map, report};
use clap::{ArgAction, Args};
use cove_wire::{
    ContainerCreateRequest, EmptyObject, EndpointIpamConfig, EndpointSettings, HostConfig,
    NetworkingConfig, PortBinding,
};
use hyper::Method;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `cove run` / `cove create` (docker's names).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Print help
    #[arg(long, action = ArgAction::Help)]
    help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    detach: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    name: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    hostname: Option<String>,
    /// Container NIS domain name
    #[arg(long)]
    domainname: Option<String>,
    /// Username or UID
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// Connect a container to a network
    #[arg(long = "network", visible_alias = "net")]
    network: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    ip: Option<String>,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long)]
    ip6: Option<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address")]
    mac_address: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", visible_alias = "net-alias")]
    network_alias: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", visible_alias = "dns-opt")]
    dns_option: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    add_host: Vec<String>,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    expose: Vec<String>,
    /// Add link to another container
    #[arg(long)]
    link: Vec<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    entrypoint: Option<String>,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// IMAGE [COMMAND] [ARG...]
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "IMAGE"
    )]
    args: Vec<String>,
}

fn read_env_file(path: &PathBuf) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(env_entry)
        .collect())
}

/// `K=V` as is; a bare `K` takes our value of K, or is dropped when unset (docker).
fn env_entry(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

/// The `POST /containers/create` body. Errors are usage errors (exit 125).
pub fn create_body(a: &RunArgs) -> anyhow::Result<ContainerCreateRequest> {
    let (image, cmd) = a.args.split_first().ok_or_else(|| anyhow::anyhow!("requires an image"))?;
    let mut env = Vec::new();
    for f in &a.env_file {
        env.extend(read_env_file(f)?);
    }
    env.extend(a.env.iter().filter_map(|e| env_entry(e)));

    let mut exposed = BTreeMap::new();
    let mut bindings: BTreeMap<String, Option<Vec<PortBinding>>> = BTreeMap::new();
    for spec in &a.publish {
        let maps = parse_publish(spec).map_err(|e| {
            anyhow::anyhow!("invalid argument {spec:?} for \"-p, --publish\" flag: {e}")
        })?;
        for m in maps {
            exposed.insert(m.port.clone(), EmptyObject);
            let list = bindings.entry(m.port).or_insert_with(|| Some(Vec::new()));
            list.get_or_insert_with(Vec::new)
                .push(PortBinding { host_ip: m.host_ip, host_port: m.host_port });
        }
    }
    for spec in &a.expose {
        for port in parse_expose(spec).map_err(|e| anyhow::anyhow!("{e}"))? {
            exposed.insert(port, EmptyObject);
        }
    }

    let network_mode = a.network.first().cloned().unwrap_or_else(|| "default".into());
    let ipam = EndpointIpamConfig {
        ipv4_address: a.ip.clone().unwrap_or_default(),
        ipv6_address: a.ip6.clone().unwrap_or_default(),
    };
    let first = EndpointSettings {
        ipam_config: (a.ip.is_some() || a.ip6.is_some()).then_some(ipam),
        aliases: a.network_alias.clone(),
        mac_address: a.mac_address.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mut endpoints = BTreeMap::new();
    endpoints.insert(network_mode.clone(), Some(first));
    for extra in a.network.iter().skip(1) {
        endpoints.insert(extra.clone(), Some(EndpointSettings::default()));
    }

    Ok(ContainerCreateRequest {
        hostname: a.hostname.clone().unwrap_or_default(),
        domainname: a.domainname.clone().unwrap_or_default(),
        user: a.user.clone().unwrap_or_default(),
        attach_stdin: a.interactive && !a.detach,
        attach_stdout: !a.detach,
        attach_stderr: !a.detach,
        exposed_ports: exposed,
        tty: a.tty,
        open_stdin: a.interactive,
        stdin_once: a.interactive && !a.detach,
        env,
        cmd: (!cmd.is_empty()).then(|| cmd.to_vec()),
        image: image.clone(),
        working_dir: a.workdir.clone().unwrap_or_default(),
        entrypoint: a.entrypoint.as_ref().map(|e| vec![e.clone()]),
        labels: kv_map(&a.label),
        mac_address: String::new(),
        network_disabled: false,
        host_config: HostConfig {
            network_mode,
            port_bindings: bindings,
            publish_all_ports: a.publish_all,
            links: a.link.clone(),
            dns: a.dns.clone(),
            dns_options: a.dns_option.clone(),
            dns_search: a.dns_search.clone(),
            extra_hosts: a.add_host.clone(),
            auto_remove: a.rm,
        },
        networking_config: NetworkingConfig { endpoints_config: endpoints },
    })
}

/// Build the body (usage errors → 125) and POST it; returns the id.
async fn create_container(client: &Client, a: &RunArgs) -> Result<String, i32> {
    let body = create_body(a).map_err(|e| {
        eprintln!("cove: {e:#}");
        eprintln!("See 'cove run --help'.");
        125
    })?;
    let mut params = Vec::new();
    if let Some(n) = &a.name {
        params.push(("name", n.clone()));
    }
    let resp = client
        .post_json_val(&with_query("/containers/create", &params), &body)
        .await
        .map_err(|e| {
            report(&e);
            125
        })?;
    for w in resp.get("Warnings").map(Val::as_arr).unwrap_or(&[]) {
        eprintln!("WARNING: {}", w.to_text());
    }
    Ok(resp.get("Id").and_then(Val::as_str).unwrap_or_default().to_string())
}

/// `cove create`: prints the new container's id.
pub async fn create(client: &Client, a: RunArgs) -> anyhow::Result<i32> {
    match create_container(client, &a).await {
        Ok(id) => {
            println!("{id}");
            Ok(0)
        }
        Err(code) => Ok(code),
    }
}

/// docker's exit code for a failed start: 127 not found, 126 not executable, else 125.
fn start_error_code(e: &anyhow::Error) -> i32 {
    let msg = e.to_string();
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        127
    } else if msg.contains("permission denied") || msg.contains("is a directory") {
        126
    } else {
        125
    }
}

/// `cove run`.
pub async fn run(client: &Client, a: RunArgs) -> anyhow::Result<i32> {
    let id = match create_container(client, &a).await {
        Ok(id) => id,
        Err(code) => return Ok(code),
    };
    if a.detach {
        if let Err(e) = client.post(&format!("/containers/{id}/start")).await {
            report(&e);
            return Ok(start_error_code(&e));
        }
        println!("{id}");
        return Ok(0);
    }
    let code = foreground(client, &id, a.tty, a.interactive, a.rm, true).await;
    Ok(code)
}

/// Parse `{"StatusCode": n, "Error": {"Message": ...}}`.
pub fn wait_code(body: &[u8]) -> anyhow::Result<i64> {
    let v: Val = serde_json::from_slice(body)?;
    if let Some(msg) = v.path(&["Error", "Message"]).and_then(Val::as_str).filter(|m| !m.is_empty())
    {
        anyhow::bail!("{msg}");
    }
    v.get("StatusCode")
        .and_then(Val::as_i64)
        .ok_or_else(|| anyhow::anyhow!("no StatusCode in the wait answer"))
}

/// Attach (or follow logs), start when `start` is set, forward SIGINT/SIGTERM, wait for the
/// exit and return its code (125 for daemon errors).
pub async fn foreground(
    client: &Client,
    id: &str,
    tty: bool,
    stdin: bool,
    auto_remove: bool,
    start: bool,
) -> i32 {
    // Attach before starting so no output is lost (docker's order); fall back to following
    // the logs after start if the daemon has no attach route.
    let attach_path = format!(
        "/containers/{id}/attach?stream=1&stdout=1&stderr=1{}",
        if stdin { "&stdin=1" } else { "" }
    );
    // The attach body is an empty object, as it has always been.
    let attach =
        tokio::time::timeout(Duration::from_secs(3), hijack(client, &attach_path, &EmptyObject));
    let attached = match attach.await {
        Err(_timeout) => None,
        Ok(Ok(h)) => Some(h),
        Ok(Err(e)) if is_status(&e, 404) || is_status(&e, 405) || is_status(&e, 501) => None,
        Ok(Err(e)) => {
            report(&e);
            return 125;
        }
    };
    let condition = if auto_remove { "removed" } else { "next-exit" };
    let (client2, path) = (client.clone(), format!("/containers/{id}/wait?condition={condition}"));
    let (head_tx, head_rx) = tokio::sync::oneshot::channel::<()>();
    let waiter = tokio::spawn(async move {
        let resp = client2.send(Method::POST, &path, ReqBody::Empty, None).await;
        let _ = head_tx.send(());
        let body = http_body_util::BodyExt::collect(resp?.into_body()).await?.to_bytes();
        wait_code(&body)
    });
    // dockerd answers the headers of /wait at once; allow for a daemon that does not.
    let _ = tokio::time::timeout(Duration::from_millis(1500), head_rx).await;
    if start {
        if let Err(e) = client.post(&format!("/containers/{id}/start")).await {
            report(&e);
            waiter.abort();
            return start_error_code(&e);
        }
    }
    let output = async {
        match attached {
            Some(h) => h.pump(stdin, tty).await,
            None => {
                let path = format!("/containers/{id}/logs?follow=1&stdout=1&stderr=1");
                match client.send(Method::GET, &path, ReqBody::Empty, None).await {
                    Ok(resp) => print_response(resp, tty).await,
                    Err(e) if is_status(&e, 404) => Ok(()), // already gone (--rm)
                    Err(e) => Err(e),
                }
            }
        }
    };
    let signals = forward_signals(client, id);
    let out_result = tokio::select! {
        r = output => r,
        _ = signals => Ok(()),
    };
    if let Err(e) = out_result {
        report(&e);
    }
    let result = match waiter.await {
        Ok(r) => r,
        Err(e) => Err(anyhow::anyhow!("wait task failed: {e}")),
    };
    match result {
        Ok(code) => code as i32,
        Err(e) if is_status(&e, 400) => {
            // A daemon without wait conditions: plain wait.
            match client.post(&format!("/containers/{id}/wait")).await.and_then(|b| wait_code(&b)) {
                Ok(code) => code as i32,
                Err(e) => {
                    report(&e);
                    125
                }
            }
        }
        Err(e) => {
            report(&e);
            125
        }
    }
}

/// Forward SIGINT and SIGTERM to the container (docker's `--sig-proxy`); never returns.
async fn forward_signals(client: &Client, id: &str) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending().await;
    };
    loop {
        let sig = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        let path = format!("/containers/{id}/kill?signal={sig}");
        let _ = client.post(&path).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::{json, Value};

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: RunArgs,
    }

    fn body(args: &[&str]) -> Value {
        let t = T::try_parse_from(std::iter::once("run").chain(args.iter().copied())).unwrap();
        serde_json::to_value(create_body(&t.a).unwrap()).unwrap()
    }

    #[test]
    fn parses_flags_before_image_and_command_after() {
        let t =
            T::try_parse_from(["run", "-d", "--name", "web", "busybox", "ls", "-l", "-d"]).unwrap();
        assert!(t.a.detach);
        assert_eq!(t.a.args, ["busybox", "ls", "-l", "-d"]);
        let t = T::try_parse_from(["run", "-it", "-h", "host1", "img"]).unwrap();
        assert!(t.a.interactive && t.a.tty);
        assert_eq!(t.a.hostname.as_deref(), Some("host1"));
        assert!(T::try_parse_from(["run", "-d"]).is_err());
    }

    #[test]
    fn create_body_shape() {
        let b = body(&[
            "--network",
            "n1",
            "--ip",
            "10.0.0.5",
            "--network-alias",
            "db",
            "--mac-address",
            "02:42:aa:bb:cc:dd",
            "-p",
            "8080:80",
            "-p",
            "127.0.0.1::53/udp",
            "--expose",
            "9000",
            "-e",
            "A=1",
            "--dns",
            "1.1.1.1",
            "--add-host",
            "h:1.2.3.4",
            "--link",
            "c1:alias",
            "-l",
            "k=v",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            "busybox",
            "-c",
            "echo hi",
        ]);
        assert_eq!(b["Image"], "busybox");
        assert_eq!(b["Cmd"], json!(["-c", "echo hi"]));
        assert_eq!(b["Entrypoint"], json!(["/bin/sh"]));
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["Labels"], json!({"k": "v"}));
        assert_eq!(b["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}, "9000/tcp": {}}));
        let hc = &b["HostConfig"];
        assert_eq!(hc["NetworkMode"], "n1");
        assert_eq!(hc["AutoRemove"], true);
        assert_eq!(hc["PortBindings"]["80/tcp"], json!([{"HostIp": "", "HostPort": "8080"}]));
        assert_eq!(hc["PortBindings"]["53/udp"], json!([{"HostIp": "127.0.0.1", "HostPort": ""}]));
        assert_eq!(hc["Links"], json!(["c1:alias"]));
        assert_eq!(hc["Dns"], json!(["1.1.1.1"]));
        assert_eq!(hc["ExtraHosts"], json!(["h:1.2.3.4"]));
        let ep = &b["NetworkingConfig"]["EndpointsConfig"]["n1"];
        assert_eq!(ep["IPAMConfig"], json!({"IPv4Address": "10.0.0.5"}));
        assert_eq!(ep["Aliases"], json!(["db"]));
        assert_eq!(ep["MacAddress"], "02:42:aa:bb:cc:dd");
    }

    #[test]
    fn defaults() {
        let b = body(&["img"]);
        assert_eq!(b["Cmd"], Value::Null);
        assert_eq!(b["Entrypoint"], Value::Null);
        assert_eq!(b["HostConfig"]["NetworkMode"], "default");
        assert_eq!(b["NetworkingConfig"]["EndpointsConfig"]["default"]["IPAMConfig"], Value::Null);
    }

    #[test]
    fn bad_publish_is_an_error() {
        let t = T::try_parse_from(["run", "-p", "0:80", "img"]).unwrap();
        assert!(create_body(&t.a).unwrap_err().to_string().contains("--publish"));
    }

    #[test]
    fn wait_answers() {
        assert_eq!(wait_code(br#"{"StatusCode":3}"#).unwrap(), 3);
        assert!(wait_code(br#"{"StatusCode":0,"Error":{"Message":"boom"}}"#).is_err());
        assert_eq!(wait_code(br#"{"StatusCode":0,"Error":null}"#).unwrap(), 0);
    }
}
