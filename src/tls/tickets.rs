//! Session-ticket keys shared by every worker: a `rustls::server::ProducesTickets` whose key
//! set is an immutable snapshot (`current` + `previous`) swapped with `ArcSwap`, so a ticket
//! issued on worker 0 resumes on worker 1 and no lock is taken on the handshake path.
//!
//! Invariants: tickets are encrypted with `current` and decrypted with either key; a key lives
//! two rotation periods at most. Rotation is lazy: whichever thread first notices the snapshot
//! is due builds the next one and installs it with a compare-and-swap (a loser simply uses the
//! winner's snapshot). Ticket layout: key name (16 random bytes) ‖ nonce (12) ‖ AES-256-GCM
//! ciphertext and tag; the nonce is a random 4-byte prefix per key plus a per-key counter, so it
//! never repeats under one key. A ticket that fails any check decrypts to `None`.
//!
//! `shared()` hands out one ticketer per identity (listener, rotation period, client-auth
//! fingerprint) for the process lifetime, so reloads keep the keys and clients keep resuming;
//! the registry's lock is only taken by config compiles on the control thread.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

const NAME_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// Largest ticket accepted for decryption (rustls's own plaintexts are a few hundred bytes).
const MAX_TICKET: usize = 16 * 1024;

/// One ticket key: its public name, AEAD key, nonce prefix and counter.
struct TicketKey {
    name: [u8; NAME_LEN],
    aead: LessSafeKey,
    nonce_prefix: [u8; 4],
    counter: AtomicU64,
}

impl TicketKey {
    fn generate(rng: &SystemRandom) -> Option<TicketKey> {
        let mut secret = [0u8; 32];
        let mut name = [0u8; NAME_LEN];
        let mut nonce_prefix = [0u8; 4];
        rng.fill(&mut secret).ok()?;
        rng.fill(&mut name).ok()?;
        rng.fill(&mut nonce_prefix).ok()?;
        let key = UnboundKey::new(&AES_256_GCM, &secret).ok()?;
        Some(TicketKey {
            name,
            aead: LessSafeKey::new(key),
            nonce_prefix,
            counter: AtomicU64::new(0),
        })
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        if n == u64::MAX {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.nonce_prefix);
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        let mut out = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        let aad = Aad::from(&self.name);
        self.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), aad, &mut body)
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    /// `sealed` is nonce ‖ ciphertext ‖ tag (the name already matched).
    fn decrypt(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, body) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(&self.name), &mut body)
            .ok()?;
        let len = plain.len();
        body.truncate(len);
        Some(body)
    }
}

/// An immutable key set: encrypt with `current`, decrypt with either.
struct KeySet {
    current: TicketKey,
    previous: Option<TicketKey>,
    /// When `current` becomes `previous`.
    rotate_at: Instant,
}

impl KeySet {
    fn key_named(&self, name: &[u8]) -> Option<&TicketKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.name[..] == *name)
    }
}

/// Process-wide rotating ticket keys (see the module header).
pub struct Ticketer {
    keys: ArcSwap<KeySet>,
    period: Duration,
    rng: SystemRandom,
}

impl std::fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticketer")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Ticketer {
    /// A ticketer with fresh keys rotating every `period` (at least one second). `None` only if
    /// the system random source fails.
    pub fn new(period: Duration) -> Option<Ticketer> {
        let period = period.max(Duration::from_secs(1));
        let rng = SystemRandom::new();
        let current = TicketKey::generate(&rng)?;
        let set = KeySet {
            current,
            previous: None,
            rotate_at: Instant::now() + period,
        };
        Some(Ticketer {
            keys: ArcSwap::from_pointee(set),
            period,
            rng,
        })
    }

    /// The key set valid at `now`, rotating first if it is due.
    fn keys_at(&self, now: Instant) -> arc_swap::Guard<Arc<KeySet>> {
        let set = self.keys.load();
        if now < set.rotate_at {
            return set;
        }
        let Some(fresh) = TicketKey::generate(&self.rng) else {
            return set;
        };
        // Unused for two periods or more: the old current key is past its life too.
        let keep_previous = now < set.rotate_at + self.period;
        let next = Arc::new(KeySet {
            previous: keep_previous.then(|| self.clone_key(&set.current)),
            current: fresh,
            rotate_at: now + self.period,
        });
        let seen = Arc::clone(&*set);
        drop(set);
        // Whoever wins the swap installs its set; everyone then reads the winner's.
        let _ = self.keys.compare_and_swap(&seen, next);
        self.keys.load()
    }

    /// The same key (name, secret, nonce prefix) for the next snapshot; it only decrypts from
    /// then on, so its counter no longer matters but is carried anyway.
    fn clone_key(&self, k: &TicketKey) -> TicketKey {
        TicketKey {
            name: k.name,
            aead: k.aead.clone(),
            nonce_prefix: k.nonce_prefix,
            counter: AtomicU64::new(k.counter.load(Ordering::Relaxed)),
        }
    }

    fn encrypt_at(&self, plain: &[u8], now: Instant) -> Option<Vec<u8>> {
        self.keys_at(now).current.encrypt(plain)
    }

    fn decrypt_at(&self, cipher: &[u8], now: Instant) -> Option<Vec<u8>> {
        if cipher.len() > MAX_TICKET {
            return None;
        }
        let (name, sealed) = cipher.split_at_checked(NAME_LEN)?;
        self.keys_at(now).key_named(name)?.decrypt(sealed)
    }
}

impl rustls::server::ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.period.as_secs()).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.encrypt_at(plain, Instant::now())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.decrypt_at(cipher, Instant::now())
    }
}

type Registry = Mutex<HashMap<String, Weak<Ticketer>>>;

/// The process-wide ticketer for `identity` rotating every `period`: the same one for as long
/// as any config generation uses it (so reloads keep resuming), a new one otherwise. Called on
/// the control thread while compiling; `None` only if the random source fails.
pub fn shared(identity: &str, period: Duration) -> Option<Arc<Ticketer>> {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(Registry::default);
    let mut map = registry.lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    let key = format!("{identity}|{}", period.as_millis());
    if let Some(t) = map.get(&key).and_then(Weak::upgrade) {
        return Some(t);
    }
    let t = Arc::new(Ticketer::new(period)?);
    map.insert(key, Arc::downgrade(&t));
    Some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Duration = Duration::from_secs(60);

    #[test]
    fn round_trip_and_distinct_nonces() {
        let t = Ticketer::new(P).unwrap();
        let now = Instant::now();
        let a = t.encrypt_at(b"session state", now).unwrap();
        let b = t.encrypt_at(b"session state", now).unwrap();
        assert_ne!(a, b, "same plaintext must not give the same ticket");
        assert_eq!(t.decrypt_at(&a, now).unwrap(), b"session state");
        assert_eq!(t.decrypt_at(&b, now).unwrap(), b"session state");
    }

    #[test]
    fn tampered_truncated_or_foreign_tickets_fail() {
        let t = Ticketer::new(P).unwrap();
        let now = Instant::now();
        let good = t.encrypt_at(b"abc", now).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(t.decrypt_at(&bad, now).is_none(), "flipped byte {i}");
        }
        for n in 0..good.len() {
            assert!(t.decrypt_at(&good[..n], now).is_none(), "truncated to {n}");
        }
        let other = Ticketer::new(P).unwrap();
        assert!(other.decrypt_at(&good, now).is_none());
        assert!(t.decrypt_at(&vec![0u8; MAX_TICKET + 1], now).is_none());
    }

    #[test]
    fn rotation_keeps_previous_for_one_period() {
        let t = Ticketer::new(P).unwrap();
        let t0 = Instant::now();
        let old = t.encrypt_at(b"x", t0).unwrap();
        // One rotation: the old key still decrypts, new tickets use a new key name.
        let t1 = t0 + P + Duration::from_secs(1);
        let new = t.encrypt_at(b"y", t1).unwrap();
        assert_ne!(old[..NAME_LEN], new[..NAME_LEN]);
        assert_eq!(t.decrypt_at(&old, t1).unwrap(), b"x");
        // A second rotation retires it.
        let t2 = t1 + P + Duration::from_secs(1);
        assert!(t.decrypt_at(&old, t2).is_none());
        assert_eq!(t.decrypt_at(&new, t2).unwrap(), b"y");
    }

    #[test]
    fn long_idle_drops_both_keys() {
        let t = Ticketer::new(P).unwrap();
        let t0 = Instant::now();
        let old = t.encrypt_at(b"x", t0).unwrap();
        assert!(t.decrypt_at(&old, t0 + 3 * P).is_none());
    }

    #[test]
    fn rotation_from_many_threads_agrees() {
        let t = Arc::new(Ticketer::new(P).unwrap());
        let later = Instant::now() + P + Duration::from_secs(1);
        let tickets: Vec<Vec<u8>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| t.encrypt_at(b"z", later).unwrap()))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for tk in &tickets {
            assert_eq!(t.decrypt_at(tk, later).unwrap(), b"z");
        }
    }

    #[test]
    fn shared_returns_the_same_ticketer_while_used() {
        let a = shared("test-listener", P).unwrap();
        let b = shared("test-listener", P).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = shared("test-listener", 2 * P).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
