//! `ringway_wasm_failures_total{policy,reason}`: calls into proxy-wasm filters that failed
//! (fuel ran out, a trap, a broken ABI contract, a filter that would not start). Failures are
//! rare and each already costs a 500, so one process-wide map behind a mutex is enough; the
//! request path never touches it otherwise. Counts are kept by policy name, so they stay
//! monotonic across reloads.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use super::render::{family, push_label_value};

static FAILURES: Mutex<BTreeMap<(String, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// Counts one failure of policy `policy` for `reason`.
pub fn failure(policy: &str, reason: &'static str) {
    let mut m = FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    *m.entry((policy.to_string(), reason)).or_insert(0) += 1;
}

/// Appends the family (nothing until a filter failed once).
pub fn render_wasm(out: &mut String) {
    let m = FAILURES.lock().unwrap_or_else(|e| e.into_inner());
    if m.is_empty() {
        return;
    }
    family(
        out,
        "ringway_wasm_failures_total",
        "Calls into proxy-wasm filters that failed (each answered 500), by policy and reason: fuel, memory, memory_limit, stack, trap, out_of_bounds, start, configure, paused, bad_path, lost.",
        "counter",
    );
    for ((policy, reason), n) in m.iter() {
        out.push_str("ringway_wasm_failures_total{policy=\"");
        push_label_value(out, policy);
        let _ = writeln!(out, "\",reason=\"{reason}\"}} {n}");
    }
}
