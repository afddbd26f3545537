//! Rate limiting: GCRA, exact per gateway instance across all workers, lock-free, bounded memory.
//!
//! Owner: the request path calls [`Limiter::check`] / [`check_all`]; the config compiler owns
//! [`LimiterRegistry`], which carries limiters (and so their counters) across reloads.
//!
//! # Model
//! A [`Limiter`] is one limit ([`LimitSpec`]: `requests` per `period`, plus `burst`) applied per
//! key. The key is any byte string the caller builds (consumer, API key id, client IP, a header
//! value, the route). A limiter is `Send + Sync` and shared by every worker through `Arc`: there
//! is one cell per key per gateway instance, not one per core, so a limit is exact for the whole
//! instance, not `workers × limit`.
//!
//! # Algorithm and admission bound
//! GCRA (see `gcra.rs`): emission interval `T = ceil(period / requests)` ns, capacity
//! `C = requests + burst`. From idle, exactly `C` requests pass at one instant (100/min burst 0:
//! 100; burst 5: 105), then one per `T` (100/min: one every 600 ms). For any key that is never
//! evicted while active (below), and for any `t ≥ 0` and any window `[s, s + t]` of the `now_ns`
//! values passed to `check`:
//!
//! ```text
//! admitted ≤ C + floor(t / T) ≤ requests + burst + floor(t · requests / period)
//! ```
//!
//! Proof: a key's TAT never decreases (see "Reclaiming"), each admission raises it by at least
//! `T`, and the first admission stamped in the window leaves it `≥ s + T`; so before the `m`-th
//! one it is `≥ s + (m−1)·T`, while admitting at `now ≤ s + t` needs `TAT ≤ now + (C−1)·T`. Hence
//! `m ≤ C + floor(t / T)`, and `T ≥ period / requests` gives the second form. Both are tight
//! when `period` is a multiple of `requests` ns (`C` at `s`, then one per `T`). The bound holds
//! whatever the order in which concurrent callers' stamps arrive.
//!
//! # Concurrency (no lock on the request path)
//! Each limiter owns a fixed table of 128-bit atomic slots `(fingerprint, status | TAT)` (see
//! `table.rs` for the full protocol and its proof). Charging is a CAS loop on the key's one
//! `LIVE` slot; a denial writes nothing. A new key is inserted by claiming a slot as
//! `PENDING(fp, unique nonce)` and then *settling*: any thread that meets the claim scans the key's
//! 16-slot window, yields to an earlier claim, frees later ones, and confirms only if no `LIVE`
//! cell exists. Two threads inserting the same new key therefore end on one cell, and reusing
//! another key's idle slot is the same claim-and-settle, so a key is never in two cells.
//!
//! # Reclaiming and bounded memory
//! A table has exactly `max_keys` slots (16 B each), allocated in [`Limiter::new`]; nothing
//! grows afterwards. A cell whose `TAT ≤ now` is idle and carries no information, so a new key
//! may take it, by CAS against the exact idle value (which fails if it was charged meanwhile).
//! `TAT ≤ watermark` or `≤` the latest `now` an insert has seen counts as idle too, so a caller
//! whose `now` lags finds the cells everyone else sees as idle. Before reclaiming, the table's
//! watermark is raised to the reclaimed TAT, and every new cell starts at the watermark: a key's
//! TAT never goes backwards across cells, even for callers whose `now` lags (and the watermark
//! never exceeds the largest `now` passed, so fresh keys get their full burst).
//!
//! Victims, in order: an empty slot, the most idle cell in the key's window, then — only when
//! all 16 slots of the window hold active keys — the active key with the smallest TAT. That key
//! restarts with a fresh burst (it may exceed its bound by its lost debt, `ceil((TAT − now) / T)`
//! requests): the chosen trade-off over rejecting new keys. [`Limiter::active_evictions`] counts
//! it for alarms; size `max_keys` well above the number of keys active within one `C·T`.
//! Requests admitted by the fail-open path (a lookup that lost 64 races in a row; never seen in
//! tests) are outside the bound and counted by [`Limiter::fail_open_admits`].
//!
//! # Several limits per request
//! [`check_all`] first reads every limit without writing; any denial returns at once, having
//! consumed nothing. Otherwise it charges the tightest limit first, then the others. If a
//! concurrent request takes the last unit of a later limit between the read and the charge,
//! the limits already charged are rolled back by CAS to their exact previous value; if that
//! cell was charged again meanwhile an exact undo is not computable, so the charge is left in
//! place (stricter, never looser) and counted in [`Limiter::rollback_conflicts`].
//!
//! # Identity of keys
//! Keys are stored as a 64-bit keyed hash (`ahash`, random per limiter). Two keys share a cell
//! only if their fingerprints collide and their windows overlap: about `2^-64` per pair, not
//! reachable by an attacker who does not know the per-process seed.
//!
//! # Time
//! All times are `u64` nanoseconds since a process-wide epoch ([`now_ns`], monotonic). They are
//! passed in, so tests drive a fake clock; all callers of one limiter must use the same clock (a
//! stamp far in the future would age every cell at once). Stamps up to 2^61 ns are supported.
//!
//! # Reloads
//! [`LimiterRegistry::get_or_create`] returns the same `Arc<Limiter>` for an unchanged identity,
//! spec and `max_keys`, so counters survive a config reload.
//!
//! # Response headers
//! [`write_headers`] renders `RateLimit-Policy` and `RateLimit` per
//! draft-ietf-httpapi-ratelimit-headers-11, and `Retry-After` (whole seconds, rounded up).
//!
//! # Files
//! This file only declares the modules and re-exports. `spec` holds [`LimitSpec`] and
//! [`Decision`], `clock` holds [`now_ns`]; the rest as named above.

mod clock;
mod gcra;
pub mod global;
mod headers;
mod lease;
mod limiter;
mod multi;
mod registry;
mod spec;
mod table;

pub use clock::now_ns;
pub use headers::{retry_after_secs, write_headers, write_headers_named};
pub use limiter::Limiter;
pub use multi::{check_all, MultiDecision};
pub use registry::LimiterRegistry;
pub use spec::{Decision, LimitSpec, SpecError};
