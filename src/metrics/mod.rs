//! Core-local metrics: each worker owns one `CoreMetrics` (plain fields, no atomics, no
//! locks) and records into it on the request path; the admin thread asks every worker for a
//! `CoreSnapshot` through `MetricsHub` and merges them by route / upstream NAME, since each
//! worker numbers its slots independently.
//!
//! Invariants:
//! - Nothing here is shared between threads while recording; the only cross-thread traffic is
//!   the snapshot handed over at scrape time (`hub.rs`).
//! - Slots are dense, never reused and never removed: the same name maps to the same slot for a
//!   worker's lifetime, so counters stay monotonic across config reloads.
//! - `record_*` never allocates once a (route, method, status) key has been seen; histograms
//!   allocate their hdr counts on their first value only.
//! - Slot 0 of the routes is `_none` (no route matched / rejected before routing).
//!
//! Layout: this file only declares the modules and re-exports. `core_metrics.rs` records and
//! snapshots, `labels.rs` holds the method labels and counter kinds, `hub.rs` merges,
//! `render.rs`, `limiters.rs`, `cache.rs` (the response cache), `forward_auth.rs` (forward-auth decisions), `health.rs`, `upstream_load.rs` (retries, breakers, mirrors) and `wasm.rs` (filter failures) render, `histogram.rs` holds the latency histogram.

mod cache;
mod core_metrics;
mod forward_auth;
mod health;
mod histogram;
mod hub;
mod labels;
mod limiters;
mod redis;
mod render;
mod upstream_load;
pub mod validation;
pub mod wasm;

pub use cache::render_cache;
pub use core_metrics::{CoreMetrics, CoreSnapshot, RouteSlot, UpstreamSlot};
pub use forward_auth::{
    forward_auth_counters, render_forward_auth, AuthOutcome, ForwardAuthCounters,
};
pub use health::{render_health, HealthRow};
pub use histogram::{LatencyHistogram, BUCKETS, BUCKET_BOUNDS};
pub use hub::{Merged, MetricsHub, RouteTotals, UpstreamTotals};
pub use labels::{method_index, CoreCounter, HTTP2_FLAG, METHOD_LABELS, METHOD_OTHER, NO_ROUTE};
pub use limiters::{render_global_limits, render_limiters, LimiterRow};
pub use redis::render_redis;
pub use render::{render_prometheus, render_stats_json, ProcessInfo};
pub use upstream_load::{render_load, render_mirrors};
