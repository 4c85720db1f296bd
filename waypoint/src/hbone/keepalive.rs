//! The HTTP/2 PING keepalive both ends of an HBONE connection run: ping every
//! [`PING_INTERVAL`](crate::hbone::settings::PING_INTERVAL), give up when an answer takes
//! longer than [`PING_TIMEOUT`](crate::hbone::settings::PING_TIMEOUT).

use super::settings::{PING_INTERVAL, PING_TIMEOUT};

/// Why a keepalive stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveEnd {
    /// The peer left a PING unanswered past [`PING_TIMEOUT`]: the connection is dead.
    Unanswered,
    /// The connection itself is gone (closed, or failed on its own).
    ConnectionGone,
}

/// Pings the peer until it stops answering or the connection ends, and says which.
pub async fn keepalive(mut ping: h2::PingPong) -> KeepaliveEnd {
    loop {
        tokio::time::sleep(PING_INTERVAL).await;
        match tokio::time::timeout(PING_TIMEOUT, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return KeepaliveEnd::ConnectionGone,
            Err(_) => return KeepaliveEnd::Unanswered,
        }
    }
}
