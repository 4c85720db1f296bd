//! How a demo pod misbehaves, so that the waypoint's resilience policies have something to do:
//! a share of its requests answered 503 (an unhealthy replica) and a latency per answer (a slow
//! service). Set per Pod with annotations the demo's backends read and the waypoint ignores.
//!
//! Which requests fail and how long each one waits are drawn from the pod's name and the
//! request's number, not from a random source: a run is reproducible, and the tests can count.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};

/// `demo.waypoint.dev/fail-percent: "50"`: the pod answers 503 to that share of its requests.
pub const FAIL_PERCENT: &str = "demo.waypoint.dev/fail-percent";
/// `demo.waypoint.dev/latency-ms: "5-40"` (or `"20"`): the pod waits that many milliseconds
/// before each answer, drawn uniformly from the range per request.
pub const LATENCY_MS: &str = "demo.waypoint.dev/latency-ms";

/// What a pod's `demo.waypoint.dev/*` annotations ask of it; the default is a healthy, fast pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Misbehaviour {
    /// Share of requests answered 503, in percent (0 to 100).
    pub fail_percent: u8,
    /// Shortest and longest wait before an answer, in milliseconds.
    pub latency_ms: Option<(u64, u64)>,
}

/// What one request gets from a misbehaving pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Answer 503 instead of the service's answer.
    pub fail: bool,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Misbehaviour {
    /// Reads the annotations; an unparsable value is an error naming the annotation and the
    /// expected form, never a silently healthy pod.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let fail_percent = match annotations.get(FAIL_PERCENT) {
            None => 0,
            Some(value) => match value.trim().parse::<u8>() {
                Ok(n) if n <= 100 => n,
                _ => bail!("annotation {FAIL_PERCENT}: {value:?} is not a percentage; use a whole number from 0 to 100"),
            },
        };
        let latency_ms = annotations
            .get(LATENCY_MS)
            .map(|value| {
                parse_range(value).with_context(|| {
                    format!("annotation {LATENCY_MS}: {value:?} is not a latency; use milliseconds like \"20\" or a range like \"5-40\"")
                })
            })
            .transpose()?;
        Ok(Self {
            fail_percent,
            latency_ms,
        })
    }

    /// Whether the pod misbehaves at all.
    pub fn is_healthy(&self) -> bool {
        *self == Self::default()
    }

    /// The fate of request number `n` (from 0) at the pod whose name hashes to `seed`.
    pub fn decide(&self, seed: u64, n: u64) -> Decision {
        let draw = mix(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let fail = draw % 100 < u64::from(self.fail_percent);
        let delay = match self.latency_ms {
            Some((low, high)) => {
                // A second, independent draw, so a slow answer is not more likely to fail.
                let spread = high - low + 1;
                Duration::from_millis(low + mix(draw) % spread)
            }
            None => Duration::ZERO,
        };
        Decision { fail, delay }
    }
}

/// `"20"` or `"5-40"` (low ≤ high).
fn parse_range(value: &str) -> anyhow::Result<(u64, u64)> {
    let (low, high) = match value.split_once('-') {
        Some((low, high)) => (low.trim().parse()?, high.trim().parse()?),
        None => {
            let n = value.trim().parse()?;
            (n, n)
        }
    };
    if low > high {
        bail!("the range starts above its end");
    }
    Ok((low, high))
}

/// SplitMix64's finaliser: spreads consecutive request numbers over the whole `u64` range, so
/// that `% 100` gives an even share (a plain FNV of a counter repeats patterns in its low bits).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests;
