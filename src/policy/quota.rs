//! The `quota` policy's config and its Redis step: `RawQuota` (what to count by, the limit,
//! day or month, the time zone, what to do when Redis fails), `compile` into the pipeline's
//! `QuotaCheck`, and `settle`, the async part the pipeline's await seam runs (one Redis call
//! per request, see `crate::quota` for the accounting and why it is exact).

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::pipeline::{Caller, Denial, Effects, Facts, QuotaCheck};
use crate::config::errors::Fail;
use crate::quota::{period, Period, QuotaSpec};

/// `[policies.NAME.quota]` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    /// `consumer`, `api_key`, `ip`, `route` or `header:NAME` (as for `rate_limit`).
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// Requests per period.
    #[schemars(with = "i64")]
    pub limit: Spanned<i64>,
    /// `day` or `month`.
    #[schemars(with = "String")]
    pub period: Spanned<String>,
    /// IANA zone whose midnight ends a period (default `UTC`).
    #[schemars(with = "Option<String>")]
    pub time_zone: Option<Spanned<String>>,
    /// `fail_open` (default: admit) or `fail_closed` (503) when Redis cannot answer.
    #[schemars(with = "Option<String>")]
    pub on_redis_error: Option<Spanned<String>>,
}

/// Compiles policy `policy`'s `quota` table (at `table_span`). `has_redis`: the config has a
/// top-level `[redis]`, without which a quota cannot be shared or kept. Fields in `fail` are
/// relative to the table; any problem returns `None`.
pub fn compile(
    policy: &str,
    raw: &RawQuota,
    table_span: Range<usize>,
    has_redis: bool,
    fail: &mut Fail<'_>,
) -> Option<QuotaCheck> {
    if !has_redis {
        fail(
            table_span,
            "",
            "a quota policy needs a top-level [redis] table (quotas are counted in Redis)".into(),
        );
        return None;
    }
    let key = super::rate_limit::limit_key(&raw.key, fail)?;
    let limit = match u64::try_from(*raw.limit.get_ref()) {
        Ok(n) if n >= 1 => n,
        _ => {
            fail(raw.limit.span(), "limit", "must be at least 1".into());
            return None;
        }
    };
    let period = match raw.period.get_ref().as_str() {
        "day" => Period::Day,
        "month" => Period::Month,
        other => {
            let msg = format!("unknown period {other:?}: use day or month");
            fail(raw.period.span(), "period", msg);
            return None;
        }
    };
    let zone_name = raw
        .time_zone
        .as_ref()
        .map_or("UTC", |z| z.get_ref().as_str());
    let Some(zone) = period::zone(zone_name) else {
        let span = raw.time_zone.as_ref().map_or(table_span, |z| z.span());
        let msg = format!("unknown time zone {zone_name:?}: use an IANA name like Europe/Berlin");
        fail(span, "time_zone", msg);
        return None;
    };
    let fail_open = match raw
        .on_redis_error
        .as_ref()
        .map(|s| (s, s.get_ref().as_str()))
    {
        None | Some((_, "fail_open")) => true,
        Some((_, "fail_closed")) => false,
        Some((s, other)) => {
            let msg = format!("unknown value {other:?}: use fail_open or fail_closed");
            fail(s.span(), "on_redis_error", msg);
            return None;
        }
    };
    Some(QuotaCheck {
        key,
        spec: QuotaSpec {
            policy: policy.to_string(),
            limit,
            period,
            zone,
            zone_name: zone_name.to_string(),
            fail_open,
        },
    })
}

/// The quota's Redis step for one request: counts it, writes the quota headers, refuses with
/// 429 when the period's quota is used up. Redis failing (or no client, or a failure on this
/// worker less than a second ago: `quota::recent::redis_down`): `fail_open` admits without
/// quota headers, `fail_closed` refuses with 503 and `Retry-After: 1`.
pub async fn settle(
    client: Option<&crate::redis::Client>,
    q: &QuotaCheck,
    f: &Facts<'_>,
    caller: &Caller<'_>,
    fx: &mut Effects,
) -> Result<(), Denial> {
    let ip = super::pipeline::ip_key(f);
    let key = super::pipeline::key_bytes(&q.key, f, caller, &ip, &fx.upstream)?;
    let key = &*key;
    let now = i64::try_from(f.unix_now).unwrap_or(i64::MAX);
    let taken = match client {
        _ if crate::quota::recent::redis_down(f.mono_now) => Err(
            crate::redis::RedisError::Unavailable("failed less than a second ago".into()),
        ),
        Some(c) => {
            let taken = crate::quota::store::take(c, c.shared(), &q.spec, key, now).await;
            if taken.is_err() {
                crate::quota::recent::mark_down(f.mono_now);
            }
            taken
        }
        None => Err(crate::redis::RedisError::Unavailable("no [redis]".into())),
    };
    match taken {
        Ok((t, w)) => {
            if t.admitted {
                crate::quota::recent::forget(&q.spec, key);
            } else {
                crate::quota::recent::remember(&q.spec, key, &w, f.mono_now);
            }
            crate::quota::write_headers(&q.spec, t, &w, now, &mut fx.response_lines);
            // Counted with the rate limits in metrics: a 429 is a 429.
            fx.rate_limited = Some(t.admitted && fx.rate_limited != Some(false));
            if t.admitted {
                Ok(())
            } else {
                Err(Denial::Limited)
            }
        }
        Err(_) if q.spec.fail_open => Ok(()),
        Err(_) => {
            fx.response_lines.extend_from_slice(b"retry-after: 1\r\n");
            Err(Denial::LimiterUnavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(src: &str, has_redis: bool) -> Vec<String> {
        let raw: RawQuota = toml::from_str(src).expect("valid quota table");
        let mut errs = Vec::new();
        let mut fail = |_: Range<usize>, f: &str, m: String| errs.push(format!("{f}: {m}"));
        let r = compile("p", &raw, 0..1, has_redis, &mut fail);
        assert_eq!(r.is_none(), !errs.is_empty());
        errs
    }

    #[test]
    fn a_valid_table_compiles() {
        let src = "key = \"consumer\"\nlimit = 1000\nperiod = \"month\"\n\
                   time_zone = \"Europe/Berlin\"\non_redis_error = \"fail_closed\"\n";
        assert!(errors(src, true).is_empty());
    }

    #[test]
    fn problems_name_the_field() {
        let base = "key = \"consumer\"\nlimit = 10\nperiod = \"day\"\n";
        assert_eq!(
            errors(base, false),
            [": a quota policy needs a top-level [redis] table (quotas are counted in Redis)"]
        );
        assert_eq!(
            errors("key = \"consumer\"\nlimit = 0\nperiod = \"day\"\n", true),
            ["limit: must be at least 1"]
        );
        assert_eq!(
            errors("key = \"consumer\"\nlimit = 1\nperiod = \"week\"\n", true),
            ["period: unknown period \"week\": use day or month"]
        );
        let tz = format!("{base}time_zone = \"Europe/Atlantis\"\n");
        assert_eq!(
            errors(&tz, true),
            ["time_zone: unknown time zone \"Europe/Atlantis\": use an IANA name like Europe/Berlin"]
        );
        let e = format!("{base}on_redis_error = \"maybe\"\n");
        assert_eq!(
            errors(&e, true),
            ["on_redis_error: unknown value \"maybe\": use fail_open or fail_closed"]
        );
        assert_eq!(
            errors("key = \"cookie\"\nlimit = 1\nperiod = \"day\"\n", true).len(),
            1
        );
    }
}
