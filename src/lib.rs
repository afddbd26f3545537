//! ringway: a thread-per-core, io_uring API gateway. See README.md and ../shared/DESIGN.md.
//!
//! Request path: `worker` accepts → `conn` (the HTTP/1.1 wire) reads a head (`http1`), or
//! `http2` takes each stream of an HTTP/2 connection, and either builds an `exchange`, whose phases route (`route`) against the compiled `config`, run the
//! policies (`policy`) and the action, and forward through `upstream` pools; errors become
//! responses in `exchange::respond`. `control` owns signals and reloads.
//! `telemetry` records each finished request into core-local `metrics`, the `accesslog`
//! buffer and `trace` spans; `admin` serves them off the workers.

pub mod accesslog;
pub mod admin;
pub mod admission;
pub mod apikey;
pub mod bounded_file;
pub mod cache;
pub mod civil;
pub mod compress;
pub mod config;
pub mod conn;
pub mod control;
pub mod core;
pub mod deadline;
pub mod deadline_clock;
pub mod dns;
pub mod dns_refresh;
pub mod exchange;
pub mod h2flood;
pub mod handover;
pub mod heap;
pub mod http1;
pub mod http2;
pub mod io;
pub mod json;
pub mod jwt;
pub mod key_sync;
pub mod keyed_hash;
pub mod log;
pub mod metrics;
pub mod notify;
pub mod oidc;
pub mod openapi;
pub mod policy;
pub mod privileges;
pub mod quota;
pub mod ratelimit;
pub mod redis;
pub mod redis_sync;
pub mod request_id;
pub mod resilience;
pub mod route;
pub mod shared;
pub mod sysinfo;
pub mod telemetry;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod usage;
pub mod wasm;
pub mod worker;
