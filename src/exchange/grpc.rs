//! gRPC at the gateway: which requests are gRPC, the client's deadline (`grpc-timeout`), and
//! gateway errors as gRPC statuses.
//!
//! A gRPC client reads a call's outcome from `grpc-status`, not from the HTTP status, so an
//! error the gateway makes for a gRPC request (`respond::error`) is sent "Trailers-Only":
//! HTTP 200, `content-type: application/grpc`, `grpc-status` and a percent-encoded
//! `grpc-message`, no body. The HTTP status → gRPC code table follows gRPC's
//! "HTTP to gRPC Status Code Mapping", made more precise where the gateway knows more (a
//! timeout is DEADLINE_EXCEEDED, a limit RESOURCE_EXHAUSTED).
//!
//! `grpc-timeout` (1 to 8 digits and a unit: H M S m u n) caps the upstream response timeout;
//! a malformed value is ignored (the upstream's own timeout applies), as gRPC servers do.

use std::time::Duration;

use crate::http1::RequestHead;

/// A gRPC request: `content-type: application/grpc` (or `application/grpc+proto`, ...).
pub fn is_grpc(h: &RequestHead) -> bool {
    h.header("content-type")
        .is_some_and(|v| v.len() >= 16 && v[..16].eq_ignore_ascii_case(b"application/grpc"))
}

/// The content type of the gateway's own answer to a gRPC request: gRPC-Web clients need
/// their own family back (`application/grpc-web` or `-web-text`, the spec's "response
/// content-type should match the request's"); a plain gRPC client gets `application/grpc`.
pub fn answer_type(h: &RequestHead) -> &'static [u8] {
    let t = h.header("content-type").unwrap_or(b"");
    let starts = |p: &[u8]| t.len() >= p.len() && t[..p.len()].eq_ignore_ascii_case(p);
    if starts(b"application/grpc-web-text") {
        b"application/grpc-web-text"
    } else if starts(b"application/grpc-web") {
        b"application/grpc-web"
    } else {
        b"application/grpc"
    }
}

/// gRPC status codes the gateway produces.
pub mod code {
    pub const CANCELLED: u8 = 1;
    pub const UNKNOWN: u8 = 2;
    pub const INVALID_ARGUMENT: u8 = 3;
    pub const DEADLINE_EXCEEDED: u8 = 4;
    pub const PERMISSION_DENIED: u8 = 7;
    pub const RESOURCE_EXHAUSTED: u8 = 8;
    pub const UNIMPLEMENTED: u8 = 12;
    pub const INTERNAL: u8 = 13;
    pub const UNAVAILABLE: u8 = 14;
    pub const UNAUTHENTICATED: u8 = 16;
}

/// The gRPC status for a gateway error with HTTP status `status`.
pub fn status_for(status: u16) -> u8 {
    match status {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 | 405 | 501 => code::UNIMPLEMENTED,
        408 | 504 => code::DEADLINE_EXCEEDED,
        413 | 429 | 431 => code::RESOURCE_EXHAUSTED,
        414 => code::INVALID_ARGUMENT,
        499 => code::CANCELLED,
        502 | 503 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// The client's deadline from `grpc-timeout`, if it sent a well-formed one.
pub fn timeout(h: &RequestHead) -> Option<Duration> {
    parse_timeout(h.header("grpc-timeout")?)
}

/// `TimeoutValue TimeoutUnit`: at most 8 ASCII digits, then one of H M S m u n.
pub fn parse_timeout(v: &[u8]) -> Option<Duration> {
    let v = v.trim_ascii();
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Writes the Trailers-Only status fields for an error: content type, `grpc-status`,
/// `grpc-message`.
pub fn write_status_fields(
    fields: &mut Vec<u8>,
    content_type: &[u8],
    grpc_status: u8,
    message: &str,
) {
    use crate::http1::{push_decimal, write_header};
    write_header(fields, b"content-type", content_type);
    fields.extend_from_slice(b"grpc-status: ");
    push_decimal(fields, u64::from(grpc_status));
    fields.extend_from_slice(b"\r\n");
    fields.extend_from_slice(b"grpc-message: ");
    percent_encode(fields, message.as_bytes());
    fields.extend_from_slice(b"\r\n");
}

/// gRPC's `grpc-message` encoding: bytes outside printable ASCII, and `%`, as `%XX`.
pub fn percent_encode(out: &mut Vec<u8>, msg: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in msg {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_per_the_spec() {
        assert_eq!(parse_timeout(b"100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout(b"5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout(b"1M"), Some(Duration::from_secs(60)));
        assert_eq!(
            parse_timeout(b"99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        assert_eq!(parse_timeout(b"7u"), Some(Duration::from_micros(7)));
        for bad in [
            &b""[..],
            b"m",
            b"123456789S",
            b"-1S",
            b"+1S",
            b"1s",
            b"1.5S",
            b"S1",
            b"1 S",
        ] {
            assert_eq!(
                parse_timeout(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn statuses_map_to_grpc_codes() {
        assert_eq!(status_for(401), 16);
        assert_eq!(status_for(403), 7);
        assert_eq!(status_for(404), 12);
        assert_eq!(status_for(429), 8);
        assert_eq!(status_for(503), 14);
        assert_eq!(status_for(502), 14);
        assert_eq!(status_for(504), 4);
        assert_eq!(status_for(413), 8);
        assert_eq!(status_for(400), 13);
        assert_eq!(status_for(418), 2);
    }

    #[test]
    fn messages_are_percent_encoded() {
        let mut out = Vec::new();
        percent_encode(&mut out, "50% off: caf\u{e9}\n".as_bytes());
        assert_eq!(out, b"50%25 off: caf%C3%A9%0A");
    }
}
