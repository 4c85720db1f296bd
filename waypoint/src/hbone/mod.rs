//! HBONE — HTTP-Based Overlay Network Environment — the mesh's transport: mTLS HTTP/2
//! CONNECT tunnels on port 15008, in (from ztunnel or sidecars) and out (to ambient pods).
//!
//! How a tunnel's facts reach the proxy: each accepted CONNECT stream becomes a pingora `Stream` (a
//! `VirtualSocketStream` over the h2 stream) whose socket digest carries the client address, the
//! waypoint's address and the original destination; the peer's SPIFFE identity, the CONNECT target
//! and the `baggage`/`forwarded`/`traceparent` headers are registered in the
//! [`context::TunnelRegistry`](crate::hbone::context::TunnelRegistry) under that digest and looked
//! up by the proxy in `early_request_filter`, so every later phase has them in its request context.

/// Outbound: tunnels to ambient pods over pooled mTLS HTTP/2 connections.
pub mod client;
/// A tunnel's facts (peer identity, CONNECT target, headers), found by the proxy per request.
pub mod context;
/// The HTTP/2 PING keepalive both directions run.
pub mod keepalive;
/// Inbound: the port 15008 listener that accepts and dispatches CONNECT tunnels.
pub mod server;
/// Timeouts, windows and keepalive timing shared by every HBONE connection.
pub mod settings;
mod sharded;
/// The L4 path: TCP tunnels joined byte for byte to an endpoint.
pub mod tcp;
/// The mTLS configs both directions use, with SPIFFE identity checks.
pub mod tls;
/// One CONNECT stream as an `AsyncRead + AsyncWrite` byte stream.
pub mod tunnel;
