//! TLS under the wires: rustls driven over monoio's owned buffers (`stream`), the compiled
//! listener and upstream TLS settings (`settings`), the listener `tls` table that compiles into
//! them (`config`), certificate files (`certs`), SNI selection (`sni`), process-wide
//! session-ticket keys (`tickets`), client-certificate facts (`client_cert`), upstream client
//! configs (`upstream`), the plain-or-TLS byte stream (`transport`), its poll-style form for
//! libraries built on tokio's io traits (`poll`), and each worker's server
//! configs and session caches (`worker`).

pub mod certs;
pub mod client_cert;
pub mod config;
pub mod poll;
pub mod settings;
pub mod sni;
pub mod stream;
pub mod tickets;
pub mod transport;
pub mod upstream;
pub mod worker;
