//! Choosing a target: the upstream's algorithm (`balance`: smooth weighted round robin, least
//! request in `least_request.rs`, Maglev consistent hashing over `resilience::maglev`) over
//! the targets `available` allows, and the passive back-off of a target that refuses
//! connections. Shared health (active checks, ejection, panic mode) is asked in `available`
//! through `health.rs`.

use std::time::Instant;

use super::UpstreamState;
use crate::config::Balance;

impl UpstreamState {
    /// The target for the next request, among those `available` allows (`tried`: bit i =
    /// target i already failed for this request). `key` is the request's hashed balancing
    /// key (hash upstreams; without one they take round robin).
    #[inline]
    pub fn pick(&self, now: Instant, tried: u64, key: Option<u64>) -> Option<usize> {
        match &self.balance {
            Balance::RoundRobin => self.round_robin(now, tried),
            Balance::LeastRequest => self.least_request(now, tried),
            Balance::Hash { table, .. } => match key {
                Some(h) => table.lookup(h, |i| self.available(i, now, tried)),
                None => self.round_robin(now, tried),
            },
        }
    }

    /// Smooth weighted round-robin (each pick adds every weight to its counter, takes the
    /// largest, subtracts the total) over the available targets.
    fn round_robin(&self, now: Instant, tried: u64) -> Option<usize> {
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
