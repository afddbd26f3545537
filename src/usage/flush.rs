//! Moving the workers' counts into Redis: `flush_once` (the background thread, every second)
//! and `flush_final` (the control thread, after the workers stopped). Both go through the
//! hub's one `FlushState`, taken out of its mutex for the duration of a flush, so two flushes
//! never send the same counts.
//!
//! Batches are cut from the merged pending counts only when no earlier batch is waiting, and
//! are applied strictly in order: with the script's "number above the last applied" rule, a
//! batch retried after an unclear failure (timeout) is applied at most once, and one that
//! failed for sure is applied on the next try. While Redis is down the pending counts keep
//! merging (memory bounded by distinct cells, not by time).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::{field, Counts, UsageHub, UsageSettings};
use crate::redis::{Client, RedisError, RedisShared, Script};

static APPLY: Script = Script::new(include_str!("flush.lua"));

/// Fields per script call (keeps one call well under Redis's argument and time limits).
const BATCH_FIELDS: usize = 500;

/// A batch cut from the pending counts, applied once.
struct Batch {
    day: i64,
    seq: u64,
    fields: Vec<(Vec<u8>, u64)>,
}

/// What the flusher keeps between flushes.
pub struct FlushState {
    /// Random per process: batch numbers are per instance.
    instance: String,
    seq: u64,
    pending: BTreeMap<i64, ahash::AHashMap<Vec<u8>, u64>>,
    inflight: VecDeque<Batch>,
    /// When `flush_if_due` flushes next.
    next_at: Instant,
}

impl FlushState {
    pub(crate) fn new() -> FlushState {
        let mut id = [0u8; 16];
        if getrandom::fill(&mut id).is_err() {
            // Unique enough without the OS's randomness: time and pid.
            let t = crate::civil::now_unix_nanos().to_le_bytes();
            id[..8].copy_from_slice(&t);
            id[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        }
        FlushState {
            instance: id.iter().map(|b| format!("{b:02x}")).collect(),
            seq: 0,
            pending: BTreeMap::new(),
            inflight: VecDeque::new(),
            next_at: Instant::now(),
        }
    }

    fn merge(&mut self, counts: Counts) {
        for (k, n) in counts {
            let f = field::encode(k.class, k.route.as_deref(), &k.who);
            *self.pending.entry(k.day).or_default().entry(f).or_insert(0) += n;
        }
    }

    /// Cuts every pending count into numbered batches.
    fn cut(&mut self) {
        for (day, cells) in std::mem::take(&mut self.pending) {
            let mut cells: Vec<_> = cells.into_iter().collect();
            while !cells.is_empty() {
                let rest = cells.split_off(cells.len().min(BATCH_FIELDS));
                self.seq += 1;
                self.inflight.push_back(Batch {
                    day,
                    seq: self.seq,
                    fields: std::mem::replace(&mut cells, rest),
                });
            }
        }
    }

    /// Requests counted but not yet confirmed in Redis.
    pub fn unflushed(&self) -> u64 {
        let p: u64 = self.pending.values().flat_map(|m| m.values()).sum();
        let b: u64 = self
            .inflight
            .iter()
            .flat_map(|b| b.fields.iter().map(|(_, n)| n))
            .sum();
        p + b
    }
}

/// `YYYY-MM-DD` of day number `day` (days since 1970-01-01).
pub fn day_label(day: i64) -> String {
    let (y, m, d) = crate::civil::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Today's day number (UTC).
pub fn today() -> i64 {
    (crate::civil::unix_now() / 86_400) as i64
}

/// How often `flush_if_due` flushes.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// `flush_once` at most every `FLUSH_EVERY` (the background thread ticks faster than that).
pub async fn flush_if_due(
    client: &Client,
    shared: &RedisShared,
    hub: &UsageHub,
    settings: &UsageSettings,
) -> Result<u64, RedisError> {
    let due = {
        let mut st = hub.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.as_mut() {
            Some(s) if Instant::now() >= s.next_at => {
                s.next_at = Instant::now() + FLUSH_EVERY;
                true
            }
            _ => false,
        }
    };
    if !due {
        return Ok(0);
    }
    flush_once(client, shared, hub, settings).await
}

/// One flush: takes what the workers handed in and applies every batch it can. Returns how
/// many requests were confirmed. Another flush in progress: returns `Ok(0)` at once.
pub async fn flush_once(
    client: &Client,
    shared: &RedisShared,
    hub: &UsageHub,
    settings: &UsageSettings,
) -> Result<u64, RedisError> {
    let taken = hub.state.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(mut st) = taken else {
        return Ok(0);
    };
    for counts in hub.drain() {
        st.merge(counts);
    }
    let r = apply_all(client, shared, &mut st, settings).await;
    *hub.state.lock().unwrap_or_else(|p| p.into_inner()) = Some(st);
    r
}

async fn apply_all(
    client: &Client,
    shared: &RedisShared,
    st: &mut FlushState,
    settings: &UsageSettings,
) -> Result<u64, RedisError> {
    if st.inflight.is_empty() {
        st.cut();
    }
    let keep = (settings.retention_days * 86_400).to_string();
    let mut done = 0;
    while let Some(b) = st.inflight.front() {
        apply(client, shared, &st.instance, b, &keep).await?;
        done += b.fields.iter().map(|(_, n)| n).sum::<u64>();
        st.inflight.pop_front();
    }
    Ok(done)
}

async fn apply(
    client: &Client,
    shared: &RedisShared,
    instance: &str,
    b: &Batch,
    keep: &str,
) -> Result<(), RedisError> {
    let label = day_label(b.day);
    let counts = shared.key("usage", &label, "counts");
    let applied = shared.key("usage", &label, "applied");
    let seq = b.seq.to_string();
    let numbers: Vec<String> = b.fields.iter().map(|(_, n)| n.to_string()).collect();
    let mut args: Vec<&[u8]> = vec![instance.as_bytes(), seq.as_bytes(), keep.as_bytes()];
    for ((f, _), n) in b.fields.iter().zip(&numbers) {
        args.push(f);
        args.push(n.as_bytes());
    }
    client
        .eval(&APPLY, &[counts.as_bytes(), applied.as_bytes()], &args)
        .await
        .map(|_| ())
}

/// The last flush, after the workers handed in their final counts: retries until everything
/// is confirmed or `budget` runs out. Returns the requests left unconfirmed (0 = exact).
pub async fn flush_final(
    client: &Client,
    shared: &RedisShared,
    hub: &UsageHub,
    settings: &UsageSettings,
    budget: Duration,
) -> u64 {
    let end = Instant::now() + budget;
    loop {
        let idle = hub.state.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        if idle {
            let r = flush_once(client, shared, hub, settings).await;
            let left = hub
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map_or(0, |s| s.unflushed());
            if (r.is_ok() && left == 0) || Instant::now() >= end {
                return left;
            }
        } else if Instant::now() >= end {
            return u64::MAX;
        }
        monoio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::{UsageKey, Who};
    use super::*;

    #[test]
    fn cutting_numbers_batches_in_order_and_loses_nothing() {
        let mut st = FlushState::new();
        let mut c = Counts::default();
        for i in 0..1200u64 {
            let k = UsageKey {
                day: (i % 2) as i64,
                class: 2,
                route: Some(Arc::from("r")),
                who: Who::Named(Arc::from(format!("c{i}").as_str())),
            };
            c.insert(k, i + 1);
        }
        st.merge(c);
        let total = st.unflushed();
        assert_eq!(total, (1..=1200u64).sum::<u64>());
        st.cut();
        assert!(st.pending.is_empty());
        assert_eq!(st.unflushed(), total);
        let seqs: Vec<u64> = st.inflight.iter().map(|b| b.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        assert!(st.inflight.iter().all(|b| b.fields.len() <= BATCH_FIELDS));
    }

    #[test]
    fn day_labels() {
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(day_label(20_791), "2026-12-04");
    }
}
