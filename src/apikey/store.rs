//! `KeyStore`: the compiled, immutable key table the request path authenticates against.
//!
//! Invariants: it holds only hashes (never a key); the presented key's hash is compared with
//! the stored one in constant time (`subtle`); revocation and expiry are only reported after
//! the hash matched, so a caller without the key learns nothing beyond "unknown". Timing does
//! reveal whether an id exists, which is fine: ids are public (they are logged).

use std::fmt;
use std::sync::Arc;

use ahash::AHashMap;
use ring::{digest, hmac};
use subtle::ConstantTimeEq;

use super::file::KeyEntry;
use super::key::{self, KeyId};
use super::types::{HashMode, KeyError};

/// A successful authentication: which key and which consumer. Borrowed from the store so the
/// hot path does no refcount traffic on shared cache lines; clone `consumer` to keep it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyMatch<'s> {
    /// The key's public id (8 hex digits).
    pub id: &'s str,
    /// The consumer the key belongs to.
    pub consumer: &'s Arc<str>,
}

/// Computes key hashes in one mode; holds the precomputed HMAC key in HMAC mode.
pub(crate) enum Hasher {
    HmacSha256(hmac::Key),
    Sha256,
}

impl Hasher {
    /// A hasher for `mode`; HMAC mode needs the server secret.
    pub(crate) fn new(mode: HashMode, secret: Option<&[u8]>) -> Result<Hasher, String> {
        match (mode, secret) {
            (HashMode::Sha256, _) => Ok(Hasher::Sha256),
            (HashMode::HmacSha256, Some(s)) => {
                Ok(Hasher::HmacSha256(hmac::Key::new(hmac::HMAC_SHA256, s)))
            }
            (HashMode::HmacSha256, None) => Err("hmac-sha256 needs a secret".into()),
        }
    }

    pub(crate) fn mode(&self) -> HashMode {
        match self {
            Hasher::HmacSha256(_) => HashMode::HmacSha256,
            Hasher::Sha256 => HashMode::Sha256,
        }
    }

    /// The 32-byte hash of a full key string.
    pub(crate) fn hash(&self, key: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        match self {
            Hasher::HmacSha256(k) => out.copy_from_slice(hmac::sign(k, key).as_ref()),
            Hasher::Sha256 => out.copy_from_slice(digest::digest(&digest::SHA256, key).as_ref()),
        }
        out
    }
}

struct StoredKey {
    id: Box<str>,
    consumer: Arc<str>,
    hash: [u8; 32],
    /// Unix seconds; `u64::MAX` = never.
    expires: u64,
    revoked: bool,
}

/// The compiled key table of one config generation. Immutable, `Send + Sync`.
pub struct KeyStore {
    hasher: Hasher,
    by_id: AHashMap<u32, StoredKey>,
}

impl KeyStore {
    /// Builds a store from validated entries (see `file::parse_keys`). HMAC mode needs
    /// `secret`. Entries must be hashed in `mode` and have distinct ids.
    pub fn new(
        mode: HashMode,
        secret: Option<&[u8]>,
        entries: &[KeyEntry],
    ) -> Result<KeyStore, String> {
        let hasher = Hasher::new(mode, secret)?;
        let mut consumers: AHashMap<&str, Arc<str>> = AHashMap::new();
        let mut by_id = AHashMap::with_capacity(entries.len());
        for e in entries {
            if e.hash_mode != mode {
                return Err(format!(
                    "key {} is hashed with {} but the store uses {mode}",
                    e.id, e.hash_mode
                ));
            }
            let consumer = consumers
                .entry(e.consumer.as_str())
                .or_insert_with(|| Arc::from(e.consumer.as_str()))
                .clone();
            let stored = StoredKey {
                id: e.id.to_string().into_boxed_str(),
                consumer,
                hash: e.hash,
                expires: e.expires.unwrap_or(u64::MAX),
                revoked: e.revoked,
            };
            if by_id.insert(e.id.0, stored).is_some() {
                return Err(format!("duplicate key id {}", e.id));
            }
        }
        Ok(KeyStore { hasher, by_id })
    }

    /// Checks a presented key (the raw header value bytes, already trimmed) at `now_unix`.
    pub fn authenticate(&self, presented: &[u8], now_unix: u64) -> Result<KeyMatch<'_>, KeyError> {
        let id: KeyId = key::parse_key(presented).ok_or(KeyError::Malformed)?;
        let entry = self.by_id.get(&id.0).ok_or(KeyError::Unknown)?;
        let hash = self.hasher.hash(presented);
        if !bool::from(hash.ct_eq(&entry.hash)) {
            return Err(KeyError::Unknown);
        }
        if entry.revoked {
            return Err(KeyError::Revoked);
        }
        if now_unix >= entry.expires {
            return Err(KeyError::Expired);
        }
        Ok(KeyMatch {
            id: &entry.id,
            consumer: &entry.consumer,
        })
    }

    /// The hasher of this store (with its server secret), for writers that make new keys in
    /// the same mode (the portal's self-service keys).
    pub(crate) fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// The hash mode this store was built with.
    pub fn mode(&self) -> HashMode {
        self.hasher.mode()
    }

    /// Number of keys (including revoked and expired ones).
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// True if the store has no keys.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

impl fmt::Debug for KeyStore {
    // Never print hashes or the HMAC key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("mode", &self.mode())
            .field("keys", &self.by_id.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(h: &Hasher, consumer: &str) -> (KeyEntry, String) {
        let (id, k) = key::generate(|_| false).unwrap();
        let e = KeyEntry {
            id,
            consumer: consumer.into(),
            hash_mode: h.mode(),
            hash: h.hash(k.as_bytes()),
            created: 1_000,
            expires: None,
            revoked: false,
        };
        (e, k)
    }

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn store_is_send_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<KeyStore>();
    }

    #[test]
    fn authenticate_ok_and_one_char_changed_is_unknown() {
        for (mode, secret) in [
            (HashMode::Sha256, None),
            (HashMode::HmacSha256, Some(SECRET)),
        ] {
            let h = Hasher::new(mode, secret).unwrap();
            let (e, k) = entry(&h, "acme");
            let (e2, k2) = entry(&h, "acme");
            let store = KeyStore::new(mode, secret, &[e.clone(), e2]).unwrap();
            let m = store.authenticate(k.as_bytes(), 2_000).unwrap();
            assert_eq!(m.id, e.id.to_string());
            assert_eq!(&**m.consumer, "acme");
            assert!(store.authenticate(k2.as_bytes(), 2_000).is_ok());
            // Change one character of the secret part, staying in the alphabet.
            let mut bad = k.clone().into_bytes();
            let last = bad.len() - 1;
            bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
            assert_eq!(
                store.authenticate(&bad, 2_000),
                Err(KeyError::Unknown),
                "{mode}"
            );
            // A valid-looking key with an id nobody has.
            let (_, other) = key::generate(|i| i == e.id).unwrap();
            assert_eq!(
                store.authenticate(other.as_bytes(), 2_000),
                Err(KeyError::Unknown)
            );
        }
    }

    #[test]
    fn malformed_inputs_fail_fast() {
        let h = Hasher::new(HashMode::Sha256, None).unwrap();
        let (e, k) = entry(&h, "acme");
        let store = KeyStore::new(HashMode::Sha256, None, &[e]).unwrap();
        let huge = vec![b'x'; 10 << 20];
        let inputs: [&[u8]; 6] = [
            b"",
            b"rwk",
            b"rwk0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefgh",
            &huge,
            &[0xff, 0xfe, 0x00, 0x80],
            &k.as_bytes()[1..],
        ];
        for i in inputs {
            assert_eq!(store.authenticate(i, 0), Err(KeyError::Malformed));
        }
        let mut non_utf8 = k.into_bytes();
        non_utf8[20] = 0xc3;
        assert_eq!(store.authenticate(&non_utf8, 0), Err(KeyError::Malformed));
    }

    #[test]
    fn hmac_secret_matters_and_modes_differ() {
        let h = Hasher::new(HashMode::HmacSha256, Some(SECRET)).unwrap();
        let (e, k) = entry(&h, "acme");
        let other = KeyStore::new(
            HashMode::HmacSha256,
            Some(b"another-secret-another-secret-xx"),
            std::slice::from_ref(&e),
        )
        .unwrap();
        assert_eq!(other.authenticate(k.as_bytes(), 0), Err(KeyError::Unknown));
        let same =
            KeyStore::new(HashMode::HmacSha256, Some(SECRET), std::slice::from_ref(&e)).unwrap();
        assert!(same.authenticate(k.as_bytes(), 0).is_ok());
        let sha = Hasher::new(HashMode::Sha256, None).unwrap();
        assert_ne!(sha.hash(k.as_bytes()), h.hash(k.as_bytes()));
        assert!(KeyStore::new(HashMode::Sha256, None, std::slice::from_ref(&e)).is_err());
        assert!(KeyStore::new(HashMode::HmacSha256, None, &[e]).is_err());
    }

    #[test]
    fn revoked_and_expired_only_after_a_hash_match() {
        let h = Hasher::new(HashMode::Sha256, None).unwrap();
        let (mut revoked, rk) = entry(&h, "a");
        revoked.revoked = true;
        let (mut expiring, ek) = entry(&h, "b");
        expiring.expires = Some(5_000);
        let store = KeyStore::new(HashMode::Sha256, None, &[revoked, expiring]).unwrap();
        assert_eq!(store.authenticate(rk.as_bytes(), 0), Err(KeyError::Revoked));
        assert!(store.authenticate(ek.as_bytes(), 4_999).is_ok());
        assert_eq!(
            store.authenticate(ek.as_bytes(), 5_000),
            Err(KeyError::Expired)
        );
        let mut wrong = rk.into_bytes();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(store.authenticate(&wrong, 0), Err(KeyError::Unknown));
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let h = Hasher::new(HashMode::Sha256, None).unwrap();
        let (e, _) = entry(&h, "a");
        assert!(KeyStore::new(HashMode::Sha256, None, &[e.clone(), e]).is_err());
    }

    #[test]
    fn debug_hides_hashes() {
        let h = Hasher::new(HashMode::Sha256, None).unwrap();
        let (e, _) = entry(&h, "a");
        let hex = key::hex(&e.hash);
        let store = KeyStore::new(HashMode::Sha256, None, &[e]).unwrap();
        let d = format!("{store:?}");
        assert!(!d.contains(&hex) && d.contains("keys: 1"), "{d}");
    }
}
