//! Config units: durations (`250ms`, `10s`, `5m`, `1h`, `1d`) and byte sizes (`512`, `16KiB`,
//! `10MB`) as the file writes them, their serde readers and parsers. Pure values, no
//! positions: a bad unit becomes a serde error that `errors` positions.
//!
//! Layer 1 (vocabulary): blocks (policy, jwt, apikey) use these for their own Raw types.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A duration written as `250ms`, `10s`, `5m`, `1h` or `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawDuration(pub std::time::Duration);

/// Parses `250ms` / `10s` / `5m` / `1h` / `1d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("invalid duration {s:?}: missing unit (ms, s, m, h, d)"))?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.len() > 12 {
        return Err(format!(
            "invalid duration {s:?}: expected a whole number then a unit, like \"10s\""
        ));
    }
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    let mult: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "invalid duration {s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
            ))
        }
    };
    let ms = n
        .checked_mul(mult)
        .ok_or_else(|| format!("invalid duration {s:?}: too large"))?;
    Ok(std::time::Duration::from_millis(ms))
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string like \"250ms\", \"10s\", \"5m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                parse_duration(v).map(RawDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A byte size: an integer, or a string like `16KiB`, `10MiB`, `1GiB`, `512B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawSize(pub u64);

/// Parses `512`, `512B`, `16KiB`, `10MiB`, `1GiB` (also KB/MB/GB as powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() || num.len() > 15 {
        return Err(format!(
            "invalid size {s:?}: expected a number like \"10MiB\""
        ));
    }
    let n: u64 = num.parse().map_err(|_| format!("invalid size {s:?}"))?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => {
            return Err(format!(
                "invalid size {s:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: an integer number of bytes or a string like \"10MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                u64::try_from(v)
                    .map(RawSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                Ok(RawSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                parse_size(v).map(RawSize).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// The duration `v` holds, or `default` when absent.
pub fn dur(v: &Option<Spanned<RawDuration>>, default: Duration) -> Duration {
    v.as_ref().map(|d| d.get_ref().0).unwrap_or(default)
}

impl schemars::JsonSchema for RawDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(ms|s|m|h|d)$",
            "description": "A whole number and a unit: ms, s, m, h or d (\"250ms\", \"10s\")."
        })
    }
}

impl schemars::JsonSchema for RawSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes: an integer, or a number and a unit (B, KiB, MiB, GiB, KB, MB, GB).",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9]+(B|KiB|MiB|GiB|KB|MB|GB)?$" }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("999999999999d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size("10MiB"), Ok(10 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert!(parse_size("10 furlongs").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("999999999999999GiB").is_err());
    }
}
