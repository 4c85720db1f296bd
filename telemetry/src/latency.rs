//! A fixed-memory, log-linear latency histogram.
//!
//! The layout follows HdrHistogram: values below `2^(SUB_BITS + 1)` ns each get an exact
//! bucket, and every power of two above that is split into `2^SUB_BITS` equal buckets. With
//! `SUB_BITS = 6` a bucket is at most 1/64 (≈1.6%) wider than its lower bound, which is the
//! whole precision budget; recording is a couple of bit operations and never allocates, so it is
//! cheap enough for the request path.

use std::time::Duration;

/// Bits of mantissa kept below each value's leading one bit: 64 buckets per power of two.
const SUB_BITS: u32 = 6;
const SUB_COUNT: usize = 1 << SUB_BITS;
/// Values below this many nanoseconds are stored exactly, one bucket per nanosecond, because the
/// log-linear rule needs `SUB_BITS + 1` significant bits before it starts dropping any.
const LINEAR_LIMIT: u64 = 1 << (SUB_BITS + 1);
/// Values are tracked up to `2^MAX_BITS` ns (≈68.7 s), comfortably above the 60 s any sane
/// request timeout allows; anything longer is clamped into the last bucket rather than dropped,
/// so counts stay exact even when a latency is not.
const MAX_BITS: u32 = 36;
const MAX_TRACKED_NANOS: u64 = (1 << MAX_BITS) - 1;
const BUCKETS: usize = LINEAR_LIMIT as usize + (MAX_BITS - SUB_BITS - 1) as usize * SUB_COUNT;

/// Latency distribution from 1 ns to ≈68 s with ≤1.6% relative error, in 16 KiB.
///
/// Quantiles are reported as the inclusive upper bound of the bucket they fall in, so a reported
/// p99 is never lower than the true one.
#[derive(Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    // Boxed so that moving a histogram (e.g. swapping out a per-second window) copies a pointer,
    // not 16 KiB.
    counts: Box<[u64]>,
    total: u64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
        }
    }

    /// Records one observation. Durations beyond the tracked range count in the last bucket.
    pub fn record(&mut self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.counts[bucket_of(nanos)] += 1;
        self.total += 1;
    }

    /// Number of recorded observations.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The latency at quantile `q` (clamped to `0..=1`; NaN counts as 0), as the upper bound of
    /// the bucket holding the `ceil(q * count)`-th smallest observation. An empty histogram
    /// answers [`Duration::ZERO`].
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 0.0 } else { q.clamp(0.0, 1.0) };
        // The float product is exact for any realistic count (< 2^53); rank 0 would mean "before
        // the first observation", so q = 0 reports the minimum instead.
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(upper_bound_of(bucket));
            }
        }
        // `total` is the sum of `counts`, so the walk always reaches `rank`; this is only the
        // type system's fallback.
        Duration::from_nanos(MAX_TRACKED_NANOS)
    }

    /// Adds every observation of `other` to `self`, as if they had been recorded here.
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// Forgets every observation, keeping the allocation.
    pub fn reset(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for LatencyHistogram {
    // Nearly 2 000 raw counters are noise in a debug dump; the summary is what a reader wants.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.total)
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .finish()
    }
}

fn bucket_of(nanos: u64) -> usize {
    let v = nanos.min(MAX_TRACKED_NANOS);
    if v < LINEAR_LIMIT {
        return v as usize;
    }
    let leading = 63 - v.leading_zeros(); // position of the top bit, >= SUB_BITS + 1
    let shift = leading - SUB_BITS;
    let sub = (v >> shift) as usize - SUB_COUNT;
    LINEAR_LIMIT as usize + (leading - SUB_BITS - 1) as usize * SUB_COUNT + sub
}

fn upper_bound_of(bucket: usize) -> u64 {
    if bucket < LINEAR_LIMIT as usize {
        return bucket as u64;
    }
    let above = bucket - LINEAR_LIMIT as usize;
    let shift = (above / SUB_COUNT) as u32 + 1;
    let sub = (above % SUB_COUNT) as u64;
    let lower = (SUB_COUNT as u64 + sub) << shift;
    lower + (1 << shift) - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_within(actual: Duration, expected: Duration, tolerance: f64) {
        let (a, e) = (actual.as_secs_f64(), expected.as_secs_f64());
        assert!(
            (a - e).abs() <= e * tolerance,
            "{actual:?} is not within {:.1}% of {expected:?}",
            tolerance * 100.0
        );
    }

    fn uniform_ms(range: std::ops::RangeInclusive<u64>) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for ms in range {
            h.record(Duration::from_millis(ms));
        }
        h
    }

    #[test]
    fn uniform_quantiles_are_within_two_percent() {
        let h = uniform_ms(1..=1000);
        assert_eq!(h.count(), 1000);
        assert_within(h.quantile(0.5), Duration::from_millis(500), 0.02);
        assert_within(h.quantile(0.99), Duration::from_millis(990), 0.02);
        assert_within(h.quantile(0.0), Duration::from_millis(1), 0.02);
        assert_within(h.quantile(1.0), Duration::from_millis(1000), 0.02);
    }

    #[test]
    fn quantile_is_an_upper_bound() {
        let h = uniform_ms(1..=1000);
        assert!(h.quantile(0.5) >= Duration::from_millis(500));
        assert!(h.quantile(0.99) >= Duration::from_millis(990));
    }

    #[test]
    fn empty_histogram_answers_zero() {
        let h = LatencyHistogram::new();
        assert_eq!(h.count(), 0);
        assert_eq!(h.quantile(0.5), Duration::ZERO);
        assert_eq!(h.quantile(1.0), Duration::ZERO);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut low = uniform_ms(1..=500);
        let high = uniform_ms(501..=1000);
        low.merge(&high);
        assert_eq!(low, uniform_ms(1..=1000));
        assert_within(low.quantile(0.5), Duration::from_millis(500), 0.02);
    }

    #[test]
    fn reset_empties() {
        let mut h = uniform_ms(1..=10);
        h.reset();
        assert_eq!(h, LatencyHistogram::new());
        assert_eq!(h.quantile(0.9), Duration::ZERO);
    }

    #[test]
    fn out_of_range_quantiles_and_durations_are_clamped() {
        let mut h = LatencyHistogram::new();
        h.record(Duration::from_secs(3600));
        h.record(Duration::ZERO);
        assert_eq!(h.quantile(-1.0), Duration::ZERO);
        assert_eq!(h.quantile(f64::NAN), Duration::ZERO);
        assert_eq!(h.quantile(2.0), Duration::from_nanos(MAX_TRACKED_NANOS));
    }

    #[test]
    fn every_value_lands_in_a_bucket_whose_bound_covers_it_within_precision() {
        let mut v = 1u64;
        while v < MAX_TRACKED_NANOS {
            for probe in [v, v + v / 3, v * 2 - 1] {
                let upper = upper_bound_of(bucket_of(probe));
                assert!(upper >= probe, "bucket of {probe} ends at {upper}");
                assert!(
                    (upper - probe) as f64 <= probe as f64 / SUB_COUNT as f64,
                    "bucket of {probe} ends too far away at {upper}"
                );
            }
            v *= 2;
        }
        assert_eq!(bucket_of(MAX_TRACKED_NANOS), BUCKETS - 1);
        assert_eq!(upper_bound_of(BUCKETS - 1), MAX_TRACKED_NANOS);
    }
}
