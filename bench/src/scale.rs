//! Speed and scale side by side: each installed peer (Docker, netavark, CNI) in a phase of
//! its own at each of its container counts, then Cove's published-port bench at its counts
//! (see [`crate::ports`]), every phase with the kernel floor measured under the same load.
//! One table compares the medians, one per system gives the spread, the JSON holds every
//! sample, and `scripts/scale-plot.py` draws cost against container count from it.

use anyhow::Result;
use std::fmt::Write as _;
use std::path::Path;

use crate::daemon::Daemon;
use crate::peers::{self, cni::Cni, docker::Docker, netavark::Netavark, Floors, Op, Peer, Point};
use crate::ports;
use crate::stats::{self, Series};

pub(crate) struct Options {
    pub(crate) cove: ports::Options,
    /// Container counts the peers are measured at.
    pub(crate) peer_counts: Vec<usize>,
    pub(crate) peer_iterations: usize,
    /// Which peers to run (those installed among them).
    pub(crate) peers: Vec<String>,
    /// A peer that fails fails the run (the smoke mode), instead of being reported.
    pub(crate) strict: bool,
}

pub(crate) struct Outcome {
    pub(crate) markdown: String,
    pub(crate) json: serde_json::Value,
}

/// One system's result: its points, or why it has none.
struct System {
    name: &'static str,
    points: Vec<Point>,
    note: Option<String>,
}

pub(crate) const PEERS: [&str; 3] = ["docker", "netavark", "cni"];

pub(crate) async fn run(d: &Daemon, root: &Path, o: &Options) -> Result<Outcome> {
    let mut systems = vec![];
    for &name in &PEERS {
        if !o.peers.iter().any(|p| p == name) {
            continue;
        }
        let dir = root.join(format!("peer-{name}"));
        let measured = match name {
            "docker" if peers::docker::installed() => match Docker::start(&dir) {
                Ok(mut p) => Some(measure(&mut p, &dir, o).await),
                Err(e) => Some(Err(e)),
            },
            "netavark" if peers::netavark::installed() => {
                Some(async { measure(&mut Netavark::new(&dir).await?, &dir, o).await }.await)
            }
            "cni" if peers::cni::installed() => {
                Some(async { measure(&mut Cni::new(&dir).await?, &dir, o).await }.await)
            }
            _ => None,
        };
        let _ = std::fs::remove_dir_all(&dir);
        systems.push(match measured {
            Some(Ok(points)) => System { name, points, note: None },
            Some(Err(e)) if o.strict => return Err(e.context(format!("peer {name}"))),
            Some(Err(e)) => {
                eprintln!("{name}: failed: {e:#}");
                System { name, points: vec![], note: Some(format!("failed: {e:#}")) }
            }
            None => System {
                name,
                points: vec![],
                note: Some("not installed (`scripts/bench.sh scale` installs it)".into()),
            },
        });
    }
    let cove = ports::run(d, root, &o.cove).await?;
    systems.insert(0, System { name: "cove", points: cove.comparison, note: None });

    let mut md = comparison_table(&systems);
    md.push_str("\n### Spread, per system\n\n");
    for s in &systems {
        md.push_str(&detail_table(s));
    }
    md.push_str("\n### Cove at each count\n\n");
    md.push_str(&cove.markdown);
    let json = serde_json::json!({
        "cove_counts": o.cove.counts,
        "cove_iterations": o.cove.iterations,
        "peer_counts": o.peer_counts,
        "peer_iterations": o.peer_iterations,
        "systems": systems.iter().map(|s| serde_json::json!({
            "name": s.name,
            "note": s.note,
            "points": s.points.iter().map(Point::to_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "cove_detail": cove.json,
    });
    Ok(Outcome { markdown: md, json })
}

async fn measure<P: Peer>(p: &mut P, dir: &Path, o: &Options) -> Result<Vec<Point>> {
    peers::measure(p, dir, &o.peer_counts, o.peer_iterations).await
}

/// Medians of every system at every count, with each one's ratio to the floor of its own
/// phase, and how many times Cove's median each peer's is.
fn comparison_table(systems: &[System]) -> String {
    let mut counts: Vec<usize> =
        systems.iter().flat_map(|s| s.points.iter().map(|p| p.containers)).collect();
    counts.sort_unstable();
    counts.dedup();
    let mut md = String::from(
        "Medians in ms; in parentheses the ratio to the kernel floor measured in the same \
         phase (for network create/rm, which have no floor, the target is absolute). \
         *peer ÷ cove*: how many times Cove's median each peer's is.\n\n| operation | containers |",
    );
    for s in systems {
        let _ = write!(md, " {} |", s.name);
    }
    md.push_str(" floor | peer ÷ cove |\n");
    md.push_str(&"|---".repeat(systems.len() + 4));
    md.push_str("|\n");
    for op in Op::ALL {
        for &n in &counts {
            let cells: Vec<Option<(f64, Option<f64>)>> =
                systems.iter().map(|s| cell(s, op, n)).collect();
            if cells.iter().all(Option::is_none) {
                continue;
            }
            let _ = write!(md, "| {} | {n} |", op.title());
            for c in &cells {
                match c {
                    Some((m, Some(f))) => {
                        let _ = write!(md, " {m:.2} ({:.1}x) |", m / f);
                    }
                    Some((m, None)) => {
                        let _ = write!(md, " {m:.2} |");
                    }
                    None => md.push_str(" - |"),
                }
            }
            let floor = op
                .floor()
                .and_then(|f| systems[0].points.iter().find(|p| p.containers == n)?.floor(f))
                .map_or("-".to_owned(), |s| format!("{:.2}", s.median()));
            let _ = write!(md, " {floor} |");
            let versus: Vec<String> = match cells[0] {
                Some((cove, _)) if cove > 0.0 => systems[1..]
                    .iter()
                    .zip(&cells[1..])
                    .filter_map(|(s, c)| c.map(|(m, _)| format!("{} {:.1}x", s.name, m / cove)))
                    .collect(),
                _ => vec![],
            };
            let _ = writeln!(
                md,
                " {} |",
                if versus.is_empty() { "-".into() } else { versus.join(", ") }
            );
        }
    }
    for s in systems.iter().filter(|s| s.note.is_some()) {
        let _ = writeln!(md, "\n{}: {}", s.name, s.note.as_deref().unwrap_or(""));
    }
    md
}

/// A system's median at `n` containers and its floor's median, if measured.
fn cell(s: &System, op: Op, n: usize) -> Option<(f64, Option<f64>)> {
    let p = s.points.iter().find(|p| p.containers == n)?;
    let m = p.op(op)?.median();
    Some((m, op.floor().and_then(|f| p.floor(f)).map(Series::median)))
}

/// Median, p90, min, max and n of every series of one system, with ratios to its floor.
fn detail_table(s: &System) -> String {
    if s.points.is_empty() {
        return format!("**{}**: {}\n\n", s.name, s.note.as_deref().unwrap_or("no points"));
    }
    let mut md = format!("**{}**\n\n", s.name);
    for (i, p) in s.points.iter().enumerate() {
        let mut series: Vec<Series> = p.ops.iter().map(|(_, s)| s.clone()).collect();
        series.extend(p.floor.iter().map(|(_, s)| s.clone()));
        let ratios: Vec<(&str, &str)> = p
            .ops
            .iter()
            .filter_map(|(o, _)| Some((o.title(), o.floor().map(Floors::title)?)))
            .collect();
        let n = p.containers.to_string();
        if i == 0 {
            md.push_str(&stats::table(
                Some(("containers", &n)),
                &series,
                &ratios,
                "ratio to floor",
            ));
        } else {
            md.push_str(&stats::rows(Some(&n), &series, &ratios));
        }
    }
    md.push('\n');
    md
}
