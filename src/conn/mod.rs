//! Wires: connection drivers that turn bytes into exchanges and exchanges' answers into bytes.
//! `http1` drives one HTTP/1.1 connection (`client` is its `Downstream`); `linger`, `rate` and
//! `tunnel` are its slow-client, lingering-close and WebSocket helpers. HTTP/2 and TLS join
//! here, producing the same `exchange::Exchange`.

pub mod accept;
pub mod client;
pub mod http1;
pub mod linger;
pub mod rate;
pub mod tunnel;

pub use accept::{plain_http1, serve_accepted, ListenerCtx};
pub use http1::serve_connection;
