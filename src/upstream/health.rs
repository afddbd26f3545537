//! Health on the worker: whether a target's shared health lets it take a request
//! (`health_allows`, asked by `balance::available`), panic mode, and the request path's one
//! report of how an attempt went (`record`), which drives passive outlier ejection.
//!
//! Cost: an upstream with neither `health_check` nor `outlier` has `health == None`, and every
//! function here returns after that one check (no atomic, no allocation, no syscall). With
//! health configured, a pick reads two relaxed atomics per target; the usable-target count
//! for panic mode is recomputed only when the upstream's health epoch moved or an ejection
//! expired, and cached per worker.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::exchange::error::{ErrorKind, ProxyError, Retry, Side};
use crate::resilience::outlier::{in_panic, max_ejected, mono_ms, Outcome, OutlierPolicy};

use super::gate::HealthGate;
use super::UpstreamState;

impl UpstreamState {
    /// Whether health lets target `i` take a request: it passes its active checks and is not
    /// ejected, or the upstream is in panic mode (too few usable targets: use them all).
    #[inline]
    pub fn health_allows(&self, i: usize, now: Instant) -> bool {
        let Some(g) = &self.health else {
            return true;
        };
        let Some(t) = self.targets.get(i) else {
            return false;
        };
        let now_ms = mono_ms(now);
        t.health.usable(g.checked, now_ms) || self.panicking(g, now_ms)
    }

    /// Panic mode now (`outlier::in_panic` over this upstream's targets), cached until the
    /// health epoch moves or the next ejection ends.
    fn panicking(&self, g: &HealthGate, now_ms: u64) -> bool {
        let epoch = self.shared.health_epoch.load(Ordering::Acquire);
        let (seen, until, panic) = g.panic.get();
        if seen == epoch && now_ms < until {
            return panic;
        }
        let mut usable = 0;
        let mut next_change = u64::MAX;
        for t in &self.targets {
            if t.health.usable(g.checked, now_ms) {
                usable += 1;
            }
            let end = t.health.outlier.ejected_until();
            if end > now_ms {
                next_change = next_change.min(end);
            }
        }
        let panic = in_panic(usable, self.targets.len(), g.panic_threshold);
        g.panic.set((epoch, next_change, panic));
        panic
    }

    /// Whether this upstream counts outcomes (has an `outlier` table).
    #[inline]
    pub fn records_outcomes(&self) -> bool {
        self.health.as_ref().is_some_and(|g| g.outlier.is_some())
    }

    /// Reports how one attempt on `target` went: the request path's one entry into outlier
    /// detection. Ejects the target when this failure completes a streak, within
    /// `max_ejection_percent`. A no-op without an `outlier` table.
    #[inline]
    pub fn record(&self, target: usize, o: Outcome) {
        let Some(p) = self.health.as_ref().and_then(|g| g.outlier.as_ref()) else {
            return;
        };
        let Some(t) = self.targets.get(target) else {
            return;
        };
        let o = p.kind_of(o);
        if t.health.outlier.count(p, o) {
            self.try_eject(target, p, o);
        }
    }

    /// `record` for a failed attempt (`outcome_of` decides what it counts as).
    pub fn record_error(&self, target: usize, e: &ProxyError) {
        if let Some(o) = outcome_of(e) {
            self.record(target, o);
        }
    }

    /// `record` for a response whose head had `status` and whose body ended with `body`:
    /// 5xx counts at the head (`record_head`), a body the upstream broke counts as a reset,
    /// anything else is a success.
    pub fn record_response(&self, target: usize, status: u16, body: Result<(), &ProxyError>) {
        match body {
            Err(e) if e.side() == Side::Upstream => self.record(target, Outcome::Reset),
            Err(_) => {}
            Ok(()) if status < 500 => self.record(target, Outcome::Success),
            Ok(()) => {}
        }
    }

    /// `record` for a response head: a 5xx counts now (a retry may follow).
    #[inline]
    pub fn record_head(&self, target: usize, status: u16) {
        match status {
            502..=504 => self.record(target, Outcome::GatewayError),
            500.. => self.record(target, Outcome::Status5xx),
            _ => {}
        }
    }

    /// The index of the target at `addr` (the HTTP/2 path knows the address only).
    pub fn target_at(&self, addr: Option<SocketAddr>) -> Option<usize> {
        let addr = addr?;
        self.targets.iter().position(|t| t.addr == addr)
    }

    /// Ejects `target` unless it already is or `max_ejection_percent` is reached. One worker at
    /// a time decides (the upstream's `ejecting` flag); a worker that finds it taken skips:
    /// the streak is still counted, so the next failure tries again.
    fn try_eject(&self, target: usize, p: &OutlierPolicy, reason: Outcome) {
        let sh = &self.shared;
        let taken = sh
            .ejecting
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed);
        if taken.is_err() {
            return;
        }
        let now_ms = mono_ms(Instant::now());
        let ejected = self
            .targets
            .iter()
            .filter(|t| t.health.outlier.is_ejected(now_ms))
            .count();
        let t = &self.targets[target];
        let room = ejected < max_ejected(self.targets.len(), p.max_ejection_percent);
        if room && !t.health.outlier.is_ejected(now_ms) {
            let d = t.health.outlier.eject(p, reason, now_ms);
            sh.health_changed();
            crate::log::warn(&format!(
                "upstream {} target {}: ejected for {:?} after {} consecutive failures \
                 (last: {}; ejection #{})",
                self.name,
                t.addr,
                d,
                p.consecutive,
                reason_label(reason),
                t.health.outlier.ejections()
            ));
        }
        sh.ejecting.store(false, Ordering::Release);
    }
}

/// The label of a failure kind (`on = [...]`, the ejection metric's `reason`).
pub fn reason_label(o: Outcome) -> &'static str {
    crate::resilience::outlier::KINDS
        .iter()
        .find(|(_, k)| *k == o)
        .map_or("success", |(name, _)| name)
}

/// What a failed attempt counts as: response timeouts, resets and broken responses. Connect
/// failures are counted where the target is backed off (`mark_down`), once; a stale pooled
/// connection (the upstream closed an idle connection: not its failure), or the client's own
/// doing, counts as nothing.
pub fn outcome_of(e: &ProxyError) -> Option<Outcome> {
    if e.retry == Retry::StaleConnection {
        return None;
    }
    match e.kind {
        ErrorKind::UpstreamTimeout => Some(Outcome::Timeout),
        ErrorKind::UpstreamClosed | ErrorKind::UpstreamBadResponse | ErrorKind::UpstreamAborted => {
            Some(Outcome::Reset)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::resilience::outlier::HealthSettings as Health;

    fn upstream(n: usize, panic_threshold: u8, max_percent: u8) -> UpstreamState {
        let mut u = crate::upstream::fixtures::upstream(&vec![1; n]);
        u.health = Health {
            check: None,
            outlier: Some(OutlierPolicy {
                consecutive: 2,
                on: 0b1111,
                base_ejection_time: Duration::from_secs(30),
                max_ejection_time: Duration::from_secs(300),
                max_ejection_percent: max_percent,
            }),
            panic_threshold,
        };
        UpstreamState::new(&u, None)
    }

    fn picks(s: &UpstreamState, n: usize) -> Vec<usize> {
        let now = Instant::now();
        (0..n).filter_map(|_| s.pick(now, 0, None)).collect()
    }

    #[test]
    fn a_streak_ejects_and_the_balancer_skips_the_target() {
        let s = upstream(3, 50, 10);
        s.record(1, Outcome::Status5xx);
        s.record(1, Outcome::Success);
        s.record(1, Outcome::Status5xx);
        assert!(picks(&s, 6).contains(&1), "a success broke the streak");
        s.record(1, Outcome::Timeout);
        let p = picks(&s, 6);
        assert!(!p.contains(&1) && p.contains(&0) && p.contains(&2), "{p:?}");
    }

    #[test]
    fn max_percent_holds_and_panic_spreads_over_all() {
        let s = upstream(3, 0, 100);
        for t in 0..3 {
            s.record(t, Outcome::Reset);
            s.record(t, Outcome::Reset);
        }
        assert_eq!(picks(&s, 6), vec![2; 6], "two of three ejected at most");
        // Panic threshold 50 %: one usable target of three is panic.
        let u = upstream(3, 50, 100);
        for t in 0..3 {
            u.record(t, Outcome::Connect);
            u.record(t, Outcome::Connect);
        }
        let p = picks(&u, 6);
        assert!(p.contains(&0) && p.contains(&1) && p.contains(&2), "{p:?}");
    }

    #[test]
    fn stale_connections_and_client_errors_count_as_nothing() {
        assert_eq!(
            outcome_of(&ProxyError::stale(ErrorKind::UpstreamClosed)),
            None
        );
        assert_eq!(outcome_of(&ProxyError::new(ErrorKind::ClientAborted)), None);
        assert_eq!(
            outcome_of(&ProxyError::new(ErrorKind::UpstreamTimeout)),
            Some(Outcome::Timeout)
        );
        assert_eq!(
            outcome_of(&ProxyError::new(ErrorKind::UpstreamAborted)),
            Some(Outcome::Reset)
        );
    }
}
