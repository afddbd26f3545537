//! Choosing a target: smooth weighted round-robin over the targets that are not backing off,
//! and the passive back-off of a target that refuses connections. Shared health (active
//! checks, ejection, panic mode) is asked in `available` through `health.rs`.

use std::time::Instant;

use super::UpstreamState;

impl UpstreamState {
    /// Smooth weighted round-robin (each pick adds every weight to its counter, takes the
    /// largest, subtracts the total) over targets that are not backing off and not in
    /// `tried` (bit i = target i already failed for this request).
    pub fn pick(&self, now: Instant, tried: u64) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, t) in self.targets.iter().enumerate() {
            if !self.available(i, now, tried) {
                continue;
            }
            total += t.weight;
            t.current.set(t.current.get() + t.weight);
            if best.is_none_or(|b| t.current.get() > self.targets[b].current.get()) {
                best = Some(i);
            }
        }
        let b = best?;
        let t = &self.targets[b];
        t.current.set(t.current.get() - total);
        Some(b)
    }

    /// Whether target `i` may take this request: not already tried for it (bit i of `tried`)
    /// and not backing off. Every balancing algorithm asks this, so health and ejection
    /// decisions live here once.
    pub fn available(&self, i: usize, now: Instant, tried: u64) -> bool {
        if i < 64 && tried & (1 << i) != 0 {
            return false;
        }
        let Some(t) = self.targets.get(i) else {
            return false;
        };
        if let Some(until) = t.down_until.get() {
            if until > now {
                return false;
            }
            t.down_until.set(None);
        }
        self.health_allows(i, now)
    }

    /// Marks a target as refusing connections for the back-off period and drops its idle pool.
    /// Counts as a connect failure for outlier ejection.
    pub fn mark_down(&self, target: usize, now: Instant) {
        self.record(target, crate::resilience::outlier::Outcome::Connect);
        if let Some(t) = self.targets.get(target) {
            t.down_until.set(Some(now + self.backoff));
            t.idle.clear();
            t.h2.clear();
        }
    }
}
