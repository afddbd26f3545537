//! The process-wide cache store every worker reads and fills: a sharded map with a byte bound,
//! S3-FIFO eviction, purge, and the fill locks that coalesce concurrent misses.
//!
//! Shape: [`SHARDS`] shards chosen by the primary key's hash, each an `RwLock` over its map,
//! its two FIFO queues and its ghost list. A lookup takes one shard's read lock (bumping the
//! entry's 2-bit frequency with a relaxed atomic); a store, remove or eviction takes one
//! shard's write lock. No lock is global, none is held across an await, and objects evicted or
//! replaced are dropped after the lock is released (freeing a large body never stalls readers).
//!
//! Byte bound: one total for the store (an atomic each shard's change is applied to under
//! that shard's lock; only stores, evictions and purges touch it, never a lookup); a store
//! that takes the total over `max_bytes` first evicts from its own shard (whose lock it holds)
//! while that shard is over its fair share (`max_bytes / SHARDS`), then from the others in
//! turn, largest-first in effect (shards over their share before the rest), one lock at a
//! time. So shards need not be equal in size, and an object is limited only by `max_bytes / 8` (one answer may
//! not flush most of the store). Concurrent stores may overshoot the bound by the entries they
//! are inserting at that instant, never more; each store ends with the total within it. An
//! entry weighs its key, its `Vary` names, each variant's secondary key and `Object::weight`
//! (head, body, validators, tags, resource) plus a fixed overhead for its slot and queue records.
//!
//! Eviction: S3-FIFO (Yang et al., SOSP 2023) per shard, chosen over TinyLFU and CLOCK-Pro
//! because it is frequency-aware where it matters for a web cache (a stream of one-hit
//! wonders - crawlers, unique query strings - passes through the small queue and never pushes
//! out the hot set in the main queue), needs only a 2-bit counter per entry that readers bump
//! under a read lock, and its FIFO queues make every operation O(1) amortized with no sketch
//! to size or reset. New keys enter the small queue (10% of the shard); a key evicted from it
//! unread is remembered in the ghost list (hashes only), and a key that comes back while
//! remembered, or was read while in the small queue, goes to the main queue, which evicts
//! CLOCK-style (a read entry gets another round).
//!
//! Variants: one primary key holds at most [`MAX_VARIANTS`] secondary keys (stale ones are
//! dropped first, then the oldest), so `Vary` on a header a client controls cannot grow one
//! entry without limit.
//!
//! Purge: a scan of every shard (one write lock at a time), O(entries) - about a millisecond
//! per 100k entries; purges are rare admin actions, so no tag or prefix index costs memory and
//! a write on every store. The count returned is the number of objects (variants) dropped.
//!
//! Coalescing: the fill locks live in the shards too; a follower waits on an
//! `event_listener::Event`, which wakes waiters on any thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use ahash::{AHashMap, AHashSet};

use super::key::PrimaryKey;
use super::object::Object;
use super::purge::Purge;
pub use super::stats::StoreStats;

/// Number of shards (a power of two: the shard is `hash >> (64 - SHARD_BITS)`).
pub const SHARDS: usize = 64;
const SHARD_BITS: u32 = 6;
/// Most variants (secondary keys) kept under one primary key.
pub const MAX_VARIANTS: usize = 32;
/// Bytes counted per entry beyond its data: the slot, the map and queue records, the `Arc`.
const ENTRY_OVERHEAD: usize = 160;
/// Bytes counted per variant beyond its object: the `(secondary, Arc)` pair.
const VARIANT_OVERHEAD: usize = 48;
/// Highest value of the per-entry read counter.
const MAX_FREQ: u8 = 3;
/// One entry may hold at most this fraction of `max_bytes` (1/8).
const MAX_ENTRY_SHARE: u64 = 8;
/// Least ghost-list length per shard (it is otherwise as long as the shard holds entries).
const MIN_GHOSTS: usize = 64;

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

    /// Whether any variant is stale at `now` (a new variant may then take its slot).
    pub fn has_stale(&self, now: Instant) -> bool {
        self.variants
            .iter()
            .any(|(_, o)| o.stale_for(now).is_some())
    }

    /// Bytes this entry is counted as.
    fn weight(&self) -> usize {
        ENTRY_OVERHEAD
            + self.key.len()
            + self.vary.iter().map(|v| v.len() + 16).sum::<usize>()
            + self
                .variants
                .iter()
                .map(|(s, o)| VARIANT_OVERHEAD + s.len() + o.weight())
                .sum::<usize>()
    }
}

/// Which queue an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Queue {
    Small,
    Main,
}

/// One stored entry with its eviction state.
#[derive(Debug)]
struct Slot {
    entry: Arc<Entry>,
    weight: usize,
    /// Reads since it was queued (saturating at `MAX_FREQ`); bumped under the read lock.
    freq: AtomicU8,
    queue: Queue,
    /// Matches the queue record that is current for this slot (older records are skipped).
    stamp: u64,
}

/// One shard: its map, its S3-FIFO queues and its ghost list.
#[derive(Debug, Default)]
struct Shard {
    map: AHashMap<u64, Slot>,
    /// `(hash, stamp)` records, oldest first; a record whose stamp no longer matches its slot
    /// (removed, purged, requeued) is skipped.
    small: VecDeque<(u64, u64)>,
    main: VecDeque<(u64, u64)>,
    small_bytes: usize,
    bytes: usize,
    objects: usize,
    ghost: VecDeque<u64>,
    ghost_set: AHashSet<u64>,
    next_stamp: u64,
    evictions: u64,
}

impl Shard {
    fn stamp(&mut self) -> u64 {
        self.next_stamp += 1;
        self.next_stamp
    }

    /// Takes the slot under `hash` out of the map and the byte counts (its queue record goes
    /// stale).
    fn take(&mut self, hash: u64) -> Option<Slot> {
        let slot = self.map.remove(&hash)?;
        self.bytes -= slot.weight;
        self.objects -= slot.entry.variants.len();
        if slot.queue == Queue::Small {
            self.small_bytes -= slot.weight;
        }
        Some(slot)
    }

    /// Puts `slot` under `hash` into the map and the queue it names.
    fn insert(&mut self, hash: u64, mut slot: Slot) {
        slot.stamp = self.stamp();
        let rec = (hash, slot.stamp);
        match slot.queue {
            Queue::Small => {
                self.small.push_back(rec);
                self.small_bytes += slot.weight;
            }
            Queue::Main => self.main.push_back(rec),
        }
        self.bytes += slot.weight;
        self.objects += slot.entry.variants.len();
        self.map.insert(hash, slot);
        self.compact();
    }

    /// Remembers an evicted, never-read key (hash only).
    fn remember(&mut self, hash: u64) {
        if !self.ghost_set.insert(hash) {
            return;
        }
        self.ghost.push_back(hash);
        let cap = self.map.len().max(MIN_GHOSTS);
        while self.ghost.len() > cap {
            if let Some(old) = self.ghost.pop_front() {
                self.ghost_set.remove(&old);
            }
        }
    }

    /// Drops stale queue records once they outnumber the live ones (removes and purges leave
    /// them behind), so the queues stay proportional to the entries.
    fn compact(&mut self) {
        let live = self.map.len();
        if self.small.len() + self.main.len() <= 2 * live + 64 {
            return;
        }
        let map = &self.map;
        let current = |&(h, s): &(u64, u64)| map.get(&h).is_some_and(|x| x.stamp == s);
        self.small.retain(current);
        self.main.retain(current);
    }

    /// Evicts one entry (S3-FIFO); `false` when the shard is empty. Evicted entries go to
    /// `dropped` so they are freed after the lock is released.
    fn evict_one(&mut self, dropped: &mut Vec<Arc<Entry>>) -> bool {
        // The small queue is drained first while it is over its tenth, or the main is empty.
        loop {
            let from_small = !self.small.is_empty()
                && (self.small_bytes > self.bytes / 10 || self.main.is_empty());
            let rec = if from_small {
                self.small.pop_front()
            } else {
                self.main.pop_front()
            };
            let Some((hash, stamp)) = rec else {
                return false;
            };
            let Some(slot) = self.map.get(&hash) else {
                continue;
            };
            if slot.stamp != stamp {
                continue;
            }
            let freq = slot.freq.load(Relaxed);
            if from_small {
                if freq > 0 {
                    // Read while new: promoted to the main queue.
                    if let Some(mut s) = self.take(hash) {
                        s.queue = Queue::Main;
                        s.freq.store(0, Relaxed);
                        self.insert(hash, s);
                    }
                    continue;
                }
                if let Some(s) = self.take(hash) {
                    self.evictions += s.entry.variants.len() as u64;
                    dropped.push(s.entry);
                }
                self.remember(hash);
                return true;
            }
            if freq > 0 {
                // Read since its last round: one more round in the main queue.
                if let Some(s) = self.take(hash) {
                    s.freq.store(freq - 1, Relaxed);
                    self.insert(hash, s);
                }
                continue;
            }
            if let Some(s) = self.take(hash) {
                self.evictions += s.entry.variants.len() as u64;
                dropped.push(s.entry);
            }
            return true;
        }
    }
}

/// A fill lock's key: the primary key's hash and the secondary key (or a revalidation's).
type FillKey = (u64, Box<[u8]>);

/// A shard's lock plus its fill locks (coalescing).
#[derive(Debug, Default)]
struct ShardCell {
    data: RwLock<Shard>,
    fills: Mutex<AHashMap<FillKey, Arc<event_listener::Event>>>,
}

/// The shared store (one per process, kept across reloads in `config::Runtime`).
#[derive(Debug)]
pub struct Store {
    shards: Box<[ShardCell]>,
    max_bytes: AtomicU64,
    /// Bytes held by every shard together (each shard's change applied under its lock).
    bytes: AtomicU64,
    /// Next shard to evict from when a store or a smaller bound needs room beyond one shard.
    cursor: AtomicUsize,
    purged: AtomicU64,
    too_large: AtomicU64,
}

impl Default for Store {
    fn default() -> Store {
        Store::new(super::settings::DEFAULT_MAX_BYTES)
    }
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
    key: FillKey,
    event: Arc<event_listener::Event>,
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        let cell = self.store.cell(self.key.0);
        if let Ok(mut f) = cell.fills.lock() {
            // Only our own record (a poisoned-then-recovered map may hold another's).
            if f.get(&self.key)
                .is_some_and(|e| Arc::ptr_eq(e, &self.event))
            {
                f.remove(&self.key);
            }
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
        super::stats::record_coalesced();
        monoio::time::timeout_at(deadline.into(), self.listener)
            .await
            .is_ok()
    }
}

/// A poisoned lock only means another thread panicked mid-update; the shard's data is still
/// consistent enough to serve or evict (every update finishes before its next `?`).
fn write(cell: &ShardCell) -> std::sync::RwLockWriteGuard<'_, Shard> {
    cell.data.write().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    /// An empty store bounded to `max_bytes`.
    pub fn new(max_bytes: u64) -> Store {
        Store {
            shards: (0..SHARDS).map(|_| ShardCell::default()).collect(),
            max_bytes: AtomicU64::new(max_bytes),
            bytes: AtomicU64::new(0),
            cursor: AtomicUsize::new(0),
            purged: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
        }
    }

    fn cell(&self, hash: u64) -> &ShardCell {
        &self.shards[(hash >> (64 - SHARD_BITS)) as usize]
    }

    /// The largest entry stored (bytes): one answer may not flush most of the store.
    fn max_entry(&self) -> usize {
        usize::try_from(self.max_bytes.load(Relaxed) / MAX_ENTRY_SHARE).unwrap_or(usize::MAX)
    }

    /// Whether `extra` more bytes would take the store over its bound.
    fn over(&self, extra: usize) -> bool {
        self.bytes.load(Relaxed) + extra as u64 > self.max_bytes.load(Relaxed)
    }

    /// Applies one shard's byte count change (`before` → `after`) to the store's total.
    fn account(&self, before: usize, after: usize) {
        if after >= before {
            self.bytes.fetch_add((after - before) as u64, Relaxed);
        } else {
            self.bytes.fetch_sub((before - after) as u64, Relaxed);
        }
    }

    /// A shard's fair share of the bound.
    fn fair_share(&self) -> usize {
        usize::try_from(self.max_bytes.load(Relaxed) / SHARDS as u64).unwrap_or(usize::MAX)
    }

    /// Evicts from `shard` (locked by the caller) while `extra` more bytes do not fit and the
    /// shard holds more than its fair share (a small shard is not emptied for a big one).
    fn evict_from(&self, shard: &mut Shard, extra: usize, dropped: &mut Vec<Arc<Entry>>) {
        let fair = self.fair_share();
        while self.over(extra) && shard.bytes + extra > fair {
            let before = shard.bytes;
            let evicted = shard.evict_one(dropped);
            self.account(before, shard.bytes);
            if !evicted {
                return;
            }
        }
    }

    /// Evicts one entry at a time from the shards in turn (one lock at a time, never two)
    /// until the store is within its bound: first only from shards over their fair share;
    /// after a whole round without one, from any shard; ends when every shard is empty.
    fn evict_round(&self) {
        let fair = self.fair_share();
        let mut idle = 0;
        while self.over(0) && idle < 2 * SHARDS {
            let i = self.cursor.fetch_add(1, Relaxed) % SHARDS;
            let mut dropped = Vec::new();
            {
                let mut shard = write(&self.shards[i]);
                let before = shard.bytes;
                let evicted =
                    (shard.bytes > fair || idle >= SHARDS) && shard.evict_one(&mut dropped);
                self.account(before, shard.bytes);
                idle = if evicted { 0 } else { idle + 1 };
            }
            drop(dropped);
        }
    }

    /// Changes the byte bound (a reload), evicting down to it.
    pub fn set_max_bytes(&self, n: u64) {
        self.max_bytes.store(n, Relaxed);
        self.evict_round();
    }

    /// The entry for `key`, if any (its text is compared, not just its hash).
    pub fn get(&self, key: &PrimaryKey) -> Option<Arc<Entry>> {
        let shard = self
            .cell(key.hash)
            .data
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let slot = shard.map.get(&key.hash)?;
        if slot.entry.key != key.text {
            return None;
        }
        let f = slot.freq.load(Relaxed);
        if f < MAX_FREQ {
            // A lost update between two readers only loses one count: fine for eviction.
            slot.freq.store(f + 1, Relaxed);
        }
        Some(slot.entry.clone())
    }

    /// Stores `obj` as the variant `secondary` of `key`, whose responses vary on `vary`. A
    /// different `vary` list replaces the entry's other variants; past [`MAX_VARIANTS`] the
    /// oldest variant goes.
    pub fn put(
        &self,
        key: &PrimaryKey,
        vary: Box<[Box<[u8]>]>,
        secondary: Box<[u8]>,
        obj: Arc<Object>,
    ) {
        let max_entry = self.max_entry();
        let cell = self.cell(key.hash);
        let mut dropped = Vec::new();
        {
            let mut shard = write(cell);
            let before = shard.bytes;
            let old = shard.take(key.hash);
            self.account(before, shard.bytes);
            let mut variants = Vec::new();
            let (mut queue, mut freq) = (None, 0);
            if let Some(old) = &old {
                if old.entry.key == key.text {
                    queue = Some(old.queue);
                    freq = old.freq.load(Relaxed);
                    if old.entry.vary == vary {
                        variants = old
                            .entry
                            .variants
                            .iter()
                            .filter(|(s, _)| *s != secondary)
                            .cloned()
                            .collect();
                    }
                }
            }
            if variants.len() >= MAX_VARIANTS {
                // Stale variants go first, so a burst of variants nobody asks for again cannot
                // hold the key's slots once it has gone stale.
                let now = Instant::now();
                variants.retain(|(_, o)| o.stale_for(now).is_none());
            }
            if variants.len() >= MAX_VARIANTS {
                let extra = variants.len() + 1 - MAX_VARIANTS;
                variants.drain(..extra);
            }
            variants.push((secondary, obj));
            let entry = Arc::new(Entry {
                key: key.text.clone(),
                vary,
                variants,
            });
            let weight = entry.weight();
            if let Some(old) = old {
                dropped.push(old.entry);
            }
            if weight > max_entry {
                self.too_large.fetch_add(1, Relaxed);
            } else {
                // Room is made in this key's own shard first (its lock is held anyway);
                // `evict_round` below takes what this shard could not give.
                self.evict_from(&mut shard, weight, &mut dropped);
                // A key the ghost list remembers proved it comes back: straight to main.
                let queue = queue.unwrap_or_else(|| {
                    if shard.ghost_set.remove(&key.hash) {
                        Queue::Main
                    } else {
                        Queue::Small
                    }
                });
                let slot = Slot {
                    entry,
                    weight,
                    freq: AtomicU8::new(freq),
                    queue,
                    stamp: 0,
                };
                let before = shard.bytes;
                shard.insert(key.hash, slot);
                self.account(before, shard.bytes);
            }
        }
        drop(dropped);
        self.evict_round();
    }

    /// Drops every variant of `key` (an upstream said it is gone or not storable).
    pub fn remove(&self, key: &PrimaryKey) {
        let cell = self.cell(key.hash);
        let gone = {
            let mut shard = write(cell);
            if shard
                .map
                .get(&key.hash)
                .is_some_and(|s| s.entry.key == key.text)
            {
                let before = shard.bytes;
                let gone = shard.take(key.hash);
                self.account(before, shard.bytes);
                gone
            } else {
                None
            }
        };
        drop(gone);
    }

    /// Drops what `p` names; returns how many objects went. Every shard has been scanned when
    /// this returns, so no worker serves a purged object afterwards.
    pub fn purge(&self, p: &Purge) -> u64 {
        let mut n = 0u64;
        for cell in self.shards.iter() {
            let mut dropped = Vec::new();
            {
                let mut shard = write(cell);
                let before = shard.bytes;
                let hit: Vec<u64> = shard
                    .map
                    .iter()
                    .filter(|(_, s)| s.entry.variants.iter().any(|(_, o)| p.matches(o)))
                    .map(|(h, _)| *h)
                    .collect();
                for h in hit {
                    let Some(slot) = shard.take(h) else { continue };
                    let keep: Vec<_> = slot
                        .entry
                        .variants
                        .iter()
                        .filter(|(_, o)| !p.matches(o))
                        .cloned()
                        .collect();
                    n += (slot.entry.variants.len() - keep.len()) as u64;
                    if !keep.is_empty() {
                        let entry = Arc::new(Entry {
                            key: slot.entry.key.clone(),
                            vary: slot.entry.vary.clone(),
                            variants: keep,
                        });
                        let rest = Slot {
                            weight: entry.weight(),
                            entry,
                            freq: AtomicU8::new(slot.freq.load(Relaxed)),
                            queue: slot.queue,
                            stamp: 0,
                        };
                        shard.insert(h, rest);
                    }
                    dropped.push(slot.entry);
                }
                shard.compact();
                self.account(before, shard.bytes);
            }
            drop(dropped);
        }
        self.purged.fetch_add(n, Relaxed);
        n
    }

    /// Totals across the shards (one read lock at a time).
    pub fn stats(&self) -> StoreStats {
        let mut s = StoreStats {
            max_bytes: self.max_bytes.load(Relaxed),
            purged: self.purged.load(Relaxed),
            too_large: self.too_large.load(Relaxed),
            ..StoreStats::default()
        };
        for cell in self.shards.iter() {
            let shard = cell.data.read().unwrap_or_else(|p| p.into_inner());
            s.bytes += shard.bytes as u64;
            s.objects += shard.objects as u64;
            s.entries += shard.map.len() as u64;
            s.evictions += shard.evictions;
        }
        s
    }

    /// Coalescing: the first miss for (`key`, `secondary`) leads, the rest follow.
    pub fn fill(self: &Arc<Self>, key: &PrimaryKey, secondary: &[u8]) -> Fill {
        let k = (key.hash, Box::<[u8]>::from(secondary));
        let cell = self.cell(key.hash);
        let mut fills = cell.fills.lock().unwrap_or_else(|p| p.into_inner());
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(text: &str) -> PrimaryKey {
        let t = format!("{text}\0GET");
        PrimaryKey {
            hash: super::super::key::hash(t.as_bytes()),
            text: t.as_bytes().into(),
            resource_len: text.len(),
        }
    }

    fn obj(resource: &str, body: usize, tags: &[&str]) -> Arc<Object> {
        Arc::new(Object {
            status: 200,
            fields: Box::default(),
            body: bytes::Bytes::from(vec![b'x'; body]),
            stored_at: Instant::now(),
            initial_age: Duration::ZERO,
            fresh_for: Duration::from_secs(60),
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            must_revalidate: false,
            no_cache: false,
            etag: None,
            last_modified: None,
            tags: tags.iter().map(|t| t.as_bytes().into()).collect(),
            resource: resource.as_bytes().into(),
        })
    }

    fn put(s: &Store, r: &str, body: usize, tags: &[&str]) {
        s.put(&key(r), Box::default(), Box::default(), obj(r, body, tags));
    }

    #[test]
    fn stays_within_the_byte_bound_and_counts_evictions() {
        let s = Store::new(1 << 20);
        for i in 0..5000 {
            put(&s, &format!("h/k{i}"), 4096, &[]);
            assert!(s.stats().bytes <= 1 << 20);
        }
        let st = s.stats();
        assert!(st.evictions > 4000, "{st:?}");
        assert!(st.bytes > (1 << 20) / 2, "the store is used: {st:?}");
        assert!(s.get(&key("h/k4999")).is_some());
        s.set_max_bytes(64 << 10);
        assert!(s.stats().bytes <= 64 << 10);
    }

    #[test]
    fn frequently_read_keys_survive_a_stream_of_one_hit_wonders() {
        let s = Store::new(4 << 20);
        for i in 0..50 {
            put(&s, &format!("h/hot{i}"), 4096, &[]);
        }
        for round in 0..40 {
            for i in 0..50 {
                assert!(s.get(&key(&format!("h/hot{i}"))).is_some() || round > 0);
            }
            for j in 0..100 {
                put(&s, &format!("h/cold{round}-{j}"), 4096, &[]);
            }
        }
        let hot = (0..50)
            .filter(|i| s.get(&key(&format!("h/hot{i}"))).is_some())
            .count();
        assert!(hot >= 45, "only {hot} of 50 hot keys kept");
    }

    #[test]
    fn purge_drops_what_it_names_and_only_that() {
        let s = Store::new(16 << 20);
        put(&s, "a.test/p/1", 10, &["t1"]);
        put(&s, "a.test/p/2", 10, &["t2"]);
        put(&s, "a.test/q/1", 10, &["t1", "t3"]);
        assert_eq!(s.purge(&Purge::Resource(b"a.test/p/1".to_vec())), 1);
        assert!(s.get(&key("a.test/p/1")).is_none());
        assert!(s.get(&key("a.test/p/2")).is_some());
        assert_eq!(s.purge(&Purge::Tag(b"t3".to_vec())), 1);
        assert!(s.get(&key("a.test/q/1")).is_none());
        put(&s, "a.test/q/1", 10, &[]);
        assert_eq!(s.purge(&Purge::Prefix(b"a.test/p".to_vec())), 1);
        assert_eq!(s.stats().objects, 1);
        assert_eq!(s.purge(&Purge::All), 1);
        assert_eq!(s.stats().bytes, 0);
        assert_eq!(s.stats().purged, 4);
    }

    #[test]
    fn variants_per_key_are_bounded() {
        let s = Store::new(64 << 20);
        let k = key("h/v");
        let vary: Box<[Box<[u8]>]> = vec![Box::<[u8]>::from(&b"x-hostile"[..])].into();
        for i in 0..1000u32 {
            s.put(
                &k,
                vary.clone(),
                i.to_le_bytes().into(),
                obj("h/v", 100, &[]),
            );
        }
        let e = s.get(&k).unwrap();
        assert_eq!(e.variants.len(), MAX_VARIANTS);
        assert!(e.find(&999u32.to_le_bytes()).is_some());
        assert!(e.find(&0u32.to_le_bytes()).is_none());
        assert_eq!(s.stats().objects, MAX_VARIANTS as u64);
    }

    #[test]
    fn objects_up_to_an_eighth_of_the_bound_are_stored_and_larger_ones_not() {
        let s = Store::new(1 << 20);
        for i in 0..20 {
            put(&s, &format!("h/small{i}"), 4 << 10, &[]);
        }
        put(&s, "h/big", 100 << 10, &[]);
        assert!(
            s.get(&key("h/big")).is_some(),
            "far larger than a 64th of the bound"
        );
        put(&s, "h/huge", 200 << 10, &[]);
        assert!(s.get(&key("h/huge")).is_none());
        assert_eq!(s.stats().too_large, 1);
        // Many large objects: the total stays within the bound.
        for i in 0..40 {
            put(&s, &format!("h/big{i}"), 100 << 10, &[]);
            assert!(s.stats().bytes <= 1 << 20);
        }
        assert!(s.get(&key("h/big39")).is_some());
        s.set_max_bytes(0);
        assert_eq!(s.stats().bytes, 0);
        assert_eq!(s.stats().objects, 0);
    }

    #[test]
    fn the_total_is_exact_after_concurrent_stores_and_purges() {
        let s = Arc::new(Store::new(2 << 20));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for i in 0..3000 {
                        put(&s, &format!("h/t{t}/{i}"), 1000 + (i % 7) * 900, &["x"]);
                        if i % 500 == 0 {
                            s.purge(&Purge::Prefix(format!("h/t{t}/").into_bytes()));
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let st = s.stats();
        assert_eq!(
            st.bytes,
            s.bytes.load(Relaxed),
            "shard sums match the total"
        );
        assert!(st.bytes <= 2 << 20, "{st:?}");
        s.purge(&Purge::Tag(b"x".to_vec()));
        assert_eq!(s.stats().bytes, 0);
        assert_eq!(s.bytes.load(Relaxed), 0);
    }
}
