//! Docker's `filters` query parameter: JSON `{"key": {"value": true}}` (what the CLI sends)
//! or `{"key": ["value"]}` (the documented form). Values of one key are alternatives (OR);
//! different keys must all match (AND).

use std::collections::BTreeMap;

use crate::ApiError;

/// Parsed filters: key to its values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parse the raw (already URL-decoded) `filters` value; empty means no filters.
    pub(crate) fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let raw = raw.unwrap_or("").trim();
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let bad = |why: String| ApiError::bad_request(format!("invalid filters {raw:?}: {why}"));
        let v: serde_json::Value = serde_json::from_str(raw).map_err(|e| bad(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| bad("expected a JSON object".into()))?;
        let mut out = BTreeMap::new();
        for (key, vals) in obj {
            let list: Vec<String> = match vals {
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad(format!("values of {key:?} must be strings")))?,
                serde_json::Value::String(s) => vec![s.clone()],
                _ => return Err(bad(format!("values of {key:?} must be a list or a map"))),
            };
            out.insert(key.clone(), list);
        }
        Ok(Self(out))
    }

    /// Refuse keys outside `allowed` (Docker: 400 `invalid filter 'x'`).
    pub(crate) fn validate(&self, allowed: &[&str]) -> Result<(), ApiError> {
        for key in self.0.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{key}'")));
            }
        }
        Ok(())
    }

    /// The values of `key` (None when the filter is absent).
    pub(crate) fn get(&self, key: &str) -> Option<&[String]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// True when `key` is absent or `pred` accepts one of its values.
    pub(crate) fn any(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        match self.get(key) {
            None => true,
            Some(vals) => vals.iter().any(|v| pred(v)),
        }
    }

    /// True when `key` is absent or every value is accepted (Docker's `label` filter: all
    /// labels given must be present).
    pub(crate) fn all(&self, key: &str, pred: impl Fn(&str) -> bool) -> bool {
        match self.get(key) {
            None => true,
            Some(vals) => vals.iter().all(|v| pred(v)),
        }
    }

    /// True when there are no filters.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Docker matches names with a regular expression; Cove supports what people write: a
/// substring, optionally anchored with `^` and/or `$`.
pub(crate) fn name_matches(pattern: &str, name: &str) -> bool {
    let (anchored_start, p) = match pattern.strip_prefix('^') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let (anchored_end, p) = match p.strip_suffix('$') {
        Some(p) => (true, p),
        None => (false, p),
    };
    match (anchored_start, anchored_end) {
        (true, true) => name == p,
        (true, false) => name.starts_with(p),
        (false, true) => name.ends_with(p),
        (false, false) => name.contains(p),
    }
}

/// `label=k` (present) or `label=k=v` (equal).
pub(crate) fn label_matches(filter: &str, labels: &BTreeMap<String, String>) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(filter),
    }
}

/// Docker's boolean filter values.
pub(crate) fn filter_bool(key: &str, v: &str) -> Result<bool, ApiError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "invalid filter '{key}={v}': expected true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_parse_the_same() {
        let a =
            Filters::parse(Some(r#"{"name":{"web":true},"label":{"a=b":true,"c":true}}"#)).unwrap();
        let b = Filters::parse(Some(r#"{"name":["web"],"label":["a=b","c"]}"#)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get("name"), Some(&["web".to_string()][..]));
        assert!(Filters::parse(None).unwrap().is_empty());
        assert!(Filters::parse(Some("")).unwrap().is_empty());
        assert!(Filters::parse(Some("{}")).unwrap().is_empty());
    }

    #[test]
    fn bad_filters_are_400() {
        for bad in ["[", "[1]", r#"{"name":5}"#, r#"{"name":[5]}"#] {
            let e = Filters::parse(Some(bad)).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
        }
        let f = Filters::parse(Some(r#"{"bogus":["x"]}"#)).unwrap();
        let e = f.validate(&["name"]).unwrap_err();
        assert_eq!(e.message, "invalid filter 'bogus'");
    }

    #[test]
    fn any_and_all() {
        let f = Filters::parse(Some(r#"{"name":["a","b"]}"#)).unwrap();
        assert!(f.any("name", |v| v == "b"));
        assert!(!f.any("name", |v| v == "c"));
        assert!(f.any("id", |_| false), "absent key matches");
        assert!(!f.all("name", |v| v == "a"));
    }

    #[test]
    fn names_and_labels() {
        assert!(name_matches("web", "my-web-1"));
        assert!(name_matches("^web", "web-1"));
        assert!(!name_matches("^web", "my-web"));
        assert!(name_matches("^/web$", "/web"));
        assert!(!name_matches("^web$", "web1"));
        assert!(name_matches("1$", "web1"));
        let labels: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
        assert!(label_matches("a", &labels));
        assert!(label_matches("a=b", &labels));
        assert!(!label_matches("a=c", &labels));
        assert!(!label_matches("x", &labels));
        assert!(filter_bool("dangling", "TRUE").unwrap());
        assert!(filter_bool("dangling", "maybe").is_err());
    }
}
