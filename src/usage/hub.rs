//! Where workers hand their counts to the flusher: each worker's `Recorder` (a plain map,
//! `!Sync`) and the process-wide `UsageHub` (a bounded channel, and the flusher's state behind
//! a mutex the request path never takes).

use std::cell::RefCell;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Mutex;

use super::batch::FlushState;
use super::cell::{Counts, UsageKey, Who};
use super::settings::UsageSettings;

/// Hand-offs that may wait for the flusher before workers keep counting in their own map.
const HUB_QUEUE: usize = 1024;

/// The process-wide meeting point: workers hand their maps in, the flusher drains them.
pub struct UsageHub {
    tx: SyncSender<Counts>,
    rx: Mutex<Receiver<Counts>>,
    /// The flusher's state; `None` while a flush holds it (see `flush`).
    pub(crate) state: Mutex<Option<FlushState>>,
}

impl Default for UsageHub {
    fn default() -> UsageHub {
        let (tx, rx) = std::sync::mpsc::sync_channel(HUB_QUEUE);
        UsageHub {
            tx,
            rx: Mutex::new(rx),
            state: Mutex::new(Some(FlushState::new())),
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

    use std::sync::Arc;

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
}
