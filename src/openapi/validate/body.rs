//! The request body: its content type against the operation's media ranges, its size against
//! the validation limit, and a JSON body against the media type's schema.
//!
//! Matching (media type parameters such as `charset` ignored, case-insensitive): the most
//! specific range wins: exact `type/sub`, then `type/*+suffix`, then a structured-syntax
//! suffix (`application/vnd.x+json` under a declared `application/json`), then `type/*`,
//! then `*/*`. No match → 415; no `Content-Type` on a body → 415 unless `*/*` is declared.
//! More than one `Content-Type` field is a 400 (`repeated`), body or not: the validator and
//! the backend could each read a different one. (A comma-joined list is no media type: 415.)
//!
//! Only a JSON request content type (`*/json`, `*/*+json`) matched by a media type with a
//! schema is parsed and validated; any other match checks the content type alone (reported
//! at compile for a non-JSON media type with a schema).
//!
//! Parsing is simd-json into its borrowed values, validated in place (`simd`: no
//! `serde_json::Value` tree is built), on a per-thread copy of the bytes (simd-json parses in
//! place) with reused buffers, nesting limited to [`MAX_DEPTH`] so neither the parse, the
//! validation nor the value's drop can exhaust a worker's stack. A number past f64's range
//! (`1e999`) is refused as invalid JSON rather than read as infinity, and so is an object
//! naming a member twice (a parser differential: the backend may read the other value).

use std::cell::RefCell;

use serde_json::Value;

use super::problem::Violation;
use super::simd::{Doc, SimdTape};
use crate::http1::{BodyFraming, RequestHead};

/// Deepest JSON nesting accepted in a validated body (serde_json's own default).
pub const MAX_DEPTH: usize = 128;

/// A per-thread scratch buffer larger than this is dropped after use (a rare big body does not
/// pin its size on the worker).
const KEEP_SCRATCH: usize = 256 * 1024;

/// One declared media range.
#[derive(Debug)]
pub(super) struct MediaCheck {
    /// As declared (lowercase), for messages.
    pub range: String,
    typ: String,
    sub: String,
    /// `+sub`: a request subtype ending in it matches (`application/json` → `+json`).
    plus_sub: String,
    pub schema: Option<jsonschema::Validator<SimdTape>>,
}

impl MediaCheck {
    pub fn new(range: &str, schema: Option<jsonschema::Validator<SimdTape>>) -> MediaCheck {
        let (typ, sub) = split_media(range.as_bytes()).unwrap_or((b"*", b"*"));
        let lower = |b: &[u8]| String::from_utf8_lossy(b).to_ascii_lowercase();
        let (typ, sub) = (lower(typ), lower(sub));
        MediaCheck {
            range: range.to_string(),
            plus_sub: format!("+{sub}"),
            typ,
            sub,
            schema,
        }
    }

    /// Whether a JSON request could match this range (so its schema may be applied).
    pub fn may_be_json(&self) -> bool {
        (self.typ == "*" || self.typ == "application")
            && (self.sub == "*"
                || self.sub == "json"
                || self.sub.ends_with("+json")
                || self.sub == "*+json")
    }

    /// How specifically this range matches the request's `type/sub` (any case; higher wins).
    fn score(&self, typ: &[u8], sub: &[u8]) -> Option<u8> {
        if self.typ == "*" {
            return (self.sub == "*").then_some(0);
        }
        if !self.typ.as_bytes().eq_ignore_ascii_case(typ) {
            return None;
        }
        if self.sub.as_bytes().eq_ignore_ascii_case(sub) {
            return Some(4);
        }
        if let Some(suffix) = self.sub.strip_prefix('*') {
            if suffix.starts_with('+') && ends_with_any_case(sub, suffix.as_bytes()) {
                return Some(3);
            }
            return (suffix.is_empty()).then_some(1);
        }
        // `application/json` declared, `application/vnd.x+json` sent.
        ends_with_any_case(sub, self.plus_sub.as_bytes()).then_some(2)
    }
}

/// The operation's request body.
#[derive(Debug)]
pub(super) struct BodyCheck {
    pub required: bool,
    pub media: Vec<MediaCheck>,
}

/// Why a body is refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BodyRefusal {
    /// 415, with the detail.
    Unsupported(String),
    /// 413.
    TooLarge,
}

impl BodyCheck {
    /// Checks the body (`body`: its first bytes; `complete`: whether that is all of it).
    pub fn check(
        &self,
        head: &RequestHead,
        body: &[u8],
        complete: bool,
        found: &mut Vec<Violation>,
    ) -> Result<(), BodyRefusal> {
        let mut types = head
            .headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"content-type"));
        if types.next().is_some() && types.next().is_some() {
            // The validator would read one and the backend may read the other.
            found.push(Violation::new(
                "/header/content-type",
                "repeated",
                "the Content-Type header is given more than once",
            ));
            return Ok(());
        }
        let present = match head.body {
            BodyFraming::None | BodyFraming::Length(0) => false,
            BodyFraming::Chunked => !(complete && body.is_empty()),
            _ => true,
        };
        if !present {
            if self.required {
                found.push(Violation::new(
                    "/body",
                    "required",
                    "a request body is required",
                ));
            }
            return Ok(());
        }
        let declared = || {
            let list: Vec<&str> = self.media.iter().map(|m| m.range.as_str()).collect();
            list.join(", ")
        };
        let Some(ct) = head.header("content-type") else {
            if let Some(m) = self.media.iter().find(|m| m.typ == "*") {
                // An unlabelled body under `*/*`: a schema there still describes it, and a
                // backend may parse it as JSON whatever the label.
                return match &m.schema {
                    Some(schema) if complete => {
                        validate_json(body, schema, found);
                        Ok(())
                    }
                    Some(_) => Err(BodyRefusal::TooLarge),
                    None => Ok(()),
                };
            }
            return Err(BodyRefusal::Unsupported(format!(
                "the request body has no Content-Type; accepted: {}",
                declared()
            )));
        };
        let Some((typ, sub)) = split_media(ct) else {
            return Err(BodyRefusal::Unsupported(format!(
                "the Content-Type is not a media type; accepted: {}",
                declared()
            )));
        };
        let best = self
            .media
            .iter()
            .filter_map(|m| m.score(typ, sub).map(|s| (s, m)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, m)| m);
        let Some(m) = best else {
            // The client's own value is not repeated (problem bodies never quote input).
            return Err(BodyRefusal::Unsupported(format!(
                "the request's content type is not accepted; accepted: {}",
                declared()
            )));
        };
        let Some(schema) = &m.schema else {
            return Ok(());
        };
        // A declared JSON type is validated as JSON, and so is any body a wildcard range
        // (`*/*`, `application/*`) with a schema took in: otherwise `text/plain` would carry
        // an unchecked body to a backend that parses JSON whatever the label.
        let json = sub.eq_ignore_ascii_case(b"json") || ends_with_any_case(sub, b"+json");
        if !json && m.sub != "*" {
            return Ok(());
        }
        if !complete {
            return Err(BodyRefusal::TooLarge);
        }
        validate_json(body, schema, found);
        Ok(())
    }
}

/// Parses `body` with simd-json onto its tape (nesting at most [`MAX_DEPTH`]) and validates
/// the tape in place, appending violations.
fn validate_json(
    body: &[u8],
    schema: &jsonschema::Validator<SimdTape>,
    found: &mut Vec<Violation>,
) {
    SCRATCH.with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            found.push(Violation::new("/body", "json", "the body parser is busy"));
            return;
        };
        let Scratch {
            input,
            buffers,
            tape,
        } = &mut *s;
        // simd-json unescapes strings in place, and the body is forwarded as sent: parse a
        // copy, padded so the parser needs no copy of its own.
        input.clear();
        input.extend_from_slice(body);
        input.resize(body.len() + simd_json::INPUT_PADDING, b' ');
        let mut nodes = std::mem::replace(tape, simd_json::Tape(Vec::new())).reset();
        match simd_json::fill_tape_padded(input, body.len(), buffers, &mut nodes) {
            Err(e) => found.push(Violation::new("/body", "json", parse_error(&e))),
            Ok(()) => match Doc::prepare(&nodes.0) {
                Err(why) => found.push(Violation::new("/body", "json", why)),
                // One pass (budgeted `pattern` checks run once); a valid body builds no error
                // paths either way (locations are lazy).
                Ok(doc) => {
                    for e in schema
                        .iter_errors(doc.root())
                        .take(super::problem::MAX_FOUND)
                    {
                        found.push(Violation::new(
                            format!("/body{}", e.instance_path().as_str()),
                            e.kind().keyword(),
                            e.masked().to_string(),
                        ));
                    }
                }
            },
        }
        *tape = nodes.reset();
        if input.capacity() > KEEP_SCRATCH {
            *s = Scratch::default();
        }
    })
}

/// The per-thread parse state, reused across requests.
struct Scratch {
    /// The body's padded copy.
    input: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: simd_json::Tape<'static>,
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            input: Vec::new(),
            buffers: simd_json::Buffers::with_max_depth(4096, MAX_DEPTH),
            tape: simd_json::Tape(Vec::new()),
        }
    }
}

/// What and where (byte offset), never quoting the input.
fn parse_error(e: &simd_json::Error) -> String {
    format!(
        "the body is not valid JSON: {:?} at byte {}",
        e.error(),
        e.index()
    )
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Parses a JSON body with simd-json into a `serde_json::Value` (nesting at most
/// [`MAX_DEPTH`]): for callers that want the value itself (the validator does not: it
/// validates simd-json's borrowed values in place). The error names what and where (byte
/// offset), never quoting the input.
pub fn parse_json(body: &[u8]) -> Result<Value, String> {
    SCRATCH.with(|s| {
        let Ok(mut s) = s.try_borrow_mut() else {
            return Err("the body parser is busy".to_string());
        };
        let Scratch { input, buffers, .. } = &mut *s;
        input.clear();
        input.extend_from_slice(body);
        let out = simd_json::serde::from_slice_with_buffers::<Value>(input, buffers)
            .map_err(|e| parse_error(&e));
        if input.capacity() > KEEP_SCRATCH {
            *s = Scratch::default();
        }
        out
    })
}

fn ends_with_any_case(s: &[u8], suffix: &[u8]) -> bool {
    s.len() >= suffix.len() && s[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
}

/// `type` and `sub` of a media type or range (as sent), parameters dropped; `None` unless
/// both are tokens.
fn split_media(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let essence = s.split(|&b| b == b';').next()?.trim_ascii();
    let slash = essence.iter().position(|&b| b == b'/')?;
    let (t, sub) = (&essence[..slash], &essence[slash + 1..]);
    let token = |x: &[u8]| {
        !x.is_empty()
            && x.iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"!#$&-^_.+*".contains(&b) || b == b'\'')
    };
    if !token(t) || !token(sub) {
        return None;
    }
    Some((t, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best<'a>(ranges: &'a [MediaCheck], ct: &str) -> Option<&'a str> {
        let (t, s) = split_media(ct.as_bytes())?;
        ranges
            .iter()
            .filter_map(|m| m.score(t, s).map(|x| (x, m)))
            .max_by_key(|(x, _)| *x)
            .map(|(_, m)| m.range.as_str())
    }

    #[test]
    fn the_most_specific_range_wins() {
        let r: Vec<MediaCheck> = ["*/*", "application/*", "application/json", "text/plain"]
            .iter()
            .map(|m| MediaCheck::new(m, None))
            .collect();
        assert_eq!(
            best(&r, "application/json; charset=utf-8"),
            Some("application/json")
        );
        assert_eq!(best(&r, "Application/JSON"), Some("application/json"));
        assert_eq!(best(&r, "application/vnd.x+json"), Some("application/json"));
        assert_eq!(best(&r, "application/xml"), Some("application/*"));
        assert_eq!(best(&r, "image/png"), Some("*/*"));
        let only_json = [MediaCheck::new("application/json", None)];
        assert_eq!(best(&only_json, "text/plain"), None);
        assert_eq!(best(&only_json, "application/jsonx"), None);
        assert_eq!(
            best(&only_json, "application/problem+json"),
            Some("application/json")
        );
        let suffix = [MediaCheck::new("application/*+json", None)];
        assert_eq!(
            best(&suffix, "application/merge-patch+json"),
            Some("application/*+json")
        );
        assert_eq!(best(&suffix, "application/json"), None);
        assert!(split_media(b"garbage").is_none());
        assert!(split_media(b"a/b c").is_none());
        assert!(split_media(b"/json").is_none());
    }

    #[test]
    fn json_parsing_is_bounded_and_never_panics() {
        assert_eq!(parse_json(br#"{"a":[1,2]}"#).unwrap()["a"][1], 2);
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(parse_json(deep.as_bytes()).unwrap_err().contains("Depth"));
        let ok = "[".repeat(MAX_DEPTH - 1) + &"]".repeat(MAX_DEPTH - 1);
        assert!(parse_json(ok.as_bytes()).is_ok());
        assert!(parse_json(b"").is_err());
        assert!(parse_json(b"{\"a\":\"\xff\"}").is_err(), "invalid UTF-8");
        assert!(parse_json(b"{\"a\":1,}").is_err());
        assert!(parse_json(b"[1] x").is_err());
        let big = "9".repeat(400);
        let _ = parse_json(big.as_bytes()); // a number past f64: an error or a float, no panic
        let _ = parse_json(b"1e999999");
        assert!(parse_json(b"123456789012345678901234567890").is_ok_and(|v| v.is_number()));
        let e = parse_json(b"{\"secret\": nope}").unwrap_err();
        assert!(!e.contains("nope") && !e.contains("secret"), "{e}");
    }
}
