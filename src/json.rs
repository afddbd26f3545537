//! JSON string escaping for everything the gateway writes itself (problem details, echo,
//! access-log lines, OTLP spans, admin answers). Output only.

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` escaped for the inside of a JSON string, without allocating. Invalid UTF-8
/// sequences become U+FFFD; controls and DEL become `\u00XX`. So do the characters a
/// terminal or viewer acts on rather than shows, which a client could put in a logged value:
/// C1 controls (U+0080..U+009F, among them the 8-bit CSI), the line and paragraph separators
/// and every bidirectional control (U+061C, U+200E, U+200F, U+2028..U+202E,
/// U+2066..U+2069), which can make `tail -f` run escape sequences or show a line reversed.
pub fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    for chunk in s.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0;
        for (i, &b) in valid.iter().enumerate() {
            let esc: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f | 0x7f => b"",
                0xc2 | 0xd8 | 0xe2 => {
                    let Some((cp, len)) = acting_char(&valid[i..]) else {
                        continue;
                    };
                    out.extend_from_slice(&valid[start..i]);
                    out.extend_from_slice(b"\\u");
                    for shift in [12, 8, 4, 0] {
                        out.push(HEX_DIGITS[((cp >> shift) & 0xf) as usize]);
                    }
                    start = i + len;
                    continue;
                }
                _ => continue,
            };
            out.extend_from_slice(&valid[start..i]);
            if esc.is_empty() {
                out.extend_from_slice(b"\\u00");
                out.push(HEX_DIGITS[(b >> 4) as usize]);
                out.push(HEX_DIGITS[(b & 0xf) as usize]);
            } else {
                out.extend_from_slice(esc);
            }
            start = i + 1;
        }
        out.extend_from_slice(&valid[start..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

/// The code point and length of a C1 control or a bidi/separator character at the start of
/// `s` (valid UTF-8), which `escape_into` writes as `\uXXXX`.
fn acting_char(s: &[u8]) -> Option<(u32, usize)> {
    match *s {
        [0xc2, c @ 0x80..=0x9f, ..] => Some((u32::from(c), 2)),
        // U+061C ARABIC LETTER MARK, the one `Bidi_Control` character outside U+2000-U+206F.
        [0xd8, 0x9c, ..] => Some((0x061c, 2)),
        [0xe2, 0x80, c @ (0x8e | 0x8f | 0xa8..=0xae), ..] => {
            Some((0x2000 + u32::from(c - 0x80), 3))
        }
        [0xe2, 0x81, c @ 0xa6..=0xa9, ..] => Some((0x2040 + u32::from(c - 0x80), 3)),
        _ => None,
    }
}

/// Appends `"s"` (quoted and escaped).
pub fn string_into(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    escape_into(out, s);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        let mut v = Vec::new();
        string_into(&mut v, b"a\"b\\c\nd\x01\xff");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001\u{fffd}\""
        );
        // C1 controls and bidi/separator characters are escaped; other non-ASCII is kept.
        let mut v = Vec::new();
        string_into(
            &mut v,
            "x\u{9b}2J é \u{202e}txt \u{2028}\u{2066}\u{200f}\u{61c}€\u{a0}\u{61b}".as_bytes(),
        );
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "\"x\\u009b2J é \\u202etxt \\u2028\\u2066\\u200f\\u061c€\u{a0}\u{61b}\""
        );
    }
}
