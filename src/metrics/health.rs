//! Prometheus families for upstream target health: whether each target may take traffic, its
//! ejections by reason and its active-check results.
//!
//! Like the limiters, health lives in process-wide atomics (`resilience::TargetHealth`), read
//! directly at scrape time on the admin thread, never on the request path. The caller passes
//! one row per target of the serving config (config order, so the output is deterministic);
//! label values are config names and addresses as written, never client input.

use std::fmt::Write;

use super::render::{family, push_label_value};
use crate::resilience::outlier::KINDS;
use crate::resilience::TargetHealth;

/// One target of one upstream.
pub struct HealthRow<'a> {
    pub upstream: &'a str,
    /// The target's resolved address (unique within the upstream, unlike a host name that
    /// resolves to several).
    pub target: String,
    pub health: &'a TargetHealth,
    /// Whether the upstream runs active checks (their verdict counts).
    pub checked: bool,
    /// `mono_ms` now (`resilience::outlier::mono_ms`).
    pub now_ms: u64,
}

fn labels(out: &mut String, name: &str, r: &HealthRow<'_>) {
    let _ = write!(out, "{name}{{upstream=\"");
    push_label_value(out, r.upstream);
    out.push_str("\",target=\"");
    push_label_value(out, &r.target);
    out.push('"');
}

/// Appends the health families for `rows` to `out`.
pub fn render_health(rows: &[HealthRow<'_>], out: &mut String) {
    let name = "ringway_upstream_target_healthy";
    family(
        out,
        name,
        "1 when the target may take traffic (passing active checks, not ejected), else 0.",
        "gauge",
    );
    for r in rows {
        labels(out, name, r);
        let up = r.health.usable(r.checked, r.now_ms);
        let _ = writeln!(out, "}} {}", u8::from(up));
    }
    let name = "ringway_upstream_ejections_total";
    family(
        out,
        name,
        "Outlier ejections of a target, by the failure kind that completed the streak.",
        "counter",
    );
    for r in rows {
        let counts = r.health.outlier.ejections_by_reason();
        for ((reason, _), n) in KINDS.iter().zip(counts) {
            labels(out, name, r);
            let _ = writeln!(out, ",reason=\"{reason}\"}} {n}");
        }
    }
    let name = "ringway_upstream_health_checks_total";
    family(
        out,
        name,
        "Active health-check probes of a target, by result (pass or fail).",
        "counter",
    );
    for r in rows.iter().filter(|r| r.checked) {
        let (passed, failed) = r.health.active.probe_counts();
        for (result, n) in [("pass", passed), ("fail", failed)] {
            labels(out, name, r);
            let _ = writeln!(out, ",result=\"{result}\"}} {n}");
        }
    }
}
