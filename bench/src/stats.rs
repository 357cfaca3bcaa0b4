//! Sample series, percentiles and the markdown report.

/// Milliseconds since `t`.
pub(crate) fn ms(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Samples of one operation, in milliseconds.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) name: String,
    samples: Vec<f64>,
}

impl Series {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), samples: vec![] }
    }
    pub(crate) fn samples(&self) -> &[f64] {
        &self.samples
    }
    pub(crate) fn len(&self) -> usize {
        self.samples.len()
    }
    pub(crate) fn median(&self) -> f64 {
        self.quantile(0.5)
    }
    pub(crate) fn extend(&mut self, ms: impl IntoIterator<Item = f64>) {
        self.samples.extend(ms);
    }
    pub(crate) fn push(&mut self, ms: f64) {
        self.samples.push(ms);
    }
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.samples.clone();
        v.sort_by(f64::total_cmp);
        v
    }
    /// The q-quantile (nearest rank).
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    }
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "name": self.name, "samples_ms": self.samples })
    }
}

/// A markdown table: median, p90, min, max, n, and ratio of medians to the named floor.
pub(crate) fn report(series: &[Series], ratios: &[(&str, &str)]) -> String {
    table(None, series, ratios, "ratio to floor")
}

/// The rows of [`report`], with an optional first column (e.g. the number of containers)
/// and header line; `ratio_head` names the last column. Series that are not the first of a
/// ratio pair are shown as `1.00x (floor)` when some pair names them as the floor, else `-`.
pub(crate) fn table(
    first: Option<(&str, &str)>,
    series: &[Series],
    ratios: &[(&str, &str)],
    ratio_head: &str,
) -> String {
    let mut s = String::new();
    if let Some((head, _)) = first {
        s.push_str(&format!("| {head} "));
    }
    s.push_str(&format!(
        "| operation | median ms | p90 ms | min ms | max ms | n | {ratio_head} |\n"
    ));
    s.push_str(&"|---".repeat(7 + usize::from(first.is_some())));
    s.push_str("|\n");
    s.push_str(&rows(first.map(|(_, v)| v), series, ratios));
    s
}

/// Table rows only (see [`table`]), so several groups can share one header.
pub(crate) fn rows(first: Option<&str>, series: &[Series], ratios: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for x in series {
        let ratio = ratios
            .iter()
            .find(|(a, _)| *a == x.name)
            .and_then(|(_, f)| series.iter().find(|y| y.name == *f))
            .map(|f| format!("{:.2}x", x.quantile(0.5) / f.quantile(0.5)))
            .unwrap_or_else(|| {
                if ratios.iter().any(|(_, f)| *f == x.name) {
                    "1.00x (floor)".into()
                } else {
                    "-".into()
                }
            });
        if let Some(v) = first {
            s.push_str(&format!("| {v} "));
        }
        s.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} |\n",
            x.name,
            x.quantile(0.5),
            x.quantile(0.9),
            x.quantile(0.0),
            x.quantile(1.0),
            x.samples.len(),
            ratio
        ));
    }
    s
}
