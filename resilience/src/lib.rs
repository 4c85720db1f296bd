//! Resilience decisions for the waypoint: which endpoint gets the next request, how long a
//! request and each attempt may take, whether a failed attempt is retried, what a
//! DestinationRule asks of a cluster (load balancing, circuit breaking, outlier detection).
//! Pure: no sockets, timers or tasks; clocks and randomness are passed in.
#![forbid(unsafe_code)]

pub mod destination_rule;
mod istio;
mod policy;
mod retry;
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
pub use retry::{RetryPolicy, RetryState, DEFAULT_RETRY_ATTEMPTS, MAX_TRIES};
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
