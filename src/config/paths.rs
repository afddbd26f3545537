//! Compiles `[paths]` (request path normalization, see `http1::path`) into `PathOptions`.
//! Absent settings take the safe defaults: merge slashes, strip `;` parameters, refuse encoded
//! slashes and backslashes.

use super::errors::Diag;
use super::raw::RawPaths;
use crate::http1::{EscapedSlashes, PathOptions, PathParams};

/// The normalization options; an unknown word is an error naming the field.
pub(super) fn compile_paths(raw: &RawPaths, errs: &mut Diag) -> PathOptions {
    let mut o = PathOptions::default();
    if let Some(m) = raw.merge_slashes {
        o.merge_slashes = m;
    }
    if let Some(s) = &raw.escaped_slashes {
        match s.get_ref().as_str() {
            "reject" => o.escaped_slashes = EscapedSlashes::Reject,
            "keep" => o.escaped_slashes = EscapedSlashes::Keep,
            "unescape" => o.escaped_slashes = EscapedSlashes::Unescape,
            other => errs.at(
                s.span(),
                "paths.escaped_slashes",
                format!("unknown action {other:?}: use \"reject\", \"keep\" or \"unescape\""),
            ),
        }
    }
    if let Some(s) = &raw.path_params {
        match s.get_ref().as_str() {
            "strip" => o.path_params = PathParams::Strip,
            "reject" => o.path_params = PathParams::Reject,
            "keep" => o.path_params = PathParams::Keep,
            other => errs.at(
                s.span(),
                "paths.path_params",
                format!("unknown action {other:?}: use \"strip\", \"reject\" or \"keep\""),
            ),
        }
    }
    o
}
