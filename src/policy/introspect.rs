//! `introspect`: checks opaque bearer tokens with an OAuth2 introspection endpoint (RFC 7662),
//! given as a path on the IdP's upstream or found through OIDC discovery (`oidc`). This file
//! is the config side: `RawIntrospect` and `compile`; the request side is
//! `introspect_check`.
//!
//! Invariants: the client secret is read once here (from the file or an environment
//! variable), kept only inside the prepared request pieces, and never printed (`Debug` hides
//! it); the IdP's upstream speaks HTTP/1.1; a discovered endpoint must be on one of that
//! upstream's targets (`oidc::Discovery`), so credentials never go to an unconfigured host.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::{header_name, int_in, positive, Fail};
use crate::config::units::RawDuration;
use crate::oidc::{Discovery, DiscoveryFetchers, Origin};

/// `[policies.NAME.introspect]`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospect {
    /// The `[[upstreams]]` entry of the identity provider (HTTP/1.1).
    #[schemars(with = "Option<String>")]
    pub upstream: Option<Spanned<String>>,
    /// The introspection endpoint's path on that upstream (e.g. `/oauth2/introspect`).
    /// Without it, `issuer` is required and the endpoint comes from OIDC discovery.
    #[schemars(with = "Option<String>")]
    pub endpoint: Option<Spanned<String>>,
    /// The IdP's issuer URL: an answer's `iss`, when present, must equal it; without
    /// `endpoint`, `{issuer}/.well-known/openid-configuration` names the endpoint.
    #[schemars(with = "Option<String>")]
    pub issuer: Option<Spanned<String>>,
    /// How often the discovery document is read again (default 5m).
    #[schemars(with = "Option<RawDuration>")]
    pub refresh: Option<Spanned<RawDuration>>,
    /// The gateway's client id at the IdP.
    #[schemars(with = "Option<String>")]
    pub client_id: Option<Spanned<String>>,
    /// The client secret, inline (prefer `client_secret_env`).
    #[schemars(with = "Option<String>")]
    pub client_secret: Option<Spanned<String>>,
    /// Name of an environment variable holding the client secret (recommended).
    #[schemars(with = "Option<String>")]
    pub client_secret_env: Option<Spanned<String>>,
    /// `"basic"` (client_secret_basic, the default) or `"post"` (client_secret_post).
    #[schemars(with = "Option<String>")]
    pub auth: Option<Spanned<String>>,
    /// The token's `aud` (a string or an array) must contain this.
    #[schemars(with = "Option<String>")]
    pub audience: Option<Spanned<String>>,
    /// OAuth clients whose tokens this route accepts: the answer's `client_id` must be one of
    /// them (else 401 `invalid_token`). Default: any client.
    #[schemars(with = "Option<Vec<String>>")]
    pub allowed_clients: Option<Spanned<Vec<Spanned<String>>>>,
    /// Scopes every token must carry (else 403 `insufficient_scope`).
    #[schemars(with = "Option<Vec<String>>")]
    pub required_scopes: Option<Spanned<Vec<Spanned<String>>>>,
    /// The answer's member naming the consumer (default `sub`; falls back to `client_id`).
    #[schemars(with = "Option<String>")]
    pub consumer_claim: Option<Spanned<String>>,
    /// The header that carries the consumer upstream (default `x-consumer`).
    #[schemars(with = "Option<String>")]
    pub consumer_header: Option<Spanned<String>>,
    /// Keep the client's `Authorization` header on the upstream request (default true, as
    /// the `jwt` policy does).
    #[schemars(with = "Option<bool>")]
    pub forward_token: Option<Spanned<bool>>,
    /// Longest an active answer is reused (default 60s; never past the token's `exp`).
    #[schemars(with = "Option<RawDuration>")]
    pub cache_ttl: Option<Spanned<RawDuration>>,
    /// How long a refusal (inactive, expired, wrong audience) is reused (default 5s).
    #[schemars(with = "Option<RawDuration>")]
    pub negative_ttl: Option<Spanned<RawDuration>>,
    /// Cached answers per worker (default 10000; 0 disables the cache).
    #[schemars(with = "Option<i64>")]
    pub max_entries: Option<Spanned<i64>>,
    /// The whole introspection call's limit (default 1s); past it the request gets 503.
    #[schemars(with = "Option<RawDuration>")]
    pub timeout: Option<Spanned<RawDuration>>,
}

/// What an upstream named by a service policy offers it (built by `config::policies`).
#[derive(Debug, Clone)]
pub struct ServiceUpstream {
    /// Index in the generation's upstream list.
    pub index: u32,
    /// `protocol = "http2"`: refused for service calls.
    pub http2: bool,
    /// The origins of its targets (scheme from its `tls`).
    pub origins: Vec<Origin>,
}

/// Where the introspection endpoint comes from.
pub enum Endpoint {
    /// `endpoint = "/path"`.
    Static(Box<[u8]>),
    /// OIDC discovery, refreshed in the background.
    Discovered(Arc<Discovery>),
}

/// The compiled policy.
pub struct Introspect {
    /// What the cached verdicts depend on, hashed (the IdP's origins and endpoint, the client,
    /// audience, issuer, consumer claim): policies that would get the same verdicts share
    /// entries, and a reload that changes none of it keeps the worker's cache warm.
    pub id: u64,
    /// Index of the IdP's upstream in the generation.
    pub upstream: u32,
    pub endpoint: Endpoint,
    /// Head lines of every introspection request (content type, accept, client_secret_basic
    /// credentials).
    pub head_lines: Box<[u8]>,
    /// Form fields before the token (client_secret_post credentials, `&`-terminated).
    pub body_prefix: Box<[u8]>,
    pub audience: Option<String>,
    pub issuer: Option<String>,
    pub required_scopes: Vec<String>,
    /// `allowed_clients` (empty: any client).
    pub allowed_clients: Vec<String>,
    pub consumer_claim: String,
    /// Lowercase.
    pub consumer_header: Box<[u8]>,
    pub forward_token: bool,
    pub cache_ttl: Duration,
    pub negative_ttl: Duration,
    pub max_entries: usize,
    pub timeout: Duration,
}

impl std::fmt::Debug for Introspect {
    // The prepared pieces hold the client secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let endpoint = match &self.endpoint {
            Endpoint::Static(p) => String::from_utf8_lossy(p).into_owned(),
            Endpoint::Discovered(d) => format!("discovered from {}", d.issuer()),
        };
        f.debug_struct("Introspect")
            .field("upstream", &self.upstream)
            .field("endpoint", &endpoint)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("required_scopes", &self.required_scopes)
            .finish_non_exhaustive()
    }
}

const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// The policy's cache identity (see `Introspect::id`).
fn verdict_identity(parts: &[&[u8]]) -> u64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        // Length-prefixed, so no two different lists hash the same bytes.
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let d = ctx.finish();
    let mut id = [0u8; 8];
    id.copy_from_slice(&d.as_ref()[..8]);
    u64::from_le_bytes(id)
}

/// `application/x-www-form-urlencoded` bytes of `v` (unreserved characters as is).
pub fn form_encode(v: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in v {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// Compiles the policy. `upstream` describes an upstream by name; `discovery` starts (or
/// reuses) the background discovery source. Errors go to `fail`.
pub fn compile(
    raw: &RawIntrospect,
    span: Range<usize>,
    upstream: &dyn Fn(&str) -> Option<ServiceUpstream>,
    discovery: &DiscoveryFetchers,
    fail: &mut Fail<'_>,
) -> Option<Introspect> {
    let mut failed = false;
    let mut err = |span: Range<usize>, field: &str, msg: String| {
        failed = true;
        fail(span, field, msg);
    };
    let service = match &raw.upstream {
        None => {
            err(
                span.clone(),
                "upstream",
                "the IdP's upstream is required".into(),
            );
            None
        }
        Some(up) => match upstream(up.get_ref()) {
            None => {
                let name = up.get_ref();
                err(up.span(), "upstream", format!("no upstream named {name:?}"));
                None
            }
            Some(s) if s.http2 => {
                err(
                    up.span(),
                    "upstream",
                    "introspection speaks HTTP/1.1: the upstream must not set protocol = \
                     \"http2\""
                        .into(),
                );
                None
            }
            Some(s) => Some(s),
        },
    };
    let issuer = raw.issuer.as_ref().and_then(|i| {
        let url = i.get_ref();
        match crate::oidc::check_transport(url) {
            Ok(()) => Some(url.clone()),
            Err(why) => {
                err(i.span(), "issuer", why);
                None
            }
        }
    });
    let endpoint = raw.endpoint.as_ref().and_then(|e| {
        let p = e.get_ref();
        let ok = p.starts_with('/')
            && !p
                .bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || b == b'#' || !b.is_ascii());
        if ok {
            Some(p.clone())
        } else {
            err(
                e.span(),
                "endpoint",
                format!("{p:?} is not a path: it must start with '/' (no spaces, '#' or control characters)"),
            );
            None
        }
    });
    if raw.endpoint.is_none() && raw.issuer.is_none() {
        err(
            span.clone(),
            "endpoint",
            "set `endpoint` (the introspection path on the upstream) or `issuer` (for OIDC \
             discovery)"
                .into(),
        );
    }
    if let (Some(r), Some(_)) = (&raw.refresh, &raw.endpoint) {
        err(
            r.span(),
            "refresh",
            "`refresh` only applies to discovery (without `endpoint`)".into(),
        );
    }
    let client_id = match &raw.client_id {
        Some(c) if !c.get_ref().is_empty() => Some(c.get_ref().clone()),
        Some(c) => {
            err(c.span(), "client_id", "must not be empty".into());
            None
        }
        None => {
            err(
                span.clone(),
                "client_id",
                "the gateway's client id is required".into(),
            );
            None
        }
    };
    let secret = match (&raw.client_secret, &raw.client_secret_env) {
        (Some(_), Some(env)) => {
            err(
                env.span(),
                "client_secret_env",
                "set either `client_secret` or `client_secret_env`, not both".into(),
            );
            None
        }
        (Some(s), None) => Some(s.get_ref().clone()),
        (None, Some(env)) => match std::env::var(env.get_ref()) {
            Ok(v) if !v.is_empty() => Some(v),
            Ok(_) => {
                err(
                    env.span(),
                    "client_secret_env",
                    format!("environment variable {} is empty", env.get_ref()),
                );
                None
            }
            Err(_) => {
                err(
                    env.span(),
                    "client_secret_env",
                    format!(
                        "environment variable {} is not set (or not UTF-8)",
                        env.get_ref()
                    ),
                );
                None
            }
        },
        (None, None) => {
            err(
                span.clone(),
                "client_secret_env",
                "the client secret is required: `client_secret_env` (recommended) or \
                 `client_secret`"
                    .into(),
            );
            None
        }
    };
    let post = match &raw.auth {
        None => false,
        Some(a) => match a.get_ref().as_str() {
            "basic" => false,
            "post" => true,
            other => {
                err(
                    a.span(),
                    "auth",
                    format!("{other:?}: expected \"basic\" or \"post\""),
                );
                false
            }
        },
    };
    let safe_text = |s: &Spanned<String>,
                     field: &str,
                     err: &mut dyn FnMut(Range<usize>, &str, String)| {
        if s.get_ref().is_empty() || !crate::http1::is_safe_header_value(s.get_ref().as_bytes()) {
            err(
                s.span(),
                field,
                "must be non-empty text without control characters".into(),
            );
        }
    };
    if let Some(a) = &raw.audience {
        safe_text(a, "audience", &mut err);
    }
    let mut allowed_clients = Vec::new();
    for c in raw.allowed_clients.iter().flat_map(|l| l.get_ref()) {
        safe_text(c, "allowed_clients", &mut err);
        allowed_clients.push(c.get_ref().clone());
    }
    let mut required_scopes = Vec::new();
    for s in raw.required_scopes.iter().flat_map(|l| l.get_ref()) {
        if s.get_ref().is_empty() || s.get_ref().bytes().any(|b| b <= b' ' || b == 0x7f) {
            err(
                s.span(),
                "required_scopes",
                format!(
                    "{:?} is not a scope (no spaces or control characters)",
                    s.get_ref()
                ),
            );
        } else {
            required_scopes.push(s.get_ref().clone());
        }
    }
    let consumer_claim = match &raw.consumer_claim {
        Some(c) if c.get_ref().is_empty() => {
            err(c.span(), "consumer_claim", "must not be empty".into());
            String::new()
        }
        Some(c) => c.get_ref().clone(),
        None => "sub".to_string(),
    };
    let consumer_header = match &raw.consumer_header {
        Some(h) => {
            let name = header_name(&mut err, h, "consumer_header").unwrap_or_default();
            if matches!(
                name.as_str(),
                "host" | "content-length" | "transfer-encoding" | "connection" | "authorization"
            ) {
                err(
                    h.span(),
                    "consumer_header",
                    format!("the consumer cannot be sent in `{name}`"),
                );
            }
            name
        }
        None => "x-consumer".to_string(),
    };
    let refresh = positive(&mut err, &raw.refresh, "refresh", DEFAULT_REFRESH);
    let cache_ttl = positive(&mut err, &raw.cache_ttl, "cache_ttl", DEFAULT_CACHE_TTL);
    let negative_ttl = positive(
        &mut err,
        &raw.negative_ttl,
        "negative_ttl",
        DEFAULT_NEGATIVE_TTL,
    );
    let timeout = positive(&mut err, &raw.timeout, "timeout", DEFAULT_TIMEOUT);
    let max_entries = int_in(
        &mut err,
        &raw.max_entries,
        "max_entries",
        DEFAULT_MAX_ENTRIES,
        0..=10_000_000,
        "",
    );
    if failed {
        return None;
    }
    let (service, client_id, secret) = (service?, client_id?, secret?);

    let mut head_lines =
        b"content-type: application/x-www-form-urlencoded\r\naccept: application/json\r\n".to_vec();
    let mut body_prefix = Vec::new();
    if post {
        body_prefix.extend_from_slice(b"client_id=");
        form_encode(client_id.as_bytes(), &mut body_prefix);
        body_prefix.extend_from_slice(b"&client_secret=");
        form_encode(secret.as_bytes(), &mut body_prefix);
        body_prefix.push(b'&');
    } else {
        // RFC 6749 §2.3.1: both parts are form-encoded before the Basic encoding.
        let mut pair = Vec::new();
        form_encode(client_id.as_bytes(), &mut pair);
        pair.push(b':');
        form_encode(secret.as_bytes(), &mut pair);
        head_lines.extend_from_slice(b"authorization: Basic ");
        head_lines.extend_from_slice(STANDARD.encode(&pair).as_bytes());
        head_lines.extend_from_slice(b"\r\n");
    }

    // Started last, so a table with errors never spawns a thread.
    let endpoint = match (endpoint, &issuer) {
        (Some(path), _) => Endpoint::Static(path.into_bytes().into()),
        (None, Some(iss)) => match discovery.get_or_start(iss, refresh, service.origins.clone()) {
            Ok(d) => Endpoint::Discovered(d),
            Err(why) => {
                fail(span, "issuer", why);
                return None;
            }
        },
        (None, None) => return None,
    };
    let origins: Vec<String> = service.origins.iter().map(|o| o.to_string()).collect();
    let where_to = match &endpoint {
        Endpoint::Static(p) => p.to_vec(),
        Endpoint::Discovered(d) => d.issuer().as_bytes().to_vec(),
    };
    let id = verdict_identity(&[
        origins.join(" ").as_bytes(),
        &where_to,
        &head_lines,
        &body_prefix,
        raw.audience
            .as_ref()
            .map_or(&b""[..], |a| a.get_ref().as_bytes()),
        issuer.as_deref().unwrap_or("").as_bytes(),
        consumer_claim.as_bytes(),
        allowed_clients.join("\n").as_bytes(),
    ]);
    Some(Introspect {
        id,
        upstream: service.index,
        endpoint,
        head_lines: head_lines.into(),
        body_prefix: body_prefix.into(),
        audience: raw.audience.as_ref().map(|a| a.get_ref().clone()),
        issuer,
        required_scopes,
        allowed_clients,
        consumer_claim,
        consumer_header: consumer_header.into_bytes().into(),
        forward_token: raw.forward_token.as_ref().is_none_or(|f| *f.get_ref()),
        cache_ttl,
        negative_ttl,
        max_entries,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str) -> Option<ServiceUpstream> {
        (name == "idp" || name == "h2").then(|| ServiceUpstream {
            index: 3,
            http2: name == "h2",
            origins: vec![crate::oidc::target_origin("127.0.0.1:9", false).unwrap()],
        })
    }

    fn build(src: &str) -> Result<Introspect, Vec<String>> {
        let raw: RawIntrospect = toml::from_str(src).unwrap();
        let mut errs = Vec::new();
        let fetchers = DiscoveryFetchers::default();
        let got = compile(&raw, 0..1, &up, &fetchers, &mut |_, f, m| {
            errs.push(format!("{f}: {m}"))
        });
        match got {
            Some(p) if errs.is_empty() => Ok(p),
            _ => Err(errs),
        }
    }

    #[test]
    fn basic_credentials_are_form_encoded_then_base64() {
        let p = build(
            "upstream = \"idp\"\nendpoint = \"/introspect\"\nclient_id = \"gw y\"\n\
             client_secret = \"s:e&c\"\n",
        )
        .unwrap();
        let head = String::from_utf8(p.head_lines.to_vec()).unwrap();
        let want = STANDARD.encode("gw%20y:s%3Ae%26c");
        assert!(
            head.contains(&format!("authorization: Basic {want}\r\n")),
            "{head}"
        );
        assert!(p.body_prefix.is_empty());
        assert!(!format!("{p:?}").contains("s:e&c"));
    }

    #[test]
    fn post_credentials_go_in_the_body() {
        let p = build(
            "upstream = \"idp\"\nendpoint = \"/i\"\nclient_id = \"gw\"\nclient_secret = \"s\"\n\
             auth = \"post\"\n",
        )
        .unwrap();
        assert_eq!(&*p.body_prefix, b"client_id=gw&client_secret=s&");
        assert!(!String::from_utf8_lossy(&p.head_lines).contains("authorization"));
    }

    #[test]
    fn bad_tables_name_their_fields() {
        let e = build("upstream = \"nope\"\nclient_id = \"\"\nauth = \"jwt\"\n").unwrap_err();
        let all = e.join("\n");
        for f in [
            "upstream: no upstream",
            "endpoint: set",
            "client_id: must",
            "auth: \"jwt\"",
            "client_secret_env: the client secret",
        ] {
            assert!(all.contains(f), "{f} missing in {all}");
        }
        let e = build(
            "upstream = \"idp\"\nendpoint = \"introspect\"\nclient_id = \"a\"\n\
             client_secret = \"b\"\nissuer = \"http://idp.test\"\n",
        )
        .unwrap_err()
        .join("\n");
        assert!(e.contains("endpoint: \"introspect\" is not a path"), "{e}");
        assert!(e.contains("issuer: \"http://idp.test\""), "{e}");
        let e = build(
            "upstream = \"h2\"\nendpoint = \"/i\"\nclient_id = \"a\"\nclient_secret = \"b\"\n",
        )
        .unwrap_err()
        .join("\n");
        assert!(e.contains("HTTP/1.1"), "{e}");
    }
}
