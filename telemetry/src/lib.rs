//! Telemetry for the waypoint: what it measures about the traffic it carries.
//!
//! Today that is only [`LatencyHistogram`], a fixed-memory latency distribution used by the
//! demo traffic generator and, later, by the request metrics. Istio standard metrics, OTLP spans
//! and access logs will live here too, so that the proxy emits telemetry from one place.
#![forbid(unsafe_code)]

mod latency;

pub use latency::LatencyHistogram;
