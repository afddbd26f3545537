//! GCRA arithmetic for one limit: pure functions of a cell's TAT and a timestamp, no state.
//!
//! Owner: `ratelimit`. Units are nanoseconds on the limiter's monotonic clock.
//!
//! Derived from a [`LimitSpec`] (`requests` per `period`, plus `burst`):
//! - emission interval `T = ceil(period / requests)` (at least 1 ns). Rounding up never raises the
//!   rate above `requests / period`; it is exact whenever `period` is a multiple of `requests` ns.
//! - capacity `C = requests + burst` (at least 1), tolerance `L = C · T`.
//!
//! A cell holds a TAT (theoretical arrival time). At time `now` its debt is
//! `d = max(tat, now) − now`. A request is admitted iff `d + T ≤ L`, and then
//! `tat ← max(tat, now) + T`. From idle (`d = 0`) exactly `C` requests pass at one instant, then one
//! per `T`. Invariants: `T ≥ 1`, `T ≤ L ≤ MAX_SPAN`, every TAT and clamped `now` stays below `2^62`
//! (the width the cell table stores).

use std::time::Duration;

use super::spec::{LimitSpec, MAX_SPAN};

/// Largest timestamp the math accepts; later `now` values are clamped (2^61 ns ≈ 73 years).
pub(crate) const MAX_NOW: u64 = 1 << 61;

/// The two numbers GCRA needs, derived once per limiter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// `T`: nanoseconds one request costs.
    interval: u64,
    /// `L = C·T`: the largest debt a cell may reach.
    tolerance: u64,
}

/// Result of evaluating one request against a TAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Admitted: store `new_tat`; `remaining` more would pass now; `reset` until fully idle.
    Admit {
        new_tat: u64,
        remaining: u64,
        reset: u64,
    },
    /// Denied: nothing changes; the next request passes in exactly `retry_after` ns.
    Deny { retry_after: u64, reset: u64 },
}

impl Gcra {
    /// Derives `T` and `L` from a spec, clamping out-of-range values (see [`LimitSpec::validate`]).
    pub(crate) fn new(spec: LimitSpec) -> Gcra {
        let requests = spec.requests.max(1);
        let period = u64::try_from(spec.period.as_nanos())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_SPAN);
        let interval = period.div_ceil(requests).max(1);
        let capacity = requests.saturating_add(spec.burst);
        let tolerance = u64::try_from(u128::from(capacity) * u128::from(interval))
            .unwrap_or(u64::MAX)
            .min(MAX_SPAN)
            .max(interval);
        Gcra {
            interval,
            tolerance,
        }
    }

    /// `T` in nanoseconds.
    pub(crate) fn interval(&self) -> u64 {
        self.interval
    }

    /// Requests a fully idle cell admits at one instant (`L / T`, which is `C` unless clamped).
    pub(crate) fn capacity(&self) -> u64 {
        self.tolerance / self.interval
    }

    /// Evaluates one request at `now` against `tat` (charging is the caller's CAS of `new_tat`).
    pub(crate) fn charge(&self, tat: u64, now: u64) -> Outcome {
        let now = now.min(MAX_NOW);
        let base = tat.max(now);
        let debt = base - now;
        // Admit iff debt + T <= L, written so that no term can overflow.
        if debt <= self.tolerance - self.interval {
            let new_debt = debt + self.interval;
            Outcome::Admit {
                new_tat: base + self.interval,
                remaining: (self.tolerance - new_debt) / self.interval,
                reset: new_debt,
            }
        } else {
            Outcome::Deny {
                retry_after: debt - (self.tolerance - self.interval),
                reset: debt,
            }
        }
    }

    /// What a request at `now` would see without charging: `(remaining, reset, wait)` where
    /// `remaining` counts requests that would pass right now and `wait` is 0 if one would pass.
    pub(crate) fn peek(&self, tat: u64, now: u64) -> (u64, u64, u64) {
        let now = now.min(MAX_NOW);
        let debt = tat.max(now) - now;
        let remaining = self.tolerance.saturating_sub(debt) / self.interval;
        let wait = debt.saturating_sub(self.tolerance - self.interval);
        (remaining, debt, wait)
    }
}

/// Nanoseconds to a `Duration`.
pub(crate) fn ns(d: u64) -> Duration {
    Duration::from_nanos(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(requests: u64, period: Duration, burst: u64) -> LimitSpec {
        LimitSpec {
            requests,
            period,
            burst,
        }
    }

    #[test]
    fn derived_numbers() {
        let g = Gcra::new(spec(100, Duration::from_secs(60), 0));
        assert_eq!(g.interval(), 600_000_000);
        assert_eq!(g.capacity(), 100);
        let g = Gcra::new(spec(100, Duration::from_secs(60), 5));
        assert_eq!(g.capacity(), 105);
        // 3 per second does not divide: T rounds up, so the rate never exceeds 3/s.
        let g = Gcra::new(spec(3, Duration::from_secs(1), 0));
        assert_eq!(g.interval(), 333_333_334);
        assert!(g.interval() * 3 >= 1_000_000_000);
    }

    #[test]
    fn idle_cell_admits_capacity_then_refills_one_per_interval() {
        let g = Gcra::new(spec(4, Duration::from_secs(4), 1));
        let mut tat = 0;
        for i in 0..5 {
            match g.charge(tat, 10_000_000_000) {
                Outcome::Admit {
                    new_tat, remaining, ..
                } => {
                    assert_eq!(remaining, 4 - i);
                    tat = new_tat;
                }
                Outcome::Deny { .. } => panic!("request {i} denied"),
            }
        }
        match g.charge(tat, 10_000_000_000) {
            Outcome::Deny { retry_after, reset } => {
                assert_eq!(retry_after, 1_000_000_000);
                assert_eq!(reset, 5_000_000_000);
            }
            Outcome::Admit { .. } => panic!("sixth request admitted"),
        }
        assert_eq!(g.peek(tat, 11_000_000_000 - 1).2, 1);
        assert_eq!(g.peek(tat, 11_000_000_000), (1, 4_000_000_000, 0));
    }

    #[test]
    fn clamps_absurd_specs_without_overflow() {
        let g = Gcra::new(spec(u64::MAX, Duration::MAX, u64::MAX));
        assert!(g.interval() >= 1 && g.capacity() >= 1);
        let g = Gcra::new(spec(0, Duration::ZERO, 0));
        assert_eq!((g.interval(), g.capacity()), (1, 1));
        match g.charge(0, u64::MAX) {
            Outcome::Admit { new_tat, .. } => assert!(new_tat < 1 << 62),
            Outcome::Deny { .. } => panic!("idle cell denied"),
        }
    }
}
