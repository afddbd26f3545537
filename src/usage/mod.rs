//! Usage metering: requests per (UTC day, consumer, route, status class), counted by each
//! worker in a bounded map of its own while it records a finished request (`telemetry`), and
//! added into Redis in batches by the background thread (`flush`); `export` reads the totals
//! back for `ringway usage`.
//!
//! Invariants:
//! - The request path never touches Redis, takes no lock and makes no syscall for this: a
//!   worker's map is handed to the flusher through a bounded channel on the worker's periodic
//!   telemetry flush (and at shutdown), with `try_send` (a full channel: the worker keeps its
//!   map and merges on).
//! - Counts add up exactly: every hand-off reaches Redis once. Each batch carries this
//!   process's random instance id and a sequence number; the Lua script applies a batch only if
//!   its number is above the last one applied for that instance, so a retried flush (a timeout
//!   whose write did land) is never counted twice. The control thread flushes what is left
//!   after the workers stopped (`flush::flush_final`).
//! - A worker tracks at most `max_keys` distinct (day, consumer, route, class) entries per
//!   hand-off; past that, requests of new consumers count under the consumer `(other)` so the
//!   per-route totals stay exact with bounded memory.
//! - Consumer and route names go into hash FIELDS (length-prefixed, binary-safe), never into a
//!   key: the per-day hash is `{prefix}:usage:{YYYY-MM-DD}:counts`.

pub mod export;
pub mod field;
pub mod flush;

use std::cell::RefCell;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::Fail;

/// Default most distinct entries one worker holds between hand-offs.
const DEFAULT_MAX_KEYS: usize = 10_000;
/// Default days a day's counts stay in Redis.
const DEFAULT_RETENTION_DAYS: u64 = 400;
/// Hand-offs that may wait for the flusher before workers keep counting in their own map.
const HUB_QUEUE: usize = 1024;

/// `[usage]` as written; the table's presence turns metering on (it needs `[redis]`).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    /// Most distinct (consumer, route, class) entries a worker holds between flushes.
    #[schemars(with = "Option<i64>")]
    pub max_keys: Option<Spanned<i64>>,
    /// Days a day's counts are kept in Redis (default 400).
    #[schemars(with = "Option<i64>")]
    pub retention_days: Option<Spanned<i64>>,
}

/// Compiled `[usage]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageSettings {
    pub max_keys: usize,
    pub retention_days: u64,
}

/// Compiles `[usage]`; fields in `fail` are relative to the table.
pub fn compile(raw: &RawUsage, fail: &mut Fail<'_>) -> Option<UsageSettings> {
    let max_keys = match &raw.max_keys {
        None => DEFAULT_MAX_KEYS,
        Some(m) => match usize::try_from(*m.get_ref()) {
            Ok(n) if (1..=10_000_000).contains(&n) => n,
            _ => {
                fail(m.span(), "max_keys", "must be between 1 and 10000000".into());
                return None;
            }
        },
    };
    let retention_days = match &raw.retention_days {
        None => DEFAULT_RETENTION_DAYS,
        Some(d) => match u64::try_from(*d.get_ref()) {
            Ok(n) if (1..=36_500).contains(&n) => n,
            _ => {
                fail(d.span(), "retention_days", "must be between 1 and 36500".into());
                return None;
            }
        },
    };
    Some(UsageSettings {
        max_keys,
        retention_days,
    })
}

/// Who made the request, as counted.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    /// No authenticated consumer.
    Anonymous,
    Named(Arc<str>),
    /// A consumer counted after the worker's map was full (see the module header).
    Other,
}

/// One counted cell.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UsageKey {
    /// Days since 1970-01-01 (UTC).
    pub day: i64,
    /// 1..=5 for 1xx..5xx.
    pub class: u8,
    /// The route's name; `None` for requests no route matched.
    pub route: Option<Arc<str>>,
    pub who: Who,
}

/// One worker's counts since its last hand-off.
pub type Counts = ahash::AHashMap<UsageKey, u64>;

/// The status class digit of `status` (1..=5; anything else counts as 5xx).
pub fn status_class(status: u16) -> u8 {
    match status / 100 {
        c @ 1..=5 => c as u8,
        _ => 5,
    }
}

/// The process-wide meeting point: workers hand their maps in, the flusher drains them.
pub struct UsageHub {
    tx: SyncSender<Counts>,
    rx: Mutex<Receiver<Counts>>,
    /// The flusher's state; `None` while a flush holds it (see `flush`).
    pub(crate) state: Mutex<Option<flush::FlushState>>,
}

impl Default for UsageHub {
    fn default() -> UsageHub {
        let (tx, rx) = std::sync::mpsc::sync_channel(HUB_QUEUE);
        UsageHub {
            tx,
            rx: Mutex::new(rx),
            state: Mutex::new(Some(flush::FlushState::new())),
        }
    }
}

impl UsageHub {
    /// Every map handed in so far (flusher side).
    pub(crate) fn drain(&self) -> Vec<Counts> {
        let rx = self.rx.lock().unwrap_or_else(|p| p.into_inner());
        rx.try_iter().collect()
    }
}

/// One worker's recorder (`!Sync`: lives in the worker's telemetry).
#[derive(Default)]
pub struct Recorder {
    counts: RefCell<Counts>,
}

impl Recorder {
    /// Counts one finished request. Allocates only for an entry not seen since the last
    /// hand-off.
    pub fn record(&self, s: &UsageSettings, hub: &UsageHub, mut key: UsageKey) {
        let mut counts = self.counts.borrow_mut();
        if counts.len() >= s.max_keys && !counts.contains_key(&key) {
            // Full: hand the map over now if the flusher has room, else count as `(other)`.
            let full = std::mem::take(&mut *counts);
            if let Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) =
                hub.tx.try_send(full)
            {
                *counts = back;
                key.who = Who::Other;
            }
        }
        *counts.entry(key).or_insert(0) += 1;
    }

    /// Hands this worker's counts to the flusher (worker's periodic telemetry flush and exit).
    /// A full queue keeps the counts here for the next try.
    pub fn hand_off(&self, hub: &UsageHub) {
        let mut counts = self.counts.borrow_mut();
        if counts.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut *counts);
        if let Err(TrySendError::Full(back) | TrySendError::Disconnected(back)) =
            hub.tx.try_send(batch)
        {
            *counts = back;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(day: i64, who: &str) -> UsageKey {
        UsageKey {
            day,
            class: 2,
            route: Some(Arc::from("r")),
            who: Who::Named(Arc::from(who)),
        }
    }

    #[test]
    fn a_full_map_hands_off_and_counts_stay_exact() {
        let s = UsageSettings {
            max_keys: 2,
            retention_days: 1,
        };
        let hub = UsageHub::default();
        let r = Recorder::default();
        for who in ["a", "b", "a", "c", "d"] {
            r.record(&s, &hub, key(1, who));
        }
        r.hand_off(&hub);
        let total: u64 = hub.drain().iter().flat_map(|m| m.values()).sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn classes() {
        assert_eq!(status_class(200), 2);
        assert_eq!(status_class(499), 4);
        assert_eq!(status_class(101), 1);
        assert_eq!(status_class(0), 5);
        assert_eq!(status_class(999), 5);
    }
}
