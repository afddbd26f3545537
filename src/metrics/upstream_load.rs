//! Prometheus families for the process-wide upstream counters of `resilience`: retry
//! decisions, circuit-breaker overflows and current load (`breaker::Load`), and mirrored
//! requests (`MirrorStats`). Read at scrape time on the admin thread from the serving
//! generation's upstreams, never on the request path; rows follow config order, and label
//! values are config names, never client input.

use std::fmt::Write;

use super::render::{family, push_label_value};
use crate::resilience::breaker::{Limit, Load, RetryOutcome};
use crate::resilience::mirror_stats::{MirrorOutcome, MirrorStats};

/// `name{upstream="…",` (the caller adds the second label and closes the braces).
fn open(out: &mut String, name: &str, upstream: &str) {
    let _ = write!(out, "{name}{{upstream=\"");
    push_label_value(out, upstream);
    out.push_str("\",");
}

/// Appends the retry, overflow and load families for `upstreams` (name, load).
pub fn render_load<'a>(
    upstreams: impl Iterator<Item = (&'a str, &'a Load)> + Clone,
    out: &mut String,
) {
    let name = "ringway_upstream_retries_total";
    family(
        out,
        name,
        "Retry decisions per upstream: retried (a retry was sent) or budget_exhausted (the retry budget refused one).",
        "counter",
    );
    for (up, l) in upstreams.clone() {
        for (o, label) in [
            (RetryOutcome::Retried, "retried"),
            (RetryOutcome::BudgetExhausted, "budget_exhausted"),
        ] {
            open(out, name, up);
            let _ = writeln!(out, "outcome=\"{label}\"}} {}", l.retries_total(o));
        }
    }
    let name = "ringway_upstream_overflow_total";
    family(
        out,
        name,
        "Requests answered 503 at once because an upstream circuit-breaker limit was reached.",
        "counter",
    );
    for (up, l) in upstreams.clone() {
        for lim in Limit::ALL {
            open(out, name, up);
            let _ = writeln!(out, "limit=\"{}\"}} {}", lim.label(), l.overflows(lim));
        }
    }
    let name = "ringway_upstream_load";
    family(
        out,
        name,
        "Open connections, pending requests, active requests and retries in flight per upstream (counted only while a circuit-breaker limit or retry budget applies).",
        "gauge",
    );
    for (up, l) in upstreams {
        let rows = [
            ("connections", l.current(Limit::Connections)),
            ("pending", l.current(Limit::Pending)),
            ("requests", l.current(Limit::Requests)),
            ("retries", l.retries_in_flight()),
        ];
        for (kind, v) in rows {
            open(out, name, up);
            let _ = writeln!(out, "kind=\"{kind}\"}} {v}");
        }
    }
}

/// Appends `ringway_upstream_mirror_total` for every upstream that saw a mirror outcome.
pub fn render_mirrors<'a>(
    rows: impl Iterator<Item = (&'a str, &'a MirrorStats)>,
    out: &mut String,
) {
    let name = "ringway_upstream_mirror_total";
    let mut header = false;
    for (up, stats) in rows.filter(|(_, s)| s.any()) {
        if !header {
            header = true;
            family(
                out,
                name,
                "Shadow copies of sampled requests by outcome (sent, failed, skipped, dropped).",
                "counter",
            );
        }
        for o in MirrorOutcome::ALL {
            open(out, name, up);
            let _ = writeln!(out, "outcome=\"{}\"}} {}", o.label(), stats.get(o));
        }
    }
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

    #[test]
    fn renders_only_upstreams_with_mirrors() {
        let (a, b) = (MirrorStats::default(), MirrorStats::default());
        a.count(MirrorOutcome::Sent);
        a.count(MirrorOutcome::Sent);
        a.count(MirrorOutcome::Dropped);
        let mut out = String::new();
        render_mirrors([("shadow", &a), ("idle", &b)].into_iter(), &mut out);
        assert!(
            out.contains("ringway_upstream_mirror_total{upstream=\"shadow\",outcome=\"sent\"} 2")
        );
        assert!(out.contains("{upstream=\"shadow\",outcome=\"dropped\"} 1"));
        assert!(!out.contains("idle"));
        assert_eq!(out.matches("# TYPE").count(), 1);
    }
}
