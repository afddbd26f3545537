//! The compiled configuration: `Compiled` and everything it holds (listeners, limits,
//! timeouts, upstreams, routes and their actions), plus `Runtime`, the long-lived state a
//! compile draws on. Plain data: `compile` builds it, workers read it.
//!
//! `Compiled` is `Send + Sync` and never mutated after `compile()` returns. Ids are dense
//! indexes into its vectors, so workers keep per-core state (pools, cursors) in plain `Vec`s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::scope::GatedPolicies;
use super::telemetry::Telemetry;
use crate::http1::Limits;
use crate::route::{RouteId, RouteSpec, RouteTable};

/// Long-lived state config compiles draw on (owned by the control thread's `Shared`): rate
/// limiters with an unchanged identity keep their buckets across reloads, and JWKS fetchers
/// keep running for an unchanged URL.
#[derive(Default)]
pub struct Runtime {
    pub limiters: crate::ratelimit::LimiterRegistry,
    pub jwks: crate::jwt::JwksFetchers,
    /// OIDC discovery sources of `introspect` policies, kept running for an unchanged issuer.
    pub oidc: crate::oidc::DiscoveryFetchers,
    /// Upstream and target records (health, ejections, counters) kept across reloads.
    pub resilience: crate::resilience::Registry,
    /// Resolved upstream host names, kept across reloads and refreshed by TTL.
    pub dns: crate::dns::DnsCache,
    /// The last API-key set synced from Redis (`[api_keys] store = "redis"`).
    pub api_keys: crate::apikey::KeyCache,
    /// The `[redis]` record (connections' settings, health), kept while the table is unchanged.
    pub redis: crate::redis::RedisRegistry,
    /// The shared response cache, kept across reloads.
    pub cache: std::sync::Arc<crate::cache::Store>,
}

/// Dense index into `Compiled::upstreams`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UpstreamId(pub u32);

/// The whole compiled configuration of one generation.
pub struct Compiled {
    pub generation: u64,
    pub source: PathBuf,
    /// 0 = one worker per available core.
    pub workers: usize,
    pub drain_timeout: Duration,
    pub listeners: Vec<Listener>,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub upstreams: Vec<Upstream>,
    /// Indexed by `RouteId`.
    pub routes: Vec<Route>,
    pub table: RouteTable,
    /// The admin listener, if enabled.
    pub admin: Option<Admin>,
    /// Metrics, access log and trace settings.
    pub telemetry: Telemetry,
    /// Consumers, key store and named policies (routes refer to them by `PolicyId`).
    pub policies: crate::policy::pipeline::Policies,
    /// Hash of the file content this generation was compiled from (hex, for `/config`).
    pub content_hash: String,
    /// How request paths are normalized (`[paths]`).
    pub paths: crate::http1::PathOptions,
    /// Caps on open client connections (checked at accept).
    pub conn_limits: ConnLimits,
    /// How upstream host names are resolved (`[dns]`).
    pub dns: crate::dns::DnsSettings,
    /// `[redis]`, when instances share state.
    pub redis: Option<std::sync::Arc<crate::redis::RedisShared>>,
    /// The file content this generation was compiled from: re-compiled as is when a host
    /// name's addresses change or keys arrive from Redis, so an unreviewed edit on disk is
    /// never picked up that way (with `source_files`).
    pub source_text: std::sync::Arc<str>,
    /// The files that text named, as this generation read them (keys file, OpenAPI documents,
    /// certificates, JWT keys, WASM modules): a re-compile reads them from here, not the disk.
    pub source_files: std::sync::Arc<crate::bounded_file::FileSet>,
    /// `[server] user`/`group`: who a process started as root becomes after binding.
    pub run_as: Option<crate::privileges::RunAs>,
    /// `[usage]`: metering on (needs `[redis]`).
    pub usage: Option<crate::usage::UsageSettings>,
    /// The shared response cache (the same store for every generation: entries survive
    /// reloads; `cache` policies look up and fill it).
    pub cache: std::sync::Arc<crate::cache::Store>,
    /// `[cache] max_bytes`, applied to the store when this generation is published.
    pub cache_max_bytes: u64,
    /// The `[[openapi]]` documents imported (their routes are in `routes`).
    pub openapi: Vec<crate::openapi::model::ImportedApi>,
}

/// Caps on open client connections, checked once per accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    /// Whole process (0 = unlimited).
    pub max: usize,
    /// Per client address, IPv6 grouped by `ipv6_prefix` (0 = unlimited).
    pub per_ip: u32,
    /// Prefix length (1..=128) that groups IPv6 clients for `per_ip`.
    pub ipv6_prefix: u8,
}

/// The slowest a client may send a request body or read a response: averaged over the time
/// spent waiting on that client, once the time exceeds `grace` (Kestrel's model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinDataRate {
    /// Nanoseconds one byte may take (`1e9 / bytes_per_second`); 0 = no minimum.
    pub ns_per_byte: u64,
    pub grace: Duration,
}

/// The admin listener (never on a public listener; served by its own thread).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    pub addr: SocketAddr,
    pub token: Option<String>,
    /// Lowercase dotted host names accepted in `Host` (IP addresses and single-label names
    /// always are).
    pub hosts: Vec<String>,
}

impl Compiled {
    pub fn route(&self, id: RouteId) -> &Route {
        &self.routes[id.0 as usize]
    }
    pub fn upstream(&self, id: UpstreamId) -> &Upstream {
        &self.upstreams[id.0 as usize]
    }
}

#[derive(Clone, Debug)]
pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    /// TLS termination on this listener (`tls = { ... }`); `None` serves plain HTTP.
    pub tls: Option<std::sync::Arc<crate::tls::settings::ListenerTls>>,
    /// Plain listeners with `redirect_https = true`: the HTTPS port every request is
    /// redirected to (308). Always `None` on a TLS listener.
    pub redirect_https: Option<u16>,
    /// Plain listener that also accepts HTTP/2 with prior knowledge.
    pub h2c: bool,
    /// The HTTP/2 limits of connections on this listener.
    pub http2: std::sync::Arc<super::http2::Http2Settings>,
}

/// Whether two listener lists bind the same sockets the same way (names, addresses, TLS on or
/// off). What a TLS listener serves (certificates, versions) may change on reload; its shape
/// only on restart.
pub fn same_listeners(a: &[Listener], b: &[Listener]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name && x.addr == y.addr && x.tls.is_some() == y.tls.is_some()
        })
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Time allowed to receive a complete request head (→ 408).
    pub client_header: Duration,
    /// Max gap between body reads from the client (→ 408 / close).
    pub client_body: Duration,
    /// Idle keep-alive connections are closed after this.
    pub keepalive: Duration,
    /// Default upstream connect timeout (→ 504).
    pub upstream_connect: Duration,
    /// Default time from request sent to response head received (→ 504).
    pub upstream_response: Duration,
    /// Max gap between upstream body reads once the response started.
    pub upstream_idle: Duration,
    /// Whole request body, counted from the complete head (→ 408 / close).
    pub client_body_total: Duration,
    /// Minimum request-body and response data rate (→ 408 / close).
    pub min_data_rate: MinDataRate,
    /// A tunnel (WebSocket) with no bytes either way for this long is closed.
    pub tunnel_idle: Duration,
    /// After an error response with request bytes unread: drain for up to this long
    /// (zero = close at once) ...
    pub lingering_close: Duration,
    /// ... or this many bytes, before closing, so the client reads the response instead of a
    /// reset.
    pub lingering_bytes: u64,
}

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub targets: Vec<Target>,
    /// Idle pooled connections kept per worker per target.
    pub max_idle: usize,
    pub idle_timeout: Duration,
    /// How long a target that refused a connection is skipped.
    pub backoff: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// HTTPS to the targets (`tls = ...`); `None` speaks plain HTTP.
    pub tls: Option<std::sync::Arc<crate::tls::upstream::UpstreamTls>>,
    /// The HTTP version spoken to the targets.
    pub protocol: UpstreamProtocol,
    /// What every worker shares about this upstream (kept across reloads by name).
    pub shared: std::sync::Arc<crate::resilience::UpstreamShared>,
    /// Retries in flight allowed (set when configured or when some route retries to it).
    pub retry_budget: Option<crate::resilience::RetryBudget>,
    /// Circuit-breaker limits (all 0: none).
    pub breaker: crate::resilience::BreakerLimits,
    /// Active checks, outlier ejection, panic threshold (`config::health`).
    pub health: crate::resilience::outlier::HealthSettings,
    /// How requests are spread over the targets (`balance`, `hash_on`).
    pub balance: Balance,
}

/// An upstream's balancing algorithm (`balance = ...`; compiled in `config::traffic`).
#[derive(Clone, Debug, Default)]
pub enum Balance {
    /// Smooth weighted round robin (the default).
    #[default]
    RoundRobin,
    /// Power of two choices over the available targets, fewer in-flight requests (per
    /// worker, relative to weight) wins.
    LeastRequest,
    /// Consistent hashing (Maglev) of a request key; requests without the key take round
    /// robin.
    Hash {
        on: KeySource,
        table: std::sync::Arc<crate::resilience::maglev::Maglev>,
    },
}

/// Where a balancing or stickiness key comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The first value of this header (lowercase name).
    Header(String),
    /// The value of this cookie.
    Cookie(String),
    /// The client address the gateway decided on (behind trusted proxies: the forwarded one).
    ClientIp,
    /// The normalized request path (no query).
    Path,
}

impl std::fmt::Display for KeySource {
    /// As written in the config (`header:x-user`, `cookie:sid`, `client_ip`, `path`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Header(n) => write!(f, "header:{n}"),
            KeySource::Cookie(n) => write!(f, "cookie:{n}"),
            KeySource::ClientIp => f.write_str("client_ip"),
            KeySource::Path => f.write_str("path"),
        }
    }
}

/// A proxy route's weighted split over several upstreams (`proxy.split`).
#[derive(Debug)]
pub struct Split {
    /// Upstream and its weight, in config order (weight 0 = takes nothing).
    pub arms: Vec<(UpstreamId, u32)>,
    /// Sum of the weights (> 0).
    pub total: u64,
    /// `sticky`: a request with this key always takes the same arm (while weights hold).
    pub sticky: Option<KeySource>,
}

/// A proxy route's shadow traffic (`proxy.mirror`).
#[derive(Debug)]
pub struct Mirror {
    pub upstream: UpstreamId,
    /// Sampled share of requests, in millionths (1_000_000 = every request).
    pub per_million: u32,
    /// Largest request body mirrored (bodies must also be fully buffered).
    pub max_body: u64,
    /// Most mirrored requests in flight per worker; more are dropped.
    pub max_in_flight: u32,
}

/// The HTTP version an upstream speaks (`protocol = "http1" | "http2"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1, pooled keep-alive connections (`upstream::UpstreamState`).
    #[default]
    Http1,
    /// HTTP/2: h2 through ALPN with `tls`, h2c with prior knowledge without; streams
    /// multiplexed on shared connections (`upstream::h2`).
    Http2,
}

#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// As written in the config (for logs and `check`).
    pub label: String,
    pub weight: u32,
    /// Index of the `targets` entry this address came from (a host name may give several).
    pub source: usize,
    /// What every worker shares about this target (kept across reloads by address).
    pub health: std::sync::Arc<crate::resilience::TargetHealth>,
}

#[derive(Debug)]
pub struct Route {
    pub id: RouteId,
    pub name: String,
    /// What the route matches (kept for `check` and the admin API).
    pub spec: RouteSpec,
    pub action: Action,
    /// Largest request body accepted (→ 413).
    pub max_body: u64,
    /// Requests on this route are written to the access log (when it is enabled).
    pub access_log: bool,
    /// Policies run in this order (matching `[[defaults]]` first, then the route's own).
    pub policies: Vec<crate::policy::pipeline::PolicyId>,
    /// The route's CORS policy (answers preflights before any other policy).
    pub cors: Option<crate::policy::pipeline::PolicyId>,
    /// Set when some `[[defaults]]` cover only part of the route: the per-request lists
    /// (`policies` / `cors` above are then the lists for requests none of them covers).
    pub gated: Option<Box<GatedPolicies>>,
}

impl Route {
    /// The policies (and CORS policy) for a request with this normalized path and lowercase
    /// host: `policies` / `cors` unless some default covers only part of the route.
    #[inline]
    pub fn policies_for(
        &self,
        path: &[u8],
        host: &str,
    ) -> (
        &[crate::policy::pipeline::PolicyId],
        Option<crate::policy::pipeline::PolicyId>,
    ) {
        match &self.gated {
            None => (&self.policies, self.cors),
            Some(g) => g.select(path, host),
        }
    }
}

#[derive(Debug)]
pub enum Action {
    Proxy(ProxyAction),
    Static(StaticResponse),
    Echo,
    Redirect(Redirect),
    /// The developer portal of an `[[openapi]]` block (`exchange::portal`).
    Portal(std::sync::Arc<crate::openapi::portal::Portal>),
    /// The MCP endpoint of an `[[openapi]]` block (`exchange::mcp`).
    Mcp(std::sync::Arc<crate::openapi::mcp::McpServer>),
}

#[derive(Debug)]
pub struct ProxyAction {
    /// The upstream (with `split`: the first arm's, for summaries).
    pub upstream: UpstreamId,
    /// Weighted choice of upstream per request (`None`: always `upstream`).
    pub split: Option<Box<Split>>,
    /// Shadow copies of sampled requests.
    pub mirror: Option<Box<Mirror>>,
    pub rewrite: Rewrite,
    /// Send the client's Host upstream (default) instead of the target's address.
    pub preserve_host: bool,
    /// The route's retry policy (`None`: only the fixed stale-connection retry and failover
    /// on refused connections).
    pub retry: Option<crate::resilience::RetryPolicy>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Rewrite {
    None,
    /// Replace the route's `prefix` with `with` ("" = strip). An empty result becomes "/".
    ReplacePrefix {
        prefix: String,
        with: String,
    },
    /// Build the path from literal pieces and the route template's captures.
    Template(Vec<PathPiece>),
}

/// A piece of a `proxy.path` rewrite template.
#[derive(Debug, PartialEq, Eq)]
pub enum PathPiece {
    Literal(String),
    /// Index of the route template's capture.
    Param(u16),
}

#[derive(Debug)]
pub struct StaticResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub struct Redirect {
    pub status: u16,
    pub location: String,
    /// Append the request path and query to `location`.
    pub append_path: bool,
}
