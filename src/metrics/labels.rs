//! The metrics' fixed vocabulary: method labels and their index, the unmatched-route label,
//! and the generic worker-local counters (`CoreCounter`). Shared by recording and rendering.

/// Method labels; `record_request`'s `method` indexes this (anything larger is `_OTHER`).
pub const METHOD_LABELS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "_OTHER",
];

/// Index of `_OTHER` in `METHOD_LABELS`.
pub const METHOD_OTHER: u8 = 9;

/// Set in `record_request`'s `method` byte for a request that came over HTTP/2 (the
/// `protocol` label); the low bits are the `METHOD_LABELS` index.
pub const HTTP2_FLAG: u8 = 0x40;

/// The `protocol` label of a recorded method byte.
pub fn protocol_label(method: u8) -> &'static str {
    if method & HTTP2_FLAG != 0 {
        "HTTP/2.0"
    } else {
        "HTTP/1.1"
    }
}

/// The `METHOD_LABELS` index of a recorded method byte.
pub fn method_of(method: u8) -> usize {
    usize::from((method & !HTTP2_FLAG).min(METHOD_OTHER))
}

/// Route label for requests that matched no route.
pub const NO_ROUTE: &str = "_none";

/// Maps a request method to its `METHOD_LABELS` index (extension methods → `_OTHER`).
pub fn method_index(method: &[u8]) -> u8 {
    METHOD_LABELS[..METHOD_OTHER as usize]
        .iter()
        .position(|m| m.as_bytes() == method)
        .map_or(METHOD_OTHER, |i| i as u8)
}

/// Generic worker-local counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoreCounter {
    /// Access-log lines dropped because the log queue was full.
    AccessLogDropped,
    /// Trace spans dropped because the export queue was full.
    SpansDropped,
    /// Client connections refused at accept: the process-wide cap was reached.
    ConnRefusedMax,
    /// Client connections refused at accept: the client address's cap was reached.
    ConnRefusedPerIp,
    /// Connections closed because a request body came too slowly (rate or total time).
    SlowRequestBody,
    /// Connections closed because the client read a response too slowly.
    SlowResponse,
    /// Tunnels (WebSocket) closed after `timeouts.tunnel_idle` without traffic.
    TunnelIdle,
    /// TLS handshakes completed: full, and resumed (session ticket or session id).
    TlsFull,
    TlsResumed,
    /// TLS handshakes failed, by reason (see `tls::stream::HandshakeFail`).
    TlsFailTimeout,
    TlsFailEof,
    TlsFailIo,
    TlsFailIncompatible,
    TlsFailUnknownName,
    TlsFailClientCert,
    TlsFailAlert,
    TlsFailProtocol,
    TlsFailPlainHttp,
    /// HTTP/2 connections established (ALPN h2 or h2c prior knowledge).
    Http2Connections,
    /// HTTP/2 connections that ended in a protocol error (the h2 codec sent GOAWAY).
    Http2ProtocolErrors,
    /// HTTP/2 connections closed with GOAWAY(ENHANCE_YOUR_CALM) for a flood, by budget.
    Http2FloodResets,
    Http2FloodPings,
    Http2FloodSettings,
    Http2FloodEmptyFrames,
    Http2FloodWindowUpdates,
    /// Upstream HTTP/2 connections closed because the upstream flooded frames, by budget.
    UpstreamHttp2FloodPings,
    UpstreamHttp2FloodSettings,
    UpstreamHttp2FloodEmptyFrames,
    UpstreamHttp2FloodWindowUpdates,
}

impl CoreCounter {
    /// Number of variants (length of counter arrays).
    pub const COUNT: usize = 29;
    /// Every variant, in index order.
    pub const ALL: [CoreCounter; CoreCounter::COUNT] = [
        CoreCounter::AccessLogDropped,
        CoreCounter::SpansDropped,
        CoreCounter::ConnRefusedMax,
        CoreCounter::ConnRefusedPerIp,
        CoreCounter::SlowRequestBody,
        CoreCounter::SlowResponse,
        CoreCounter::TunnelIdle,
        CoreCounter::TlsFull,
        CoreCounter::TlsResumed,
        CoreCounter::TlsFailTimeout,
        CoreCounter::TlsFailEof,
        CoreCounter::TlsFailIo,
        CoreCounter::TlsFailIncompatible,
        CoreCounter::TlsFailUnknownName,
        CoreCounter::TlsFailClientCert,
        CoreCounter::TlsFailAlert,
        CoreCounter::TlsFailProtocol,
        CoreCounter::TlsFailPlainHttp,
        CoreCounter::Http2Connections,
        CoreCounter::Http2ProtocolErrors,
        CoreCounter::Http2FloodResets,
        CoreCounter::Http2FloodPings,
        CoreCounter::Http2FloodSettings,
        CoreCounter::Http2FloodEmptyFrames,
        CoreCounter::Http2FloodWindowUpdates,
        CoreCounter::UpstreamHttp2FloodPings,
        CoreCounter::UpstreamHttp2FloodSettings,
        CoreCounter::UpstreamHttp2FloodEmptyFrames,
        CoreCounter::UpstreamHttp2FloodWindowUpdates,
    ];

    /// HTTP/2 flood counters with their `kind` label.
    pub const HTTP2_FLOODS: [(&'static str, CoreCounter); 5] = [
        ("resets", CoreCounter::Http2FloodResets),
        ("pings", CoreCounter::Http2FloodPings),
        ("settings", CoreCounter::Http2FloodSettings),
        ("empty_frames", CoreCounter::Http2FloodEmptyFrames),
        ("window_updates", CoreCounter::Http2FloodWindowUpdates),
    ];

    /// Upstream HTTP/2 flood counters with their `kind` label (RST_STREAM is not charged on
    /// an upstream's connection).
    pub const UPSTREAM_HTTP2_FLOODS: [(&'static str, CoreCounter); 4] = [
        ("pings", CoreCounter::UpstreamHttp2FloodPings),
        ("settings", CoreCounter::UpstreamHttp2FloodSettings),
        ("empty_frames", CoreCounter::UpstreamHttp2FloodEmptyFrames),
        (
            "window_updates",
            CoreCounter::UpstreamHttp2FloodWindowUpdates,
        ),
    ];

    /// TLS handshake failure counters with their `reason` label.
    pub const TLS_FAILURES: [(&'static str, CoreCounter); 9] = [
        ("timeout", CoreCounter::TlsFailTimeout),
        ("eof", CoreCounter::TlsFailEof),
        ("io", CoreCounter::TlsFailIo),
        ("incompatible", CoreCounter::TlsFailIncompatible),
        ("unknown_name", CoreCounter::TlsFailUnknownName),
        ("client_cert", CoreCounter::TlsFailClientCert),
        ("alert", CoreCounter::TlsFailAlert),
        ("protocol", CoreCounter::TlsFailProtocol),
        ("plain_http", CoreCounter::TlsFailPlainHttp),
    ];

    /// Position in counter arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_index_maps_known_and_other() {
        assert_eq!(method_index(b"GET"), 0);
        assert_eq!(method_index(b"PATCH"), 8);
        assert_eq!(method_index(b"PROPFIND"), METHOD_OTHER);
        assert_eq!(method_index(b"get"), METHOD_OTHER);
        assert_eq!(method_index(b"_OTHER"), METHOD_OTHER);
    }
}
