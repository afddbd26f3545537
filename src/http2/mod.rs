//! The HTTP/2 wire (RFC 9113), on the h2 crate: `server` runs one client connection (settings,
//! accepting streams, drain and idle GOAWAY, flood answers), `stream` is one stream as the
//! phases' `Downstream`, `request` turns a stream's header block into the same `RequestHead`
//! an HTTP/1.1 client produces (so it passes the same checks). The frames a client may only
//! send so often are counted by `crate::h2flood`, which upstream connections share.
//!
//! This file only declares.

pub mod request;
pub mod server;
pub mod stream;
