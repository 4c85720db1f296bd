//! Outlier detection (passive health checking), as Envoy does it for the `outlierDetection`
//! istiod generates: consecutive 5xx / gateway errors / local-origin failures eject an endpoint
//! at once, for `baseEjectionTime` × the number of times it was ejected, within
//! `maxEjectionPercent` of the cluster (one endpoint may always be ejected).
//!
//! The state is atomics per endpoint and per cluster, updated by the request that saw the
//! outcome; nothing locks. Time is passed in as a `Duration` since any fixed epoch.
//!
//! An ejected endpoint returns *lazily*: the first endpoint choice after its ejection time has
//! passed sees it available again, instead of a timer sweep every `interval` as Envoy does.
//! It needs no background task and returns the endpoint exactly after its ejection time rather
//! than up to one interval later; `interval` still paces how the ejection multiplier decays
//! (one step per interval spent healthy, as Envoy decrements it at each sweep).

use serde::Serialize;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::destination_rule::OutlierDetection;
use crate::traffic_policy::{duration_field, Findings};

/// Envoy's cap on one ejection (`max_ejection_time` default), unless the base is longer.
const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// `outlierDetection` compiled, with istiod's and Envoy's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutlierPolicy {
    /// 5xx responses in a row that eject (0: off). Default 5.
    pub consecutive_5xx: u32,
    /// 502/503/504 in a row that eject (0: off). Off unless set (Envoy enforces it 0%).
    pub consecutive_gateway: u32,
    /// Local-origin failures (connect failure, timeout, reset) are counted on their own
    /// instead of as 5xx.
    pub split_local_origin: bool,
    /// With the split: local-origin failures in a row that eject (0: off). Default 5.
    pub consecutive_local_origin: u32,
    /// Sweep interval (default 10s): paces the decay of the ejection multiplier.
    pub interval: Duration,
    /// Base ejection time (default 30s).
    pub base_ejection: Duration,
    /// Most of the cluster ejected at once, percent (default 10).
    pub max_ejection_percent: u32,
    /// Below this share of available endpoints, ejections are ignored (panic), percent; 0
    /// (istiod's default) never panics.
    pub min_health_percent: u32,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        OutlierPolicy {
            consecutive_5xx: 5,
            consecutive_gateway: 0,
            split_local_origin: false,
            consecutive_local_origin: 5,
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 10,
            min_health_percent: 0,
        }
    }
}

impl OutlierPolicy {
    /// Compiles `outlierDetection` at `field` as istiod translates it.
    pub fn compile(spec: &OutlierDetection, field: &str, issues: &mut Findings) -> Self {
        let mut p = OutlierPolicy::default();
        let f = |name: &str| format!("{field}.{name}");
        if let Some(v) = spec.consecutive_errors {
            issues.warn(
                f("consecutiveErrors"),
                "deprecated: use consecutiveGatewayErrors (applied as such, with 5xx errors off)",
            );
            if v > 0 {
                p.consecutive_gateway = v.unsigned_abs();
                p.consecutive_5xx = 0;
            }
        }
        if let Some(v) = spec.consecutive_5xx_errors {
            p.consecutive_5xx = v;
        }
        if let Some(v) = spec.consecutive_gateway_errors {
            p.consecutive_gateway = v;
        }
        p.split_local_origin = spec.split_external_local_origin_errors.unwrap_or(false);
        if let Some(v) = spec.consecutive_local_origin_failures.filter(|&v| v > 0) {
            p.consecutive_local_origin = v;
        }
        let positive =
            |value: Option<&String>, name: &str, issues: &mut Findings| match duration_field(
                value.map(String::as_str),
                &f(name),
                issues,
            ) {
                Some(d) if d < Duration::from_millis(1) => {
                    issues.error(f(name), "must be at least 1ms");
                    None
                }
                other => other,
            };
        if let Some(d) = positive(spec.interval.as_ref(), "interval", issues) {
            p.interval = d;
        }
        if let Some(d) = positive(spec.base_ejection_time.as_ref(), "baseEjectionTime", issues) {
            p.base_ejection = d;
        }
        if let Some(v) = percent(spec.max_ejection_percent, &f("maxEjectionPercent"), issues) {
            // istiod only sets it when positive: 0 keeps Envoy's default of 10.
            if v > 0 {
                p.max_ejection_percent = v;
            }
        }
        if let Some(v) = percent(spec.min_health_percent, &f("minHealthPercent"), issues) {
            p.min_health_percent = v;
        }
        p
    }

    /// How long the `n`th ejection in a row lasts.
    fn ejection_time(&self, n: u32) -> Duration {
        let cap = self.base_ejection.max(MAX_EJECTION_TIME);
        self.base_ejection.saturating_mul(n.max(1)).min(cap)
    }
}

fn percent(value: Option<i32>, field: &str, issues: &mut Findings) -> Option<u32> {
    match value {
        Some(v) if !(0..=100).contains(&v) => {
            issues.error(field, format!("{v} is not a percentage (0 to 100)"));
            None
        }
        Some(v) => Some(v.unsigned_abs()),
        None => None,
    }
}

/// How one attempt at an endpoint ended, as the detector counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// The waypoint could not connect to it.
    ConnectFailed,
    /// It did not answer in time.
    Timeout,
    /// It reset or closed the connection before answering.
    Reset,
}

impl Outcome {
    /// Envoy maps a local-origin failure, when not split, to the status it answers with.
    fn as_status(self) -> u16 {
        match self {
            Outcome::Status(s) => s,
            Outcome::Timeout => 504,
            Outcome::ConnectFailed | Outcome::Reset => 503,
        }
    }

    fn local_origin(self) -> bool {
        !matches!(self, Outcome::Status(_))
    }
}

/// The detector's view of one endpoint; shared, kept across reloads while the endpoint stays.
#[derive(Debug, Default)]
pub struct EndpointHealth {
    errors_5xx: AtomicU32,
    errors_gateway: AtomicU32,
    errors_local: AtomicU32,
    /// When the ejection ends, in nanoseconds since the epoch; 0 when not ejected.
    ejected_until: AtomicU64,
    /// Ejections in a row (decays by one per healthy interval).
    ejections: AtomicU32,
    /// When it last returned, in nanoseconds since the epoch.
    returned_at: AtomicU64,
}

/// What a change of an endpoint's state was, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// Ejected until `until` (time since the epoch), the `count`th time in a row.
    Ejected {
        /// When it returns.
        until: Duration,
        /// Ejections in a row, this one included.
        count: u32,
        /// Which counter reached its threshold.
        reason: &'static str,
    },
    /// Back in the pool.
    Returned,
}

/// The detector of one cluster: how many of its endpoints are ejected now.
#[derive(Debug, Default)]
pub struct OutlierDetector {
    ejected: AtomicU32,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

impl EndpointHealth {
    /// A healthy endpoint.
    pub fn new() -> Self {
        Self::default()
    }

    /// When its ejection ends, if it is ejected (or its time passed but nobody looked yet).
    pub fn ejected_until(&self) -> Option<Duration> {
        match self.ejected_until.load(Ordering::Acquire) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// Ejections in a row so far.
    pub fn ejections(&self) -> u32 {
        self.ejections.load(Ordering::Acquire)
    }
}

impl OutlierDetector {
    /// A detector with nothing ejected.
    pub fn new() -> Self {
        Self::default()
    }

    /// Endpoints ejected now (returns not yet seen included).
    pub fn ejected_count(&self) -> u32 {
        self.ejected.load(Ordering::Acquire)
    }

    /// Whether `ep` is in the pool at `now`; the first look after its ejection time returns it
    /// (and says so, once, for the log).
    pub fn available(&self, ep: &EndpointHealth, now: Duration) -> (bool, Option<Transition>) {
        let until = ep.ejected_until.load(Ordering::Acquire);
        if until == 0 {
            return (true, None);
        }
        if nanos(now) < until {
            return (false, None);
        }
        // Only the caller that clears the deadline counts the return.
        if ep
            .ejected_until
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            ep.returned_at.store(nanos(now), Ordering::Release);
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            for c in [&ep.errors_5xx, &ep.errors_gateway, &ep.errors_local] {
                c.store(0, Ordering::Release);
            }
            return (true, Some(Transition::Returned));
        }
        (true, None)
    }

    /// Counts `outcome` of an attempt at `ep`, one of `hosts` endpoints of the cluster, and
    /// ejects it when a counter reaches its threshold and the cluster may lose one more.
    pub fn record(
        &self,
        policy: &OutlierPolicy,
        ep: &EndpointHealth,
        outcome: Outcome,
        hosts: usize,
        now: Duration,
    ) -> Option<Transition> {
        let bump = |c: &AtomicU32| c.fetch_add(1, Ordering::AcqRel) + 1;
        let reset = |c: &AtomicU32| c.store(0, Ordering::Release);
        let mut reason = None;
        if policy.split_local_origin && outcome.local_origin() {
            let n = bump(&ep.errors_local);
            if policy.consecutive_local_origin > 0 && n >= policy.consecutive_local_origin {
                reason = Some("consecutive local-origin failures");
            }
        } else {
            if policy.split_local_origin {
                // A response proves the endpoint reachable: local-origin failures stop counting.
                reset(&ep.errors_local);
            }
            let status = outcome.as_status();
            if (500..600).contains(&status) {
                let n = bump(&ep.errors_5xx);
                if policy.consecutive_5xx > 0 && n >= policy.consecutive_5xx {
                    reason = Some("consecutive 5xx errors");
                }
            } else {
                reset(&ep.errors_5xx);
            }
            if matches!(status, 502..=504) {
                let n = bump(&ep.errors_gateway);
                if policy.consecutive_gateway > 0 && n >= policy.consecutive_gateway {
                    reason = reason.or(Some("consecutive gateway errors"));
                }
            } else {
                reset(&ep.errors_gateway);
            }
        }
        self.eject(policy, ep, reason?, hosts, now)
    }

    fn eject(
        &self,
        policy: &OutlierPolicy,
        ep: &EndpointHealth,
        reason: &'static str,
        hosts: usize,
        now: Duration,
    ) -> Option<Transition> {
        if ep.ejected_until.load(Ordering::Acquire) != 0 {
            return None;
        }
        let hosts = u64::try_from(hosts.max(1)).unwrap_or(u64::MAX);
        let max = u64::from(policy.max_ejection_percent.min(100));
        // Envoy: eject while (ejected + 1) stays within the percentage, and always allow one.
        self.ejected
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                let allowed = n == 0 || 100 * (u64::from(n) + 1) <= max * hosts;
                allowed.then_some(n + 1)
            })
            .ok()?;
        let healthy_intervals = match ep.returned_at.load(Ordering::Acquire) {
            0 => u64::MAX,
            at => nanos(now).saturating_sub(at) / nanos(policy.interval),
        };
        let decayed = u64::from(ep.ejections())
            .saturating_sub(healthy_intervals)
            .min(u64::from(u32::MAX - 1));
        let count = u32::try_from(decayed).unwrap_or(u32::MAX - 1) + 1;
        let until = now.saturating_add(policy.ejection_time(count));
        if ep
            .ejected_until
            .compare_exchange(0, nanos(until), Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another request ejected it first: give back the place taken above.
            self.ejected.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        ep.ejections.store(count, Ordering::Release);
        for c in [&ep.errors_5xx, &ep.errors_gateway, &ep.errors_local] {
            c.store(0, Ordering::Release);
        }
        Some(Transition::Ejected {
            until,
            count,
            reason,
        })
    }

    /// Takes `ep` out of the ejected count when it leaves the cluster while ejected.
    pub fn forget(&self, ep: &EndpointHealth) {
        let until = ep.ejected_until.load(Ordering::Acquire);
        if until != 0
            && ep
                .ejected_until
                .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.ejected.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether the cluster is in panic: fewer than `min_health_percent` of its `hosts` are
    /// available, so every endpoint is used as if none were ejected (Envoy's panic threshold).
    pub fn panic(&self, policy: &OutlierPolicy, available: usize, hosts: usize) -> bool {
        policy.min_health_percent > 0
            && (available as u64) * 100 < u64::from(policy.min_health_percent) * hosts as u64
    }
}

#[cfg(test)]
mod tests;
