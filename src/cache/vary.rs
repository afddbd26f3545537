//! The secondary key (RFC 9111 4.1): the request fields a stored response's `Vary` names, as
//! this request has them. `Vary: *` never matches. With compression on the route,
//! `Accept-Encoding` stands for the coding the gateway negotiated, not the header's raw text,
//! so `gzip, br` and `br;q=1, gzip` share one variant.

/// The field names the `Vary` lines among `fields` (a stored object's field lines) list
/// (lowercase, deduplicated); `None` for `Vary: *` (not storable).
pub fn names(fields: &[u8]) -> Option<Box<[Box<[u8]>]>> {
    let mut out: Vec<Box<[u8]>> = Vec::new();
    for (n, v) in super::object::field_lines(fields) {
        if !n.eq_ignore_ascii_case(b"vary") {
            continue;
        }
        for item in v.split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item == b"*" {
                return None;
            }
            if item.is_empty() {
                continue;
            }
            let lower: Box<[u8]> = item.to_ascii_lowercase().into();
            if !out.contains(&lower) {
                out.push(lower);
            }
        }
    }
    Some(out.into())
}

/// This request's values for `names`, length-prefixed into one byte string. `coding`: the
/// negotiated content coding when the route compresses (stands for `accept-encoding`).
pub fn secondary(
    names: &[Box<[u8]>],
    head: &crate::http1::RequestHead,
    coding: Option<&str>,
) -> Box<[u8]> {
    let mut out = Vec::new();
    for name in names {
        out.extend_from_slice(name);
        out.push(0);
        if let (b"accept-encoding", Some(c)) = (&name[..], coding) {
            out.extend_from_slice(c.as_bytes());
            out.push(0);
            continue;
        }
        for (n, v) in head.headers() {
            if n.eq_ignore_ascii_case(name) {
                let v = v.trim_ascii();
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
        }
        out.push(0);
    }
    out.into()
}
