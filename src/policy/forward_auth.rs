//! `forward_auth`: asks an HTTP authorization service about each request (the idea of nginx's
//! `auth_request`, Traefik's ForwardAuth, Envoy's `ext_authz`). A 2xx allows the request and
//! may copy response headers onto the upstream request (and name the consumer); any other
//! answer goes to the client as it is (status, the allowed headers, body).
//!
//! This file owns the config side: `[policies.NAME.forward_auth]`, its defaults and the checks
//! that keep what is sent and passed on safe (no framing or hop-by-hop fields, no field the
//! gateway writes itself). The request-time side is `forward_auth_check.rs`.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::{header_name, int_in, positive, Fail};
use crate::config::units::{RawDuration, RawSize};
use crate::http1::{is_hop_by_hop, Method};

/// Fields the gateway always sends the service (and so a config may not list to copy).
pub const ALWAYS_SENT: [&str; 6] = [
    "x-forwarded-method",
    "x-forwarded-uri",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-request-id",
];

/// Client headers copied to the service unless `request_headers` says otherwise: the
/// credentials a service needs to decide.
const DEFAULT_REQUEST_HEADERS: [&str; 2] = ["authorization", "cookie"];

/// Service response headers a denial passes to the client unless `deny_headers` says
/// otherwise: what a login redirect or a challenge needs.
const DEFAULT_DENY_HEADERS: [&str; 4] =
    ["location", "www-authenticate", "set-cookie", "content-type"];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_MAX_RESPONSE: u64 = 64 * 1024;
/// Upper bound for `body_bytes` and `max_response_bytes`: both are held in memory per request.
const MAX_BUFFER: u64 = 1024 * 1024;
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);
const DEFAULT_CACHE_ENTRIES: usize = 10_000;

/// `[policies.NAME.forward_auth]`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawForwardAuth {
    /// The `[[upstreams]]` entry of the authorization service (HTTP/1.1).
    #[schemars(with = "Option<String>")]
    pub upstream: Option<Spanned<String>>,
    /// The service's path (origin-form, may carry a query); default "/".
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// The method of the call: default GET, or POST when `body_bytes` is set.
    #[schemars(with = "Option<String>")]
    pub method: Option<Spanned<String>>,
    /// Client headers copied to the service; default ["authorization", "cookie"]. The
    /// `x-forwarded-*` facts and `x-request-id` are always sent.
    #[schemars(with = "Option<Vec<String>>")]
    pub request_headers: Option<Vec<Spanned<String>>>,
    /// The first N bytes of the request body sent along (default 0, at most 1MiB).
    #[schemars(with = "Option<RawSize>")]
    pub body_bytes: Option<Spanned<RawSize>>,
    /// Service response headers copied onto the upstream request on a 2xx, each replacing
    /// whatever the client sent under that name.
    #[schemars(with = "Option<Vec<String>>")]
    pub upstream_headers: Option<Vec<Spanned<String>>>,
    /// A service response header whose value names the consumer (rate limits, `authorize`).
    #[schemars(with = "Option<String>")]
    pub consumer_header: Option<Spanned<String>>,
    /// Service response headers a denial passes to the client; default ["location",
    /// "www-authenticate", "set-cookie", "content-type"].
    #[schemars(with = "Option<Vec<String>>")]
    pub deny_headers: Option<Vec<Spanned<String>>>,
    /// The whole call's time limit (connect, send, answer); default 1s.
    #[schemars(with = "Option<RawDuration>")]
    pub timeout: Option<Spanned<RawDuration>>,
    /// Let requests through when the service is down, slow or answers nonsense (default
    /// false: 503).
    pub fail_open: Option<bool>,
    /// Largest service answer body (default 64KiB, at most 1MiB); a longer one is a bad answer.
    #[schemars(with = "Option<RawSize>")]
    pub max_response_bytes: Option<Spanned<RawSize>>,
    /// Cache allow decisions per worker, keyed by a hash of a client header's value.
    #[schemars(with = "Option<RawDecisionCache>")]
    pub cache: Option<Spanned<RawDecisionCache>>,
}

/// `cache = { key, ttl, max_entries }`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDecisionCache {
    /// The client header whose value keys decisions; default "authorization".
    #[schemars(with = "Option<String>")]
    pub key: Option<Spanned<String>>,
    /// How long an allow is reused; default 30s.
    #[schemars(with = "Option<RawDuration>")]
    pub ttl: Option<Spanned<RawDuration>>,
    /// Most decisions held per worker; default 10000.
    #[schemars(with = "Option<i64>")]
    pub max_entries: Option<Spanned<i64>>,
}

/// The compiled decision cache settings.
#[derive(Debug)]
pub struct DecisionCacheConfig {
    /// Lowercase client header name whose value keys the cache.
    pub key: Box<str>,
    pub ttl: Duration,
    pub max_entries: usize,
}

/// The compiled policy.
#[derive(Debug)]
pub struct ForwardAuth {
    /// The policy's name (metric label).
    pub name: Arc<str>,
    /// Names this policy's cached decisions: a digest of the name and of every setting that
    /// shapes a decision, so a reload that keeps them keeps the cache, and one that changes
    /// what a decision means (service, path, headers, cache key) starts afresh.
    pub id: u64,
    /// Index of the service's upstream in the generation.
    pub upstream: u32,
    /// Origin-form target of the call.
    pub path: Box<[u8]>,
    pub method: Method,
    /// Lowercase client header names copied to the service.
    pub request_headers: Box<[Box<str>]>,
    /// Request body bytes sent along (0: none).
    pub body_bytes: usize,
    /// Lowercase service header names copied upstream on a 2xx.
    pub upstream_headers: Box<[Box<str>]>,
    /// Lowercase service header name naming the consumer.
    pub consumer_header: Option<Box<str>>,
    /// Lowercase service header names passed on with a denial.
    pub deny_headers: Box<[Box<str>]>,
    pub timeout: Duration,
    pub fail_open: bool,
    pub max_response_bytes: usize,
    pub cache: Option<DecisionCacheConfig>,
    /// `ringway_forward_auth_total` for this policy's name.
    pub counters: Arc<crate::metrics::ForwardAuthCounters>,
}

/// `ForwardAuth::id`: the first 8 bytes of a SHA-256 over the decision-shaping settings.
fn decision_id(raw: &RawForwardAuth, name: &str, parts: &[&dyn std::fmt::Debug]) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let upstream = raw.upstream.as_ref().map(|u| u.get_ref().as_str());
    let text = format!("{name:?}\0{upstream:?}\0{parts:?}");
    ctx.update(text.as_bytes());
    let d = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d.as_ref()[..8]);
    u64::from_be_bytes(first)
}

/// Why a name may not be copied in a direction (`None`: it may).
fn refused_name(name: &str, extra: &[&str]) -> Option<&'static str> {
    if is_hop_by_hop(name.as_bytes()) {
        return Some("is hop-by-hop and never forwarded");
    }
    if matches!(name, "content-length" | "host" | "expect") || extra.contains(&name) {
        return Some("is written by the gateway itself");
    }
    None
}

/// A list of header names, lowercased and checked; `default` when absent.
fn names(
    list: &Option<Vec<Spanned<String>>>,
    field: &str,
    default: &[&str],
    extra: &[&str],
    fail: &mut Fail<'_>,
) -> Box<[Box<str>]> {
    let Some(list) = list else {
        return default.iter().map(|&n| n.into()).collect();
    };
    let mut out: Vec<Box<str>> = Vec::with_capacity(list.len());
    for s in list {
        let Some(n) = header_name(fail, s, field) else {
            continue;
        };
        if let Some(why) = refused_name(&n, extra) {
            fail(s.span(), field, format!("{n:?} {why}"));
            continue;
        }
        if !out.iter().any(|o| **o == *n) {
            out.push(n.into());
        }
    }
    out.into()
}

/// A byte size within `1..=MAX_BUFFER` (0 allowed when `zero_ok`), or `default`.
fn size(
    v: &Option<Spanned<RawSize>>,
    field: &str,
    default: u64,
    zero_ok: bool,
    fail: &mut Fail<'_>,
) -> usize {
    match v {
        None => default as usize,
        Some(s) => {
            let n = s.get_ref().0;
            if n > MAX_BUFFER || (n == 0 && !zero_ok) {
                let low = if zero_ok { 0 } else { 1 };
                fail(
                    s.span(),
                    field,
                    format!("must be between {low} and {MAX_BUFFER} bytes"),
                );
                default as usize
            } else {
                n as usize
            }
        }
    }
}

/// Compiles the policy named `name`; `upstreams` maps upstream names to ids. Errors go to
/// `fail`.
pub fn compile(
    raw: &RawForwardAuth,
    span: std::ops::Range<usize>,
    name: &str,
    upstreams: &dyn Fn(&str) -> Option<u32>,
    fail: &mut Fail<'_>,
) -> Option<ForwardAuth> {
    let mut ok = true;
    let upstream = match &raw.upstream {
        None => {
            fail(
                span,
                "upstream",
                "the service's upstream is required".into(),
            );
            None
        }
        Some(up) => {
            let found = upstreams(up.get_ref());
            if found.is_none() {
                let n = up.get_ref();
                fail(up.span(), "upstream", format!("no upstream named {n:?}"));
            }
            found
        }
    };
    let path: Box<[u8]> = match &raw.path {
        None => (*b"/").into(),
        Some(p) => {
            let v = p.get_ref().as_bytes();
            let bad =
                v.first() != Some(&b'/') || v.iter().any(|&b| b <= b' ' || b == 0x7f || b == b'#');
            if bad {
                fail(
                    p.span(),
                    "path",
                    "must start with '/' and hold no spaces, control characters or '#'".into(),
                );
                ok = false;
            }
            v.into()
        }
    };
    let body_bytes = size(&raw.body_bytes, "body_bytes", 0, true, fail);
    let method = match &raw.method {
        None if body_bytes > 0 => Method::Post,
        None => Method::Get,
        Some(m) => match Method::from_bytes(m.get_ref().as_bytes()) {
            Method::Other | Method::Connect | Method::Trace | Method::Options => {
                fail(
                    m.span(),
                    "method",
                    "must be one of GET, HEAD, POST, PUT, PATCH, DELETE".into(),
                );
                ok = false;
                Method::Get
            }
            m => m,
        },
    };
    let request_headers = names(
        &raw.request_headers,
        "request_headers",
        &DEFAULT_REQUEST_HEADERS,
        &ALWAYS_SENT,
        fail,
    );
    // Upstream request fields the gateway owns (`exchange::upstream_head` writes them), which
    // a service's answer may not replace.
    let owned: Vec<&str> = super::transform::GATEWAY_REQUEST_HEADERS
        .iter()
        .copied()
        .chain(["x-forwarded-client-cert"])
        .collect();
    let upstream_headers = names(&raw.upstream_headers, "upstream_headers", &[], &owned, fail);
    let deny_headers = names(
        &raw.deny_headers,
        "deny_headers",
        &DEFAULT_DENY_HEADERS,
        &["x-request-id"],
        fail,
    );
    let consumer_header = raw
        .consumer_header
        .as_ref()
        .and_then(|c| header_name(fail, c, "consumer_header"))
        .map(Box::from);
    let timeout = positive(fail, &raw.timeout, "timeout", DEFAULT_TIMEOUT);
    let max_response_bytes = size(
        &raw.max_response_bytes,
        "max_response_bytes",
        DEFAULT_MAX_RESPONSE,
        false,
        fail,
    );
    let cache = raw.cache.as_ref().map(|c| {
        let c = c.get_ref();
        let key = match &c.key {
            None => "authorization".into(),
            Some(k) => header_name(fail, k, "cache.key").unwrap_or_default().into(),
        };
        DecisionCacheConfig {
            key,
            ttl: positive(fail, &c.ttl, "cache.ttl", DEFAULT_CACHE_TTL),
            max_entries: int_in(
                fail,
                &c.max_entries,
                "cache.max_entries",
                DEFAULT_CACHE_ENTRIES,
                1..=1_000_000,
                "",
            ),
        }
    });
    if !ok {
        return None;
    }
    let id = decision_id(
        raw,
        name,
        &[
            &path,
            &method,
            &request_headers,
            &body_bytes,
            &upstream_headers,
            &consumer_header,
            &cache.as_ref().map(|c| &c.key),
        ],
    );
    Some(ForwardAuth {
        name: name.into(),
        id,
        upstream: upstream?,
        path,
        method,
        request_headers,
        body_bytes,
        upstream_headers,
        consumer_header,
        deny_headers,
        timeout,
        fail_open: raw.fail_open.unwrap_or(false),
        max_response_bytes,
        cache,
        counters: crate::metrics::forward_auth_counters(name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_text(text: &str) -> (Option<ForwardAuth>, Vec<String>) {
        let raw: RawForwardAuth = toml::from_str(text).expect("parses");
        let mut errs = Vec::new();
        let mut fail = |_: std::ops::Range<usize>, field: &str, msg: String| {
            errs.push(format!("{field}: {msg}"));
        };
        let ups = |n: &str| (n == "authz").then_some(3);
        let p = compile(&raw, 0..0, "fa", &ups, &mut fail);
        (p, errs)
    }

    #[test]
    fn defaults() {
        let (p, errs) = compile_text("upstream = \"authz\"\n");
        assert!(errs.is_empty(), "{errs:?}");
        let p = p.expect("compiles");
        assert_eq!(p.upstream, 3);
        assert_eq!(&*p.path, b"/");
        assert_eq!(p.method, Method::Get);
        let names: Vec<&str> = p.request_headers.iter().map(|n| &**n).collect();
        assert_eq!(names, ["authorization", "cookie"]);
        let deny: Vec<&str> = p.deny_headers.iter().map(|n| &**n).collect();
        assert_eq!(
            deny,
            ["location", "www-authenticate", "set-cookie", "content-type"]
        );
        assert_eq!(p.timeout, Duration::from_secs(1));
        assert_eq!(p.max_response_bytes, 64 * 1024);
        assert_eq!(p.body_bytes, 0);
        assert!(!p.fail_open && p.cache.is_none());
    }

    #[test]
    fn a_body_makes_the_default_method_post_and_names_are_lowercased_once() {
        let (p, errs) = compile_text(
            "upstream = \"authz\"\nbody_bytes = \"1KiB\"\nupstream_headers = [\"X-User\", \"x-user\"]\n\
             cache = {}\n",
        );
        assert!(errs.is_empty(), "{errs:?}");
        let p = p.expect("compiles");
        assert_eq!(p.method, Method::Post);
        assert_eq!(p.body_bytes, 1024);
        assert_eq!(p.upstream_headers.len(), 1);
        assert_eq!(&*p.upstream_headers[0], "x-user");
        let c = p.cache.expect("cache");
        assert_eq!(&*c.key, "authorization");
        assert_eq!(c.ttl, Duration::from_secs(30));
        assert_eq!(c.max_entries, 10_000);
    }

    #[test]
    fn the_id_follows_decision_settings_not_unrelated_ones() {
        let id = |t: &str| compile_text(t).0.expect("compiles").id;
        let base = id("upstream = \"authz\"\nupstream_headers = [\"x-user\"]\n");
        let same = id("upstream = \"authz\"\nupstream_headers = [\"x-user\"]\ntimeout = \"2s\"\n");
        let other = id("upstream = \"authz\"\nupstream_headers = [\"x-group\"]\n");
        assert_eq!(
            base, same,
            "a timeout does not change what a decision means"
        );
        assert_ne!(base, other);
    }

    #[test]
    fn refusals() {
        for (text, want) in [
            (
                "path = \"/a\"\n",
                "upstream: the service's upstream is required",
            ),
            ("upstream = \"x\"\n", "no upstream named"),
            (
                "upstream = \"authz\"\nrequest_headers = [\"Connection\"]\n",
                "hop-by-hop",
            ),
            (
                "upstream = \"authz\"\nupstream_headers = [\"x-request-id\"]\n",
                "written by the gateway",
            ),
            (
                "upstream = \"authz\"\nconsumer_header = \"bad name\"\n",
                "not a valid header name",
            ),
            (
                "upstream = \"authz\"\ntimeout = \"0s\"\n",
                "greater than zero",
            ),
            (
                "upstream = \"authz\"\nmax_response_bytes = 0\n",
                "between 1 and",
            ),
            (
                "upstream = \"authz\"\ncache = { max_entries = 0 }\n",
                "between 1 and",
            ),
        ] {
            let (_, errs) = compile_text(text);
            assert!(errs.iter().any(|e| e.contains(want)), "{text}: {errs:?}");
        }
    }
}
