//! Resilience decisions for the waypoint: which endpoint gets the next request, and later
//! retries, timeouts, fault injection, circuit breaking and outlier detection. Pure: no
//! sockets, timers or tasks; clocks and randomness are passed in.
#![forbid(unsafe_code)]

mod round_robin;

pub use round_robin::RoundRobin;
