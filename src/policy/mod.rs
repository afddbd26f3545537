//! Route policies. `pipeline` owns the enum and the loop that runs a route's policies in
//! order; the other modules own one policy family each (CORS, header/query transforms, IP
//! filters and client-address resolution). API keys (`apikey`), JWT (`jwt`) and rate limits
//! (`ratelimit`) live in their own top-level modules because they also own CLI, background
//! threads or cross-worker state.

pub mod cors;
pub mod ip;
pub mod pipeline;
pub mod transform;
