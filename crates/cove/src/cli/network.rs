//! `cove network create|ls|inspect|rm|prune|connect|disconnect`.

use super::client::{encode, with_query, Client};
use super::container::join_labels;
use super::format::{go_time_string, natural_cmp, render_list, short_id};
use super::inspect::{typed, Kind, TypedInspectArgs};
use super::value::Val;
use super::{confirm, filters_json, kv_map, report, split_kv};
use clap::{Args, Subcommand};
use cove_wire::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest,
    NetworkCreateRequest, NetworkDisconnectRequest,
};
use ipnet::IpNet;
use std::net::IpAddr;

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect(TypedInspectArgs),
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    subnet: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range")]
    ip_range: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long)]
    gateway: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver (name=ip)
    #[arg(long = "aux-address")]
    aux_address: Vec<String>,
    /// Enable or disable IPv6 networking
    #[arg(long)]
    ipv6: bool,
    /// Restrict external access to the network
    #[arg(long)]
    internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    attachable: bool,
    /// Set metadata on a network
    #[arg(long)]
    label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    opt: Vec<String>,
    /// IP Address Management Driver
    #[arg(long = "ipam-driver", default_value = "default")]
    ipam_driver: String,
    /// Set IPAM driver specific options
    #[arg(long = "ipam-opt")]
    ipam_opt: Vec<String>,
    /// Control the network's scope
    #[arg(long)]
    scope: Option<String>,
    name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only display network IDs
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Do not truncate the output
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short = 'f', long = "filter")]
    filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long)]
    format: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Do not error if the network does not exist
    #[arg(short = 'f', long)]
    force: bool,
    #[arg(required = true, value_name = "NETWORK")]
    networks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long)]
    filter: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long)]
    ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long)]
    ip6: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long)]
    alias: Vec<String>,
    /// Add link to another container
    #[arg(long)]
    link: Vec<String>,
    /// driver options for the network
    #[arg(long = "driver-opt")]
    driver_opt: Vec<String>,
    network: String,
    container: String,
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short = 'f', long)]
    force: bool,
    network: String,
    container: String,
}

pub async fn run(client: &Client, cmd: NetworkCmd) -> anyhow::Result<i32> {
    match cmd {
        NetworkCmd::Create(a) => create(client, a).await,
        NetworkCmd::Ls(a) => ls(client, a).await,
        NetworkCmd::Inspect(a) => typed(client, a, Kind::Network).await,
        NetworkCmd::Rm(a) => rm(client, a).await,
        NetworkCmd::Prune(a) => prune(client, a).await,
        NetworkCmd::Connect(a) => {
            let body = connect_body(&a);
            client.post_json(&format!("/networks/{}/connect", encode(&a.network)), &body).await?;
            Ok(0)
        }
        NetworkCmd::Disconnect(a) => {
            let body = NetworkDisconnectRequest { container: a.container, force: a.force };
            client
                .post_json(&format!("/networks/{}/disconnect", encode(&a.network)), &body)
                .await?;
            Ok(0)
        }
    }
}

/// The `POST /networks/{id}/connect` body.
fn connect_body(a: &ConnectArgs) -> NetworkConnectRequest {
    NetworkConnectRequest {
        container: a.container.clone(),
        endpoint_config: Some(EndpointSettings {
            ipam_config: Some(EndpointIpamConfig {
                ipv4_address: a.ip.clone().unwrap_or_default(),
                ipv6_address: a.ip6.clone().unwrap_or_default(),
            }),
            links: a.link.clone(),
            aliases: a.alias.clone(),
            driver_opts: kv_map(&a.driver_opt),
            mac_address: String::new(),
        }),
    }
}

/// Does `subnet` contain the address or range `what`?
fn contains(subnet: &str, what: &str) -> Option<bool> {
    let net: IpNet = subnet.parse().ok()?;
    if let Ok(ip) = what.parse::<IpAddr>() {
        return Some(net.contains(&ip));
    }
    let inner: IpNet = what.parse().ok()?;
    Some(net.contains(&inner))
}

fn is_v6(s: &str) -> bool {
    s.contains(':')
}

/// Index of the subnet a gateway/range/aux address belongs to: the one containing it; with
/// a single subnet that one; else the first subnet of the same family (the daemon then
/// reports the mismatch); else the first subnet.
fn pick_subnet(subnets: &[String], what: &str) -> usize {
    if subnets.len() == 1 {
        return 0;
    }
    if let Some(i) = subnets.iter().position(|s| contains(s, what) == Some(true)) {
        return i;
    }
    let family = is_v6(what.split('/').next().unwrap_or(what));
    subnets.iter().position(|s| is_v6(s) == family).unwrap_or(0)
}

/// IPAM `Config` entries built from the repeated flags.
pub fn ipam_config(
    subnets: &[String],
    ranges: &[String],
    gateways: &[String],
    aux: &[String],
) -> anyhow::Result<Vec<IpamConfig>> {
    if subnets.is_empty() {
        anyhow::ensure!(
            ranges.is_empty() && gateways.is_empty() && aux.is_empty(),
            "every ip-range or gateway must have a corresponding subnet"
        );
        return Ok(Vec::new());
    }
    let mut configs: Vec<IpamConfig> =
        subnets.iter().map(|s| IpamConfig { subnet: s.clone(), ..Default::default() }).collect();
    // What each flag set, given or not (an empty value counts as given, as it always has).
    let mut given = vec![[false; 2]; subnets.len()];
    for (i, key, values) in [(0, "ranges", ranges), (1, "gateways", gateways)] {
        for v in values {
            let at = pick_subnet(subnets, v);
            let cfg = &mut configs[at];
            let field = if i == 0 { &mut cfg.ip_range } else { &mut cfg.gateway };
            if given[at][i] {
                anyhow::bail!(
                    "cannot configure multiple {key} ({v}, {field}) on the same subnet ({})",
                    cfg.subnet
                );
            }
            given[at][i] = true;
            *field = v.clone();
        }
    }
    for entry in aux {
        let (name, ip) = split_kv(entry);
        anyhow::ensure!(!ip.is_empty(), "invalid aux-address {entry:?}: expected name=ip");
        let cfg = &mut configs[pick_subnet(subnets, &ip)];
        cfg.auxiliary_addresses.insert(name, ip);
    }
    Ok(configs)
}

/// The `POST /networks/create` body.
pub fn create_body(a: &CreateArgs) -> anyhow::Result<NetworkCreateRequest> {
    let config = ipam_config(&a.subnet, &a.ip_range, &a.gateway, &a.aux_address)?;
    Ok(NetworkCreateRequest {
        name: a.name.clone(),
        check_duplicate: Some(true),
        driver: a.driver.clone(),
        scope: a.scope.clone().unwrap_or_default(),
        enable_ipv6: Some(a.ipv6),
        ipam: Some(Ipam { driver: a.ipam_driver.clone(), options: kv_map(&a.ipam_opt), config }),
        internal: a.internal,
        attachable: a.attachable,
        ingress: false,
        config_only: false,
        options: kv_map(&a.opt),
        labels: kv_map(&a.label),
        config_from: None,
        enable_ipv4: None,
    })
}

async fn create(client: &Client, a: CreateArgs) -> anyhow::Result<i32> {
    let body = create_body(&a)?;
    let resp = client.post_json_val("/networks/create", &body).await?;
    if let Some(w) = resp.get("Warning").and_then(Val::as_str).filter(|w| !w.is_empty()) {
        eprintln!("WARNING: {w}");
    }
    println!("{}", resp.get("Id").and_then(Val::as_str).unwrap_or_default());
    Ok(0)
}

const NETWORK_TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}";

fn headers() -> Val {
    Val::obj(
        [
            ("CreatedAt", "CREATED AT"),
            ("Driver", "DRIVER"),
            ("ID", "NETWORK ID"),
            ("IPv4", "IPV4"),
            ("IPv6", "IPV6"),
            ("Internal", "INTERNAL"),
            ("Labels", "LABELS"),
            ("Name", "NAME"),
            ("Scope", "SCOPE"),
        ]
        .map(|(k, v)| (k, Val::str(v))),
    )
}

/// docker's `network ls` row context for one network object.
pub fn ls_row(n: &Val, trunc: bool) -> Val {
    let s = |k: &str| n.get(k).and_then(Val::as_str).unwrap_or("").to_string();
    let b = |k: &str| n.get(k).is_some_and(Val::as_bool).to_string();
    let id = s("Id");
    Val::obj([
        ("CreatedAt", Val::Str(go_time_string(&s("Created")))),
        ("Driver", Val::Str(s("Driver"))),
        ("ID", Val::Str(if trunc { short_id(&id) } else { id })),
        ("IPv4", Val::Str(b("EnableIPv4"))),
        ("IPv6", Val::Str(b("EnableIPv6"))),
        ("Internal", Val::Str(b("Internal"))),
        ("Labels", Val::Str(n.get("Labels").map(join_labels).unwrap_or_default())),
        ("Name", Val::Str(s("Name"))),
        ("Scope", Val::Str(s("Scope"))),
    ])
}

async fn ls(client: &Client, a: LsArgs) -> anyhow::Result<i32> {
    let params: Vec<_> = filters_json(&a.filter)?.into_iter().map(|f| ("filters", f)).collect();
    let list = client.get_val(&with_query("/networks", &params)).await?;
    let mut nets: Vec<&Val> = list.as_arr().iter().collect();
    let name = |n: &Val| n.get("Name").and_then(Val::as_str).unwrap_or("").to_string();
    nets.sort_by(|x, y| natural_cmp(&name(x), &name(y)));
    let rows: Vec<Val> = nets.into_iter().map(|n| ls_row(n, !a.no_trunc)).collect();
    let format = if a.quiet { "{{.ID}}" } else { a.format.as_deref().unwrap_or("") };
    print!("{}", render_list(format, NETWORK_TABLE, &rows, &headers())?);
    Ok(0)
}

async fn rm(client: &Client, a: RmArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for name in &a.networks {
        match client.delete(&format!("/networks/{}", encode(name))).await {
            Ok(_) => println!("{name}"),
            Err(e) if a.force && super::is_status(&e, 404) => {}
            Err(e) => {
                report(&e);
                code = 1;
            }
        }
    }
    Ok(code)
}

async fn prune(client: &Client, a: PruneArgs) -> anyhow::Result<i32> {
    if !a.force
        && !confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )
    {
        return Ok(0);
    }
    let params: Vec<_> = filters_json(&a.filter)?.into_iter().map(|f| ("filters", f)).collect();
    let report = client.post_val(&with_query("/networks/prune", &params)).await?;
    let deleted = report.get("NetworksDeleted").map(Val::as_arr).unwrap_or(&[]);
    if !deleted.is_empty() {
        let mut out = String::from("Deleted Networks:\n");
        for n in deleted {
            out.push_str(&n.to_text());
            out.push('\n');
        }
        println!("{out}");
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::{json, Value};

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: CreateArgs,
    }

    fn body(args: &[&str]) -> Value {
        let t = T::try_parse_from(std::iter::once("create").chain(args.iter().copied())).unwrap();
        serde_json::to_value(create_body(&t.a).unwrap()).unwrap()
    }

    #[derive(Debug, Parser)]
    struct C {
        #[command(flatten)]
        a: ConnectArgs,
    }

    fn connect(args: &[&str]) -> Value {
        let t = C::try_parse_from(std::iter::once("connect").chain(args.iter().copied())).unwrap();
        serde_json::to_value(connect_body(&t.a)).unwrap()
    }

    #[test]
    fn connect_and_disconnect_bodies() {
        assert_eq!(
            connect(&[
                "--ip",
                "10.0.0.9",
                "--alias",
                "db",
                "--link",
                "c2:x",
                "--driver-opt",
                "k=v",
                "n1",
                "c1"
            ]),
            json!({"Container": "c1", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "10.0.0.9"},
                   "Aliases": ["db"], "Links": ["c2:x"], "DriverOpts": {"k": "v"}}})
        );
        // Nothing given: the empty lists and maps are left out (the API reads absent as empty).
        assert_eq!(
            connect(&["n1", "c1"]),
            json!({"Container": "c1", "EndpointConfig": {"IPAMConfig": {}}})
        );
        let d = NetworkDisconnectRequest { container: "c1".into(), force: true };
        assert_eq!(serde_json::to_value(d).unwrap(), json!({"Container": "c1", "Force": true}));
    }

    #[test]
    fn create_body_shape() {
        let b = body(&[
            "--subnet",
            "10.1.0.0/24",
            "--gateway",
            "10.1.0.254",
            "--label",
            "a=b",
            "-o",
            "k=v",
            "n1",
        ]);
        assert_eq!(
            b,
            json!({"Name": "n1", "CheckDuplicate": true, "Driver": "bridge", "Scope": "", "EnableIPv6": false,
                   "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.254"}]},
                   "Internal": false, "Attachable": false, "Ingress": false, "ConfigOnly": false,
                   "Options": {"k": "v"}, "Labels": {"a": "b"}})
        );
        assert_eq!(body(&["n2"])["IPAM"]["Config"], json!([]));
    }

    #[test]
    fn pairing_by_containment() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let c = ipam_config(
            &s(&["10.1.0.0/16", "fd00::/64", "10.2.0.0/16"]),
            &s(&["10.2.1.0/24", "fd00::/80"]),
            &s(&["fd00::1", "10.2.0.1", "10.1.0.1"]),
            &s(&["r1=10.1.0.5", "r2=10.2.0.5"]),
        )
        .unwrap();
        let c: Vec<Value> = c.into_iter().map(|c| serde_json::to_value(c).unwrap()).collect();
        assert_eq!(
            c,
            vec![
                json!({"Subnet": "10.1.0.0/16", "Gateway": "10.1.0.1", "AuxiliaryAddresses": {"r1": "10.1.0.5"}}),
                json!({"Subnet": "fd00::/64", "IPRange": "fd00::/80", "Gateway": "fd00::1"}),
                json!({"Subnet": "10.2.0.0/16", "IPRange": "10.2.1.0/24", "Gateway": "10.2.0.1", "AuxiliaryAddresses": {"r2": "10.2.0.5"}}),
            ]
        );
        // Not contained: sent with the first subnet of the same family for the daemon to reject.
        let c = ipam_config(
            &s(&["10.1.0.0/16", "fd00::/64"]),
            &[],
            &s(&["fd01::1", "192.168.0.1"]),
            &[],
        )
        .unwrap();
        assert_eq!(c[0].gateway, "192.168.0.1");
        assert_eq!(c[1].gateway, "fd01::1");
        // A single subnet pairs directly.
        let c = ipam_config(&s(&["10.1.0.0/16"]), &[], &s(&["10.9.0.1"]), &[]).unwrap();
        assert_eq!(c[0].gateway, "10.9.0.1");
        assert!(ipam_config(&[], &[], &s(&["10.0.0.1"]), &[]).is_err());
        assert!(ipam_config(&s(&["10.1.0.0/16"]), &[], &s(&["10.1.0.1", "10.1.0.2"]), &[]).is_err());
    }

    #[test]
    fn ls_rows() {
        let n: Val = serde_json::from_str(
            r#"{"Name":"bridge","Id":"f2de39df4171b0dc801e8002d1d999b77256983dfc63041c0f34030aa3977566",
               "Created":"2024-01-02T03:04:05.123Z","Scope":"local","Driver":"bridge","EnableIPv6":false,
               "Internal":false,"Labels":{}}"#,
        )
        .unwrap();
        let row = ls_row(&n, true);
        let out = render_list("", NETWORK_TABLE, std::slice::from_ref(&row), &headers()).unwrap();
        assert_eq!(
            out,
            "NETWORK ID     NAME      DRIVER    SCOPE\nf2de39df4171   bridge    bridge    local\n"
        );
        assert_eq!(
            render_list("{{.ID}} {{.IPv6}} {{.CreatedAt}}", "", &[row], &headers()).unwrap(),
            "f2de39df4171 false 2024-01-02 03:04:05.123 +0000 UTC\n"
        );
    }
}
