//! Request-path errors: what can go wrong, and one table that says what each failure means.
//!
//! Errors on the hot path are small `Copy` values: a kind, the side that caused it and how it
//! may be retried. `ErrorKind::info` is the one table that maps a kind to its status, stable
//! code, side, whether the client connection must close, and its text; everything else (the
//! problem body, metrics, logs, the retry decision) reads it. `problem` in `exchange::respond`
//! is the only place an error becomes response bytes.

use crate::http1::HeadError;

/// Who caused the failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client: bad input, too slow, went away, or not allowed.
    Downstream,
    /// The upstream: refused, timed out, broke its framing, closed.
    Upstream,
    /// The gateway itself (no usable target, a bug).
    Internal,
}

/// Whether a failed upstream attempt may be sent again on a fresh connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Never: the upstream may have acted on the request, or the failure is not transient.
    No,
    /// The request went out on a pooled connection that turned out closed before any response
    /// byte came back: the upstream most likely never saw it. Safe to resend once when the
    /// method is idempotent and the whole body can be sent again.
    StaleConnection,
    /// The upstream said it did not process the request: an HTTP/2 REFUSED_STREAM, or a
    /// stream its GOAWAY excluded (RFC 9113 §8.7). Safe to resend once whatever the method,
    /// when the whole body can be sent again.
    NotProcessed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A head the parser rejected (400/414/431/501/505).
    BadHead(HeadError),
    /// Malformed body framing or path from the client → 400.
    BadBody(&'static str),
    /// A well-formed request a policy cannot read one way only (a field it keys on sent
    /// twice) → 400; the connection stays usable.
    AmbiguousRequest(&'static str),
    /// The client closed or reset while sending its body → 400 (it rarely sees it).
    ClientClosedBody,
    /// Client too slow sending the head or body → 408.
    RequestTimeout,
    /// Request body larger than the route allows → 413.
    BodyTooLarge,
    /// `Expect` other than 100-continue → 417.
    ExpectationFailed,
    /// No route matches → 404.
    NoRoute,
    /// A TLS connection made for another name than the request's host, which none of its
    /// certificates serves → 421.
    Misdirected,
    /// Path matched, method did not → 405 (with the `Allow` bits).
    MethodNotAllowed(u16),
    /// Every target of the upstream is backing off → 503.
    NoHealthyUpstream,
    /// Connection refused / reset / unreachable → 502.
    UpstreamConnect,
    /// Connect did not finish in time → 504.
    UpstreamConnectTimeout,
    /// The TLS handshake with the upstream failed: its certificate did not verify, it wanted
    /// a client certificate we lack, no common protocol → 502.
    UpstreamTls,
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
    /// A route's `client_cert` policy found no verified client certificate → 401.
    ClientCertRequired,
    /// A route's `client_cert` policy refused the certificate → 403 (the detail says why).
    ClientCertRefused(&'static str),
    /// A policy answered the client itself (a forward-auth service's denial, a filter's
    /// local reply) with this status; the answer is `ExchangeFacts::policy_reply`.
    PolicyReply(u16),
    /// A `fail_closed` policy could not reach the service it asks (forward auth, token
    /// introspection) → 503.
    AuthUnavailable(&'static str),
    /// A policy failed inside the gateway (a filter trapped or ran out of fuel) → 500.
    PolicyFailed(&'static str),
    /// A rate limit refused the request → 429.
    TooManyRequests,
    /// A `fail_closed` global rate limit or quota could not reach Redis → 503 (with
    /// `Retry-After`).
    LimiterUnavailable,
    /// The client stopped reading or went away while the response streamed (after its head
    /// was sent: nothing can be rendered; logged as 499 when nothing was sent).
    ClientAborted,
    /// The upstream failed while its response body streamed (after the head was sent: the
    /// client connection is closed so it sees a truncated body, never a wrong one).
    UpstreamAborted,
    /// An upstream circuit-breaker limit is reached → 503 at once (the detail names it).
    UpstreamOverflow(crate::resilience::Limit),
}

/// What one kind of failure means. See `ErrorKind::info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorInfo {
    /// Status the client gets (when a response can still be sent).
    pub status: u16,
    /// Short stable code for the problem body, metrics and logs.
    pub code: &'static str,
    pub side: Side,
    /// The client connection must close after answering: request bytes may be left unread
    /// on the wire, or the connection is already unusable.
    pub close: bool,
    /// Human text: the problem body's `detail` and the log line.
    pub text: &'static str,
}

const fn row(
    status: u16,
    code: &'static str,
    side: Side,
    close: bool,
    text: &'static str,
) -> ErrorInfo {
    ErrorInfo {
        status,
        code,
        side,
        close,
        text,
    }
}

impl ErrorKind {
    /// The error table: every fact about a kind of failure, in one place. Long on purpose: one
    /// row per kind, read top to bottom like a table (splitting it would scatter the table).
    pub const fn info(self) -> ErrorInfo {
        use Side::{Downstream as D, Upstream as U};
        match self {
            ErrorKind::BadHead(h) => {
                let code = match h {
                    HeadError::HeaderTooLarge | HeadError::TooManyHeaders => {
                        "request_header_fields_too_large"
                    }
                    HeadError::UriTooLong => "uri_too_long",
                    HeadError::NotImplemented(_) => "not_implemented",
                    HeadError::VersionNotSupported => "http_version_not_supported",
                    HeadError::BadRequest(_) => "bad_request",
                };
                row(h.status(), code, D, true, h.detail())
            }
            ErrorKind::BadBody(d) => row(400, "bad_request", D, true, d),
            ErrorKind::AmbiguousRequest(d) => row(400, "bad_request", D, false, d),
            ErrorKind::ClientClosedBody => {
                row(400, "bad_request", D, true, "client closed during body")
            }
            ErrorKind::RequestTimeout => row(
                408,
                "request_timeout",
                D,
                true,
                "the request was not received in time",
            ),
            ErrorKind::BodyTooLarge => row(
                413,
                "payload_too_large",
                D,
                true,
                "request body exceeds this route's limit",
            ),
            ErrorKind::ExpectationFailed => row(
                417,
                "expectation_failed",
                D,
                true,
                "only 'Expect: 100-continue' is supported",
            ),
            ErrorKind::NoRoute => row(404, "not_found", D, false, "no route matches this request"),
            ErrorKind::Misdirected => row(
                421,
                "misdirected_request",
                D,
                false,
                "this connection's certificate does not serve the requested host",
            ),
            ErrorKind::MethodNotAllowed(_) => row(
                405,
                "method_not_allowed",
                D,
                false,
                "method not allowed for this path",
            ),
            ErrorKind::NoHealthyUpstream => row(
                503,
                "no_healthy_upstream",
                Side::Internal,
                false,
                "no upstream target is available",
            ),
            ErrorKind::UpstreamConnect => row(
                502,
                "upstream_connect_failed",
                U,
                false,
                "could not connect to the upstream",
            ),
            ErrorKind::UpstreamConnectTimeout => row(
                504,
                "upstream_connect_timeout",
                U,
                false,
                "connecting to the upstream timed out",
            ),
            ErrorKind::UpstreamTls => row(
                502,
                "upstream_tls",
                U,
                false,
                "the TLS handshake with the upstream failed",
            ),
            ErrorKind::UpstreamTimeout => row(
                504,
                "upstream_timeout",
                U,
                false,
                "the upstream did not respond in time",
            ),
            ErrorKind::UpstreamClosed => row(
                502,
                "upstream_closed",
                U,
                false,
                "the upstream closed the connection",
            ),
            ErrorKind::UpstreamBadResponse => row(
                502,
                "upstream_bad_response",
                U,
                false,
                "the upstream sent an invalid response",
            ),
            ErrorKind::Unauthorized(d) => row(401, "unauthorized", D, false, d),
            ErrorKind::Forbidden(d) => row(403, "forbidden", D, false, d),
            ErrorKind::ClientCertRequired => row(
                401,
                "client_certificate_required",
                D,
                false,
                "this route requires a verified TLS client certificate",
            ),
            ErrorKind::ClientCertRefused(d) => row(403, "client_certificate_refused", D, false, d),
            ErrorKind::PolicyReply(status) => {
                row(status, "policy_reply", D, false, "answered by a policy")
            }
            ErrorKind::AuthUnavailable(d) => row(503, "auth_unavailable", U, false, d),
            ErrorKind::PolicyFailed(d) => row(500, "policy_failed", Side::Internal, false, d),
            ErrorKind::TooManyRequests => row(
                429,
                "rate_limited",
                D,
                false,
                "rate limit exceeded; see Retry-After",
            ),
            ErrorKind::LimiterUnavailable => row(
                503,
                "rate_limit_unavailable",
                Side::Internal,
                false,
                "the shared rate-limit store is unreachable; retry shortly",
            ),
            ErrorKind::ClientAborted => row(
                499,
                "client_closed",
                D,
                true,
                "the client went away while the response was sent",
            ),
            ErrorKind::UpstreamAborted => row(
                502,
                "upstream_aborted",
                U,
                true,
                "the upstream failed while sending the response body",
            ),
            ErrorKind::UpstreamOverflow(l) => {
                row(503, "upstream_overflow", Side::Internal, false, l.text())
            }
        }
    }
}

/// A request-path failure: its kind (see the table), and whether it may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyError {
    pub kind: ErrorKind,
    pub retry: Retry,
}

impl ProxyError {
    pub const fn new(kind: ErrorKind) -> Self {
        ProxyError {
            kind,
            retry: Retry::No,
        }
    }

    /// This failure happened on a reused pooled connection before any response byte arrived.
    pub const fn stale(kind: ErrorKind) -> Self {
        ProxyError {
            kind,
            retry: Retry::StaleConnection,
        }
    }

    /// The upstream refused the request before processing it (see `Retry::NotProcessed`).
    pub const fn not_processed(kind: ErrorKind) -> Self {
        ProxyError {
            kind,
            retry: Retry::NotProcessed,
        }
    }

    pub const fn info(&self) -> ErrorInfo {
        self.kind.info()
    }

    pub const fn status(&self) -> u16 {
        self.kind.info().status
    }

    pub const fn side(&self) -> Side {
        self.kind.info().side
    }

    /// Short stable code for the problem body and logs.
    pub const fn code(&self) -> &'static str {
        self.kind.info().code
    }

    /// Whether the client connection must be closed after answering.
    pub const fn must_close(&self) -> bool {
        self.kind.info().close
    }

    /// Whether the attempt that failed this way may be resent on a fresh connection: only the
    /// first attempt, only with the whole body still at hand, and only after a stale pooled
    /// connection (idempotent methods) or a request the upstream said it did not process
    /// (any method).
    pub const fn may_retry(&self, idempotent: bool, replayable_body: bool, attempt: u32) -> bool {
        let safe = match self.retry {
            Retry::No => false,
            Retry::StaleConnection => idempotent,
            Retry::NotProcessed => true,
        };
        safe && replayable_body && attempt == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind, with one representative payload each.
    fn all_kinds() -> Vec<ErrorKind> {
        use HeadError as H;
        let mut v: Vec<ErrorKind> = [
            H::BadRequest("x"),
            H::HeaderTooLarge,
            H::TooManyHeaders,
            H::UriTooLong,
            H::NotImplemented("y"),
            H::VersionNotSupported,
        ]
        .into_iter()
        .map(ErrorKind::BadHead)
        .collect();
        v.extend([
            ErrorKind::BadBody("bad chunk"),
            ErrorKind::AmbiguousRequest("keyed header twice"),
            ErrorKind::ClientClosedBody,
            ErrorKind::RequestTimeout,
            ErrorKind::BodyTooLarge,
            ErrorKind::ExpectationFailed,
            ErrorKind::NoRoute,
            ErrorKind::MethodNotAllowed(3),
            ErrorKind::NoHealthyUpstream,
            ErrorKind::UpstreamConnect,
            ErrorKind::UpstreamConnectTimeout,
            ErrorKind::UpstreamTls,
            ErrorKind::UpstreamTimeout,
            ErrorKind::UpstreamClosed,
            ErrorKind::UpstreamBadResponse,
            ErrorKind::Unauthorized("missing token"),
            ErrorKind::Forbidden("not allowed"),
            ErrorKind::ClientCertRequired,
            ErrorKind::ClientCertRefused("not this one"),
            ErrorKind::PolicyReply(302),
            ErrorKind::AuthUnavailable("auth service down"),
            ErrorKind::PolicyFailed("filter trapped"),
            ErrorKind::TooManyRequests,
            ErrorKind::LimiterUnavailable,
            ErrorKind::ClientAborted,
            ErrorKind::UpstreamAborted,
            ErrorKind::UpstreamOverflow(crate::resilience::Limit::Requests),
        ]);
        v
    }

    #[test]
    fn the_whole_table() {
        use Side::*;
        #[rustfmt::skip]
        let expect: &[(u16, &str, Side, bool)] = &[
            (400, "bad_request", Downstream, true),
            (431, "request_header_fields_too_large", Downstream, true),
            (431, "request_header_fields_too_large", Downstream, true),
            (414, "uri_too_long", Downstream, true),
            (501, "not_implemented", Downstream, true),
            (505, "http_version_not_supported", Downstream, true),
            (400, "bad_request", Downstream, true),
            (400, "bad_request", Downstream, false),
            (400, "bad_request", Downstream, true),
            (408, "request_timeout", Downstream, true),
            (413, "payload_too_large", Downstream, true),
            (417, "expectation_failed", Downstream, true),
            (404, "not_found", Downstream, false),
            (405, "method_not_allowed", Downstream, false),
            (503, "no_healthy_upstream", Internal, false),
            (502, "upstream_connect_failed", Upstream, false),
            (504, "upstream_connect_timeout", Upstream, false),
            (502, "upstream_tls", Upstream, false),
            (504, "upstream_timeout", Upstream, false),
            (502, "upstream_closed", Upstream, false),
            (502, "upstream_bad_response", Upstream, false),
            (401, "unauthorized", Downstream, false),
            (403, "forbidden", Downstream, false),
            (401, "client_certificate_required", Downstream, false),
            (403, "client_certificate_refused", Downstream, false),
            (302, "policy_reply", Downstream, false),
            (503, "auth_unavailable", Upstream, false),
            (500, "policy_failed", Internal, false),
            (429, "rate_limited", Downstream, false),
            (503, "rate_limit_unavailable", Internal, false),
            (499, "client_closed", Downstream, true),
            (502, "upstream_aborted", Upstream, true),
            (503, "upstream_overflow", Internal, false),
        ];
        let kinds = all_kinds();
        assert_eq!(kinds.len(), expect.len());
        for (kind, &(status, code, side, close)) in kinds.iter().zip(expect) {
            let i = kind.info();
            assert_eq!(
                (i.status, i.code, i.side, i.close),
                (status, code, side, close),
                "{kind:?}"
            );
            assert!(!i.text.is_empty(), "{kind:?} has no text");
            assert!(
                i.code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{kind:?}: code must be a stable snake_case token"
            );
        }
    }

    #[test]
    fn payload_text_wins_for_policy_and_parser_errors() {
        assert_eq!(
            ErrorKind::Unauthorized("token expired").info().text,
            "token expired"
        );
        assert_eq!(
            ErrorKind::BadBody("bad chunk size").info().text,
            "bad chunk size"
        );
        let h = ErrorKind::BadHead(HeadError::BadRequest("duplicate host"));
        assert_eq!(h.info().text, "duplicate host");
    }

    #[test]
    fn only_a_stale_first_attempt_of_a_replayable_idempotent_request_retries() {
        let stale = ProxyError::stale(ErrorKind::UpstreamClosed);
        assert!(stale.may_retry(true, true, 1));
        assert!(!stale.may_retry(false, true, 1), "POST is never resent");
        assert!(!stale.may_retry(true, false, 1), "a streamed body is gone");
        assert!(!stale.may_retry(true, true, 2), "one retry at most");
        let refused = ProxyError::not_processed(ErrorKind::UpstreamClosed);
        assert!(
            refused.may_retry(false, true, 1),
            "a refused POST was not processed"
        );
        assert!(
            !refused.may_retry(false, false, 1),
            "a streamed body is gone"
        );
        assert!(!refused.may_retry(true, true, 2), "one retry at most");
        let fresh = ProxyError::new(ErrorKind::UpstreamClosed);
        assert!(
            !fresh.may_retry(true, true, 1),
            "a fresh connection failing is real"
        );
        for k in all_kinds() {
            assert_eq!(ProxyError::new(k).retry, Retry::No);
        }
    }
}
