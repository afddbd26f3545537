//! Circuit breaking and the load counters behind it: one `Load` per upstream, shared by every
//! worker (atomics only), counting open connections, requests waiting for a connection or a
//! stream, requests in flight and retries in flight, plus the overflow and retry counters the
//! metrics show.
//!
//! A counter is taken with `Load::hold` against a limit and given back by dropping the
//! returned guard (`Held`, or `ConnSlot` for a connection that outlives the request), so it is
//! released on every path, panics included. Taking is `fetch_add` then a check of the previous
//! value: past the limit the add is undone and the caller answers 503 at once (never queues).
//! Counters are only touched when a limit (or a retry budget) is configured: an upstream with
//! none costs no atomic operation per request.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// An upstream's circuit-breaker limits (`[upstreams.NAME.circuit_breaker]`); 0 = no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BreakerLimits {
    /// Open connections to the upstream (all workers, idle pooled ones included).
    pub max_connections: u32,
    /// Requests waiting for a connection (HTTP/1.1: connecting; HTTP/2: waiting for a
    /// connection being set up or for stream capacity).
    pub max_pending: u32,
    /// Requests in flight to the upstream (from the forward phase to the last body byte).
    pub max_requests: u32,
}

impl BreakerLimits {
    pub fn is_empty(&self) -> bool {
        *self == BreakerLimits::default()
    }
}

/// Which limit refused a request (the metric's `limit` label and the problem body's text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Connections,
    Pending,
    Requests,
}

impl Limit {
    pub const ALL: [Limit; 3] = [Limit::Connections, Limit::Pending, Limit::Requests];

    pub const fn label(self) -> &'static str {
        match self {
            Limit::Connections => "connections",
            Limit::Pending => "pending",
            Limit::Requests => "requests",
        }
    }

    /// The problem body's `detail`.
    pub const fn text(self) -> &'static str {
        match self {
            Limit::Connections => {
                "circuit breaker open: the upstream's connection limit (max_connections) is reached"
            }
            Limit::Pending => {
                "circuit breaker open: too many requests are waiting for an upstream connection (max_pending)"
            }
            Limit::Requests => {
                "circuit breaker open: too many requests are in flight to the upstream (max_requests)"
            }
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// How a retry decision ended, for `ringway_upstream_retries_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOutcome {
    /// A retry was sent.
    Retried,
    /// The policy would have retried but the upstream's retry budget was spent.
    BudgetExhausted,
}

/// One upstream's live counters (process-wide).
#[derive(Debug, Default)]
pub struct Load {
    connections: AtomicU32,
    pending: AtomicU32,
    active: AtomicU32,
    retries: AtomicU32,
    overflow: [AtomicU64; 3],
    retried: AtomicU64,
    budget_exhausted: AtomicU64,
}

/// A held unit of one counter, given back on drop.
#[derive(Debug)]
pub struct Held<'a>(&'a AtomicU32);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A held connection slot: owned (the connection may sit in a pool or move to another
/// generation), given back when the connection is dropped.
#[derive(Debug)]
pub struct ConnSlot(Arc<Load>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes one unit of `c` unless `max` are already held.
fn take(c: &AtomicU32, max: u32) -> bool {
    if c.fetch_add(1, Ordering::AcqRel) >= max {
        c.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    true
}

impl Load {
    fn counter(&self, l: Limit) -> &AtomicU32 {
        match l {
            Limit::Connections => &self.connections,
            Limit::Pending => &self.pending,
            Limit::Requests => &self.active,
        }
    }

    /// Holds one unit of `l`'s counter; `max` = 0 counts without a limit. Past `max`, the
    /// overflow is counted and `Err(l)` returned.
    pub fn hold(&self, l: Limit, max: u32) -> Result<Held<'_>, Limit> {
        let c = self.counter(l);
        if take(c, if max == 0 { u32::MAX } else { max }) {
            Ok(Held(c))
        } else {
            self.overflow[l.index()].fetch_add(1, Ordering::Relaxed);
            Err(l)
        }
    }

    /// Holds a connection slot for a connection about to be opened (`max` = 0: no limit).
    pub fn hold_connection(self: &Arc<Self>, max: u32) -> Result<ConnSlot, Limit> {
        let held = self.hold(Limit::Connections, max)?;
        std::mem::forget(held);
        Ok(ConnSlot(self.clone()))
    }

    /// Holds a retry slot if the budget allows another retry in flight next to the active
    /// requests; counts the outcome either way.
    pub fn hold_retry(&self, budget: &super::retry::RetryBudget) -> Option<Held<'_>> {
        let allowed = budget.allowed(self.active.load(Ordering::Acquire));
        if take(&self.retries, allowed) {
            self.retried.fetch_add(1, Ordering::Relaxed);
            Some(Held(&self.retries))
        } else {
            self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Requests refused by limit `l` so far.
    pub fn overflows(&self, l: Limit) -> u64 {
        self.overflow[l.index()].load(Ordering::Relaxed)
    }

    /// Retry decisions that ended with `o` so far.
    pub fn retries_total(&self, o: RetryOutcome) -> u64 {
        match o {
            RetryOutcome::Retried => self.retried.load(Ordering::Relaxed),
            RetryOutcome::BudgetExhausted => self.budget_exhausted.load(Ordering::Relaxed),
        }
    }

    /// The current value of `l`'s counter (maintained only while a limit or budget is set).
    pub fn current(&self, l: Limit) -> u32 {
        self.counter(l).load(Ordering::Relaxed)
    }

    /// Retries in flight now.
    pub fn retries_in_flight(&self) -> u32 {
        self.retries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::retry::RetryBudget;

    #[test]
    fn limits_refuse_past_max_and_recover_on_drop() {
        let l = Load::default();
        let a = l.hold(Limit::Requests, 2).unwrap();
        let b = l.hold(Limit::Requests, 2).unwrap();
        assert_eq!(l.hold(Limit::Requests, 2).unwrap_err(), Limit::Requests);
        assert_eq!(l.overflows(Limit::Requests), 1);
        assert_eq!(l.current(Limit::Requests), 2, "a refusal leaves no trace");
        drop(a);
        let _c = l.hold(Limit::Requests, 2).unwrap();
        drop(b);
        assert_eq!(l.current(Limit::Requests), 1);
        // 0 = count without a limit.
        let _many: Vec<_> = (0..100)
            .map(|_| l.hold(Limit::Pending, 0).unwrap())
            .collect();
        assert_eq!(l.overflows(Limit::Pending), 0);
    }

    #[test]
    fn connection_slots_are_owned_and_released_on_drop() {
        let l = Arc::new(Load::default());
        let s = l.hold_connection(1).unwrap();
        assert!(l.hold_connection(1).is_err());
        assert_eq!(l.overflows(Limit::Connections), 1);
        drop(s);
        assert_eq!(l.current(Limit::Connections), 0);
        assert!(l.hold_connection(1).is_ok());
    }

    #[test]
    fn released_even_when_the_holder_panics() {
        let l = Load::default();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _h = l.hold(Limit::Requests, 1).unwrap();
            panic!("boom");
        }));
        assert!(r.is_err());
        assert_eq!(l.current(Limit::Requests), 0);
    }

    #[test]
    fn retry_budget_follows_active_requests() {
        let l = Load::default();
        let b = RetryBudget {
            percent: 50,
            min_concurrent: 1,
        };
        let first = l.hold_retry(&b).expect("the floor allows one");
        assert!(
            l.hold_retry(&b).is_none(),
            "over the floor with nothing active"
        );
        let active: Vec<_> = (0..4)
            .map(|_| l.hold(Limit::Requests, 0).unwrap())
            .collect();
        let second = l.hold_retry(&b).expect("50% of 4 active = 2");
        assert!(l.hold_retry(&b).is_none());
        assert_eq!(l.retries_total(RetryOutcome::Retried), 2);
        assert_eq!(l.retries_total(RetryOutcome::BudgetExhausted), 2);
        drop((first, second, active));
        assert_eq!(l.retries_in_flight(), 0);
    }
}
