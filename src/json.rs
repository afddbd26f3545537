//! JSON string escaping for everything the gateway writes itself (problem details, echo,
//! access-log lines, OTLP spans, admin answers). Output only.

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` escaped for the inside of a JSON string, without allocating. Invalid UTF-8
/// sequences become U+FFFD; controls and DEL become `\u00XX`.
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
    }
}
