//! Conditional requests against a stored response (RFC 9110 13): `If-None-Match` (weak
//! comparison) and, when absent, `If-Modified-Since`; the 304 built from a stored response;
//! and the stored response refreshed by an upstream 304 (RFC 9111 4.3.4).
//!
//! SEAM (lane semantics completes this): the signatures are the contract.

use crate::http1::{RequestHead, ResponseHead};

use super::object::Object;

/// Whether the client's conditional request is satisfied by `obj` (answer 304).
pub fn not_modified(head: &RequestHead, obj: &Object) -> bool {
    let Some(inm) = head.header("if-none-match") else {
        return false;
    };
    let Some(etag) = &obj.etag else {
        return false;
    };
    let strip = |t: &[u8]| -> Vec<u8> {
        t.trim_ascii()
            .strip_prefix(b"W/")
            .unwrap_or(t.trim_ascii())
            .to_vec()
    };
    let mine = strip(etag);
    inm.split(|&b| b == b',')
        .any(|t| t.trim_ascii() == b"*" || strip(t) == mine)
}

/// The field lines a 304 from the cache carries, taken from `obj`'s (RFC 9110 15.4.5:
/// Cache-Control, Content-Location, Date, ETag, Expires, Vary, plus Last-Modified).
pub fn not_modified_fields(obj: &Object, out: &mut Vec<u8>) {
    for (n, v) in super::object::field_lines(&obj.fields) {
        const KEEP: &[&[u8]] = &[
            b"cache-control",
            b"content-location",
            b"date",
            b"etag",
            b"expires",
            b"vary",
            b"last-modified",
        ];
        if KEEP.iter().any(|k| n.eq_ignore_ascii_case(k)) {
            crate::http1::write_header(out, n, v);
        }
    }
}

/// `stored` field lines updated with the fields of an upstream 304 (RFC 9111 4.3.4): each field
/// the 304 carries replaces the stored ones of that name, except framing fields.
pub fn refresh_fields(stored: &[u8], resp: &ResponseHead, out: &mut Vec<u8>) {
    let _ = resp;
    out.extend_from_slice(stored);
}
