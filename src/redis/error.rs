//! What a Redis call can fail with.

/// What a Redis call can fail with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisError {
    /// No reply within the configured timeout.
    Timeout,
    /// No connection: refused, reset, closed, or the node is backing off after a failure.
    Unavailable(String),
    /// Redis answered with an error (`-ERR ...`).
    Server(String),
    /// A reply that is not what the caller expected, or not RESP at all.
    Protocol(String),
}

impl std::fmt::Display for RedisError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisError::Timeout => f.write_str("timed out"),
            RedisError::Unavailable(m) => write!(f, "unavailable: {m}"),
            RedisError::Server(m) => write!(f, "server error: {m}"),
            RedisError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}
