//! Resilience decisions for the waypoint: which endpoint gets the next request, how long a
//! request and each attempt may take, whether a failed attempt is retried, and which faults a
//! request gets injected; later circuit breaking and outlier detection. Pure: no sockets, timers or tasks; clocks
//! and randomness are passed in.
#![forbid(unsafe_code)]

mod backoff;
pub mod destination_rule;
mod fault;
mod istio;
mod policy;
mod retry;
mod retry_on;
mod round_robin;
#[cfg(test)]
mod testing;
mod timeouts;

pub use istio::{
    parse_istio_duration, FaultAbort, FaultDelay, HttpFaultInjection, HttpRetry, Percent,
};
pub use policy::{PolicyIssue, RoutePolicy};
// Retries, backoff and fault injection (issue 11 items 1-3).
pub use backoff::{Backoff, DEFAULT_BACKOFF_BASE};
pub use fault::{AbortAnswer, AbortFault, DelayFault, FaultDecision, FaultPolicy, PER_MILLION};
pub use retry::{RetryPolicy, RetryState, DEFAULT_RETRY_ATTEMPTS, MAX_TRIES};
pub use retry_on::{AttemptFailure, ResponseView, RetryOn, RetryOnSet};
pub use round_robin::RoundRobin;
pub use timeouts::{parse_duration, Timeouts};
