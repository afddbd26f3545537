//! Distributed tracing: W3C Trace Context propagation (`context`) and OTLP/HTTP JSON span
//! export (`otlp` encoding, `exporter` batching thread, `endpoint` collector URL, `client`
//! its POSTs over `ureq`).
//!
//! Invariants: workers never block on tracing — they parse/write headers with a per-core PRNG
//! and hand finished spans to a bounded queue with `try_send`; everything slow (DNS, sockets,
//! a dead collector) happens on the "ringway-otlp" thread. Whatever cannot be sent is dropped
//! and counted, never retried without bound.

pub mod client;
pub mod context;
pub mod endpoint;
pub mod exporter;
pub mod otlp;

pub use crate::civil::{now_unix_nanos, unix_nanos};
pub use context::{hex_lower, parse_traceparent, IdRng, TraceContext};
pub use endpoint::{parse_endpoint, Endpoint};
pub use exporter::{CoreSpans, OtlpConfig, SpanExporter, CORE_BATCH};
pub use otlp::{encode_otlp_json, SpanRecord};
