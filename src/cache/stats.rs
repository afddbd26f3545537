//! Cache counters for metrics (SEAM: lane store owns this).

/// What one request did with the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Served from the cache, fresh.
    Hit,
    /// Served stale (stale-while-revalidate or stale-if-error).
    Stale,
    /// Looked up, not found (or not usable): went upstream.
    Miss,
    /// Stored object revalidated with a 304.
    Revalidated,
    /// Not looked up (method, Range, no-store, authorization).
    Bypass,
}

/// Counts one outcome on this worker.
pub fn record(o: Outcome) {
    let _ = o;
}
