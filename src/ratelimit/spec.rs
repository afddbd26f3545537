//! A limit and its outcome: `LimitSpec` (`requests` per `period`, plus `burst`) with its
//! validation against the largest span the GCRA math computes exactly (`MAX_SPAN`), and the
//! per-limit `Decision`.

use std::time::Duration;

/// Largest `L = C·T` (2^60 ns ≈ 36 years); specs beyond it are clamped by
/// [`Gcra::new`](super::gcra::Gcra::new).
pub(crate) const MAX_SPAN: u64 = 1 << 60;

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
    /// Checks the spec is within what [`Limiter`](super::limiter::Limiter) computes exactly. The
    /// config compiler calls this; `Limiter::new` clamps specs that fail it instead of panicking.
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
        if period > u128::from(MAX_SPAN) || span > u128::from(MAX_SPAN) {
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
}
