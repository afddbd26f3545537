//! ringway: a thread-per-core, io_uring API gateway. See README.md and ../shared/DESIGN.md.
//!
//! Request path: `worker` accepts → `proxy` reads the head (`http1`), routes (`route`) against
//! the compiled `config`, runs the action, forwards through `upstream` pools; `error` renders
//! every failure. `control` owns signals and reloads.
//! `telemetry` records each finished request into core-local `metrics`, the `accesslog`
//! buffer and `trace` spans; `admin` serves them off the workers.

pub mod accesslog;
pub mod admin;
pub mod admission;
pub mod apikey;
pub mod civil;
pub mod config;
pub mod control;
pub mod core;
pub mod error;
pub mod http1;
pub mod io;
pub mod json;
pub mod jwt;
pub mod keyed_hash;
pub mod log;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod ratelimit;
pub mod request_id;
pub mod route;
pub mod shared;
pub mod telemetry;
pub mod trace;
pub mod upstream;
pub mod worker;
