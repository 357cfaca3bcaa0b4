//! The `cove` command-line client: a client of the daemon's Docker Engine API only.

mod client;
mod container;
mod exec;
mod format;
mod hijack;
mod image;
mod inspect;
mod network;
mod node;
mod ports;
mod run;
mod service;
mod template;
mod tmpl_exec;
mod value;

use clap::Subcommand;
use client::{Client, ConnectError, DaemonError};
use std::collections::BTreeMap;
use std::io::Write;

pub use client::resolve_host;

/// The client commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// Manage the hosts of the cluster
    #[command(subcommand)]
    Node(node::NodeCmd),
    #[command(subcommand)]
    Service(service::ServiceCmd),
    /// Manage containers
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Manage images
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Create and run a new container from an image
    Run(Box<run::RunArgs>),
    /// Create a new container
    Create(Box<run::RunArgs>),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Restart one or more containers
    Restart(container::StopArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::WaitArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Return low-level information on Cove objects
    Inspect(inspect::InspectArgs),
    /// List port mappings or a specific mapping for the container
    Port(container::PortArgs),
    /// List images
    Images(image::LsArgs),
    /// Remove one or more images
    Rmi(image::RmArgs),
    /// Show the Cove version information
    Version,
}

/// `cove container ...`: the same commands under docker's management group.
#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// Create and run a new container from an image
    Run(Box<run::RunArgs>),
    /// Create a new container
    Create(Box<run::RunArgs>),
    /// Start one or more stopped containers
    Start(container::StartArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Restart one or more containers
    Restart(container::StopArgs),
    /// Kill one or more running containers
    Kill(container::KillArgs),
    /// Remove one or more containers
    #[command(alias = "remove")]
    Rm(container::RmArgs),
    /// Block until one or more containers stop, then print their exit codes
    Wait(container::WaitArgs),
    /// List containers
    #[command(alias = "list", alias = "ps")]
    Ls(container::PsArgs),
    /// Execute a command in a running container
    Exec(exec::ExecArgs),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Display detailed information on one or more containers
    Inspect(inspect::TypedInspectArgs),
    /// List port mappings or a specific mapping for the container
    Port(container::PortArgs),
}

/// Run a client command against `host`; returns the process exit code.
pub async fn run(host: String, cmd: Command) -> i32 {
    let client = match Client::new(&host) {
        Ok(c) => c,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    match dispatch(&client, cmd).await {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            1
        }
    }
}

async fn dispatch(client: &Client, cmd: Command) -> anyhow::Result<i32> {
    use container as c;
    match cmd {
        Command::Network(n) => network::run(client, n).await,
        Command::Node(n) => node::run(client, n).await,
        Command::Service(s) => service::run(client, s).await,
        Command::Container(cc) => match cc {
            ContainerCmd::Run(a) => run::run(client, *a).await,
            ContainerCmd::Create(a) => run::create(client, *a).await,
            ContainerCmd::Start(a) => c::start(client, a).await,
            ContainerCmd::Stop(a) => c::stop(client, a, "stop").await,
            ContainerCmd::Restart(a) => c::stop(client, a, "restart").await,
            ContainerCmd::Kill(a) => c::kill(client, a).await,
            ContainerCmd::Rm(a) => c::rm(client, a).await,
            ContainerCmd::Wait(a) => c::wait(client, a).await,
            ContainerCmd::Ls(a) => c::ps(client, a).await,
            ContainerCmd::Exec(a) => exec::exec(client, a).await,
            ContainerCmd::Logs(a) => c::logs(client, a).await,
            ContainerCmd::Inspect(a) => inspect::typed(client, a, inspect::Kind::Container).await,
            ContainerCmd::Port(a) => c::port(client, a).await,
        },
        Command::Image(i) => image::run(client, i).await,
        Command::Run(a) => run::run(client, *a).await,
        Command::Create(a) => run::create(client, *a).await,
        Command::Start(a) => c::start(client, a).await,
        Command::Stop(a) => c::stop(client, a, "stop").await,
        Command::Restart(a) => c::stop(client, a, "restart").await,
        Command::Kill(a) => c::kill(client, a).await,
        Command::Rm(a) => c::rm(client, a).await,
        Command::Wait(a) => c::wait(client, a).await,
        Command::Ps(a) => c::ps(client, a).await,
        Command::Exec(a) => exec::exec(client, a).await,
        Command::Logs(a) => c::logs(client, a).await,
        Command::Inspect(a) => inspect::inspect(client, a).await,
        Command::Port(a) => c::port(client, a).await,
        Command::Images(a) => image::ls(client, a).await,
        Command::Rmi(a) => image::rm(client, a).await,
        Command::Version => version(client).await,
    }
}

/// An error printed as is (no `Error: ` prefix).
#[derive(Debug)]
pub(crate) struct Plain(pub String);

impl std::fmt::Display for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Plain {}

/// Print an error the way the docker CLI does.
pub(crate) fn report(e: &anyhow::Error) {
    let _ = std::io::stdout().flush();
    if let Some(d) = e.downcast_ref::<DaemonError>() {
        eprintln!("{d}");
    } else if let Some(c) = e.downcast_ref::<ConnectError>() {
        eprintln!("{c}");
    } else if let Some(p) = e.downcast_ref::<Plain>() {
        eprintln!("{p}");
    } else {
        eprintln!("Error: {e:#}");
    }
}

/// Is this a daemon answer with the given status?
pub(crate) fn is_status(e: &anyhow::Error, status: u16) -> bool {
    e.downcast_ref::<DaemonError>().is_some_and(|d| d.status == status)
}

/// Split `key=value` (a bare `key` gives an empty value).
pub(crate) fn split_kv(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (s.to_string(), String::new()),
    }
}

/// `key=value` list to a map (the last value of a key wins).
pub(crate) fn kv_map(items: &[String]) -> std::collections::BTreeMap<String, String> {
    items.iter().map(|s| split_kv(s)).collect()
}

/// `-f key=value` flags as docker's filter JSON `{"key":{"value":true}}`.
pub(crate) fn filters_json(filters: &[String]) -> anyhow::Result<Option<String>> {
    if filters.is_empty() {
        return Ok(None);
    }
    let mut map: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for f in filters {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("bad format of filter (expected name=value)"))?;
        map.entry(k.trim().to_lowercase()).or_default().insert(v.to_string(), true);
    }
    Ok(Some(serde_json::to_string(&map)?))
}

/// Ask docker's `[y/N]` question on stdout; true for "y"/"yes".
pub(crate) fn confirm(warning: &str) -> bool {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        return false;
    }
    matches!(line.trim().to_lowercase().as_str(), "y" | "yes")
}

async fn version(client: &Client) -> anyhow::Result<i32> {
    println!("Client:");
    println!(" Version:           {}", env!("CARGO_PKG_VERSION"));
    println!(" API version:       {}", &client::API_PREFIX[2..]);
    println!(" OS/Arch:           linux/{}", go_arch());
    println!();
    let v = client.get_val("/version").await?;
    let s = |k: &str| v.get(k).and_then(value::Val::as_str).unwrap_or("").to_string();
    println!("Server:");
    println!(" Engine:");
    println!("  Version:          {}", s("Version"));
    let min = s("MinAPIVersion");
    if min.is_empty() {
        println!("  API version:      {}", s("ApiVersion"));
    } else {
        println!("  API version:      {} (minimum version {min})", s("ApiVersion"));
    }
    if !s("GitCommit").is_empty() {
        println!("  Git commit:       {}", s("GitCommit"));
    }
    println!("  OS/Arch:          {}/{}", s("Os"), s("Arch"));
    if !s("KernelVersion").is_empty() {
        println!("  Kernel Version:   {}", s("KernelVersion"));
    }
    Ok(0)
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let f =
            filters_json(&["name=web".into(), "name=db".into(), "driver=bridge".into()]).unwrap();
        assert_eq!(f.unwrap(), r#"{"driver":{"bridge":true},"name":{"db":true,"web":true}}"#);
        assert!(filters_json(&["novalue".into()]).is_err());
        assert_eq!(filters_json(&[]).unwrap(), None);
    }

    #[test]
    fn kv() {
        assert_eq!(split_kv("a=b=c"), ("a".into(), "b=c".into()));
        assert_eq!(split_kv("flag"), ("flag".into(), String::new()));
    }
}
