//! Container lifecycle and listing commands: start, stop, restart, kill, rm, wait, ps,
//! logs, port.

use super::client::{encode, with_query, Client, ReqBody};
use super::format::{
    display_ports, ellipsis, go_quote, natural_cmp, render_list, short_id, since, unix_time_string,
    PortEntry,
};
use super::hijack::print_response;
use super::run::{foreground, wait_code};
use super::value::Val;
use super::{filters_json, report};
use clap::Args;
use hyper::Method;

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    interactive: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", visible_alias = "timeout")]
    time: Option<i64>,
    /// Signal to send to the container
    #[arg(short = 's', long)]
    signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    signal: Option<String>,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove the specified link
    #[arg(short = 'l', long)]
    link: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    volumes: bool,
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(required = true, value_name = "CONTAINER")]
    containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Don't truncate output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long)]
    tail: Option<String>,
    /// Show timestamps
    #[arg(short = 't', long)]
    timestamps: bool,
    /// Show logs since timestamp or relative (e.g. 42m)
    #[arg(long)]
    since: Option<String>,
    container: String,
}

#[derive(Debug, Args)]
pub struct PortArgs {
    container: String,
    /// PRIVATE_PORT[/PROTO]
    port: Option<String>,
}

/// Run `f` for each name, printing the name on success and the error otherwise.
async fn each<F, Fut>(names: &[String], mut f: F) -> anyhow::Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut code = 0;
    for name in names {
        match f(encode(name)).await {
            Ok(()) => println!("{name}"),
            Err(e) => {
                report(&e);
                code = 1;
            }
        }
    }
    Ok(code)
}

pub async fn start(client: &Client, a: StartArgs) -> anyhow::Result<i32> {
    if a.attach || a.interactive {
        anyhow::ensure!(
            a.containers.len() == 1,
            "you cannot start and attach multiple containers at once"
        );
        let id = encode(&a.containers[0]);
        let info = client.get_val(&format!("/containers/{id}/json")).await?;
        let tty = info.path(&["Config", "Tty"]).is_some_and(Val::as_bool);
        let auto_remove = info.path(&["HostConfig", "AutoRemove"]).is_some_and(Val::as_bool);
        return Ok(foreground(client, &id, tty, a.interactive, auto_remove, true).await);
    }
    each(&a.containers, |c| async move {
        client.post(&format!("/containers/{c}/start")).await.map(drop)
    })
    .await
}

/// `stop` and `restart` (`action` is the route's last segment).
pub async fn stop(client: &Client, a: StopArgs, action: &str) -> anyhow::Result<i32> {
    let mut params = Vec::new();
    if let Some(t) = a.time {
        params.push(("t", t.to_string()));
    }
    if let Some(s) = &a.signal {
        params.push(("signal", s.clone()));
    }
    let params = &params;
    each(&a.containers, |c| async move {
        client.post(&with_query(&format!("/containers/{c}/{action}"), params)).await.map(drop)
    })
    .await
}

pub async fn kill(client: &Client, a: KillArgs) -> anyhow::Result<i32> {
    let params: Vec<_> = a.signal.iter().map(|s| ("signal", s.clone())).collect();
    let params = &params;
    each(&a.containers, |c| async move {
        client.post(&with_query(&format!("/containers/{c}/kill"), params)).await.map(drop)
    })
    .await
}

pub async fn rm(client: &Client, a: RmArgs) -> anyhow::Result<i32> {
    let mut params = Vec::new();
    for (set, key) in [(a.volumes, "v"), (a.link, "link"), (a.force, "force")] {
        if set {
            params.push((key, "1".to_string()));
        }
    }
    let params = &params;
    each(&a.containers, |c| async move {
        client.delete(&with_query(&format!("/containers/{c}"), params)).await.map(drop)
    })
    .await
}

pub async fn wait(client: &Client, a: WaitArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for name in &a.containers {
        let r = client.post(&format!("/containers/{}/wait", encode(name))).await;
        match r.and_then(|b| wait_code(&b)) {
            Ok(status) => println!("{status}"),
            Err(e) => {
                report(&e);
                code = 1;
            }
        }
    }
    Ok(code)
}

const PS_TABLE: &str =
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}";

fn ps_headers() -> Val {
    Val::obj(
        [
            ("Command", "COMMAND"),
            ("CreatedAt", "CREATED AT"),
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Labels", "LABELS"),
            ("LocalVolumes", "LOCAL VOLUMES"),
            ("Mounts", "MOUNTS"),
            ("Names", "NAMES"),
            ("Networks", "NETWORKS"),
            ("Ports", "PORTS"),
            ("RunningFor", "CREATED"),
            ("Size", "SIZE"),
            ("State", "STATE"),
            ("Status", "STATUS"),
        ]
        .map(|(k, v)| (k, Val::str(v))),
    )
}

/// `k=v,k2=v2` with sorted keys.
pub fn join_labels(labels: &Val) -> String {
    let mut items: Vec<String> =
        labels.as_obj().iter().map(|(k, v)| format!("{k}={}", v.to_text())).collect();
    items.sort();
    items.join(",")
}

/// docker's `ps` row context for one `GET /containers/json` entry.
pub fn ps_row(c: &Val, trunc: bool) -> Val {
    let s = |k: &str| c.get(k).and_then(Val::as_str).unwrap_or("").to_string();
    let id = s("Id");
    let mut image = s("Image");
    if trunc && image.starts_with("sha256:") {
        image = short_id(&image);
    }
    if image.is_empty() {
        image = "<no image>".into();
    }
    let command = if trunc { ellipsis(&s("Command"), 20) } else { s("Command") };
    let mut names: Vec<String> = c
        .get("Names")
        .map(Val::as_arr)
        .unwrap_or(&[])
        .iter()
        .map(|n| n.to_text().trim_start_matches('/').to_string())
        .collect();
    if trunc {
        if let Some(primary) = names.iter().find(|n| !n.contains('/')).cloned() {
            names = vec![primary];
        }
    }
    let created = c.get("Created").and_then(Val::as_i64).unwrap_or(0);
    let ports: Vec<PortEntry> =
        c.get("Ports").map(Val::as_arr).unwrap_or(&[]).iter().map(PortEntry::from_val).collect();
    let mut networks: Vec<&str> = c
        .path(&["NetworkSettings", "Networks"])
        .map(Val::as_obj)
        .unwrap_or(&[])
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    networks.sort();
    Val::obj([
        ("Command", Val::Str(go_quote(&command))),
        ("CreatedAt", Val::Str(unix_time_string(created))),
        ("ID", Val::Str(if trunc { short_id(&id) } else { id })),
        ("Image", Val::Str(image)),
        ("Labels", Val::Str(c.get("Labels").map(join_labels).unwrap_or_default())),
        ("LocalVolumes", Val::str("0")),
        ("Mounts", Val::str("")),
        ("Names", Val::Str(names.join(","))),
        ("Networks", Val::Str(networks.join(","))),
        ("Platform", Val::Null),
        ("Ports", Val::Str(display_ports(&ports))),
        ("RunningFor", Val::Str(since(created))),
        ("Size", Val::str("0B")),
        ("State", Val::Str(s("State"))),
        ("Status", Val::Str(s("Status"))),
    ])
}

pub async fn ps(client: &Client, a: PsArgs) -> anyhow::Result<i32> {
    let mut params = Vec::new();
    if a.all {
        params.push(("all", "1".to_string()));
    }
    if let Some(f) = filters_json(&a.filter)? {
        params.push(("filters", f));
    }
    let list = client.get_val(&with_query("/containers/json", &params)).await?;
    let rows: Vec<Val> = list.as_arr().iter().map(|c| ps_row(c, !a.no_trunc)).collect();
    let format = if a.quiet { "{{.ID}}" } else { a.format.as_deref().unwrap_or("") };
    print!("{}", render_list(format, PS_TABLE, &rows, &ps_headers())?);
    Ok(0)
}

pub async fn logs(client: &Client, a: LogsArgs) -> anyhow::Result<i32> {
    let c = encode(&a.container);
    let info = client.get_val(&format!("/containers/{c}/json")).await?;
    let tty = info.path(&["Config", "Tty"]).is_some_and(Val::as_bool);
    let mut params = vec![("stdout", "1".to_string()), ("stderr", "1".to_string())];
    if a.follow {
        params.push(("follow", "1".into()));
    }
    if let Some(t) = &a.tail {
        params.push(("tail", t.clone()));
    }
    if a.timestamps {
        params.push(("timestamps", "1".into()));
    }
    if let Some(s) = &a.since {
        params.push(("since", s.clone()));
    }
    let resp = client
        .send(
            Method::GET,
            &with_query(&format!("/containers/{c}/logs"), &params),
            ReqBody::Empty,
            None,
        )
        .await?;
    print_response(resp, tty).await?;
    Ok(0)
}

/// Lines of `cove port` from `NetworkSettings.Ports`.
pub fn port_lines(
    info: &Val,
    filter: Option<&str>,
    container: &str,
) -> anyhow::Result<Vec<String>> {
    let ports = info.path(&["NetworkSettings", "Ports"]).map(Val::as_obj).unwrap_or(&[]);
    let host = |b: &Val| {
        let ip = b.get("HostIp").and_then(Val::as_str).unwrap_or("");
        let port = b.get("HostPort").and_then(Val::as_str).unwrap_or("");
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    let mut out = Vec::new();
    if let Some(spec) = filter {
        let (port, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
        let proto = if proto.is_empty() { "tcp" } else { proto };
        port.parse::<u16>()
            .map_err(|_| anyhow::anyhow!("invalid port ({port}): expected a number"))?;
        let key = format!("{port}/{proto}");
        let bindings =
            ports.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_arr()).unwrap_or(&[]);
        anyhow::ensure!(!bindings.is_empty(), "No public port '{spec}' published for {container}");
        out.extend(bindings.iter().map(host));
    } else {
        for (key, bindings) in ports {
            out.extend(bindings.as_arr().iter().map(|b| format!("{key} -> {}", host(b))));
        }
    }
    out.sort_by(|a, b| natural_cmp(a, b));
    Ok(out)
}

pub async fn port(client: &Client, a: PortArgs) -> anyhow::Result<i32> {
    let info = client.get_val(&format!("/containers/{}/json", encode(&a.container))).await?;
    for line in port_lines(&info, a.port.as_deref(), &a.container)? {
        println!("{line}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Val {
        serde_json::from_str(
            r#"{"Id":"0123456789abcdef0123","Names":["/web","/other/alias"],"Image":"busybox",
               "ImageID":"sha256:aa","Command":"sh -c 'while true; do sleep 1; done'","Created":0,
               "Ports":[{"IP":"0.0.0.0","PrivatePort":80,"PublicPort":8080,"Type":"tcp"}],
               "Labels":{"b":"2","a":"1"},"State":"running","Status":"Up 3 seconds",
               "NetworkSettings":{"Networks":{"n2":{},"bridge":{}}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn ps_table() {
        let row = ps_row(&entry(), true);
        assert_eq!(row.get("ID").unwrap().to_text(), "0123456789ab");
        assert_eq!(row.get("Command").unwrap().to_text(), "\"sh -c 'while true; …\"");
        assert_eq!(row.get("Names").unwrap().to_text(), "web");
        assert_eq!(row.get("Networks").unwrap().to_text(), "bridge,n2");
        assert_eq!(row.get("Labels").unwrap().to_text(), "a=1,b=2");
        let out = render_list(
            "table {{.ID}}\t{{.Image}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
            PS_TABLE,
            &[row],
            &ps_headers(),
        )
        .unwrap();
        assert_eq!(
            out,
            "CONTAINER ID   IMAGE     STATUS         PORTS                  NAMES\n\
             0123456789ab   busybox   Up 3 seconds   0.0.0.0:8080->80/tcp   web\n"
        );
        let full = ps_row(&entry(), false);
        assert_eq!(full.get("Names").unwrap().to_text(), "web,other/alias");
        let empty = render_list("", PS_TABLE, &[], &ps_headers()).unwrap();
        assert_eq!(
            empty,
            "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"
        );
    }

    #[test]
    fn ports_output() {
        let info: Val = serde_json::from_str(
            r#"{"NetworkSettings":{"Ports":{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"::","HostPort":"8080"}],
                "53/udp":[{"HostIp":"0.0.0.0","HostPort":"5353"}],"9000/tcp":null}}}"#,
        )
        .unwrap();
        assert_eq!(
            port_lines(&info, None, "c").unwrap(),
            ["53/udp -> 0.0.0.0:5353", "80/tcp -> 0.0.0.0:8080", "80/tcp -> [::]:8080"]
        );
        assert_eq!(port_lines(&info, Some("80"), "c").unwrap(), ["0.0.0.0:8080", "[::]:8080"]);
        assert_eq!(port_lines(&info, Some("53/udp"), "c").unwrap(), ["0.0.0.0:5353"]);
        let err = port_lines(&info, Some("9000"), "c").unwrap_err().to_string();
        assert_eq!(err, "No public port '9000' published for c");
    }
}
