//! Resilience decisions for the waypoint: which endpoint gets the next request, how long a
//! request and each attempt may take, whether a failed attempt is retried, which faults a
//! request gets injected, and what a DestinationRule asks of a cluster (load balancing, circuit
//! breaking, outlier detection). Pure: no sockets, timers or tasks; clocks and randomness are
//! passed in.
#![forbid(unsafe_code)]

mod backoff;
pub mod destination_rule;
mod fault;
mod istio;
mod policy;
mod retry;
mod retry_on;
#[cfg(test)]
mod testing;
mod timeouts;

// DestinationRule: cluster policy, load balancing, circuit breaking, outlier detection.
mod breaker;
mod lb;
mod outlier;
mod pool;
mod traffic_policy;

pub use istio::{
    parse_istio_duration, FaultAbort, FaultDelay, HttpFaultInjection, HttpRetry, Percent,
};
pub use policy::{PolicyIssue, RoutePolicy};
// Retries, backoff and fault injection (issue 11 items 1-3).
pub use backoff::{Backoff, DEFAULT_BACKOFF_BASE};
pub use fault::{AbortAnswer, AbortFault, DelayFault, FaultDecision, FaultPolicy, PER_MILLION};
pub use retry::{RetryPolicy, RetryState, DEFAULT_RETRY_ATTEMPTS, MAX_TRIES};
pub use retry_on::{AttemptFailure, ResponseView, RetryOn, RetryOnSet};
pub use timeouts::{parse_duration, Timeouts};

// DestinationRule: cluster policy, load balancing, circuit breaking, outlier detection.
pub use breaker::{Admission, Admitted, BreakerGuard, CircuitBreaker, Resource};
pub use lb::{
    affinity_cookie_value, set_cookie_value, stable_hash, AffinityCookie, Algorithm, Balancer,
    HashKey, LbPolicy, PickInput, Warmup,
};
pub use outlier::{EndpointHealth, Outcome, OutlierDetector, OutlierPolicy, Transition};
pub use pool::{Keepalive, PoolLimits, DEFAULT_CONNECT_TIMEOUT};
pub use traffic_policy::{ClusterPolicy, DestinationPolicy, Findings};
