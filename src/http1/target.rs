//! Request-target and authority syntax (RFC 9112 §3.2, RFC 3986 §3.2): which form a target
//! has (origin, absolute, asterisk), where its path and query are, and whether an authority or
//! Host value is plausible.
//!
//! Invariants: targets are visible ASCII without a fragment; asterisk-form only with OPTIONS;
//! absolute-form only for `http`/`https` with an authority free of userinfo; the path/query split
//! is at the first `?`. Spans are relative to the request head's buffer.

use super::types::{HeadError, Method, Span};

/// Removes a `:port` suffix (handles `[v6]:port`).
pub fn strip_port(raw: &[u8]) -> &[u8] {
    if raw.first() == Some(&b'[') {
        return match raw.iter().position(|&b| b == b']') {
            Some(i) => &raw[..=i],
            None => raw,
        };
    }
    match raw.iter().rposition(|&b| b == b':') {
        Some(i) => &raw[..i],
        None => raw,
    }
}

/// Sub-range `[from, to)` of `s`, relative to its start.
pub(super) fn sub_span(s: Span, from: usize, to: usize) -> Span {
    Span {
        start: s.start + from as u32,
        end: s.start + to as u32,
    }
}

/// Splits `target[from..]` at the first '?' into (path, query).
pub(super) fn split_query(target: Span, bytes: &[u8], from: usize) -> (Span, Option<Span>) {
    let tail = &bytes[from..];
    match tail.iter().position(|&b| b == b'?') {
        Some(q) => (
            sub_span(target, from, from + q),
            Some(sub_span(target, from + q + 1, bytes.len())),
        ),
        None => (sub_span(target, from, bytes.len()), None),
    }
}

pub(super) enum TargetForm {
    Origin,
    Asterisk,
    Absolute {
        authority_start: usize,
        authority_end: usize,
    },
}

pub(super) fn classify_target(t: &[u8], method: Method) -> Result<TargetForm, HeadError> {
    if t.is_empty() || !t.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err(HeadError::BadRequest("invalid request-target"));
    }
    if t.contains(&b'#') {
        return Err(HeadError::BadRequest("fragment in request-target"));
    }
    if t == b"*" {
        return if method == Method::Options {
            Ok(TargetForm::Asterisk)
        } else {
            Err(HeadError::BadRequest("asterisk-form only with OPTIONS"))
        };
    }
    if t[0] == b'/' {
        return Ok(TargetForm::Origin);
    }
    let scheme_len = if starts_with_ignore_case(t, b"http://") {
        7
    } else if starts_with_ignore_case(t, b"https://") {
        8
    } else {
        return Err(HeadError::BadRequest("invalid request-target"));
    };
    let authority_len = t[scheme_len..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(t.len() - scheme_len);
    let authority_end = scheme_len + authority_len;
    if !valid_authority(&t[scheme_len..authority_end]) {
        return Err(HeadError::BadRequest("invalid authority in request-target"));
    }
    Ok(TargetForm::Absolute {
        authority_start: scheme_len,
        authority_end,
    })
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The characters of a host name the gateway accepts: letters, digits, `.`, `-`, `_`. RFC
/// 3986's reg-name also allows sub-delims (`,` `;` `=` `!` `$` `&` ...) and percent-escapes,
/// but no DNS name holds them, and a backend may read them differently than the router did:
/// `Host: admin.example.com,x` matched no host route yet reached a catch-all, whose backend
/// took the first list member of `X-Forwarded-Host` for the host.
fn is_host_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// A plausible `host[:port]` / `[v6]:port` authority: non-empty host name of the characters
/// above, or an IPv6 address in brackets; port digits only.
pub(super) fn valid_authority(a: &[u8]) -> bool {
    let port = if a.first() == Some(&b'[') {
        let Some(close) = a.iter().position(|&b| b == b']') else {
            return false;
        };
        let is_v6 = std::str::from_utf8(&a[1..close])
            .is_ok_and(|inner| inner.parse::<std::net::Ipv6Addr>().is_ok());
        if !is_v6 {
            return false;
        }
        match &a[close + 1..] {
            [] => return true,
            [b':', port @ ..] => port,
            _ => return false,
        }
    } else {
        let (host, port) = match a.iter().rposition(|&b| b == b':') {
            Some(c) => (&a[..c], &a[c + 1..]),
            None => (a, &a[a.len()..]),
        };
        if host.is_empty() || !host.iter().all(|&b| is_host_char(b)) {
            return false;
        }
        port
    };
    port.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{err, ok};
    use crate::http1::HeadError;

    #[test]
    fn query_splits_at_first_question_mark() {
        let (h, _) = ok(b"GET /a?b=1?c HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.path(), b"/a");
        assert_eq!(h.query(), Some(&b"b=1?c"[..]));
        let (h, _) = ok(b"GET /a? HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.query(), Some(&b""[..]));
        let (h, _) = ok(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.query(), None);
    }

    // ---- request-target forms ----

    #[test]
    fn asterisk_form() {
        let (h, _) = ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.path(), b"*");
        assert_eq!(h.query(), None);
        assert_eq!(
            err(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest("asterisk-form only with OPTIONS")
        );
    }

    #[test]
    fn connect_and_authority_form() {
        let e = err(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        assert_eq!(e, HeadError::NotImplemented("CONNECT not supported"));
        assert_eq!(e.status(), 501);
        assert_eq!(
            err(b"GET example.com:443 HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest("invalid request-target")
        );
    }

    #[test]
    fn absolute_form() {
        let (h, _) = ok(b"GET http://Example.com:8080/a/b?x=1 HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(h.host.get(&h.buf), b"Example.com:8080");
        assert_eq!(h.path(), b"/a/b");
        assert_eq!(h.query(), Some(&b"x=1"[..]));
        assert_eq!(h.target(), b"http://Example.com:8080/a/b?x=1");

        let (h, _) = ok(b"GET HTTPS://h2 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.host.get(&h.buf), b"h2");
        assert!(h.path.is_empty());
        assert_eq!(h.query(), None);

        let (h, _) = ok(b"GET http://h2?q HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(h.path.is_empty());
        assert_eq!(h.query(), Some(&b"q"[..]));

        // HTTP/1.0 without Host routes on the absolute-form authority.
        let (h, _) = ok(b"GET http://[::1]:81/ HTTP/1.0\r\n\r\n");
        assert_eq!(h.host.get(&h.buf), b"[::1]:81");
        assert_eq!(h.path(), b"/");

        for raw in [
            &b"GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http:/h/x HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET http://h:x/ HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(
                matches!(err(raw), HeadError::BadRequest(_)),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        // Still needs a Host header in HTTP/1.1.
        assert_eq!(
            err(b"GET http://h/ HTTP/1.1\r\n\r\n"),
            HeadError::BadRequest("missing host")
        );
    }

    #[test]
    fn target_characters() {
        assert_eq!(
            err(b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest("fragment in request-target")
        );
        assert_eq!(
            err(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest("invalid request-target")
        );
        assert_eq!(
            err(b"GET a/b HTTP/1.1\r\nHost: h\r\n\r\n"),
            HeadError::BadRequest("invalid request-target")
        );
    }
}
