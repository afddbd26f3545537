//! Minimum data rate for slow clients (Kestrel's `MinRequestBodyDataRate` /
//! `MinResponseDataRate` model): over the time a request has spent *waiting on the client*
//! (blocked reading its body, or blocked writing a response it does not read), the average
//! rate must stay at or above `limits.min_data_rate` once that time exceeds
//! `limits.data_rate_grace`.
//!
//! Only time blocked on the client counts, so a slow upstream (a long poll, server-sent events)
//! never makes the client look slow. The check is integer arithmetic at each read/write
//! completion; for writes the remaining allowance also caps the write's deadline, so a client
//! that stops reading altogether is caught by the timer the write already has. No extra timers.

use std::time::Duration;

use crate::config::MinDataRate;

/// Bytes moved and time spent waiting on the client, for one direction of one request.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct RateMeter {
    bytes: u64,
    busy_ns: u64,
}

impl RateMeter {
    /// Total waiting time allowed for `bytes`: the grace period, or `bytes` at the minimum rate.
    fn allowed_ns(rule: &MinDataRate, bytes: u64) -> u64 {
        let grace = u64::try_from(rule.grace.as_nanos()).unwrap_or(u64::MAX);
        grace.max(bytes.saturating_mul(rule.ns_per_byte))
    }

    /// Records a transfer of `n` bytes that waited `took` on the client. `false` = the client is
    /// now below the minimum rate (past the grace period).
    pub(super) fn record(&mut self, rule: &MinDataRate, n: usize, took: Duration) -> bool {
        self.bytes = self.bytes.saturating_add(n as u64);
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns = self.busy_ns.saturating_add(took);
        rule.ns_per_byte == 0 || self.busy_ns <= Self::allowed_ns(rule, self.bytes)
    }

    /// The longest a transfer of `n` more bytes may wait on the client before the client falls
    /// below the minimum rate (`None` = no minimum).
    pub(super) fn budget(&self, rule: &MinDataRate, n: usize) -> Option<Duration> {
        if rule.ns_per_byte == 0 {
            return None;
        }
        let allowed = Self::allowed_ns(rule, self.bytes.saturating_add(n as u64));
        Some(Duration::from_nanos(allowed.saturating_sub(self.busy_ns)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(bytes_per_sec: u64, grace_ms: u64) -> MinDataRate {
        MinDataRate {
            ns_per_byte: 1_000_000_000 / bytes_per_sec,
            grace: Duration::from_millis(grace_ms),
        }
    }

    #[test]
    fn grace_then_average() {
        let r = rule(100, 1000);
        let mut m = RateMeter::default();
        // A byte every 400 ms: fine during the grace second, too slow after it.
        assert!(m.record(&r, 1, Duration::from_millis(400)));
        assert!(m.record(&r, 1, Duration::from_millis(400)));
        assert!(!m.record(&r, 1, Duration::from_millis(400)));
        // A fast client is never flagged, however long it runs.
        let mut m = RateMeter::default();
        for _ in 0..1000 {
            assert!(m.record(&r, 1000, Duration::from_secs(1)));
        }
    }

    #[test]
    fn earlier_fast_transfers_give_credit() {
        let r = rule(1000, 0);
        let mut m = RateMeter::default();
        assert!(m.record(&r, 10_000, Duration::ZERO));
        assert_eq!(m.budget(&r, 0), Some(Duration::from_secs(10)));
        assert!(m.record(&r, 0, Duration::from_secs(9)));
        assert_eq!(m.budget(&r, 1000), Some(Duration::from_secs(2)));
    }

    #[test]
    fn off_means_no_budget() {
        let r = MinDataRate {
            ns_per_byte: 0,
            grace: Duration::ZERO,
        };
        let mut m = RateMeter::default();
        assert!(m.record(&r, 0, Duration::from_secs(1000)));
        assert_eq!(m.budget(&r, 1), None);
    }
}
