//! Upstream resilience state shared by every worker: per-upstream and per-target records that
//! outlive a config generation (health, ejections, circuit-breaker and retry-budget counters),
//! and the pure decisions made over them.
//!
//! Everything a worker touches on the request path is an atomic in a record it holds through
//! an `Arc`; the `Registry` that hands those records out is locked only when a config is
//! compiled (control thread), never per request. `retry.rs` holds the retry policy and budget
//! math, `breaker.rs` the load counters and circuit-breaker guards, `render.rs` their metrics.

pub mod active;
pub mod breaker;
pub mod maglev;
pub mod mirror_stats;
pub mod outlier;
pub mod probe;
pub mod registry;
pub mod retry;
pub mod rng;
pub mod stable_hash;

pub use breaker::{BreakerLimits, ConnSlot, Held, Limit, Load};
pub use registry::{Registry, TargetHealth, UpstreamShared};
pub use retry::{Failure, RetryBudget, RetryMethods, RetryOn, RetryPolicy};
