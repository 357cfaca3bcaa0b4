//! An order-preserving JSON value for templates and daemon answers.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::fmt;

/// A JSON value that keeps object keys in the order the daemon sent them.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// A missing map key (Go prints `<no value>`).
    NoValue,
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<Val>),
    Obj(Vec<(String, Val)>),
}

impl Val {
    pub fn str(s: impl Into<String>) -> Val {
        Val::Str(s.into())
    }

    /// Build an object from `(key, value)` pairs.
    pub fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Val)>) -> Val {
        Val::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Field of an object.
    pub fn get(&self, key: &str) -> Option<&Val> {
        match self {
            Val::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follow a path of object keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Val> {
        keys.iter().try_fold(self, |v, k| v.get(k))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Val::Num(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> bool {
        matches!(self, Val::Bool(true))
    }

    pub fn as_arr(&self) -> &[Val] {
        match self {
            Val::Arr(a) => a,
            _ => &[],
        }
    }

    pub fn as_obj(&self) -> &[(String, Val)] {
        match self {
            Val::Obj(m) => m,
            _ => &[],
        }
    }

    /// Go template truth: false, 0, nil and empty values are false.
    pub fn truthy(&self) -> bool {
        match self {
            Val::NoValue | Val::Null => false,
            Val::Bool(b) => *b,
            Val::Num(n) => n.as_f64().is_some_and(|f| f != 0.0),
            Val::Str(s) => !s.is_empty(),
            Val::Arr(a) => !a.is_empty(),
            Val::Obj(m) => !m.is_empty(),
        }
    }

    /// Go's `%v` rendering.
    pub fn to_text(&self) -> String {
        match self {
            Val::NoValue => "<no value>".into(),
            Val::Null => "<nil>".into(),
            Val::Bool(b) => b.to_string(),
            Val::Num(n) => n.to_string(),
            Val::Str(s) => s.clone(),
            Val::Arr(a) => {
                format!("[{}]", a.iter().map(Val::to_text).collect::<Vec<_>>().join(" "))
            }
            Val::Obj(m) => {
                let mut items: Vec<_> = m.iter().collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                let parts: Vec<_> =
                    items.iter().map(|(k, v)| format!("{k}:{}", v.to_text())).collect();
                format!("map[{}]", parts.join(" "))
            }
        }
    }

    /// Compact JSON, HTML characters not escaped (docker's `json` function).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Val::NoValue | Val::Null => "nil",
            Val::Bool(_) => "bool",
            Val::Num(_) => "number",
            Val::Str(_) => "string",
            Val::Arr(_) => "slice",
            Val::Obj(_) => "map",
        }
    }
}

impl Serialize for Val {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Val::NoValue | Val::Null => s.serialize_unit(),
            Val::Bool(b) => s.serialize_bool(*b),
            Val::Num(n) => n.serialize(s),
            Val::Str(v) => s.serialize_str(v),
            Val::Arr(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Val::Obj(m) => {
                // Go marshals maps with sorted keys and structs in field order; keys that
                // are not all Go-style field names mark a map.
                let is_struct = m.iter().all(|(k, _)| {
                    k.starts_with(|c: char| c.is_ascii_uppercase())
                        && k.chars().all(|c| c.is_ascii_alphanumeric())
                });
                let mut entries: Vec<&(String, Val)> = m.iter().collect();
                if !is_struct {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Val, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Val;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Val, E> {
                Ok(Val::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Val, E> {
                Ok(Val::Num(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Val, E> {
                Ok(Val::Num(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Val, E> {
                Ok(serde_json::Number::from_f64(n).map_or(Val::Null, Val::Num))
            }
            fn visit_str<E>(self, s: &str) -> Result<Val, E> {
                Ok(Val::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Val, E> {
                Ok(Val::Str(s))
            }
            fn visit_unit<E>(self) -> Result<Val, E> {
                Ok(Val::Null)
            }
            fn visit_none<E>(self) -> Result<Val, E> {
                Ok(Val::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Val, D::Error> {
                Val::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Val, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(Val::Arr(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Val, A::Error> {
                let mut out: Vec<(String, Val)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Val>()? {
                    match out.iter_mut().find(|(key, _)| *key == k) {
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Ok(Val::Obj(out))
            }
        }
        d.deserialize_any(V).map_err(de::Error::custom)
    }
}
