//! `ringway_forward_auth_total{policy,outcome}`: what each `forward_auth` policy decided.
//!
//! Counters live in a process-wide registry keyed by policy name, so a reload that compiles
//! the policy again keeps counting on the same series (monotonic). Recording is one relaxed
//! atomic add: the call to the authorization service it follows costs far more.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::render::{family, push_label_value};

/// One decision's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The service answered 2xx.
    Allow,
    /// The service answered something else, passed to the client.
    Deny,
    /// No usable answer (timeout, down, bad answer), whatever `fail_open` then did.
    Error,
    /// An allow reused from the decision cache.
    CacheHit,
}

const OUTCOMES: [(AuthOutcome, &str); 4] = [
    (AuthOutcome::Allow, "allow"),
    (AuthOutcome::Deny, "deny"),
    (AuthOutcome::Error, "error"),
    (AuthOutcome::CacheHit, "cache_hit"),
];

/// One policy's counters.
#[derive(Debug, Default)]
pub struct ForwardAuthCounters {
    name: Box<str>,
    counts: [AtomicU64; 4],
}

impl ForwardAuthCounters {
    /// Counts one decision.
    pub fn record(&self, o: AuthOutcome) {
        self.counts[o as usize].fetch_add(1, Relaxed);
    }

    /// The count for `o` so far.
    pub fn get(&self, o: AuthOutcome) -> u64 {
        self.counts[o as usize].load(Relaxed)
    }
}

static REGISTRY: Mutex<Vec<Arc<ForwardAuthCounters>>> = Mutex::new(Vec::new());

/// The counters of the policy named `name` (registered on first use; config compile only).
pub fn forward_auth_counters(name: &str) -> Arc<ForwardAuthCounters> {
    let mut list = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = list.iter().find(|c| &*c.name == name) {
        return c.clone();
    }
    let c = Arc::new(ForwardAuthCounters {
        name: name.into(),
        counts: Default::default(),
    });
    list.push(c.clone());
    c
}

/// Renders the family (nothing when no forward-auth policy was ever compiled).
pub fn render_forward_auth(out: &mut String) {
    let list = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if list.is_empty() {
        return;
    }
    let name = "ringway_forward_auth_total";
    family(
        out,
        name,
        "Forward-auth decisions by policy and outcome.",
        "counter",
    );
    for c in list.iter() {
        for (o, label) in OUTCOMES {
            let _ = write!(out, "{name}{{policy=\"");
            push_label_value(out, &c.name);
            let _ = writeln!(out, "\",outcome=\"{label}\"}} {}", c.get(o));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_outcome_of_a_registered_policy() {
        let c = forward_auth_counters("fa_metric_test");
        c.record(AuthOutcome::Deny);
        c.record(AuthOutcome::Deny);
        let mut out = String::new();
        render_forward_auth(&mut out);
        assert!(out.contains("# TYPE ringway_forward_auth_total counter"));
        assert!(out
            .contains("ringway_forward_auth_total{policy=\"fa_metric_test\",outcome=\"deny\"} 2"));
        assert!(out.contains(
            "ringway_forward_auth_total{policy=\"fa_metric_test\",outcome=\"cache_hit\"} 0"
        ));
    }
}
