//! Request ids: keep a sane client-supplied `X-Request-Id`, otherwise generate a random
//! UUIDv4-formatted id from a per-worker PRNG (seeded from the OS once, no syscall per request).

use std::cell::Cell;

/// Longest client-supplied id we keep; longer ones are replaced.
pub const MAX_LEN: usize = 128;

/// True if a client-supplied id is safe to log and echo: 1..=128 chars of `[A-Za-z0-9._:-]`.
pub fn is_sane(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_LEN
        && v.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A request id held inline (no allocation): a kept client id or a generated one.
#[derive(Clone, Copy)]
pub struct RequestId {
    bytes: [u8; MAX_LEN],
    len: u8,
}

impl RequestId {
    /// Keeps a client-supplied id if it is sane.
    pub fn from_client(v: &[u8]) -> Option<RequestId> {
        if !is_sane(v) {
            return None;
        }
        let mut id = RequestId {
            bytes: [0; MAX_LEN],
            len: v.len() as u8,
        };
        id.bytes[..v.len()].copy_from_slice(v);
        Some(id)
    }

    pub fn as_str(&self) -> &str {
        let bytes = &self.bytes[..self.len as usize];
        debug_assert!(bytes.is_ascii());
        // SAFETY: only ASCII is ever stored: `from_client` admits only `is_sane` bytes (ASCII
        // letters, digits and `-_.:`) and `next_id` writes hex digits and dashes; the fields
        // are private, so nothing else writes them. ASCII is valid UTF-8. (The checked
        // conversion ran twice per request on the fast path.)
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Per-worker generator (xorshift128+); not cryptographic, only unique in practice.
pub struct IdGen {
    s0: Cell<u64>,
    s1: Cell<u64>,
}

impl IdGen {
    pub fn new() -> IdGen {
        let mut seed = [0u8; 16];
        if getrandom::fill(&mut seed).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(1);
            seed = (t ^ (std::process::id() as u128) << 64).to_le_bytes();
        }
        let a = u64::from_le_bytes(seed[..8].try_into().unwrap_or([1; 8])) | 1;
        let b = u64::from_le_bytes(seed[8..].try_into().unwrap_or([2; 8])) | 2;
        IdGen {
            s0: Cell::new(a),
            s1: Cell::new(b),
        }
    }

    pub fn next_u64(&self) -> u64 {
        let mut s1 = self.s0.get();
        let s0 = self.s1.get();
        self.s0.set(s0);
        s1 ^= s1 << 23;
        let n = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
        self.s1.set(n);
        n.wrapping_add(s0)
    }

    /// A fresh UUIDv4-shaped id (36 chars).
    pub fn next_id(&self) -> RequestId {
        let hi = self.next_u64();
        let lo = self.next_u64();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&hi.to_be_bytes());
        bytes[8..].copy_from_slice(&lo.to_be_bytes());
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        // Where each byte's two hex digits go: 8-4-4-4-12, dashes at 8, 13, 18 and 23.
        const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut id = RequestId {
            bytes: [0; MAX_LEN],
            len: 36,
        };
        for at in [8, 13, 18, 23] {
            id.bytes[at] = b'-';
        }
        for (b, at) in bytes.iter().zip(AT) {
            id.bytes[at] = HEX[(b >> 4) as usize];
            id.bytes[at + 1] = HEX[(b & 15) as usize];
        }
        id
    }
}

impl Default for IdGen {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanity_rules() {
        assert!(is_sane(b"abc-123_x.y:z"));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"has space"));
        assert!(!is_sane(b"evil\r\nheader"));
        assert!(!is_sane(&[b'a'; 129]));
    }

    #[test]
    fn generated_ids_look_like_uuids_and_differ() {
        let g = IdGen::new();
        let (a, b) = (g.next_id(), g.next_id());
        let (a, b) = (a.as_str(), b.as_str());
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, b);
        assert!(is_sane(a.as_bytes()));
        for (i, c) in a.bytes().enumerate() {
            match i {
                8 | 13 | 18 | 23 => assert_eq!(c, b'-', "{a}"),
                _ => assert!(matches!(c, b'0'..=b'9' | b'a'..=b'f'), "{a}"),
            }
        }
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{a}");
    }
}
