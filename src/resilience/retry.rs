//! Retry policy math, pure: the compiled per-route policy (`RetryPolicy`), which failures it
//! retries (`RetryOn`, `Failure`), backoff with full jitter, and the per-upstream retry budget
//! (`RetryBudget`: retries in flight ≤ max(min_concurrent, percent × active requests)).
//!
//! No I/O and no clock here: the request path (`exchange::retry`) feeds in what happened and
//! a random number, and gets decisions back.

use std::time::Duration;

/// Which failures a route retries (a bit set over `Failure` kinds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryOn(u16);

impl RetryOn {
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1);
    pub const RESET: RetryOn = RetryOn(2);
    pub const TIMEOUT: RetryOn = RetryOn(4);
    pub const S502: RetryOn = RetryOn(8);
    pub const S503: RetryOn = RetryOn(16);
    pub const S504: RetryOn = RetryOn(32);
    pub const S5XX: RetryOn = RetryOn(64);
    /// What a policy retries when it names no `on`: failures where the upstream sent nothing
    /// back (nginx's `error timeout`).
    pub const DEFAULT: RetryOn = RetryOn(1 | 2 | 4);
    /// The names `on` accepts, for config errors.
    pub const NAMES: &'static str =
        "\"connect-failure\", \"reset\", \"timeout\", \"502\", \"503\", \"504\", \"5xx\"";

    /// The condition named `name` in the config's `on` list.
    pub fn parse(name: &str) -> Option<RetryOn> {
        Some(match name {
            "connect-failure" => RetryOn::CONNECT_FAILURE,
            "reset" => RetryOn::RESET,
            "timeout" => RetryOn::TIMEOUT,
            "502" => RetryOn::S502,
            "503" => RetryOn::S503,
            "504" => RetryOn::S504,
            "5xx" => RetryOn::S5XX,
            _ => return None,
        })
    }

    pub const fn union(self, o: RetryOn) -> RetryOn {
        RetryOn(self.0 | o.0)
    }

    const fn has(self, o: RetryOn) -> bool {
        self.0 & o.0 != 0
    }

    /// Whether failure `f` is one of these conditions.
    pub fn matches(self, f: Failure) -> bool {
        match f {
            Failure::ConnectFailure => self.has(RetryOn::CONNECT_FAILURE),
            Failure::Reset => self.has(RetryOn::RESET),
            Failure::Timeout => self.has(RetryOn::TIMEOUT),
            Failure::Status(s) => {
                (s == 502 && self.has(RetryOn::S502))
                    || (s == 503 && self.has(RetryOn::S503))
                    || (s == 504 && self.has(RetryOn::S504))
                    || ((500..600).contains(&s) && self.has(RetryOn::S5XX))
            }
        }
    }

    /// Whether a response with this status may be retried at all (checked on every response
    /// head of a retrying route, so it must be cheap).
    pub fn retries_status(self, status: u16) -> bool {
        status >= 500 && self.matches(Failure::Status(status))
    }
}

/// What went wrong with one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection: refused, unreachable, TLS handshake failed, or connect timed out.
    /// Nothing was sent, so any method and any body may be retried.
    ConnectFailure,
    /// The upstream closed or reset the connection (or the stream) before a full response head.
    Reset,
    /// No response head within the per-try timeout.
    Timeout,
    /// A complete response head with this status.
    Status(u16),
}

/// Which methods a policy retries (the request reached the upstream, which may have acted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RetryMethods {
    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 §9.2.2).
    #[default]
    Idempotent,
    /// Every method (the route's upstream de-duplicates, or the operations are safe to repeat).
    All,
}

/// A route's retry policy (`[routes.proxy.retry]`), compiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts in all, the first included (≥ 1).
    pub attempts: u32,
    pub on: RetryOn,
    pub methods: RetryMethods,
    /// Longest wait for one attempt's response head; `None`: the upstream's response timeout.
    pub per_try_timeout: Option<Duration>,
    /// The first retry waits up to this long (full jitter), each later one twice as long...
    pub backoff_base: Duration,
    /// ... but never more than this.
    pub backoff_max: Duration,
}

impl RetryPolicy {
    pub const DEFAULT_ATTEMPTS: u32 = 2;
    pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);
    pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_millis(250);

    /// Whether attempt number `attempt` (1-based), which failed with `f`, may be followed by
    /// another: attempts left, `f` is retried, and for anything past the connect, the method
    /// is allowed and the whole body is still at hand (`replayable`).
    pub fn allows(&self, f: Failure, attempt: u32, idempotent: bool, replayable: bool) -> bool {
        if attempt >= self.attempts || !self.on.matches(f) {
            return false;
        }
        match f {
            // Nothing left the gateway: safe whatever the method or body.
            Failure::ConnectFailure => true,
            _ => replayable && (idempotent || self.methods == RetryMethods::All),
        }
    }

    /// The most retry number `retry` (1 = the first retry) may wait: base × 2^(retry-1),
    /// capped at `backoff_max`.
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let shift = retry.saturating_sub(1).min(20);
        let cap = self.backoff_base.saturating_mul(1u32 << shift);
        cap.min(self.backoff_max)
    }

    /// The wait before retry number `retry`, uniformly in `0..=backoff_cap(retry)` from the
    /// random `r` ("full jitter": retries of many clients spread out instead of bunching).
    pub fn backoff(&self, retry: u32, r: u64) -> Duration {
        let cap = self.backoff_cap(retry).as_micros() as u64;
        Duration::from_micros(r % (cap + 1))
    }
}

/// A retry budget (`[upstreams.NAME.retry_budget]`): how many retries may be in flight to the
/// upstream at once, relative to its active requests (Envoy's and Linkerd's model).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryBudget {
    /// Percent of the active requests that may be retries in flight (0..=100).
    pub percent: u32,
    /// Retries always allowed in flight, however few requests are active.
    pub min_concurrent: u32,
}

impl RetryBudget {
    /// The budget used when a route retries to an upstream with no `retry_budget` table.
    pub const DEFAULT: RetryBudget = RetryBudget {
        percent: 20,
        min_concurrent: 3,
    };

    /// Retries allowed in flight while `active` requests are.
    pub fn allowed(&self, active: u32) -> u32 {
        let share = (u64::from(active) * u64::from(self.percent) / 100) as u32;
        share.max(self.min_concurrent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32, on: RetryOn) -> RetryPolicy {
        RetryPolicy {
            attempts,
            on,
            methods: RetryMethods::Idempotent,
            per_try_timeout: None,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
        }
    }

    #[test]
    fn which_outcomes_are_retryable() {
        let p = policy(3, RetryOn::DEFAULT.union(RetryOn::S503));
        assert!(
            p.allows(Failure::ConnectFailure, 1, false, false),
            "nothing was sent"
        );
        assert!(p.allows(Failure::Reset, 1, true, true));
        assert!(p.allows(Failure::Timeout, 2, true, true));
        assert!(p.allows(Failure::Status(503), 1, true, true));
        assert!(
            !p.allows(Failure::Status(502), 1, true, true),
            "502 not named"
        );
        assert!(!p.allows(Failure::Status(500), 1, true, true));
        assert!(
            !p.allows(Failure::Reset, 1, false, true),
            "POST is not retried"
        );
        assert!(
            !p.allows(Failure::Reset, 1, true, false),
            "a streamed body is gone"
        );
        assert!(!p.allows(Failure::Reset, 3, true, true), "attempts cap");
        let all = RetryPolicy {
            methods: RetryMethods::All,
            ..p
        };
        assert!(all.allows(Failure::Reset, 1, false, true), "opted in");
        assert!(
            !all.allows(Failure::Reset, 1, false, false),
            "never a streamed body"
        );
        let x = policy(2, RetryOn::S5XX);
        assert!(x.allows(Failure::Status(500), 1, true, true));
        assert!(x.allows(Failure::Status(599), 1, true, true));
        assert!(!x.on.retries_status(404) && !x.on.retries_status(200));
        assert!(!x.allows(Failure::ConnectFailure, 1, true, true));
    }

    #[test]
    fn names_parse() {
        for n in [
            "connect-failure",
            "reset",
            "timeout",
            "502",
            "503",
            "504",
            "5xx",
        ] {
            assert!(RetryOn::parse(n).is_some(), "{n}");
            assert!(RetryOn::NAMES.contains(n));
        }
        assert_eq!(RetryOn::parse("500"), None);
        assert_eq!(RetryOn::parse("Reset"), None);
    }

    #[test]
    fn backoff_grows_and_stays_within_bounds() {
        let p = policy(10, RetryOn::DEFAULT);
        assert_eq!(p.backoff_cap(1), Duration::from_millis(25));
        assert_eq!(p.backoff_cap(2), Duration::from_millis(50));
        assert_eq!(p.backoff_cap(4), Duration::from_millis(200));
        assert_eq!(p.backoff_cap(5), Duration::from_millis(250));
        assert_eq!(p.backoff_cap(u32::MAX), Duration::from_millis(250));
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..10_000 {
            let d = p.backoff(2, crate::resilience::rng::next());
            assert!(d <= Duration::from_millis(50));
            seen_low |= d < Duration::from_millis(10);
            seen_high |= d > Duration::from_millis(40);
        }
        assert!(seen_low && seen_high, "full jitter spreads over the range");
        let zero = RetryPolicy {
            backoff_base: Duration::ZERO,
            ..p
        };
        assert_eq!(zero.backoff(3, u64::MAX), Duration::ZERO);
    }

    #[test]
    fn budget_is_a_share_of_active_requests_with_a_floor() {
        let b = RetryBudget {
            percent: 20,
            min_concurrent: 3,
        };
        assert_eq!(b.allowed(0), 3);
        assert_eq!(b.allowed(10), 3);
        assert_eq!(b.allowed(100), 20);
        assert_eq!(b.allowed(u32::MAX), (u64::from(u32::MAX) * 20 / 100) as u32);
        let none = RetryBudget {
            percent: 0,
            min_concurrent: 0,
        };
        assert_eq!(none.allowed(1000), 0);
    }
}
