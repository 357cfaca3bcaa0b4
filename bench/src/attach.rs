//! Attach and detach of a running container (`network connect` / `disconnect` through the
//! API) against the netlink floor, interleaved.

use anyhow::Result;
use rand::seq::SliceRandom;
use std::path::Path;
use std::time::Instant;

use crate::daemon::Daemon;
use crate::floor::Floor;
use crate::http::Engine;
use crate::stats::{self, Series};

pub(crate) struct Outcome {
    pub(crate) markdown: String,
    pub(crate) json: serde_json::Value,
}

pub(crate) async fn run(d: &Daemon, root: &Path, iterations: usize) -> Result<Outcome> {
    d.cli(&["network", "create", "--subnet", "10.251.0.0/16", "benchnet"])?;
    // The subject runs on the default bridge; each iteration connects it to benchnet
    // (eth1) and disconnects it again.
    d.cli(&["run", "-d", "--name", "subject", "busybox", "sleep", "1000000"])?;
    let mut floor = Floor::new(&root.join("floor")).await?;

    let connect = r#"{"Container":"subject"}"#;
    let mut series = [
        Series::new("floor attach"),
        Series::new("cove attach"),
        Series::new("floor detach"),
        Series::new("cove detach"),
    ];
    let mut rng = rand::rng();
    for i in 0..iterations + 3 {
        let mut order = [0usize, 1];
        order.shuffle(&mut rng);
        let mut path = None;
        let mut sample = [0f64; 4];
        for which in order {
            let t = Instant::now();
            if which == 0 {
                path = Some(floor.attach().await?.0);
            } else {
                d.api("POST", "/networks/benchnet/connect", Some(connect), 200)?;
            }
            sample[which] = t.elapsed().as_secs_f64() * 1e3;
        }
        order.shuffle(&mut rng);
        for which in order {
            let t = Instant::now();
            if which == 0 {
                floor.detach(path.as_ref().expect("attached")).await?;
            } else {
                d.api("POST", "/networks/benchnet/disconnect", Some(connect), 200)?;
            }
            sample[2 + which] = t.elapsed().as_secs_f64() * 1e3;
        }
        // The first iterations warm caches; they are not counted.
        if i >= 3 {
            for (s, v) in series.iter_mut().zip(sample) {
                s.push(v);
            }
        }
    }
    d.cli(&["rm", "-f", "subject"])?;
    d.cli(&["network", "rm", "benchnet"])?;
    floor.remove().await;

    let markdown =
        stats::report(&series, &[("cove attach", "floor attach"), ("cove detach", "floor detach")]);
    let json = serde_json::json!({
        "iterations": iterations,
        "series": series.iter().map(Series::to_json).collect::<Vec<_>>(),
    });
    Ok(Outcome { markdown, json })
}
