//! The head ringway sends upstream: always serialized fresh from the parsed request (never the
//! client's bytes). Hop-by-hop headers, headers named in `Connection` and the headers the
//! gateway manages (`Host`, framing, `Expect`, forwarding headers, `X-Request-Id`) are replaced.
//!
//! Forwarding headers follow the trust model of `exchange::origin`: from a peer in
//! `server.trusted_proxies`, `X-Forwarded-For` and `Forwarded` get this hop appended to the
//! received chain and its `X-Forwarded-Proto` / `X-Forwarded-Host` are kept (ours only when it
//! sent none); from any other peer all four are replaced by this hop's own values (peer
//! address, listener scheme, Host), so a client cannot forge them. `x-forwarded-client-cert`
//! is the gateway's alone, from every peer: a client's copy is dropped, and the connection's
//! verified certificate (if any) is described in a fresh one (`exchange::client_cert`).
//! Public so the benches measure this exact code.

use crate::config::{PathPiece, ProxyAction, Rewrite};
use crate::http1::{self, BodyFraming, RequestHead};
use crate::policy::transform::HeaderEdits;

use super::origin::Scheme;
use crate::http1::push_decimal;
use crate::trace::TraceContext;

/// Headers the proxy always writes itself, so client copies are not forwarded.
pub(super) fn managed_request_header(name: &[u8]) -> bool {
    MANAGED.iter().any(|m| m.eq_ignore_ascii_case(name))
}

/// The names `managed_request_header` answers for.
const MANAGED: [&[u8]; 11] = [
    b"host",
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
    b"x-request-id",
    ATTEMPTS,
    MIRROR_MARKER,
    super::client_cert::XFCC,
];

/// What other proxies write about the client or the original request (its address, port,
/// path prefix): believed only from a peer in `server.trusted_proxies`, like
/// `X-Forwarded-For`. An untrusted peer's copies are dropped, so a backend that reads
/// `X-Real-IP` or `True-Client-IP` cannot be told another client address than the one the
/// gateway decided on, nor build links from a forged `X-Forwarded-Prefix`.
const PEER_CLAIMS: [&[u8]; 12] = [
    b"x-real-ip",
    b"true-client-ip",
    b"x-client-ip",
    b"client-ip",
    b"x-cluster-client-ip",
    b"cf-connecting-ip",
    b"fastly-client-ip",
    b"x-original-forwarded-for",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"x-forwarded-server",
    b"x-forwarded-uri",
];

/// Fields some frameworks take for the request's real target or method (IIS, Symfony and
/// Zend read `X-Original-URL` / `X-Rewrite-URL`; Symfony, Laravel and Rack turn a POST into
/// the method `X-HTTP-Method-Override` names). The gateway routed and authorized the request
/// line, so nobody, trusted proxy or not, may send the upstream another target or method
/// beside it: a client on an open route could otherwise reach a protected one, or turn an
/// anonymous POST into a DELETE.
const TARGET_OVERRIDES: [&[u8]; 6] = [
    b"x-original-url",
    b"x-rewrite-url",
    b"x-original-uri",
    b"x-http-method-override",
    b"x-http-method",
    b"x-method-override",
];

/// A client field the upstream never gets from this peer (see `PEER_CLAIMS` and
/// `TARGET_OVERRIDES`).
fn peer_may_not_say(name: &[u8], trusted_peer: bool) -> bool {
    use http1::{length_mask, listed};
    const CLAIMS: u32 = length_mask(&PEER_CLAIMS);
    const OVERRIDES: u32 = length_mask(&TARGET_OVERRIDES);
    (!trusted_peer && listed(name, &PEER_CLAIMS, CLAIMS))
        || listed(name, &TARGET_OVERRIDES, OVERRIDES)
}

/// Whether `name`, read with `_` as `-`, is a field the gateway owns on the way upstream
/// (forwarding, request id, client claims and target overrides, hop-by-hop fields, and what
/// the route's edits remove, rename or set: consumer and claim headers, credentials). CGI,
/// WSGI, Rack and PHP backends see `X_Consumer` and `X-Consumer` as one variable
/// (`HTTP_X_CONSUMER`), so the underscore spelling of an owned field is dropped like the
/// field itself. Other names with `_` pass.
fn spells_owned(name: &[u8], edits: Option<&HeaderEdits>, trusted_peer: bool) -> bool {
    let mut buf = [0u8; 128];
    let mut long = Vec::new();
    let hyphened = match buf.get_mut(..name.len()) {
        Some(b) => b,
        None => {
            long.resize(name.len(), 0);
            &mut long[..]
        }
    };
    for (d, &b) in hyphened.iter_mut().zip(name) {
        *d = if b == b'_' { b'-' } else { b };
    }
    let n = &*hyphened;
    http1::is_hop_by_hop(n) || gateway_owned(n, edits, trusted_peer)
}

/// A field the gateway writes upstream itself, or that the peer may not say, or that the
/// route's edits remove, rename or set: a client's copy never reaches the upstream.
fn gateway_owned(name: &[u8], edits: Option<&HeaderEdits>, trusted_peer: bool) -> bool {
    managed_request_header(name)
        || peer_may_not_say(name, trusted_peer)
        || name.eq_ignore_ascii_case(b"traceparent")
        || name.eq_ignore_ascii_case(b"tracestate")
        || edits.is_some_and(|e| e.touches(name))
}

/// Appends the client's trailer fields that may reach the upstream, as `name: value\r\n`
/// lines: those `http1::forwardable_trailers` passes (no framing, routing or credentials),
/// minus any the gateway writes in the header section itself (forwarding, request id,
/// attempts, trace context, client certificate) and any the route's edits remove, rename or
/// set (consumer and claim headers, credentials a policy took off). A trailer may not say
/// what the header section was not allowed to: an upstream that merges trailers into headers
/// would otherwise take a client's `X-Consumer-Id` or `X-Forwarded-For` for the gateway's.
pub fn upstream_trailers(raw: &[u8], edits: Option<&HeaderEdits>, out: &mut Vec<u8>) {
    let mut passed = Vec::new();
    http1::forwardable_trailers(raw, &mut passed);
    for line in passed.split_inclusive(|&b| b == b'\n') {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        let owned = gateway_owned(name, edits, false)
            || (name.contains(&b'_') && spells_owned(name, edits, false));
        if !owned {
            out.extend_from_slice(line);
        }
    }
}

/// The attempt number the upstream sees (1 for the first; a client's copy is dropped).
pub const ATTEMPTS: &[u8] = b"x-ringway-attempts";

/// Marks a mirrored copy (`exchange::mirror` adds it). The gateway owns it: a client's copy is
/// dropped, so no client can make the real upstream take its request for a shadow copy (and
/// skip side effects such as billing).
pub const MIRROR_MARKER: &[u8] = b"x-ringway-mirror";

/// What the upstream head is built from (all borrowed; nothing is allocated).
pub struct UpstreamHead<'a> {
    pub head: &'a RequestHead,
    /// Normalized request path (before the route's rewrite).
    pub path: &'a [u8],
    pub request_id: &'a str,
    /// Client address as written into `X-Forwarded-For`.
    pub peer_ip: &'a str,
    /// `for=...` element of `Forwarded`.
    pub forwarded_for: &'a str,
    /// The peer is a trusted proxy: its forwarding headers are kept and appended to
    /// (`exchange::origin::Origin::trusted_peer`); otherwise they are replaced.
    pub trusted_peer: bool,
    /// The scheme the client used (`X-Forwarded-Proto`, `Forwarded: proto=`).
    pub scheme: Scheme,
    /// Host header value when the client's is not preserved.
    pub target_label: &'a str,
    /// Forward `Connection: upgrade` + `Upgrade` (WebSocket tunnels).
    pub tunnel: bool,
    /// The request's trace: replaces the client's `traceparent` with this hop's span.
    pub trace: Option<&'a TraceContext>,
    /// The route template's captures (byte ranges in `path`), for `Rewrite::Template`.
    pub captures: &'a [(u16, std::ops::Range<usize>)],
    /// Header edits from the route's policies (removals, renames, additions).
    pub edits: Option<&'a HeaderEdits>,
    /// The query string to send instead of the client's (policies removed or added
    /// parameters); `Some(b"")` sends none.
    pub query: Option<&'a [u8]>,
    /// The whole origin-form target (path and optional query) a policy chose instead of the
    /// route's rewrite and the client's query (`Effects::path`, validated by the policy).
    pub target: Option<&'a [u8]>,
    /// The connection's verified client certificate, when it goes upstream
    /// (`x-forwarded-client-cert`).
    pub client_cert: Option<&'a crate::tls::client_cert::PeerCert>,
    /// This attempt's number (`x-ringway-attempts`; 1 for the first).
    pub attempts: u32,
}

/// Serializes the upstream request head into `out` (cleared first): request line with the
/// route's rewrite, the client's end-to-end headers, framing, and the forwarding headers.
pub fn write_upstream_head(out: &mut Vec<u8>, u: &UpstreamHead<'_>, p: &ProxyAction) {
    let h = u.head;
    out.clear();
    out.reserve(h.buf.len() + 256);
    write_request_line(out, u, p);
    let host_raw = h.host.get(&h.buf);
    if p.preserve_host && !host_raw.is_empty() {
        http1::write_header(out, b"host", host_raw);
    } else {
        http1::write_header(out, b"host", u.target_label.as_bytes());
    }
    let got = write_end_to_end_fields(out, u);
    match h.body {
        BodyFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Chunked => http1::write_header(out, b"transfer-encoding", b"chunked"),
        _ => {}
    }
    if u.tunnel {
        if let Some(up) = h.header("upgrade") {
            http1::write_header(out, b"connection", b"upgrade");
            http1::write_header(out, b"upgrade", up);
        }
    }
    write_forwarding_fields(out, u, &got, host_raw);
    http1::write_header(out, b"x-request-id", u.request_id.as_bytes());
    out.extend_from_slice(ATTEMPTS);
    out.extend_from_slice(b": ");
    push_decimal(out, u64::from(u.attempts.max(1)));
    out.extend_from_slice(b"\r\n");
    if let Some(c) = u.client_cert {
        super::client_cert::write_xfcc(out, c);
    }
    if let Some(t) = u.trace {
        out.extend_from_slice(b"traceparent: ");
        t.write_traceparent(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// `METHOD target HTTP/1.1`: the path after the route's rewrite, then the query (policies may
/// have replaced it).
fn write_request_line(out: &mut Vec<u8>, u: &UpstreamHead<'_>, p: &ProxyAction) {
    let h = u.head;
    out.extend_from_slice(h.method_bytes());
    out.push(b' ');
    if let Some(t) = u.target {
        out.extend_from_slice(t);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        return;
    }
    match &p.rewrite {
        Rewrite::None => out.extend_from_slice(u.path),
        Rewrite::ReplacePrefix { prefix, with } => {
            let rest = u
                .path
                .get(prefix.trim_end_matches('/').len()..)
                .unwrap_or(b"");
            let start = out.len();
            out.extend_from_slice(with.as_bytes());
            if with.ends_with('/') && rest.starts_with(b"/") {
                out.pop();
            }
            out.extend_from_slice(rest);
            if out.len() == start {
                out.push(b'/');
            } else if out[start] != b'/' {
                out.insert(start, b'/');
            }
        }
        Rewrite::Template(pieces) => {
            let start = out.len();
            for piece in pieces {
                match piece {
                    PathPiece::Literal(l) => out.extend_from_slice(l.as_bytes()),
                    PathPiece::Param(i) => {
                        if let Some((_, r)) = u.captures.iter().find(|(n, _)| n == i) {
                            out.extend_from_slice(u.path.get(r.clone()).unwrap_or(b""));
                        }
                    }
                }
            }
            if out.len() == start {
                out.push(b'/');
            }
        }
    }
    match u.query {
        Some(q) if !q.is_empty() => {
            out.push(b'?');
            out.extend_from_slice(q);
        }
        Some(_) => {}
        None => {
            if let Some(q) = h.query() {
                out.push(b'?');
                out.extend_from_slice(q);
            }
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
}

/// The client's end-to-end fields with the policies' edits; returns which forwarding headers a
/// trusted proxy sent (an untrusted peer's are dropped unread).
fn write_end_to_end_fields(out: &mut Vec<u8>, u: &UpstreamHead<'_>) -> Forwarding {
    let h = u.head;
    // Scanning the Connection header per field only matters when it names a field that is
    // not hop-by-hop anyway (a plain `Connection: keep-alive` names none).
    let conn_lists_names = http1::connection_names_fields(h.headers());
    // Which forwarding headers a trusted proxy sent (an untrusted peer's are dropped unread).
    let mut got = Forwarding::default();
    for (name, value) in h.headers() {
        if u.trusted_peer && got.note(name) {
            continue;
        }
        if http1::is_hop_by_hop(name)
            || managed_request_header(name)
            || peer_may_not_say(name, u.trusted_peer)
            || (u.trace.is_some() && name.eq_ignore_ascii_case(b"traceparent"))
            // W3C Trace Context 3.3: a `tracestate` belongs to the `traceparent` it came with;
            // when that was malformed and the gateway started a new trace, it goes too.
            || (u.trace.is_some_and(|t| t.parent_span_id.is_none())
                && name.eq_ignore_ascii_case(b"tracestate"))
            || (conn_lists_names && http1::named_in_connection(h.headers(), name))
            || (name.contains(&b'_') && spells_owned(name, u.edits, u.trusted_peer))
        {
            continue;
        }
        // The portal's session cookie is the gateway's own: no upstream ever gets it, however
        // a request that carried it was routed (a browser sends it to every path under
        // `{portal}/keys`, and some spellings of such a path normalize elsewhere).
        let stripped;
        let value = if name.eq_ignore_ascii_case(b"cookie") {
            match without_portal_cookie(value) {
                Some(v) if v.is_empty() => continue,
                Some(v) => {
                    stripped = v;
                    &stripped[..]
                }
                None => value,
            }
        } else {
            value
        };
        match u.edits {
            Some(e) => {
                if let Some(n) = e.map_name(name) {
                    http1::write_header(out, n, value);
                }
            }
            None => http1::write_header(out, name, value),
        }
    }
    if let Some(e) = u.edits {
        for (name, value) in &e.add {
            if !managed_request_header(name) && !http1::is_hop_by_hop(name) {
                http1::write_header(out, name, value);
            }
        }
    }
    got
}

/// A `Cookie` value without the portal's session crumbs (`None`: it has none, send it as
/// it is; `Some(empty)`: nothing else was in it).
fn without_portal_cookie(value: &[u8]) -> Option<Vec<u8>> {
    let name = crate::openapi::portal::keys::COOKIE.as_bytes();
    memchr::memmem::find(value, name)?;
    let mut out = Vec::with_capacity(value.len());
    for crumb in value.split(|&b| b == b';') {
        let crumb = crumb.trim_ascii();
        let crumb_name = crumb
            .split(|&b| b == b'=')
            .next()
            .unwrap_or(b"")
            .trim_ascii();
        if crumb.is_empty() || crumb_name == name {
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(crumb);
    }
    Some(out)
}

/// `X-Forwarded-For/-Proto/-Host` and `Forwarded`: a trusted proxy's chain with this hop
/// appended, or this hop's own values alone.
fn write_forwarding_fields(
    out: &mut Vec<u8>,
    u: &UpstreamHead<'_>,
    got: &Forwarding,
    host_raw: &[u8],
) {
    let h = u.head;
    // Appended lists: a trusted proxy's values (all occurrences, in order), then this hop.
    out.extend_from_slice(b"x-forwarded-for: ");
    if got.xff {
        append_all(out, h, b"x-forwarded-for");
    }
    out.extend_from_slice(u.peer_ip.as_bytes());
    out.extend_from_slice(b"\r\nx-forwarded-proto: ");
    if got.proto {
        join_all(out, h, b"x-forwarded-proto");
    } else {
        out.extend_from_slice(u.scheme.as_str().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    if got.host {
        out.extend_from_slice(b"x-forwarded-host: ");
        join_all(out, h, b"x-forwarded-host");
        out.extend_from_slice(b"\r\n");
    } else if !host_raw.is_empty() {
        http1::write_header(out, b"x-forwarded-host", host_raw);
    }
    out.extend_from_slice(b"forwarded: ");
    if got.fwd {
        append_all(out, h, b"forwarded");
    }
    out.extend_from_slice(u.forwarded_for.as_bytes());
    out.extend_from_slice(b";proto=");
    out.extend_from_slice(u.scheme.as_str().as_bytes());
    if !host_raw.is_empty() && host_raw.iter().all(|b| b.is_ascii_graphic() && *b != b'"') {
        out.extend_from_slice(b";host=\"");
        out.extend_from_slice(host_raw);
        out.push(b'"');
    }
    out.extend_from_slice(b"\r\n");
}

/// The forwarding headers present in a trusted proxy's request.
#[derive(Default)]
struct Forwarding {
    xff: bool,
    fwd: bool,
    proto: bool,
    host: bool,
}

impl Forwarding {
    /// Notes `name` if it is a forwarding header; `true` = it is one (written later, not in
    /// the pass-through loop).
    fn note(&mut self, name: &[u8]) -> bool {
        let flag = if name.eq_ignore_ascii_case(b"x-forwarded-for") {
            &mut self.xff
        } else if name.eq_ignore_ascii_case(b"forwarded") {
            &mut self.fwd
        } else if name.eq_ignore_ascii_case(b"x-forwarded-proto") {
            &mut self.proto
        } else if name.eq_ignore_ascii_case(b"x-forwarded-host") {
            &mut self.host
        } else {
            return false;
        };
        *flag = true;
        true
    }
}

/// Appends every value of header `name`, joined with ", " (one field line, RFC 9110 §5.3).
fn join_all(out: &mut Vec<u8>, h: &http1::RequestHead, name: &[u8]) {
    let start = out.len();
    for (n, v) in h.headers() {
        if n.eq_ignore_ascii_case(name) {
            if out.len() > start {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(v);
        }
    }
}

/// Appends every value of header `name`, each followed by ", ".
fn append_all(out: &mut Vec<u8>, h: &http1::RequestHead, name: &[u8]) {
    for (n, v) in h.headers() {
        if n.eq_ignore_ascii_case(name) {
            out.extend_from_slice(v);
            out.extend_from_slice(b", ");
        }
    }
}

#[cfg(test)]
mod tests {
    /// A transform of a header the gateway writes itself is a config error, for every one
    /// of them (`policy::transform::GATEWAY_REQUEST_HEADERS` is this list without the
    /// framing and certificate fields, which the transform compiler refuses on its own).
    #[test]
    fn transforms_refuse_every_managed_request_header() {
        use crate::policy::transform::GATEWAY_REQUEST_HEADERS;
        let listed = |n: &[u8]| GATEWAY_REQUEST_HEADERS.iter().any(|m| m.as_bytes() == n);
        for name in GATEWAY_REQUEST_HEADERS {
            assert!(managed_request_header(name.as_bytes()), "{name}");
        }
        let refused_anyway = [
            &b"host"[..],
            b"content-length",
            super::super::client_cert::XFCC,
        ];
        for n in super::MANAGED {
            assert!(
                listed(n) || refused_anyway.contains(&n),
                "{}",
                String::from_utf8_lossy(n)
            );
        }
    }

    use super::*;
    use crate::config::UpstreamId;
    use crate::http1::{parse_request_head, Limits};

    fn upstream_head(extra: &str, trusted_peer: bool, scheme: Scheme) -> String {
        upstream_head_cert(extra, trusted_peer, scheme, None)
    }

    fn upstream_head_cert(
        extra: &str,
        trusted_peer: bool,
        scheme: Scheme,
        client_cert: Option<&crate::tls::client_cert::PeerCert>,
    ) -> String {
        let raw = format!("GET /a HTTP/1.1\r\nHost: h.example\r\n{extra}\r\n");
        let head = match parse_request_head(raw.as_bytes(), &Limits::default()) {
            Ok(Some((h, _))) => h,
            other => panic!("bad test head: {other:?}"),
        };
        let p = ProxyAction {
            upstream: UpstreamId(0),
            split: None,
            mirror: None,
            rewrite: Rewrite::None,
            preserve_host: true,
            retry: None,
        };
        let mut out = Vec::new();
        write_upstream_head(
            &mut out,
            &UpstreamHead {
                target: None,
                head: &head,
                path: b"/a",
                request_id: "rid",
                peer_ip: "192.0.2.1",
                forwarded_for: "for=192.0.2.1",
                trusted_peer,
                scheme,
                target_label: "up",
                tunnel: false,
                trace: None,
                captures: &[],
                edits: None,
                query: None,
                client_cert,
                attempts: 1,
            },
            &p,
        );
        String::from_utf8(out).unwrap_or_default()
    }

    const FORGED: &str = "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n\
                          X-Forwarded-Host: evil\r\nForwarded: for=1.2.3.4\r\n";

    #[test]
    fn the_listener_scheme_is_reported() {
        let h = upstream_head("", false, Scheme::Https);
        assert!(h.contains("\r\nx-forwarded-proto: https\r\n"), "{h}");
        assert!(
            h.contains("\r\nforwarded: for=192.0.2.1;proto=https;host=\"h.example\"\r\n"),
            "{h}"
        );
    }

    #[test]
    fn an_untrusted_peer_cannot_forge_forwarding_headers() {
        let h = upstream_head(FORGED, false, Scheme::Http);
        assert!(!h.contains("1.2.3.4") && !h.contains("evil"), "{h}");
        assert_eq!(h.matches("x-forwarded-proto: http\r\n").count(), 1, "{h}");
        assert!(h.contains("\r\nx-forwarded-host: h.example\r\n"), "{h}");
    }

    #[test]
    fn a_trusted_proxy_chain_is_kept_and_appended_to() {
        let h = upstream_head(FORGED, true, Scheme::Http);
        assert!(
            h.contains("\r\nx-forwarded-for: 1.2.3.4, 192.0.2.1\r\n"),
            "{h}"
        );
        assert!(h.contains("\r\nx-forwarded-proto: https\r\n"), "{h}");
        assert!(h.contains("\r\nx-forwarded-host: evil\r\n"), "{h}");
        assert!(
            h.contains("\r\nforwarded: for=1.2.3.4, for=192.0.2.1;proto=http;"),
            "{h}"
        );
        assert_eq!(h.to_ascii_lowercase().matches("x-forwarded-for").count(), 1);
    }

    #[test]
    fn client_cert_header_is_the_gateways_own() {
        let forged = "X-Forwarded-Client-Cert: Hash=00;Subject=\"CN=admin\"\r\n";
        for trusted in [false, true] {
            let h = upstream_head(forged, trusted, Scheme::Https);
            assert!(!h.to_ascii_lowercase().contains("client-cert"), "{h}");
        }
        let c = crate::tls::client_cert::PeerCert::from_parts(
            "CN=partner-a",
            Some("partner-a"),
            &[],
            &[],
            [0xcd; 32],
        );
        let h = upstream_head_cert(forged, true, Scheme::Https, Some(&c));
        assert_eq!(
            h.to_ascii_lowercase()
                .matches("x-forwarded-client-cert")
                .count(),
            1
        );
        assert!(
            h.contains(&format!(
                "\r\nx-forwarded-client-cert: Hash={};Subject=\"CN=partner-a\"\r\n",
                "cd".repeat(32)
            )),
            "{h}"
        );
    }
}
