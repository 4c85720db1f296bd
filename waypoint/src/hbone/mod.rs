//! HBONE — HTTP-Based Overlay Network Environment — the mesh's transport: mTLS HTTP/2
//! CONNECT tunnels on port 15008, in (from ztunnel or sidecars) and out (to ambient pods).
//!
//! How a tunnel's facts reach the proxy: each accepted CONNECT stream becomes a pingora
//! `Stream` (a `VirtualSocketStream` over the h2 stream) whose socket digest carries the
//! client address, the waypoint's address and the original destination; the peer's SPIFFE
//! identity, the CONNECT target and the `baggage`/`forwarded`/`traceparent` headers are
//! registered in the [`context::TunnelRegistry`] under that digest and looked up by the proxy
//! in `early_request_filter`, so every later phase has them in its request context.

pub mod client;
pub mod context;
pub mod keepalive;
pub mod server;
pub mod settings;
mod sharded;
pub mod tcp;
pub mod tls;
pub mod tunnel;
