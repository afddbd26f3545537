//! The `rate_limit` policy's config: `RawRateLimit` (what to count by, up to four limits, how
//! many keys to track) and `compile`, which builds the pipeline's `RateLimit`. The limiter
//! math and the cross-worker tables belong to `ratelimit`; this module decides the key and
//! draws limiters from the `LimiterRegistry`, so an unchanged limit keeps its buckets across
//! reloads (no fresh burst on SIGHUP).

use serde::Deserialize;
use toml::Spanned;

use super::pipeline::{LimitKey, RateLimit};
use crate::config::errors::Fail;
use crate::config::units::RawDuration;
use crate::ratelimit::global::{GlobalLimit, GlobalMode, OnRedisError};
use crate::ratelimit::{LimitSpec, LimiterRegistry};
use crate::redis::RedisShared;
use std::sync::Arc;

/// Default cap on keys tracked per rate-limit policy.
const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// `[policies.NAME.rate_limit]` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// `consumer`, `api_key`, `ip`, `route` or `header:NAME`.
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    #[schemars(with = "Vec<RawLimit>")]
    pub limits: Spanned<Vec<RawLimit>>,
    /// Most keys tracked at once (bounded memory).
    #[schemars(with = "Option<i64>")]
    pub max_keys: Option<Spanned<i64>>,
    /// `local` (default: this instance only) or `global` (shared by every instance through
    /// the top-level `[redis]`).
    #[schemars(with = "Option<String>")]
    pub scope: Option<Spanned<String>>,
    /// Global only: `leased` (default) or `exact`.
    #[schemars(with = "Option<String>")]
    pub mode: Option<Spanned<String>>,
    /// Global `leased` only: tokens one worker takes from Redis at a time.
    #[schemars(with = "Option<i64>")]
    pub lease: Option<Spanned<i64>>,
    /// Global only: `fail_open` (default) or `fail_closed` when Redis cannot answer.
    #[schemars(with = "Option<String>")]
    pub on_redis_error: Option<Spanned<String>>,
}

/// One limit: `requests` per `per`, plus `burst` extra.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    #[schemars(with = "i64")]
    pub requests: Spanned<i64>,
    #[schemars(with = "RawDuration")]
    pub per: Spanned<RawDuration>,
    #[schemars(with = "Option<i64>")]
    pub burst: Option<Spanned<i64>>,
}

/// Compiles the `rate_limit` table of policy `policy`. Limiters come from `registry` by
/// identity (policy, key, limit, max_keys); each identity used is pushed to `live` so the
/// registry can drop the rest once the whole config compiled. `redis` is the top-level
/// `[redis]` table (`None`: there is none; `scope = "global"` is then an error).
/// Problems go to `fail` (fields relative to the table); any problem returns `None`.
pub fn compile(
    policy: &str,
    raw: &RawRateLimit,
    registry: &LimiterRegistry,
    redis: Option<&Arc<RedisShared>>,
    fail: &mut Fail<'_>,
    live: &mut Vec<String>,
) -> Option<RateLimit> {
    let k = raw.key.get_ref();
    let key = limit_key(&raw.key, fail)?;
    let max_keys = match &raw.max_keys {
        None => DEFAULT_MAX_KEYS,
        Some(m) => match usize::try_from(*m.get_ref()) {
            Ok(n) if (1..=100_000_000).contains(&n) => n,
            _ => {
                fail(
                    m.span(),
                    "max_keys",
                    "must be between 1 and 100000000".into(),
                );
                return None;
            }
        },
    };
    let limits = raw.limits.get_ref();
    if limits.is_empty() || limits.len() > 4 {
        fail(
            raw.limits.span(),
            "limits",
            "give between 1 and 4 limits".into(),
        );
        return None;
    }
    let mut specs = Vec::new();
    let mut limiters = Vec::new();
    for (i, l) in limits.iter().enumerate() {
        let spec = limit_spec(i, l, fail)?;
        // Same policy, key and spec → same limiter (and buckets) across reloads.
        let identity = format!(
            "policy={policy};key={k};limit={}/{}ms+{};max_keys={max_keys}",
            spec.requests,
            spec.period.as_millis(),
            spec.burst
        );
        limiters.push(registry.get_or_create(&identity, spec, max_keys));
        live.push(identity);
        specs.push(spec);
    }
    let global = global_part(policy, raw, &specs, redis, fail)?;
    Some(RateLimit {
        key,
        limiters,
        specs,
        global,
    })
}

/// `scope`, `mode`, `lease`, `on_redis_error`: `Some(None)` for a local limit (the three others
/// must then be absent), `Some(Some(..))` for a global one, `None` after an error.
fn global_part(
    policy: &str,
    raw: &RawRateLimit,
    specs: &[LimitSpec],
    redis: Option<&Arc<RedisShared>>,
    fail: &mut Fail<'_>,
) -> Option<Option<Box<GlobalLimit>>> {
    let global = match raw.scope.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "local")) => false,
        Some((_, "global")) => true,
        Some((s, other)) => {
            let msg = format!("unknown scope {other:?}: use \"local\" or \"global\"");
            fail(s.span(), "scope", msg);
            return None;
        }
    };
    if !global {
        let extra = [
            ("mode", raw.mode.as_ref().map(Spanned::span)),
            ("lease", raw.lease.as_ref().map(Spanned::span)),
            (
                "on_redis_error",
                raw.on_redis_error.as_ref().map(Spanned::span),
            ),
        ];
        if let Some((field, Some(span))) = extra.into_iter().find(|(_, s)| s.is_some()) {
            let msg = "applies only to scope = \"global\"".into();
            fail(span, field, msg);
            return None;
        }
        return Some(None);
    }
    if let Some(i) = specs
        .iter()
        .position(|s| s.period.as_nanos() < u128::from(s.requests) * 1_000)
    {
        let span = raw.limits.span();
        let msg = format!("limits[{i}]: a global limit allows at most 1 request per microsecond");
        fail(span, "limits", msg);
        return None;
    }
    let Some(redis) = redis else {
        let span = raw.scope.as_ref().map(Spanned::span).unwrap_or_default();
        let msg = "scope = \"global\" needs a top-level [redis] table (address, ...)".into();
        fail(span, "scope", msg);
        return None;
    };
    let on_error = match raw
        .on_redis_error
        .as_ref()
        .map(|s| (s, s.get_ref().as_str()))
    {
        None | Some((_, "fail_open")) => OnRedisError::FailOpen,
        Some((_, "fail_closed")) => OnRedisError::FailClosed,
        Some((s, other)) => {
            let msg = format!("unknown value {other:?}: use \"fail_open\" or \"fail_closed\"");
            fail(s.span(), "on_redis_error", msg);
            return None;
        }
    };
    let smallest = specs
        .iter()
        .map(|s| s.requests.saturating_add(s.burst))
        .min()
        .unwrap_or(1);
    let mode = match raw.mode.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "leased")) => GlobalMode::Leased {
            lease: lease_size(raw, smallest, fail)?,
        },
        Some((_, "exact")) => {
            if let Some(l) = &raw.lease {
                fail(
                    l.span(),
                    "lease",
                    "applies only to mode = \"leased\"".into(),
                );
                return None;
            }
            GlobalMode::Exact
        }
        Some((s, other)) => {
            let msg = format!("unknown mode {other:?}: use \"leased\" or \"exact\"");
            fail(s.span(), "mode", msg);
            return None;
        }
    };
    let kind = raw.key.get_ref();
    Some(Some(Box::new(GlobalLimit::new(
        policy, kind, redis, specs, mode, on_error,
    ))))
}

/// `lease`: between 1 and the smallest limit's `requests + burst`; default
/// [`GlobalLimit::default_lease`].
fn lease_size(raw: &RawRateLimit, smallest: u64, fail: &mut Fail<'_>) -> Option<u64> {
    let Some(l) = &raw.lease else {
        return Some(GlobalLimit::default_lease(smallest));
    };
    match u64::try_from(*l.get_ref()) {
        Ok(n) if (1..=smallest).contains(&n) => Some(n),
        _ => {
            let msg = format!("must be between 1 and requests + burst ({smallest})");
            fail(l.span(), "lease", msg);
            None
        }
    }
}

/// `consumer`, `api_key`, `ip`, `route` or `header:NAME` (a token, lowercased).
pub(crate) fn limit_key(k: &Spanned<String>, fail: &mut Fail<'_>) -> Option<LimitKey> {
    Some(match k.get_ref().as_str() {
        "consumer" => LimitKey::Consumer,
        "api_key" => LimitKey::ApiKey,
        "ip" => LimitKey::Ip,
        "route" => LimitKey::Route,
        other => match other.strip_prefix("header:") {
            Some(h) if !h.is_empty() && h.bytes().all(crate::http1::is_tchar) => {
                LimitKey::Header(h.to_ascii_lowercase())
            }
            _ => {
                fail(
                    k.span(),
                    "key",
                    format!(
                        "unknown key {:?}: use consumer, api_key, ip, route or header:NAME",
                        k.get_ref()
                    ),
                );
                return None;
            }
        },
    })
}

/// `limits[i]`: at least one request per a non-zero period, a non-negative burst.
fn limit_spec(i: usize, l: &RawLimit, fail: &mut Fail<'_>) -> Option<LimitSpec> {
    let f = |x: &str| format!("limits[{i}].{x}");
    let requests = match u64::try_from(*l.requests.get_ref()) {
        Ok(n) if n >= 1 => n,
        _ => {
            fail(
                l.requests.span(),
                &f("requests"),
                "must be at least 1".into(),
            );
            return None;
        }
    };
    let period = l.per.get_ref().0;
    if period.is_zero() {
        fail(l.per.span(), &f("per"), "must be greater than zero".into());
        return None;
    }
    let burst = match &l.burst {
        None => 0,
        Some(b) => match u64::try_from(*b.get_ref()) {
            Ok(n) => n,
            Err(_) => {
                fail(b.span(), &f("burst"), "cannot be negative".into());
                return None;
            }
        },
    };
    let spec = LimitSpec {
        requests,
        period,
        burst,
    };
    // Beyond what the limiter computes exactly it would be clamped, silently stricter or
    // looser than written.
    if let Err(e) = spec.validate() {
        fail(l.per.span(), &f("per"), e.to_string());
        return None;
    }
    Some(spec)
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::sync::Arc;

    use super::*;

    fn raw(src: &str) -> RawRateLimit {
        toml::from_str(src).expect("valid rate_limit table")
    }

    fn compile_ok(policy: &str, src: &str, registry: &LimiterRegistry) -> RateLimit {
        let mut errs = Vec::new();
        let mut fail = |_: Range<usize>, f: &str, m: String| errs.push(format!("{f}: {m}"));
        let r = compile(
            policy,
            &raw(src),
            registry,
            Some(&redis()),
            &mut fail,
            &mut Vec::new(),
        );
        assert!(errs.is_empty(), "{errs:?}");
        r.expect("compiles")
    }

    #[test]
    fn unchanged_limits_keep_their_limiter_across_compiles() {
        let registry = LimiterRegistry::default();
        let src = "key = \"ip\"\nlimits = [{ requests = 5, per = \"1s\", burst = 2 }]\n";
        let a = compile_ok("p", src, &registry);
        let b = compile_ok("p", src, &registry);
        assert!(Arc::ptr_eq(&a.limiters[0], &b.limiters[0]));
        let other_policy = compile_ok("q", src, &registry);
        assert!(!Arc::ptr_eq(&a.limiters[0], &other_policy.limiters[0]));
        let changed = compile_ok(
            "p",
            "key = \"ip\"\nlimits = [{ requests = 5, per = \"1s\", burst = 3 }]\n",
            &registry,
        );
        assert!(!Arc::ptr_eq(&a.limiters[0], &changed.limiters[0]));
    }

    #[test]
    fn fields_are_relative_to_the_table() {
        let registry = LimiterRegistry::default();
        let mut errs = Vec::new();
        let mut fail = |_: Range<usize>, f: &str, m: String| errs.push(format!("{f}: {m}"));
        let r = raw("key = \"ip\"\nlimits = [{ requests = 0, per = \"1s\" }]\nmax_keys = 0\n");
        assert!(compile("p", &r, &registry, None, &mut fail, &mut Vec::new()).is_none());
        assert_eq!(errs, ["max_keys: must be between 1 and 100000000"]);
        errs.clear();
        let r = raw("key = \"ip\"\nlimits = [{ requests = 0, per = \"1s\" }]\n");
        let mut fail = |_: Range<usize>, f: &str, m: String| errs.push(format!("{f}: {m}"));
        assert!(compile("p", &r, &registry, None, &mut fail, &mut Vec::new()).is_none());
        assert_eq!(errs, ["limits[0].requests: must be at least 1"]);
    }

    fn redis() -> Arc<RedisShared> {
        let settings = crate::redis::RedisSettings::for_nodes(Vec::new(), false, "t");
        Arc::new(RedisShared::new(settings))
    }

    fn errors(src: &str, with_redis: bool) -> Vec<String> {
        let registry = LimiterRegistry::default();
        let mut errs = Vec::new();
        let mut fail = |_: Range<usize>, f: &str, m: String| errs.push(format!("{f}: {m}"));
        let r = with_redis.then(redis);
        let r = compile(
            "p",
            &raw(src),
            &registry,
            r.as_ref(),
            &mut fail,
            &mut Vec::new(),
        );
        assert_eq!(r.is_none(), !errs.is_empty());
        errs
    }

    #[test]
    fn global_scope_modes_and_defaults() {
        use crate::ratelimit::global::{GlobalMode, OnRedisError};
        let registry = LimiterRegistry::default();
        let lim = "key = \"ip\"\nlimits = [{ requests = 1000, per = \"1m\" }]\n";
        assert!(compile_ok("p", lim, &registry).global.is_none());
        let local = format!("{lim}scope = \"local\"\n");
        assert!(compile_ok("p", &local, &registry).global.is_none());
        let g = compile_ok("p", &format!("{lim}scope = \"global\"\n"), &registry);
        let g = g.global.expect("global");
        assert_eq!(g.mode, GlobalMode::Leased { lease: 10 });
        assert_eq!(g.on_error, OnRedisError::FailOpen);
        let src = format!(
            "{lim}scope = \"global\"\nmode = \"exact\"\non_redis_error = \"fail_closed\"\n"
        );
        let g = compile_ok("p", &src, &registry).global.expect("global");
        assert_eq!(
            (g.mode, g.on_error),
            (GlobalMode::Exact, OnRedisError::FailClosed)
        );
        let src = format!("{lim}scope = \"global\"\nlease = 50\n");
        let g = compile_ok("p", &src, &registry).global.expect("global");
        assert_eq!(g.mode, GlobalMode::Leased { lease: 50 });
    }

    #[test]
    fn global_scope_errors_name_the_field() {
        let lim = "key = \"ip\"\nlimits = [{ requests = 100, per = \"1m\", burst = 5 }]\n";
        let e = errors(&format!("{lim}scope = \"global\"\n"), false);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("scope: scope = \"global\" needs a top-level [redis]"));
        let e = errors(&format!("{lim}scope = \"planet\"\n"), true);
        assert!(e[0].starts_with("scope: unknown scope"), "{e:?}");
        let e = errors(&format!("{lim}mode = \"exact\"\n"), true);
        assert_eq!(e, ["mode: applies only to scope = \"global\""]);
        let e = errors(&format!("{lim}on_redis_error = \"fail_open\"\n"), true);
        assert_eq!(e, ["on_redis_error: applies only to scope = \"global\""]);
        let g = format!("{lim}scope = \"global\"\n");
        let e = errors(&format!("{g}mode = \"exact\"\nlease = 5\n"), true);
        assert_eq!(e, ["lease: applies only to mode = \"leased\""]);
        let e = errors(&format!("{g}lease = 106\n"), true);
        assert_eq!(e, ["lease: must be between 1 and requests + burst (105)"]);
        let e = errors(&format!("{g}lease = 0\n"), true);
        assert_eq!(e.len(), 1);
        let e = errors(&format!("{g}mode = \"fast\"\n"), true);
        assert!(e[0].starts_with("mode: unknown mode"), "{e:?}");
        let e = errors(&format!("{g}on_redis_error = \"maybe\"\n"), true);
        assert!(e[0].starts_with("on_redis_error: unknown value"), "{e:?}");
    }
}
