//! Route policies. `pipeline` owns the enum and the loop that runs a route's policies in
//! order; the other modules own one policy kind each, with its Raw config type and its
//! `compile` (CORS, header/query transforms, IP filters and client-address resolution, the
//! `api_key` lookup, `authorize`, `rate_limit`, `quota`, `client_cert`). The key store (`apikey`), JWT
//! verification (`jwt`) and the limiter tables (`ratelimit`) live in their own top-level
//! modules because they also own CLI, background threads or cross-worker state.

pub mod api_key;
pub mod authorize;
pub mod client_cert;
pub mod cors;
pub mod forward_auth;
pub mod forward_auth_check;
pub mod introspect;
pub mod introspect_check;
pub mod ip;
pub mod pipeline;
pub mod quota;
pub mod rate_limit;
pub mod remote;
pub mod service;
pub mod transform;
