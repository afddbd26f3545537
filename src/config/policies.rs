//! Compiles the policy sections — `[consumers.*]`, `[api_keys]`, `[policies.*]` and
//! `server.trusted_proxies` — into `policy::Policies`. This file only dispatches: each policy
//! kind owns its Raw type and `compile` in its own block (`policy::{api_key, authorize, ip,
//! rate_limit, cors, transform, client_cert}`, `jwt`), reporting fields relative to its table; here they are
//! prefixed with `policies.NAME.KIND`. A route's effective list is resolved in `defaults`.
//!
//! Stateful pieces that must survive a reload come from `Runtime`: rate limiters with an
//! unchanged identity keep their buckets (no fresh burst on SIGHUP), and JWKS fetchers keep
//! running for an unchanged URL.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;

use super::errors::Diag;
use super::model::Runtime;
use super::raw::{RawConfig, RawConsumer, RawPolicy};
use crate::policy::pipeline::{
    Consumer, JwtCheck, KeySource, NamedPolicy, Policies, Policy, PolicyId,
};
use crate::policy::{api_key, authorize, client_cert, cors, ip, quota, rate_limit, transform};

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
    redis: Option<&std::sync::Arc<crate::redis::RedisShared>>,
    upstreams: &HashMap<String, crate::config::UpstreamId>,
    errs: &mut Diag,
) -> CompiledPolicies {
    let base_dir = file.parent().unwrap_or(Path::new("."));
    let mut ps = Policies::default();
    for (name, c) in &raw.consumers {
        if let Some(consumer) = compile_consumer(name, c, errs) {
            ps.consumers.insert(name.get_ref().clone(), consumer);
        }
    }
    if let Some(a) = &raw.api_keys {
        let mut file_errs = Vec::new();
        let loaded = crate::apikey::load_store(
            a,
            base_dir,
            &rt.api_keys,
            &mut |span, field, msg| errs.at(span, format!("api_keys.{field}"), msg),
            &mut file_errs,
        );
        if let Some(l) = loaded {
            ps.keys = Some(l.store);
            ps.key_sync = l.sync;
        }
        errs.list.extend(file_errs);
    }
    if let Some(list) = &raw.server.trusted_proxies {
        ps.trusted_proxies = Some(trusted_proxies(list, errs));
    }
    ps.forward_client_cert = raw.server.forward_client_cert.unwrap_or(true);

    let mut ids = HashMap::new();
    let mut live_limiters = Vec::new();
    let cx = PolicyContext {
        raw,
        base_dir,
        rt,
        redis,
        upstreams,
    };
    for (name, p) in &raw.policies {
        let n = name.get_ref();
        // Every kind present compiles (so its errors are reported) before the count check.
        let compiled = compile_policy(n, p, &cx, &mut live_limiters, errs);
        if kinds(p) != 1 {
            errs.at(
                name.span(),
                format!("policies.{n}"),
                "a policy needs exactly one of: api_key, jwt, authorize, ip, rate_limit, quota, \
                 cors, transform, client_cert, cache, compress, forward_auth, introspect, wasm",
            );
            continue;
        }
        if let Some(policy) = compiled {
            ids.insert(n.clone(), PolicyId(ps.list.len() as u32));
            ps.list.push(NamedPolicy {
                name: n.clone(),
                policy,
            });
        }
    }
    ps.secret_query = secret_query_names(&ps.list);
    ps.reads_body = ps.list.iter().any(|p| p.policy.body_bytes() > 0);
    CompiledPolicies {
        policies: ps,
        ids,
        live_limiters,
    }
}

/// One `[consumers.NAME]`: name, groups and metadata reach upstream headers
/// (`${consumer...}`), so they follow the same rule as every derived header value.
fn compile_consumer(name: &Spanned<String>, c: &RawConsumer, errs: &mut Diag) -> Option<Consumer> {
    let n = name.get_ref();
    if n.is_empty() {
        errs.at(name.span(), "consumers", "consumer name must not be empty");
        return None;
    }
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
    Some(Consumer {
        name: Arc::from(n.as_str()),
        groups: c.groups.clone().unwrap_or_default(),
        metadata: c.metadata.clone().unwrap_or_default().into_iter().collect(),
    })
}

/// `server.trusted_proxies`: CIDRs whose `X-Forwarded-For` entries are believed.
fn trusted_proxies(list: &[Spanned<String>], errs: &mut Diag) -> ip::CidrSet {
    let mut cidrs = Vec::new();
    for (i, c) in list.iter().enumerate() {
        match c.get_ref().parse::<ip::Cidr>() {
            Ok(cidr) => cidrs.push(cidr),
            Err(e) => errs.at(
                c.span(),
                format!("server.trusted_proxies[{i}]"),
                e.to_string(),
            ),
        }
    }
    cidrs.into_iter().collect()
}

/// How many kinds one `[policies.NAME]` sets (exactly one is valid).
fn kinds(p: &RawPolicy) -> usize {
    [
        p.api_key.is_some(),
        p.jwt.is_some(),
        p.authorize.is_some(),
        p.ip.is_some(),
        p.rate_limit.is_some(),
        p.quota.is_some(),
        p.cors.is_some(),
        p.transform.is_some(),
        p.client_cert.is_some(),
        p.cache.is_some(),
        p.compress.is_some(),
        p.forward_auth.is_some(),
        p.introspect.is_some(),
        p.wasm.is_some(),
    ]
    .into_iter()
    .filter(|&set| set)
    .count()
}

/// What a policy kind's compile may need besides its own table.
struct PolicyContext<'a> {
    raw: &'a RawConfig,
    /// The config file's directory (key files are relative to it).
    base_dir: &'a Path,
    rt: &'a Runtime,
    /// `[redis]`, for policies with shared state (global limits, quotas).
    redis: Option<&'a std::sync::Arc<crate::redis::RedisShared>>,
    /// Upstream names, for policies that call a service (forward auth, introspection).
    upstreams: &'a HashMap<String, crate::config::UpstreamId>,
}

impl PolicyContext<'_> {
    /// Upstream name → its index, for policies that call a service.
    fn upstream_index(&self) -> impl Fn(&str) -> Option<u32> + '_ {
        |name| self.upstreams.get(name).map(|id| id.0)
    }

    /// What a service policy (introspection) needs of upstream `name`: its index, whether it
    /// speaks HTTP/2, and its targets' origins (a discovered endpoint must be one of them).
    fn service_upstream(&self, name: &str) -> Option<crate::policy::introspect::ServiceUpstream> {
        let index = self.upstreams.get(name)?.0;
        let (_, raw) = self
            .raw
            .upstreams
            .iter()
            .find(|(n, _)| n.get_ref() == name)?;
        use crate::tls::upstream::RawUpstreamTls;
        let https = match raw.tls.as_ref().map(|t| t.get_ref()) {
            Some(RawUpstreamTls::Enabled(on)) => *on,
            Some(RawUpstreamTls::Table(_)) => true,
            None => false,
        };
        let mut origins: Vec<crate::oidc::Origin> = raw
            .targets
            .get_ref()
            .iter()
            .filter_map(|t| crate::oidc::target_origin(t.address.get_ref(), https))
            .collect();
        // With `tls.server_name`, the certificate's name on the targets' ports is the origin
        // the IdP knows itself by.
        if let Some(RawUpstreamTls::Table(t)) = raw.tls.as_ref().map(|t| t.get_ref()) {
            if let Some(name) = &t.server_name {
                let named: Vec<_> = origins
                    .iter()
                    .map(|o| crate::oidc::Origin {
                        host: name.get_ref().to_ascii_lowercase(),
                        ..o.clone()
                    })
                    .collect();
                origins.extend(named);
            }
        }
        let http2 = raw
            .protocol
            .as_ref()
            .is_some_and(|p| p.get_ref() == "http2");
        Some(crate::policy::introspect::ServiceUpstream {
            index,
            http2,
            origins,
        })
    }

    /// Whether the upstream `name` is configured with `protocol = "http2"`.
    fn upstream_is_http2(&self, name: &str) -> bool {
        self.raw.upstreams.iter().any(|(k, u)| {
            k.get_ref() == name && u.protocol.as_ref().is_some_and(|p| p.get_ref() == "http2")
        })
    }
}

/// Dispatches policy `n` to the `compile` of each kind it sets, with errors under
/// `policies.{n}.{kind}`; the last kind compiled wins (only one may be set, checked by the
/// caller). `None` when it did not compile (errors reported).
fn compile_policy(
    n: &str,
    p: &RawPolicy,
    cx: &PolicyContext<'_>,
    live_limiters: &mut Vec<String>,
    errs: &mut Diag,
) -> Option<Policy> {
    let prefix = |kind: &str| format!("policies.{n}.{kind}");
    let mut compiled = None;
    if let Some(k) = &p.api_key {
        let at = prefix("api_key");
        let has_store = cx.raw.api_keys.is_some();
        compiled = api_key::compile(k.get_ref(), k.span(), has_store, &mut errs.under(&at))
            .map(Policy::ApiKey);
    }
    if let Some(j) = &p.jwt {
        let at = prefix("jwt");
        let jwt = crate::jwt::compile(
            j.get_ref(),
            j.span(),
            cx.base_dir,
            &cx.rt.jwks,
            &mut errs.under(&at),
        );
        compiled = jwt.map(|jwt| {
            Policy::Jwt(JwtCheck {
                jwt,
                consumer_header: "x-consumer".as_bytes().into(),
            })
        });
    }
    if let Some(a) = &p.authorize {
        let at = prefix("authorize");
        let is_consumer = |c: &str| cx.raw.consumers.keys().any(|k| k.get_ref() == c);
        let sink = &mut errs.under(&at);
        compiled = Some(Policy::Authorize(authorize::compile(
            a.get_ref(),
            &is_consumer,
            sink,
        )));
    }
    if let Some(i) = &p.ip {
        let at = prefix("ip");
        compiled = ip::compile(i.get_ref(), &mut errs.under(&at)).map(Policy::Ip);
    }
    if let Some(r) = &p.rate_limit {
        let at = prefix("rate_limit");
        let sink = &mut errs.under(&at);
        let (limiters, redis) = (&cx.rt.limiters, cx.redis);
        compiled = rate_limit::compile(n, r.get_ref(), limiters, redis, sink, live_limiters)
            .map(Policy::RateLimit);
    }
    if let Some(q) = &p.quota {
        let at = prefix("quota");
        let has_redis = has_redis(cx.raw);
        compiled = quota::compile(n, q.get_ref(), q.span(), has_redis, &mut errs.under(&at))
            .map(Policy::Quota);
    }
    if let Some(c) = &p.cors {
        let at = prefix("cors");
        compiled = cors::compile(c.get_ref(), &mut errs.under(&at)).map(Policy::Cors);
    }
    if let Some(t) = &p.transform {
        let at = prefix("transform");
        compiled = transform::compile(t.get_ref(), &mut errs.under(&at)).map(Policy::Transform);
    }
    if let Some(c) = &p.client_cert {
        let at = prefix("client_cert");
        compiled = client_cert::compile(c.get_ref(), c.span(), &mut errs.under(&at))
            .map(Policy::ClientCert);
    }
    if let Some(c) = &p.cache {
        let at = prefix("cache");
        compiled = crate::cache::policy::compile(c.get_ref(), &mut errs.under(&at))
            .map(|c| Policy::Cache(Box::new(c)));
    }
    if let Some(c) = &p.compress {
        let at = prefix("compress");
        compiled = crate::compress::policy::compile(c.get_ref(), &mut errs.under(&at))
            .map(|c| Policy::Compress(Box::new(c)));
    }
    if let Some(a) = &p.forward_auth {
        let at = prefix("forward_auth");
        let sink = &mut errs.under(&at);
        compiled = super::super::policy::forward_auth::compile(
            a.get_ref(),
            a.span(),
            n,
            &cx.upstream_index(),
            sink,
        )
        .map(|a| Policy::ForwardAuth(Box::new(a)));
        // The call is an HTTP/1.1 exchange (`exchange::callout`).
        if let Some(up) = a.get_ref().upstream.as_ref() {
            if cx.upstream_is_http2(up.get_ref()) {
                sink(
                    up.span(),
                    "upstream",
                    "the service must be an HTTP/1.1 upstream (protocol = \"http2\" is not supported)"
                        .into(),
                );
            }
        }
    }
    if let Some(i) = &p.introspect {
        let at = prefix("introspect");
        let sink = &mut errs.under(&at);
        compiled = super::super::policy::introspect::compile(
            i.get_ref(),
            i.span(),
            &|name| cx.service_upstream(name),
            &cx.rt.oidc,
            sink,
        )
        .map(|i| Policy::Introspect(Box::new(i)));
    }
    if let Some(w) = &p.wasm {
        let at = prefix("wasm");
        let sink = &mut errs.under(&at);
        compiled = crate::wasm::compile(n, w.get_ref(), w.span(), cx.base_dir, sink)
            .map(|w| Policy::Wasm(Box::new(w)));
    }
    compiled
}

/// Whether the config has a top-level `[redis]` (quotas and usage metering need one).
fn has_redis(raw: &RawConfig) -> bool {
    raw.redis.is_some()
}

/// `[usage]`: metering settings, refused without `[redis]`.
pub(super) fn compile_usage(
    raw: &RawConfig,
    errs: &mut Diag,
) -> Option<crate::usage::UsageSettings> {
    let u = raw.usage.as_ref()?;
    if !has_redis(raw) {
        errs.at(
            u.span(),
            "usage",
            "usage metering needs a top-level [redis] table (counts are kept in Redis)",
        );
        return None;
    }
    crate::usage::compile(u.get_ref(), &mut errs.under("usage"))
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::compile::{compile, parse};
    use crate::config::Compiled;
    use crate::policy::pipeline::{KeySource, LimitKey, Policy};

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"\n";

    fn build_in(dir: &Path, extra: &str) -> Result<Compiled, Vec<String>> {
        let src = format!("{BASE}{extra}");
        let file = dir.join("test.toml");
        let raw = parse(&src, &file).map_err(|e| vec![e[0].to_string()])?;
        compile(raw, &src, &file, 1).map_err(|e| e.iter().map(|e| e.to_string()).collect())
    }

    fn build(extra: &str) -> Result<Compiled, Vec<String>> {
        build_in(Path::new(""), extra)
    }

    fn errors_in(dir: &Path, extra: &str) -> Vec<String> {
        match build_in(dir, extra) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e,
        }
    }

    fn errors(extra: &str) -> Vec<String> {
        errors_in(Path::new(""), extra)
    }

    fn policy<'a>(c: &'a Compiled, name: &str) -> &'a Policy {
        &c.policies.list[c.policies.list.iter().position(|p| p.name == name).unwrap()].policy
    }

    #[test]
    fn api_key_needs_a_key_store() {
        let e = errors("[policies.k]\napi_key = {}\n");
        assert_eq!(
            e,
            [
                "test.toml:4:11: policies.k.api_key: an api_key policy needs an [api_keys] \
              section naming the keys file"
            ]
        );
    }

    #[test]
    fn api_key_fields_are_checked() {
        let dir = std::env::temp_dir().join(format!("ringway-policies-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keys.toml"), "").unwrap();
        let store = "[api_keys]\nfile = \"keys.toml\"\nhash = \"sha256\"\n";
        let c = build_in(
            &dir,
            &format!(
                "{store}[policies.k]\napi_key = {{ headers = [\"Authorization\", \"X-Key\"], \
                 query = \"key\", consumer_header = \"X-Who\" }}\n"
            ),
        )
        .unwrap();
        let Policy::ApiKey(k) = policy(&c, "k") else {
            panic!("not an api_key policy")
        };
        assert_eq!(
            k.sources,
            [
                KeySource::Bearer,
                KeySource::Header("x-key".into()),
                KeySource::Query(b"key".to_vec())
            ]
        );
        assert_eq!(&*k.consumer_header, b"x-who");
        assert_eq!(c.policies.secret_query, [Box::from(&b"key"[..])]);

        let e = errors_in(
            &dir,
            &format!("{store}[policies.k]\napi_key = {{ headers = [\"bad header\"] }}\n"),
        );
        let at = dir.join("test.toml");
        assert_eq!(
            e,
            [format!(
                "{}:7:24: policies.k.api_key.headers[0]: \"bad header\" is not a valid \
                 header name",
                at.display()
            )]
        );
        let e = errors_in(
            &dir,
            &format!("{store}[policies.k]\napi_key = {{ query = \"\" }}\n"),
        );
        assert_eq!(
            e,
            [format!(
                "{}:7:21: policies.k.api_key.query: must not be empty",
                at.display()
            )]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn authorize_names_unknown_consumers() {
        let c = build(
            "[consumers.acme]\ngroups = [\"gold\"]\n[policies.a.authorize]\n\
             consumers = [\"acme\"]\ngroups = [\"gold\"]\nscopes = [\"read\"]\n\
             claims = { tier = \"pro\" }\n",
        )
        .unwrap();
        let Policy::Authorize(a) = policy(&c, "a") else {
            panic!("not an authorize policy")
        };
        assert_eq!(a.consumers, ["acme"]);
        assert_eq!(a.groups, ["gold"]);
        assert_eq!(a.scopes, ["read"]);
        assert_eq!(a.claims, [("tier".to_string(), "pro".to_string())]);

        let e = errors("[policies.a.authorize]\nconsumers = [\"nobody\"]\n");
        assert_eq!(
            e,
            [
                "test.toml:4:14: policies.a.authorize.consumers[0]: unknown consumer \"nobody\" \
              (define it under [consumers])"
            ]
        );
    }

    #[test]
    fn rate_limit_compiles_and_names_bad_fields() {
        let c = build(
            "[policies.r.rate_limit]\nkey = \"header:X-User\"\n\
             limits = [{ requests = 10, per = \"1s\", burst = 5 }, { requests = 100, per = \"1m\" }]\n",
        )
        .unwrap();
        let Policy::RateLimit(r) = policy(&c, "r") else {
            panic!("not a rate_limit policy")
        };
        assert_eq!(r.key, LimitKey::Header("x-user".into()));
        assert_eq!(r.specs.len(), 2);
        assert_eq!((r.specs[0].requests, r.specs[0].burst), (10, 5));
        assert_eq!(r.specs[1].period.as_secs(), 60);
        assert_eq!(c.policies.limiter_identities.len(), 2);

        let e = errors(
            "[policies.r.rate_limit]\nkey = \"nose\"\nlimits = [{ requests = 1, per = \"1s\" }]\n",
        );
        assert_eq!(
            e,
            [
                "test.toml:4:7: policies.r.rate_limit.key: unknown key \"nose\": use consumer, \
              api_key, ip, route or header:NAME"
            ]
        );
        let e = errors(
            "[policies.r.rate_limit]\nkey = \"ip\"\nlimits = [{ requests = 1, per = \"0s\" }]\n",
        );
        assert_eq!(
            e,
            ["test.toml:5:33: policies.r.rate_limit.limits[0].per: must be greater than zero"]
        );
        let e = errors("[policies.r.rate_limit]\nkey = \"ip\"\nlimits = []\n");
        assert_eq!(
            e,
            ["test.toml:5:10: policies.r.rate_limit.limits: give between 1 and 4 limits"]
        );
    }

    #[test]
    fn dispatch_prefixes_each_kind_and_wants_exactly_one() {
        let e = errors("[policies.i.ip]\nallow = []\n");
        assert_eq!(
            e,
            [
                "test.toml:4:9: policies.i.ip.allow: an empty allow list refuses every client; \
              list addresses or drop it"
            ]
        );
        // Every kind present is compiled (its errors reported) before the count check.
        let e = errors("[policies.x]\nip = { allow = [] }\nauthorize = { consumers = [\"z\"] }\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("policies.x.authorize.consumers[0]"), "{e:?}");
        assert!(e[1].contains("policies.x.ip.allow"), "{e:?}");
        assert!(
            e[2].starts_with("test.toml:3:11: policies.x: a policy needs exactly one of"),
            "{e:?}"
        );
        let e = errors("[policies.none]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("policies.none: a policy needs exactly one"),
            "{e:?}"
        );
    }

    #[test]
    fn client_cert_compiles_under_its_prefix() {
        let c = build(
            "[server]\nforward_client_cert = false\n[policies.c]\n\
             client_cert = { subjects = [\"O=Acme, CN=a\"], consumer = \"san_uri\" }\n",
        )
        .unwrap();
        let Policy::ClientCert(p) = policy(&c, "c") else {
            panic!("not a client_cert policy")
        };
        assert!(p.required);
        assert_eq!(p.subjects, ["O=Acme,CN=a"]);
        assert!(!c.policies.forward_client_cert);
        assert!(
            build("").unwrap().policies.forward_client_cert,
            "on by default"
        );
        let e = errors("[policies.c]\nclient_cert = { fingerprints = [\"zz\"] }\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("test.toml:4:33: policies.c.client_cert.fingerprints[0]: "),
            "{e:?}"
        );
    }
}
