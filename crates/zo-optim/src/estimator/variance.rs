//! Variances that scale with the parameter count, written `"auto"` or as a number.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{ConfigError, positive};

/// How to choose a variance that scales with the parameter count.
///
/// Serialised as the string `"auto"` or a bare number (TOML `prior_variance = "auto"` or
/// `prior_variance = 1e-3`). The map `{"value": x}` is read as `Value(x)` too.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Variance {
    /// `n · 1e-6` for `n` trainable parameters (the authors' "auto": `(√(n/1e6))²`).
    Auto,
    /// A fixed value.
    Value(f64),
}

impl Variance {
    /// The value for `n` parameters.
    pub fn resolve(self, n: usize) -> f64 {
        match self {
            Self::Auto => n as f64 * 1e-6,
            Self::Value(v) => v,
        }
    }

    pub(super) fn validate(self, field: &'static str) -> Result<(), ConfigError> {
        match self {
            Self::Auto => Ok(()),
            Self::Value(v) => positive(field, v),
        }
    }
}

impl Serialize for Variance {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::Value(v) => serializer.serialize_f64(v),
        }
    }
}

struct VarianceVisitor;

impl<'de> Visitor<'de> for VarianceVisitor {
    type Value = Variance;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"auto\" or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Variance, E> {
        if v == "auto" {
            Ok(Variance::Auto)
        } else {
            Err(E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Variance, E> {
        Ok(Variance::Value(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Variance, E> {
        Ok(Variance::Value(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Variance, E> {
        Ok(Variance::Value(v as f64))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Variance, A::Error> {
        let mut value = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "value" {
                return Err(de::Error::unknown_field(&key, &["value"]));
            }
            if value.is_some() {
                return Err(de::Error::duplicate_field("value"));
            }
            value = Some(map.next_value::<f64>()?);
        }
        value
            .map(Variance::Value)
            .ok_or_else(|| de::Error::missing_field("value"))
    }
}

impl<'de> Deserialize<'de> for Variance {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(VarianceVisitor)
    }
}
