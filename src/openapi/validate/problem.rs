//! The RFC 9457 `application/problem+json` body of a validation refusal.
//!
//! Shape: `{"type","title","status","code","detail","violations":[{"pointer","keyword",
//! "message"}],"truncated"?}`. `type` is `urn:ringway:problem:request-validation` for every
//! validation refusal (the `violations` extension member is defined by it); `code` follows the
//! gateway's other problem bodies (`validation_failed`, `unsupported_media_type`,
//! `body_too_large`).
//!
//! A violation's `pointer` is a JSON pointer into the request seen as one document:
//! `/path/{name}`, `/query/{name}`, `/header/{name}`, `/cookie/{name}` and `/body` followed by
//! the pointer inside the JSON body (`/body/tags/0`); array items of a parameter add their index
//! (`/query/ids/1`).
//!
//! Bounded: at most [`MAX_LISTED`] violations are listed (`truncated: true` says more were
//! found), each pointer and message is cut to [`MAX_FIELD`] bytes, and the whole body stays
//! under [`MAX_BODY`] bytes. Messages are built from the schema (masked: the offending value is
//! never quoted back), so client input appears only inside pointers (property names), cut.

use crate::json::escape_into;

/// Most violations collected for one request (the schema crate's error iterator is lazy:
/// a body with a million bad items costs no more than this many messages).
pub const MAX_FOUND: usize = 100;
/// At most this many violations are listed.
pub const MAX_LISTED: usize = 20;
/// Longest pointer or message, in bytes (cut at a character boundary, `…` appended).
pub const MAX_FIELD: usize = 200;
/// The body never grows past this many bytes.
pub const MAX_BODY: usize = 8 * 1024;

/// The problem `type` of every validation refusal.
pub const TYPE: &str = "urn:ringway:problem:request-validation";

/// One thing wrong with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Where (see the module header).
    pub pointer: String,
    /// The JSON Schema keyword that failed (`type`, `required`, `format`, ...), or `json` for
    /// a body that is not JSON, `encoding` for bytes that are not UTF-8.
    pub keyword: String,
    pub message: String,
}

impl Violation {
    pub fn new(pointer: impl Into<String>, keyword: &str, message: impl Into<String>) -> Self {
        Violation {
            pointer: pointer.into(),
            keyword: keyword.to_string(),
            message: message.into(),
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn push_field(out: &mut Vec<u8>, s: &str) {
    let c = cut(s, MAX_FIELD);
    escape_into(out, c.as_bytes());
    if c.len() < s.len() {
        out.extend_from_slice("…".as_bytes());
    }
}

/// Renders a problem body. `found`: how many violations there were (`violations` may hold
/// only the first ones).
pub fn render(
    status: u16,
    title: &str,
    code: &str,
    detail: &str,
    violations: &[Violation],
    found: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(TYPE.as_bytes());
    out.extend_from_slice(b"\",\"title\":\"");
    escape_into(&mut out, title.as_bytes());
    out.extend_from_slice(b"\",\"status\":");
    out.extend_from_slice(status.to_string().as_bytes());
    out.extend_from_slice(b",\"code\":\"");
    escape_into(&mut out, code.as_bytes());
    out.extend_from_slice(b"\",\"detail\":\"");
    push_field(&mut out, detail);
    out.extend_from_slice(b"\",\"violations\":[");
    let mut listed = 0;
    let mut item = Vec::with_capacity(256);
    for v in violations.iter().take(MAX_LISTED) {
        item.clear();
        if listed > 0 {
            item.push(b',');
        }
        item.extend_from_slice(b"{\"pointer\":\"");
        push_field(&mut item, &v.pointer);
        item.extend_from_slice(b"\",\"keyword\":\"");
        push_field(&mut item, &v.keyword);
        item.extend_from_slice(b"\",\"message\":\"");
        push_field(&mut item, &v.message);
        item.extend_from_slice(b"\"}");
        // Room for the closing `],"truncated":true}` and a newline.
        if out.len() + item.len() + 24 > MAX_BODY {
            break;
        }
        out.extend_from_slice(&item);
        listed += 1;
    }
    out.push(b']');
    if listed < found {
        out.extend_from_slice(b",\"truncated\":true");
    }
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_lists_violations_and_is_valid_json() {
        let v = [Violation::new(
            "/query/limit",
            "maximum",
            "100 is the maximum",
        )];
        let b = render(
            400,
            "Request validation failed",
            "validation_failed",
            "1",
            &v,
            1,
        );
        let j: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(j["type"], TYPE);
        assert_eq!(j["status"], 400);
        assert_eq!(j["violations"][0]["pointer"], "/query/limit");
        assert_eq!(j["violations"][0]["keyword"], "maximum");
        assert!(j.get("truncated").is_none());
    }

    #[test]
    fn a_body_is_bounded_whatever_the_violations() {
        let huge = "\"\\é\u{1}".repeat(5000);
        let v: Vec<Violation> = (0..500)
            .map(|i| Violation::new(format!("/body/{i}/{huge}"), "type", huge.clone()))
            .collect();
        let b = render(400, "t", "c", &huge, &v, 500);
        assert!(b.len() <= MAX_BODY, "{}", b.len());
        let j: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(j["truncated"], true);
        let listed = j["violations"].as_array().unwrap();
        assert!(!listed.is_empty() && listed.len() <= MAX_LISTED);
        assert!(listed[0]["message"].as_str().unwrap().len() <= MAX_FIELD + 3);
    }

    #[test]
    fn cut_keeps_characters_whole() {
        assert_eq!(cut("ééé", 3), "é");
        assert_eq!(cut("abc", 5), "abc");
    }
}
