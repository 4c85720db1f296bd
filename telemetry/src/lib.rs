//! Telemetry for the waypoint: what it measures about the traffic it carries.
//!
//! Today that is [`LatencyHistogram`], a fixed-memory latency distribution used by the demo
//! traffic generator and, later, by the request metrics, and [`ResponseFlag`], Envoy's names
//! for why a request ended as it did. Istio standard metrics, OTLP spans
//! and access logs will live here too, so that the proxy emits telemetry from one place.
#![forbid(unsafe_code)]

mod flags;
mod latency;

pub use flags::{ResponseFlag, REASON_HEADER};
pub use latency::LatencyHistogram;
