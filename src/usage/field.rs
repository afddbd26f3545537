//! The hash field one usage cell is stored under: binary-safe and unambiguous whatever the
//! consumer or route name holds (commas, quotes, CR/LF, any length), so `export` gets the
//! exact names back.
//!
//! Layout: the class digit (`1`..`5`); the route as `r<len>:<bytes>` or `-` when no route
//! matched; then who: `a` (anonymous), `o` (`(other)`, see `usage`) or `c<bytes to the end>`.

use super::cell::Who;

/// A decoded field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cell {
    pub class: u8,
    pub route: Option<String>,
    pub who: DecodedWho,
}

/// Who, as read back.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DecodedWho {
    Anonymous,
    Named(String),
    Other,
}

/// The field for one cell.
pub fn encode(class: u8, route: Option<&str>, who: &Who) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + route.map_or(0, str::len));
    out.push(b'0' + class.min(9));
    match route {
        Some(r) => {
            out.push(b'r');
            out.extend_from_slice(r.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(r.as_bytes());
        }
        None => out.push(b'-'),
    }
    match who {
        Who::Anonymous => out.push(b'a'),
        Who::Other => out.push(b'o'),
        Who::Named(n) => {
            out.push(b'c');
            out.extend_from_slice(n.as_bytes());
        }
    }
    out
}

/// Reads a field back; `None` for anything `encode` did not write.
pub fn decode(f: &[u8]) -> Option<Cell> {
    let (&c, rest) = f.split_first()?;
    if !(b'1'..=b'5').contains(&c) {
        return None;
    }
    let (route, rest) = match rest.split_first()? {
        (b'-', rest) => (None, rest),
        (b'r', rest) => {
            let colon = rest.iter().position(|&b| b == b':')?;
            let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
            let body = rest.get(colon + 1..)?;
            let name = body.get(..len)?;
            (
                Some(String::from_utf8_lossy(name).into_owned()),
                &body[len..],
            )
        }
        _ => return None,
    };
    let who = match rest.split_first()? {
        (b'a', []) => DecodedWho::Anonymous,
        (b'o', []) => DecodedWho::Other,
        (b'c', name) => DecodedWho::Named(String::from_utf8_lossy(name).into_owned()),
        _ => return None,
    };
    Some(Cell {
        class: c - b'0',
        route,
        who,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn hostile_names_round_trip() {
        let long = "x".repeat(10_240);
        for (route, who) in [
            (Some("r:5:"), Who::Named(Arc::from("a,b\"c\r\nd"))),
            (Some(""), Who::Named(Arc::from(""))),
            (None, Who::Anonymous),
            (Some("12:x"), Who::Other),
            (Some(long.as_str()), Who::Named(Arc::from(long.as_str()))),
        ] {
            let f = encode(4, route, &who);
            let cell = decode(&f).expect("decodes");
            assert_eq!(cell.class, 4);
            assert_eq!(cell.route.as_deref(), route);
            let back = match &who {
                Who::Anonymous => DecodedWho::Anonymous,
                Who::Other => DecodedWho::Other,
                Who::Named(n) => DecodedWho::Named(n.to_string()),
            };
            assert_eq!(cell.who, back);
        }
    }

    #[test]
    fn garbage_is_refused() {
        for f in [
            &b""[..],
            b"9-a",
            b"2r",
            b"2r5:ab",
            b"2r1:xz",
            b"2-",
            b"2-ax",
            b"2r99999999999999999999:a",
        ] {
            assert_eq!(decode(f), None, "{:?}", String::from_utf8_lossy(f));
        }
    }
}
