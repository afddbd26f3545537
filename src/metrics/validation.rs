//! `ringway_openapi_validation_total{api,operation,result}`: the requests each imported
//! operation's `validate` policy failed (`refused`, or `reported`: failed in report mode and
//! forwarded anyway). Requests that pass are not counted here: they are the route's requests
//! (`ringway_requests_total{route}`) minus these, and counting them would put a write to a
//! process-wide cache line on every valid request of every worker.
//!
//! Counters live in a process-wide registry keyed by (api, operation), so a reload keeps
//! counting on the same series; recording a failure is one relaxed atomic add (no lock on the
//! request path; the registry's lock is taken at config compile and scrape only).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::render::{family, push_label_value};

/// One validation's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    Refused,
    Reported,
}

const RESULTS: [(Checked, &str); 2] = [
    (Checked::Refused, "refused"),
    (Checked::Reported, "reported"),
];

/// One operation's counters.
#[derive(Debug, Default)]
pub struct ValidationCounters {
    api: Box<str>,
    operation: Box<str>,
    counts: [AtomicU64; 2],
    /// The Unix second a report-mode failure was last logged (one line per second at most).
    logged: AtomicU64,
}

impl ValidationCounters {
    /// Counts one result.
    pub fn record(&self, c: Checked) {
        self.counts[c as usize].fetch_add(1, Relaxed);
    }

    /// The count for `c` so far.
    pub fn get(&self, c: Checked) -> u64 {
        self.counts[c as usize].load(Relaxed)
    }

    /// Whether a report-mode failure seen at Unix second `now` should be logged: the first of
    /// each second is (a flood of bad requests costs one log line a second, and the counter
    /// still counts every one).
    pub fn log_now(&self, now: u64) -> bool {
        let last = self.logged.load(Relaxed);
        last != now
            && self
                .logged
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
    }
}

static REGISTRY: Mutex<Vec<Arc<ValidationCounters>>> = Mutex::new(Vec::new());

/// The counters of operation `operation` of API `api` (registered on first use; config
/// compile only).
pub fn validation_counters(api: &str, operation: &str) -> Arc<ValidationCounters> {
    let mut list = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = list
        .iter()
        .find(|c| &*c.api == api && &*c.operation == operation)
    {
        return c.clone();
    }
    let c = Arc::new(ValidationCounters {
        api: api.into(),
        operation: operation.into(),
        counts: Default::default(),
        logged: AtomicU64::new(0),
    });
    list.push(c.clone());
    c
}

/// Renders the family (nothing when no operation was ever validated).
pub fn render_validation(out: &mut String) {
    let list = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if list.is_empty() {
        return;
    }
    let name = "ringway_openapi_validation_total";
    family(
        out,
        name,
        "Requests that failed OpenAPI validation, by API, operation and result (refused; reported: forwarded in report mode).",
        "counter",
    );
    for c in list.iter() {
        for (r, label) in RESULTS {
            let _ = write!(out, "{name}{{api=\"");
            push_label_value(out, &c.api);
            out.push_str("\",operation=\"");
            push_label_value(out, &c.operation);
            let _ = writeln!(out, "\",result=\"{label}\"}} {}", c.get(r));
        }
    }
}
