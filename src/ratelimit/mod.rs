//! Rate limiting: GCRA, exact per gateway instance across all workers, lock-free, bounded memory.
//!
//! Owner: the request path calls [`Limiter::check`] / [`check_all`]; the config compiler owns
//! [`LimiterRegistry`], which carries limiters (and so their counters) across reloads.
//!
//! # Model
//! A [`Limiter`] is one limit ([`LimitSpec`]: `requests` per `period`, plus `burst`) applied per
//! key. The key is any byte string the caller builds (consumer, API key id, client IP, a header
//! value, the route). A limiter is `Send + Sync` and shared by every worker through `Arc`: there
//! is one cell per key per gateway instance, not one per core, so a limit is exact for the whole
//! instance, not `workers × limit`.
//!
//! # Algorithm and admission bound
//! GCRA (see `gcra.rs`): emission interval `T = ceil(period / requests)` ns, capacity
//! `C = requests + burst`. From idle, exactly `C` requests pass at one instant (100/min burst 0:
//! 100; burst 5: 105), then one per `T` (100/min: one every 600 ms). For any key that is never
//! evicted while active (below), and for any `t ≥ 0` and any window `[s, s + t]` of the `now_ns`
//! values passed to `check`:
//!
//! ```text
//! admitted ≤ C + floor(t / T) ≤ requests + burst + floor(t · requests / period)
//! ```
//!
//! Proof: a key's TAT never decreases (see "Reclaiming"), each admission raises it by at least
//! `T`, and the first admission stamped in the window leaves it `≥ s + T`; so before the `m`-th
//! one it is `≥ s + (m−1)·T`, while admitting at `now ≤ s + t` needs `TAT ≤ now + (C−1)·T`. Hence
//! `m ≤ C + floor(t / T)`, and `T ≥ period / requests` gives the second form. Both are tight
//! when `period` is a multiple of `requests` ns (`C` at `s`, then one per `T`). The bound holds
//! whatever the order in which concurrent callers' stamps arrive.
//!
//! # Concurrency (no lock on the request path)
//! Each limiter owns a fixed table of 128-bit atomic slots `(fingerprint, status | TAT)` (see
//! `table.rs` for the full protocol and its proof). Charging is a CAS loop on the key's one
//! `LIVE` slot; a denial writes nothing. A new key is inserted by claiming a slot as
//! `PENDING(fp, unique nonce)` and then *settling*: any thread that meets the claim scans the key's
//! 16-slot window, yields to an earlier claim, frees later ones, and confirms only if no `LIVE`
//! cell exists. Two threads inserting the same new key therefore end on one cell, and reusing
//! another key's idle slot is the same claim-and-settle, so a key is never in two cells.
//!
//! # Reclaiming and bounded memory
//! A table has exactly `max_keys` slots (16 B each), allocated in [`Limiter::new`]; nothing
//! grows afterwards. A cell whose `TAT ≤ now` is idle and carries no information, so a new key
//! may take it, by CAS against the exact idle value (which fails if it was charged meanwhile).
//! `TAT ≤ watermark` or `≤` the latest `now` an insert has seen counts as idle too, so a caller
//! whose `now` lags finds the cells everyone else sees as idle. Before reclaiming, the table's
//! watermark is raised to the reclaimed TAT, and every new cell starts at the watermark: a key's
//! TAT never goes backwards across cells, even for callers whose `now` lags (and the watermark
//! never exceeds the largest `now` passed, so fresh keys get their full burst).
//!
//! Victims, in order: an empty slot, the most idle cell in the key's window, then — only when
//! all 16 slots of the window hold active keys — the active key with the smallest TAT. That key
//! restarts with a fresh burst (it may exceed its bound by its lost debt, `ceil((TAT − now) / T)`
//! requests): the chosen trade-off over rejecting new keys. [`Limiter::active_evictions`] counts
//! it for alarms; size `max_keys` well above the number of keys active within one `C·T`.
//! Requests admitted by the fail-open path (a lookup that lost 64 races in a row; never seen in
//! tests) are outside the bound and counted by [`Limiter::fail_open_admits`].
//!
//! # Several limits per request
//! [`check_all`] first reads every limit without writing; any denial returns at once, having
//! consumed nothing. Otherwise it charges the tightest limit first, then the others. If a
//! concurrent request takes the last unit of a later limit between the read and the charge,
//! the limits already charged are rolled back by CAS to their exact previous value; if that
//! cell was charged again meanwhile an exact undo is not computable, so the charge is left in
//! place (stricter, never looser) and counted in [`Limiter::rollback_conflicts`].
//!
//! # Identity of keys
//! Keys are stored as a 64-bit keyed hash (`ahash`, random per limiter). Two keys share a cell
//! only if their fingerprints collide and their windows overlap: about `2^-64` per pair, not
//! reachable by an attacker who does not know the per-process seed.
//!
//! # Time
//! All times are `u64` nanoseconds since a process-wide epoch ([`now_ns`], monotonic). They are
//! passed in, so tests drive a fake clock; all callers of one limiter must use the same clock (a
//! stamp far in the future would age every cell at once). Stamps up to 2^61 ns are supported.
//!
//! # Reloads
//! [`LimiterRegistry::get_or_create`] returns the same `Arc<Limiter>` for an unchanged identity,
//! spec and `max_keys`, so counters survive a config reload.
//!
//! # Response headers
//! [`write_headers`] renders `RateLimit-Policy` and `RateLimit` per
//! draft-ietf-httpapi-ratelimit-headers-11, and `Retry-After` (whole seconds, rounded up).

mod gcra;
mod headers;
mod limiter;
mod multi;
mod registry;
mod table;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use headers::{retry_after_secs, write_headers, write_headers_named};
pub use limiter::Limiter;
pub use multi::{check_all, MultiDecision};
pub use registry::LimiterRegistry;

/// One limit: `requests` per `period`, plus `burst` extra requests an idle key may send at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LimitSpec {
    /// Sustained requests per `period`; at least 1.
    pub requests: u64,
    /// The window `requests` refer to; at least 1 ns.
    pub period: Duration,
    /// Extra requests on top of `requests` that an idle key may send at one instant (≥ 0).
    pub burst: u64,
}

/// Why a [`LimitSpec`] is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// `requests` is 0.
    ZeroRequests,
    /// `period` is 0.
    ZeroPeriod,
    /// `(requests + burst) × period / requests` exceeds 2^60 ns (about 36 years).
    TooLong,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpecError::ZeroRequests => "requests must be at least 1",
            SpecError::ZeroPeriod => "period must be longer than zero",
            SpecError::TooLong => "(requests + burst) x period / requests must be under 36 years",
        })
    }
}

impl std::error::Error for SpecError {}

impl LimitSpec {
    /// Checks the spec is within what [`Limiter`] computes exactly. The config compiler calls
    /// this; `Limiter::new` clamps specs that fail it instead of panicking.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.requests == 0 {
            return Err(SpecError::ZeroRequests);
        }
        if self.period.is_zero() {
            return Err(SpecError::ZeroPeriod);
        }
        let period = self.period.as_nanos();
        let interval = period.div_ceil(u128::from(self.requests));
        let span = interval * (u128::from(self.requests) + u128::from(self.burst));
        if period > u128::from(gcra::MAX_SPAN) || span > u128::from(gcra::MAX_SPAN) {
            return Err(SpecError::TooLong);
        }
        Ok(())
    }
}

/// Outcome of one limit for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted (and charged, for `check`). `remaining`: requests that would still pass right
    /// now; `reset`: time until the key is fully idle again.
    Allow { remaining: u64, reset: Duration },
    /// Denied, nothing charged. `retry_after`: exact time until a request would pass (if no
    /// other request is charged meanwhile); `reset`: time until the key is fully idle again.
    Deny {
        retry_after: Duration,
        reset: Duration,
    },
}

impl Decision {
    /// True for `Allow`.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the process-wide epoch (the first call), from the monotonic clock.
pub fn now_ns() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(Instant::now().saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_unusable_specs() {
        let ok = LimitSpec {
            requests: 100,
            period: Duration::from_secs(60),
            burst: 5,
        };
        assert_eq!(ok.validate(), Ok(()));
        let zero = LimitSpec { requests: 0, ..ok };
        assert_eq!(zero.validate(), Err(SpecError::ZeroRequests));
        let zero = LimitSpec {
            period: Duration::ZERO,
            ..ok
        };
        assert_eq!(zero.validate(), Err(SpecError::ZeroPeriod));
        let long = LimitSpec {
            burst: u64::MAX,
            ..ok
        };
        assert_eq!(long.validate(), Err(SpecError::TooLong));
        let long = LimitSpec {
            period: Duration::from_secs(100 * 365 * 86_400),
            ..ok
        };
        assert_eq!(long.validate(), Err(SpecError::TooLong));
    }

    #[test]
    fn clock_is_monotonic() {
        let a = now_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = now_ns();
        assert!(b >= a + 2_000_000, "{a} {b}");
    }
}
