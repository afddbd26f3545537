//! Request-path errors and the one function that turns them into responses.
//!
//! Errors on the hot path are small `Copy` values: a kind (which fixes the status), the side
//! that caused it, and whether the connection must close. `render()` is the only place that
//! maps an error to status, headers and a problem+json body.

use crate::http1::{self, HeadError};

/// Who caused the failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Downstream,
    Upstream,
    Internal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A head the parser rejected (400/414/431/501/505).
    BadHead(HeadError),
    /// Malformed body framing from the client (bad chunk) → 400.
    BadBody(&'static str),
    /// Client too slow sending the head or body → 408.
    RequestTimeout,
    /// Request body larger than the route allows → 413.
    BodyTooLarge,
    /// `Expect` other than 100-continue → 417.
    ExpectationFailed,
    /// No route matches → 404.
    NoRoute,
    /// Path matched, method did not → 405 (with the `Allow` bits).
    MethodNotAllowed(u16),
    /// Every target of the upstream is backing off → 503.
    NoHealthyUpstream,
    /// Connection refused / reset / unreachable → 502.
    UpstreamConnect,
    /// Connect did not finish in time → 504.
    UpstreamConnectTimeout,
    /// No response head in time → 504.
    UpstreamTimeout,
    /// Upstream closed or reset before a full response head → 502.
    UpstreamClosed,
    /// Upstream sent a head or framing we refuse → 502.
    UpstreamBadResponse,
    /// A policy found no or bad credentials → 401 (the detail says which).
    Unauthorized(&'static str),
    /// A policy refused an authenticated caller or its address → 403.
    Forbidden(&'static str),
    /// A rate limit refused the request → 429.
    TooManyRequests,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub side: Side,
}

impl ProxyError {
    pub fn new(kind: ErrorKind) -> Self {
        let side = match kind {
            ErrorKind::BadHead(_)
            | ErrorKind::BadBody(_)
            | ErrorKind::RequestTimeout
            | ErrorKind::BodyTooLarge
            | ErrorKind::ExpectationFailed
            | ErrorKind::NoRoute
            | ErrorKind::MethodNotAllowed(_)
            | ErrorKind::Unauthorized(_)
            | ErrorKind::Forbidden(_)
            | ErrorKind::TooManyRequests => Side::Downstream,
            ErrorKind::NoHealthyUpstream
            | ErrorKind::UpstreamConnect
            | ErrorKind::UpstreamConnectTimeout
            | ErrorKind::UpstreamTimeout
            | ErrorKind::UpstreamClosed
            | ErrorKind::UpstreamBadResponse => Side::Upstream,
        };
        ProxyError { kind, side }
    }

    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::BadHead(h) => h.status(),
            ErrorKind::BadBody(_) => 400,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::ExpectationFailed => 417,
            ErrorKind::NoRoute => 404,
            ErrorKind::MethodNotAllowed(_) => 405,
            ErrorKind::NoHealthyUpstream => 503,
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamClosed => 502,
            ErrorKind::UpstreamBadResponse => 502,
            ErrorKind::UpstreamConnectTimeout | ErrorKind::UpstreamTimeout => 504,
            ErrorKind::Unauthorized(_) => 401,
            ErrorKind::Forbidden(_) => 403,
            ErrorKind::TooManyRequests => 429,
        }
    }

    /// Short stable code for the problem body and logs.
    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadHead(HeadError::HeaderTooLarge | HeadError::TooManyHeaders) => {
                "request_header_fields_too_large"
            }
            ErrorKind::BadHead(HeadError::UriTooLong) => "uri_too_long",
            ErrorKind::BadHead(HeadError::NotImplemented(_)) => "not_implemented",
            ErrorKind::BadHead(HeadError::VersionNotSupported) => "http_version_not_supported",
            ErrorKind::BadHead(_) | ErrorKind::BadBody(_) => "bad_request",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::BodyTooLarge => "payload_too_large",
            ErrorKind::ExpectationFailed => "expectation_failed",
            ErrorKind::NoRoute => "not_found",
            ErrorKind::MethodNotAllowed(_) => "method_not_allowed",
            ErrorKind::NoHealthyUpstream => "no_healthy_upstream",
            ErrorKind::UpstreamConnect => "upstream_connect_failed",
            ErrorKind::UpstreamConnectTimeout => "upstream_connect_timeout",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamClosed => "upstream_closed",
            ErrorKind::UpstreamBadResponse => "upstream_bad_response",
            ErrorKind::Unauthorized(_) => "unauthorized",
            ErrorKind::Forbidden(_) => "forbidden",
            ErrorKind::TooManyRequests => "rate_limited",
        }
    }

    fn detail(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadHead(h) => h.detail(),
            ErrorKind::BadBody(d) => d,
            ErrorKind::RequestTimeout => "the request was not received in time",
            ErrorKind::BodyTooLarge => "request body exceeds this route's limit",
            ErrorKind::ExpectationFailed => "only 'Expect: 100-continue' is supported",
            ErrorKind::NoRoute => "no route matches this request",
            ErrorKind::MethodNotAllowed(_) => "method not allowed for this path",
            ErrorKind::NoHealthyUpstream => "no upstream target is available",
            ErrorKind::UpstreamConnect => "could not connect to the upstream",
            ErrorKind::UpstreamConnectTimeout => "connecting to the upstream timed out",
            ErrorKind::UpstreamTimeout => "the upstream did not respond in time",
            ErrorKind::UpstreamClosed => "the upstream closed the connection",
            ErrorKind::UpstreamBadResponse => "the upstream sent an invalid response",
            ErrorKind::Unauthorized(d) | ErrorKind::Forbidden(d) => d,
            ErrorKind::TooManyRequests => "rate limit exceeded; see Retry-After",
        }
    }

    /// Whether the client connection must be closed after answering. Anything that may have
    /// left unread request bytes on the wire (bad framing, timeouts, oversized bodies) closes.
    pub fn must_close(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::BadHead(_)
                | ErrorKind::BadBody(_)
                | ErrorKind::RequestTimeout
                | ErrorKind::BodyTooLarge
                | ErrorKind::ExpectationFailed
        )
    }
}

/// Renders `err` as a complete HTTP/1.1 response into `out` (head and problem+json body).
/// `keep` = the connection stays open (decides the `Connection` header for `version`);
/// `head_only` omits the body (HEAD requests) but keeps its Content-Length.
pub fn render(
    err: &ProxyError,
    request_id: &str,
    keep: bool,
    version: http1::Version,
    head_only: bool,
    extra_headers: &[u8],
    out: &mut Vec<u8>,
) {
    let status = err.status();
    let mut body = Vec::with_capacity(160);
    body.extend_from_slice(b"{\"type\":\"about:blank\",\"title\":\"");
    body.extend_from_slice(http1::reason_phrase(status).as_bytes());
    body.extend_from_slice(b"\",\"status\":");
    body.extend_from_slice(status.to_string().as_bytes());
    body.extend_from_slice(b",\"code\":\"");
    body.extend_from_slice(err.code().as_bytes());
    body.extend_from_slice(b"\",\"detail\":\"");
    crate::json::escape_into(&mut body, err.detail().as_bytes());
    body.extend_from_slice(b"\",\"request_id\":\"");
    crate::json::escape_into(&mut body, request_id.as_bytes());
    body.extend_from_slice(b"\"}\n");

    http1::write_status_line(out, status);
    http1::write_header(out, b"content-type", b"application/problem+json");
    http1::write_header(out, b"content-length", body.len().to_string().as_bytes());
    if let ErrorKind::MethodNotAllowed(bits) = err.kind {
        http1::write_header(out, b"allow", http1::allow_header_value(bits).as_bytes());
    }
    if !request_id.is_empty() {
        http1::write_header(out, b"x-request-id", request_id.as_bytes());
    }
    out.extend_from_slice(extra_headers);
    http1::write_connection(out, keep, version);
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&body);
    }
}
