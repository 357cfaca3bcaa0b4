//! `cove image import|load|ls|rm|inspect` (and the `images`/`rmi` shortcuts).

use super::client::{encode, with_query, Client, ReqBody};
use super::format::{human_size, render_list, short_id, since, unix_time_string};
use super::inspect::{typed, Kind, TypedInspectArgs};
use super::value::Val;
use super::{filters_json, report};
use clap::{Args, Subcommand};
use hyper::Method;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// Load an image from a tar archive (docker save format) or STDIN
    Load(LoadArgs),
    /// List images
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Remove one or more images
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Display detailed information on one or more images
    Inspect(TypedInspectArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// file|URL|- (a root filesystem tarball)
    file: String,
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    input: Option<PathBuf>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    quiet: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short = 'a', long)]
    all: bool,
    /// Only show image IDs
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
    /// REPOSITORY[:TAG]
    reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    force: bool,
    /// Do not delete untagged parents
    #[arg(long = "no-prune")]
    no_prune: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

pub async fn run(client: &Client, cmd: ImageCmd) -> anyhow::Result<i32> {
    match cmd {
        ImageCmd::Import(a) => import(client, a).await,
        ImageCmd::Load(a) => load(client, a).await,
        ImageCmd::Ls(a) => ls(client, a).await,
        ImageCmd::Rm(a) => rm(client, a).await,
        ImageCmd::Inspect(a) => typed(client, a, Kind::Image).await,
    }
}

/// Split `name[:tag]` (a `:` before the last `/` belongs to a registry port).
pub fn split_reference(r: &str) -> (&str, Option<&str>) {
    match r.rfind(':') {
        Some(i) if !r[i..].contains('/') => (&r[..i], Some(&r[i + 1..])),
        _ => (r, None),
    }
}

/// Print a JSON message stream (`{"status"}`, `{"stream"}`, `{"error"}`) like docker.
fn print_messages(body: &[u8], quiet: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for msg in serde_json::Deserializer::from_slice(body).into_iter::<Val>() {
        let Ok(msg) = msg else {
            // Not JSON: show it as is.
            out.write_all(body)?;
            return Ok(());
        };
        let text = |k: &str| msg.get(k).and_then(Val::as_str).filter(|s| !s.is_empty());
        if let Some(e) =
            msg.path(&["errorDetail", "message"]).and_then(Val::as_str).or(text("error"))
        {
            anyhow::bail!("{e}");
        }
        if quiet {
            continue;
        }
        if let Some(s) = text("stream") {
            write!(out, "{s}")?;
        } else if let Some(s) = text("status") {
            match text("id") {
                Some(id) => writeln!(out, "{id}: {s}")?,
                None => writeln!(out, "{s}")?,
            }
        } else if let Some(id) = text("Id") {
            writeln!(out, "{id}")?;
        }
    }
    Ok(out.flush()?)
}

async fn import(client: &Client, a: ImportArgs) -> anyhow::Result<i32> {
    let is_url = a.file.starts_with("http://") || a.file.starts_with("https://");
    let mut params = vec![("fromSrc", if is_url { a.file.clone() } else { "-".into() })];
    if let Some(r) = &a.reference {
        let (repo, tag) = split_reference(r);
        params.push(("repo", repo.to_string()));
        if let Some(tag) = tag {
            params.push(("tag", tag.to_string()));
        }
    }
    if let Some(m) = &a.message {
        params.push(("message", m.clone()));
    }
    let body = if is_url {
        ReqBody::Empty
    } else if a.file == "-" {
        ReqBody::reader(tokio::io::stdin())
    } else {
        let f = tokio::fs::File::open(&a.file)
            .await
            .map_err(|e| anyhow::anyhow!("open {}: {e}", a.file))?;
        ReqBody::reader(f)
    };
    let path = with_query("/images/create", &params);
    let bytes = client.call(Method::POST, &path, body, Some("application/x-tar")).await?;
    print_messages(&bytes, false)?;
    Ok(0)
}

async fn load(client: &Client, a: LoadArgs) -> anyhow::Result<i32> {
    let body = match &a.input {
        Some(p) => {
            let f = tokio::fs::File::open(p)
                .await
                .map_err(|e| anyhow::anyhow!("open {}: {e}", p.display()))?;
            ReqBody::reader(f)
        }
        None => {
            anyhow::ensure!(
                !std::io::stdin().is_terminal(),
                "requested load from stdin, but stdin is empty"
            );
            ReqBody::reader(tokio::io::stdin())
        }
    };
    let path = if a.quiet { "/images/load?quiet=1" } else { "/images/load" };
    let bytes = client.call(Method::POST, path, body, Some("application/x-tar")).await?;
    print_messages(&bytes, a.quiet)?;
    Ok(0)
}

const IMAGE_TABLE: &str = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}";

fn headers() -> Val {
    Val::obj(
        [
            ("Containers", "CONTAINERS"),
            ("CreatedAt", "CREATED AT"),
            ("CreatedSince", "CREATED"),
            ("Digest", "DIGEST"),
            ("ID", "IMAGE ID"),
            ("Repository", "REPOSITORY"),
            ("SharedSize", "SHARED SIZE"),
            ("Size", "SIZE"),
            ("Tag", "TAG"),
            ("UniqueSize", "UNIQUE SIZE"),
            ("VirtualSize", "VIRTUAL SIZE"),
        ]
        .map(|(k, v)| (k, Val::str(v))),
    )
}

/// One row per tag of a `GET /images/json` entry.
pub fn image_rows(img: &Val, trunc: bool) -> Vec<Val> {
    let id = img.get("Id").and_then(Val::as_str).unwrap_or("");
    let created = img.get("Created").and_then(Val::as_i64).unwrap_or(0);
    let size = img.get("Size").and_then(Val::as_i64).unwrap_or(0) as f64;
    let mut tags: Vec<String> =
        img.get("RepoTags").map(Val::as_arr).unwrap_or(&[]).iter().map(Val::to_text).collect();
    if tags.is_empty() {
        tags.push("<none>:<none>".into());
    }
    tags.iter()
        .map(|t| {
            let (repo, tag) = split_reference(t);
            Val::obj([
                ("Containers", Val::str("N/A")),
                ("CreatedAt", Val::Str(unix_time_string(created))),
                ("CreatedSince", Val::Str(since(created))),
                ("Digest", Val::str("<none>")),
                ("ID", Val::Str(if trunc { short_id(id) } else { id.to_string() })),
                ("Repository", Val::str(repo)),
                ("SharedSize", Val::str("N/A")),
                ("Size", Val::Str(human_size(size))),
                ("Tag", Val::str(tag.unwrap_or("<none>"))),
                ("UniqueSize", Val::str("N/A")),
                ("VirtualSize", Val::Str(human_size(size))),
            ])
        })
        .collect()
}

pub async fn ls(client: &Client, a: LsArgs) -> anyhow::Result<i32> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut params = Vec::new();
    if a.all {
        params.push(("all", "1".to_string()));
    }
    if let Some(f) = filters_json(&filters)? {
        params.push(("filters", f));
    }
    let list = client.get_val(&with_query("/images/json", &params)).await?;
    let rows: Vec<Val> = list.as_arr().iter().flat_map(|i| image_rows(i, !a.no_trunc)).collect();
    let format = if a.quiet { "{{.ID}}" } else { a.format.as_deref().unwrap_or("") };
    print!("{}", render_list(format, IMAGE_TABLE, &rows, &headers())?);
    Ok(0)
}

pub async fn rm(client: &Client, a: RmArgs) -> anyhow::Result<i32> {
    let mut params = Vec::new();
    if a.force {
        params.push(("force", "1".to_string()));
    }
    if a.no_prune {
        params.push(("noprune", "1".to_string()));
    }
    let mut code = 0;
    for name in &a.images {
        match client.delete(&with_query(&format!("/images/{}", encode(name)), &params)).await {
            Ok(body) => {
                let items: Val = serde_json::from_slice(&body).unwrap_or(Val::Null);
                for item in items.as_arr() {
                    for (k, v) in item.as_obj() {
                        println!("{k}: {}", v.to_text());
                    }
                }
            }
            Err(e) => {
                report(&e);
                code = 1;
            }
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(split_reference("busybox"), ("busybox", None));
        assert_eq!(split_reference("busybox:1.35"), ("busybox", Some("1.35")));
        assert_eq!(split_reference("localhost:5000/bb"), ("localhost:5000/bb", None));
        assert_eq!(split_reference("localhost:5000/bb:v1"), ("localhost:5000/bb", Some("v1")));
    }

    #[test]
    fn image_table() {
        let img: Val = serde_json::from_str(
            r#"{"Id":"sha256:0123456789abcdef","RepoTags":["busybox:latest","bb:1"],"Created":0,"Size":2150000}"#,
        )
        .unwrap();
        let rows = image_rows(&img, true);
        assert_eq!(rows.len(), 2);
        let out = render_list(
            "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}",
            IMAGE_TABLE,
            &rows,
            &headers(),
        )
        .unwrap();
        assert_eq!(
            out,
            "REPOSITORY   TAG       IMAGE ID       SIZE\n\
             busybox      latest    0123456789ab   2.15MB\n\
             bb           1         0123456789ab   2.15MB\n"
        );
        let none =
            image_rows(&serde_json::from_str(r#"{"Id":"sha256:ab","RepoTags":[]}"#).unwrap(), true);
        assert_eq!(none[0].get("Repository").unwrap().to_text(), "<none>");
    }
}
