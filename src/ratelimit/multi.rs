//! `check_all`: one request against several limits; admitted only if every limit admits.
//!
//! Owner: `ratelimit`. Invariants: a denial found while reading (phase 1) consumes nothing; a
//! denial found while charging (phase 2, a concurrent request took the last unit) rolls back the
//! limits already charged, exactly when their cell is untouched since our charge, otherwise the
//! charge is left and counted (see `mod.rs`). No allocation for up to `INLINE` limits.

use std::time::Duration;

use super::gcra::ns;
use super::limiter::{Charge, Limiter};
use super::spec::Decision;

/// Limits per request handled without allocating.
const INLINE: usize = 8;

/// The combined decision, with the most restrictive limit's numbers for response headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MultiDecision {
    /// True if every limit admitted (and all were charged).
    pub allowed: bool,
    /// `requests` of the reported limit (the quota advertised as `q`).
    pub limit: u64,
    /// Requests the reported limit would still admit right now (0 on deny).
    pub remaining: u64,
    /// Time until the reported limit's cell is fully idle.
    pub reset: Duration,
    /// On deny: time until every limit would admit again (the longest wait), exact if nothing
    /// else is charged meanwhile.
    pub retry_after: Option<Duration>,
    /// Index into the `limits` slice of the reported limit: on allow the one with the fewest
    /// remaining requests, on deny the one with the longest wait.
    pub policy_index: usize,
}

impl MultiDecision {
    fn denied(lim: &Limiter, index: usize, wait: Duration, reset: Duration) -> MultiDecision {
        MultiDecision {
            allowed: false,
            limit: lim.spec().requests,
            remaining: 0,
            reset,
            retry_after: Some(wait),
            policy_index: index,
        }
    }
}

/// Charges done so far, so a late denial can undo them.
struct Undo {
    inline: [Option<(usize, Charge)>; INLINE],
    len: usize,
    spill: Vec<(usize, Charge)>,
}

impl Undo {
    fn new() -> Undo {
        Undo {
            inline: [None; INLINE],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, index: usize, c: Charge) {
        if self.len < INLINE {
            self.inline[self.len] = Some((index, c));
            self.len += 1;
        } else {
            self.spill.push((index, c));
        }
    }

    fn rollback(self, limits: &[(&Limiter, &[u8])]) {
        let done = self.inline.into_iter().flatten().chain(self.spill);
        for (index, c) in done {
            if let Some((lim, _)) = limits.get(index) {
                lim.rollback(c);
            }
        }
    }
}

/// Checks one request against all its limits at `now_ns`: admitted only if every limit admits,
/// and then charged to every limit; a denied request consumes no quota (see the module header
/// for the one concurrent exception). An empty `limits` is allowed with `limit = 0`.
pub fn check_all(limits: &[(&Limiter, &[u8])], now_ns: u64) -> MultiDecision {
    // Phase 1: read every limit; deny with the longest wait, remember the tightest.
    let mut deny: Option<(usize, u64, u64)> = None;
    let mut tightest = 0;
    let mut tightest_remaining = u64::MAX;
    for (i, (lim, key)) in limits.iter().enumerate() {
        let p = lim.peek_raw(key, now_ns);
        if p.wait > 0 {
            if deny.is_none_or(|(_, w, _)| p.wait > w) {
                deny = Some((i, p.wait, p.reset));
            }
        } else if p.remaining < tightest_remaining {
            tightest = i;
            tightest_remaining = p.remaining;
        }
    }
    if let Some((i, wait, reset)) = deny {
        return MultiDecision::denied(limits[i].0, i, ns(wait), ns(reset));
    }
    let Some(&(first, _)) = limits.get(tightest) else {
        return MultiDecision {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset: Duration::ZERO,
            retry_after: None,
            policy_index: 0,
        };
    };

    // Phase 2: charge the tightest limit first (the likeliest to flip), then the rest in order.
    let mut undo = Undo::new();
    let mut report = MultiDecision {
        allowed: true,
        limit: first.spec().requests,
        remaining: u64::MAX,
        reset: Duration::ZERO,
        retry_after: None,
        policy_index: tightest,
    };
    let order = std::iter::once(tightest).chain((0..limits.len()).filter(|&i| i != tightest));
    for i in order {
        let (lim, key) = limits[i];
        match lim.charge(key, now_ns) {
            (Decision::Allow { remaining, reset }, charge) => {
                if let Some(c) = charge {
                    undo.push(i, c);
                }
                let tighter = remaining < report.remaining
                    || (remaining == report.remaining && reset > report.reset);
                if tighter {
                    report.limit = lim.spec().requests;
                    report.remaining = remaining;
                    report.reset = reset;
                    report.policy_index = i;
                }
            }
            (Decision::Deny { retry_after, reset }, _) => {
                undo.rollback(limits);
                return MultiDecision::denied(lim, i, retry_after, reset);
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::super::LimitSpec;
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn per_second() -> Limiter {
        Limiter::new(
            LimitSpec {
                requests: 10,
                period: Duration::from_secs(1),
                burst: 0,
            },
            1024,
        )
    }

    fn per_day() -> Limiter {
        Limiter::new(
            LimitSpec {
                requests: 10_000,
                period: Duration::from_secs(86_400),
                burst: 0,
            },
            1024,
        )
    }

    fn remaining(lim: &Limiter, key: &[u8], now: u64) -> u64 {
        match lim.peek(key, now) {
            Decision::Allow { remaining, .. } => remaining,
            Decision::Deny { .. } => 0,
        }
    }

    #[test]
    fn per_second_denial_does_not_consume_daily_quota() {
        let (ps, pd) = (per_second(), per_day());
        let limits: [(&Limiter, &[u8]); 2] = [(&ps, b"alice"), (&pd, b"alice")];
        for i in 0..10 {
            let d = check_all(&limits, 0);
            assert!(d.allowed, "request {i}");
        }
        for _ in 0..500 {
            let d = check_all(&limits, 0);
            assert!(!d.allowed);
            assert_eq!(d.policy_index, 0);
            assert_eq!(d.limit, 10);
            assert_eq!(d.retry_after, Some(Duration::from_millis(100)));
        }
        assert_eq!(remaining(&pd, b"alice", 0), 10_000 - 10);
        assert_eq!(remaining(&ps, b"alice", 0), 0);
        // Exactly one more per 100 ms, still charged to both.
        assert!(check_all(&limits, SEC / 10).allowed);
        assert!(!check_all(&limits, SEC / 10).allowed);
        assert_eq!(remaining(&pd, b"alice", SEC / 10), 10_000 - 11);
    }

    #[test]
    fn daily_denial_does_not_consume_per_second_quota() {
        let (ps, pd) = (per_second(), per_day());
        let limits: [(&Limiter, &[u8]); 2] = [(&ps, b"bob"), (&pd, b"bob")];
        // One request every 100 ms never trips 10/s, but exhausts 10 000/day eventually.
        let mut t = 0;
        let mut admitted = 0u64;
        let denied_at = loop {
            let d = check_all(&limits, t);
            if !d.allowed {
                break d;
            }
            admitted += 1;
            t += SEC / 10;
            assert!(admitted < 20_000, "daily limit never tripped");
        };
        assert_eq!(denied_at.policy_index, 1);
        assert_eq!(denied_at.limit, 10_000);
        // Bound: C + floor(elapsed / T) with T = 8.64 s.
        let bound = 10_000 + t / 8_640_000_000;
        assert!(
            admitted <= bound && admitted + 1 >= bound,
            "{admitted} vs {bound}"
        );
        let before = remaining(&ps, b"bob", t);
        for _ in 0..1_000 {
            assert!(!check_all(&limits, t).allowed);
        }
        assert_eq!(remaining(&ps, b"bob", t), before);
        assert_eq!(
            before, 10,
            "one request per 100 ms leaves 10/s fully refilled"
        );
        let wait = denied_at.retry_after.expect("deny has retry_after");
        assert!(!check_all(&limits, t + wait.as_nanos() as u64 - 1).allowed);
        assert!(check_all(&limits, t + wait.as_nanos() as u64).allowed);
    }

    #[test]
    fn reports_the_most_restrictive_limit() {
        let (ps, pd) = (per_second(), per_day());
        let limits: [(&Limiter, &[u8]); 2] = [(&pd, b"k"), (&ps, b"k")];
        let d = check_all(&limits, 0);
        assert!(d.allowed);
        assert_eq!((d.policy_index, d.limit, d.remaining), (1, 10, 9));
        assert_eq!(d.reset, Duration::from_millis(100));
        assert_eq!(d.retry_after, None);
        let empty = check_all(&[], 0);
        assert!(empty.allowed && empty.limit == 0);
    }

    #[test]
    fn rollback_is_exact_when_untouched_and_conservative_otherwise() {
        let ps = per_second();
        let (d, c) = ps.charge(b"x", 0);
        assert!(d.is_allowed());
        assert!(ps.rollback(c.expect("tracked")));
        assert_eq!(remaining(&ps, b"x", 0), 10);
        let (_, c) = ps.charge(b"x", 0);
        assert!(ps.check(b"x", 0).is_allowed());
        assert!(!ps.rollback(c.expect("tracked")));
        assert_eq!(remaining(&ps, b"x", 0), 8);
        assert_eq!(ps.rollback_conflicts(), 1);
    }

    #[test]
    fn many_limits_spill_past_the_inline_undo_log() {
        let lims: Vec<Limiter> = (0..12).map(|_| per_second()).collect();
        let limits: Vec<(&Limiter, &[u8])> = lims.iter().map(|l| (l, &b"k"[..])).collect();
        for _ in 0..10 {
            assert!(check_all(&limits, 0).allowed);
        }
        assert!(!check_all(&limits, 0).allowed);
        assert!(lims.iter().all(|l| remaining(l, b"k", 0) == 0));
    }

    #[test]
    fn concurrent_requests_on_two_shared_limits_are_admitted_exactly() {
        let hour = Duration::from_secs(3_600);
        let a = Limiter::new(
            LimitSpec {
                requests: 300,
                period: hour,
                burst: 0,
            },
            64,
        );
        let b = Limiter::new(
            LimitSpec {
                requests: 200,
                period: hour,
                burst: 0,
            },
            64,
        );
        let admitted: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let limits: [(&Limiter, &[u8]); 2] = [(&a, b"shared"), (&b, b"shared")];
                        (0..5_000)
                            .filter(|_| check_all(&limits, 7 * SEC).allowed)
                            .count() as u64
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(admitted, 200);
        assert_eq!(remaining(&b, b"shared", 7 * SEC), 0);
        // The looser limit was charged once per admitted request, plus one per rollback that
        // found its cell already charged again (counted, never silently).
        let leaked = a.rollback_conflicts();
        assert_eq!(remaining(&a, b"shared", 7 * SEC), 300 - 200 - leaked);
    }
}
