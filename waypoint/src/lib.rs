//! waypoint: an L7 proxy for Istio ambient mesh. This crate owns the process — config
//! sources, snapshot assembly, listeners and the pingora proxy that applies the decisions of
//! the `routing`, `resilience`, `authz` and `telemetry` crates.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod check;
pub mod coalesce;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod endpoint;
pub mod hbone;
pub mod identity;
pub mod listener;
pub mod live;
pub mod proxy;
pub mod snapshot;
pub mod watch;
