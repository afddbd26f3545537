//! Cache counters for metrics and `GET /cache`: what requests did with the cache (hits, misses,
//! stale serves, revalidations, bypasses) and how many waited for another request's fetch
//! (coalesced waits). The store's own totals (bytes, objects, evictions, purges) are read from
//! the store at scrape time (`Store::stats`).
//!
//! Hot path: `record` is one thread-local lookup and one relaxed load + store on a counter
//! only this thread writes: no read-modify-write instruction, no cache line shared with
//! another worker. Each thread registers its counters once (a mutex taken on its first
//! record only); a scrape sums every registered thread's counters. A thread that ends leaves
//! its counters registered, so totals stay monotonic.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

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

/// Counter slots: the outcomes in declaration order, then coalesced waits.
const SLOTS: usize = 6;
const COALESCED: usize = 5;

/// One thread's counters, on their own cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Counters([AtomicU64; SLOTS]);

static THREADS: Mutex<Vec<Arc<Counters>>> = Mutex::new(Vec::new());

thread_local! {
    static MINE: Arc<Counters> = {
        let c = Arc::new(Counters::default());
        THREADS.lock().unwrap_or_else(|p| p.into_inner()).push(c.clone());
        c
    };
}

fn bump(slot: usize) {
    MINE.with(|c| {
        let a = &c.0[slot];
        // Only this thread writes this counter: a load and a store are enough.
        a.store(a.load(Relaxed) + 1, Relaxed);
    });
}

/// Counts one outcome on this thread.
pub fn record(o: Outcome) {
    bump(o as usize);
}

/// Counts one request that waited for another request's fetch of the same key.
pub fn record_coalesced() {
    bump(COALESCED);
}

/// Totals over every thread since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub hits: u64,
    pub stale: u64,
    pub misses: u64,
    pub revalidated: u64,
    pub bypass: u64,
    pub coalesced_waits: u64,
}

/// Sums every thread's counters (scrape time only).
pub fn totals() -> Totals {
    let mut sum = [0u64; SLOTS];
    for c in THREADS.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        for (s, a) in sum.iter_mut().zip(c.0.iter()) {
            *s += a.load(Relaxed);
        }
    }
    Totals {
        hits: sum[Outcome::Hit as usize],
        stale: sum[Outcome::Stale as usize],
        misses: sum[Outcome::Miss as usize],
        revalidated: sum[Outcome::Revalidated as usize],
        bypass: sum[Outcome::Bypass as usize],
        coalesced_waits: sum[COALESCED],
    }
}

/// The store's totals across its shards (`Store::stats`, for `/cache` and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Bytes counted against the bound.
    pub bytes: u64,
    pub max_bytes: u64,
    /// Stored objects (variants).
    pub objects: u64,
    /// Primary keys.
    pub entries: u64,
    /// Objects (variants) evicted to stay within the bound.
    pub evictions: u64,
    /// Objects dropped by purges.
    pub purged: u64,
    /// Objects not stored because their entry alone would exceed a shard's share of the bound.
    pub too_large: u64,
}

/// `GET /cache`: the request counters and the store's totals (`Store::stats`) as one JSON
/// object.
pub fn json(t: &Totals, s: &StoreStats) -> Vec<u8> {
    let fields: [(&str, u64); 13] = [
        ("hits", t.hits),
        ("misses", t.misses),
        ("stale", t.stale),
        ("revalidated", t.revalidated),
        ("bypass", t.bypass),
        ("coalesced_waits", t.coalesced_waits),
        ("bytes", s.bytes),
        ("max_bytes", s.max_bytes),
        ("objects", s.objects),
        ("entries", s.entries),
        ("evictions", s.evictions),
        ("purged", s.purged),
        ("too_large", s.too_large),
    ];
    let mut b = Vec::with_capacity(256);
    b.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        b.push(b'"');
        b.extend_from_slice(k.as_bytes());
        b.extend_from_slice(b"\":");
        b.extend_from_slice(v.to_string().as_bytes());
    }
    b.extend_from_slice(b"}\n");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_several_threads_add_up() {
        let before = totals();
        let t = std::thread::spawn(|| {
            for _ in 0..10 {
                record(Outcome::Hit);
            }
            record_coalesced();
        });
        t.join().unwrap();
        record(Outcome::Bypass);
        let after = totals();
        assert!(after.hits >= before.hits + 10);
        assert!(after.bypass > before.bypass);
        assert!(after.coalesced_waits > before.coalesced_waits);
    }
}
