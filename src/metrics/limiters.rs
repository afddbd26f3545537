//! Prometheus families for the rate limiters' process-wide counters.
//!
//! Limiters are shared by every worker (`Arc<Limiter>`, atomics), so unlike the core-local
//! request metrics these are read directly at scrape time on the admin thread, never on the
//! request path. The caller passes the limiters of the serving config generation, one row per
//! `(policy, limit index)`; a limiter replaced by a reload (changed spec, key or `max_keys`)
//! starts its counters at zero, which Prometheus treats as a counter reset.
//!
//! Invariants: each family gets `# HELP` / `# TYPE` exactly once, even with no limiter; rows
//! are written in the order given (config order, so deterministic). `tracked_keys` walks the
//! limiter's slot table (16 B per slot: the 1 M default is 16 MiB read, a few ms per scrape).

use std::fmt::Write;

use super::render::{family, push_label_value};
use crate::ratelimit::Limiter;

/// One limit of one rate-limit policy.
pub struct LimiterRow<'a> {
    /// The policy's name (`[policies.NAME]`).
    pub policy: &'a str,
    /// Index into the policy's `limits` array.
    pub limit: usize,
    pub limiter: &'a Limiter,
}

type Read = fn(&Limiter) -> u64;

const FAMILIES: [(&str, &str, &str, Read); 5] = [
    (
        "ringway_ratelimit_evictions_total",
        "Active keys evicted because their 16-slot window was full; each restarts with a fresh burst.",
        "counter",
        |l| l.active_evictions(),
    ),
    (
        "ringway_ratelimit_fail_open_total",
        "Requests admitted untracked after a key lookup lost many races in a row.",
        "counter",
        |l| l.fail_open_admits(),
    ),
    (
        "ringway_ratelimit_rollback_conflicts_total",
        "Multi-limit charges that could not be rolled back exactly and were left in place (stricter).",
        "counter",
        |l| l.rollback_conflicts(),
    ),
    (
        "ringway_ratelimit_tracked_keys",
        "Keys holding a slot in the limiter (idle ones not yet reused included).",
        "gauge",
        |l| l.tracked_keys() as u64,
    ),
    (
        "ringway_ratelimit_max_keys",
        "Slots of the limiter (max_keys): the most keys it can track.",
        "gauge",
        |l| l.max_keys() as u64,
    ),
];

/// Appends the rate-limiter families for `rows` to `out`.
pub fn render_limiters(rows: &[LimiterRow<'_>], out: &mut String) {
    for (name, help, kind, read) in FAMILIES {
        family(out, name, help, kind);
        for r in rows {
            let _ = write!(out, "{name}{{policy=\"");
            push_label_value(out, r.policy);
            let _ = writeln!(out, "\",limit=\"{}\"}} {}", r.limit, read(r.limiter));
        }
    }
}

/// Appends `ringway_ratelimit_redis_unavailable_total` for the global rate-limit policies
/// (`(policy, requests decided by on_redis_error)`).
pub fn render_global_limits(rows: &[(&str, u64)], out: &mut String) {
    let name = "ringway_ratelimit_redis_unavailable_total";
    let help = "Requests of a global rate limit decided without Redis (on_redis_error: the local limiter or 503).";
    family(out, name, help, "counter");
    for (policy, n) in rows {
        let _ = write!(out, "{name}{{policy=\"");
        push_label_value(out, policy);
        let _ = writeln!(out, "\"}} {n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::LimitSpec;
    use std::time::Duration;

    #[test]
    fn renders_every_family_with_policy_and_limit_labels() {
        let spec = LimitSpec {
            requests: 1,
            period: Duration::from_secs(3600),
            burst: 0,
        };
        let l = Limiter::new(spec, 16);
        for i in 0..20u32 {
            assert!(l.check(&i.to_be_bytes(), 1).is_allowed());
        }
        let mut out = String::new();
        render_limiters(
            &[LimiterRow {
                policy: "per\"ip",
                limit: 0,
                limiter: &l,
            }],
            &mut out,
        );
        assert!(out.contains("# TYPE ringway_ratelimit_evictions_total counter\n"));
        assert!(
            out.contains("ringway_ratelimit_evictions_total{policy=\"per\\\"ip\",limit=\"0\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("ringway_ratelimit_tracked_keys{policy=\"per\\\"ip\",limit=\"0\"} 16\n")
        );
        assert!(out.contains("ringway_ratelimit_max_keys{policy=\"per\\\"ip\",limit=\"0\"} 16\n"));
        assert!(
            out.contains("ringway_ratelimit_fail_open_total{policy=\"per\\\"ip\",limit=\"0\"} 0\n")
        );

        let mut empty = String::new();
        render_limiters(&[], &mut empty);
        assert_eq!(empty.matches("# TYPE").count(), 5);
    }
}
