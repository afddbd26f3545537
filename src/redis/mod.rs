//! The Redis client every instance uses to share state (global rate limits, quotas, usage, API
//! keys) with the other instances. Layer 2: it knows nothing of requests.
//!
//! Shape: one async [`Client`] per thread, on that thread's monoio runtime (each worker owns
//! its own; the background thread `redis_sync` and the CLI own theirs). A client keeps one or
//! more pipelined connections per Redis node (`conn.rs`): many commands in flight on one
//! socket, replies matched in order, so a worker never blocks and never takes a lock. In
//! cluster mode (`cluster.rs`) a command goes to the node owning its key's slot; `MOVED`
//! refreshes the slot map, `ASK` is followed once. Every call has the configured timeout, and
//! a node that fails is not redialled more than once per backoff step, so a dead Redis costs
//! a fast error, not a pile of hung requests. Wire format: the `redis-protocol` crate (RESP2).
//!
//! Process-wide, [`RedisShared`] (compiled from `[redis]`, kept across reloads while the table
//! is unchanged) holds the settings and the health record (`health.rs`) that counts and logs
//! up/down transitions.

mod client;
mod cluster;
mod conn;
mod error;
mod health;
mod resp;
mod runtime;
mod script;
mod settings;
mod shared;
mod sock;
mod subscribe;

pub use client::Client;
pub use error::RedisError;
pub use health::{CallTimes, RedisHealth, CALL_BUCKETS_US};
pub use resp::{decode_reply, Scan, Value, MAX_DEPTH};
pub use runtime::block_on;
pub use script::Script;
pub use settings::{compile, RawRedis, RedisSettings};
pub use shared::{key_part, RedisRegistry, RedisShared, SharedRedis};
pub use subscribe::Subscription;
