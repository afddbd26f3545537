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

use std::time::{Duration, Instant};

use super::batch::{Batch, FlushState};
use super::cell::day_label;
use super::hub::UsageHub;
use super::settings::UsageSettings;
use crate::redis::{Client, RedisError, RedisShared, Script};

static APPLY: Script = Script::new(include_str!("flush.lua"));

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
/// is confirmed or `budget` runs out. Returns the requests left unconfirmed (0 = exact;
/// `u64::MAX`: another flush held the state the whole time, which the one Redis thread never does).
pub async fn flush_final(
    client: &Client,
    shared: &RedisShared,
    hub: &UsageHub,
    settings: &UsageSettings,
    budget: Duration,
) -> u64 {
    let end = Instant::now() + budget;
    loop {
        let idle = hub
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
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
