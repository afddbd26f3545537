//! Prometheus families for the retry and circuit-breaker counters (`breaker::Load`), read at
//! scrape time on the admin thread from the serving generation's upstreams, never on the
//! request path. Each family gets `# HELP` / `# TYPE` once; rows follow config order.

use std::fmt::Write;

use super::breaker::{Limit, Load, RetryOutcome};

/// Appends the families for `upstreams` (name, load) to `out`.
pub fn render_load<'a>(
    upstreams: impl Iterator<Item = (&'a str, &'a Load)> + Clone,
    out: &mut String,
) {
    head(
        out,
        "ringway_upstream_retries_total",
        "Retry decisions per upstream: retried (a retry was sent) or budget_exhausted (the retry budget refused one).",
        "counter",
    );
    for (name, l) in upstreams.clone() {
        for (o, label) in [
            (RetryOutcome::Retried, "retried"),
            (RetryOutcome::BudgetExhausted, "budget_exhausted"),
        ] {
            let _ = writeln!(
                out,
                "ringway_upstream_retries_total{{upstream=\"{}\",outcome=\"{label}\"}} {}",
                esc(name),
                l.retries_total(o)
            );
        }
    }
    head(
        out,
        "ringway_upstream_overflow_total",
        "Requests answered 503 at once because an upstream circuit-breaker limit was reached.",
        "counter",
    );
    for (name, l) in upstreams.clone() {
        for lim in Limit::ALL {
            let _ = writeln!(
                out,
                "ringway_upstream_overflow_total{{upstream=\"{}\",limit=\"{}\"}} {}",
                esc(name),
                lim.label(),
                l.overflows(lim)
            );
        }
    }
    head(
        out,
        "ringway_upstream_load",
        "Open connections, pending requests, active requests and retries in flight per upstream (counted only while a circuit-breaker limit or retry budget applies).",
        "gauge",
    );
    for (name, l) in upstreams {
        let rows = [
            ("connections", l.current(Limit::Connections)),
            ("pending", l.current(Limit::Pending)),
            ("requests", l.current(Limit::Requests)),
            ("retries", l.retries_in_flight()),
        ];
        for (kind, v) in rows {
            let _ = writeln!(
                out,
                "ringway_upstream_load{{upstream=\"{}\",kind=\"{kind}\"}} {v}",
                esc(name)
            );
        }
    }
}

fn head(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value escaped for the exposition format (names come from the config).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_rows() {
        let l = Load::default();
        let _ = l.hold(Limit::Requests, 1).unwrap();
        let _held = l.hold(Limit::Requests, 1).unwrap();
        assert!(l.hold(Limit::Requests, 1).is_err());
        let mut out = String::new();
        render_load([("api", &l)].into_iter(), &mut out);
        assert!(out.contains("# TYPE ringway_upstream_retries_total counter\n"));
        assert!(out
            .contains("ringway_upstream_overflow_total{upstream=\"api\",limit=\"requests\"} 1\n"));
        assert!(out.contains("ringway_upstream_load{upstream=\"api\",kind=\"requests\"} 1\n"));
        assert!(out.contains(
            "ringway_upstream_retries_total{upstream=\"api\",outcome=\"budget_exhausted\"} 0\n"
        ));
    }
}
