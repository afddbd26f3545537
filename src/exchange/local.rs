//! The actions that answer without an upstream: static responses, redirects, and echo (a JSON
//! description of the request, for trying routes and policies out).

use std::net::SocketAddr;

use crate::config::{Redirect, Route, StaticResponse};
use crate::core::Core;
use crate::http1::{self, Version};

use super::body::{discard_body, read_body_bounded};
use super::error::{ErrorKind, ProxyError};
use super::model::Exchange;
use super::respond;
use super::wire::{Downstream, Outcome};

/// The static action: the configured status, headers and body.
pub async fn static_response<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    s: &StaticResponse,
) -> Result<Outcome, ProxyError> {
    discard_body(ex, down, route.max_body).await?;
    let mut fields = Vec::with_capacity(128);
    for (k, v) in &s.headers {
        http1::write_header(&mut fields, k.as_bytes(), v.as_bytes());
    }
    // 204 and 304 carry neither a body nor a length (RFC 9110 §8.6, §15.3.5, §15.4.5); config
    // compile refuses a body for them.
    let body = (!matches!(s.status, 204 | 304)).then_some(&s.body[..]);
    Ok(respond::local(core, ex, down, s.status, &fields, body).await)
}

/// The redirect action: `Location`, with the request's path and query appended if configured.
pub async fn redirect<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
    r: &Redirect,
) -> Result<Outcome, ProxyError> {
    discard_body(ex, down, route.max_body).await?;
    let mut location = r.location.clone().into_bytes();
    if r.append_path {
        if location.ends_with(b"/") && ex.path.starts_with(b"/") {
            location.pop();
        }
        location.extend_from_slice(&ex.path);
        if let Some(q) = ex.head.query() {
            location.push(b'?');
            location.extend_from_slice(q);
        }
        // A relative location (`/`) followed by a path that starts with slashes (kept when
        // `merge_slashes = false`: `GET //evil.com/x`) would be `//evil.com/x`, which browsers
        // read as another host: an open redirect. A leading run of `/` and `\` is one `/`.
        let run = location
            .iter()
            .take_while(|&&b| b == b'/' || b == b'\\')
            .count();
        if run > 1 {
            location.splice(..run, [b'/']);
        }
    }
    let mut fields = Vec::with_capacity(64 + location.len());
    http1::write_header(&mut fields, b"location", &location);
    Ok(respond::local(core, ex, down, r.status, &fields, Some(b"")).await)
}

/// A plain listener's only answer: 308 to the same host, path and query over https (308 keeps
/// the method and body, so an API client's POST is not turned into a GET). The body is not
/// read; when there is one, the connection closes after the answer.
pub async fn to_https<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    port: u16,
) -> Result<Outcome, ProxyError> {
    if ex.host.is_empty() {
        // HTTP/1.0 without Host: there is no name to send the client to.
        let e =
            crate::http1::HeadError::BadRequest("a Host header is required to redirect to https");
        return Err(ProxyError::new(ErrorKind::BadHead(e)));
    }
    let mut location = Vec::with_capacity(16 + ex.host.len() + ex.path.len());
    location.extend_from_slice(b"https://");
    location.extend_from_slice(ex.host.as_bytes());
    if port != 443 {
        location.push(b':');
        http1::push_decimal(&mut location, u64::from(port));
    }
    location.extend_from_slice(&ex.path);
    if let Some(q) = ex.head.query() {
        location.push(b'?');
        location.extend_from_slice(q);
    }
    use crate::http1::BodyFraming;
    if ex.head.body != BodyFraming::None && ex.head.body != BodyFraming::Length(0) {
        ex.close = true;
    }
    let mut fields = Vec::with_capacity(64 + location.len());
    http1::write_header(&mut fields, b"location", &location);
    Ok(respond::local(core, ex, down, 308, &fields, Some(b"")).await)
}

/// The echo action: reads the body (bounded) and answers with the request as JSON.
pub async fn echo<D: Downstream>(
    core: &Core,
    ex: &mut Exchange<'_>,
    down: &mut D,
    route: &Route,
) -> Result<Outcome, ProxyError> {
    let body = read_body_bounded(ex, down, route.max_body).await?;
    let json = echo_json(ex, ex.client.peer, route, &body);
    let fields = b"content-type: application/json\r\n";
    Ok(respond::local(core, ex, down, 200, fields, Some(&json)).await)
}

/// Credentials a browser attaches to a request by itself, which scripts on the page are not
/// allowed to read (`HttpOnly` cookies, cached Basic credentials). Echoing them would hand
/// them to any script that can fetch the echo route (cross-site tracing, the reason browsers
/// and servers gave up `TRACE`), so echo shows only that they were sent.
fn browser_attached(lowercase_name: &[u8]) -> bool {
    matches!(
        lowercase_name,
        b"cookie" | b"authorization" | b"proxy-authorization"
    )
}

fn echo_json(req: &Exchange<'_>, peer: SocketAddr, route: &Route, body: &[u8]) -> Vec<u8> {
    use crate::json::string_into;
    let h = req.head;
    let mut o = Vec::with_capacity(512 + body.len());
    o.extend_from_slice(b"{\"method\":");
    string_into(&mut o, h.method_bytes());
    o.extend_from_slice(b",\"path\":");
    string_into(&mut o, &req.path);
    o.extend_from_slice(b",\"query\":");
    string_into(&mut o, h.query().unwrap_or(b""));
    o.extend_from_slice(b",\"version\":");
    string_into(
        &mut o,
        match (req.facts.protocol, h.version) {
            (crate::exchange::model::Protocol::Http2, _) => b"HTTP/2.0",
            (_, Version::Http10) => b"HTTP/1.0",
            (_, Version::Http11) => b"HTTP/1.1",
        },
    );
    o.extend_from_slice(b",\"route\":");
    string_into(&mut o, route.name.as_bytes());
    o.extend_from_slice(b",\"client\":");
    string_into(&mut o, peer.to_string().as_bytes());
    o.extend_from_slice(b",\"request_id\":");
    string_into(&mut o, req.rid.as_bytes());
    o.extend_from_slice(b",\"headers\":{");
    // Lowercased names; repeated headers joined with ", " like a list-valued field.
    let mut names: Vec<Vec<u8>> = Vec::new();
    for (n, _) in h.headers() {
        let lower = n.to_ascii_lowercase();
        if !names.contains(&lower) {
            names.push(lower);
        }
    }
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            o.push(b',');
        }
        string_into(&mut o, name);
        o.push(b':');
        if browser_attached(name) {
            string_into(&mut o, b"[redacted]");
            continue;
        }
        let mut joined = Vec::new();
        for (n, v) in h.headers() {
            if n.eq_ignore_ascii_case(name) {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v);
            }
        }
        string_into(&mut o, &joined);
    }
    o.extend_from_slice(b"},\"body\":");
    string_into(&mut o, body);
    o.extend_from_slice(b"}\n");
    o
}
