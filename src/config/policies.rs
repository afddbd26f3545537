//! Compiles the policy sections — `[consumers.*]`, `[api_keys]`, `[policies.*]`,
//! `[[defaults]]` and `server.trusted_proxies` — into `policy::Policies`, and resolves each
//! route's effective policy list (covering defaults first, then the route's own, in order).
//! A default that covers only part of a route (see `scope`) makes the route carry one list per
//! subset of such defaults, chosen per request; `unused_defaults` reports a default that no
//! route can ever serve a request under.
//!
//! Stateful pieces that must survive a reload come from `Runtime`: rate limiters with an
//! unchanged identity keep their buckets (no fresh burst on SIGHUP), and JWKS fetchers keep
//! running for an unchanged URL.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;

use super::compile::Errors;
use super::raw::{RawConfig, RawDefaults};
use super::scope::{Coverage, GatedPolicies, Scope, MAX_GATED};
use crate::policy::pipeline::{
    ApiKeyCheck, Authorize, Consumer, JwtCheck, KeySource, LimitKey, NamedPolicy, Policies, Policy,
    PolicyId, RateLimit,
};
use crate::ratelimit::LimitSpec;
use crate::route::RouteSpec;

/// Long-lived state config compiles draw on (owned by the control thread's `Shared`).
#[derive(Default)]
pub struct Runtime {
    pub limiters: crate::ratelimit::LimiterRegistry,
    pub jwks: crate::jwt::JwksFetchers,
}

/// Default cap on keys tracked per rate-limit policy.
const DEFAULT_MAX_KEYS: usize = 1_000_000;

fn header_name(errs: &mut Errors, s: &Spanned<String>, field: &str) -> Option<String> {
    let name = s.get_ref().to_ascii_lowercase();
    if name.is_empty() || !name.bytes().all(crate::http1::is_tchar) {
        errs.at(
            s.span(),
            field,
            format!("{:?} is not a valid header name", s.get_ref()),
        );
        return None;
    }
    Some(name)
}

/// What `compile_policies` produced: the policies, their ids by name, and the identities of
/// the rate limiters they use (the registry keeps only those once the whole config compiled).
pub(super) struct CompiledPolicies {
    pub policies: Policies,
    pub ids: HashMap<String, PolicyId>,
    pub live_limiters: Vec<String>,
}

/// Compiles the policy sections.
pub(super) fn compile_policies(
    raw: &RawConfig,
    file: &Path,
    rt: &Runtime,
    errs: &mut Errors,
) -> CompiledPolicies {
    let base_dir = file.parent().unwrap_or(Path::new("."));
    let mut ps = Policies::default();

    for (name, c) in &raw.consumers {
        let n = name.get_ref();
        if n.is_empty() {
            errs.at(name.span(), "consumers", "consumer name must not be empty");
            continue;
        }
        // Names, groups and metadata reach upstream headers (`${consumer...}`): same rule as
        // every derived header value.
        let unsafe_text = |v: &str| !crate::http1::is_safe_header_value(v.as_bytes());
        let rule = "not a safe header value: no control characters, no leading or trailing \
                    blanks, at most 4096 bytes";
        if unsafe_text(n) {
            errs.at(
                name.span(),
                format!("consumers.{n:?}"),
                format!("name is {rule}"),
            );
        }
        for (i, g) in c.groups.iter().flatten().enumerate() {
            if unsafe_text(g) {
                errs.at(
                    name.span(),
                    format!("consumers.{}.groups[{i}]", n.escape_debug()),
                    format!("{g:?} is {rule}"),
                );
            }
        }
        for (k, v) in c.metadata.iter().flatten() {
            if unsafe_text(v) {
                errs.at(
                    name.span(),
                    format!(
                        "consumers.{}.metadata.{}",
                        n.escape_debug(),
                        k.escape_debug()
                    ),
                    format!("{v:?} is {rule}"),
                );
            }
        }
        ps.consumers.insert(
            n.clone(),
            Consumer {
                name: Arc::from(n.as_str()),
                groups: c.groups.clone().unwrap_or_default(),
                metadata: c.metadata.clone().unwrap_or_default().into_iter().collect(),
            },
        );
    }

    if let Some(a) = &raw.api_keys {
        let mut file_errs = Vec::new();
        ps.keys = crate::apikey::load_store(
            a,
            base_dir,
            &mut |span, field, msg| errs.at(span, format!("api_keys.{field}"), msg),
            &mut file_errs,
        );
        errs.list.extend(file_errs);
    }

    if let Some(list) = &raw.server.trusted_proxies {
        let mut cidrs = Vec::new();
        for (i, c) in list.iter().enumerate() {
            match c.get_ref().parse::<crate::policy::ip::Cidr>() {
                Ok(cidr) => cidrs.push(cidr),
                Err(e) => errs.at(
                    c.span(),
                    format!("server.trusted_proxies[{i}]"),
                    e.to_string(),
                ),
            }
        }
        ps.trusted_proxies = Some(cidrs.into_iter().collect());
    }

    let mut ids = HashMap::new();
    let mut live_limiters = Vec::new();
    for (name, p) in &raw.policies {
        let n = name.get_ref().clone();
        let field = |f: &str| format!("policies.{n}.{f}");
        let mut kinds = 0;
        macro_rules! err_cb {
            ($kind:literal) => {
                &mut |span: std::ops::Range<usize>, f: &str, m: String| {
                    errs.at(span, format!("policies.{n}.{}.{f}", $kind), m)
                }
            };
        }
        let mut compiled: Option<Policy> = None;
        if let Some(k) = &p.api_key {
            kinds += 1;
            compiled = compile_api_key(k.get_ref(), &field("api_key"), raw, k.span(), errs)
                .map(Policy::ApiKey);
        }
        if let Some(j) = &p.jwt {
            kinds += 1;
            let consumer_header = "x-consumer".as_bytes().into();
            compiled = crate::jwt::compile(
                j.get_ref(),
                j.span(),
                base_dir,
                &rt.jwks,
                &mut |span, f: &str, m| {
                    let at = if f.is_empty() {
                        format!("policies.{n}.jwt")
                    } else {
                        format!("policies.{n}.jwt.{f}")
                    };
                    errs.at(span, at, m)
                },
            )
            .map(|jwt| {
                Policy::Jwt(JwtCheck {
                    jwt,
                    consumer_header,
                })
            });
        }
        if let Some(a) = &p.authorize {
            kinds += 1;
            compiled = Some(Policy::Authorize(compile_authorize(
                a.get_ref(),
                raw,
                &field("authorize"),
                errs,
            )));
        }
        if let Some(i) = &p.ip {
            kinds += 1;
            compiled = crate::policy::ip::compile(i.get_ref(), err_cb!("ip")).map(Policy::Ip);
        }
        if let Some(r) = &p.rate_limit {
            kinds += 1;
            compiled = compile_rate_limit(
                &n,
                r.get_ref(),
                rt,
                &field("rate_limit"),
                errs,
                &mut live_limiters,
            )
            .map(Policy::RateLimit);
        }
        if let Some(c) = &p.cors {
            kinds += 1;
            compiled = crate::policy::cors::compile(c.get_ref(), err_cb!("cors")).map(Policy::Cors);
        }
        if let Some(t) = &p.transform {
            kinds += 1;
            compiled = crate::policy::transform::compile(t.get_ref(), err_cb!("transform"))
                .map(Policy::Transform);
        }
        if kinds != 1 {
            errs.at(
                name.span(),
                format!("policies.{n}"),
                "a policy needs exactly one of: api_key, jwt, authorize, ip, rate_limit, cors, transform",
            );
            continue;
        }
        if let Some(policy) = compiled {
            ids.insert(n.clone(), PolicyId(ps.list.len() as u32));
            ps.list.push(NamedPolicy { name: n, policy });
        }
    }
    ps.secret_query = secret_query_names(&ps.list);
    CompiledPolicies {
        policies: ps,
        ids,
        live_limiters,
    }
}

/// The query parameter names any `api_key` policy reads a key from (redacted in logs).
fn secret_query_names(list: &[NamedPolicy]) -> Vec<Box<[u8]>> {
    let mut names: Vec<Box<[u8]>> = Vec::new();
    for p in list {
        if let Policy::ApiKey(k) = &p.policy {
            for src in &k.sources {
                if let KeySource::Query(q) = src {
                    if !names.iter().any(|n| **n == **q) {
                        names.push(q.as_slice().into());
                    }
                }
            }
        }
    }
    names
}

fn compile_api_key(
    k: &super::raw::RawApiKeyPolicy,
    field: &str,
    raw: &RawConfig,
    span: std::ops::Range<usize>,
    errs: &mut Errors,
) -> Option<ApiKeyCheck> {
    if raw.api_keys.is_none() {
        errs.at(
            span,
            field,
            "an api_key policy needs an [api_keys] section naming the keys file",
        );
        return None;
    }
    let mut sources = Vec::new();
    match &k.headers {
        None => {
            sources.push(KeySource::Bearer);
            sources.push(KeySource::Header("x-api-key".into()));
        }
        Some(hs) => {
            for (i, h) in hs.iter().enumerate() {
                let name = header_name(errs, h, &format!("{field}.headers[{i}]"))?;
                sources.push(if name == "authorization" {
                    KeySource::Bearer
                } else {
                    KeySource::Header(name)
                });
            }
        }
    }
    if let Some(q) = &k.query {
        if q.get_ref().is_empty() {
            errs.at(q.span(), format!("{field}.query"), "must not be empty");
            return None;
        }
        sources.push(KeySource::Query(q.get_ref().as_bytes().to_vec()));
    }
    let consumer_header = match &k.consumer_header {
        None => "x-consumer".to_string(),
        Some(h) => header_name(errs, h, &format!("{field}.consumer_header"))?,
    };
    Some(ApiKeyCheck {
        sources,
        consumer_header: consumer_header.into_bytes().into(),
    })
}

fn compile_authorize(
    a: &super::raw::RawAuthorize,
    raw: &RawConfig,
    field: &str,
    errs: &mut Errors,
) -> Authorize {
    let list = |v: &Option<Vec<Spanned<String>>>| -> Vec<String> {
        v.iter().flatten().map(|s| s.get_ref().clone()).collect()
    };
    for (i, c) in a.consumers.iter().flatten().enumerate() {
        if !raw.consumers.keys().any(|k| k.get_ref() == c.get_ref()) {
            errs.at(
                c.span(),
                format!("{field}.consumers[{i}]"),
                format!(
                    "unknown consumer {:?} (define it under [consumers])",
                    c.get_ref()
                ),
            );
        }
    }
    Authorize {
        consumers: list(&a.consumers),
        groups: list(&a.groups),
        scopes: list(&a.scopes),
        claims: a
            .claims
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect(),
    }
}

fn compile_rate_limit(
    policy: &str,
    r: &super::raw::RawRateLimit,
    rt: &Runtime,
    field: &str,
    errs: &mut Errors,
    live: &mut Vec<String>,
) -> Option<RateLimit> {
    let k = r.key.get_ref();
    let key = match k.as_str() {
        "consumer" => LimitKey::Consumer,
        "api_key" => LimitKey::ApiKey,
        "ip" => LimitKey::Ip,
        "route" => LimitKey::Route,
        other => match other.strip_prefix("header:") {
            Some(h) if !h.is_empty() && h.bytes().all(crate::http1::is_tchar) => {
                LimitKey::Header(h.to_ascii_lowercase())
            }
            _ => {
                errs.at(
                    r.key.span(),
                    format!("{field}.key"),
                    format!("unknown key {k:?}: use consumer, api_key, ip, route or header:NAME"),
                );
                return None;
            }
        },
    };
    let max_keys = match &r.max_keys {
        None => DEFAULT_MAX_KEYS,
        Some(m) => match usize::try_from(*m.get_ref()) {
            Ok(n) if (1..=100_000_000).contains(&n) => n,
            _ => {
                errs.at(
                    m.span(),
                    format!("{field}.max_keys"),
                    "must be between 1 and 100000000",
                );
                return None;
            }
        },
    };
    let limits = r.limits.get_ref();
    if limits.is_empty() || limits.len() > 4 {
        errs.at(
            r.limits.span(),
            format!("{field}.limits"),
            "give between 1 and 4 limits",
        );
        return None;
    }
    let mut specs = Vec::new();
    let mut limiters = Vec::new();
    for (i, l) in limits.iter().enumerate() {
        let f = |x: &str| format!("{field}.limits[{i}].{x}");
        let requests = match u64::try_from(*l.requests.get_ref()) {
            Ok(n) if n >= 1 => n,
            _ => {
                errs.at(l.requests.span(), f("requests"), "must be at least 1");
                return None;
            }
        };
        let period = l.per.get_ref().0;
        if period.is_zero() {
            errs.at(l.per.span(), f("per"), "must be greater than zero");
            return None;
        }
        let burst = match &l.burst {
            None => 0,
            Some(b) => match u64::try_from(*b.get_ref()) {
                Ok(n) => n,
                Err(_) => {
                    errs.at(b.span(), f("burst"), "cannot be negative");
                    return None;
                }
            },
        };
        let spec = LimitSpec {
            requests,
            period,
            burst,
        };
        // Same policy, key and spec → same limiter (and buckets) across reloads.
        let identity = format!(
            "policy={policy};key={k};limit={requests}/{}ms+{burst};max_keys={max_keys}",
            period.as_millis()
        );
        limiters.push(rt.limiters.get_or_create(&identity, spec, max_keys));
        live.push(identity);
        specs.push(spec);
    }
    Some(RateLimit {
        key,
        limiters,
        specs,
    })
}

/// The scope of a `[[defaults]]` entry.
pub(super) fn default_scope(d: &RawDefaults) -> Scope {
    Scope::new(
        d.prefix.as_ref().map(|p| p.get_ref().as_str()),
        d.host.as_ref().map(|h| h.get_ref().as_str()),
        d.case_insensitive.unwrap_or(false),
    )
}

/// A route's effective policies: the list for requests no partial default covers, the CORS
/// policy, and the per-request lists when some defaults cover only part of the route.
pub(super) type RoutePolicies = (Vec<PolicyId>, Option<PolicyId>, Option<Box<GatedPolicies>>);

/// The route's effective policies: covering defaults in file order, then its own; a name
/// listed twice runs once (first position). CORS is split out (it runs before the loop).
/// A default that covers only part of the route (a catch-all under `prefix = "/api"`) is
/// checked per request: the route gets one list per subset of such defaults. `used[i]` is set
/// when default `i` can apply to this route.
#[allow(clippy::too_many_arguments)]
pub(super) fn route_policies(
    raw: &RawConfig,
    ps: &Policies,
    ids: &HashMap<String, PolicyId>,
    own: Option<&Vec<Spanned<String>>>,
    (spec, route_name): (&RouteSpec, &Spanned<String>),
    field: &str,
    used: &mut [bool],
    errs: &mut Errors,
) -> RoutePolicies {
    let mut coverage = Vec::with_capacity(raw.defaults.len());
    let mut partial: Vec<(usize, Scope)> = Vec::new();
    for (i, d) in raw.defaults.iter().enumerate() {
        let scope = default_scope(d);
        let c = scope.coverage(spec);
        if c != Coverage::Never {
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
        }
        if c == Coverage::Maybe {
            partial.push((i, scope.for_route(spec)));
        }
        coverage.push(c);
    }
    if partial.len() > MAX_GATED {
        errs.at(
            route_name.span(),
            field,
            format!(
                "{} [[defaults]] entries cover only part of this route (at most {MAX_GATED}); \
                 narrow the route or the defaults",
                partial.len()
            ),
        );
        return (Vec::new(), None, None);
    }
    // mask bit j: partial default j covers the request.
    let list_for = |mask: usize| -> Vec<&Spanned<String>> {
        let mut names: Vec<&Spanned<String>> = Vec::new();
        let mut j = 0;
        for (d, c) in raw.defaults.iter().zip(&coverage) {
            let on = match c {
                Coverage::Always => true,
                Coverage::Never => false,
                Coverage::Maybe => {
                    j += 1;
                    mask & (1 << (j - 1)) != 0
                }
            };
            if on {
                names.extend(d.policies.iter());
            }
        }
        names.extend(own.into_iter().flatten());
        names
    };
    // Names are checked once, on the list holding all of them.
    let all = (1usize << partial.len()) - 1;
    let full = resolve(raw, ps, ids, &list_for(all), field, Some(errs));
    if partial.is_empty() {
        return (full.0, full.1, None);
    }
    let lists: Vec<(Vec<PolicyId>, Option<PolicyId>)> = (0..=all)
        .map(|mask| resolve(raw, ps, ids, &list_for(mask), field, None))
        .collect();
    let (base, base_cors) = lists[0].clone();
    let gated = GatedPolicies {
        scopes: partial.into_iter().map(|(_, s)| s).collect(),
        lists,
    };
    (base, base_cors, Some(Box::new(gated)))
}

/// Policy names to ids (first occurrence wins, CORS split out); errors only when `errs` given.
fn resolve(
    raw: &RawConfig,
    ps: &Policies,
    ids: &HashMap<String, PolicyId>,
    names: &[&Spanned<String>],
    field: &str,
    mut errs: Option<&mut Errors>,
) -> (Vec<PolicyId>, Option<PolicyId>) {
    let mut out: Vec<PolicyId> = Vec::new();
    let mut cors = None;
    for (i, n) in names.iter().enumerate() {
        let Some(&id) = ids.get(n.get_ref()) else {
            if raw.policies.keys().any(|k| k.get_ref() == n.get_ref()) {
                continue; // defined but failed to compile: already reported
            }
            if let Some(errs) = errs.as_deref_mut() {
                errs.at(
                    n.span(),
                    format!("{field}.policies[{i}]"),
                    format!("unknown policy {:?}", n.get_ref()),
                );
            }
            continue;
        };
        if out.contains(&id) || cors == Some(id) {
            continue;
        }
        match ps.list.get(id.0 as usize).map(|p| &p.policy) {
            Some(Policy::Cors(_)) => {
                if cors.is_some() {
                    if let Some(errs) = errs.as_deref_mut() {
                        errs.at(
                            n.span(),
                            format!("{field}.policies[{i}]"),
                            "a route can have only one cors policy",
                        );
                    }
                }
                cors = Some(id);
            }
            _ => out.push(id),
        }
    }
    (out, cors)
}

/// Reports every `[[defaults]]` entry that no route can ever serve a request under.
pub(super) fn unused_defaults(raw: &RawConfig, used: &[bool], errs: &mut Errors) {
    for (i, (d, &u)) in raw.defaults.iter().zip(used).enumerate() {
        if u {
            continue;
        }
        let (span, f) = match (&d.prefix, &d.host) {
            (Some(p), _) => (p.span(), "prefix"),
            (None, Some(h)) => (h.span(), "host"),
            (None, None) => (d.policies.first().map_or(0..0, |p| p.span()), "policies"),
        };
        errs.at(
            span,
            format!("defaults[{i}].{f}"),
            format!(
                "this [[defaults]] entry ({}) can never apply: no route serves a request under it",
                default_scope(d).describe()
            ),
        );
    }
}
