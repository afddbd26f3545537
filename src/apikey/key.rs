//! The API key format: `rwk_<id>_<secret>`, generation and shape checks.
//!
//! `id` is 8 lowercase hex digits (32 random bits, public), `secret` is 32 bytes from the OS
//! random source encoded as unpadded base64url (43 chars). Every part has a fixed length, so
//! parsing is by position: the `_` and `-` inside the base64url alphabet never confuse it.
//! Parsing works on bytes, never panics, and rejects anything not exactly this shape.

use std::fmt;

/// The fixed prefix of every key; makes keys recognizable to secret scanners.
pub const PREFIX: &str = "rwk_";
/// Hex digits in a key id.
pub const ID_LEN: usize = 8;
/// Random bytes in the secret part.
pub const SECRET_BYTES: usize = 32;
/// Characters of the secret part (unpadded base64url of `SECRET_BYTES`).
pub const SECRET_LEN: usize = 43;
/// Total length of a key.
pub const KEY_LEN: usize = PREFIX.len() + ID_LEN + 1 + SECRET_LEN;

/// The public id of a key (8 lowercase hex digits), used for lookup, in the file and in logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl KeyId {
    /// Parses exactly 8 lowercase hex digits.
    pub fn parse(s: &[u8]) -> Option<KeyId> {
        if s.len() != ID_LEN {
            return None;
        }
        let mut v: u32 = 0;
        for &b in s {
            let d = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => return None,
            };
            v = (v << 4) | u32::from(d);
        }
        Some(KeyId(v))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Checks the shape of a presented key and returns its id; `None` if malformed.
pub fn parse_key(presented: &[u8]) -> Option<KeyId> {
    if presented.len() != KEY_LEN || !presented.starts_with(PREFIX.as_bytes()) {
        return None;
    }
    let rest = &presented[PREFIX.len()..];
    let (id, rest) = rest.split_at(ID_LEN);
    let (sep, secret) = rest.split_at(1);
    if sep != b"_" || !secret.iter().all(|&b| is_b64url(b)) {
        return None;
    }
    KeyId::parse(id)
}

/// The id of a presented key as text, if it is well-formed (for logging failed attempts
/// without logging the key).
pub fn key_id(presented: &[u8]) -> Option<&str> {
    parse_key(presented)?;
    std::str::from_utf8(&presented[PREFIX.len()..PREFIX.len() + ID_LEN]).ok()
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Unpadded base64url.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(B64URL[idx as usize]));
        }
    }
    out
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Parses exactly `N` bytes of hex (either case).
pub(crate) fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Generates a new key whose id is not `taken`. Returns the id and the full key text.
pub fn generate(taken: impl Fn(KeyId) -> bool) -> Result<(KeyId, String), String> {
    let rand = |buf: &mut [u8]| {
        getrandom::fill(buf).map_err(|e| format!("cannot read the OS random source: {e}"))
    };
    // 32-bit ids collide rarely; a few retries make a clash with existing ids practically
    // impossible, and a broken random source that keeps returning the same bytes is caught.
    for _ in 0..16 {
        let mut idb = [0u8; 4];
        rand(&mut idb)?;
        let id = KeyId(u32::from_be_bytes(idb));
        if taken(id) {
            continue;
        }
        let mut secret = [0u8; SECRET_BYTES];
        rand(&mut secret)?;
        let key = format!("{PREFIX}{id}_{}", base64url(&secret));
        debug_assert_eq!(key.len(), KEY_LEN);
        return Ok((id, key));
    }
    Err("cannot find an unused key id (is the OS random source broken?)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_are_distinct() {
        let (id, k) = generate(|_| false).unwrap();
        assert_eq!(k.len(), KEY_LEN);
        assert_eq!(parse_key(k.as_bytes()), Some(id));
        assert_eq!(key_id(k.as_bytes()), Some(id.to_string().as_str()));
        let (_, k2) = generate(|_| false).unwrap();
        assert_ne!(k, k2);
    }

    #[test]
    fn taken_ids_are_skipped() {
        let (first, _) = generate(|_| false).unwrap();
        let (id, _) = generate(|i| i == first).unwrap();
        assert_ne!(id, first);
        assert!(generate(|_| true).is_err());
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let (_, k) = generate(|_| false).unwrap();
        let good = k.as_bytes();
        assert!(parse_key(b"").is_none());
        assert!(parse_key(b"rwk").is_none());
        assert!(parse_key(&good[..KEY_LEN - 1]).is_none());
        assert!(parse_key(&[good, b"A"].concat()).is_none());
        assert!(parse_key(&vec![b'a'; 1 << 20]).is_none());
        assert!(parse_key(&[0xff; KEY_LEN]).is_none());
        let mut bad = good.to_vec();
        bad[0] = b'R';
        assert!(parse_key(&bad).is_none());
        let mut bad = good.to_vec();
        bad[PREFIX.len()] = b'G'; // not lowercase hex
        assert!(parse_key(&bad).is_none());
        let mut bad = good.to_vec();
        bad[PREFIX.len() + ID_LEN] = b'-'; // separator
        assert!(parse_key(&bad).is_none());
        let mut bad = good.to_vec();
        bad[KEY_LEN - 1] = b'='; // padding / not in the alphabet
        assert!(parse_key(&bad).is_none());
        let mut bad = good.to_vec();
        bad[KEY_LEN - 2] = 0xc3; // non-UTF-8 / non-ASCII
        assert!(parse_key(&bad).is_none());
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(&[0u8; 32]).len(), SECRET_LEN);
    }

    #[test]
    fn hex_round_trip() {
        let h = hex(&[0x00, 0xab, 0xff]);
        assert_eq!(h, "00abff");
        assert_eq!(unhex::<3>(&h), Some([0x00, 0xab, 0xff]));
        assert_eq!(unhex::<3>("00ABFF"), Some([0x00, 0xab, 0xff]));
        assert_eq!(unhex::<3>("00abf"), None);
        assert_eq!(unhex::<3>("00abfg"), None);
        assert_eq!(KeyId::parse(b"0000abcd"), Some(KeyId(0xabcd)));
        assert_eq!(KeyId(0xabcd).to_string(), "0000abcd");
        assert_eq!(KeyId::parse(b"0000ABCD"), None);
    }
}
