//! TLS over monoio (being built).
