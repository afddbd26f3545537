//! Usage metering: requests per (UTC day, consumer, route, status class), counted by each
//! worker in a bounded map of its own while it records a finished request (`telemetry`), and
//! added into Redis in batches by the background thread (`flush`); `export` reads the totals
//! back for `ringway usage`.
//!
//! Invariants:
//! - The request path never touches Redis, takes no lock and makes no syscall for this: a
//!   worker's map is handed to the flusher through a bounded channel on the worker's periodic
//!   telemetry flush (and at shutdown), with `try_send` (a full channel: the worker keeps its
//!   map and merges on).
//! - Counts add up exactly: every hand-off reaches Redis once. Each batch carries this
//!   process's random instance id and a sequence number; the Lua script applies a batch only if
//!   its number is above the last one applied for that instance, so a retried flush (a timeout
//!   whose write did land) is never counted twice. The control thread flushes what is left
//!   after the workers stopped (`flush::flush_final`).
//! - A worker tracks at most `max_keys` distinct (day, consumer, route, class) entries per
//!   hand-off; past that, requests of new consumers count under the consumer `(other)` so the
//!   per-route totals stay exact with bounded memory.
//! - Consumer and route names go into hash FIELDS (length-prefixed, binary-safe), never into a
//!   key: the per-day hash is `{prefix}:usage:{YYYY-MM-DD}:counts`.

pub mod batch;
pub mod cell;
pub mod export;
pub mod field;
pub mod flush;
pub mod hub;
pub mod settings;

pub use cell::{status_class, Counts, UsageKey, Who};
pub use hub::{Recorder, UsageHub};
pub use settings::{compile, RawUsage, UsageSettings};
