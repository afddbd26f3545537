//! Counters of an upstream's mirrored (shadow) requests, shared by every worker through the
//! upstream's `UpstreamShared` (so they survive reloads), and their Prometheus rendering as
//! `ringway_upstream_mirror_total{upstream,outcome}`.
//!
//! Counted only on routes with a `mirror` (one relaxed add per mirrored request); a route
//! without one never touches them.

use std::fmt::Write as _;
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
    const ALL: [MirrorOutcome; 4] = [
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

    fn any(&self) -> bool {
        MirrorOutcome::ALL.iter().any(|&o| self.get(o) > 0)
    }
}

/// Appends `ringway_upstream_mirror_total` for every upstream that saw a mirror outcome
/// (upstream names come from the config, never from requests).
pub fn render<'a>(rows: impl Iterator<Item = (&'a str, &'a MirrorStats)>, out: &mut String) {
    let mut header = false;
    for (name, stats) in rows.filter(|(_, s)| s.any()) {
        if !header {
            header = true;
            out.push_str(
                "# HELP ringway_upstream_mirror_total Shadow copies of sampled requests by \
                 outcome (sent, failed, skipped, dropped).\n\
                 # TYPE ringway_upstream_mirror_total counter\n",
            );
        }
        for o in MirrorOutcome::ALL {
            let _ = writeln!(
                out,
                "ringway_upstream_mirror_total{{upstream=\"{}\",outcome=\"{}\"}} {}",
                escape(name),
                o.label(),
                stats.get(o)
            );
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_only_upstreams_with_mirrors() {
        let (a, b) = (MirrorStats::default(), MirrorStats::default());
        a.count(MirrorOutcome::Sent);
        a.count(MirrorOutcome::Sent);
        a.count(MirrorOutcome::Dropped);
        let mut out = String::new();
        render([("shadow", &a), ("idle", &b)].into_iter(), &mut out);
        assert!(
            out.contains("ringway_upstream_mirror_total{upstream=\"shadow\",outcome=\"sent\"} 2")
        );
        assert!(out.contains("{upstream=\"shadow\",outcome=\"dropped\"} 1"));
        assert!(!out.contains("idle"));
        assert_eq!(out.matches("# TYPE").count(), 1);
    }
}
