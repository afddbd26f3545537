//! Counters of an upstream's mirrored (shadow) requests, shared by every worker through the
//! upstream's `UpstreamShared` (so they survive reloads); `metrics::upstream_load` renders
//! them as `ringway_upstream_mirror_total{upstream,outcome}`.
//!
//! Counted only on routes with a `mirror` (one relaxed add per mirrored request); a route
//! without one never touches them.

use std::sync::atomic::{AtomicU64, Ordering};

/// What became of one sampled request's copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorOutcome {
    /// The shadow answered (its response head arrived; the response was discarded).
    Sent,
    /// No target, connect or write failure, a broken answer, or no answer in time.
    Failed,
    /// Not mirrored: the body was streamed or larger than `max_body` (or a WebSocket upgrade).
    Skipped,
    /// Not mirrored: this worker already had `max_in_flight` mirrors in flight.
    Dropped,
}

impl MirrorOutcome {
    pub const ALL: [MirrorOutcome; 4] = [
        MirrorOutcome::Sent,
        MirrorOutcome::Failed,
        MirrorOutcome::Skipped,
        MirrorOutcome::Dropped,
    ];

    /// The `outcome` label.
    pub fn label(self) -> &'static str {
        match self {
            MirrorOutcome::Sent => "sent",
            MirrorOutcome::Failed => "failed",
            MirrorOutcome::Skipped => "skipped",
            MirrorOutcome::Dropped => "dropped",
        }
    }
}

/// Mirror outcomes of one (shadow) upstream.
#[derive(Debug, Default)]
pub struct MirrorStats {
    counts: [AtomicU64; 4],
}

impl MirrorStats {
    pub fn count(&self, o: MirrorOutcome) {
        self.counts[o as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, o: MirrorOutcome) -> u64 {
        self.counts[o as usize].load(Ordering::Relaxed)
    }

    /// Whether any outcome was counted.
    pub fn any(&self) -> bool {
        MirrorOutcome::ALL.iter().any(|&o| self.get(o) > 0)
    }
}
