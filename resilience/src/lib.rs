//! Resilience decisions for the waypoint: which endpoint gets the next request, how long a
//! request and each attempt may take, and whether a failed attempt is retried; later fault
//! injection, circuit breaking and outlier detection. Pure: no sockets, timers or tasks; clocks
//! and randomness are passed in.
#![forbid(unsafe_code)]

pub mod destination_rule;
mod istio;
mod policy;
mod retry;
mod round_robin;
mod timeouts;

pub use istio::{
    parse_istio_duration, FaultAbort, FaultDelay, HttpFaultInjection, HttpRetry, Percent,
};
pub use policy::{PolicyIssue, RoutePolicy};
pub use retry::{RetryPolicy, RetryState, DEFAULT_RETRY_ATTEMPTS, MAX_TRIES};
pub use round_robin::RoundRobin;
pub use timeouts::{parse_duration, Timeouts};
