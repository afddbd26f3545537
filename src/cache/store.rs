//! The process-wide cache store every worker reads and fills.
//!
//! SEAM (lane store replaces the internals, keeps the API): a placeholder map behind one
//! mutex, no eviction.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::key::PrimaryKey;
use super::object::Object;
use super::purge::Purge;

/// Everything stored under one primary key: the `Vary` names of its responses and one object
/// per secondary key.
#[derive(Debug)]
pub struct Entry {
    pub key: Box<[u8]>,
    /// Lowercase field names the stored responses vary on.
    pub vary: Box<[Box<[u8]>]>,
    pub variants: Vec<(Box<[u8]>, Arc<Object>)>,
}

impl Entry {
    /// The object stored for `secondary` (see `vary::secondary`).
    pub fn find(&self, secondary: &[u8]) -> Option<&Arc<Object>> {
        self.variants
            .iter()
            .find(|(s, _)| &s[..] == secondary)
            .map(|(_, o)| o)
    }
}

/// The shared store (one per process, kept across reloads in `config::Runtime`).
#[derive(Debug, Default)]
pub struct Store {
    map: Mutex<ahash::AHashMap<u64, Arc<Entry>>>,
    fills: Mutex<ahash::AHashMap<(u64, Box<[u8]>), Arc<event_listener::Event>>>,
    max_bytes: std::sync::atomic::AtomicU64,
}

/// What a miss gets from `Store::fill`.
pub enum Fill {
    /// This request fetches; others wait for it until the guard drops.
    Leader(FillGuard),
    /// Another request is fetching this key: wait for it, then look up again.
    Follower(FillWait),
}

/// Held by the request that fetches a key; dropping it wakes every waiter.
pub struct FillGuard {
    store: Arc<Store>,
    key: (u64, Box<[u8]>),
    event: Arc<event_listener::Event>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        if let Ok(mut f) = self.store.fills.lock() {
            f.remove(&self.key);
        }
        self.event.notify(usize::MAX);
    }
}

/// A waiter on another request's fetch.
pub struct FillWait {
    listener: event_listener::EventListener,
}

impl FillWait {
    /// Waits until the fetch ends (`true`) or `deadline` passes (`false`).
    pub async fn wait(self, deadline: Instant) -> bool {
        monoio::time::timeout_at(deadline.into(), self.listener)
            .await
            .is_ok()
    }
}

impl Store {
    pub fn new(max_bytes: u64) -> Store {
        let s = Store::default();
        s.set_max_bytes(max_bytes);
        s
    }

    /// Changes the byte bound (a reload), evicting down to it.
    pub fn set_max_bytes(&self, n: u64) {
        self.max_bytes
            .store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// The entry for `key`, if any (its text is compared, not just its hash).
    pub fn get(&self, key: &PrimaryKey) -> Option<Arc<Entry>> {
        let map = self.map.lock().ok()?;
        map.get(&key.hash).filter(|e| e.key == key.text).cloned()
    }

    /// Stores `obj` as the variant `secondary` of `key`, whose responses vary on `vary`. A
    /// different `vary` list replaces the entry's other variants.
    pub fn put(
        &self,
        key: &PrimaryKey,
        vary: Box<[Box<[u8]>]>,
        secondary: Box<[u8]>,
        obj: Arc<Object>,
    ) {
        let Ok(mut map) = self.map.lock() else { return };
        let mut variants = Vec::new();
        if let Some(old) = map.get(&key.hash) {
            if old.key == key.text && old.vary == vary {
                variants = old
                    .variants
                    .iter()
                    .filter(|(s, _)| *s != secondary)
                    .cloned()
                    .collect();
            }
        }
        variants.push((secondary, obj));
        map.insert(
            key.hash,
            Arc::new(Entry {
                key: key.text.clone(),
                vary,
                variants,
            }),
        );
    }

    /// Drops the variant `secondary` of `key` (an upstream said it is gone or not storable).
    pub fn remove(&self, key: &PrimaryKey) {
        if let Ok(mut map) = self.map.lock() {
            if map.get(&key.hash).is_some_and(|e| e.key == key.text) {
                map.remove(&key.hash);
            }
        }
    }

    /// Drops what `p` names; returns how many objects went.
    pub fn purge(&self, p: &Purge) -> u64 {
        let Ok(mut map) = self.map.lock() else {
            return 0;
        };
        let before: usize = map.values().map(|e| e.variants.len()).sum();
        map.retain(|_, e| !e.variants.iter().any(|(_, o)| p.matches(o)));
        let after: usize = map.values().map(|e| e.variants.len()).sum();
        (before - after) as u64
    }

    /// Coalescing: the first miss for (`key`, `secondary`) leads, the rest follow.
    pub fn fill(self: &Arc<Self>, key: &PrimaryKey, secondary: &[u8]) -> Fill {
        let k = (key.hash, Box::<[u8]>::from(secondary));
        let Ok(mut fills) = self.fills.lock() else {
            let event = Arc::new(event_listener::Event::new());
            return Fill::Leader(FillGuard {
                store: self.clone(),
                key: k,
                event,
            });
        };
        if let Some(ev) = fills.get(&k) {
            return Fill::Follower(FillWait {
                listener: ev.listen(),
            });
        }
        let event = Arc::new(event_listener::Event::new());
        fills.insert(k.clone(), event.clone());
        Fill::Leader(FillGuard {
            store: self.clone(),
            key: k,
            event,
        })
    }
}
