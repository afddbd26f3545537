//! JWS algorithms and verification keys: which algorithm may use which key, and the one
//! function that checks a signature (all crypto is `ring`).
//!
//! Invariants: `none` has no `Alg` value, so it cannot be allowed or verified; a key verifies
//! only algorithms of its own kind (`Key::accepts`), so an RSA public key can never be used as
//! an HMAC secret (the HS256/RS256 confusion attack); RSA moduli below 2048 bits are refused
//! when the key is built, not at verification time.

use std::fmt;

use ring::{hmac, signature};

/// A JWS `alg` this gateway can verify. `none` is deliberately absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// Every supported algorithm, in a stable order.
pub const ALL_ALGS: [Alg; 12] = [
    Alg::HS256,
    Alg::HS384,
    Alg::HS512,
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
    Alg::ES256,
    Alg::ES384,
    Alg::EdDSA,
];

impl Alg {
    /// The registered JWS name (`"RS256"`).
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Exact (case-sensitive, as RFC 7515 requires) lookup by JWS name.
    pub fn from_name(name: &[u8]) -> Option<Alg> {
        ALL_ALGS.into_iter().find(|a| a.name().as_bytes() == name)
    }

    /// The kind of key this algorithm needs.
    pub fn key_kind(self) -> KeyKind {
        match self {
            Alg::HS256 | Alg::HS384 | Alg::HS512 => KeyKind::Hmac,
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyKind::Rsa
            }
            Alg::ES256 => KeyKind::EcP256,
            Alg::ES384 => KeyKind::EcP384,
            Alg::EdDSA => KeyKind::Ed25519,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of algorithms (bitmask): the policy's allow-list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AlgSet(u16);

impl AlgSet {
    /// Adds `alg`.
    pub fn insert(&mut self, alg: Alg) {
        self.0 |= alg.bit();
    }

    /// Whether `alg` is in the set.
    pub fn contains(self, alg: Alg) -> bool {
        self.0 & alg.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Members in `ALL_ALGS` order.
    pub fn iter(self) -> impl Iterator<Item = Alg> {
        ALL_ALGS.into_iter().filter(move |a| self.contains(*a))
    }

    /// All algorithms of one key kind.
    pub fn of_kind(kind: KeyKind) -> AlgSet {
        let mut s = AlgSet::default();
        for a in ALL_ALGS {
            if a.key_kind() == kind {
                s.insert(a);
            }
        }
        s
    }
}

/// What a key is, independent of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Hmac,
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// Human name for config errors.
    pub fn describe(self) -> &'static str {
        match self {
            KeyKind::Hmac => "HMAC secret",
            KeyKind::Rsa => "RSA public key",
            KeyKind::EcP256 => "EC P-256 public key",
            KeyKind::EcP384 => "EC P-384 public key",
            KeyKind::Ed25519 => "Ed25519 public key",
        }
    }
}

/// One `ring` HMAC key per digest, derived once when the key is built.
pub struct HmacKeys {
    sha256: hmac::Key,
    sha384: hmac::Key,
    sha512: hmac::Key,
}

/// Key bytes in the form `ring` verifies with.
pub enum KeyMaterial {
    Hmac(Box<HmacKeys>),
    /// Big-endian modulus and exponent without leading zero bytes.
    Rsa {
        n: Box<[u8]>,
        e: Box<[u8]>,
    },
    /// Uncompressed SEC1 point (`04 || x || y`).
    EcP256(Box<[u8]>),
    EcP384(Box<[u8]>),
    Ed25519([u8; 32]),
}

/// Smallest RSA modulus accepted, in bytes (2048 bits); `ring` refuses smaller ones too.
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// Largest RSA modulus `ring` verifies (8192 bits).
const MAX_RSA_MODULUS_BYTES: usize = 1024;

impl KeyMaterial {
    /// An HMAC key from secret bytes; empty secrets are refused.
    pub fn hmac(secret: &[u8]) -> Result<KeyMaterial, String> {
        if secret.is_empty() {
            return Err("the HMAC secret is empty".into());
        }
        Ok(KeyMaterial::Hmac(Box::new(HmacKeys {
            sha256: hmac::Key::new(hmac::HMAC_SHA256, secret),
            sha384: hmac::Key::new(hmac::HMAC_SHA384, secret),
            sha512: hmac::Key::new(hmac::HMAC_SHA512, secret),
        })))
    }

    /// An RSA public key from big-endian `n` and `e` (leading zeros allowed).
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<KeyMaterial, String> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        if n.len() < MIN_RSA_MODULUS_BYTES {
            return Err(format!(
                "RSA modulus is {} bits; at least 2048 are required",
                n.len() * 8
            ));
        }
        if n.len() > MAX_RSA_MODULUS_BYTES {
            return Err("RSA modulus is larger than 8192 bits".into());
        }
        if e.is_empty() || e.len() > 4 {
            return Err("RSA public exponent is out of range".into());
        }
        Ok(KeyMaterial::Rsa {
            n: n.into(),
            e: e.into(),
        })
    }

    /// An EC public key from its uncompressed point; the curve is told by the length.
    pub fn ec_point(point: &[u8]) -> Result<KeyMaterial, String> {
        match (point.first(), point.len()) {
            (Some(4), 65) => Ok(KeyMaterial::EcP256(point.into())),
            (Some(4), 97) => Ok(KeyMaterial::EcP384(point.into())),
            _ => Err("EC public key must be an uncompressed P-256 or P-384 point".into()),
        }
    }

    /// An Ed25519 public key (32 raw bytes).
    pub fn ed25519(raw: &[u8]) -> Result<KeyMaterial, String> {
        let arr: [u8; 32] = raw
            .try_into()
            .map_err(|_| format!("Ed25519 public key must be 32 bytes, not {}", raw.len()))?;
        if ed25519_weak(&arr) {
            return Err(
                "Ed25519 public key is a point of small order or not canonically encoded: \
                 anyone could forge signatures it accepts"
                    .into(),
            );
        }
        Ok(KeyMaterial::Ed25519(arr))
    }

    /// The kind of this key.
    pub fn kind(&self) -> KeyKind {
        match self {
            KeyMaterial::Hmac(_) => KeyKind::Hmac,
            KeyMaterial::Rsa { .. } => KeyKind::Rsa,
            KeyMaterial::EcP256(_) => KeyKind::EcP256,
            KeyMaterial::EcP384(_) => KeyKind::EcP384,
            KeyMaterial::Ed25519(_) => KeyKind::Ed25519,
        }
    }
}

/// Whether an Ed25519 public key (its y coordinate, little-endian, and x's sign in the top
/// bit) is one no honest signer has: a point of order 1, 2, 4 or 8 (for which a signature of
/// the identity and zero verifies every message), or a y that is not reduced below
/// p = 2^255 - 19. The small-order y values were computed as the 8-torsion subgroup ([L]P for
/// a point P with a torsion component); the sign bit is ignored, which also covers x = 0 with
/// the sign set.
fn ed25519_weak(key: &[u8; 32]) -> bool {
    const SMALL_ORDER_Y: [[u8; 32]; 5] = [
        [0; 32],
        [
            1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0,
        ],
        [
            0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
            0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
            0x6d, 0x53, 0xfc, 0x05,
        ],
        [
            0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10,
            0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77,
            0x92, 0xac, 0x03, 0x7a,
        ],
        [
            0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0x7f,
        ],
    ];
    let mut y = *key;
    y[31] &= 0x7f;
    // y >= p: the bytes from the top are all 0xff (0x7f in the last), down to a low byte
    // >= 0xed.
    let unreduced = y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] >= 0xed;
    unreduced || SMALL_ORDER_Y.contains(&y)
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// One verification key with its optional JWK constraints.
pub struct Key {
    /// JWK `kid`; a key without one matches tokens with any (or no) `kid`.
    pub kid: Option<String>,
    /// JWK `alg`; when set the key verifies that algorithm only.
    pub alg: Option<Alg>,
    pub material: KeyMaterial,
}

impl fmt::Debug for Key {
    // Never prints key bytes: an HMAC secret must not reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.material.kind())
            .finish()
    }
}

impl Key {
    /// A key without `kid` or `alg` constraints.
    pub fn new(material: KeyMaterial) -> Key {
        Key {
            kid: None,
            alg: None,
            material,
        }
    }

    /// Whether this key may verify a token signed with `alg`: same key kind, and the JWK's own
    /// `alg` (if any) agrees.
    pub fn accepts(&self, alg: Alg) -> bool {
        self.material.kind() == alg.key_kind() && self.alg.is_none_or(|a| a == alg)
    }

    /// Whether this key is a candidate for a token's `kid`.
    pub fn matches_kid(&self, kid: Option<&str>) -> bool {
        match (&self.kid, kid) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => true,
        }
    }

    /// Checks `sig` over `msg`. False for any mismatch, including a key of the wrong kind.
    pub fn verify(&self, alg: Alg, msg: &[u8], sig: &[u8]) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        match &self.material {
            KeyMaterial::Hmac(keys) => {
                let key = match alg {
                    Alg::HS256 => &keys.sha256,
                    Alg::HS384 => &keys.sha384,
                    Alg::HS512 => &keys.sha512,
                    _ => return false,
                };
                // Constant-time comparison inside ring.
                hmac::verify(key, msg, sig).is_ok()
            }
            KeyMaterial::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                let components = signature::RsaPublicKeyComponents {
                    n: &n[..],
                    e: &e[..],
                };
                components.verify(params, msg, sig).is_ok()
            }
            KeyMaterial::EcP256(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            KeyMaterial::EcP384(point) => {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(msg, sig)
                    .is_ok()
            }
            KeyMaterial::Ed25519(raw) => {
                signature::UnparsedPublicKey::new(&signature::ED25519, raw)
                    .verify(msg, sig)
                    .is_ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small-order Ed25519 key accepts forged signatures (identity R, zero s) for every
    /// message; such keys, and unreduced encodings, are refused when read.
    #[test]
    fn small_order_and_unreduced_ed25519_keys_are_refused() {
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut signed_identity = identity;
        signed_identity[31] |= 0x80;
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        for weak in [identity, signed_identity, [0u8; 32], p] {
            assert!(KeyMaterial::ed25519(&weak).is_err(), "{weak:02x?}");
        }
        // A real key (RFC 8032 test 1) is fine.
        let good = [
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ];
        assert!(KeyMaterial::ed25519(&good).is_ok());
    }
}
