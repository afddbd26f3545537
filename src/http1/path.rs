//! Request path normalization before routing and forwarding. The normalized path is what the
//! router matches, what `[[defaults]]` scopes compare against, and what goes upstream, so the
//! upstream sees exactly the path that was authorized.
//!
//! Steps, in order (the slow path; see [`normalize_path_with`]):
//! 1. `%00` is refused. Encoded slashes `%2F` / `%5C` and a raw `\` follow
//!    [`EscapedSlashes`] (default: refuse with 400).
//! 2. `;` path parameters follow [`PathParams`] (default: each segment loses everything from
//!    its first `;`, the way Tomcat and Spring read `/admin;jsessionid=1`).
//! 3. A segment that is an encoded dot segment (`%2e`, `.%2E`, ...) is refused.
//! 4. Percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2).
//! 5. Runs of `/` become one `/` (`merge_slashes`, default on).
//! 6. Dot segments are removed (RFC 3986 §5.2.4).
//!
//! Invariants: only unreserved characters are ever decoded by step 4; letter case is never
//! changed (case-insensitive matching is a per-route option of the router); a path without
//! `%`, `\`, `;`, `//` and dot segments comes back borrowed (no allocation in the common case).

use std::borrow::Cow;

/// What to do with `%2F`, `%5C` (any hex case) and a raw `\` in the path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EscapedSlashes {
    /// Refuse the request with 400 (default).
    Reject,
    /// Leave them as they are: `%2F` is part of a segment, `\` is an ordinary byte.
    Keep,
    /// Turn each into `/` (then merge slashes and remove dot segments as usual).
    Unescape,
}

/// What to do with `;` path parameters (`/admin;jsessionid=1/x`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathParams {
    /// Drop everything from a segment's first `;` to the segment's end (default).
    Strip,
    /// Refuse a path containing `;` with 400.
    Reject,
    /// Leave `;` as an ordinary byte.
    Keep,
}

/// Normalization settings (`[paths]` in the config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathOptions {
    pub merge_slashes: bool,
    pub escaped_slashes: EscapedSlashes,
    pub path_params: PathParams,
}

impl Default for PathOptions {
    fn default() -> Self {
        PathOptions {
            merge_slashes: true,
            escaped_slashes: EscapedSlashes::Reject,
            path_params: PathParams::Strip,
        }
    }
}

/// Why a path was refused (the request gets 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathReject {
    EncodedDotSegment,
    EscapedSlash,
    Backslash,
    PathParam,
    EncodedNul,
    /// A `%` not followed by two hex digits: decoding around it could assemble a new escape
    /// (`/%6%31dmin` → `/%61dmin`, which the upstream reads as `/admin`).
    MalformedEscape,
}

impl PathReject {
    /// Short text for the 400 problem body.
    pub fn reason(self) -> &'static str {
        match self {
            PathReject::EncodedDotSegment => "encoded dot segment in path",
            PathReject::EscapedSlash => "encoded slash or backslash (%2F, %5C) in path",
            PathReject::Backslash => "backslash in path",
            PathReject::PathParam => "';' path parameter in path",
            PathReject::EncodedNul => "encoded NUL (%00) in path",
            PathReject::MalformedEscape => "malformed percent escape in path",
        }
    }
}

/// [`normalize_path_with`] under the default options, `None` when the path is refused.
pub fn normalize_path(path: &[u8]) -> Option<Cow<'_, [u8]>> {
    normalize_path_with(path, &PathOptions::default()).ok()
}

/// Normalizes a request path (see the module header for the steps). A path that does not start
/// with `/` (`*`, empty) comes back unchanged. `Cow::Borrowed` when nothing changes.
pub fn normalize_path_with<'a>(
    path: &'a [u8],
    opts: &PathOptions,
) -> Result<Cow<'a, [u8]>, PathReject> {
    if path.first() != Some(&b'/') {
        return Ok(Cow::Borrowed(path));
    }
    let mut prev = 0u8;
    let special = path.iter().any(|&b| {
        let hit = match b {
            b'%' => true,
            b'\\' => opts.escaped_slashes != EscapedSlashes::Keep,
            b';' => opts.path_params != PathParams::Keep,
            b'/' => opts.merge_slashes && prev == b'/',
            _ => false,
        };
        prev = b;
        hit
    });
    if !special {
        return remove_dot_segments(path).ok_or(PathReject::EncodedDotSegment);
    }
    if has_malformed_escape(path) {
        return Err(PathReject::MalformedEscape);
    }
    let mut buf = unescape_slashes(path, opts.escaped_slashes)?;
    match opts.path_params {
        PathParams::Strip => strip_params(&mut buf),
        PathParams::Reject if buf.contains(&b';') => return Err(PathReject::PathParam),
        _ => {}
    }
    if buf.split(|&b| b == b'/').any(is_encoded_dot_segment) {
        return Err(PathReject::EncodedDotSegment);
    }
    if let Some(decoded) = decode_unreserved(&buf) {
        buf = decoded;
    }
    if opts.merge_slashes {
        buf.dedup_by(|a, b| *a == b'/' && *b == b'/');
    }
    let out = match remove_dot_segments(&buf).ok_or(PathReject::EncodedDotSegment)? {
        Cow::Borrowed(_) => buf,
        Cow::Owned(o) => o,
    };
    Ok(if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    })
}

/// Step 1: `%00` refused; `%2F`, `%5C` and `\` handled per `action`.
fn unescape_slashes(path: &[u8], action: EscapedSlashes) -> Result<Vec<u8>, PathReject> {
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let hex = path.get(i + 1).copied().and_then(hex_val);
            let lo = path.get(i + 2).copied().and_then(hex_val);
            if let (Some(h), Some(l)) = (hex, lo) {
                match h * 16 + l {
                    0 => return Err(PathReject::EncodedNul),
                    b'/' | b'\\' => match action {
                        EscapedSlashes::Reject => return Err(PathReject::EscapedSlash),
                        EscapedSlashes::Keep => out.extend_from_slice(&path[i..i + 3]),
                        EscapedSlashes::Unescape => out.push(b'/'),
                    },
                    _ => out.extend_from_slice(&path[i..i + 3]),
                }
                i += 3;
                continue;
            }
        } else if b == b'\\' {
            match action {
                EscapedSlashes::Reject => return Err(PathReject::Backslash),
                EscapedSlashes::Keep => out.push(b),
                EscapedSlashes::Unescape => out.push(b'/'),
            }
            i += 1;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Ok(out)
}

/// Step 2: every segment loses everything from its first `;` on.
fn strip_params(buf: &mut Vec<u8>) {
    let mut in_param = false;
    buf.retain(|&b| {
        match b {
            b'/' => in_param = false,
            b';' => in_param = true,
            _ => {}
        }
        !in_param
    });
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX` escapes of unreserved characters; `None` if there are none to decode.
fn decode_unreserved(path: &[u8]) -> Option<Vec<u8>> {
    let unreserved = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~');
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && i + 2 < path.len() {
            if let (Some(h), Some(l)) = (hex_val(path[i + 1]), hex_val(path[i + 2])) {
                let c = h * 16 + l;
                if unreserved(c) {
                    out.get_or_insert_with(|| path[..i].to_vec()).push(c);
                    i += 3;
                    continue;
                }
            }
        }
        if let Some(o) = out.as_mut() {
            o.push(path[i]);
        }
        i += 1;
    }
    out
}

/// RFC 3986 §5.2.4 remove_dot_segments on a raw path. `None` on an encoded dot segment;
/// `Cow::Borrowed` when nothing changes.
fn remove_dot_segments(path: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut has_dot_segment = false;
    for seg in path.split(|&b| b == b'/') {
        match seg {
            b"." | b".." => has_dot_segment = true,
            _ if is_encoded_dot_segment(seg) => return None,
            _ => {}
        }
    }
    if !has_dot_segment || path.first() != Some(&b'/') {
        return Some(Cow::Borrowed(path));
    }
    // Segment stack: a "." or ".." as the last segment leaves a trailing '/' behind, which an
    // empty final segment represents.
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut iter = path[1..].split(|&b| b == b'/').peekable();
    while let Some(seg) = iter.next() {
        let last = iter.peek().is_none();
        match seg {
            b"." => {}
            b".." => {
                segments.pop();
            }
            _ => {
                segments.push(seg);
                continue;
            }
        }
        if last {
            segments.push(b"");
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for seg in &segments {
        out.push(b'/');
        out.extend_from_slice(seg);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    Some(Cow::Owned(out))
}

/// A segment made only of `.` and `%2e`/`%2E`, at least one of them encoded, that decodes to
/// "." or "..".
fn is_encoded_dot_segment(seg: &[u8]) -> bool {
    let mut dots = 0;
    let mut encoded = false;
    let mut i = 0;
    while i < seg.len() {
        if seg[i] == b'.' {
            i += 1;
        } else if seg[i] == b'%'
            && seg.get(i + 1) == Some(&b'2')
            && matches!(seg.get(i + 2), Some(b'e' | b'E'))
        {
            encoded = true;
            i += 3;
        } else {
            return false;
        }
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    encoded && dots > 0
}

/// A `%` anywhere that is not followed by two hex digits (found by fuzzing: without this a
/// stray `%` made normalization non-idempotent and let an escape be assembled past the router).
fn has_malformed_escape(path: &[u8]) -> bool {
    let hex = |i: usize| path.get(i).is_some_and(u8::is_ascii_hexdigit);
    path.iter()
        .enumerate()
        .any(|(i, &b)| b == b'%' && !(hex(i + 1) && hex(i + 2)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn normalize_path_cases() {
        fn norm(p: &str) -> Option<String> {
            normalize_path(p.as_bytes()).map(|c| String::from_utf8(c.into_owned()).unwrap())
        }
        for (input, want) in [
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/../a", "/a"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/.", "/"),
            ("/..", "/"),
            ("/./", "/"),
            ("/a/./", "/a/"),
            ("/a//b/../c", "/a/c"),
            ("/a/b/../../../c", "/c"),
            ("/a/b/c/./../../g", "/a/g"),
            ("/a/b/../../..", "/"),
        ] {
            assert_eq!(norm(input).as_deref(), Some(want), "{input}");
            assert!(matches!(
                normalize_path(input.as_bytes()),
                Some(Cow::Owned(_))
            ));
        }
        for unchanged in ["/", "/a/b/c", "/a/.../b", "/a/..b/c.", "*", "", "a/../b"] {
            assert!(
                matches!(normalize_path(unchanged.as_bytes()), Some(Cow::Borrowed(b)) if b == unchanged.as_bytes()),
                "{unchanged}"
            );
        }
        for (input, want) in [
            ("/a%2e/b", "/a./b"),
            ("/%2e%2e%2e/x", "/.../x"),
            ("/%61dmin", "/admin"),
            ("/a%7Eb%2Dc", "/a~b-c"),
            ("/x%3By%20z", "/x%3By%20z"),
            ("/%61/../b", "/b"),
        ] {
            assert_eq!(norm(input).as_deref(), Some(want), "{input}");
        }
        for encoded in [
            "/%2e/a",
            "/%2E%2e/a",
            "/.%2e/a",
            "/%2e./a",
            "/a/%2e",
            "/a/%2E%2E",
            "/x/%2e%2e/y",
        ] {
            assert_eq!(norm(encoded), None, "{encoded}");
        }
    }

    fn with(p: &str, opts: &PathOptions) -> Result<String, PathReject> {
        normalize_path_with(p.as_bytes(), opts).map(|c| String::from_utf8(c.into_owned()).unwrap())
    }

    #[test]
    fn default_options_merge_strip_and_refuse() {
        let d = PathOptions::default();
        for (input, want) in [
            ("//admin", "/admin"),
            ("///admin//x", "/admin/x"),
            ("/admin/", "/admin/"),
            ("/admin;x", "/admin"),
            ("/admin;jsessionid=1/x", "/admin/x"),
            ("/;x/admin", "/admin"),
            ("/public/..;/admin", "/admin"),
            ("/..;/admin", "/admin"),
            ("/a;b;c/d;e", "/a/d"),
            ("/a//../b", "/b"),
            ("/%61dmin", "/admin"),
            ("/a%3Bb", "/a%3Bb"),
            ("/x/%2e%2e%2e/y", "/x/.../y"),
            ("/ADMIN", "/ADMIN"),
        ] {
            assert_eq!(with(input, &d).as_deref(), Ok(want), "{input}");
        }
        for (input, why) in [
            ("/admin%2Fx", PathReject::EscapedSlash),
            ("/admin%2fx", PathReject::EscapedSlash),
            ("/admin%5Cx", PathReject::EscapedSlash),
            ("/admin%5cx", PathReject::EscapedSlash),
            ("/admin\\x", PathReject::Backslash),
            ("/admin%00", PathReject::EncodedNul),
            ("/a;x/%2e%2e/b", PathReject::EncodedDotSegment),
            ("/a/.%2E;x/b", PathReject::EncodedDotSegment),
        ] {
            assert_eq!(with(input, &d), Err(why), "{input}");
        }
        // Incomplete escapes are refused (see `malformed_escape_is_rejected...`).
        assert_eq!(with("/a%2", &d), Err(PathReject::MalformedEscape));
        assert_eq!(with("/a%zz", &d), Err(PathReject::MalformedEscape));
    }

    #[test]
    fn common_paths_stay_borrowed() {
        let d = PathOptions::default();
        for p in [
            "/",
            "/a/b/c",
            "/api/v1/users/42",
            "/a/.../b",
            "/x.y/z-~_",
            "*",
            "",
        ] {
            assert!(
                matches!(normalize_path_with(p.as_bytes(), &d), Ok(Cow::Borrowed(b)) if b == p.as_bytes()),
                "{p}"
            );
        }
        // A `%` that decodes to nothing new still comes back borrowed (no copy handed out).
        assert!(matches!(
            normalize_path_with(b"/a%20b", &d),
            Ok(Cow::Borrowed(_))
        ));
    }

    /// Arbitrary paths never panic under any options, and under every option set a normalized
    /// path is a fixed point that comes back borrowed (normalizing twice changes nothing).
    #[test]
    fn normalization_is_idempotent_and_total() {
        let alphabet = b"/./;%2eEfF5cC0aA\\x=";
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut all = Vec::new();
        for merge_slashes in [true, false] {
            for escaped_slashes in [
                EscapedSlashes::Reject,
                EscapedSlashes::Keep,
                EscapedSlashes::Unescape,
            ] {
                for path_params in [PathParams::Strip, PathParams::Reject, PathParams::Keep] {
                    all.push(PathOptions {
                        merge_slashes,
                        escaped_slashes,
                        path_params,
                    });
                }
            }
        }
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let mut p = vec![b'/'];
            for _ in 0..len {
                p.push(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            for o in &all {
                if let Ok(n) = normalize_path_with(&p, o) {
                    let n = n.into_owned();
                    match normalize_path_with(&n, o) {
                        Ok(Cow::Borrowed(again)) => assert_eq!(
                            again,
                            &n[..],
                            "{:?} -> {:?} under {o:?}",
                            String::from_utf8_lossy(&p),
                            String::from_utf8_lossy(&n)
                        ),
                        other => panic!(
                            "{:?} -> {:?} -> {other:?} under {o:?}",
                            String::from_utf8_lossy(&p),
                            String::from_utf8_lossy(&n)
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn options_change_the_rules() {
        let keep = PathOptions {
            merge_slashes: false,
            escaped_slashes: EscapedSlashes::Keep,
            path_params: PathParams::Keep,
        };
        for p in ["//admin", "/admin%2Fx", "/admin\\x", "/admin;x", "/a%5Cb"] {
            assert_eq!(with(p, &keep).as_deref(), Ok(p), "{p}");
        }
        assert!(matches!(
            normalize_path_with(b"/a;b//c\\d", &keep),
            Ok(Cow::Borrowed(_))
        ));
        assert_eq!(with("/admin%00", &keep), Err(PathReject::EncodedNul));
        let unescape = PathOptions {
            escaped_slashes: EscapedSlashes::Unescape,
            path_params: PathParams::Reject,
            ..PathOptions::default()
        };
        for (input, want) in [
            ("/admin%2Fx", "/admin/x"),
            ("/admin%5cx", "/admin/x"),
            ("/admin\\x", "/admin/x"),
            ("/x%2F..%2Fadmin", "/admin"),
            ("/%2F%2Fadmin", "/admin"),
        ] {
            assert_eq!(with(input, &unescape).as_deref(), Ok(want), "{input}");
        }
        assert_eq!(with("/admin;x", &unescape), Err(PathReject::PathParam));
        assert_eq!(
            with("/x%2F%2e%2e%2Fadmin", &unescape),
            Err(PathReject::EncodedDotSegment)
        );
    }

    /// Found by fuzzing (`fuzz/fuzz_targets/normalize_path.rs`): `/%6%61` normalized to `/%6a`
    /// and again to `/j`, so `/%6%31dmin` was routed as `/%61dmin` (missing a deny route on
    /// `/admin`) and reached the upstream, which decodes it to `/admin`.
    #[test]
    fn malformed_escape_is_rejected_so_normalizing_is_idempotent() {
        for bad in [
            "/%6%61",
            "/%6%31dmin",
            "/a/%2%65%2%65/b",
            "/100%",
            "/%",
            "/%4",
            "/%zz",
            "/%4g",
        ] {
            assert_eq!(
                normalize_path_with(bad.as_bytes(), &PathOptions::default()),
                Err(PathReject::MalformedEscape),
                "{bad}"
            );
        }
        let keep = PathOptions {
            escaped_slashes: EscapedSlashes::Keep,
            ..PathOptions::default()
        };
        // A well-formed reserved escape stays as sent, and a second pass changes nothing.
        for (input, want) in [
            ("/%2561", "/%2561"),
            ("/%25%36%31", "/%2561"),
            ("/%2F%61", "/%2Fa"),
        ] {
            let once = normalize_path_with(input.as_bytes(), &keep)
                .expect(input)
                .into_owned();
            assert_eq!(once, want.as_bytes(), "{input}");
            assert_eq!(
                normalize_path_with(&once, &keep).as_deref(),
                Ok(&once[..]),
                "{input}"
            );
        }
    }
}
