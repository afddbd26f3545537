//! Health on the worker: whether a target's shared health lets it take a request
//! (`health_allows`, asked by `balance::available`), panic mode, and the request path's one
//! report of how an attempt went (`record`), which drives passive outlier ejection.
//!
//! Cost: an upstream with neither `health_check` nor `outlier` has `health == None`, and every
//! function here returns after that one check (no atomic, no allocation, no syscall). With
//! health configured, a pick reads two relaxed atomics per target; the usable-target count
//! for panic mode is recomputed only when the upstream's health epoch moved or an ejection
//! expired, and cached per worker.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::config::Upstream;
use crate::exchange::error::{ErrorKind, ProxyError, Retry, Side};
use crate::resilience::outlier::{in_panic, max_ejected, mono_ms, OutlierPolicy, Outcome};

use super::UpstreamState;

/// An upstream's health settings on one worker, with its panic-mode cache.
pub struct HealthGate {
    /// Active checks run for this upstream (their verdict counts).
    checked: bool,
    outlier: Option<OutlierPolicy>,
    panic_threshold: u8,
    /// (health epoch seen, `mono_ms` the verdict holds until, in panic).
    panic: Cell<(u64, u64, bool)>,
}

impl HealthGate {
    /// `None` when `u` configures no health at all (the fast path).
    pub fn new(u: &Upstream) -> Option<HealthGate> {
        let h = &u.health;
        if h.check.is_none() && h.outlier.is_none() {
            return None;
        }
        Some(HealthGate {
            checked: h.check.is_some(),
            outlier: h.outlier.clone(),
            panic_threshold: h.panic_threshold,
            panic: Cell::new((u64::MAX, 0, false)),
        })
    }
}

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
        if status >= 500 {
            self.record(target, Outcome::Status5xx);
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
