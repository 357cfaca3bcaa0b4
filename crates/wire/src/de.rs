//! serde helpers for Docker's loosely typed fields (`null` for empty, a string where a list
//! is expected).

use serde::{Deserialize, Deserializer};

/// `#[serde(default, deserialize_with = "nullable")]`: `null` decodes as the default.
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `#[serde(default, deserialize_with = "str_or_vec")]`: Docker's `StrSlice`: `null`, a
/// string (one element) or a list of strings.
pub fn str_or_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        One(String),
        Many(Vec<String>),
    }
    let v = Option::<serde_json::Value>::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(v) => match serde_json::from_value::<Either>(v) {
            Ok(Either::One(s)) => Ok(Some(vec![s])),
            Ok(Either::Many(v)) => Ok(Some(v)),
            Err(_) => Err(serde::de::Error::custom("expected a string or a list of strings")),
        },
    }
}

/// `skip_serializing_if` for a `false` flag.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}
