//! The per-route policy pipeline: who is calling (API key, JWT), may they (authorization, IP
//! filter, client certificate), how often (rate limits), and what the upstream sees (transforms). Policies are an
//! enum run by one `match` loop in the route's declared order; none of them awaits, so the
//! whole pipeline is a plain function call on the worker.
//!
//! CORS is not in the loop: a route's CORS policy answers preflights before anything else and
//! decorates every response (including denials) so browsers can read them.
//!
//! Invariants: a denial stops the loop and becomes exactly one error response (`exchange::respond`);
//! secrets the caller presented (API keys) never reach the upstream; headers the gateway asserts
//! upstream (consumer, claims) replace any copy the client sent; every value the gateway derives
//! for a header (consumer names, claims, transform values) passed `http1::is_safe_header_value`,
//! and a credential whose value fails it is refused with 401 before anything goes upstream.

use std::net::IpAddr;
use std::sync::Arc;

use crate::apikey::{KeyMatch, KeyStore};
use crate::http1::{self, query, RequestHead};
use crate::jwt::{JwtPolicy, TokenCache, Verified};
use crate::policy::client_cert::{CertRefusal, ClientCertPolicy};
use crate::policy::cors::CorsPolicy;
use crate::policy::ip::{CidrSet, IpFilter};
use crate::policy::transform::{HeaderEdits, Transform, UnsafeValue, Vars};
use crate::ratelimit::{LimitSpec, Limiter};
use crate::tls::client_cert::PeerCert;

/// Dense index into `Policies::list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyId(pub u32);

/// Everything policy-related one config generation knows.
#[derive(Default)]
pub struct Policies {
    pub list: Vec<NamedPolicy>,
    pub consumers: ahash::AHashMap<String, Consumer>,
    pub keys: Option<Arc<KeyStore>>,
    /// `[api_keys] store = "redis"`: what the background key sync needs (None: file store).
    pub key_sync: Option<crate::apikey::SyncSettings>,
    /// Proxies whose `X-Forwarded-For` entries decide the client IP.
    pub trusted_proxies: Option<CidrSet>,
    /// Identities of the rate limiters this generation uses; once it is published, the
    /// control thread lets the registry drop every other limiter.
    pub limiter_identities: Vec<String>,
    /// Every `api_key` policy's `query` parameter name, and `access_log.redact_query`'s
    /// (deduplicated): their values are redacted wherever a request target is logged or
    /// exported, whatever the outcome.
    pub secret_query: Vec<Box<[u8]>>,
    /// `server.forward_client_cert`: the verified client certificate goes upstream in
    /// `x-forwarded-client-cert` (`exchange::client_cert`).
    pub forward_client_cert: bool,
    /// Some policy reads the request body before forwarding (`Policy::body_bytes` > 0): only
    /// then does the guard look for the route's largest such prefix.
    pub reads_body: bool,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies")
            .field(
                "policies",
                &self.list.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .field("consumers", &self.consumers.len())
            .finish()
    }
}

pub struct NamedPolicy {
    pub name: String,
    pub policy: Policy,
}

/// A consumer from `[consumers.NAME]`.
#[derive(Debug)]
pub struct Consumer {
    pub name: Arc<str>,
    pub groups: Vec<String>,
    pub metadata: Vec<(String, String)>,
}

pub enum Policy {
    ApiKey(ApiKeyCheck),
    Jwt(JwtCheck),
    Authorize(Authorize),
    Ip(IpFilter),
    RateLimit(RateLimit),
    /// A calendar quota counted in Redis (`policy::quota`): settled through the await seam.
    Quota(QuotaCheck),
    Transform(Transform),
    ClientCert(ClientCertPolicy),
    /// Runs outside the loop (see the module header); kept here so routes name it like any other.
    Cors(CorsPolicy),
    /// Noted by the loop (`Effects::cache`), acted on by the forward phase after every other
    /// policy passed (`exchange::cache_phase`).
    Cache(Box<crate::cache::CachePolicy>),
    /// Noted by the loop (`Effects::compress`), applied to the proxied response
    /// (`exchange::shape`).
    Compress(Box<crate::compress::CompressPolicy>),
    /// Asks an HTTP authorization service (`policy::forward_auth`); settled through the await
    /// seam (`policy::remote`).
    ForwardAuth(Box<crate::policy::forward_auth::ForwardAuth>),
    /// Checks an opaque bearer token with an RFC 7662 endpoint (`policy::introspect`);
    /// settled through the await seam.
    Introspect(Box<crate::policy::introspect::Introspect>),
    /// Runs a proxy-wasm filter (`wasm`) on this worker's instance; settled through the await
    /// seam (it needs the worker's state).
    Wasm(Box<crate::wasm::WasmPolicy>),
    /// Checks the request against its OpenAPI operation (`openapi::validate`); the importer
    /// puts it last on an imported route.
    Validate(Box<crate::openapi::validate::ValidatePolicy>),
}

impl Policy {
    /// How many request body bytes this policy reads before the request is forwarded
    /// (`Facts::body`); 0 for most.
    pub fn body_bytes(&self) -> usize {
        match self {
            Policy::ForwardAuth(p) => p.body_bytes,
            Policy::Wasm(p) => p.body_bytes,
            Policy::Validate(v) => v.validator.body_bytes(),
            _ => 0,
        }
    }

    /// Request headers this policy asserts upstream: the consumer and claim headers an
    /// authenticating policy writes after dropping the client's copies. A later transform
    /// must not rename or add a client's value onto them (`config::defaults` checks).
    pub fn asserted_request_headers(&self) -> Vec<&[u8]> {
        match self {
            Policy::ApiKey(k) => vec![&*k.consumer_header],
            Policy::Jwt(j) => std::iter::once(&*j.consumer_header)
                .chain(j.jwt.forwarded_header_names().map(str::as_bytes))
                .collect(),
            Policy::ClientCert(c) => vec![&*c.consumer_header],
            Policy::Introspect(i) => vec![&*i.consumer_header],
            Policy::ForwardAuth(f) => f
                .upstream_headers
                .iter()
                .map(|h| h.as_bytes())
                .chain(f.consumer_header.as_deref().map(str::as_bytes))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The kind, as written in the config (for `check` and `/routes`).
    pub fn kind(&self) -> &'static str {
        match self {
            Policy::ApiKey(_) => "api_key",
            Policy::Jwt(_) => "jwt",
            Policy::Authorize(_) => "authorize",
            Policy::Ip(_) => "ip",
            Policy::RateLimit(_) => "rate_limit",
            Policy::Quota(_) => "quota",
            Policy::Transform(_) => "transform",
            Policy::ClientCert(_) => "client_cert",
            Policy::Cors(_) => "cors",
            Policy::Cache(_) => "cache",
            Policy::Compress(_) => "compress",
            Policy::ForwardAuth(_) => "forward_auth",
            Policy::Introspect(_) => "introspect",
            Policy::Wasm(_) => "wasm",
            Policy::Validate(_) => "validate",
        }
    }
}

/// Where an API key may be presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The whole value of a header (lowercase name).
    Header(String),
    /// A query parameter (removed before forwarding).
    Query(Vec<u8>),
}

pub struct ApiKeyCheck {
    pub sources: Vec<KeySource>,
    /// Lowercase header that carries the consumer name upstream.
    pub consumer_header: Box<[u8]>,
}

pub struct JwtCheck {
    pub jwt: Arc<JwtPolicy>,
    pub consumer_header: Box<[u8]>,
}

#[derive(Default)]
pub struct Authorize {
    pub consumers: Vec<String>,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub claims: Vec<(String, String)>,
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    Consumer,
    ApiKey,
    Ip,
    Route,
    /// A request header's value (lowercase name).
    Header(String),
}

pub struct RateLimit {
    pub key: LimitKey,
    pub limiters: Vec<Arc<Limiter>>,
    pub specs: Vec<LimitSpec>,
    /// `scope = "global"`: decided with Redis (`ratelimit::global`); `limiters` then unused.
    pub global: Option<Box<crate::ratelimit::global::GlobalLimit>>,
}

/// A `quota` policy: what it counts by and the quota itself.
pub struct QuotaCheck {
    pub key: LimitKey,
    pub spec: crate::quota::QuotaSpec,
}

/// Who the pipeline established the caller to be. Borrows from the config generation, so
/// identifying a caller touches no shared reference count.
#[derive(Default)]
pub struct Caller<'a> {
    pub key: Option<KeyMatch<'a>>,
    pub jwt: Option<Arc<Verified>>,
    /// The consumer a `client_cert` policy read from the connection's certificate.
    pub cert: Option<&'a str>,
    /// An identity another service vouched for: a forward-auth service's answer, a token
    /// introspection. Every value in it passed `http1::is_safe_header_value`.
    pub external: Option<Arc<Identity>>,
}

/// What an external service said about the caller (`Caller::external`).
#[derive(Debug, Default, Clone)]
pub struct Identity {
    /// The consumer name (forward auth's configured header, introspection's `sub`).
    pub consumer: Option<Arc<str>>,
    /// Scopes (introspection's `scope`), for `authorize.scopes`.
    pub scopes: Vec<String>,
}

impl Caller<'_> {
    /// The consumer name: from the API key, else from the JWT's consumer claim, else from the
    /// client certificate.
    pub fn consumer(&self) -> Option<&str> {
        match &self.key {
            Some(k) => Some(&**k.consumer),
            None => self
                .jwt
                .as_ref()
                .and_then(|j| j.consumer.as_deref())
                .or(self.cert)
                .or_else(|| self.external.as_ref()?.consumer.as_deref()),
        }
    }
}

/// What the pipeline asks the rest of the request path to do.
#[derive(Clone, Default)]
pub struct Effects {
    /// Edits to the headers sent upstream.
    pub upstream: HeaderEdits,
    /// Edits to the upstream response's headers.
    pub response: HeaderEdits,
    /// Query parameters removed / added before forwarding.
    pub query_remove: Vec<Vec<u8>>,
    pub query_add: Vec<(Vec<u8>, Vec<u8>)>,
    /// Header lines (`name: value\r\n`) added to whatever response the client gets (CORS,
    /// RateLimit, WWW-Authenticate, Retry-After).
    pub response_lines: Vec<u8>,
    /// The rate-limit outcome, for metrics (`Some(true)` = admitted).
    pub rate_limited: Option<bool>,
    /// The route's `cache` policy (the last one listed), looked up by the forward phase.
    pub cache: Option<PolicyId>,
    /// The route's `compress` policy (the last one listed).
    pub compress: Option<PolicyId>,
    /// The whole answer a policy chose for the client instead of forwarding (a forward-auth
    /// service's denial, a filter's local reply); comes with `Denial::Reply`.
    pub reply: Option<Box<LocalReply>>,
    /// The path (origin-form, may carry a query) sent upstream instead of the route's
    /// rewrite: set by a filter that rewrote `:path`. Validated by whoever sets it: starts
    /// with `/`, no control characters, spaces or `#`.
    pub path: Option<Vec<u8>>,
    /// Filter contexts waiting for the response head (`wasm::Pending`): `None` on routes
    /// without a filter that has a response hook, so the response path skips it for free.
    pub wasm: Option<std::rc::Rc<crate::wasm::Pending>>,
}

/// A response a policy answers with (`Effects::reply`): rendered as is by
/// `exchange::respond::error`, plus the headers every response of the request carries.
#[derive(Debug, Clone, Default)]
pub struct LocalReply {
    pub status: u16,
    /// Complete `name: value\r\n` lines, each checked (`http1::is_safe_header_value`, a token
    /// name) and without framing fields (`content-length`, `transfer-encoding`, `connection`).
    pub fields: Vec<u8>,
    pub body: Vec<u8>,
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// 401: no credentials or bad ones. `reason` is a metric label.
    Unauthorized {
        reason: &'static str,
        detail: &'static str,
    },
    /// 403: authenticated but not allowed, or a blocked address.
    Forbidden {
        reason: &'static str,
        detail: &'static str,
    },
    /// 429.
    Limited,
    /// 503: a `fail_closed` global rate limit or quota could not reach Redis.
    LimiterUnavailable,
    /// 401 (no certificate) or 403 (certificate refused) from a `client_cert` policy.
    ClientCert(CertRefusal),
    /// The policy answers the client itself with `Effects::reply`.
    Reply,
    /// 503: a `fail_closed` policy could not reach the service it asks (forward auth,
    /// introspection). `reason` is a metric label.
    Unavailable {
        reason: &'static str,
        detail: &'static str,
    },
    /// 500: a policy failed inside the gateway (a filter trapped or ran out of fuel).
    Failed {
        reason: &'static str,
        detail: &'static str,
    },
    /// 400: the request is ambiguous to a policy (a field it reads was sent twice).
    BadRequest { detail: &'static str },
}

/// The request facts policies read.
pub struct Facts<'a> {
    pub head: &'a RequestHead,
    pub route: &'a str,
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    /// `client_ip` as text (for `${client_ip}`).
    pub client_ip_text: &'a str,
    /// `key = "ip"` limits and quotas count an IPv6 client by this prefix
    /// (`limits.ipv6_prefix`, /64 by default): one host holds a whole /64 and could rotate
    /// through it to escape a per-address limit.
    pub ipv6_prefix: u8,
    /// Unix seconds (JWT times, key expiry).
    pub unix_now: u64,
    /// Monotonic nanoseconds (rate limits).
    pub mono_now: u64,
    /// The connection's verified client certificate, if any.
    pub peer_cert: Option<&'a PeerCert>,
    /// The first bytes of the request body, for policies that read it (forward auth's
    /// `body_bytes`, a filter's request-body callback): at most the largest such limit among
    /// the route's policies, empty when none asks. Not consumed: it is still forwarded.
    pub body: &'a [u8],
    /// Whether `body` is the whole request body.
    pub body_complete: bool,
    /// How the client reached the gateway: "http" or "https" (forward auth's
    /// `x-forwarded-proto`).
    pub proto: &'static str,
    /// The normalized request path and the route template's captures in it (byte ranges,
    /// template order), for the `validate` policy's path parameters.
    pub path: &'a [u8],
    pub captures: &'a [(u16, std::ops::Range<usize>)],
}

/// Runs the route's policies in order, from `ids[from]`. `Ok(None)`: every one passed.
/// `Ok(Some(i))`: policy `ids[i]` must await (Redis, another service, a filter); the caller
/// awaits `exchange::callout::settle` for it and calls again with `from = i + 1`. On `Err`,
/// `fx.response_lines` already holds the headers the denial needs (`WWW-Authenticate`,
/// `Retry-After`, `RateLimit*`).
pub fn run<'a>(
    ps: &'a Policies,
    ids: &[PolicyId],
    from: usize,
    f: &Facts<'a>,
    caller: &mut Caller<'a>,
    fx: &mut Effects,
    tokens: &mut TokenCache,
) -> Result<Option<usize>, Denial> {
    for (i, id) in ids.iter().enumerate().skip(from) {
        let Some(p) = ps.list.get(id.0 as usize) else {
            continue;
        };
        // An arm that must await (a global limit, a quota, a service call, a filter) returns
        // `Ok(Some(i))`; `exchange::callout::settle` then decides it.
        match &p.policy {
            Policy::ApiKey(k) => api_key(ps, k, f, caller, fx)?,
            Policy::Jwt(j) => jwt(j, f, caller, fx, tokens)?,
            Policy::Authorize(a) => authorize(ps, a, caller, fx)?,
            Policy::Ip(filter) => {
                if !filter.permits(f.client_ip) {
                    return Err(Denial::Forbidden {
                        reason: "ip_denied",
                        detail: "requests from this address are not allowed",
                    });
                }
            }
            Policy::RateLimit(rl) => {
                if !rate_limit(rl, f, caller, fx)? {
                    return Ok(Some(i));
                }
            }
            Policy::Quota(q) => {
                quota_local(q, f, caller, fx)?;
                return Ok(Some(i));
            }
            Policy::ClientCert(c) => client_cert(c, f, caller, fx)?,
            Policy::Transform(t) => {
                let vars = RequestVars { ps, f, caller };
                let mut rendered = t
                    .request_edits(&vars, &mut fx.upstream)
                    .and_then(|()| t.response_edits(&vars, &mut fx.response));
                if rendered.is_ok() && t.has_query_ops() {
                    let ops = t.query_ops();
                    fx.query_remove
                        .extend(ops.remove_names().iter().map(|n| n.to_vec()));
                    rendered = ops.render_adds(&vars, &mut fx.query_add);
                }
                match rendered {
                    Ok(()) => {}
                    Err(UnsafeValue::Credential) => {
                        unsafe_credential(caller, fx);
                        return Err(Denial::Unauthorized {
                            reason: "unsafe_value",
                            detail: "the credential carries a value that cannot be forwarded",
                        });
                    }
                    Err(UnsafeValue::ClientHeader) => {
                        return Err(Denial::BadRequest {
                            detail: "a header the route copies was sent twice, or holds a \
                                     value that cannot be forwarded",
                        });
                    }
                }
            }
            Policy::Validate(v) => validate(v, f, fx)?,
            Policy::Cors(_) => {}
            Policy::Cache(_) => fx.cache = Some(*id),
            Policy::Compress(_) => fx.compress = Some(*id),
            // They await another service or the worker's filter instance.
            Policy::ForwardAuth(_) | Policy::Introspect(_) | Policy::Wasm(_) => {
                return Ok(Some(i));
            }
        }
    }
    Ok(None)
}

/// The `validate` policy: a refusal in enforce mode answers with the problem body; in report
/// mode it is logged and counted, and the request goes on.
fn validate(
    v: &crate::openapi::validate::ValidatePolicy,
    f: &Facts<'_>,
    fx: &mut Effects,
) -> Result<(), Denial> {
    use crate::metrics::validation::Checked;
    use crate::openapi::validate::{Input, Mode};
    let input = Input {
        path: f.path,
        captures: f.captures,
        head: f.head,
        body: f.body,
        body_complete: f.body_complete,
    };
    let Err(refusal) = v.validator.check(&input) else {
        return Ok(());
    };
    if v.mode == Mode::Report {
        v.counters.record(Checked::Reported);
        if !v.counters.log_now(f.unix_now) {
            return Ok(());
        }
        crate::log::warn(&format!(
            "openapi validation (report mode) of {} request {}: {} violation(s), status {} \
             would have been answered (one line a second at most; \
             ringway_openapi_validation_total counts them all)",
            v.validator.operation, f.request_id, refusal.violations, refusal.status
        ));
        return Ok(());
    }
    v.counters.record(Checked::Refused);
    fx.reply = Some(Box::new(LocalReply {
        status: refusal.status,
        fields: b"content-type: application/problem+json\r\n".to_vec(),
        body: refusal.problem,
    }));
    Err(Denial::Reply)
}

fn challenge(fx: &mut Effects, scheme: &str) {
    fx.response_lines.extend_from_slice(b"www-authenticate: ");
    fx.response_lines.extend_from_slice(scheme.as_bytes());
    fx.response_lines
        .extend_from_slice(b" realm=\"ringway\"\r\n");
}

/// A claim as text, by the one rule (`jwt::claim_text`); `None` when absent, null, or an array
/// with no faithful text form (such a claim matches no `authorize` value and renders no
/// `${claim.NAME}`).
pub fn claim_string(v: &Verified, name: &str) -> Option<String> {
    crate::jwt::claim_text(v.claims.get(name)?).ok().flatten()
}

/// Sets the consumer header upstream, replacing any copy the client sent. `Err` (nothing
/// added) if the name is not a safe header value.
fn assert_consumer(fx: &mut Effects, header: &[u8], consumer: &str) -> Result<(), ()> {
    fx.upstream.push_remove(header);
    if !http1::is_safe_header_value(consumer.as_bytes()) {
        return Err(());
    }
    fx.upstream.push_add(header, consumer.as_bytes().to_vec());
    Ok(())
}

/// The challenge for a credential that verified but carries a value unfit for a header.
fn unsafe_credential(caller: &Caller<'_>, fx: &mut Effects) {
    if caller.jwt.is_some() {
        http1::write_header(
            &mut fx.response_lines,
            b"www-authenticate",
            crate::jwt::JwtError::UnsafeClaim
                .www_authenticate()
                .as_bytes(),
        );
    } else if caller.key.is_some() {
        challenge(fx, "ApiKey");
    } else {
        challenge(fx, "Bearer");
    }
}

/// The value after `Bearer ` (scheme case-insensitive), trimmed.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let v = value.trim_ascii();
    if v.len() > 7 && v[..6].eq_ignore_ascii_case(b"bearer") && v[6] == b' ' {
        Some(v[7..].trim_ascii())
    } else {
        None
    }
}

fn api_key<'a>(
    ps: &'a Policies,
    k: &ApiKeyCheck,
    f: &Facts<'_>,
    caller: &mut Caller<'a>,
    fx: &mut Effects,
) -> Result<(), Denial> {
    let mut found: Option<(&[u8], &KeySource)> = None;
    for src in &k.sources {
        let v = match src {
            KeySource::Bearer => f.head.header("authorization").and_then(bearer),
            KeySource::Header(h) => f.head.header(h).map(<[u8]>::trim_ascii),
            KeySource::Query(name) => query::get(f.head.query(), name),
        };
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            found = Some((v, src));
            break;
        }
    }
    let Some((presented, src)) = found else {
        challenge(fx, "ApiKey");
        return Err(Denial::Unauthorized {
            reason: "missing_key",
            detail: "an API key is required",
        });
    };
    // A key is a secret: none travels further than the gateway, from whichever source the
    // policy reads (not only the one that decided: a second key beside it would reach the
    // upstream, naming another consumer than the one the gateway vouches for).
    for s in &k.sources {
        match s {
            KeySource::Bearer => fx.upstream.push_remove(b"authorization"),
            KeySource::Header(h) => fx.upstream.push_remove(h.as_bytes()),
            KeySource::Query(name) => fx.query_remove.push(name.clone()),
        }
    }
    // A query value is percent-encoded (`http1::query`'s rule); a decoded key longer than a
    // key cannot be one, and its raw form is refused as malformed just the same.
    let mut decoded = [0u8; crate::apikey::key::KEY_LEN];
    let presented = match src {
        KeySource::Query(_) => query::decode_into(presented, &mut decoded).unwrap_or(presented),
        _ => presented,
    };
    let Some(store) = &ps.keys else {
        challenge(fx, "ApiKey");
        return Err(Denial::Unauthorized {
            reason: "unknown_key",
            detail: "the API key is not valid",
        });
    };
    match store.authenticate(presented, f.unix_now) {
        Ok(m) => {
            // Key files refuse such names at load; checked again where the value is written.
            if assert_consumer(fx, &k.consumer_header, m.consumer).is_err() {
                challenge(fx, "ApiKey");
                return Err(Denial::Unauthorized {
                    reason: "unsafe_consumer",
                    detail: "the API key is not valid",
                });
            }
            caller.key = Some(m);
            Ok(())
        }
        Err(e) => {
            challenge(fx, "ApiKey");
            Err(Denial::Unauthorized {
                reason: e.reason(),
                detail: "the API key is not valid",
            })
        }
    }
}

fn jwt(
    j: &JwtCheck,
    f: &Facts<'_>,
    caller: &mut Caller<'_>,
    fx: &mut Effects,
    tokens: &mut TokenCache,
) -> Result<(), Denial> {
    // One token per request: the parser refuses a second `Authorization`; a custom token
    // header sent twice is refused here, or the upstream could read the copy nobody verified.
    let name = j.jwt.header_name();
    let raw = f.head.sole_header(name).map_err(|_| Denial::BadRequest {
        detail: "the token header was sent more than once",
    })?;
    let token = raw.and_then(|v| j.jwt.token_from_header(v));
    // Headers the gateway derives from claims never come from the client.
    for name in j.jwt.forwarded_header_names() {
        fx.upstream.push_remove(name.as_bytes());
    }
    fx.upstream.push_remove(&j.consumer_header);
    let Some(token) = token else {
        challenge(fx, "Bearer");
        return Err(Denial::Unauthorized {
            reason: "missing_token",
            detail: "a bearer token is required",
        });
    };
    match j.jwt.verify(token, f.unix_now, tokens) {
        Ok(v) => {
            // `verify` refuses tokens whose consumer or mapped claims fail
            // `is_safe_header_value` (`JwtError::UnsafeClaim`, cached like any verdict); the
            // check is repeated here, where the values are written, and costs a short scan.
            let safe = v
                .consumer
                .iter()
                .chain(v.headers.iter().map(|(_, value)| value))
                .all(|value| http1::is_safe_header_value(value.as_bytes()));
            if !safe {
                let e = crate::jwt::JwtError::UnsafeClaim;
                http1::write_header(
                    &mut fx.response_lines,
                    b"www-authenticate",
                    e.www_authenticate().as_bytes(),
                );
                return Err(Denial::Unauthorized {
                    reason: e.reason(),
                    detail: e.detail(),
                });
            }
            if let Some(c) = &v.consumer {
                fx.upstream
                    .push_add(&j.consumer_header, c.as_bytes().to_vec());
            }
            for (name, value) in &v.headers {
                fx.upstream
                    .push_add(name.as_bytes(), value.as_bytes().to_vec());
            }
            // A custom token header goes upstream as the copy that was verified, and as the
            // gateway's: its underscore spelling (`X_Jwt`, one variable with `x-jwt` to CGI,
            // WSGI and PHP backends) is then dropped like any field the route sets. (A token
            // past the derived-value bound, 4 KiB, is left as the client sent it.)
            let raw = raw
                .map(<[u8]>::trim_ascii)
                .filter(|r| http1::is_safe_header_value(r));
            if let (false, Some(raw)) = (name.eq_ignore_ascii_case("authorization"), raw) {
                fx.upstream.push_remove(name.as_bytes());
                fx.upstream.push_add(name.as_bytes(), raw.to_vec());
            }
            caller.jwt = Some(v);
            Ok(())
        }
        Err(e) => {
            http1::write_header(
                &mut fx.response_lines,
                b"www-authenticate",
                e.www_authenticate().as_bytes(),
            );
            Err(Denial::Unauthorized {
                reason: e.reason(),
                detail: e.detail(),
            })
        }
    }
}

fn authorize(
    ps: &Policies,
    a: &Authorize,
    caller: &Caller<'_>,
    fx: &mut Effects,
) -> Result<(), Denial> {
    let anonymous = caller.key.is_none() && caller.jwt.is_none() && caller.cert.is_none();
    if anonymous && caller.external.is_none() {
        challenge(fx, "Bearer");
        return Err(Denial::Unauthorized {
            reason: "unauthenticated",
            detail: "this route needs an authenticated caller",
        });
    }
    let forbidden = |reason| Denial::Forbidden {
        reason,
        detail: "the caller is not allowed to use this route",
    };
    if !a.consumers.is_empty() || !a.groups.is_empty() {
        let name = caller.consumer();
        let by_name = name.is_some_and(|n| a.consumers.iter().any(|c| c == n));
        let by_group = name
            .and_then(|n| ps.consumers.get(n))
            .is_some_and(|c| c.groups.iter().any(|g| a.groups.contains(g)));
        if !by_name && !by_group {
            return Err(forbidden("consumer_not_allowed"));
        }
    }
    if !a.scopes.is_empty() {
        let have = match (&caller.jwt, &caller.external) {
            (Some(j), _) => &j.scopes[..],
            (None, Some(e)) => &e.scopes[..],
            (None, None) => &[],
        };
        if !a.scopes.iter().all(|s| have.contains(s)) {
            return Err(forbidden("missing_scope"));
        }
    }
    for (name, want) in &a.claims {
        let got = caller.jwt.as_ref().and_then(|j| claim_string(j, name));
        if got.as_deref() != Some(want.as_str()) {
            return Err(forbidden("claim_mismatch"));
        }
    }
    Ok(())
}

/// Checks the connection's certificate; a consumer it names goes upstream in the policy's
/// header (replacing the client's copy) and identifies the caller.
fn client_cert<'a>(
    c: &ClientCertPolicy,
    f: &Facts<'a>,
    caller: &mut Caller<'a>,
    fx: &mut Effects,
) -> Result<(), Denial> {
    if c.consumer.is_some() {
        fx.upstream.push_remove(&c.consumer_header);
    }
    match c.check(f.peer_cert) {
        Ok(Some(name)) => {
            if assert_consumer(fx, &c.consumer_header, name).is_err() {
                return Err(Denial::ClientCert(CertRefusal::UnsafeValue));
            }
            caller.cert = Some(name);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(r) => {
            if r == CertRefusal::Missing {
                challenge(fx, "ClientCertificate");
            }
            Err(Denial::ClientCert(r))
        }
    }
}

/// The bytes a rate limit or quota with key `key` counts this request by: the consumer, API
/// key id, route or header it names, else the client address (`ip`, from [`ip_bytes`]), so
/// callers without one do not all share one bucket. A header is counted by the value the
/// upstream receives: when an earlier policy set, removed or renamed it (`edits`), the
/// client's own copy would let it pick a fresh bucket per request. A client's header sent more
/// than once is refused (400): the limit would count one copy while the upstream reads
/// another, so a caller could charge someone else's bucket and be served as itself.
pub fn key_bytes<'k>(
    key: &LimitKey,
    f: &'k Facts<'_>,
    caller: &'k Caller<'_>,
    ip: &'k ([u8; 17], usize),
    edits: &HeaderEdits,
) -> Result<std::borrow::Cow<'k, [u8]>, Denial> {
    use std::borrow::Cow;
    let named = match key {
        LimitKey::Consumer => caller.consumer().map(str::as_bytes),
        LimitKey::ApiKey => caller.key.as_ref().map(|k| k.id.as_bytes()),
        LimitKey::Route => Some(f.route.as_bytes()),
        LimitKey::Header(h) if edits.touches(h.as_bytes()) => {
            return Ok(match edits.upstream_value(f.head.headers(), h.as_bytes()) {
                Some(v) if !v.is_empty() => Cow::Owned(v.to_vec()),
                _ => Cow::Borrowed(&ip.0[..ip.1]),
            });
        }
        LimitKey::Header(h) => f
            .head
            .sole_header(h)
            .map_err(|_| Denial::BadRequest {
                detail: "the header a rate limit or quota counts by was sent more than once",
            })?
            .map(<[u8]>::trim_ascii),
        LimitKey::Ip => None,
    };
    // An empty value names nobody: it counts by address like a missing one, or every client
    // sending it would share (and could exhaust) one bucket.
    Ok(Cow::Borrowed(
        named.filter(|v| !v.is_empty()).unwrap_or(&ip.0[..ip.1]),
    ))
}

/// A rate-limit policy's synchronous part. `Ok(false)`: a global limit must ask Redis
/// (`policy::remote::settle`); local limits always decide here.
fn rate_limit(
    rl: &RateLimit,
    f: &Facts<'_>,
    caller: &Caller<'_>,
    fx: &mut Effects,
) -> Result<bool, Denial> {
    let ip = ip_key(f);
    let key = key_bytes(&rl.key, f, caller, &ip, &fx.upstream)?;
    let key = &*key;
    if let Some(g) = &rl.global {
        let local = crate::ratelimit::global::try_local(
            g,
            &rl.specs,
            key,
            f.mono_now,
            &mut fx.response_lines,
        );
        return match local {
            Some(v) => global_verdict(v, rl, key, f.mono_now, fx).map(|()| true),
            None => Ok(false),
        };
    }
    local_limit(rl, key, f.mono_now, fx).map(|()| true)
}

/// `rl`'s limits checked by this instance alone (local scope, or a global limit's `fail_open`).
fn local_limit(rl: &RateLimit, key: &[u8], now: u64, fx: &mut Effects) -> Result<(), Denial> {
    let mut checks: [(&Limiter, &[u8]); 4] = [(&rl.limiters[0], key); 4];
    let n = rl.limiters.len().min(checks.len());
    for (slot, l) in checks.iter_mut().zip(&rl.limiters) {
        *slot = (l, key);
    }
    let d = crate::ratelimit::check_all(&checks[..n], now);
    crate::ratelimit::write_headers(&d, &rl.specs, &mut fx.response_lines);
    fx.rate_limited = Some(d.allowed && fx.rate_limited != Some(false));
    if d.allowed {
        Ok(())
    } else {
        Err(Denial::Limited)
    }
}

/// A quota's local part: a key this worker saw refused in the last second is refused here
/// (`quota::recent`); anything else needs Redis (`policy::quota::settle`).
fn quota_local(
    q: &QuotaCheck,
    f: &Facts<'_>,
    caller: &Caller<'_>,
    fx: &mut Effects,
) -> Result<(), Denial> {
    let ip = ip_key(f);
    let key = key_bytes(&q.key, f, caller, &ip, &fx.upstream)?;
    let key = &*key;
    let now = i64::try_from(f.unix_now).unwrap_or(i64::MAX);
    if crate::quota::recent::answer(&q.spec, key, now, f.mono_now, &mut fx.response_lines) {
        fx.rate_limited = Some(false);
        return Err(Denial::Limited);
    }
    Ok(())
}

/// A global limit's verdict for `key` as the pipeline's outcome (and the rate-limit metric's).
pub fn global_verdict(
    v: crate::ratelimit::global::Verdict,
    rl: &RateLimit,
    key: &[u8],
    now: u64,
    fx: &mut Effects,
) -> Result<(), Denial> {
    use crate::ratelimit::global::Verdict;
    match v {
        Verdict::Local => local_limit(rl, key, now, fx),
        Verdict::Admit => {
            fx.rate_limited = Some(fx.rate_limited != Some(false));
            Ok(())
        }
        Verdict::Limited => {
            fx.rate_limited = Some(false);
            Err(Denial::Limited)
        }
        Verdict::Unavailable => Err(Denial::LimiterUnavailable),
    }
}

/// The client address a `key = "ip"` limit or quota counts, as bytes: IPv4 as is, IPv6 cut to
/// `f.ipv6_prefix` bits.
pub fn ip_key(f: &Facts<'_>) -> ([u8; 17], usize) {
    let ip = match f.client_ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u32::from(f.ipv6_prefix.clamp(1, 128));
            let masked = u128::from(v6) & (u128::MAX << (128 - bits));
            IpAddr::V6(std::net::Ipv6Addr::from(masked))
        }
        v4 => v4,
    };
    ip_bytes(ip)
}

/// An address as bytes, without allocating.
pub fn ip_bytes(ip: IpAddr) -> ([u8; 17], usize) {
    let mut out = [0u8; 17];
    match ip {
        IpAddr::V4(v4) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&v4.octets());
            (out, 5)
        }
        IpAddr::V6(v6) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&v6.octets());
            (out, 17)
        }
    }
}

/// `${...}` values for transforms.
struct RequestVars<'a> {
    ps: &'a Policies,
    f: &'a Facts<'a>,
    caller: &'a Caller<'a>,
}

impl RequestVars<'_> {
    fn consumer_entry(&self) -> Option<&Consumer> {
        self.caller
            .consumer()
            .and_then(|n| self.ps.consumers.get(n))
    }
}

impl Vars for RequestVars<'_> {
    fn consumer(&self) -> Option<&str> {
        self.caller.consumer()
    }
    fn request_id(&self) -> &str {
        self.f.request_id
    }
    fn client_ip(&self) -> &str {
        self.f.client_ip_text
    }
    fn route(&self) -> &str {
        self.f.route
    }
    fn claim(&self, name: &str) -> Option<String> {
        self.caller.jwt.as_ref().and_then(|j| claim_string(j, name))
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.f.head.header(name)
    }
    fn header_repeated(&self, name: &str) -> bool {
        self.f
            .head
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .nth(1)
            .is_some()
    }
    fn consumer_meta(&self, name: &str) -> Option<&str> {
        self.consumer_entry()?
            .metadata
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn consumer_groups(&self) -> String {
        self.consumer_entry()
            .map(|c| c.groups.join(","))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
        assert_eq!(bearer(b""), None);
    }
}
