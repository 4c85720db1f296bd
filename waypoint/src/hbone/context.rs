//! What the HBONE layer knows about a tunnel — the peer's identity, the CONNECT target, the
//! `baggage`/`forwarded`/`traceparent` headers — made available to every pingora phase.
//!
//! pingora hands phases the stream's `SocketDigest` (shared, behind an `Arc`) but no user
//! data, so each tunnel registers its context under its digest's address; a phase looks it up
//! with [`TunnelRegistry::lookup`]. The registration is removed when the tunnel's stream is
//! dropped, and a digest pingora keeps a little longer simply finds nothing (no identity).

use crate::snapshot::Destination;
use authz::Identity;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::SocketDigest;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

/// One tunnel's facts.
#[derive(Debug, Clone)]
pub struct TunnelContext {
    /// The peer's SPIFFE identity from its client certificate: the request's source principal.
    pub source: Identity,
    /// The TCP peer of the HBONE connection (a ztunnel, a sidecar).
    pub peer_addr: SocketAddr,
    /// The original client, from `forwarded: for=...` when the peer sent it.
    pub client_addr: Option<SocketAddr>,
    /// The CONNECT `:authority`, as sent.
    pub authority: String,
    pub baggage: Option<String>,
    pub traceparent: Option<String>,
    /// What the authority resolved to when the tunnel was accepted.
    pub destination: Destination,
    /// The `x-forwarded-client-cert` value requests of this tunnel carry upstream, built on the
    /// first request: a long-lived tunnel carries thousands of requests, and neither identity
    /// in it changes (certificate rotation keeps the waypoint's SPIFFE ID). None when the
    /// identities do not make a valid header value.
    pub xfcc: OnceLock<Option<http::HeaderValue>>,
}

#[derive(Debug, Default)]
pub struct TunnelRegistry {
    entries: Mutex<HashMap<usize, Arc<TunnelContext>>>,
}

fn key(digest: &Arc<SocketDigest>) -> usize {
    Arc::as_ptr(digest) as usize
}

impl TunnelRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers `ctx` for the stream whose digest is `digest`, until the guard is dropped.
    pub fn register(
        self: &Arc<Self>,
        digest: &Arc<SocketDigest>,
        ctx: Arc<TunnelContext>,
    ) -> Registration {
        let k = key(digest);
        if let Ok(mut map) = self.entries.lock() {
            map.insert(k, ctx);
        }
        Registration {
            registry: self.clone(),
            key: k,
        }
    }

    pub fn lookup(&self, digest: &Arc<SocketDigest>) -> Option<Arc<TunnelContext>> {
        self.entries.lock().ok()?.get(&key(digest)).cloned()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Removes a tunnel's context when the tunnel ends.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<TunnelRegistry>,
    key: usize,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut map) = self.registry.entries.lock() {
            map.remove(&self.key);
        }
    }
}

/// A socket digest for a tunnel: addresses only (there is no file descriptor to query).
pub fn tunnel_digest(
    peer: SocketAddr,
    local: SocketAddr,
    original_dst: SocketAddr,
) -> SocketDigest {
    // -1: no descriptor; the address cells are filled so pingora never asks the kernel.
    let digest = SocketDigest::from_raw_fd(-1);
    let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(peer)));
    let _ = digest.local_addr.set(Some(PingoraAddr::Inet(local)));
    let _ = digest
        .original_dst
        .set(Some(PingoraAddr::Inet(original_dst)));
    digest
}
