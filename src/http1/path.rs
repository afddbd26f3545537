//! Request path normalization before routing and forwarding: percent-encoded unreserved
//! characters are decoded (RFC 3986 §6.2.2.2), then dot segments are removed (§5.2.4).
//!
//! Invariants: only unreserved characters are ever decoded (so `%2F` stays a literal byte
//! sequence), an encoded dot segment is rejected rather than guessed at, and an unchanged path
//! comes back borrowed (no allocation in the common case).

/// Path normalization before routing and forwarding: percent-encoded unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §6.2.2.2) are decoded, so `/%61dmin` routes like `/admin`,
/// then dot segments are removed (§5.2.4). Returns `None` if a segment is an encoded dot segment
/// (`%2e`, `.%2E`, ...) or a `%` is not followed by two hex digits — such paths are rejected
/// with 400 rather than guessed at (a stray `%` would let decoding build a new escape:
/// `/%6%31dmin` would become `/%61dmin`, which the upstream reads as `/admin`). Returns
/// `Cow::Borrowed` when nothing changes (the common case: no allocation).
pub fn normalize_path(path: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    if !path.contains(&b'%') {
        return remove_dot_segments(path);
    }
    if has_malformed_escape(path) || path.split(|&b| b == b'/').any(is_encoded_dot_segment) {
        return None;
    }
    match decode_unreserved(path) {
        None => remove_dot_segments(path),
        Some(decoded) => Some(Cow::Owned(remove_dot_segments(&decoded)?.into_owned())),
    }
}

/// A `%` without two hex digits after it (RFC 3986 pct-encoded is exactly `%` HEXDIG HEXDIG).
fn has_malformed_escape(path: &[u8]) -> bool {
    let hex = |i: usize| path.get(i).is_some_and(u8::is_ascii_hexdigit);
    path.iter()
        .enumerate()
        .any(|(i, &b)| b == b'%' && !(hex(i + 1) && hex(i + 2)))
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
fn remove_dot_segments(path: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
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
            ("/a//b/../c", "/a//c"),
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
        for unchanged in [
            "/",
            "/a/b/c",
            "/a/.../b",
            "/a/..b/c.",
            "/a//b/",
            "*",
            "",
            "a/../b",
        ] {
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
            ("/x%2Fy%20z", "/x%2Fy%20z"),
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

    /// Found by the `normalize_path` fuzz target: a stray `%` next to a decodable escape made
    /// decoding build a new escape (`/%6%61` became `/%6a`, then `/j` on a second pass), so
    /// the router and an upstream that decodes saw different paths (`/%6%31dmin` was routed as
    /// `/%61dmin` and reached the upstream as `/admin`). Malformed escapes are now refused.
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
            assert_eq!(normalize_path(bad.as_bytes()), None, "{bad}");
        }
        // A well-formed reserved escape stays as sent, and a second pass changes nothing.
        for (input, want) in [
            ("/%2561", "/%2561"),
            ("/%25%36%31", "/%2561"),
            ("/%2F%61", "/%2Fa"),
        ] {
            let once = normalize_path(input.as_bytes()).expect(input).into_owned();
            assert_eq!(once, want.as_bytes(), "{input}");
            assert_eq!(normalize_path(&once).as_deref(), Some(&once[..]), "{input}");
        }
    }
}
