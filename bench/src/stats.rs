//! Sample series, percentiles and the markdown report.

/// Samples of one operation, in milliseconds.
pub(crate) struct Series {
    pub(crate) name: &'static str,
    samples: Vec<f64>,
}

impl Series {
    pub(crate) fn new(name: &'static str) -> Self {
        Self { name, samples: vec![] }
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
    let mut s = String::from("| operation | median ms | p90 ms | min ms | max ms | n | ratio to floor |\n|---|---|---|---|---|---|---|\n");
    for x in series {
        let ratio = ratios
            .iter()
            .find(|(a, _)| *a == x.name)
            .and_then(|(_, f)| series.iter().find(|y| y.name == *f))
            .map(|f| format!("{:.2}x", x.quantile(0.5) / f.quantile(0.5)))
            .unwrap_or_else(|| "1.00x (floor)".into());
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
