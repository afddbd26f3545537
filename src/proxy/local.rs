//! Responses the gateway makes itself (no upstream): the echo action's JSON description of the
//! request. Static and redirect responses are assembled inline in `handle_request`.

use std::net::SocketAddr;

use crate::config::Route;
use crate::http1::Version;

use super::Req;

pub(super) fn echo_json(req: &Req<'_>, peer: SocketAddr, route: &Route, body: &[u8]) -> Vec<u8> {
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
        match h.version {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
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
