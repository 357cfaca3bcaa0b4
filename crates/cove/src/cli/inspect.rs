//! `cove inspect` and the typed `container|network|image inspect` commands: the daemon's
//! JSON, re-indented like docker (keys in the daemon's order), or a `--format` template.

use super::client::{encode, Client};
use super::format::{indent_json, render_one};
use super::value::Val;
use super::{is_status, report};
use bytes::Bytes;
use clap::{Args, ValueEnum};

/// Object types `cove inspect --type` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Container,
    Network,
    Image,
}

impl Kind {
    fn path(self, name: &str) -> String {
        let name = encode(name);
        match self {
            Kind::Container => format!("/containers/{name}/json"),
            Kind::Network => format!("/networks/{name}"),
            Kind::Image => format!("/images/{name}/json"),
        }
    }
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Only inspect objects of the given type
    #[arg(long = "type", value_enum)]
    kind: Option<Kind>,
    #[arg(required = true, value_name = "NAME|ID")]
    names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TypedInspectArgs {
    /// Format output using a custom template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    #[arg(required = true, value_name = "NAME|ID")]
    pub names: Vec<String>,
}

/// Print the inspected objects as docker does.
fn output(elements: &[Bytes], format: Option<&str>) -> anyhow::Result<()> {
    match format {
        Some(f) if !f.is_empty() => {
            for e in elements {
                let v: Val = serde_json::from_slice(e)?;
                println!("{}", render_one(f, &v)?);
            }
        }
        _ if elements.is_empty() => println!("[]"),
        _ => {
            let joined: Vec<&[u8]> = elements.iter().map(|b| b.as_ref()).collect();
            let raw = [b"[".as_slice(), &joined.join(b",".as_slice()), b"]"].concat();
            println!("{}", indent_json(&raw));
        }
    }
    Ok(())
}

/// Inspect objects of one type.
pub async fn typed(client: &Client, a: TypedInspectArgs, kind: Kind) -> anyhow::Result<i32> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for name in &a.names {
        match client.get(&kind.path(name)).await {
            Ok(b) => found.push(b),
            Err(e) => errors.push(e),
        }
    }
    finish(&found, a.format.as_deref(), errors)
}

fn finish(
    found: &[Bytes],
    format: Option<&str>,
    errors: Vec<anyhow::Error>,
) -> anyhow::Result<i32> {
    output(found, format)?;
    for e in &errors {
        report(e);
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// `cove inspect`: containers, then networks, then images.
pub async fn inspect(client: &Client, a: InspectArgs) -> anyhow::Result<i32> {
    let kinds = match a.kind {
        Some(k) => vec![k],
        None => vec![Kind::Container, Kind::Network, Kind::Image],
    };
    let mut found = Vec::new();
    let mut errors = Vec::new();
    'names: for name in &a.names {
        for &kind in &kinds {
            match client.get(&kind.path(name)).await {
                Ok(b) => {
                    found.push(b);
                    continue 'names;
                }
                Err(e) if is_status(&e, 404) => {}
                Err(e) => {
                    errors.push(e);
                    continue 'names;
                }
            }
        }
        errors.push(anyhow::anyhow!("No such object: {name}"));
    }
    finish(&found, a.format.as_deref(), errors)
}
