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
use crate::ratelimit::{LimitSpec, LimiterRegistry};

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
/// registry can drop the rest once the whole config compiled. Problems go to `fail` (fields
/// relative to the table); any problem returns `None`.
pub fn compile(
    policy: &str,
    raw: &RawRateLimit,
    registry: &LimiterRegistry,
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
    Some(RateLimit {
        key,
        limiters,
        specs,
    })
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
    Some(LimitSpec {
        requests,
        period,
        burst,
    })
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
        let r = compile(policy, &raw(src), registry, &mut fail, &mut Vec::new());
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
        assert!(compile("p", &r, &registry, &mut fail, &mut Vec::new()).is_none());
        assert_eq!(errs, ["max_keys: must be between 1 and 100000000"]);
        errs.clear();
        let r = raw("key = \"ip\"\nlimits = [{ requests = 0, per = \"1s\" }]\n");
        let mut fail = |_: Range<usize>, f: &str, m: String| errs.push(format!("{f}: {m}"));
        assert!(compile("p", &r, &registry, &mut fail, &mut Vec::new()).is_none());
        assert_eq!(errs, ["limits[0].requests: must be at least 1"]);
    }
}
