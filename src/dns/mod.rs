//! Resolving upstream host names off the workers: every A and AAAA record of a name, with the
//! answer's TTL clamped to configured bounds, and the last good answer kept when a lookup
//! fails.
//!
//! Everything here blocks (std UDP/TCP sockets with timeouts) and runs only on the control
//! side: at config compile time and on the DNS refresh thread, never on a worker. Workers see
//! new addresses through a recompiled config generation.

pub mod cache;
pub mod query;
pub mod sources;

pub use cache::{DnsCache, DnsSettings, Families};
