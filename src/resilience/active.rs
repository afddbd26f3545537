//! Active health checks: the compiled `[upstreams.NAME.health_check]` (`ActiveCheck`) and the
//! per-target state the probes drive (`ActiveHealth`), with the threshold transitions as a pure
//! function (`step`).
//!
//! One checker thread per process (`upstream::checker`) probes and calls `ActiveHealth::apply`;
//! workers only read `is_down` (a relaxed load) when they pick a target. A target starts
//! healthy (nginx's default): it goes down after `unhealthy_threshold` failed probes in a row
//! and comes back after `healthy_threshold` passing probes in a row.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::time::Duration;

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckKind {
    /// `GET path` over HTTP/1.1 (TLS for a TLS upstream); passes when the status is within
    /// `expect` (inclusive).
    Http {
        path: String,
        /// The Host header; `None`: the target's address as written in the config.
        host: Option<String>,
        expect: (u16, u16),
    },
    /// The TCP connection (and the TLS handshake, for a TLS upstream) completes.
    Tcp,
}

/// A compiled `health_check` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveCheck {
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

/// Defaults (documented in README): interval 5 s, timeout 2 s, 2 passes / 2 failures,
/// expected status 200-399.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_HEALTHY: u32 = 2;
pub const DEFAULT_UNHEALTHY: u32 = 2;
pub const DEFAULT_EXPECT: (u16, u16) = (200, 399);

/// The result of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeResult {
    /// Connected (and for HTTP: the status was expected).
    Pass,
    /// An HTTP status outside the expected range.
    Status(u16),
    /// The connection was refused or failed.
    ConnectFailed,
    /// The TLS handshake failed.
    TlsFailed,
    /// No (complete) answer within the timeout.
    Timeout,
    /// Closed before a status line, or something that is not an HTTP status line.
    BadResponse,
}

impl ProbeResult {
    pub fn passed(self) -> bool {
        self == ProbeResult::Pass
    }

    /// Short stable label (admin endpoint, metrics).
    pub fn label(self) -> &'static str {
        match self {
            ProbeResult::Pass => "pass",
            ProbeResult::Status(_) => "bad_status",
            ProbeResult::ConnectFailed => "connect_failed",
            ProbeResult::TlsFailed => "tls_failed",
            ProbeResult::Timeout => "timeout",
            ProbeResult::BadResponse => "bad_response",
        }
    }

    fn code(self) -> u8 {
        match self {
            ProbeResult::Pass => 1,
            ProbeResult::Status(_) => 2,
            ProbeResult::ConnectFailed => 3,
            ProbeResult::TlsFailed => 4,
            ProbeResult::Timeout => 5,
            ProbeResult::BadResponse => 6,
        }
    }

    fn from_code(c: u8, status: u16) -> Option<ProbeResult> {
        Some(match c {
            1 => ProbeResult::Pass,
            2 => ProbeResult::Status(status),
            3 => ProbeResult::ConnectFailed,
            4 => ProbeResult::TlsFailed,
            5 => ProbeResult::Timeout,
            6 => ProbeResult::BadResponse,
            _ => return None,
        })
    }
}

/// One target's active-check state, shared by the checker thread (writer) and the workers
/// (readers).
#[derive(Debug, Default)]
pub struct ActiveHealth {
    down: AtomicBool,
    passes: AtomicU32,
    fails: AtomicU32,
    last: AtomicU8,
    last_status: AtomicU32,
    /// Unix milliseconds of the last probe (0: never probed).
    last_at_ms: AtomicU64,
    probes_passed: AtomicU64,
    probes_failed: AtomicU64,
}

/// `(down, passes in a row, failures in a row)` after one probe result. Pure.
pub fn step(down: bool, passes: u32, fails: u32, ok: bool, c: &ActiveCheck) -> (bool, u32, u32) {
    if ok {
        let passes = passes.saturating_add(1);
        (down && passes < c.healthy_threshold, passes, 0)
    } else {
        let fails = fails.saturating_add(1);
        (down || fails >= c.unhealthy_threshold, 0, fails)
    }
}

impl ActiveHealth {
    /// Failing active checks: workers skip the target (outside panic mode).
    #[inline]
    pub fn is_down(&self) -> bool {
        self.down.load(Relaxed)
    }

    /// Records one probe result (checker thread only); returns the new `down` when it changed.
    pub fn apply(&self, r: ProbeResult, c: &ActiveCheck, unix_ms: u64) -> Option<bool> {
        let was = self.is_down();
        let (down, passes, fails) = step(
            was,
            self.passes.load(Relaxed),
            self.fails.load(Relaxed),
            r.passed(),
            c,
        );
        self.passes.store(passes, Relaxed);
        self.fails.store(fails, Relaxed);
        self.last.store(r.code(), Relaxed);
        if let ProbeResult::Status(s) = r {
            self.last_status.store(u32::from(s), Relaxed);
        }
        self.last_at_ms.store(unix_ms, Relaxed);
        let n = if r.passed() {
            &self.probes_passed
        } else {
            &self.probes_failed
        };
        n.fetch_add(1, Relaxed);
        self.down.store(down, Relaxed);
        (down != was).then_some(down)
    }

    /// Forgets the state (the upstream's checks were removed or the target is new).
    pub fn reset(&self) {
        self.down.store(false, Relaxed);
        self.passes.store(0, Relaxed);
        self.fails.store(0, Relaxed);
    }

    /// The last probe's result and when (unix ms), if any.
    pub fn last(&self) -> Option<(ProbeResult, u64)> {
        let status = u16::try_from(self.last_status.load(Relaxed)).unwrap_or(0);
        let r = ProbeResult::from_code(self.last.load(Relaxed), status)?;
        Some((r, self.last_at_ms.load(Relaxed)))
    }

    /// Probes that passed and failed so far.
    pub fn probe_counts(&self) -> (u64, u64) {
        (
            self.probes_passed.load(Relaxed),
            self.probes_failed.load(Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(healthy: u32, unhealthy: u32) -> ActiveCheck {
        ActiveCheck {
            kind: CheckKind::Tcp,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
        }
    }

    #[test]
    fn goes_down_after_unhealthy_threshold_and_back_after_healthy_threshold() {
        let c = check(2, 3);
        let h = ActiveHealth::default();
        assert!(!h.is_down(), "starts healthy");
        assert_eq!(h.apply(ProbeResult::Timeout, &c, 1), None);
        assert_eq!(h.apply(ProbeResult::Status(500), &c, 2), None);
        // A pass in between restarts the failure count.
        assert_eq!(h.apply(ProbeResult::Pass, &c, 3), None);
        assert_eq!(h.apply(ProbeResult::ConnectFailed, &c, 4), None);
        assert_eq!(h.apply(ProbeResult::ConnectFailed, &c, 5), None);
        assert_eq!(h.apply(ProbeResult::BadResponse, &c, 6), Some(true));
        assert!(h.is_down());
        assert_eq!(h.apply(ProbeResult::Timeout, &c, 7), None);
        assert_eq!(h.apply(ProbeResult::Pass, &c, 8), None);
        assert_eq!(h.apply(ProbeResult::Pass, &c, 9), Some(false));
        assert!(!h.is_down());
        assert_eq!(h.last(), Some((ProbeResult::Pass, 9)));
        assert_eq!(h.probe_counts(), (3, 6));
    }

    #[test]
    fn thresholds_of_one_flip_on_every_result() {
        let c = check(1, 1);
        assert_eq!(step(false, 0, 0, false, &c), (true, 0, 1));
        assert_eq!(step(true, 0, 1, true, &c), (false, 1, 0));
        assert_eq!(step(false, u32::MAX, 0, true, &c), (false, u32::MAX, 0));
    }

    #[test]
    fn last_status_is_kept() {
        let c = check(1, 1);
        let h = ActiveHealth::default();
        assert_eq!(h.last(), None);
        h.apply(ProbeResult::Status(503), &c, 42);
        assert_eq!(h.last(), Some((ProbeResult::Status(503), 42)));
    }
}
