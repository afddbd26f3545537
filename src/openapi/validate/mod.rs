//! Request validation against an operation's OpenAPI schemas: path, query, header and cookie
//! parameters and the JSON request body. Compiled once per config generation
//! (`Validator::compile`), checked per request (`Validator::check`) by the route's `validate`
//! policy (`policy::pipeline`), which the importer appends after the route's other policies.
//!
//! A refusal is 400 (415 for a content type the operation does not accept, 413 for a body
//! above the validation size limit) with an RFC 9457 `application/problem+json` body listing
//! each violation with its JSON pointer and keyword, bounded in size.
//!
//! Module map: `schema` (dialects, `$ref`s, formats: schemas become `jsonschema` validators),
//! `params` (styles, decoding, coercion of path/query/header/cookie parameters), `body`
//! (content type, size, simd-json parse), `pattern` (the `pattern` keyword under a per-request
//! budget), `simd` (simd-json's borrowed values as the schema
//! crate's instance representation), `problem` (the bounded RFC 9457 body).
//!
//! Order of a check: every parameter, then the body. A wrong content type (415) or a body
//! past the limit (413) is refused with that status (parameter violations found on the way
//! are listed too); any other violation is 400. At most [`MAX_FOUND`] violations are
//! collected per request (the problem body lists the first [`problem::MAX_LISTED`]).
//! A `pattern` check that could not be completed within its bounds (`pattern`) refuses the
//! request even where the schema would have let the failure pass (`not`, an `anyOf` branch).

mod body;
mod params;
mod pattern;
pub mod problem;
mod schema;
mod simd;

use std::ops::Range;

use crate::http1::RequestHead;

use super::model::{Api, Ignored, Operation};
use body::{BodyCheck, BodyRefusal, MediaCheck};
use params::ParamCheck;
use problem::Violation;

pub use body::parse_json;

pub use problem::MAX_FOUND;

/// What the route does with a request that fails validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Refuse it (400/413/415 with a problem body).
    Enforce,
    /// Log and count it, forward it anyway.
    Report,
    /// No validation (the importer adds no policy).
    Off,
}

/// The `validate` policy the importer puts last on an operation's route.
#[derive(Debug)]
pub struct ValidatePolicy {
    pub validator: Validator,
    /// `Enforce` or `Report` (`Off` adds no policy).
    pub mode: Mode,
    /// `ringway_openapi_validation_total` for this operation.
    pub counters: std::sync::Arc<crate::metrics::validation::ValidationCounters>,
}

/// What one request offers the validator.
pub struct Input<'a> {
    /// The normalized request path the route matched.
    pub path: &'a [u8],
    /// The route template's captures: byte ranges in `path`, in template order (the
    /// operation's path parameters, in the order they appear in its path).
    pub captures: &'a [(u16, Range<usize>)],
    /// Query string and headers.
    pub head: &'a RequestHead,
    /// The body's first bytes (at most `Validator::body_bytes`), and whether that is all of it.
    pub body: &'a [u8],
    pub body_complete: bool,
}

/// A request the validator refuses (or, in report mode, would have).
#[derive(Debug)]
pub struct Refusal {
    /// 400, 413 or 415.
    pub status: u16,
    /// The `application/problem+json` body.
    pub problem: Vec<u8>,
    /// How many violations were found (the body may list fewer: it is bounded).
    pub violations: usize,
}

/// One operation's compiled validator.
#[derive(Debug)]
pub struct Validator {
    /// The operation id, for logs and metrics.
    pub operation: String,
    max_body: usize,
    params: Vec<ParamCheck>,
    body: Option<BodyCheck>,
    /// Some media type has a JSON schema: the body is buffered (up to `max_body`) and read.
    reads_body: bool,
}

impl Validator {
    /// Compiles the operation's parameter and body schemas (against `api.doc` for `$ref`s).
    /// Schema constructs it cannot enforce are pushed to `ignored` with their pointers.
    /// `max_body`: the validation size limit (a longer body is refused with 413).
    pub fn compile(
        api: &Api,
        op: &Operation,
        max_body: usize,
        ignored: &mut Vec<Ignored>,
    ) -> Result<Validator, String> {
        let prepared = schema::prepare(api);
        let mut params = Vec::with_capacity(op.params.len());
        for p in &op.params {
            let (compiled, rewritten) = match &p.schema {
                None => (None, None),
                Some(s) => {
                    let at = format!("{}/schema", p.pointer);
                    let s = schema::schema_at(&prepared, &at, s, api.dialect);
                    (Some(schema::compile(&prepared, &s, &at, ignored)?), Some(s))
                }
            };
            match ParamCheck::new(p, &op.path, &prepared.doc, rewritten.as_ref(), compiled) {
                Ok(c) => params.push(c),
                Err(reason) => {
                    schema::push_ignored(ignored, format!("{}/style", p.pointer), reason)
                }
            }
        }
        let mut body = None;
        if let Some(b) = &op.body {
            let mut media = Vec::with_capacity(b.content.len());
            for m in &b.content {
                let mut check = MediaCheck::new(&m.media, None);
                if let Some(s) = &m.schema {
                    let at = format!("{}/schema", m.pointer);
                    if check.may_be_json() {
                        let s = schema::schema_at(&prepared, &at, s, api.dialect);
                        check.schema = Some(schema::compile(&prepared, &s, &at, ignored)?);
                    } else {
                        schema::push_ignored(
                            ignored,
                            at,
                            format!("only the content type of `{}` bodies is checked", m.media),
                        );
                    }
                }
                media.push(check);
            }
            body = Some(BodyCheck {
                required: b.required,
                media,
            });
        }
        let reads_body = body
            .as_ref()
            .is_some_and(|b| b.media.iter().any(|m| m.schema.is_some()));
        Ok(Validator {
            operation: op.id.clone(),
            max_body,
            params,
            body,
            reads_body,
        })
    }

    /// How many body bytes the policy needs buffered before it runs (0: no body to check).
    pub fn body_bytes(&self) -> usize {
        if self.reads_body {
            self.max_body
        } else {
            0
        }
    }

    /// Checks one request.
    pub fn check(&self, input: &Input<'_>) -> Result<(), Refusal> {
        let mut found = Vec::new();
        pattern::start_request();
        let req = params::Request {
            path: input.path,
            captures: input.captures,
            head: input.head,
        };
        for p in &self.params {
            p.check(&req, &mut found);
            if found.len() >= MAX_FOUND {
                break;
            }
        }
        let refusal = match &self.body {
            Some(b) if found.len() < MAX_FOUND => {
                b.check(input.head, input.body, input.body_complete, &mut found)
            }
            _ => Ok(()),
        };
        if pattern::unfinished() && !found.iter().any(|v| v.keyword == "pattern") {
            // Fail closed: the unfinished check passed the schema (inside `not`, say).
            found.push(Violation::new("", "pattern", pattern::unfinished_message()));
        }
        found.truncate(MAX_FOUND);
        match refusal {
            Err(BodyRefusal::Unsupported(detail)) => {
                found.insert(
                    0,
                    Violation::new("/header/content-type", "contentType", detail.clone()),
                );
                Err(refuse(
                    415,
                    "Unsupported Media Type",
                    "unsupported_media_type",
                    &detail,
                    found,
                ))
            }
            Err(BodyRefusal::TooLarge) => {
                let detail = format!(
                    "the request body is larger than the validation limit of {} bytes",
                    self.max_body
                );
                found.insert(0, Violation::new("/body", "size", detail.clone()));
                Err(refuse(
                    413,
                    "Content Too Large",
                    "body_too_large",
                    &detail,
                    found,
                ))
            }
            Ok(()) if found.is_empty() => Ok(()),
            Ok(()) => Err(invalid(found)),
        }
    }
}

fn invalid(found: Vec<Violation>) -> Refusal {
    let detail = match found.len() {
        1 => "1 violation of the API's contract".to_string(),
        n if n >= MAX_FOUND => format!("at least {n} violations of the API's contract"),
        n => format!("{n} violations of the API's contract"),
    };
    refuse(
        400,
        "Request validation failed",
        "validation_failed",
        &detail,
        found,
    )
}

fn refuse(status: u16, title: &str, code: &str, detail: &str, found: Vec<Violation>) -> Refusal {
    Refusal {
        status,
        problem: problem::render(status, title, code, detail, &found, found.len()),
        violations: found.len(),
    }
}

#[cfg(test)]
mod tests;
