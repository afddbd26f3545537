//! A fixed-key hash for balancing keys (consistent hashing, sticky splits): SipHash-2-4 under
//! a key compiled into the binary, so the same key maps to the same target on every worker,
//! every process and after a restart.
//!
//! The key is not a secret and guards nothing: a client may always choose a key that lands on
//! a target it likes (by sending the same key). What the hash gives is an even, stable spread.
//! (`keyed_hash` is the per-process random key for secrets; that one changes on restart.)

/// The fixed key ("ringway-balance!" as two little-endian words).
const K0: u64 = u64::from_le_bytes(*b"ringway-");
const K1: u64 = u64::from_le_bytes(*b"balance!");

/// SipHash-2-4 of `data` under the fixed balancing key.
pub fn key_hash(data: &[u8]) -> u64 {
    siphash24(K0, K1, data)
}

/// `key_hash` under a key varied by `seed`: independent hashes of one input (the Maglev
/// permutation takes a target's offset and skip from one address).
pub fn key_hash_seeded(seed: u8, data: &[u8]) -> u64 {
    siphash24(K0 ^ u64::from(seed), K1.rotate_left(u32::from(seed)), data)
}

struct Sip {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

impl Sip {
    #[inline]
    fn round(&mut self) {
        self.v0 = self.v0.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(13) ^ self.v0;
        self.v0 = self.v0.rotate_left(32);
        self.v2 = self.v2.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(16) ^ self.v2;
        self.v0 = self.v0.wrapping_add(self.v3);
        self.v3 = self.v3.rotate_left(21) ^ self.v0;
        self.v2 = self.v2.wrapping_add(self.v1);
        self.v1 = self.v1.rotate_left(17) ^ self.v2;
        self.v2 = self.v2.rotate_left(32);
    }

    #[inline]
    fn absorb(&mut self, m: u64) {
        self.v3 ^= m;
        self.round();
        self.round();
        self.v0 ^= m;
    }
}

/// SipHash-2-4 (Aumasson and Bernstein) of `data` under the key (`k0`, `k1`).
pub fn siphash24(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut s = Sip {
        v0: k0 ^ 0x736f_6d65_7073_6575,
        v1: k1 ^ 0x646f_7261_6e64_6f6d,
        v2: k0 ^ 0x6c79_6765_6e65_7261,
        v3: k1 ^ 0x7465_6462_7974_6573,
    };
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        s.absorb(u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    let m = u64::from_le_bytes(last) | ((data.len() as u64 & 0xff) << 56);
    s.absorb(m);
    s.v2 ^= 0xff;
    for _ in 0..4 {
        s.round();
    }
    s.v0 ^ s.v1 ^ s.v2 ^ s.v3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_vectors() {
        // The SipHash paper's key 00..0f; outputs for the messages 00, 00 01, ... (first
        // entries of the reference implementation's vectors.h).
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        assert_eq!(siphash24(k0, k1, b""), 0x726f_db47_dd0e_0e31);
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash24(k0, k1, &msg), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn same_input_same_hash_and_seeds_differ() {
        assert_eq!(key_hash(b"user-42"), key_hash(b"user-42"));
        assert_ne!(key_hash(b"user-42"), key_hash(b"user-43"));
        assert_ne!(key_hash_seeded(1, b"a"), key_hash_seeded(2, b"a"));
    }
}
