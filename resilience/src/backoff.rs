//! The wait before a retry, as Envoy computes it: fully jittered exponential backoff.

use std::time::Duration;

/// Envoy's base interval when a policy sets none.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(25);

/// How long to wait before each retry: retry `n` (1-based) waits a uniformly random time in
/// `[0, (2^n - 1) × base)`, never more than `max`; once that range passes `max` it stops
/// growing (Envoy's jittered exponential backoff; its
/// default max is ten times the base).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The base interval.
    pub base: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::with_base(DEFAULT_BACKOFF_BASE)
    }
}

impl Backoff {
    /// A backoff with `base` and Envoy's default cap of ten times it.
    pub fn with_base(base: Duration) -> Self {
        Backoff {
            base,
            max: base.saturating_mul(10),
        }
    }

    /// The wait before retry number `retry` (1 for the first retry), given a uniformly random
    /// `draw`; the same draw always gives the same wait, so tests pass a seeded one.
    pub fn delay(&self, retry: u32, draw: u64) -> Duration {
        let base = u64::try_from(self.base.as_micros()).unwrap_or(u64::MAX);
        let max = u64::try_from(self.max.as_micros()).unwrap_or(u64::MAX);
        if base == 0 {
            return Duration::ZERO;
        }
        // As Envoy's: the range grows with each retry until it first passes the cap, then
        // stays, so late retries still spread over [0, max] instead of all waiting max.
        let mut multiplier = 1u64;
        for _ in 1..retry {
            if multiplier.saturating_mul(base) > max {
                break;
            }
            multiplier = multiplier.saturating_mul(2).saturating_add(1);
        }
        let range = multiplier.saturating_mul(base);
        Duration::from_micros((draw % range).min(max))
    }
}

#[cfg(test)]
mod tests;
