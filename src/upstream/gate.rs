//! An upstream's health settings as one worker holds them (`HealthGate`): whether active
//! checks count, the outlier policy, the panic threshold, and the worker's cached panic-mode
//! verdict. The decisions over it live in `health.rs`.

use std::cell::Cell;

use crate::config::Upstream;
use crate::resilience::outlier::OutlierPolicy;

/// An upstream's health settings on one worker, with its panic-mode cache.
pub struct HealthGate {
    /// Active checks run for this upstream (their verdict counts).
    pub(super) checked: bool,
    pub(super) outlier: Option<OutlierPolicy>,
    pub(super) panic_threshold: u8,
    /// (health epoch seen, `mono_ms` the verdict holds until, in panic).
    pub(super) panic: Cell<(u64, u64, bool)>,
}

impl HealthGate {
    /// `None` when `u` configures no health at all (the fast path).
    pub fn new(u: &Upstream) -> Option<HealthGate> {
        let h = &u.health;
        if h.check.is_none() && h.outlier.is_none() {
            return None;
        }
        Some(HealthGate {
            checked: h.check.is_some(),
            outlier: h.outlier.clone(),
            panic_threshold: h.panic_threshold,
            panic: Cell::new((u64::MAX, 0, false)),
        })
    }
}
