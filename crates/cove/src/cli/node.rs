//! `cove node ls|rm`: the hosts of the cluster this daemon is in.

use clap::{Args, Subcommand};

use super::client::{encode, Client};
use super::report;
use super::value::Val;

/// Node commands.
#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List the hosts of the cluster
    #[command(alias = "list")]
    Ls,
    /// Forget hosts that are down for good (their containers' addresses are freed)
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Replace this node's encryption key now (peers take the new one from the cluster)
    RotateKey,
}

/// `cove node rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Node ids or hostnames.
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

/// Run a node command.
pub async fn run(client: &Client, cmd: NodeCmd) -> anyhow::Result<i32> {
    match cmd {
        NodeCmd::Ls => {
            let list = client.get_val("/nodes").await?;
            let info = client.get_val("/info").await?;
            let me =
                info.path(&["Swarm", "NodeID"]).and_then(Val::as_str).unwrap_or("").to_string();
            let s = |n: &Val, path: &[&str]| {
                let mut v = n;
                for p in path {
                    match v.get(p) {
                        Some(x) => v = x,
                        None => return String::new(),
                    }
                }
                v.as_str().unwrap_or("").to_string()
            };
            println!(
                "{:<14}{:<20}{:<8}{:<16}MANAGER STATUS",
                "ID", "HOSTNAME", "STATUS", "ADDRESS"
            );
            for n in list.as_arr() {
                let id = s(n, &["ID"]);
                let this = if id == me { " *" } else { "" };
                let leader = n.path(&["ManagerStatus", "Leader"]).is_some_and(Val::as_bool);
                println!(
                    "{:<14}{:<20}{:<8}{:<16}{}",
                    format!("{}{this}", &id[..id.len().min(12)]),
                    s(n, &["Description", "Hostname"]),
                    match s(n, &["Status", "State"]).as_str() {
                        "ready" => "Ready",
                        _ => "Down",
                    },
                    s(n, &["Status", "Addr"]),
                    if leader {
                        "Leader".to_string()
                    } else {
                        let r = s(n, &["ManagerStatus", "Reachability"]);
                        let mut c = r.chars();
                        c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
                    }
                );
            }
            Ok(0)
        }
        NodeCmd::RotateKey => {
            let v = client.post_val("/nodes/self/rotate-key").await?;
            println!("{}", v.get("PublicKey").and_then(Val::as_str).unwrap_or(""));
            Ok(0)
        }
        NodeCmd::Rm(a) => {
            let mut code = 0;
            for n in &a.nodes {
                match client.delete(&format!("/nodes/{}", encode(n))).await {
                    Ok(_) => println!("{n}"),
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
