//! An HTTP/2 request's header block as the phases see every request: a `RequestHead`.
//!
//! The pseudo-headers and fields are written out as an HTTP/1.1 head (`:method :path`,
//! `host` from `:authority`, the fields, `cookie` crumbs joined with "; " as RFC 9113 §8.2.3
//! asks) and parsed by `http1::parse_request_head`, so both wires pass the very same checks
//! and limits, and routing, policies and forwarding need no second code path.
//!
//! Invariants: a body without `content-length` is announced as chunked (the upstream gets it
//! chunked); `expect` is dropped (HTTP/2 has no 100-continue handshake to wait for); the h2
//! codec has already refused connection-specific fields and malformed pseudo-headers.

use http::request::Parts;

use crate::http1::{self, HeadError, Limits, RequestHead};

/// Builds and checks the head of a request whose body follows (`has_body`) or not.
pub fn to_head(parts: &Parts, has_body: bool, limits: &Limits) -> Result<RequestHead, HeadError> {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(parts.method.as_str().as_bytes());
    buf.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    buf.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    buf.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = parts.uri.authority();
    if let Some(a) = authority {
        http1::write_header(&mut buf, b"host", a.as_str().as_bytes());
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    let mut has_length = false;
    for (name, value) in &parts.headers {
        let n = name.as_str().as_bytes();
        match n {
            b"host" if authority.is_some() => continue,
            b"expect" => continue,
            b"cookie" => {
                cookies.push(value.as_bytes());
                continue;
            }
            b"content-length" => has_length = true,
            _ => {}
        }
        http1::write_header(&mut buf, n, value.as_bytes());
    }
    if !cookies.is_empty() {
        buf.extend_from_slice(b"cookie: ");
        for (i, c) in cookies.iter().enumerate() {
            if i > 0 {
                buf.extend_from_slice(b"; ");
            }
            buf.extend_from_slice(c);
        }
        buf.extend_from_slice(b"\r\n");
    }
    if has_body && !has_length {
        buf.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    buf.extend_from_slice(b"\r\n");
    // The header list was bounded by SETTINGS_MAX_HEADER_LIST_SIZE; the rewrite adds a few
    // bytes per field, which the HTTP/1.1 limits must not count against the client.
    let limits = Limits {
        max_header_bytes: limits.max_header_bytes.max(buf.len()),
        ..*limits
    };
    match http1::parse_request_head(&buf, &limits)? {
        Some((head, _)) => Ok(head),
        None => Err(HeadError::BadRequest("incomplete header block")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{BodyFraming, Method};

    fn parts(req: http::request::Builder) -> Parts {
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn authority_path_cookies_and_framing() {
        let p = parts(
            http::Request::builder()
                .method("POST")
                .uri("https://api.example.com:8443/v1/items?x=1")
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .header("x-id", "7"),
        );
        let head = to_head(&p, true, &Limits::default()).unwrap();
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.path(), b"/v1/items");
        assert_eq!(head.query(), Some(&b"x=1"[..]));
        assert_eq!(head.header("host"), Some(&b"api.example.com:8443"[..]));
        assert_eq!(head.header("cookie"), Some(&b"a=1; b=2"[..]));
        assert_eq!(head.body, BodyFraming::Chunked);
        let bodiless = to_head(&p, false, &Limits::default()).unwrap();
        assert_eq!(bodiless.body, BodyFraming::None);
    }

    #[test]
    fn the_http1_rules_apply() {
        let no_host = parts(http::Request::builder().uri("/x"));
        assert!(matches!(
            to_head(&no_host, false, &Limits::default()),
            Err(HeadError::BadRequest(_))
        ));
        let long = parts(
            http::Request::builder()
                .uri(format!("http://h/{}", "a".repeat(9000)))
                .header("x", "y"),
        );
        assert_eq!(
            to_head(&long, false, &Limits::default()).err(),
            Some(HeadError::UriTooLong)
        );
        let two_lengths = parts(
            http::Request::builder()
                .uri("http://h/")
                .header("content-length", "3")
                .header("content-length", "4"),
        );
        assert!(to_head(&two_lengths, true, &Limits::default()).is_err());
    }
}
