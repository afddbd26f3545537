//! The protocol-neutral request path. A wire (`conn::http1`; HTTP/2 next) turns bytes into an
//! `Exchange` (`model`), hands it to `pipeline::run` and frames whatever the phases answer
//! through the `Downstream` seam (`wire`). Routing, policies, forwarding, retries and error
//! responses live here once, for every wire.
//!
//! Module map: `model` (the exchange), `wire` (the seam), `pipeline` (phase order), `route`,
//! `guard` (CORS preflight + policies), `forward` with `send` (upstream attempts, retry),
//! `forward_h2` (the same to an HTTP/2 upstream), `grpc` (deadlines, errors as gRPC statuses) and
//! `body` (body streaming), `local` (static / redirect / echo), `respond` (errors and local
//! answers become responses here), `error` (the error table), `origin` (who the client is),
//! `upstream_head` (the head sent upstream), `response_head` (the client's head for a proxied
//! answer), `cache_phase` (the response cache around forwarding), `shape` (compression and
//! the cache's recorder between the upstream's body and the wire) and `stored` (answering from,
//! recording into and revalidating the store, shared by those two), `client_cert` (its `x-forwarded-client-cert`),
//! `memory` (a wire made of memory, for tests and
//! fuzzing), `portal` and `mcp` (the developer portal and MCP endpoint of an `[[openapi]]`
//! block).

pub mod begin;
pub mod body;
pub mod cache_phase;
pub mod callout;
pub mod client_cert;
pub mod error;
pub mod forward;
pub mod forward_h2;
pub mod grpc;
pub mod guard;
pub mod local;
pub mod mcp;
pub mod memory;
pub mod mirror;
pub mod model;
pub mod origin;
pub mod pipeline;
pub mod portal;
pub mod respond;
pub mod response_head;
pub mod retry;
pub mod route;
pub mod send;
pub mod shape;
pub mod stored;
pub mod traffic;
pub mod upstream_head;
pub mod wire;

pub use error::{ErrorKind, ProxyError, Side};
pub use model::{ClientFacts, Exchange, ExchangeFacts, UpstreamFacts};
pub use wire::{BodyLen, Downstream, Outcome, Response};

#[cfg(test)]
mod tests;
