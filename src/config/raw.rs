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

use super::units::{RawDuration, RawSize};

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
    /// How upstream host names are resolved and re-resolved.
    #[serde(default)]
    pub dns: RawDns,
}

/// `[dns]`: name servers and TTL bounds for upstream host names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// `"any"` (default: every A and AAAA record), `"ipv4"` or `"ipv6"`.
    pub family: Option<Spanned<String>>,
    /// `"IP"` or `"IP:PORT"` (port 53 by default); absent = resolv.conf's name servers.
    pub servers: Option<Vec<Spanned<String>>>,
    pub hosts_file: Option<Spanned<String>>,
    pub resolv_conf: Option<Spanned<String>>,
    pub min_ttl: Option<Spanned<RawDuration>>,
    pub max_ttl: Option<Spanned<RawDuration>>,
    pub timeout: Option<Spanned<RawDuration>>,
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
    pub api_key: Option<Spanned<crate::policy::api_key::RawApiKeyPolicy>>,
    pub jwt: Option<Spanned<crate::jwt::RawJwt>>,
    pub authorize: Option<Spanned<crate::policy::authorize::RawAuthorize>>,
    pub ip: Option<Spanned<crate::policy::ip::RawIpFilter>>,
    pub rate_limit: Option<Spanned<crate::policy::rate_limit::RawRateLimit>>,
    pub cors: Option<Spanned<crate::policy::cors::RawCors>>,
    pub transform: Option<Spanned<crate::policy::transform::RawTransform>>,
    pub client_cert: Option<Spanned<crate::policy::client_cert::RawClientCert>>,
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
    /// Send the verified client certificate upstream in `x-forwarded-client-cert` (default
    /// true; a client's copy of that header is removed either way).
    pub forward_client_cert: Option<bool>,
    /// Started as root: the account to switch to once the listeners are bound.
    pub user: Option<Spanned<String>>,
    /// The group to switch to (default: `user`'s primary group); needs `user`.
    pub group: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: Option<Spanned<String>>,
    pub address: Spanned<String>,
    /// TLS termination (`[listeners.tls]`); absent = plain HTTP.
    pub tls: Option<Spanned<crate::tls::config::RawListenerTls>>,
    /// Plain listeners only: answer every request with a 308 to `https://` on `https_port`.
    pub redirect_https: Option<Spanned<bool>>,
    /// The port redirects point to (default 443).
    pub https_port: Option<Spanned<i64>>,
    /// Plain listeners only: accept HTTP/2 with prior knowledge (h2c), next to HTTP/1.1.
    pub h2c: Option<Spanned<bool>>,
    /// HTTP/2 limits (`[listeners.http2]`).
    pub http2: Option<Spanned<super::http2::RawHttp2>>,
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
    /// `tls = true` or `tls = { server_name, ca, client_cert, verify }`: HTTPS to the targets.
    pub tls: Option<Spanned<crate::tls::upstream::RawUpstreamTls>>,
    /// `"http1"` (default) or `"http2"` (h2 via ALPN with `tls`, h2c with prior knowledge
    /// without).
    pub protocol: Option<Spanned<String>>,
    /// `"round_robin"` (default), `"least_request"` or `"hash"` (`config::traffic`).
    pub balance: Option<Spanned<String>>,
    /// With `balance = "hash"`: `"header:NAME"`, `"cookie:NAME"`, `"client_ip"` or `"path"`.
    pub hash_on: Option<Spanned<String>>,
    /// Retries in flight allowed next to the active requests (`config::retries`).
    pub retry_budget: Option<Spanned<super::retries::RawRetryBudget>>,
    /// Connection, pending and in-flight request limits (`config::retries`).
    pub circuit_breaker: Option<Spanned<super::retries::RawCircuitBreaker>>,
    /// Active health checks (`config::health`).
    pub health_check: Option<Spanned<super::health::RawHealthCheck>>,
    /// Passive outlier ejection (`config::health`).
    pub outlier: Option<Spanned<super::health::RawOutlier>>,
    /// Percent of usable targets below which health is ignored (panic mode).
    pub panic_threshold: Option<Spanned<i64>>,
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
    /// Cookie conditions (same shape as `headers`; names are case-sensitive).
    pub cookies: Option<BTreeMap<Spanned<String>, Spanned<RawCond>>>,
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
    /// The upstream (or `split`, not both).
    pub upstream: Option<Spanned<String>>,
    /// Weighted upstreams: `[{ upstream = "v1", weight = 95 }, ...]` (`config::traffic`).
    pub split: Option<Spanned<Vec<RawSplitArm>>>,
    /// With `split`: `"cookie:NAME"` or `"header:NAME"` keeps a client on one upstream.
    pub sticky: Option<Spanned<String>>,
    /// `{ upstream, percent, max_body, max_in_flight }`: shadow copies of sampled requests.
    pub mirror: Option<Spanned<RawMirror>>,
    pub strip_prefix: Option<Spanned<bool>>,
    pub replace_prefix: Option<Spanned<String>>,
    /// Upstream path built from the route's template captures, e.g. `/users/{id}`.
    pub path: Option<Spanned<String>>,
    pub preserve_host: Option<bool>,
    /// The route's retry policy (`config::retries`); absent = today's fixed retries only.
    pub retry: Option<Spanned<super::retries::RawRetry>>,
}

/// One arm of `proxy.split`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSplitArm {
    pub upstream: Spanned<String>,
    pub weight: Spanned<i64>,
}

/// `proxy.mirror`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    pub upstream: Spanned<String>,
    /// Share of requests copied, 0..=100 (default 100).
    pub percent: Option<Spanned<f64>>,
    /// Largest request body mirrored (default 64 KiB).
    pub max_body: Option<Spanned<RawSize>>,
    /// Mirrored requests in flight per worker before more are dropped (default 64).
    pub max_in_flight: Option<Spanned<i64>>,
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
