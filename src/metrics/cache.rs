//! Prometheus families for the response cache (`ringway_cache_*`): request outcomes summed over
//! the threads' counters (`cache::stats`) and the shared store's totals (`Store::stats`).
//! Read at scrape time only; the request path never touches this module.

use std::fmt::Write;

use super::render::family;
use crate::cache::stats::{StoreStats, Totals};

/// Appends the cache families (always: the store exists with or without cache routes).
pub fn render_cache(t: &Totals, s: &StoreStats, out: &mut String) {
    family(
        out,
        "ringway_cache_requests_total",
        "Requests on cache routes by outcome: hit (fresh), stale (served stale), miss (forwarded), revalidated (a stale object refreshed by a 304), bypass (not looked up: method, Range, no-store, unverified credentials).",
        "counter",
    );
    for (outcome, v) in [
        ("hit", t.hits),
        ("stale", t.stale),
        ("miss", t.misses),
        ("revalidated", t.revalidated),
        ("bypass", t.bypass),
    ] {
        let _ = writeln!(
            out,
            "ringway_cache_requests_total{{outcome=\"{outcome}\"}} {v}"
        );
    }
    let counters = [
        (
            "ringway_cache_coalesced_waits_total",
            "Requests that waited for another request's fetch of the same key instead of going upstream.",
            t.coalesced_waits,
        ),
        (
            "ringway_cache_evictions_total",
            "Objects evicted to keep the store within its byte bound.",
            s.evictions,
        ),
        (
            "ringway_cache_purged_total",
            "Objects dropped by purges (admin API, CLI, Redis).",
            s.purged,
        ),
        (
            "ringway_cache_too_large_total",
            "Responses not stored because one object exceeds a shard's share of max_bytes.",
            s.too_large,
        ),
    ];
    for (name, help, v) in counters {
        family(out, name, help, "counter");
        let _ = writeln!(out, "{name} {v}");
    }
    let gauges = [
        (
            "ringway_cache_bytes",
            "Bytes the store holds, counted against max_bytes (keys, heads and bodies).",
            s.bytes,
        ),
        (
            "ringway_cache_max_bytes",
            "The store's byte bound ([cache] max_bytes).",
            s.max_bytes,
        ),
        (
            "ringway_cache_objects",
            "Stored objects (every variant of every key).",
            s.objects,
        ),
        ("ringway_cache_entries", "Stored primary keys.", s.entries),
    ];
    for (name, help, v) in gauges {
        family(out, name, help, "gauge");
        let _ = writeln!(out, "{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let t = Totals {
            hits: 3,
            ..Totals::default()
        };
        let s = StoreStats {
            bytes: 10,
            ..StoreStats::default()
        };
        let mut out = String::new();
        render_cache(&t, &s, &mut out);
        assert!(out.contains("ringway_cache_requests_total{outcome=\"hit\"} 3\n"));
        assert!(out.contains("# TYPE ringway_cache_bytes gauge\nringway_cache_bytes 10\n"));
        assert!(out.contains("# HELP ringway_cache_evictions_total "));
    }
}
