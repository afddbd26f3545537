//! Compiled TLS settings of a listener (and, later, of an upstream).

use std::sync::Arc;
use std::time::Duration;

/// A listener's compiled TLS: the rustls server config and the handshake limits.
#[derive(Debug)]
pub struct ListenerTls {
    pub server: Arc<rustls::ServerConfig>,
    /// Time allowed for the whole handshake; the connection is closed after it.
    pub handshake_timeout: Duration,
}
