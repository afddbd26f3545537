//! The `jwt` policy's config table (`RawJwt`) and `compile`, which validates it into a
//! `JwtPolicy`.
//!
//! Runs on the control thread: reading key files and environment variables is fine here.
//! Invariants: `none` is refused as an algorithm; every allowed algorithm has a key kind that
//! can verify it (unless keys come from a JWKS URL); header names are valid, lowercase and never
//! framing headers; a JWKS fetcher is started only for a table that compiled cleanly, and an
//! unchanged URL reuses the running fetcher.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;

use super::alg::{Alg, AlgSet, Key, KeyKind, KeyMaterial, ALL_ALGS};
use super::jwks::JwksFetchers;
use super::keys::{parse_jwks, parse_pem_public_key};
use super::policy::JwtPolicy;
use crate::config::errors::{header_name, positive, Fail, Report};
use crate::config::units::RawDuration;

/// `[policies.NAME] jwt = { ... }`. Field errors are reported relative to this table.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// Allowed `alg` values. Default: every algorithm the configured keys can verify.
    #[schemars(with = "Option<Vec<String>>")]
    pub algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    /// HMAC secret (UTF-8 bytes).
    #[schemars(with = "Option<String>")]
    pub secret: Option<Spanned<String>>,
    /// Name of an environment variable holding the HMAC secret.
    #[schemars(with = "Option<String>")]
    pub secret_env: Option<Spanned<String>>,
    /// PEM public key text (`PUBLIC KEY` or `RSA PUBLIC KEY`).
    #[schemars(with = "Option<String>")]
    pub public_key: Option<Spanned<String>>,
    /// Path to a PEM public key, relative to the config file.
    #[schemars(with = "Option<String>")]
    pub public_key_file: Option<Spanned<String>>,
    /// Path to a JWK Set file, relative to the config file.
    #[schemars(with = "Option<String>")]
    pub jwks_file: Option<Spanned<String>>,
    /// JWK Set URL, fetched off the workers.
    #[schemars(with = "Option<String>")]
    pub jwks_url: Option<Spanned<String>>,
    /// Scheduled JWKS refresh interval (default 5m).
    #[schemars(with = "Option<RawDuration>")]
    pub refresh: Option<Spanned<RawDuration>>,
    /// Least time between two JWKS fetches caused by unknown `kid`s (default 10s).
    #[schemars(with = "Option<RawDuration>")]
    pub min_refresh: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<String>")]
    pub issuer: Option<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub issuers: Option<Spanned<Vec<Spanned<String>>>>,
    #[schemars(with = "Option<String>")]
    pub audience: Option<Spanned<String>>,
    #[schemars(with = "Option<Vec<String>>")]
    pub audiences: Option<Spanned<Vec<Spanned<String>>>>,
    /// Clock skew allowed on `exp`/`nbf` (default 30s).
    #[schemars(with = "Option<RawDuration>")]
    pub leeway: Option<Spanned<RawDuration>>,
    /// Claim naming the consumer (default `sub`).
    #[schemars(with = "Option<String>")]
    pub consumer_claim: Option<Spanned<String>>,
    /// Claim name → request header sent upstream.
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub claims_to_headers: Option<BTreeMap<String, Spanned<String>>>,
    /// Claim name → exact value the token must carry.
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub required_claims: Option<BTreeMap<String, Spanned<toml::Value>>>,
    /// Request header holding the token (default `authorization`, `Bearer` scheme).
    #[schemars(with = "Option<String>")]
    pub header: Option<Spanned<String>>,
    /// Refuse tokens without an `exp` claim (default true).
    #[schemars(with = "Option<bool>")]
    pub require_exp: Option<Spanned<bool>>,
}

const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(10);
const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Shortest HMAC secret accepted from `secret`/`secret_env`: 256 bits, the HS256 output size
/// (RFC 7518 §3.2 requires a key at least as long as the hash output).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Headers a claim may never set: they frame or route the request.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

static NEXT_POLICY_ID: AtomicU64 = AtomicU64::new(1);

/// The caller's sink, remembering whether anything was reported.
struct Errs<'a, 'b> {
    sink: &'a mut Fail<'b>,
    failed: bool,
}

impl Errs<'_, '_> {
    fn at(&mut self, span: Range<usize>, field: &str, message: impl Into<String>) {
        self.failed = true;
        (self.sink)(span, field, message.into());
    }
}

impl Report for Errs<'_, '_> {
    fn report(&mut self, span: Range<usize>, field: &str, message: String) {
        self.at(span, field, message)
    }
}

/// Where a static key came from, for error messages.
struct SourcedKey {
    key: Key,
    field: &'static str,
    span: Range<usize>,
    /// Keys from a JWKS file may legitimately go unused; single keys may not.
    must_be_usable: bool,
}

/// Compiles a `jwt` table. On any problem calls `err(span, field, message)` — `field` is the
/// path inside the table (`algorithms`, `claims_to_headers.email`; empty for the table as a
/// whole, reported at `table_span`) — and returns `None`. Reads key files relative to
/// `base_dir`. A `jwks_url` gets its fetcher from `fetchers`, reusing a running one.
pub fn compile(
    raw: &RawJwt,
    table_span: Range<usize>,
    base_dir: &Path,
    fetchers: &JwksFetchers,
    err: &mut Fail<'_>,
) -> Option<Arc<JwtPolicy>> {
    let mut errs = Errs {
        sink: err,
        failed: false,
    };

    let keys = static_keys(raw, base_dir, &mut errs);
    let jwks_url = raw.jwks_url.as_ref().and_then(|u| jwks_url(u, &mut errs));
    // No key source but an issuer: the keys come from the issuer's discovery document.
    let discover = discovery_issuer(raw, &mut errs);
    let remote = jwks_url.is_some() || discover.is_some();
    if keys.is_empty() && !remote && !errs.failed {
        errs.at(
            table_span.clone(),
            "",
            "jwt needs a key: set one of secret, secret_env, public_key, public_key_file, \
             jwks_file or jwks_url (or only `issuer`, for OIDC discovery)",
        );
    }
    let (refresh, min_refresh) = refresh_settings(raw, remote, &mut errs);
    let algorithms = algorithms(raw, &keys, remote, &mut errs);
    let issuers = one_or_many(&raw.issuer, &raw.issuers, "issuer", "issuers", &mut errs);
    let audiences = one_or_many(
        &raw.audience,
        &raw.audiences,
        "audience",
        "audiences",
        &mut errs,
    );
    let leeway = raw
        .leeway
        .as_ref()
        .map_or(DEFAULT_LEEWAY_SECS, |l| l.get_ref().0.as_secs());
    let consumer_claim = match &raw.consumer_claim {
        Some(c) if c.get_ref().is_empty() => {
            errs.at(c.span(), "consumer_claim", "must not be empty");
            String::new()
        }
        Some(c) => c.get_ref().clone(),
        None => "sub".to_string(),
    };
    let claims_to_headers = claims_to_headers(raw, &mut errs);
    let required_claims = required_claims(raw, &mut errs);
    let header = match &raw.header {
        Some(h) => header_name(&mut errs, h, "header").unwrap_or_default(),
        None => "authorization".to_string(),
    };

    if errs.failed {
        return None;
    }
    // Started last, so a table with errors never spawns a thread.
    let remote = match (&jwks_url, &raw.jwks_url, &discover) {
        (Some(url), Some(spanned), _) => {
            match fetchers.get_or_start(url, refresh, min_refresh, false) {
                Ok(src) => Some(src),
                Err(why) => {
                    errs.at(spanned.span(), "jwks_url", why);
                    return None;
                }
            }
        }
        (_, _, Some((issuer, span))) => {
            match fetchers.get_or_start(issuer, refresh, min_refresh, true) {
                Ok(src) => Some(src),
                Err(why) => {
                    errs.at(span.clone(), "issuer", why);
                    return None;
                }
            }
        }
        _ => None,
    };
    Some(Arc::new(JwtPolicy {
        id: NEXT_POLICY_ID.fetch_add(1, Ordering::Relaxed),
        bearer_only: header == "authorization",
        header,
        algorithms,
        static_keys: keys.into_iter().map(|k| k.key).collect(),
        // HMAC keys from a JWKS document only when `algorithms` names an HMAC one: a static
        // `secret` beside a `jwks_url` must not make a published `oct` key a signing key.
        remote_hmac: raw.algorithms.as_ref().is_some_and(|l| {
            l.get_ref().iter().any(|n| {
                Alg::from_name(n.get_ref().as_bytes())
                    .is_some_and(|a| a.key_kind() == KeyKind::Hmac)
            })
        }),
        remote,
        issuers,
        audiences,
        leeway,
        consumer_claim,
        claims_to_headers,
        required_claims,
        require_exp: raw.require_exp.as_ref().is_none_or(|r| *r.get_ref()),
    }))
}

/// `jwks_url`: an http(s) URL with a host, over https unless the host is loopback.
fn jwks_url(u: &Spanned<String>, errs: &mut Errs) -> Option<String> {
    let valid = u
        .get_ref()
        .parse::<ureq::http::Uri>()
        .ok()
        .is_some_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some()
        });
    if !valid {
        errs.at(
            u.span(),
            "jwks_url",
            format!("{:?} is not an http:// or https:// URL", u.get_ref()),
        );
        return None;
    }
    if let Err(why) = jwks_url_transport(u.get_ref()) {
        errs.at(u.span(), "jwks_url", why);
        return None;
    }
    Some(u.get_ref().clone())
}

/// The issuer to discover keys from: `issuer` set and no key source at all (no secret, public
/// key, JWKS file or URL). It must be https (or http to a loopback host) and single (`issuers`
/// names several: which one's keys?).
fn discovery_issuer(raw: &RawJwt, errs: &mut Errs) -> Option<(String, Range<usize>)> {
    let keyless = raw.secret.is_none()
        && raw.secret_env.is_none()
        && raw.public_key.is_none()
        && raw.public_key_file.is_none()
        && raw.jwks_file.is_none()
        && raw.jwks_url.is_none();
    let issuer = raw.issuer.as_ref().filter(|_| keyless)?;
    if let Some(list) = &raw.issuers {
        errs.at(
            list.span(),
            "issuers",
            "OIDC discovery (`issuer` without keys) reads one issuer: drop `issuers`",
        );
        return None;
    }
    match crate::oidc::check_transport(issuer.get_ref()) {
        Ok(()) => Some((issuer.get_ref().clone(), issuer.span())),
        Err(why) => {
            errs.at(issuer.span(), "issuer", why);
            None
        }
    }
}

/// `refresh` and `min_refresh`: non-zero, and only meaningful with a `jwks_url`.
fn refresh_settings(raw: &RawJwt, remote: bool, errs: &mut Errs) -> (Duration, Duration) {
    let refresh = positive(errs, &raw.refresh, "refresh", DEFAULT_REFRESH);
    let min_refresh = positive(errs, &raw.min_refresh, "min_refresh", DEFAULT_MIN_REFRESH);
    if !remote {
        for (field, v) in [("refresh", &raw.refresh), ("min_refresh", &raw.min_refresh)] {
            if let Some(v) = v {
                errs.at(
                    v.span(),
                    field,
                    format!("`{field}` only applies with `jwks_url` (or discovery)"),
                );
            }
        }
    }
    (refresh, min_refresh)
}

/// `claims_to_headers`: claim → a valid header name that frames nothing and no other claim
/// sets.
fn claims_to_headers(raw: &RawJwt, errs: &mut Errs) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (claim, header) in raw.claims_to_headers.iter().flatten() {
        let field = format!("claims_to_headers.{claim}");
        if claim.is_empty() {
            errs.at(header.span(), &field, "claim name must not be empty");
            continue;
        }
        let Some(name) = header_name(errs, header, &field) else {
            continue;
        };
        if FORBIDDEN_HEADERS.contains(&name.as_str()) {
            errs.at(
                header.span(),
                &field,
                format!("a claim cannot set the `{name}` header"),
            );
        } else if out.iter().any(|(_, h)| *h == name) {
            errs.at(
                header.span(),
                &field,
                format!("header `{name}` is already set from another claim"),
            );
        } else {
            out.push((claim.clone(), name));
        }
    }
    out
}

/// `required_claims`: claim → the JSON value it must equal.
fn required_claims(raw: &RawJwt, errs: &mut Errs) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (claim, value) in raw.required_claims.iter().flatten() {
        let field = format!("required_claims.{claim}");
        match toml_to_json(value.get_ref()) {
            Ok(v) => out.push((claim.clone(), v)),
            Err(why) => errs.at(value.span(), &field, why),
        }
    }
    out
}

/// Keys fetched over plain `http://` can be swapped by anyone on the path, who could then sign
/// any token: `http://` is accepted only for a loopback host (127.0.0.0/8, ::1, localhost).
fn jwks_url_transport(url: &str) -> Result<(), String> {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    if uri.scheme_str() != Some("http") {
        return Ok(());
    }
    let host = uri.host().unwrap_or_default();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "{url:?}: keys fetched over http:// could be replaced in transit; use https:// \
             (http:// is allowed only for a loopback host: 127.0.0.0/8, ::1, localhost)"
        ))
    }
}

/// The HMAC secret from `field`, refused when shorter than `MIN_HMAC_SECRET_BYTES`.
fn hmac_secret(secret: &[u8], field: &str) -> Result<KeyMaterial, String> {
    if !secret.is_empty() && secret.len() < MIN_HMAC_SECRET_BYTES {
        return Err(format!(
            "the HMAC secret in `{field}` is {} bytes; use at least {MIN_HMAC_SECRET_BYTES} \
             random bytes (RFC 7518 §3.2), e.g. `openssl rand -base64 32`",
            secret.len()
        ));
    }
    KeyMaterial::hmac(secret)
}

/// Keys from `secret`/`secret_env`, `public_key`/`public_key_file` and `jwks_file`.
fn static_keys(raw: &RawJwt, base_dir: &Path, errs: &mut Errs) -> Vec<SourcedKey> {
    let mut out = Vec::new();
    let mut single = |material: Result<KeyMaterial, String>,
                      field: &'static str,
                      span: Range<usize>,
                      errs: &mut Errs| match material {
        Ok(m) => out.push(SourcedKey {
            key: Key::new(m),
            field,
            span,
            must_be_usable: true,
        }),
        Err(why) => errs.at(span, field, why),
    };

    match (&raw.secret, &raw.secret_env) {
        (Some(_), Some(env)) => errs.at(
            env.span(),
            "secret_env",
            "set either `secret` or `secret_env`, not both",
        ),
        (Some(s), None) => single(
            hmac_secret(s.get_ref().as_bytes(), "secret"),
            "secret",
            s.span(),
            errs,
        ),
        (None, Some(env)) => {
            let material = match std::env::var(env.get_ref()) {
                Ok(v) if !v.is_empty() => hmac_secret(v.as_bytes(), "secret_env"),
                Ok(_) => Err(format!("environment variable {} is empty", env.get_ref())),
                Err(_) => Err(format!(
                    "environment variable {} is not set (or not UTF-8)",
                    env.get_ref()
                )),
            };
            single(material, "secret_env", env.span(), errs);
        }
        (None, None) => {}
    }

    match (&raw.public_key, &raw.public_key_file) {
        (Some(_), Some(f)) => errs.at(
            f.span(),
            "public_key_file",
            "set either `public_key` or `public_key_file`, not both",
        ),
        (Some(pem), None) => single(
            parse_pem_public_key(pem.get_ref()),
            "public_key",
            pem.span(),
            errs,
        ),
        (None, Some(f)) => {
            let path = base_dir.join(f.get_ref());
            let max = crate::bounded_file::MAX_SMALL_BYTES;
            let material = crate::bounded_file::read_to_string(&path, max)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|text| parse_pem_public_key(&text));
            single(material, "public_key_file", f.span(), errs);
        }
        (None, None) => {}
    }

    if let Some(f) = &raw.jwks_file {
        let path = base_dir.join(f.get_ref());
        match crate::bounded_file::read(&path, crate::bounded_file::MAX_SMALL_BYTES)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|bytes| parse_jwks(&bytes))
        {
            Ok(set) => out.extend(set.keys.into_iter().map(|key| SourcedKey {
                key,
                field: "jwks_file",
                span: f.span(),
                must_be_usable: false,
            })),
            Err(why) => errs.at(f.span(), "jwks_file", why),
        }
    }
    out
}

/// The allow-list: configured (validated against the keys) or derived from the keys.
fn algorithms(raw: &RawJwt, keys: &[SourcedKey], remote: bool, errs: &mut Errs) -> AlgSet {
    let Some(list) = &raw.algorithms else {
        let mut set = AlgSet::default();
        for k in keys {
            match k.key.alg {
                Some(a) => set.insert(a),
                None => AlgSet::of_kind(k.key.material.kind())
                    .iter()
                    .for_each(|a| set.insert(a)),
            }
        }
        if remote {
            // A JWKS URL may hold any asymmetric key; HMAC from a URL must be asked for.
            ALL_ALGS
                .into_iter()
                .filter(|a| a.key_kind() != KeyKind::Hmac)
                .for_each(|a| set.insert(a));
        }
        return set;
    };
    let mut set = AlgSet::default();
    let mut spans: Vec<(Alg, Range<usize>)> = Vec::new();
    for name in list.get_ref() {
        let n = name.get_ref();
        if n.eq_ignore_ascii_case("none") {
            errs.at(
                name.span(),
                "algorithms",
                "`none` is never accepted: it would let unsigned tokens through",
            );
            continue;
        }
        match Alg::from_name(n.as_bytes()) {
            Some(a) => {
                set.insert(a);
                spans.push((a, name.span()));
            }
            None => {
                let hint = ALL_ALGS
                    .into_iter()
                    .find(|a| a.name().eq_ignore_ascii_case(n))
                    .map(|a| format!(" (names are case-sensitive: did you mean {a}?)"))
                    .unwrap_or_default();
                let all: Vec<_> = ALL_ALGS.iter().map(|a| a.name()).collect();
                errs.at(
                    name.span(),
                    "algorithms",
                    format!(
                        "unknown algorithm {n:?}{hint}; supported: {}",
                        all.join(", ")
                    ),
                );
            }
        }
    }
    if list.get_ref().is_empty() {
        errs.at(
            list.span(),
            "algorithms",
            "must list at least one algorithm",
        );
    }
    if !remote {
        for (alg, span) in &spans {
            if !keys.iter().any(|k| k.key.accepts(*alg)) {
                errs.at(
                    span.clone(),
                    "algorithms",
                    format!(
                        "{alg} is allowed but no configured key can verify it (it needs an {})",
                        alg.key_kind().describe()
                    ),
                );
            }
        }
    }
    for k in keys.iter().filter(|k| k.must_be_usable) {
        if !set.iter().any(|a| k.key.accepts(a)) && !spans.is_empty() {
            let names: Vec<_> = set.iter().map(|a| a.name()).collect();
            errs.at(
                k.span.clone(),
                k.field,
                format!(
                    "this {} can verify none of the allowed algorithms ({})",
                    k.key.material.kind().describe(),
                    names.join(", ")
                ),
            );
        }
    }
    set
}

fn one_or_many(
    one: &Option<Spanned<String>>,
    many: &Option<Spanned<Vec<Spanned<String>>>>,
    one_field: &str,
    many_field: &str,
    errs: &mut Errs,
) -> Vec<String> {
    let mut out = Vec::new();
    if let (Some(_), Some(m)) = (one, many) {
        errs.at(
            m.span(),
            many_field,
            format!("set either `{one_field}` or `{many_field}`, not both"),
        );
        return out;
    }
    let items: Vec<&Spanned<String>> = match (one, many) {
        (Some(o), _) => vec![o],
        (None, Some(m)) => {
            if m.get_ref().is_empty() {
                errs.at(m.span(), many_field, "must not be empty (omit it instead)");
            }
            m.get_ref().iter().collect()
        }
        (None, None) => Vec::new(),
    };
    for item in items {
        if item.get_ref().is_empty() {
            let field = if one.is_some() { one_field } else { many_field };
            errs.at(item.span(), field, "must not be empty");
        } else {
            out.push(item.get_ref().clone());
        }
    }
    out
}

fn toml_to_json(v: &toml::Value) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or("NaN and infinity cannot appear in a JWT")?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(_) => {
            return Err("dates are not JWT claim values; use a number (unix seconds)".into())
        }
        toml::Value::Array(items) => {
            Value::Array(items.iter().map(toml_to_json).collect::<Result<_, _>>()?)
        }
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| Ok((k.clone(), toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_jwks_only_on_loopback() {
        for ok in [
            "https://idp.example.com/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://127.9.9.9/jwks",
            "http://[::1]:9000/jwks",
            "http://localhost/jwks",
            "http://LOCALHOST:1/jwks",
        ] {
            assert!(jwks_url_transport(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://[::2]/jwks",
            "http://localhost.evil.com/jwks",
            "http://128.0.0.1/jwks",
        ] {
            assert!(jwks_url_transport(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hmac_secrets_need_32_bytes() {
        assert!(hmac_secret(&[b'k'; 31], "secret").is_err());
        assert!(hmac_secret(&[b'k'; 32], "secret").is_ok());
        assert!(hmac_secret(b"", "secret").is_err(), "empty");
    }
}
