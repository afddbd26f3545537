//! Compiled TLS settings of a listener (and, later, of an upstream).

use std::sync::Arc;
use std::time::Duration;

/// A listener's compiled TLS: the rustls server config and the handshake limits.
#[derive(Debug)]
pub struct ListenerTls {
    /// Certificates, SNI, ALPN, versions, client auth, tickets. Its session storage is
    /// replaced per worker (`WorkerTls`).
    pub server: Arc<rustls::ServerConfig>,
    /// Time allowed for the whole handshake; the connection is closed after it.
    pub handshake_timeout: Duration,
    /// Entries of each worker's TLS 1.2 session-id cache (0 = none).
    pub session_cache: usize,
}
