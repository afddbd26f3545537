//! The secondary key (RFC 9111 4.1): the request fields a stored response's `Vary` names, as
//! this request has them. `Vary: *` never matches. With compression on the route,
//! `Accept-Encoding` stands for the coding the gateway negotiated, not the header's raw text,
//! so `gzip, br` and `br;q=1, gzip` share one variant.

/// Most field names one response may vary on; a response naming more is not stored (an
/// upstream cannot make every lookup walk hundreds of fields).
pub const MAX_NAMES: usize = 16;

/// The field names the `Vary` lines among `fields` (a stored object's field lines) list
/// (lowercase, deduplicated); `None` for `Vary: *`, or more than `MAX_NAMES` names (not
/// storable).
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
            if out.len() >= MAX_NAMES {
                return None;
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
        // Every value, in order, length-prefixed; long ones kept as a digest (bounded).
        let mut values = Vec::new();
        for (n, v) in head.headers() {
            if n.eq_ignore_ascii_case(name) {
                let v = v.trim_ascii();
                values.extend_from_slice(&(v.len() as u32).to_le_bytes());
                values.extend_from_slice(v);
            }
        }
        super::key::push_bounded(&mut out, &values);
        out.push(0);
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lines: &str) -> crate::http1::RequestHead {
        let raw = format!("GET / HTTP/1.1\r\nhost: a\r\n{lines}\r\n");
        match crate::http1::parse_request_head(raw.as_bytes(), &Default::default()) {
            Ok(Some((h, _))) => h,
            other => panic!("parse: {other:?}"),
        }
    }

    #[test]
    fn names_star_and_bounds() {
        let n = names(b"vary: Accept-Language, origin\r\nVARY: origin\r\n").expect("names");
        assert_eq!(n.len(), 2);
        assert_eq!(&*n[0], b"accept-language");
        assert!(names(b"vary: origin, *\r\n").is_none());
        let many: String = (0..MAX_NAMES + 1).map(|i| format!("x-{i},")).collect();
        assert!(names(format!("vary: {many}\r\n").as_bytes()).is_none());
        assert_eq!(names(b"x: y\r\n").map(|n| n.len()), Some(0));
    }

    #[test]
    fn secondary_distinguishes_values_and_bounds_size() {
        let n = names(b"vary: accept-language\r\n").expect("names");
        let a = secondary(&n, &req("accept-language: en\r\n"), None);
        let b = secondary(&n, &req("accept-language: de\r\n"), None);
        let none = secondary(&n, &req(""), None);
        let empty = secondary(&n, &req("accept-language: \r\n"), None);
        assert!(a != b && a != none && none != empty);
        let long1 = secondary(
            &n,
            &req(&format!("accept-language: {}\r\n", "a".repeat(7000))),
            None,
        );
        let long2 = secondary(
            &n,
            &req(&format!("accept-language: {}b\r\n", "a".repeat(7000))),
            None,
        );
        assert!(long1.len() < 100 && long1 != long2);
        // The negotiated coding stands for Accept-Encoding.
        let ae = names(b"vary: accept-encoding\r\n").expect("names");
        assert_eq!(
            secondary(&ae, &req("accept-encoding: gzip, br\r\n"), Some("br")),
            secondary(&ae, &req("accept-encoding: br;q=1, gzip\r\n"), Some("br"))
        );
    }
}
