//! Configuration: `raw` mirrors the TOML file, `compile` validates it into `Compiled`
//! (`model`), the immutable table every worker reads through the control thread's `ArcSwap`.
//!
//! Layout: `errors` (positioned diagnostics and the shared checked readers) and `units`
//! (durations, sizes) are vocabulary that policy blocks use too; `raw` is the serde mirror;
//! `compile` validates the top-level sections and dispatches to `listeners` (addresses, TLS,
//! HTTPS redirects, `http2` limits), `upstreams` (targets, pools, TLS, resilience records), `routes` (one route: match spec and action), `policies` (consumers, key
//! store, named policies: each kind compiles in its own block), `defaults` (a route's
//! effective policy list), `telemetry`, `abuse`, `paths` and `dns`; `summary` renders a compiled
//! config for `check` and the admin API; `schema` is the file's JSON Schema.
//!
//! This file only declares and re-exports: no child imports from it.

pub mod abuse;
pub mod compile;
pub mod defaults;
pub mod dns;
pub mod errors;
pub mod health;
pub mod http2;
pub mod listeners;
pub mod model;
pub mod openapi;
pub mod paths;
pub mod policies;
pub mod raw;
pub mod retries;
pub mod routes;
pub mod schema;
pub mod scope;
pub mod summary;
pub mod telemetry;
pub mod traffic;
pub mod units;
pub mod upstreams;

pub use compile::{load, load_text, load_with, recompile};
pub use errors::ConfigError;
pub use model::*;
pub use telemetry::{AccessLogFormat, AccessLogSettings, OtlpSettings, Telemetry, TracingSettings};
