//! What the HBONE layer knows about a tunnel — the peer's identity, the CONNECT target, the
//! `baggage`/`forwarded`/`traceparent` headers — made available to every pingora phase.
//!
//! pingora hands phases the stream's `SocketDigest` (shared, behind an `Arc`) but no user data, so
//! each tunnel registers its context under its digest's address; a phase looks it up with
//! [`TunnelRegistry::lookup`](crate::hbone::context::TunnelRegistry::lookup). The registration is
//! removed when the tunnel's stream is dropped, and a digest pingora keeps a little longer simply
//! finds nothing (no identity).

use super::sharded::ShardedMap;
use crate::snapshot::Destination;
use authz::Identity;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::SocketDigest;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

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
    /// The CONNECT's `baggage` header (W3C baggage; Istio carries peer metadata in it).
    pub baggage: Option<String>,
    /// The CONNECT's `traceparent` header, so the tunnel's requests join the caller's trace.
    pub traceparent: Option<String>,
    /// What the authority resolved to when the tunnel was accepted.
    pub destination: Destination,
    /// The `x-forwarded-client-cert` value requests of this tunnel carry upstream, built on the
    /// first request: a long-lived tunnel carries thousands of requests, and neither identity
    /// in it changes (certificate rotation keeps the waypoint's SPIFFE ID). None when the
    /// identities do not make a valid header value.
    pub xfcc: OnceLock<Option<http::HeaderValue>>,
}

/// The contexts of the open tunnels, by the address of their stream's socket digest.
///
/// Every request on a tunnel looks its context up, so the map is sharded: lookups from
/// different tunnels lock different shards, and only for the lookup.
#[derive(Debug, Default)]
pub struct TunnelRegistry {
    entries: ShardedMap<usize, Arc<TunnelContext>>,
}

fn key(digest: &Arc<SocketDigest>) -> usize {
    Arc::as_ptr(digest) as usize
}

impl TunnelRegistry {
    /// An empty registry, shared by the HBONE listener (which registers) and the proxy (which
    /// looks up).
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers `ctx` for the stream whose digest is `digest`, until the guard is dropped.
    pub fn register(
        self: &Arc<Self>,
        digest: &Arc<SocketDigest>,
        ctx: Arc<TunnelContext>,
    ) -> Registration {
        self.entries.insert(key(digest), ctx);
        Registration {
            registry: self.clone(),
            digest: digest.clone(),
        }
    }

    /// The context of the tunnel whose stream has `digest`, if it is still open.
    pub fn lookup(&self, digest: &Arc<SocketDigest>) -> Option<Arc<TunnelContext>> {
        self.entries.read(&key(digest), Arc::clone)
    }

    /// How many tunnels are registered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no tunnel is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Removes a tunnel's context when the tunnel ends.
#[derive(Debug)]
pub struct Registration {
    registry: Arc<TunnelRegistry>,
    /// Held so that the digest's address, the key, cannot be freed and handed to another
    /// tunnel's digest while this registration lives: removing the key would then remove the
    /// other tunnel's context.
    digest: Arc<SocketDigest>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.entries.remove(&key(&self.digest));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Destination;

    fn context(n: usize) -> Arc<TunnelContext> {
        let peer = SocketAddr::from(([127, 0, 0, 1], 10_000 + n as u16));
        Arc::new(TunnelContext {
            source: Identity::new("cluster.local", "ns", &format!("sa-{n}")),
            peer_addr: peer,
            client_addr: None,
            authority: format!("10.0.0.1:{n}"),
            baggage: None,
            traceparent: None,
            destination: Destination::Workload {
                addr: peer,
                hbone: None,
            },
            xfcc: OnceLock::new(),
        })
    }

    /// Threads register, look up and drop tunnels at once; each sees exactly its own context
    /// all along, and nothing is left behind.
    #[test]
    fn concurrent_registrations_and_lookups_see_their_own_tunnel() {
        let registry = TunnelRegistry::new();
        let local = SocketAddr::from(([127, 0, 0, 1], 15008));
        std::thread::scope(|scope| {
            for thread in 0..8 {
                let registry = &registry;
                scope.spawn(move || {
                    for round in 0..200 {
                        let n = thread * 1000 + round;
                        let digest = Arc::new(tunnel_digest(local, local, local));
                        let registration = registry.register(&digest, context(n));
                        for _ in 0..10 {
                            let found = registry.lookup(&digest).expect("registered");
                            assert_eq!(found.authority, format!("10.0.0.1:{n}"));
                        }
                        drop(registration);
                        assert!(registry.lookup(&digest).is_none(), "tunnel {n} outlived");
                    }
                });
            }
        });
        assert!(registry.is_empty(), "{} left", registry.len());
    }

    /// A digest freed and reallocated at the same address cannot lose a newer tunnel's
    /// context when the older registration ends: the registration keeps its digest alive.
    #[test]
    fn a_registration_keeps_its_key_from_being_reused() {
        let registry = TunnelRegistry::new();
        let local = SocketAddr::from(([127, 0, 0, 1], 15008));
        let first = Arc::new(tunnel_digest(local, local, local));
        let old = registry.register(&first, context(1));
        let first_addr = Arc::as_ptr(&first);
        drop(first);
        let second = Arc::new(tunnel_digest(local, local, local));
        assert_ne!(Arc::as_ptr(&second), first_addr);
        let _new = registry.register(&second, context(2));
        drop(old);
        let found = registry
            .lookup(&second)
            .expect("the newer tunnel is still there");
        assert_eq!(found.authority, "10.0.0.1:2");
    }
}
