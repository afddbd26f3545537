//! Path patterns: [`validate_template`] for the config compiler, and `Shape`, the form of a
//! pattern that the trie and conflict detection work on (parameter names erased, so equal shapes
//! match exactly the same paths).
//!
//! Invariants: `Shape::of` never fails. A template segment that is not a whole `{name}` or a
//! final `{*name}` (e.g. `v{n}`) is plain text there; the compiler rejects such templates first
//! through `validate_template`. A template without parameters has the shape of the exact path.

use super::model::PathPattern;

/// Why `s` cannot be a path literal of the config (a route's `path` or `prefix`, a rewrite),
/// or `None`. A route matches paths without their query, so `?` and `#` could never match;
/// in a rewrite, a space or a control character would end or split the upstream request line.
pub fn path_literal_problem(s: &str) -> Option<&'static str> {
    if s.bytes().any(|b| b <= 0x20 || b == 0x7f) {
        Some("holds a space or a control character")
    } else if s.contains('?') {
        Some("holds '?': a path carries no query (add query parameters with a transform)")
    } else if s.contains('#') {
        Some("holds '#': a fragment never reaches the gateway")
    } else {
        None
    }
}

/// Checks a path template for the config compiler and returns its parameter names in order
/// (the catch-all name included, without `*`).
///
/// Rejects: not starting with `/`, unbalanced braces, braces that do not span a whole segment
/// (`v{n}`, `{a}{b}`), empty names, `*` inside a name, a `{*name}` that is not the last
/// segment, and duplicate names.
pub fn validate_template(t: &str) -> Result<Vec<String>, String> {
    let Some(body) = t.strip_prefix('/') else {
        return Err(format!("template `{t}` must start with '/'"));
    };
    let segs: Vec<&str> = body.split('/').collect();
    let mut names: Vec<String> = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        let opens = seg.matches('{').count();
        let closes = seg.matches('}').count();
        if opens == 0 && closes == 0 {
            continue;
        }
        if opens != closes {
            return Err(format!("unbalanced braces in segment `{seg}` of `{t}`"));
        }
        if opens > 1 || !seg.starts_with('{') || !seg.ends_with('}') {
            return Err(format!(
                "segment `{seg}` of `{t}` mixes text and parameters; a parameter must be a whole \
                 segment like `{{name}}` or `{{*name}}`"
            ));
        }
        let inner = &seg[1..seg.len() - 1];
        let (catch_all, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        if name.is_empty() {
            return Err(format!("empty parameter name in `{seg}` of `{t}`"));
        }
        if name.contains('*') {
            return Err(format!("parameter name `{name}` in `{t}` contains '*'"));
        }
        if catch_all && i + 1 != segs.len() {
            return Err(format!(
                "catch-all `{seg}` in `{t}` must be the last segment"
            ));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("duplicate parameter name `{name}` in `{t}`"));
        }
        names.push(name.to_string());
    }
    Ok(names)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum SegKey {
    Static(Box<[u8]>),
    /// A static segment of a case-insensitive route, stored lowercase: matches any case.
    Folded(Box<[u8]>),
    Param,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum ShapeKind {
    /// Exact path or template without catch-all: consumes every segment.
    Full,
    /// Template ending in `{*name}`; `segs` is the part before it.
    CatchAll,
    /// Prefix ending in '/' (stripped from `segs`): needs at least one more segment.
    PrefixDir,
    /// Prefix: the request's first segments equal `segs`.
    Prefix,
}

/// A path pattern with parameter names erased: equal shapes match exactly the same paths.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Shape {
    pub(super) kind: ShapeKind,
    pub(super) segs: Vec<SegKey>,
}

/// Segments of a pattern; a missing leading '/' is treated as present, empty as "/".
fn pattern_segments(s: &str) -> std::str::Split<'_, char> {
    s.strip_prefix('/').unwrap_or(s).split('/')
}

/// Whole-segment `{name}` (Some(false)) or `{*name}` (Some(true)); anything else is text.
fn param_segment(seg: &str) -> Option<bool> {
    let inner = seg.strip_prefix('{')?.strip_suffix('}')?;
    if inner.contains(['{', '}']) {
        return None;
    }
    match inner.strip_prefix('*') {
        Some(n) if !n.is_empty() && !n.contains('*') => Some(true),
        None if !inner.is_empty() && !inner.contains('*') => Some(false),
        _ => None,
    }
}

impl Shape {
    /// The shape of a route: its path pattern, with static segments folded to lowercase
    /// when the route is case-insensitive.
    pub(super) fn of_route(p: &PathPattern, case_insensitive: bool) -> Shape {
        let mut shape = Shape::of(p);
        if case_insensitive {
            for seg in &mut shape.segs {
                if let SegKey::Static(s) = seg {
                    *seg = SegKey::Folded(s.to_ascii_lowercase().into());
                }
            }
        }
        shape
    }

    pub(super) fn of(p: &PathPattern) -> Shape {
        let stat = |s: &str| SegKey::Static(s.as_bytes().into());
        match p {
            PathPattern::Exact(s) => Shape {
                kind: ShapeKind::Full,
                segs: pattern_segments(s).map(stat).collect(),
            },
            PathPattern::Template(t) => {
                let raw: Vec<&str> = pattern_segments(t).collect();
                let mut segs = Vec::with_capacity(raw.len());
                let mut kind = ShapeKind::Full;
                for (i, seg) in raw.iter().enumerate() {
                    match param_segment(seg) {
                        Some(false) => segs.push(SegKey::Param),
                        Some(true) if i + 1 == raw.len() => kind = ShapeKind::CatchAll,
                        _ => segs.push(stat(seg)),
                    }
                }
                Shape { kind, segs }
            }
            PathPattern::Prefix(s) => {
                let body = s.strip_prefix('/').unwrap_or(s);
                match body.strip_suffix('/') {
                    _ if body.is_empty() => Shape {
                        kind: ShapeKind::PrefixDir,
                        segs: Vec::new(),
                    },
                    Some(dir) => Shape {
                        kind: ShapeKind::PrefixDir,
                        segs: dir.split('/').map(stat).collect(),
                    },
                    None => Shape {
                        kind: ShapeKind::Prefix,
                        segs: body.split('/').map(stat).collect(),
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hit, route, table, tmpl};
    use super::*;

    #[test]
    fn invalid_template_segments_are_plain_text() {
        let t = table(vec![route(0, tmpl("/v{n}/x")), route(1, tmpl("/a/{*r}/b"))]);
        assert_eq!(hit(&t, "/v{n}/x"), Some(0));
        assert_eq!(hit(&t, "/v1/x"), None);
        assert_eq!(hit(&t, "/a/{*r}/b"), Some(1));
        assert_eq!(hit(&t, "/a/q/b"), None);
    }

    #[test]
    fn validate_template_accepts_and_names_params() {
        assert_eq!(validate_template("/"), Ok(vec![]));
        assert_eq!(
            validate_template("/u/{id}/files/{*path}"),
            Ok(vec!["id".to_string(), "path".to_string()])
        );
        assert_eq!(validate_template("/{*all}"), Ok(vec!["all".to_string()]));
    }

    #[test]
    fn validate_template_rejects_bad_templates() {
        let cases = [
            ("u/{id}", "start with '/'"),
            ("", "start with '/'"),
            ("/u/{}", "empty parameter name"),
            ("/u/{*}", "empty parameter name"),
            ("/u/{id}/{id}", "duplicate"),
            ("/u/{id}/{*id}", "duplicate"),
            ("/u/{*rest}/x", "must be the last"),
            ("/u/{*rest}/", "must be the last"),
            ("/v{n}", "mixes text"),
            ("/{a}{b}", "mixes text"),
            ("/{a}.json", "mixes text"),
            ("/}a{", "mixes text"),
            ("/u/{id", "unbalanced"),
            ("/u/id}", "unbalanced"),
            ("/u/{{id}", "unbalanced"),
            ("/u/{a*b}", "contains '*'"),
        ];
        for (t, want) in cases {
            match validate_template(t) {
                Ok(names) => panic!("{t:?} accepted: {names:?}"),
                Err(e) => assert!(e.contains(want), "{t:?}: {e}"),
            }
        }
    }
}
