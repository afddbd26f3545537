//! Retries and circuit breaking on the request path, for both upstream protocols
//! (`exchange::send` for HTTP/1.1, `exchange::forward_h2` for HTTP/2): one `Retries` per
//! exchange decides, after each failed attempt, whether another is made (the route's
//! `RetryPolicy`, attempts left, time left, the upstream's retry budget), waits the jittered
//! backoff, and carries the targets already tried so a retry prefers another one.
//!
//! Without a policy the behaviour is the fixed one: a refused connection moves on to the next
//! target, and a request that failed on a stale pooled connection before any response byte is
//! resent once on a fresh one. That resend is free in every mode: it is not an attempt, takes
//! no budget and no backoff. With a policy, `response_timeout` bounds the whole exchange up to
//! the response head (retries and backoff included) and `per_try_timeout` each attempt.
//!
//! Circuit breaking: `admit` holds the upstream's active-request count for the exchange
//! (only when a `max_requests` limit or a retry budget needs it); `pending` and
//! `connection` hold the pending and connection counts around a connect. Each is a guard
//! released on drop, whatever path the exchange takes.

use std::time::{Duration, Instant};

use crate::http1::{self, BodyFraming, Method};
use crate::resilience::{Failure, Held, Limit, RetryPolicy};
use crate::upstream::{UpConn, UpstreamState};

use super::error::{ErrorKind, ProxyError};

/// The overflow error of limit `l`.
fn overflow(l: Limit) -> ProxyError {
    ProxyError::new(ErrorKind::UpstreamOverflow(l))
}

/// Holds one of the upstream's active requests for the exchange (`max_requests`, and the
/// retry budget's share). `Ok(None)`: nothing to count, no atomic touched.
pub fn admit(us: &UpstreamState) -> Result<Option<Held<'_>>, ProxyError> {
    let max = us.breaker.max_requests;
    if max == 0 && us.retry_budget.is_none() {
        return Ok(None);
    }
    us.shared
        .load
        .hold(Limit::Requests, max)
        .map(Some)
        .map_err(overflow)
}

/// Holds one pending request (waiting for a connection) while `max_pending` is set.
pub fn pending(us: &UpstreamState) -> Result<Option<Held<'_>>, ProxyError> {
    let max = us.breaker.max_pending;
    if max == 0 {
        return Ok(None);
    }
    us.shared
        .load
        .hold(Limit::Pending, max)
        .map(Some)
        .map_err(overflow)
}

/// Holds a connection slot for a connection about to open while `max_connections` is set.
pub fn connection(us: &UpstreamState) -> Result<Option<crate::resilience::ConnSlot>, ProxyError> {
    let max = us.breaker.max_connections;
    if max == 0 {
        return Ok(None);
    }
    us.shared
        .load
        .hold_connection(max)
        .map(Some)
        .map_err(overflow)
}

/// One exchange's retry state.
pub struct Retries<'a> {
    policy: Option<&'a RetryPolicy>,
    us: &'a UpstreamState,
    /// The attempt in progress (1-based): `x-ringway-attempts`.
    pub attempt: u32,
    /// Targets that failed this exchange (bit i = target i); retries avoid them while others
    /// are available.
    pub tried: u64,
    stale_left: bool,
    idempotent: bool,
    replayable: bool,
    response_timeout: Duration,
    /// With a policy: no response head is waited for past this (not read without one: the
    /// fast path reads the clock no more often than before).
    overall: Option<Instant>,
    /// The budget slot of the retry in flight.
    slot: Option<Held<'a>>,
}

impl<'a> Retries<'a> {
    /// The state for an exchange to `us` under `policy`; `replayable`: the whole body is at
    /// hand (buffered) and can be sent again.
    pub fn new(
        us: &'a UpstreamState,
        policy: Option<&'a RetryPolicy>,
        method: Method,
        replayable: bool,
        response_timeout: Duration,
    ) -> Retries<'a> {
        Retries {
            policy,
            us,
            attempt: 1,
            tried: 0,
            stale_left: true,
            idempotent: method.is_idempotent(),
            replayable,
            response_timeout,
            overall: policy.map(|_| Instant::now() + response_timeout),
            slot: None,
        }
    }

    /// With a policy, each attempt makes one connection try (a refused target is a failed
    /// attempt, retried as the policy says); without, `acquire` moves on through the targets.
    pub fn one_connect(&self) -> bool {
        self.policy.is_some()
    }

    /// The deadline of a step (writing the request, waiting for the head) starting now, with
    /// a policy; `None`: the caller's own (now + the response timeout, as without retries).
    pub fn deadline(&self) -> Option<Instant> {
        let (p, overall) = (self.policy?, self.overall?);
        let per_try = p.per_try_timeout.unwrap_or(self.response_timeout);
        Some((Instant::now() + per_try).min(overall))
    }

    /// After a failure on a pooled connection that turned out stale (see
    /// `ProxyError::may_retry`): whether to resend, once, on a fresh connection. Free.
    pub fn stale_resend(&mut self, e: &ProxyError, target: usize) -> bool {
        if !self.stale_left || !e.may_retry(self.idempotent, self.replayable, 1) {
            return false;
        }
        self.stale_left = false;
        self.us.drop_idle(target);
        if target < 64 {
            self.tried &= !(1 << target);
        }
        true
    }

    /// Whether attempt `self.attempt`, which failed with `f` (on `target`, if one was
    /// reached), is followed by another: the policy allows it, time is left, and the
    /// upstream's retry budget has room (counted either way).
    pub fn retry(&mut self, f: Failure, target: Option<usize>) -> bool {
        let Some(p) = self.policy else {
            return false;
        };
        if !p.allows(f, self.attempt, self.idempotent, self.replayable) {
            return false;
        }
        if self.overall.is_none_or(|o| Instant::now() >= o) {
            return false;
        }
        if let Some(t) = target.filter(|&t| t < 64) {
            self.tried |= 1 << t;
        }
        // One retry holds one slot: the previous retry's goes first.
        self.slot = None;
        if let Some(b) = &self.us.retry_budget {
            match self.us.shared.load.hold_retry(b) {
                Some(h) => self.slot = Some(h),
                None => return false,
            }
        }
        self.attempt += 1;
        true
    }

    /// Whether a response head with `status` is dropped and retried (a cheap check first:
    /// most responses are not retryable statuses).
    pub fn retry_status(&mut self, status: u16, target: usize) -> bool {
        match self.policy {
            Some(p) if p.on.retries_status(status) => {
                self.retry(Failure::Status(status), Some(target))
            }
            _ => false,
        }
    }

    /// Waits the backoff before the attempt `retry` admitted (full jitter; never past the
    /// exchange's deadline).
    pub async fn backoff(&self) {
        let (Some(p), Some(overall)) = (self.policy, self.overall) else {
            return;
        };
        let wait = p.backoff(self.attempt - 1, crate::resilience::rng::next());
        let until = (Instant::now() + wait).min(overall);
        if wait > Duration::ZERO {
            monoio::time::sleep_until(until.into()).await;
        }
    }
}

/// What a failed attempt's error means for the policy: `connected` says whether a connection
/// (or stream) to a target was made before it failed.
pub fn classify(e: &ProxyError, connected: bool) -> Option<Failure> {
    match e.kind {
        ErrorKind::UpstreamConnect | ErrorKind::UpstreamConnectTimeout | ErrorKind::UpstreamTls
            if !connected =>
        {
            Some(Failure::ConnectFailure)
        }
        ErrorKind::UpstreamClosed if connected => Some(Failure::Reset),
        ErrorKind::UpstreamTimeout if connected => Some(Failure::Timeout),
        _ => None,
    }
}

/// Drops a response that will be retried instead of forwarded: its connection goes back to
/// the pool only if the whole (length-delimited) body is already read, else it is closed.
pub fn discard(us: &UpstreamState, mut up: UpConn, resp: &http1::ResponseHead, method: Method) {
    let whole = matches!(resp.body, BodyFraming::Length(n) if n == up.buf.len() as u64);
    if whole && !resp.close && method != Method::Head {
        up.buf.clear();
        up.reused = false;
        us.put_idle(up, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classified_by_phase() {
        let e = |k| ProxyError::new(k);
        assert_eq!(
            classify(&e(ErrorKind::UpstreamConnect), false),
            Some(Failure::ConnectFailure)
        );
        assert_eq!(
            classify(&e(ErrorKind::UpstreamConnectTimeout), false),
            Some(Failure::ConnectFailure)
        );
        assert_eq!(
            classify(&e(ErrorKind::UpstreamClosed), true),
            Some(Failure::Reset)
        );
        assert_eq!(
            classify(&e(ErrorKind::UpstreamTimeout), true),
            Some(Failure::Timeout)
        );
        assert_eq!(classify(&e(ErrorKind::NoHealthyUpstream), false), None);
        assert_eq!(
            classify(&e(ErrorKind::UpstreamOverflow(Limit::Connections)), false),
            None,
            "a breaker refusal is never retried"
        );
        assert_eq!(classify(&e(ErrorKind::UpstreamBadResponse), true), None);
        assert_eq!(classify(&e(ErrorKind::ClientAborted), true), None);
        assert_eq!(classify(&e(ErrorKind::BodyTooLarge), true), None);
    }
}
