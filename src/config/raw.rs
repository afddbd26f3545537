//! Raw config: serde types that mirror `ringway.toml` one to one, with spans for error messages.
//!
//! No logic and no defaults beyond "absent" lives here; `compile.rs` validates and derives.
//! Every struct denies unknown fields so a typo is an error that names the line, not a silently
//! ignored setting.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Config format version; only 1 exists.
    pub version: Option<Spanned<i64>>,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub timeouts: RawTimeouts,
    #[serde(default)]
    pub upstreams: BTreeMap<Spanned<String>, RawUpstream>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub metrics: RawMetrics,
    #[serde(default)]
    pub access_log: RawAccessLog,
    #[serde(default)]
    pub tracing: RawTracing,
    /// Named policies, listed by routes (and `[[defaults]]`) in the order they run.
    #[serde(default)]
    pub policies: BTreeMap<Spanned<String>, RawPolicy>,
    /// Policies applied to every route under a path prefix and/or host.
    #[serde(default)]
    pub defaults: Vec<RawDefaults>,
    #[serde(default)]
    pub consumers: BTreeMap<Spanned<String>, RawConsumer>,
    /// Where API keys live and how they are hashed.
    pub api_keys: Option<crate::apikey::RawApiKeys>,
    /// Request path normalization.
    #[serde(default)]
    pub paths: RawPaths,
}

/// `[paths]`: how request paths are normalized before routing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPaths {
    pub merge_slashes: Option<bool>,
    /// "reject" | "keep" | "unescape"
    pub escaped_slashes: Option<Spanned<String>>,
    /// "strip" | "reject" | "keep"
    pub path_params: Option<Spanned<String>>,
}

/// One named policy: exactly one of the kinds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub api_key: Option<Spanned<RawApiKeyPolicy>>,
    pub jwt: Option<Spanned<crate::jwt::RawJwt>>,
    pub authorize: Option<Spanned<RawAuthorize>>,
    pub ip: Option<Spanned<crate::policy::ip::RawIpFilter>>,
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    pub cors: Option<Spanned<crate::policy::cors::RawCors>>,
    pub transform: Option<Spanned<crate::policy::transform::RawTransform>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeyPolicy {
    /// Headers searched in order (default `authorization` (Bearer) then `x-api-key`).
    pub headers: Option<Vec<Spanned<String>>>,
    /// Query parameter searched after the headers (removed before forwarding).
    pub query: Option<Spanned<String>>,
    /// Header that carries the consumer name upstream (default `x-consumer`).
    pub consumer_header: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthorize {
    pub consumers: Option<Vec<Spanned<String>>>,
    pub groups: Option<Vec<Spanned<String>>>,
    /// JWT scopes that must all be present.
    pub scopes: Option<Vec<Spanned<String>>>,
    /// JWT claims that must equal these values.
    pub claims: Option<BTreeMap<String, Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// `consumer`, `api_key`, `ip`, `route` or `header:NAME`.
    pub key: Spanned<String>,
    pub limits: Spanned<Vec<RawLimit>>,
    /// Most keys tracked at once (bounded memory).
    pub max_keys: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    pub requests: Spanned<i64>,
    pub per: Spanned<RawDuration>,
    pub burst: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub prefix: Option<Spanned<String>>,
    pub host: Option<Spanned<String>>,
    pub policies: Vec<Spanned<String>>,
    /// `prefix` is compared ignoring ASCII letter case.
    pub case_insensitive: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    pub groups: Option<Vec<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `false` stops recording request metrics (the admin API keeps serving).
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub enabled: Option<bool>,
    /// `json` (default) or `combined`.
    pub format: Option<Spanned<String>>,
    /// A file path; absent or `"-"` means stdout.
    pub path: Option<Spanned<String>>,
    /// Fraction of requests logged, 0.0..=1.0.
    pub sample: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// Continue / start W3C trace context and send `traceparent` upstream (default true).
    pub propagate: Option<bool>,
    /// Response header carrying the trace id (e.g. `x-trace-id`); absent = none.
    pub response_header: Option<Spanned<String>>,
    /// Fraction of new traces marked sampled, 0.0..=1.0 (incoming traces keep their flag).
    pub sample_ratio: Option<Spanned<f64>>,
    pub otlp: Option<RawOtlp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// `http://host:port/v1/traces`
    pub endpoint: Spanned<String>,
    pub service_name: Option<Spanned<String>>,
    pub batch_size: Option<Spanned<i64>>,
    pub flush_interval: Option<Spanned<RawDuration>>,
    pub timeout: Option<Spanned<RawDuration>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `false` turns the admin listener off.
    pub enabled: Option<bool>,
    pub address: Option<Spanned<String>>,
    /// Bearer token required by mutating endpoints (`POST /reload`).
    pub token: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub workers: Option<Spanned<i64>>,
    pub drain_timeout: Option<Spanned<RawDuration>>,
    /// Proxies whose `X-Forwarded-For` entries are believed (CIDRs).
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<Spanned<String>>,
    pub address: Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_header_bytes: Option<Spanned<RawSize>>,
    pub max_headers: Option<Spanned<i64>>,
    pub max_uri_bytes: Option<Spanned<RawSize>>,
    pub max_body_bytes: Option<Spanned<RawSize>>,
    /// Open client connections for the whole process (0 = unlimited).
    pub max_connections: Option<Spanned<i64>>,
    /// Open client connections per client address (0 = unlimited).
    pub max_connections_per_ip: Option<Spanned<i64>>,
    /// IPv6 clients are grouped by this prefix length for `max_connections_per_ip`.
    pub ipv6_prefix: Option<Spanned<i64>>,
    /// Slowest accepted request-body / response data rate, in bytes per second (0 = off).
    pub min_data_rate: Option<Spanned<RawSize>>,
    /// How long a transfer may run below `min_data_rate` before it counts.
    pub data_rate_grace: Option<Spanned<RawDuration>>,
    /// Most request bytes read and dropped while lingering after an error response.
    pub lingering_bytes: Option<Spanned<RawSize>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub client_header: Option<Spanned<RawDuration>>,
    pub client_body: Option<Spanned<RawDuration>>,
    pub keepalive: Option<Spanned<RawDuration>>,
    pub upstream_connect: Option<Spanned<RawDuration>>,
    pub upstream_response: Option<Spanned<RawDuration>>,
    pub upstream_idle: Option<Spanned<RawDuration>>,
    /// Whole request body, from the complete head to the last body byte (→ 408).
    pub client_body_total: Option<Spanned<RawDuration>>,
    /// A WebSocket tunnel with no bytes either way for this long is closed.
    pub tunnel_idle: Option<Spanned<RawDuration>>,
    /// After an error response, how long unread request bytes are drained before closing
    /// (`0s` = close at once).
    pub lingering_close: Option<Spanned<RawDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub targets: Spanned<Vec<RawTarget>>,
    pub max_idle: Option<Spanned<i64>>,
    pub idle_timeout: Option<Spanned<RawDuration>>,
    pub backoff: Option<Spanned<RawDuration>>,
    pub connect_timeout: Option<Spanned<RawDuration>>,
    pub response_timeout: Option<Spanned<RawDuration>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Spanned<String>,
    pub hosts: Option<Vec<Spanned<String>>>,
    pub path: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub headers: Option<BTreeMap<Spanned<String>, Spanned<RawCond>>>,
    pub query: Option<BTreeMap<Spanned<String>, Spanned<RawCond>>>,
    pub max_body_bytes: Option<Spanned<RawSize>>,
    pub proxy: Option<Spanned<RawProxy>>,
    #[serde(rename = "static")]
    pub static_: Option<Spanned<RawStatic>>,
    pub echo: Option<Spanned<RawEcho>>,
    pub redirect: Option<Spanned<RawRedirect>>,
    /// `false` leaves this route's requests out of the access log.
    pub access_log: Option<bool>,
    /// Named policies, in the order they run (after any `[[defaults]]` that cover the route).
    pub policies: Option<Vec<Spanned<String>>>,
    /// The path pattern matches in any ASCII letter case (for case-insensitive backends).
    pub case_insensitive: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub upstream: Spanned<String>,
    pub strip_prefix: Option<Spanned<bool>>,
    pub replace_prefix: Option<Spanned<String>>,
    /// Upstream path built from the route's template captures, e.g. `/users/{id}`.
    pub path: Option<Spanned<String>>,
    pub preserve_host: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatic {
    pub status: Option<Spanned<i64>>,
    pub body: Option<String>,
    pub headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEcho {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    pub location: Spanned<String>,
    pub status: Option<Spanned<i64>>,
    pub append_path: Option<bool>,
}

/// A header/query condition: a string means "equals", `true` means "present".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCond {
    Equals(String),
    Present,
}

impl<'de> Deserialize<'de> for RawCond {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCond;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string (must equal) or `true` (must be present)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawCond, E> {
                Ok(RawCond::Equals(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawCond, E> {
                if v {
                    Ok(RawCond::Present)
                } else {
                    Err(E::custom(
                        "`false` is not a condition: use `true` (must be present) or a string",
                    ))
                }
            }
        }
        d.deserialize_any(V)
    }
}

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
