//! One latency histogram: exact Prometheus bucket counters, exact sum, count and max, plus a
//! lazily created hdrhistogram (2 significant figures, 1 µs .. 60 s) for percentiles.
//!
//! Invariants: the exact fields are the source of truth for Prometheus (`_bucket`, `_sum`,
//! `_count`); the hdr histogram only answers quantiles. Every hdr histogram is created with the
//! same bounds, so merging two of them never needs a resize. Recording allocates only on the
//! first value (the hdr counts array); idle histograms cost no heap.

use std::time::Duration;

use hdrhistogram::Histogram;

/// Upper bounds of the finite Prometheus buckets, as rendered in the `le` label.
pub const BUCKET_BOUNDS: [&str; 14] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5", "5", "10",
];

/// The same bounds in nanoseconds; a value lands in the first bucket whose bound is `>=` it.
const BUCKET_BOUNDS_NANOS: [u64; 14] = [
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Number of bucket counters: the finite bounds plus `+Inf`.
pub const BUCKETS: usize = BUCKET_BOUNDS.len() + 1;

/// Lowest and highest value the hdr histogram tracks, in microseconds.
const HDR_LOW_US: u64 = 1;
const HDR_HIGH_US: u64 = 60_000_000;
const HDR_SIGFIG: u8 = 2;

/// A latency distribution. Cheap to clone when empty; `Send`.
#[derive(Clone, Debug, Default)]
pub struct LatencyHistogram {
    hdr: Option<Histogram<u64>>,
    /// Non-cumulative counts per bucket; index `BUCKETS - 1` is `+Inf`.
    buckets: [u64; BUCKETS],
    sum_us: u64,
    count: u64,
    max_us: u64,
}

impl LatencyHistogram {
    /// An empty histogram (no heap until the first record).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one duration.
    #[inline]
    pub fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let idx = BUCKET_BOUNDS_NANOS.partition_point(|&b| b < nanos);
        self.buckets[idx] += 1;
        let us = nanos / 1_000;
        self.sum_us = self.sum_us.saturating_add(us);
        self.count += 1;
        self.max_us = self.max_us.max(us);
        if self.hdr.is_none() {
            // Only fails for invalid bounds, which are constants; then quantiles read 0.
            self.hdr = Histogram::new_with_bounds(HDR_LOW_US, HDR_HIGH_US, HDR_SIGFIG).ok();
        }
        if let Some(h) = self.hdr.as_mut() {
            h.saturating_record(us.clamp(HDR_LOW_US, HDR_HIGH_US));
        }
    }

    /// Adds `other` into `self` (exact counters summed; hdr histograms added, never averaged).
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
        self.count += other.count;
        self.max_us = self.max_us.max(other.max_us);
        match (self.hdr.as_mut(), other.hdr.as_ref()) {
            (_, None) => {}
            (None, Some(o)) => self.hdr = Some(o.clone()),
            // Identical bounds on both sides, so `add` cannot run out of range.
            (Some(s), Some(o)) => {
                let _ = s.add(o);
            }
        }
    }

    /// Number of recorded values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact sum of recorded values, in microseconds (each value truncated to whole µs).
    pub fn sum_micros(&self) -> u64 {
        self.sum_us
    }

    /// Exact largest recorded value, in microseconds.
    pub fn max_micros(&self) -> u64 {
        self.max_us
    }

    /// Non-cumulative bucket counts, aligned with `BUCKET_BOUNDS` plus a final `+Inf` entry.
    pub fn buckets(&self) -> &[u64; BUCKETS] {
        &self.buckets
    }

    /// Cumulative bucket counts (Prometheus `_bucket` values); the last equals `count()`.
    pub fn cumulative_buckets(&self) -> [u64; BUCKETS] {
        let mut out = [0u64; BUCKETS];
        let mut acc = 0u64;
        for (o, b) in out.iter_mut().zip(self.buckets.iter()) {
            acc += b;
            *o = acc;
        }
        out
    }

    /// The value at quantile `q` (0.0..=1.0) in microseconds, from the hdr histogram (about 1%
    /// relative precision), never above the exact max. 0 when empty.
    pub fn quantile_micros(&self, q: f64) -> u64 {
        match &self.hdr {
            Some(h) if self.count > 0 => h.value_at_quantile(q).min(self.max_us.max(1)),
            _ => 0,
        }
    }

    /// Exact mean in microseconds (0 when empty).
    pub fn mean_micros(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn empty_has_no_heap_and_zero_quantiles() {
        let h = LatencyHistogram::new();
        assert!(h.hdr.is_none());
        assert_eq!(h.quantile_micros(0.5), 0);
        assert_eq!(h.mean_micros(), 0.0);
        assert_eq!(h.cumulative_buckets(), [0; BUCKETS]);
    }

    #[test]
    fn boundaries_are_inclusive_upper_bounds() {
        let mut h = LatencyHistogram::new();
        h.record(ms(1));
        let c = h.cumulative_buckets();
        assert_eq!(c[0], 0, "1 ms must not land in le=0.0005");
        assert_eq!(BUCKET_BOUNDS[1], "0.001");
        assert!(c[1..].iter().all(|&v| v == 1));

        // Just above a bound goes to the next bucket (exact, not via the µs truncation).
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_nanos(1_000_001));
        assert_eq!(h.buckets()[1], 0);
        assert_eq!(h.buckets()[2], 1);

        let mut h = LatencyHistogram::new();
        h.record(Duration::from_micros(500));
        assert_eq!(h.buckets()[0], 1);
        h.record(Duration::ZERO);
        assert_eq!(h.buckets()[0], 2);
    }

    #[test]
    fn overflow_goes_to_inf_and_hdr_clamps() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_secs(10));
        h.record(Duration::from_secs(11));
        h.record(Duration::from_secs(3600));
        h.record(Duration::MAX);
        assert_eq!(h.buckets()[BUCKETS - 2], 1);
        assert_eq!(h.buckets()[BUCKETS - 1], 3);
        assert_eq!(h.cumulative_buckets()[BUCKETS - 1], h.count());
        assert_eq!(h.count(), 4);
        // hdr values are clamped to 60 s; percentiles stay within range.
        assert!(h.quantile_micros(1.0) <= 61_000_000);
    }

    #[test]
    fn cumulative_and_sum() {
        let mut h = LatencyHistogram::new();
        for d in [ms(1), ms(3), ms(3), ms(200), ms(20_000)] {
            h.record(d);
        }
        let c = h.cumulative_buckets();
        assert!(c.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(c[BUCKETS - 1], 5);
        assert_eq!(c[1], 1); // le=0.001
        assert_eq!(c[3], 3); // le=0.005
        assert_eq!(c[8], 4); // le=0.25
        assert_eq!(c[13], 4); // le=10
        assert_eq!(h.sum_micros(), 20_207_000);
        assert_eq!(h.max_micros(), 20_000_000);
    }

    #[test]
    fn merged_quantiles_come_from_merged_distribution() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        for _ in 0..1000 {
            a.record(ms(1));
            b.record(ms(100));
        }
        let mut m = LatencyHistogram::new();
        m.merge(&a);
        m.merge(&b);
        assert_eq!(m.count(), 2000);
        let p50 = m.quantile_micros(0.5) as f64;
        let p90 = m.quantile_micros(0.9) as f64;
        assert!((p50 - 1_000.0).abs() / 1_000.0 < 0.01, "p50 {p50}");
        assert!((p90 - 100_000.0).abs() / 100_000.0 < 0.01, "p90 {p90}");
        assert_eq!(m.max_micros(), 100_000);
        assert!((m.mean_micros() - 50_500.0).abs() < 1e-9);
        // Merging an empty histogram changes nothing.
        let before = m.cumulative_buckets();
        m.merge(&LatencyHistogram::new());
        assert_eq!(m.cumulative_buckets(), before);
    }
}
