//! The flusher's state: counts merged from the workers' hand-offs (`pending`), cut into
//! numbered batches (`inflight`) that are applied to Redis strictly in order, each at most once
//! (see `flush`).

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::cell::Counts;
use super::field;

/// Fields per script call (keeps one call well under Redis's argument and time limits).
const BATCH_FIELDS: usize = 500;

/// A batch cut from the pending counts, applied once.
pub(crate) struct Batch {
    pub(crate) day: i64,
    pub(crate) seq: u64,
    pub(crate) fields: Vec<(Vec<u8>, u64)>,
}

/// What the flusher keeps between flushes.
pub struct FlushState {
    /// Random per process: batch numbers are per instance.
    pub(crate) instance: String,
    seq: u64,
    pending: BTreeMap<i64, ahash::AHashMap<Vec<u8>, u64>>,
    pub(crate) inflight: VecDeque<Batch>,
    /// When `flush_if_due` flushes next.
    pub(crate) next_at: Instant,
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

    pub(crate) fn merge(&mut self, counts: Counts) {
        for (k, n) in counts {
            let f = field::encode(k.class, k.route.as_deref(), &k.who);
            *self.pending.entry(k.day).or_default().entry(f).or_insert(0) += n;
        }
    }

    /// Cuts every pending count into numbered batches.
    pub(crate) fn cut(&mut self) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::cell::{UsageKey, Who};
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
}
