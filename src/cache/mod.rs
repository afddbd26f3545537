//! Response caching: one process-wide store shared by every worker (`store`), filled by
//! the forward phase (`exchange::cache_phase`) and read before any upstream is contacted.
//!
//! Module map: `settings` (the top-level `[cache]` table: the byte bound), `policy` (the
//! `cache` policy a route lists: TTL, key, statuses, stale bounds), `control` (Cache-Control /
//! Expires / Age: storability and freshness per RFC 9111 for a shared cache), `key` (the
//! primary key), `vary` (the secondary key), `object` (one stored response), `conditional`
//! (If-None-Match / If-Modified-Since against a stored response), `status` (`Cache-Status`,
//! RFC 9211), `store` (the sharded store, its byte bound, eviction, purge and fill locks for
//! request coalescing), `stats` (counters for metrics), `purge` (what the admin API, the CLI
//! and Redis pub/sub ask the store to drop).
//!
//! Invariants: a stored object is immutable; an object over the policy's size limit is never
//! stored and never buffered whole; authenticated responses are keyed per consumer unless the
//! policy shares them; the gateway's per-request fields (request id, CORS, RateLimit, route
//! response edits) are never stored, they are written for each response served.

pub mod conditional;
pub mod control;
pub mod key;
pub mod object;
pub mod policy;
pub mod purge;
pub mod settings;
pub mod stats;
pub mod status;
pub mod store;
pub mod vary;

pub use object::Object;
pub use policy::{CachePolicy, RawCache};
pub use store::{Entry, Fill, Store};
