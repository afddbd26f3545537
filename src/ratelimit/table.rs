//! Fixed-capacity, lock-free table of GCRA cells: one 128-bit atomic slot per tracked key.
//!
//! Owner: `ratelimit::Limiter` (one table per limiter, shared by all workers). Allocated once at
//! construction (`16 B × capacity`) and never resized, so memory is bounded by the capacity.
//!
//! # Slot
//! `(fp: u64, meta: u64)` in one `AtomicU128` (cmpxchg16b), so a key's identity and its state
//! change together in one CAS. `meta` = 2 status bits + a 62-bit value:
//! - `EMPTY` `(0, 0)`: never used or freed.
//! - `PENDING(fp, nonce)`: an unconfirmed claim for key `fp`; the nonce is unique per claim
//!   (per-thread blocks of a global counter), so a claim can never be confused with a later one
//!   at the same slot (no ABA on claims).
//! - `LIVE(fp, tat)`: the key's one cell.
//!
//! A key hashes to a home slot and may live only in the `WINDOW` slots that follow it (wrapping).
//!
//! # Invariant: at most one `LIVE` slot per key, at any instant
//! Lookups take the first `LIVE(fp)` they see; charges are `CAS(LIVE(fp,t) → LIVE(fp,t'))`, so all
//! charges of a key serialize on that one slot. A key gets a slot in two steps:
//! 1. **Claim.** Having scanned the whole window without seeing the key, the inserter CASes a victim
//!    slot to `PENDING(fp, nonce)`. Victims in order: the first `EMPTY`; the idle `LIVE` of
//!    another key with the smallest TAT (idle: `TAT ≤ max(now, watermark, latest now seen by an
//!    insert)`, so a caller whose `now` lags sees what everyone else sees as idle); when the
//!    window is full of active keys, the active one with the smallest TAT; else another key's
//!    `PENDING`. Overwriting any of these loses nothing the algorithm needs except in the active
//!    case (documented in `mod.rs`); freeing a `PENDING` only makes its owner retry. The CAS
//!    expects the exact value scanned, so a victim charged meanwhile is not taken.
//! 2. **Settle** (run by the claimer, or by anyone who meets a `PENDING(fp)` while looking for
//!    `fp`). Scan the window: a `LIVE(fp)` elsewhere means the claim lost (free it, use that
//!    slot); a `PENDING(fp)` at an *earlier* window position wins over ours (free ours, settle
//!    that one instead); a `PENDING(fp)` at a *later* position is freed by CAS. Only when the
//!    scan has met no `LIVE(fp)` and removed every later claim does it
//!    `CAS(PENDING(fp, nonce) → LIVE(fp, watermark))`.
//!
//! Why two `LIVE(fp)` cannot coexist: say `a` was confirmed at `ca` and is still `LIVE` when `b`
//! is confirmed at `cb > ca`. `b`'s settler read slot `a` before `cb`. Had it read after `ca` it
//! would have seen `LIVE(fp)` and not confirmed. So it read `a` before `ca`: either `a` was not yet
//! claimed — then `a`'s claim came after `b`'s claim, and `a`'s settler (reading `b` after its own
//! claim, all operations `SeqCst`) saw `b` still `PENDING`, and either yielded to it or freed it,
//! and a freed claim can never be confirmed because its nonce is unique — or it read `a` as
//! `PENDING`, and then it either yielded to `a` or freed `a` (making `ca` impossible) or its free
//! failed because `a` had just become `LIVE`, which its re-read sees. Every case contradicts. Two
//! inserters of a new key therefore always end on one cell: both claims are settled by the same
//! rule and exactly one survives. Reclaiming an idle `LIVE(other)` cannot duplicate a key either:
//! it is just a claim, settled like any other.
//!
//! # Watermark
//! Reclaiming an idle cell first raises `watermark` to its TAT (`fetch_max`), and a confirmed cell
//! starts at the watermark. Since a key's next cell is confirmed only after its previous one was
//! overwritten (and the settler's read of that slot synchronizes with the overwrite), a key's TAT
//! never goes backwards across cells: reclaiming is lossless even for callers whose `now` lags.
//! The watermark is at most the largest `now` any caller passed, since only cells idle by the
//! definition above are reclaimed.

use std::cell::Cell;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

use portable_atomic::AtomicU128;

/// Slots after (and including) a key's home slot in which it may live.
pub(crate) const WINDOW: usize = 16;
/// Lookup rounds before giving up (only reachable under pathological contention); see `locate`.
const MAX_ROUNDS: usize = 1024;
/// `latest_now` is only raised when it lags an inserter's `now` by more than this (1 ms), so
/// inserts write that shared line at most about once per millisecond of clock.
const LATEST_NOW_GRAIN: u64 = 1_000_000;

const EMPTY: u64 = 0;
const PENDING: u64 = 1 << 62;
const LIVE: u64 = 2 << 62;
const STATUS: u64 = 3 << 62;
/// Low 62 bits of `meta`: a TAT (`LIVE`) or a nonce (`PENDING`).
const VALUE: u64 = (1 << 62) - 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    fp: u64,
    meta: u64,
}

impl Slot {
    const EMPTY: Slot = Slot { fp: 0, meta: EMPTY };

    fn live(fp: u64, tat: u64) -> Slot {
        Slot {
            fp,
            meta: LIVE | (tat & VALUE),
        }
    }

    fn pending(fp: u64, nonce: u64) -> Slot {
        Slot {
            fp,
            meta: PENDING | (nonce & VALUE),
        }
    }

    fn pack(self) -> u128 {
        (u128::from(self.fp) << 64) | u128::from(self.meta)
    }

    fn unpack(v: u128) -> Slot {
        Slot {
            fp: (v >> 64) as u64,
            meta: v as u64,
        }
    }

    fn status(self) -> u64 {
        self.meta & STATUS
    }

    fn value(self) -> u64 {
        self.meta & VALUE
    }

    fn is(self, fp: u64, status: u64) -> bool {
        self.fp == fp && self.status() == status
    }
}

/// A key's live cell as last read: its slot index and TAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Live {
    pub(crate) idx: usize,
    pub(crate) tat: u64,
}

/// Why a charge CAS failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stale {
    /// Still this key's cell, with another TAT: retry with it.
    Tat(u64),
    /// The slot no longer holds this key: look it up again.
    Gone,
}

/// Counters written only off the hot path, kept off the cache line of the read-only fields.
#[repr(align(128))]
struct Shared {
    watermark: AtomicU64,
    latest_now: AtomicU64,
    active_evictions: AtomicU64,
    fail_open: AtomicU64,
    rollback_conflicts: AtomicU64,
}

/// The slot array plus its off-path counters.
pub(crate) struct CellTable {
    slots: Box<[AtomicU128]>,
    window: usize,
    shared: Shared,
}

/// Claim victim candidate: lower `(rank, tat)` is better.
#[derive(Clone, Copy)]
struct Victim {
    pos: usize,
    slot: Slot,
    rank: u8,
    tat: u64,
}

const RANK_EMPTY: u8 = 0;
const RANK_IDLE: u8 = 1;
const RANK_ACTIVE: u8 = 2;
const RANK_PENDING: u8 = 3;

impl CellTable {
    /// A table of exactly `capacity.max(1)` slots, all `EMPTY`.
    pub(crate) fn new(capacity: usize) -> CellTable {
        let n = capacity.max(1);
        CellTable {
            slots: (0..n).map(|_| AtomicU128::new(0)).collect(),
            window: WINDOW.min(n),
            shared: Shared {
                watermark: AtomicU64::new(0),
                latest_now: AtomicU64::new(0),
                active_evictions: AtomicU64::new(0),
                fail_open: AtomicU64::new(0),
                rollback_conflicts: AtomicU64::new(0),
            },
        }
    }

    /// Bytes allocated for slots.
    pub(crate) fn slot_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }

    /// Home slot for a 64-bit hash (multiply-shift range reduction, any capacity).
    pub(crate) fn home(&self, h: u64) -> usize {
        ((u128::from(h) * self.slots.len() as u128) >> 64) as usize
    }

    fn index(&self, home: usize, pos: usize) -> usize {
        let i = home + pos;
        if i >= self.slots.len() {
            i - self.slots.len()
        } else {
            i
        }
    }

    fn load(&self, idx: usize) -> Slot {
        Slot::unpack(self.slots[idx].load(SeqCst))
    }

    fn cas(&self, idx: usize, old: Slot, new: Slot) -> Result<(), Slot> {
        self.slots[idx]
            .compare_exchange(old.pack(), new.pack(), SeqCst, SeqCst)
            .map(|_| ())
            .map_err(Slot::unpack)
    }

    /// TAT a newly confirmed cell starts from.
    pub(crate) fn fresh_tat(&self) -> u64 {
        self.shared.watermark.load(SeqCst)
    }

    /// Any TAT at or below this is idle for every caller: the larger of the watermark and the
    /// latest `now` seen by an insert (both at most the largest `now` any caller passed).
    fn idle_floor(&self) -> u64 {
        let w = self.shared.watermark.load(SeqCst);
        w.max(self.shared.latest_now.load(Relaxed))
    }

    /// Raises `latest_now` to `now` if it lags by more than the grain.
    fn note_now(&self, now: u64) {
        let latest = &self.shared.latest_now;
        if now > latest.load(Relaxed).saturating_add(LATEST_NOW_GRAIN) {
            latest.fetch_max(now, Relaxed);
        }
    }

    /// Read-only lookup: the TAT of `fp`'s live cell, if it has one.
    pub(crate) fn find(&self, fp: u64, home: usize) -> Option<u64> {
        (0..self.window)
            .map(|pos| self.load(self.index(home, pos)))
            .find(|s| s.is(fp, LIVE))
            .map(Slot::value)
    }

    /// Finds `fp`'s live cell or creates it (see the module header). `now` decides which cells
    /// are idle. `None` only after `MAX_ROUNDS` lost races (the caller then fails open).
    pub(crate) fn locate(&self, fp: u64, home: usize, now: u64) -> Option<Live> {
        'round: for _ in 0..MAX_ROUNDS {
            let mut best: Option<Victim> = None;
            // Loaded at most once per round, only if some other key's cell looks active.
            let mut floor = None;
            for pos in 0..self.window {
                let idx = self.index(home, pos);
                let s = self.load(idx);
                if s.is(fp, LIVE) {
                    return Some(Live {
                        idx,
                        tat: s.value(),
                    });
                }
                if s.is(fp, PENDING) {
                    match self.settle(fp, home, pos, s) {
                        Some(live) => return Some(live),
                        None => continue 'round,
                    }
                }
                let (rank, tat) = match s.status() {
                    EMPTY => (RANK_EMPTY, 0),
                    LIVE if s.value() <= now => (RANK_IDLE, s.value()),
                    // Idle too if another caller's `now` already passed it (lagging `now`).
                    LIVE if s.value() <= *floor.get_or_insert_with(|| self.idle_floor()) => {
                        (RANK_IDLE, s.value())
                    }
                    LIVE => (RANK_ACTIVE, s.value()),
                    _ => (RANK_PENDING, 0),
                };
                if best.is_none_or(|b| (rank, tat) < (b.rank, b.tat)) {
                    best = Some(Victim {
                        pos,
                        slot: s,
                        rank,
                        tat,
                    });
                }
            }
            let v = best?;
            self.note_now(now);
            if v.rank == RANK_IDLE && v.tat > self.shared.watermark.load(SeqCst) {
                // Before the overwrite: whoever confirms this key's next cell must see it.
                self.shared.watermark.fetch_max(v.tat, SeqCst);
            }
            let claim = Slot::pending(fp, next_nonce());
            if self.cas(self.index(home, v.pos), v.slot, claim).is_err() {
                continue;
            }
            if v.rank == RANK_ACTIVE {
                self.shared.active_evictions.fetch_add(1, Relaxed);
            }
            if let Some(live) = self.settle(fp, home, v.pos, claim) {
                return Some(live);
            }
        }
        None
    }

    /// Settles the claim `claim` found at window position `pos` (see the module header).
    /// Returns the key's live cell, or `None` if the claim vanished and the lookup must restart.
    fn settle(&self, fp: u64, home: usize, mut pos: usize, mut claim: Slot) -> Option<Live> {
        'validate: loop {
            for p in (0..self.window).filter(|&p| p != pos) {
                let idx = self.index(home, p);
                let mut cur = self.load(idx);
                loop {
                    if cur.fp != fp || cur.status() == EMPTY {
                        break;
                    }
                    if cur.status() == LIVE {
                        // The key already has its cell: ours is a duplicate claim.
                        let _ = self.cas(self.index(home, pos), claim, Slot::EMPTY);
                        return Some(Live {
                            idx,
                            tat: cur.value(),
                        });
                    }
                    if p < pos {
                        // An earlier claim wins: drop ours and settle that one.
                        let _ = self.cas(self.index(home, pos), claim, Slot::EMPTY);
                        pos = p;
                        claim = cur;
                        continue 'validate;
                    }
                    match self.cas(idx, cur, Slot::EMPTY) {
                        Ok(()) => break,
                        Err(now_there) => cur = now_there,
                    }
                }
            }
            let idx = self.index(home, pos);
            let tat = self.fresh_tat();
            return match self.cas(idx, claim, Slot::live(fp, tat)) {
                Ok(()) => Some(Live { idx, tat }),
                // Another settler confirmed the same claim first.
                Err(cur) if cur.is(fp, LIVE) => Some(Live {
                    idx,
                    tat: cur.value(),
                }),
                Err(_) => None,
            };
        }
    }

    /// Charges (or rolls back) by `CAS(LIVE(fp, old) → LIVE(fp, new))`.
    pub(crate) fn update(&self, idx: usize, fp: u64, old: u64, new: u64) -> Result<(), Stale> {
        match self.cas(idx, Slot::live(fp, old), Slot::live(fp, new)) {
            Ok(()) => Ok(()),
            Err(cur) if cur.is(fp, LIVE) => Err(Stale::Tat(cur.value())),
            Err(_) => Err(Stale::Gone),
        }
    }

    /// Slots holding a key (live or being claimed). Walks the table: not for the request path.
    pub(crate) fn tracked(&self) -> usize {
        (0..self.slots.len())
            .filter(|&i| self.load(i).status() != EMPTY)
            .count()
    }

    /// Active keys evicted because a window held no empty or idle slot.
    pub(crate) fn active_evictions(&self) -> u64 {
        self.shared.active_evictions.load(Relaxed)
    }

    /// Requests admitted untracked because a lookup kept losing races.
    pub(crate) fn fail_open(&self) -> u64 {
        self.shared.fail_open.load(Relaxed)
    }

    /// Counts one more fail-open admission (lookups exhausted in the caller).
    pub(crate) fn note_fail_open(&self) {
        self.shared.fail_open.fetch_add(1, Relaxed);
    }

    /// Multi-limit rollbacks that found the cell already changed (charge left in place).
    pub(crate) fn rollback_conflicts(&self) -> u64 {
        self.shared.rollback_conflicts.load(Relaxed)
    }

    /// Counts one more rollback conflict.
    pub(crate) fn note_rollback_conflict(&self) {
        self.shared.rollback_conflicts.fetch_add(1, Relaxed);
    }

    /// Test aid: fingerprints that have more than one live slot right now.
    #[cfg(test)]
    pub(crate) fn duplicate_live(&self) -> usize {
        let mut fps: Vec<u64> = (0..self.slots.len())
            .map(|i| self.load(i))
            .filter(|s| s.status() == LIVE)
            .map(|s| s.fp)
            .collect();
        let all = fps.len();
        fps.sort_unstable();
        fps.dedup();
        all - fps.len()
    }
}

/// Nonces handed out in per-thread blocks so claims never share one (no ABA).
static NONCE_BLOCKS: AtomicU64 = AtomicU64::new(0);
const NONCE_BLOCK: u64 = 1 << 20;

thread_local! {
    static NONCES: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn next_nonce() -> u64 {
    NONCES.with(|c| {
        let (mut next, mut end) = c.get();
        if next == end {
            next = NONCE_BLOCKS.fetch_add(1, Relaxed).wrapping_mul(NONCE_BLOCK) & VALUE;
            end = next + NONCE_BLOCK;
        }
        c.set((next + 1, end));
        next
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u128_atomics_are_lock_free_here() {
        // With portable-atomic's run-time detection this is cmpxchg16b (+ AVX loads); if it ever
        // fails, the CPU lacks cmpxchg16b and the table would sit behind a global lock.
        assert!(AtomicU128::is_lock_free());
    }

    #[test]
    fn slot_packing_round_trips() {
        for s in [
            Slot::EMPTY,
            Slot::live(0, 0),
            Slot::live(u64::MAX, VALUE),
            Slot::pending(7, 12345),
        ] {
            assert_eq!(Slot::unpack(s.pack()), s);
        }
        assert_ne!(Slot::pending(0, 0), Slot::EMPTY);
        assert_ne!(Slot::live(0, 0), Slot::EMPTY);
    }

    #[test]
    fn nonces_are_unique_across_threads() {
        let per_thread: Vec<Vec<u64>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| s.spawn(|| (0..10_000).map(|_| next_nonce()).collect::<Vec<_>>()))
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut all: Vec<u64> = per_thread.into_iter().flatten().collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(n, 40_000);
    }

    #[test]
    fn same_home_keys_share_a_window_and_stay_distinct() {
        let t = CellTable::new(64);
        let now = 1_000;
        let a = t.locate(1, 5, now).expect("a");
        let b = t.locate(2, 5, now).expect("b");
        assert_ne!(a.idx, b.idx);
        assert_eq!(t.locate(1, 5, now), Some(a));
        assert_eq!(t.find(2, 5), Some(b.tat));
        assert_eq!(t.tracked(), 2);
    }

    #[test]
    fn full_window_reclaims_the_most_idle_cell_and_raises_the_watermark() {
        let t = CellTable::new(WINDOW);
        for fp in 0..WINDOW as u64 {
            let live = t.locate(fp + 1, 0, 0).expect("insert");
            // TATs 10, 20, ..., all idle at now = 1000 except fp 15 (tat 2000).
            let tat = if fp == 15 { 2_000 } else { (fp + 1) * 10 };
            t.update(live.idx, fp + 1, live.tat, tat).expect("set");
        }
        let fresh = t.locate(100, 0, 1_000).expect("reclaim");
        assert_eq!(t.find(1, 0), None, "the smallest idle TAT is evicted first");
        assert_eq!(fresh.tat, 10);
        assert_eq!(t.fresh_tat(), 10);
        assert_eq!(t.active_evictions(), 0);
        // At or below the watermark counts as idle even for a lagging `now`.
        let l = t.locate(200, 0, 0).expect("reclaim below the watermark");
        assert_eq!(t.find(100, 0), None);
        t.update(l.idx, 200, l.tat, 5_000).expect("set");
        assert_eq!(t.active_evictions(), 0);
        // Nothing idle at now = 0: the active key with the smallest TAT (fp 2, tat 20) goes.
        t.locate(300, 0, 0).expect("evict");
        assert_eq!(t.find(2, 0), None);
        assert_eq!(t.active_evictions(), 1);
        assert_eq!(t.tracked(), WINDOW);
    }

    #[test]
    fn charge_cas_reports_stale_and_gone() {
        let t = CellTable::new(8);
        let l = t.locate(9, 3, 0).expect("insert");
        assert_eq!(t.update(l.idx, 9, l.tat, 50), Ok(()));
        assert_eq!(t.update(l.idx, 9, l.tat, 60), Err(Stale::Tat(50)));
        assert_eq!(t.update(l.idx, 10, 50, 60), Err(Stale::Gone));
    }

    /// Puts `slot` at window position `pos` of home 0, as a racing thread would have.
    fn plant(t: &CellTable, pos: usize, slot: Slot) {
        let idx = t.index(0, pos);
        let old = t.load(idx);
        t.cas(idx, old, slot).expect("plant");
    }

    #[test]
    fn settle_drops_a_claim_when_the_key_is_already_live() {
        // An inserter scanned before the key went LIVE at 5, then claimed 2.
        let t = CellTable::new(32);
        plant(&t, 5, Slot::live(7, 40));
        let claim = Slot::pending(7, 1);
        plant(&t, 2, claim);
        assert_eq!(t.settle(7, 0, 2, claim), Some(Live { idx: 5, tat: 40 }));
        assert_eq!(t.load(2), Slot::EMPTY);
        assert_eq!(t.duplicate_live(), 0);
    }

    #[test]
    fn settle_lets_the_earlier_of_two_claims_win_whoever_runs_it() {
        for late_settles_first in [false, true] {
            let t = CellTable::new(32);
            let (early, late) = (Slot::pending(7, 1), Slot::pending(7, 2));
            plant(&t, 2, early);
            plant(&t, 6, late);
            let (a, b) = if late_settles_first {
                (t.settle(7, 0, 6, late), t.settle(7, 0, 2, early))
            } else {
                (t.settle(7, 0, 2, early), t.settle(7, 0, 6, late))
            };
            assert_eq!(a.map(|l| l.idx), Some(2));
            assert_eq!(b.map(|l| l.idx), Some(2));
            assert_eq!(t.load(6), Slot::EMPTY);
            assert!(t.load(2).is(7, LIVE));
        }
    }

    #[test]
    fn a_freed_claim_is_never_confirmed_later() {
        // The claim at 4 was freed by another settler and the slot reused by the same key with
        // a new nonce; the stale settler of the old claim must not confirm anything at 4.
        let t = CellTable::new(32);
        let stale = Slot::pending(7, 1);
        plant(&t, 4, Slot::pending(7, 2));
        assert_eq!(t.settle(7, 0, 4, stale), None);
        assert!(t.load(4).is(7, PENDING));
    }

    #[test]
    fn concurrent_inserts_of_one_new_key_end_on_one_cell() {
        for round in 0..200u64 {
            let t = CellTable::new(64);
            let fp = 0xdead_beef ^ round;
            let cells: Vec<usize> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| t.locate(fp, (round % 64) as usize, 0).map(|l| l.idx)))
                    .collect();
                hs.into_iter()
                    .filter_map(|h| h.join().ok().flatten())
                    .collect()
            });
            assert_eq!(cells.len(), 8);
            assert!(cells.iter().all(|&c| c == cells[0]), "{cells:?}");
            assert_eq!(t.duplicate_live(), 0);
            assert_eq!(t.tracked(), 1);
        }
    }
}
