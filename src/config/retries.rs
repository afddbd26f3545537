//! Retry and circuit-breaker config: a route's `[routes.proxy.retry]` table, an upstream's
//! `[upstreams.NAME.retry_budget]` and `[upstreams.NAME.circuit_breaker]` tables, their raw
//! (serde) types and their compile into `resilience` types, with errors naming file, line
//! and field.

use serde::Deserialize;
use toml::Spanned;

use super::errors::{int_in, positive, Diag};
use super::units::RawDuration;
use crate::resilience::{BreakerLimits, RetryBudget, RetryMethods, RetryOn, RetryPolicy};

/// `[routes.proxy.retry]` (or `retry = { ... }` in the proxy table).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Most attempts in all, the first included (default 2).
    #[schemars(with = "Option<i64>")]
    pub attempts: Option<Spanned<i64>>,
    /// Conditions retried (default `["connect-failure", "reset", "timeout"]`).
    #[schemars(with = "Option<Vec<String>>")]
    pub on: Option<Spanned<Vec<Spanned<String>>>>,
    /// `"idempotent"` (default) or `"all"`.
    #[schemars(with = "Option<String>")]
    pub methods: Option<Spanned<String>>,
    #[schemars(with = "Option<RawDuration>")]
    pub per_try_timeout: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub backoff_base: Option<Spanned<RawDuration>>,
    #[schemars(with = "Option<RawDuration>")]
    pub backoff_max: Option<Spanned<RawDuration>>,
}

/// `[upstreams.NAME.retry_budget]`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetryBudget {
    #[schemars(with = "Option<i64>")]
    pub percent: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub min_concurrent: Option<Spanned<i64>>,
}

/// `[upstreams.NAME.circuit_breaker]`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    #[schemars(with = "Option<i64>")]
    pub max_connections: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub max_pending: Option<Spanned<i64>>,
    #[schemars(with = "Option<i64>")]
    pub max_requests: Option<Spanned<i64>>,
}

/// Compiles a route's retry table; `field` names the route's fields (`routes[2].…`).
pub fn retry_policy(r: &RawRetry, field: &dyn Fn(&str) -> String, errs: &mut Diag) -> RetryPolicy {
    let f = |k: &str| field(&format!("proxy.retry.{k}"));
    let attempts = int_in(
        errs,
        &r.attempts,
        &f("attempts"),
        RetryPolicy::DEFAULT_ATTEMPTS,
        1..=10,
        "attempts ",
    );
    let on = match &r.on {
        None => RetryOn::DEFAULT,
        Some(list) => retry_on(list, &f("on"), errs),
    };
    let methods = match r.methods.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "idempotent")) => RetryMethods::Idempotent,
        Some((_, "all")) => RetryMethods::All,
        Some((m, other)) => {
            errs.at(
                m.span(),
                f("methods"),
                format!("unknown value {other:?}: expected \"idempotent\" or \"all\""),
            );
            RetryMethods::Idempotent
        }
    };
    let per_try_timeout = r.per_try_timeout.as_ref().map(|_| {
        positive(
            errs,
            &r.per_try_timeout,
            &f("per_try_timeout"),
            Default::default(),
        )
    });
    let backoff_base = r
        .backoff_base
        .as_ref()
        .map_or(RetryPolicy::DEFAULT_BACKOFF_BASE, |d| d.get_ref().0);
    let backoff_max = r
        .backoff_max
        .as_ref()
        .map_or(RetryPolicy::DEFAULT_BACKOFF_MAX.max(backoff_base), |d| {
            d.get_ref().0
        });
    if let Some(m) = &r.backoff_max {
        if backoff_max < backoff_base {
            errs.at(
                m.span(),
                f("backoff_max"),
                format!("must not be less than backoff_base ({backoff_base:?})"),
            );
        }
    }
    RetryPolicy {
        attempts,
        on,
        methods,
        per_try_timeout,
        backoff_base,
        backoff_max,
    }
}

/// The `on` list: known names, at least one, none twice.
fn retry_on(list: &Spanned<Vec<Spanned<String>>>, field: &str, errs: &mut Diag) -> RetryOn {
    if list.get_ref().is_empty() {
        errs.at(
            list.span(),
            field,
            format!("needs at least one of {}", RetryOn::NAMES),
        );
    }
    let mut on = RetryOn::default();
    for (i, name) in list.get_ref().iter().enumerate() {
        match RetryOn::parse(name.get_ref()) {
            Some(c) if on.union(c) == on => errs.at(
                name.span(),
                format!("{field}[{i}]"),
                format!("{:?} is listed twice", name.get_ref()),
            ),
            Some(c) => on = on.union(c),
            None => errs.at(
                name.span(),
                format!("{field}[{i}]"),
                format!(
                    "unknown retry condition {:?}: expected one of {}",
                    name.get_ref(),
                    RetryOn::NAMES
                ),
            ),
        }
    }
    on
}

/// An upstream's retry budget: its own table, else the default when some route retries to
/// it, else none (no counting at all).
/// `retried`: some route with a retry policy proxies to this upstream.
pub fn retry_budget(
    retried: bool,
    b: Option<&RawRetryBudget>,
    field: &dyn Fn(&str) -> String,
    errs: &mut Diag,
) -> Option<RetryBudget> {
    let d = RetryBudget::DEFAULT;
    let Some(b) = b else {
        return retried.then_some(d);
    };
    Some(RetryBudget {
        percent: int_in(
            errs,
            &b.percent,
            &field("retry_budget.percent"),
            d.percent,
            0..=100,
            "",
        ),
        min_concurrent: int_in(
            errs,
            &b.min_concurrent,
            &field("retry_budget.min_concurrent"),
            d.min_concurrent,
            0..=1_000_000,
            "",
        ),
    })
}

/// An upstream's circuit-breaker limits (absent keys: no limit).
pub fn breaker_limits(
    b: Option<&RawCircuitBreaker>,
    field: &dyn Fn(&str) -> String,
    errs: &mut Diag,
) -> BreakerLimits {
    let Some(b) = b else {
        return BreakerLimits::default();
    };
    let mut one = |v: &Option<Spanned<i64>>, k: &str| {
        let f = field(&format!("circuit_breaker.{k}"));
        int_in(errs, v, &f, 0u32, 1..=10_000_000, "")
    };
    BreakerLimits {
        max_connections: one(&b.max_connections, "max_connections"),
        max_pending: one(&b.max_pending, "max_pending"),
        max_requests: one(&b.max_requests, "max_requests"),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn errors(toml: &str) -> Vec<String> {
        let raw = match crate::config::compile::parse(toml, Path::new("r.toml")) {
            Ok(r) => r,
            Err(e) => return e.iter().map(|e| e.to_string()).collect(),
        };
        match crate::config::compile::compile(raw, toml, Path::new("r.toml"), 1) {
            Ok(_) => Vec::new(),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1:8080\"\n\
        [upstreams.api]\ntargets = [{ address = \"127.0.0.1:9\" }]\n";

    fn route(retry: &str) -> String {
        format!(
            "{BASE}[[routes]]\nname = \"r\"\nprefix = \"/\"\n[routes.proxy]\nupstream = \"api\"\n\
             [routes.proxy.retry]\n{retry}\n"
        )
    }

    #[test]
    fn a_valid_policy_compiles() {
        let ok = route(
            "attempts = 3\non = [\"reset\", \"503\", \"5xx\"]\nmethods = \"all\"\n\
             per_try_timeout = \"200ms\"\nbackoff_base = \"10ms\"\nbackoff_max = \"1s\"",
        );
        assert_eq!(errors(&ok), Vec::<String>::new());
        assert_eq!(errors(&route("")), Vec::<String>::new(), "all defaults");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let e = errors(&route("attempts = 0"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("r.toml:11:"), "{}", e[0]);
        assert!(e[0].contains("routes[0].proxy.retry.attempts"), "{}", e[0]);
        let e = errors(&route("on = [\"reset\", \"418\"]"));
        assert!(
            e[0].contains("routes[0].proxy.retry.on[1]") && e[0].contains("\"418\""),
            "{e:?}"
        );
        let e = errors(&route("on = []"));
        assert!(e[0].contains("proxy.retry.on"), "{e:?}");
        let e = errors(&route("on = [\"reset\", \"reset\"]"));
        assert!(e[0].contains("listed twice"), "{e:?}");
        let e = errors(&route("methods = \"post\""));
        assert!(e[0].contains("proxy.retry.methods"), "{e:?}");
        let e = errors(&route("per_try_timeout = \"0s\""));
        assert!(e[0].contains("proxy.retry.per_try_timeout"), "{e:?}");
        let e = errors(&route("backoff_base = \"1s\"\nbackoff_max = \"10ms\""));
        assert!(e[0].contains("proxy.retry.backoff_max"), "{e:?}");
        let e = errors(&route("tries = 3"));
        assert!(e[0].contains("unknown field"), "{e:?}");
    }

    #[test]
    fn upstream_tables_are_checked() {
        let bad = format!(
            "{BASE}[upstreams.api.retry_budget]\npercent = 101\n\
             [upstreams.api.circuit_breaker]\nmax_requests = 0\n"
        );
        let e = errors(&bad);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("r.toml:6:") && e[0].contains("upstreams.api.retry_budget.percent"));
        assert!(
            e[1].contains("r.toml:8:")
                && e[1].contains("upstreams.api.circuit_breaker.max_requests")
        );
        let ok = format!(
            "{BASE}[upstreams.api.retry_budget]\npercent = 20\nmin_concurrent = 0\n\
             [upstreams.api.circuit_breaker]\nmax_connections = 5\nmax_pending = 1\nmax_requests = 9\n"
        );
        assert_eq!(errors(&ok), Vec::<String>::new());
    }
}
