//! The HBONE layer's tuning, in one place, shared by the listener, the upstream pool, the TCP
//! forwarder and the proxy's plain-TCP upstreams. Windows and keepalive follow ztunnel, so a
//! waypoint between two ztunnels neither throttles nor drops what they would keep.

use std::time::Duration;

/// How long dialling an upstream (an HBONE peer's or an endpoint's TCP port) may take. Envoy's
/// cluster default is 10 s; 5 s fails a dead pod over to a live one sooner, which matters
/// more to a mesh hop than a slow-starting peer does.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a TLS handshake may take, in either direction. A peer that accepts TCP but never
/// answers TLS would otherwise hold a connection (and, upstream, every request waiting for that
/// dial) forever.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ztunnel's HTTP/2 stream window: 4 MiB lets one tunnel fill a fast link across a few
/// milliseconds of round trip without waiting for WINDOW_UPDATEs.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;

/// ztunnel's HTTP/2 connection window: 16 MiB, so four busy tunnels on one connection do not
/// starve each other.
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// ztunnel's PING cadence: every 10 s an idle connection proves it is alive, well inside the
/// idle timeouts of NATs and load balancers on the path.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);

/// ztunnel's PING timeout: a connection whose peer leaves a PING unanswered for 20 s (two
/// intervals) is dead, and is closed instead of swallowing new tunnels.
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);
