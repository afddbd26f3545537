//! `TokenCache`: a per-core cache of verified tokens, so a repeated token skips signature
//! verification (the expensive part: tens of microseconds for RSA).
//!
//! Invariants:
//! - One per worker, never shared (`!Sync` is fine; the worker keeps it in a `RefCell`).
//! - Bounded: at most `capacity` entries; inserting into a full cache evicts the oldest.
//! - A hit is exact: the entry stores the whole token and the policy id, compared byte for
//!   byte, so a 64-bit hash collision is a miss, never a wrong answer.
//! - A cached token never outlives its validity: `exp`/`nbf` are re-checked against `now` on
//!   every hit, entries are re-verified after `MAX_TTL_SECS` or once the token's `exp` (plus
//!   leeway) passes, and an entry made under another JWKS generation is re-verified too.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::claims::{check_time, Verified};
use super::error::JwtError;

/// Tokens longer than this are verified but not cached (bounds the cache's memory).
const MAX_CACHED_TOKEN: usize = 4096;
/// Longest an entry is trusted without re-verification, for tokens without `exp`.
const MAX_TTL_SECS: u64 = 300;

struct Entry {
    policy: u64,
    keys_generation: u64,
    seq: u64,
    token: Box<[u8]>,
    fresh_until: u64,
    verified: Arc<Verified>,
}

/// Outcome of a cache lookup.
pub(crate) enum Lookup {
    Hit(Arc<Verified>),
    /// The cached token is no longer (or not yet) valid at `now`.
    Rejected(JwtError),
    Miss,
}

/// Per-core cache of verified tokens; see the module header.
pub struct TokenCache {
    map: HashMap<u64, Entry>,
    /// Insertion order as `(hash, seq)`; an item is live when the entry's `seq` matches.
    order: VecDeque<(u64, u64)>,
    capacity: usize,
    hasher: ahash::RandomState,
    next_seq: u64,
    hits: u64,
    misses: u64,
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            map: HashMap::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::new(),
            capacity,
            hasher: ahash::RandomState::new(),
            next_seq: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// Entries currently held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that had to verify.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Drops every entry.
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    fn key(&self, policy: u64, token: &[u8]) -> u64 {
        self.hasher.hash_one((policy, token))
    }

    pub(crate) fn lookup(
        &mut self,
        policy: u64,
        keys_generation: u64,
        token: &[u8],
        now: u64,
        leeway: u64,
    ) -> Lookup {
        if self.capacity == 0 || token.len() > MAX_CACHED_TOKEN {
            return Lookup::Miss;
        }
        let h = self.key(policy, token);
        let Some(e) = self.map.get(&h) else {
            self.misses += 1;
            return Lookup::Miss;
        };
        if e.policy != policy || *e.token != *token {
            self.misses += 1;
            return Lookup::Miss;
        }
        if let Err(err) = check_time(e.verified.exp, e.verified.nbf, now, leeway) {
            self.map.remove(&h);
            return Lookup::Rejected(err);
        }
        if e.keys_generation != keys_generation || now > e.fresh_until {
            self.map.remove(&h);
            self.misses += 1;
            return Lookup::Miss;
        }
        self.hits += 1;
        Lookup::Hit(e.verified.clone())
    }

    pub(crate) fn insert(
        &mut self,
        policy: u64,
        keys_generation: u64,
        token: &[u8],
        verified: Arc<Verified>,
        now: u64,
        leeway: u64,
    ) {
        if self.capacity == 0 || token.len() > MAX_CACHED_TOKEN {
            return;
        }
        let mut fresh_until = now.saturating_add(MAX_TTL_SECS);
        if let Some(exp) = verified.exp {
            fresh_until = fresh_until.min(exp.saturating_add(leeway));
        }
        let h = self.key(policy, token);
        let seq = self.next_seq;
        self.next_seq += 1;
        if !self.map.contains_key(&h) {
            while self.map.len() >= self.capacity {
                let Some((old, old_seq)) = self.order.pop_front() else {
                    break;
                };
                if self.map.get(&old).is_some_and(|e| e.seq == old_seq) {
                    self.map.remove(&old);
                }
            }
        }
        self.map.insert(
            h,
            Entry {
                policy,
                keys_generation,
                seq,
                token: token.into(),
                fresh_until,
                verified,
            },
        );
        self.order.push_back((h, seq));
        // Replaced and removed entries leave dead order items; drop them before they pile up.
        if self.order.len() > 2 * self.capacity + 16 {
            let map = &self.map;
            self.order
                .retain(|(h, s)| map.get(h).is_some_and(|e| e.seq == *s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(exp: Option<u64>) -> Arc<Verified> {
        Arc::new(Verified {
            consumer: None,
            scopes: Vec::new(),
            headers: Vec::new(),
            claims: serde_json::Map::new(),
            exp,
            nbf: None,
        })
    }

    #[test]
    fn bounded_and_oldest_evicted() {
        let mut c = TokenCache::new(8);
        for i in 0..100u32 {
            c.insert(1, 0, &i.to_be_bytes(), verified(None), 1000, 0);
            assert!(c.len() <= 8);
            assert!(c.order.len() <= 2 * 8 + 16);
        }
        assert_eq!(c.len(), 8);
        assert!(matches!(
            c.lookup(1, 0, &99u32.to_be_bytes(), 1000, 0),
            Lookup::Hit(_)
        ));
        assert!(matches!(
            c.lookup(1, 0, &0u32.to_be_bytes(), 1000, 0),
            Lookup::Miss
        ));
        // Re-inserting the same token repeatedly must not grow the order queue without bound.
        for _ in 0..1000 {
            c.insert(1, 0, b"same", verified(None), 1000, 0);
        }
        assert!(c.order.len() <= 2 * 8 + 16);
        assert_eq!(c.len(), 8);
    }

    #[test]
    fn entries_are_per_policy_generation_and_time() {
        let mut c = TokenCache::new(16);
        c.insert(1, 5, b"tok", verified(Some(1200)), 1000, 10);
        assert!(matches!(c.lookup(2, 5, b"tok", 1000, 10), Lookup::Miss));
        assert!(matches!(c.lookup(1, 5, b"tok", 1209, 10), Lookup::Hit(_)));
        assert!(matches!(
            c.lookup(1, 5, b"tok", 1210, 10),
            Lookup::Rejected(JwtError::Expired)
        ));
        assert!(c.is_empty());
        c.insert(1, 5, b"tok", verified(None), 1000, 10);
        assert!(matches!(c.lookup(1, 6, b"tok", 1000, 10), Lookup::Miss));
        c.insert(1, 5, b"tok", verified(None), 1000, 10);
        assert!(matches!(
            c.lookup(1, 5, b"tok", 1000 + MAX_TTL_SECS + 1, 10),
            Lookup::Miss
        ));
        let mut off = TokenCache::new(0);
        off.insert(1, 0, b"tok", verified(None), 1000, 0);
        assert!(off.is_empty());
    }
}
