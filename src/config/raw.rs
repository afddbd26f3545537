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

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Config format version; only 1 exists.
    #[schemars(with = "Option<i64>")]
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
    #[schemars(with = "BTreeMap<String, RawUpstream>")]
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
    #[schemars(with = "BTreeMap<String, RawPolicy>")]
    pub policies: BTreeMap<Spanned<String>, RawPolicy>,
    /// Policies applied to every route under a path prefix and/or host.
    #[serde(default)]
    pub defaults: Vec<RawDefaults>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RawConsumer>")]
    pub consumers: BTreeMap<Spanned<String>, RawConsumer>,
    /// Where API keys live and how they are hashed.
    pub api_keys: Option<crate::apikey::RawApiKeys>,
    /// Request path normalization.
    #[serde(default)]
    pub paths: RawPaths,
    /// How upstream host names are resolved and re-resolved.
    #[serde(default)]
    pub dns: RawDns,
    /// Usage metering (counts per consumer, route and status class, flushed to Redis).
    #[schemars(with = "Option<crate::usage::RawUsage>")]
    pub usage: Option<Spanned<crate::usage::RawUsage>>,
    /// The Redis server or cluster instances share state through.
    pub redis: Option<crate::redis::RawRedis>,
    /// `[cache]`: the shared response cache's byte bound (routes opt in with a `cache` policy).
    #[serde(default)]
    pub cache: crate::cache::settings::RawCacheSettings,
    /// `[[openapi]]`: OpenAPI documents imported as routes (`config::openapi`).
    #[serde(default)]
    pub openapi: Vec<crate::openapi::raw::RawOpenApi>,
}

/// `[dns]`: name servers and TTL bounds for upstream host names.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// `"any"` (default: every A and AAAA record), `"ipv4"` or `"ipv6"`.
    #[schemars(with = "Option<String>")]
    pub family: Option<Spanned<String>>,
    /// `"IP"` or `"IP:PORT"` (port 53 by default); absent = resolv.conf's name servers.
    #[schemars(with = "Option<Vec<String>>")]
    pub servers: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<String>")]
    pub hosts_file: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub resolv_conf: Option<Spanned<String>>,
    #[schemars(with = "Option<RawDuration>")]
    pub min_ttl: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub max_ttl: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub timeout: Option<Spanned<RawDuration>>,
}

/// `[paths]`: how request paths are normalized before routing.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPaths {
    pub merge_slashes: Option<bool>,
    /// "reject" | "keep" | "unescape"
    #[schemars(with = "Option<String>")]
    pub escaped_slashes: Option<Spanned<String>>,
    /// "strip" | "reject" | "keep"
    #[schemars(with = "Option<String>")]
    pub path_params: Option<Spanned<String>>,
}

/// One named policy: exactly one of the kinds.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[schemars(with = "Option<crate::policy::api_key::RawApiKeyPolicy>")]
    pub api_key: Option<Spanned<crate::policy::api_key::RawApiKeyPolicy>>,
    #[schemars(with = "Option<crate::jwt::RawJwt>")]
    pub jwt: Option<Spanned<crate::jwt::RawJwt>>,
    #[schemars(with = "Option<crate::policy::authorize::RawAuthorize>")]
    pub authorize: Option<Spanned<crate::policy::authorize::RawAuthorize>>,
    #[schemars(with = "Option<crate::policy::ip::RawIpFilter>")]
    pub ip: Option<Spanned<crate::policy::ip::RawIpFilter>>,
    #[schemars(with = "Option<crate::policy::rate_limit::RawRateLimit>")]
    pub rate_limit: Option<Spanned<crate::policy::rate_limit::RawRateLimit>>,
    #[schemars(with = "Option<crate::policy::quota::RawQuota>")]
    pub quota: Option<Spanned<crate::policy::quota::RawQuota>>,
    #[schemars(with = "Option<crate::policy::cors::RawCors>")]
    pub cors: Option<Spanned<crate::policy::cors::RawCors>>,
    #[schemars(with = "Option<crate::policy::transform::RawTransform>")]
    pub transform: Option<Spanned<crate::policy::transform::RawTransform>>,
    #[schemars(with = "Option<crate::policy::client_cert::RawClientCert>")]
    pub client_cert: Option<Spanned<crate::policy::client_cert::RawClientCert>>,
    #[schemars(with = "Option<crate::cache::RawCache>")]
    pub cache: Option<Spanned<crate::cache::RawCache>>,
    #[schemars(with = "Option<crate::compress::RawCompress>")]
    pub compress: Option<Spanned<crate::compress::RawCompress>>,
    #[schemars(with = "Option<crate::policy::forward_auth::RawForwardAuth>")]
    pub forward_auth: Option<Spanned<crate::policy::forward_auth::RawForwardAuth>>,
    #[schemars(with = "Option<crate::policy::introspect::RawIntrospect>")]
    pub introspect: Option<Spanned<crate::policy::introspect::RawIntrospect>>,
    #[schemars(with = "Option<crate::wasm::RawWasm>")]
    pub wasm: Option<Spanned<crate::wasm::RawWasm>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    #[schemars(with = "Vec<String>")]
    pub policies: Vec<Spanned<String>>,
    /// `prefix` is compared ignoring ASCII letter case.
    pub case_insensitive: Option<bool>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    pub groups: Option<Vec<String>>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// `false` stops recording request metrics (the admin API keeps serving).
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub enabled: Option<bool>,
    /// `json` (default) or `combined`.
    #[schemars(with = "Option<String>")]
    pub format: Option<Spanned<String>>,
    /// A file path (a relative one is under the config file's directory); absent or `"-"`
    /// means stdout.
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// Fraction of requests logged, 0.0..=1.0.
    #[schemars(with = "Option<f64>")]
    pub sample: Option<Spanned<f64>>,
    /// Query parameter names whose values are logged as `REDACTED` (matched percent-decoded,
    /// ASCII case ignored), beside every name an `api_key` policy reads. Absent: a built-in
    /// list of common credential names (`access_token`, `client_secret`, `password`,
    /// `X-Amz-Signature`, ...); `[]` turns that list off.
    #[schemars(with = "Option<Vec<String>>")]
    pub redact_query: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// Continue / start W3C trace context and send `traceparent` upstream (default true).
    pub propagate: Option<bool>,
    /// Response header carrying the trace id (e.g. `x-trace-id`); absent = none.
    #[schemars(with = "Option<String>")]
    pub response_header: Option<Spanned<String>>,
    /// Fraction of new traces marked sampled, 0.0..=1.0 (incoming traces keep their flag).
    #[schemars(with = "Option<f64>")]
    pub sample_ratio: Option<Spanned<f64>>,
    pub otlp: Option<RawOtlp>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOtlp {
    /// `http://host:port/v1/traces`
    #[schemars(with = "String")]
    pub endpoint: Spanned<String>,
    #[schemars(with = "Option<String>")]
    pub service_name: Option<Spanned<String>>,
    #[schemars(with = "Option<i64>")]
    pub batch_size: Option<Spanned<i64>>,
    #[schemars(with = "Option<RawDuration>")]
    pub flush_interval: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub timeout: Option<Spanned<RawDuration>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// `false` turns the admin listener off.
    pub enabled: Option<bool>,
    #[schemars(with = "Option<String>")]
    pub address: Option<Spanned<String>>,
    /// Bearer token every endpoint except `/health` and `/ready` requires.
    #[schemars(with = "Option<String>")]
    pub token: Option<Spanned<String>>,
    /// Dotted host names the admin API answers to (IP addresses and single-label names such
    /// as `localhost` always pass; another dotted `Host` is refused: the DNS-rebinding
    /// defence).
    #[schemars(with = "Option<Vec<String>>")]
    pub hosts: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[schemars(with = "Option<i64>")]
    pub workers: Option<Spanned<i64>>,
    #[schemars(with = "Option<RawDuration>")]
    pub drain_timeout: Option<Spanned<RawDuration>>,
    /// Proxies whose `X-Forwarded-For` entries are believed (CIDRs).
    #[schemars(with = "Option<Vec<String>>")]
    pub trusted_proxies: Option<Vec<Spanned<String>>>,
    /// Send the verified client certificate upstream in `x-forwarded-client-cert` (default
    /// true; a client's copy of that header is removed either way).
    pub forward_client_cert: Option<bool>,
    /// Started as root: the account to switch to once the listeners are bound.
    #[schemars(with = "Option<String>")]
    pub user: Option<Spanned<String>>,
    /// The group to switch to (default: `user`'s primary group); needs `user`.
    #[schemars(with = "Option<String>")]
    pub group: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    #[schemars(with = "Option<String>")]
    pub name: Option<Spanned<String>>,
    #[schemars(with = "String")]
    pub address: Spanned<String>,
    /// TLS termination (`[listeners.tls]`); absent = plain HTTP.
    #[schemars(with = "Option<crate::tls::config::RawListenerTls>")]
    pub tls: Option<Spanned<crate::tls::config::RawListenerTls>>,
    /// Plain listeners only: answer every request with a 308 to `https://` on `https_port`.
    #[schemars(with = "Option<bool>")]
    pub redirect_https: Option<Spanned<bool>>,
    /// The port redirects point to (default 443).
    #[schemars(with = "Option<i64>")]
    pub https_port: Option<Spanned<i64>>,
    /// Plain listeners only: accept HTTP/2 with prior knowledge (h2c), next to HTTP/1.1.
    #[schemars(with = "Option<bool>")]
    pub h2c: Option<Spanned<bool>>,
    /// HTTP/2 limits (`[listeners.http2]`).
    #[schemars(with = "Option<super::http2::RawHttp2>")]
    pub http2: Option<Spanned<super::http2::RawHttp2>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[schemars(with = "Option<RawSize>")]
    pub max_header_bytes: Option<Spanned<RawSize>>,
    #[schemars(with = "Option<i64>")]
    pub max_headers: Option<Spanned<i64>>,
    #[schemars(with = "Option<RawSize>")]
    pub max_uri_bytes: Option<Spanned<RawSize>>,
    #[schemars(with = "Option<RawSize>")]
    pub max_body_bytes: Option<Spanned<RawSize>>,
    /// Open client connections for the whole process (0 = unlimited).
    #[schemars(with = "Option<i64>")]
    pub max_connections: Option<Spanned<i64>>,
    /// Open client connections per client address (0 = unlimited).
    #[schemars(with = "Option<i64>")]
    pub max_connections_per_ip: Option<Spanned<i64>>,
    /// IPv6 clients are grouped by this prefix length for `max_connections_per_ip`.
    #[schemars(with = "Option<i64>")]
    pub ipv6_prefix: Option<Spanned<i64>>,
    /// Slowest accepted request-body / response data rate, in bytes per second (0 = off).
    #[schemars(with = "Option<RawSize>")]
    pub min_data_rate: Option<Spanned<RawSize>>,
    /// How long a transfer may run below `min_data_rate` before it counts.
    #[schemars(with = "Option<RawDuration>")]
    pub data_rate_grace: Option<Spanned<RawDuration>>,
    /// Most request bytes read and dropped while lingering after an error response.
    #[schemars(with = "Option<RawSize>")]
    pub lingering_bytes: Option<Spanned<RawSize>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    #[schemars(with = "Option<RawDuration>")]
    pub client_header: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub client_body: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub keepalive: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub upstream_connect: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub upstream_response: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub upstream_idle: Option<Spanned<RawDuration>>,
    /// Whole request body, from the complete head to the last body byte (→ 408).
    #[schemars(with = "Option<RawDuration>")]
    pub client_body_total: Option<Spanned<RawDuration>>,
    /// A WebSocket tunnel with no bytes either way for this long is closed.
    #[schemars(with = "Option<RawDuration>")]
    pub tunnel_idle: Option<Spanned<RawDuration>>,
    /// After an error response, how long unread request bytes are drained before closing
    /// (`0s` = close at once).
    #[schemars(with = "Option<RawDuration>")]
    pub lingering_close: Option<Spanned<RawDuration>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[schemars(with = "Vec<RawTarget>")]
    pub targets: Spanned<Vec<RawTarget>>,
    #[schemars(with = "Option<i64>")]
    pub max_idle: Option<Spanned<i64>>,
    #[schemars(with = "Option<RawDuration>")]
    pub idle_timeout: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub backoff: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub connect_timeout: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub response_timeout: Option<Spanned<RawDuration>>,
    /// `tls = true` or `tls = { server_name, ca, client_cert, verify }`: HTTPS to the targets.
    #[schemars(with = "Option<crate::tls::upstream::RawUpstreamTls>")]
    pub tls: Option<Spanned<crate::tls::upstream::RawUpstreamTls>>,
    /// `"http1"` (default) or `"http2"` (h2 via ALPN with `tls`, h2c with prior knowledge
    /// without).
    #[schemars(with = "Option<String>")]
    pub protocol: Option<Spanned<String>>,
    /// `"round_robin"` (default), `"least_request"` or `"hash"` (`config::traffic`).
    #[schemars(with = "Option<String>")]
    pub balance: Option<Spanned<String>>,
    /// With `balance = "hash"`: `"header:NAME"`, `"cookie:NAME"`, `"client_ip"` or `"path"`.
    #[schemars(with = "Option<String>")]
    pub hash_on: Option<Spanned<String>>,
    /// Retries in flight allowed next to the active requests (`config::retries`).
    #[schemars(with = "Option<super::retries::RawRetryBudget>")]
    pub retry_budget: Option<Spanned<super::retries::RawRetryBudget>>,
    /// Connection, pending and in-flight request limits (`config::retries`).
    #[schemars(with = "Option<super::retries::RawCircuitBreaker>")]
    pub circuit_breaker: Option<Spanned<super::retries::RawCircuitBreaker>>,
    /// Active health checks (`config::health`).
    #[schemars(with = "Option<super::health::RawHealthCheck>")]
    pub health_check: Option<Spanned<super::health::RawHealthCheck>>,
    /// Passive outlier ejection (`config::health`).
    #[schemars(with = "Option<super::health::RawOutlier>")]
    pub outlier: Option<Spanned<super::health::RawOutlier>>,
    /// Percent of usable targets below which health is ignored (panic mode).
    #[schemars(with = "Option<i64>")]
    pub panic_threshold: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    #[schemars(with = "String")]
    pub address: Spanned<String>,
    #[schemars(with = "Option<i64>")]
    pub weight: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    #[schemars(with = "Option<Vec<String>>")]
    pub hosts: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub methods: Option<Vec<Spanned<String>>>,
    #[schemars(with = "Option<BTreeMap<String, RawCond>>")]
    pub headers: Option<BTreeMap<Spanned<String>, Spanned<RawCond>>>,
    /// Cookie conditions (same shape as `headers`; names are case-sensitive).
    #[schemars(with = "Option<BTreeMap<String, RawCond>>")]
    pub cookies: Option<BTreeMap<Spanned<String>, Spanned<RawCond>>>,
    #[schemars(with = "Option<BTreeMap<String, RawCond>>")]
    pub query: Option<BTreeMap<Spanned<String>, Spanned<RawCond>>>,
    #[schemars(with = "Option<RawSize>")]
    pub max_body_bytes: Option<Spanned<RawSize>>,
    #[schemars(with = "Option<RawProxy>")]
    pub proxy: Option<Spanned<RawProxy>>,
    #[serde(rename = "static")]
    #[schemars(with = "Option<RawStatic>")]
    pub static_: Option<Spanned<RawStatic>>,
    #[schemars(with = "Option<RawEcho>")]
    pub echo: Option<Spanned<RawEcho>>,
    #[schemars(with = "Option<RawRedirect>")]
    pub redirect: Option<Spanned<RawRedirect>>,
    /// `false` leaves this route's requests out of the access log.
    pub access_log: Option<bool>,
    /// Named policies, in the order they run (after any `[[defaults]]` that cover the route).
    #[schemars(with = "Option<Vec<String>>")]
    pub policies: Option<Vec<Spanned<String>>>,
    /// The path pattern matches in any ASCII letter case (for case-insensitive backends).
    pub case_insensitive: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    /// The upstream (or `split`, not both).
    #[schemars(with = "Option<String>")]
    pub upstream: Option<Spanned<String>>,
    /// Weighted upstreams: `[{ upstream = "v1", weight = 95 }, ...]` (`config::traffic`).
    #[schemars(with = "Option<Vec<RawSplitArm>>")]
    pub split: Option<Spanned<Vec<RawSplitArm>>>,
    /// With `split`: `"cookie:NAME"` or `"header:NAME"` keeps a client on one upstream.
    #[schemars(with = "Option<String>")]
    pub sticky: Option<Spanned<String>>,
    /// `{ upstream, percent, max_body, max_in_flight }`: shadow copies of sampled requests.
    #[schemars(with = "Option<RawMirror>")]
    pub mirror: Option<Spanned<RawMirror>>,
    #[schemars(with = "Option<bool>")]
    pub strip_prefix: Option<Spanned<bool>>,
    #[schemars(with = "Option<String>")]
    pub replace_prefix: Option<Spanned<String>>,
    /// Upstream path built from the route's template captures, e.g. `/users/{id}`.
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    pub preserve_host: Option<bool>,
    /// The route's retry policy (`config::retries`); absent = today's fixed retries only.
    #[schemars(with = "Option<super::retries::RawRetry>")]
    pub retry: Option<Spanned<super::retries::RawRetry>>,
}

/// One arm of `proxy.split`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSplitArm {
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    #[schemars(with = "i64")]
    pub weight: Spanned<i64>,
}

/// `proxy.mirror`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    #[schemars(with = "String")]
    pub upstream: Spanned<String>,
    /// Share of requests copied, 0..=100 (default 100).
    #[schemars(with = "Option<f64>")]
    pub percent: Option<Spanned<f64>>,
    /// Largest request body mirrored (default 64 KiB).
    #[schemars(with = "Option<RawSize>")]
    pub max_body: Option<Spanned<RawSize>>,
    /// Mirrored requests in flight per worker before more are dropped (default 64).
    #[schemars(with = "Option<i64>")]
    pub max_in_flight: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStatic {
    #[schemars(with = "Option<i64>")]
    pub status: Option<Spanned<i64>>,
    pub body: Option<String>,
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEcho {}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    #[schemars(with = "String")]
    pub location: Spanned<String>,
    #[schemars(with = "Option<i64>")]
    pub status: Option<Spanned<i64>>,
    pub append_path: Option<bool>,
}

/// A header/query condition: a string means "equals", `true` means "present".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawCond {
    Equals(String),
    Present,
}

impl schemars::JsonSchema for RawCond {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Condition".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A string (must equal) or true (must be present).",
            "anyOf": [{ "type": "string" }, { "const": true }]
        })
    }
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
