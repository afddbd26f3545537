//! Passive outlier ejection (Envoy's model): the compiled `[upstreams.NAME.outlier]`
//! (`OutlierPolicy`), each target's consecutive-failure counter and ejection record
//! (`OutlierState`, atomics shared by every worker), and the pure math: how long an ejection
//! lasts (`ejection_time`), how many targets may be ejected at once (`max_ejected`) and when
//! the balancer ignores health altogether (`in_panic`).
//!
//! Request-path cost when configured: a success is one relaxed load (plus a store only when the
//! counter was not already zero); a failure one relaxed RMW. Ejection itself (rare) takes the
//! upstream's `ejecting` flag so concurrent workers cannot exceed `max_ejection_percent`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An upstream's compiled health settings (`config::health`).
#[derive(Clone, Debug, Default)]
pub struct HealthSettings {
    pub check: Option<std::sync::Arc<super::active::ActiveCheck>>,
    pub outlier: Option<OutlierPolicy>,
    /// Percent of usable targets below which health is ignored (panic mode).
    pub panic_threshold: u8,
}

/// What one upstream attempt came to, as the request path reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A complete response below 500.
    Success,
    /// A response head with status 500-599.
    Status5xx,
    /// The connection was reset or closed before or during the response, or the response was
    /// malformed.
    Reset,
    /// The connection (or its TLS/HTTP/2 setup) failed or timed out.
    Connect,
    /// No response head within the response timeout.
    Timeout,
    /// A response head with status 502, 503 or 504: the upstream itself reports a gateway
    /// failure behind it (Envoy's "gateway errors"), which a client's input rarely provokes.
    /// Counted as `Status5xx` when the policy counts every 5xx.
    GatewayError,
}

/// The failure kinds, in `OutcomeMask` bit order and as written in `on = [...]`.
pub const KINDS: [(&str, Outcome); 5] = [
    ("5xx", Outcome::Status5xx),
    ("reset", Outcome::Reset),
    ("connect", Outcome::Connect),
    ("timeout", Outcome::Timeout),
    ("gateway", Outcome::GatewayError),
];

/// `on` when the table leaves it out: every kind but `gateway` (which `5xx` includes).
pub const DEFAULT_ON: u8 = 0b1111;

impl Outcome {
    /// Bit of this failure kind in `OutlierPolicy::on`, and its index in the reason counters.
    fn index(self) -> Option<usize> {
        KINDS.iter().position(|(_, o)| *o == self)
    }
}

/// A compiled `outlier` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// Failures in a row (of the kinds in `on`) that eject a target.
    pub consecutive: u32,
    /// Bit i set: `KINDS[i]` counts.
    pub on: u8,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    /// Most targets ejected at once, as a percentage of the upstream's targets (at least one
    /// target when there are two or more; never all).
    pub max_ejection_percent: u8,
}

/// Defaults (documented in README, Envoy's): 5 in a row of any kind, 30 s growing to at most
/// 300 s, at most 10 % of the targets (but at least one).
pub const DEFAULT_CONSECUTIVE: u32 = 5;
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_PERCENT: u8 = 10;
/// Default panic threshold (percent of usable targets), Envoy's.
pub const DEFAULT_PANIC_THRESHOLD: u8 = 50;

impl OutlierPolicy {
    /// Whether `o` counts toward ejection.
    #[inline]
    pub fn counts(&self, o: Outcome) -> bool {
        o.index().is_some_and(|i| self.on & (1 << i) != 0)
    }

    /// What a 502/503/504 counts as under this policy: `Status5xx` when it counts every 5xx
    /// (so the ejection's reason stays `5xx`), else `GatewayError`.
    #[inline]
    pub fn kind_of(&self, o: Outcome) -> Outcome {
        match o {
            Outcome::GatewayError if self.counts(Outcome::Status5xx) => Outcome::Status5xx,
            o => o,
        }
    }
}

/// How long ejection number `n` (1 = the first) lasts: `base × n`, capped at `max`.
pub fn ejection_time(base: Duration, max: Duration, n: u32) -> Duration {
    base.saturating_mul(n.max(1)).min(max.max(base))
}

/// How many of `total` targets may be ejected at once: `percent` of them rounded down, at least
/// one when there are two or more targets, and never all of them.
pub fn max_ejected(total: usize, percent: u8) -> usize {
    if total < 2 {
        return 0;
    }
    (total * usize::from(percent) / 100).max(1).min(total - 1)
}

/// Panic mode: fewer than `threshold` percent of the targets are usable, so the balancer
/// spreads load over all of them (Envoy's model). A threshold of 0 never panics.
pub fn in_panic(usable: usize, total: usize, threshold: u8) -> bool {
    total > 0 && usable * 100 < total * usize::from(threshold)
}

/// Milliseconds since the first call in this process (a monotonic clock that fits an atomic;
/// never 0, so 0 can mean "not ejected").
pub fn mono_ms(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| now.checked_sub(Duration::from_secs(1)).unwrap_or(now));
    let ms = now.saturating_duration_since(epoch).as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX).max(1)
}

/// One target's passive state.
#[derive(Debug, Default)]
pub struct OutlierState {
    consecutive: AtomicU32,
    /// `mono_ms` until which the target is ejected (0 or past: not ejected).
    ejected_until: AtomicU64,
    /// Ejections so far (the multiplier of the next ejection time).
    ejections: AtomicU32,
    /// Ejections by reason (`KINDS` order).
    by_reason: [AtomicU64; KINDS.len()],
}

impl OutlierState {
    /// Ejected at `now_ms` (a `mono_ms` value).
    #[inline]
    pub fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Relaxed) > now_ms
    }

    /// `mono_ms` the current ejection ends (0: never ejected).
    pub fn ejected_until(&self) -> u64 {
        self.ejected_until.load(Relaxed)
    }

    /// Counts `o`; true when this failure reached the policy's threshold (the caller then
    /// tries to eject). A success clears the count; a kind the policy ignores leaves it.
    #[inline]
    pub fn count(&self, p: &OutlierPolicy, o: Outcome) -> bool {
        if o == Outcome::Success {
            // Load first: the common success costs no write to a shared cache line.
            if self.consecutive.load(Relaxed) != 0 {
                self.consecutive.store(0, Relaxed);
            }
            return false;
        }
        if !p.counts(o) {
            return false;
        }
        self.consecutive.fetch_add(1, Relaxed).saturating_add(1) >= p.consecutive
    }

    /// Ejects the target from `now_ms` for `base × n` (n = this ejection's number); returns
    /// how long. An ejection long after the last one ended (more than `max_ejection_time`)
    /// starts the multiplier over.
    pub fn eject(&self, p: &OutlierPolicy, reason: Outcome, now_ms: u64) -> Duration {
        let last_end = self.ejected_until.load(Relaxed);
        let quiet = now_ms.saturating_sub(last_end);
        let max_ms = u64::try_from(p.max_ejection_time.as_millis()).unwrap_or(u64::MAX);
        let n = if last_end == 0 || quiet > max_ms {
            1
        } else {
            self.ejections.load(Relaxed).saturating_add(1)
        };
        self.ejections.store(n, Relaxed);
        let d = ejection_time(p.base_ejection_time, p.max_ejection_time, n);
        let d_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.ejected_until
            .store(now_ms.saturating_add(d_ms), Relaxed);
        self.consecutive.store(0, Relaxed);
        if let Some(i) = reason.index() {
            self.by_reason[i].fetch_add(1, Relaxed);
        }
        d
    }

    /// The current ejection multiplier (ejections in the current streak).
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Relaxed)
    }

    /// Ejections so far by reason, in `KINDS` order.
    pub fn ejections_by_reason(&self) -> [u64; KINDS.len()] {
        std::array::from_fn(|i| self.by_reason[i].load(Relaxed))
    }

    /// Failures in a row so far.
    pub fn consecutive(&self) -> u32 {
        self.consecutive.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(consecutive: u32, on: u8) -> OutlierPolicy {
        OutlierPolicy {
            consecutive,
            on,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(100),
            max_ejection_percent: 10,
        }
    }

    #[test]
    fn ejection_time_grows_with_each_ejection_and_is_capped() {
        let (b, m) = (Duration::from_secs(30), Duration::from_secs(100));
        assert_eq!(ejection_time(b, m, 1), Duration::from_secs(30));
        assert_eq!(ejection_time(b, m, 2), Duration::from_secs(60));
        assert_eq!(ejection_time(b, m, 3), Duration::from_secs(90));
        assert_eq!(ejection_time(b, m, 4), Duration::from_secs(100));
        assert_eq!(ejection_time(b, m, u32::MAX), Duration::from_secs(100));
        // A max below base never shortens the base.
        assert_eq!(ejection_time(b, Duration::from_secs(1), 1), b);
    }

    #[test]
    fn max_ejected_never_ejects_everything() {
        assert_eq!(max_ejected(0, 100), 0);
        assert_eq!(max_ejected(1, 100), 0);
        assert_eq!(max_ejected(2, 100), 1);
        assert_eq!(max_ejected(3, 10), 1, "at least one");
        assert_eq!(max_ejected(3, 100), 2);
        assert_eq!(max_ejected(10, 10), 1);
        assert_eq!(max_ejected(10, 50), 5);
        assert_eq!(max_ejected(10, 0), 1);
    }

    #[test]
    fn panic_below_the_threshold_only() {
        assert!(!in_panic(2, 4, 50), "exactly half is not below half");
        assert!(in_panic(1, 4, 50));
        assert!(in_panic(0, 1, 50));
        assert!(!in_panic(0, 3, 0), "threshold 0 disables panic");
        assert!(in_panic(2, 3, 100));
        assert!(!in_panic(0, 0, 50));
    }

    #[test]
    fn consecutive_failures_of_counted_kinds_reach_the_threshold() {
        let p = policy(3, 0b0001); // 5xx only
        let s = OutlierState::default();
        assert!(!s.count(&p, Outcome::Status5xx));
        assert!(!s.count(&p, Outcome::Reset), "not counted, not cleared");
        assert!(!s.count(&p, Outcome::Status5xx));
        assert_eq!(s.consecutive(), 2);
        assert!(!s.count(&p, Outcome::Success));
        assert_eq!(s.consecutive(), 0, "a success clears the streak");
        assert!(!s.count(&p, Outcome::Status5xx));
        assert!(!s.count(&p, Outcome::Status5xx));
        assert!(s.count(&p, Outcome::Status5xx));
    }

    #[test]
    fn repeated_ejections_last_longer_and_a_quiet_period_resets_them() {
        let p = policy(1, 0b1111);
        let s = OutlierState::default();
        let t0 = 1_000;
        assert!(!s.is_ejected(t0));
        assert_eq!(s.eject(&p, Outcome::Reset, t0), Duration::from_secs(30));
        assert!(s.is_ejected(t0 + 29_999));
        assert!(!s.is_ejected(t0 + 30_000));
        let t1 = t0 + 31_000;
        assert_eq!(s.eject(&p, Outcome::Status5xx, t1), Duration::from_secs(60));
        let t2 = t1 + 61_000;
        assert_eq!(s.eject(&p, Outcome::Timeout, t2), Duration::from_secs(90));
        assert_eq!(s.ejections(), 3);
        assert_eq!(s.ejections_by_reason(), [1, 1, 0, 1, 0]);
        // Longer than max_ejection_time without an ejection: back to the base.
        let t3 = s.ejected_until() + 100_001;
        assert_eq!(s.eject(&p, Outcome::Connect, t3), Duration::from_secs(30));
        assert_eq!(s.ejections(), 1);
    }

    #[test]
    fn mono_ms_is_never_zero_and_monotonic() {
        let a = mono_ms(Instant::now());
        let b = mono_ms(Instant::now() + Duration::from_millis(5));
        assert!(a >= 1 && b >= a + 4);
    }
}
