//! waypoint: an L7 proxy for Istio ambient mesh. This crate owns the process — config
//! sources, snapshot assembly, listeners and the pingora proxy that applies the decisions of
//! the `routing`, `resilience`, `authz` and `telemetry` crates.
#![forbid(unsafe_code)]

/// The admin (`/config_dump`) and readiness (`/healthz/ready`) listeners.
pub mod admin;
/// Starting and draining a whole waypoint from its [`app::Options`].
pub mod app;
/// `waypoint check`: validating a config folder without serving it.
pub mod check;
/// A downstream stream wrapper that gathers a response's writes into one send.
pub mod coalesce;
/// Reading the config folder's Kubernetes objects.
pub mod config;
/// `waypoint demo`: the Kiali Travel Demo played through a real waypoint on loopback (cargo
/// feature `demo`, off in the production build).
#[cfg(feature = "demo")]
pub mod demo;
/// Choosing the endpoint of a service port, for the HTTP and TCP paths alike.
pub mod endpoint;
/// `waypoint explain`: what the waypoint would do with one request, and why.
pub mod explain;
/// HBONE, the mesh's mTLS HTTP/2 CONNECT transport, inbound and outbound.
pub mod hbone;
/// The waypoint's workload certificate and the mesh roots, from files or the Istio CA.
pub mod identity;
/// Accept loops that feed connections to the pingora proxy, and their drain.
pub mod listener;
/// The configuration in force, reloaded and swapped as the folder changes.
pub mod live;
/// The pingora `ProxyHttp` implementation: each request's phases, step by step.
pub mod proxy;
/// The I/O side of security: JWKS fetching, JWT authentication, ext_authz calls.
pub mod security;
/// The compiled, immutable view of the configuration that a request reads.
pub mod snapshot;
/// Folder watches that reload the configuration and rotate the certificate.
pub mod watch;
