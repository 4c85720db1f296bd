//! The HBONE client: tunnels to ambient pods over pooled, multiplexed mTLS HTTP/2 connections, as
//! ztunnel does. A connection is keyed by destination address and the identity it must present,
//! carries up to [`STREAMS_PER_CONNECTION`](crate::hbone::client::STREAMS_PER_CONNECTION) tunnels,
//! is kept alive with PING and dropped from the pool on GOAWAY or error.
//!
//! Concurrency: a request finds its peer in a sharded map and a connection with room in a
//! lock-free list, and reserves its stream slot with one atomic operation. Only a request that
//! finds no room takes the peer's dial lock, for a moment: it either becomes the peer's one
//! dialler or waits for the dial in progress. No lock is held across an await, so a dial
//! never delays streams on the connections already open.

use super::keepalive::{keepalive, KeepaliveEnd};
use super::settings::{CONNECTION_WINDOW, CONNECT_TIMEOUT, STREAM_WINDOW, TLS_HANDSHAKE_TIMEOUT};
use super::sharded::ShardedMap;
use super::tls::client_config;
use super::tunnel::H2Tunnel;
use crate::identity::CertStore;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use authz::Identity;
use bytes::Bytes;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode};
use pingora_core::connectors::L4Connect;
use pingora_core::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora_error::{Error, ErrorType};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// ztunnel's pool packs about this many streams on one connection before opening another.
pub const STREAMS_PER_CONNECTION: usize = 100;

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum HboneError {
    /// The TCP connect to the HBONE peer failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The peer's HBONE address.
        addr: SocketAddr,
        /// What the connect returned.
        source: std::io::Error,
    },
    /// The TCP connect to the HBONE peer took longer than [`CONNECT_TIMEOUT`].
    #[error("connect to {addr} timed out after {CONNECT_TIMEOUT:?}")]
    Timeout {
        /// The peer's HBONE address.
        addr: SocketAddr,
    },
    /// The mTLS handshake failed, the peer's identity among the possible reasons.
    #[error("TLS with {addr} (expecting {expected}): {source}")]
    Tls {
        /// The peer's HBONE address.
        addr: SocketAddr,
        /// The identity the peer had to present.
        expected: Identity,
        /// What the handshake returned.
        source: std::io::Error,
    },
    /// The peer accepted TCP but did not finish the TLS handshake in time.
    #[error("TLS with {addr} did not finish within {TLS_HANDSHAKE_TIMEOUT:?}")]
    TlsTimeout {
        /// The peer's HBONE address.
        addr: SocketAddr,
    },
    /// The client TLS configuration could not be built from the workload certificate.
    #[error("TLS config: {0}")]
    Config(#[from] rustls::Error),
    /// The HTTP/2 connection or stream failed.
    #[error("HTTP/2 with {addr}: {source}")]
    H2 {
        /// The peer's HBONE address.
        addr: SocketAddr,
        /// h2's error.
        source: h2::Error,
    },
    /// The peer answered the CONNECT with something other than 200.
    #[error("CONNECT {authority} via {addr} answered {status}")]
    Refused {
        /// The peer's HBONE address.
        addr: SocketAddr,
        /// The CONNECT target.
        authority: SocketAddr,
        /// The peer's answer.
        status: StatusCode,
    },
}

#[derive(Debug)]
struct PooledConnection {
    sender: SendRequest<Bytes>,
    streams: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
}

impl PooledConnection {
    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// Takes one of the connection's stream slots, if it has one free. Atomic, so requests
    /// racing for the last slot cannot overfill the connection.
    fn reserve(&self) -> Option<StreamGuard> {
        self.streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < STREAMS_PER_CONNECTION).then_some(n + 1)
            })
            .ok()?;
        Some(StreamGuard(self.streams.clone()))
    }
}

/// The connections to one HBONE peer: an address and the identity it must present.
#[derive(Debug)]
struct Peer {
    identity: Identity,
    /// The open connections, read without a lock by every request and replaced whole (copy on
    /// write) when a dial adds one or a closed one is dropped — both rare.
    conns: ArcSwap<Vec<Arc<PooledConnection>>>,
    /// The dial in progress, if any. Requests that find no room wait for it instead of
    /// dialling too, so requests that arrive together share one handshake.
    dialing: Mutex<Option<watch::Receiver<()>>>,
}

/// What a request that wants a stream on a peer does next.
enum Turn<'a> {
    /// A slot on an open connection.
    Ready(Arc<PooledConnection>, StreamGuard),
    /// Wait for the dial in progress (the receiver wakes when it ends, either way).
    Wait(watch::Receiver<()>),
    /// Dial: this request is the peer's dialler until the turn is dropped.
    Dial(DialTurn<'a>),
}

/// The right to dial a peer; dropping it (dial done, failed or cancelled) lets the next
/// request that finds no room dial, and wakes the requests that waited.
struct DialTurn<'a> {
    peer: &'a Peer,
    /// Never sent on: dropping it is the wake-up.
    _done: watch::Sender<()>,
}

impl Drop for DialTurn<'_> {
    fn drop(&mut self) {
        // Cleared before `_done` drops, so a woken waiter finds no dial in progress.
        *self
            .peer
            .dialing
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Peer {
    fn new(identity: Identity) -> Self {
        Peer {
            identity,
            conns: ArcSwap::default(),
            dialing: Mutex::new(None),
        }
    }

    /// A slot on an open connection with room, dropping any closed connection it meets.
    fn reserve(&self) -> Option<(Arc<PooledConnection>, StreamGuard)> {
        let conns = self.conns.load();
        let slot = conns
            .iter()
            .filter(|c| c.is_open())
            .find_map(|c| Some((c.clone(), c.reserve()?)));
        if conns.iter().any(|c| !c.is_open()) {
            self.conns.rcu(|cs| {
                cs.iter()
                    .filter(|c| c.is_open())
                    .cloned()
                    .collect::<Vec<_>>()
            });
        }
        slot
    }

    fn add(&self, conn: Arc<PooledConnection>) {
        self.conns.rcu(|cs| {
            let mut more = Vec::with_capacity(cs.len() + 1);
            more.extend(cs.iter().cloned());
            more.push(conn.clone());
            more
        });
    }

    fn turn(&self) -> Turn<'_> {
        if let Some((conn, guard)) = self.reserve() {
            return Turn::Ready(conn, guard);
        }
        let mut dialing = self.dialing.lock().unwrap_or_else(PoisonError::into_inner);
        // A dial may have finished since the look above; it publishes its connection before
        // it clears `dialing`, so looking again under the lock cannot miss it.
        if let Some((conn, guard)) = self.reserve() {
            return Turn::Ready(conn, guard);
        }
        if let Some(done) = dialing.as_ref() {
            return Turn::Wait(done.clone());
        }
        let (tx, rx) = watch::channel(());
        *dialing = Some(rx);
        Turn::Dial(DialTurn {
            peer: self,
            _done: tx,
        })
    }
}

/// Opens tunnels over pooled HBONE connections; one per process, shared by every request.
#[derive(Debug)]
pub struct HboneClient {
    certs: Arc<CertStore>,
    /// The HBONE port of destination pods (15008; tests override it).
    port: u16,
    /// Peers by address; an address has more than one only while a reused pod IP is known
    /// under two identities. Keyed by address alone so that a lookup clones no identity.
    peers: ShardedMap<SocketAddr, Vec<Arc<Peer>>>,
}

impl HboneClient {
    /// A client presenting the identity in `certs`, dialling pods on their HBONE `port`.
    pub fn new(certs: Arc<CertStore>, port: u16) -> Arc<Self> {
        Arc::new(HboneClient {
            certs,
            port,
            peers: ShardedMap::default(),
        })
    }

    /// The identity this waypoint presents.
    pub fn own_identity(&self) -> Identity {
        self.certs.current().identity.clone()
    }

    /// The trust domain of the identity this waypoint presents.
    pub fn trust_domain(&self) -> String {
        self.certs.current().identity.trust_domain.clone()
    }

    /// Opens a tunnel to `target` (`podIP:targetPort`) through the pod's HBONE port,
    /// requiring the pod to present `identity`.
    pub async fn connect(
        &self,
        target: SocketAddr,
        identity: &Identity,
    ) -> Result<PooledTunnel, HboneError> {
        self.connect_via(SocketAddr::new(target.ip(), self.port), target, identity)
            .await
    }

    /// Opens a tunnel whose CONNECT names `target` through the HBONE peer at `via`, which
    /// must present `identity`: a pod's own HBONE port, or a waypoint in front of a service
    /// VIP (as ztunnel's outbound does).
    pub async fn connect_via(
        &self,
        via: SocketAddr,
        target: SocketAddr,
        identity: &Identity,
    ) -> Result<PooledTunnel, HboneError> {
        let (conn, guard) = self.checkout(via, identity).await?;
        let h2_err = |source| HboneError::H2 { addr: via, source };
        let result = async {
            let mut sender = conn.sender.clone().ready().await.map_err(h2_err)?;
            let req = Request::builder()
                .method(Method::CONNECT)
                .uri(target.to_string())
                .body(())
                .map_err(|e| HboneError::Connect {
                    addr: via,
                    source: std::io::Error::other(e),
                })?;
            let (response, send) = sender.send_request(req, false).map_err(h2_err)?;
            let response = response.await.map_err(h2_err)?;
            if response.status() != StatusCode::OK {
                return Err(HboneError::Refused {
                    addr: via,
                    authority: target,
                    status: response.status(),
                });
            }
            Ok(H2Tunnel::new(send, response.into_body()))
        }
        .await;
        if let Err(HboneError::H2 { .. }) = &result {
            // GOAWAY or a broken connection: never hand it out again.
            conn.closed.store(true, Ordering::Release);
        }
        Ok(PooledTunnel {
            tunnel: result?,
            _guard: guard,
        })
    }

    /// The pool entry for `via` presenting `identity`, made on first use.
    fn peer(&self, via: SocketAddr, identity: &Identity) -> Arc<Peer> {
        let find = |peers: &Vec<Arc<Peer>>| peers.iter().find(|p| p.identity == *identity).cloned();
        if let Some(peer) = self.peers.read(&via, find).flatten() {
            return peer;
        }
        self.peers.update(via, Vec::new, |peers| {
            find(peers).unwrap_or_else(|| {
                let peer = Arc::new(Peer::new(identity.clone()));
                peers.push(peer.clone());
                peer
            })
        })
    }

    /// A slot on a pooled connection to `via`, dialling one if none has room.
    ///
    /// When a dial fails, the requests that waited for it each try their own dial in turn,
    /// as ztunnel's pool does: the failure may have been the dialler's alone (its deadline).
    async fn checkout(
        &self,
        via: SocketAddr,
        identity: &Identity,
    ) -> Result<(Arc<PooledConnection>, StreamGuard), HboneError> {
        let peer = self.peer(via, identity);
        loop {
            match peer.turn() {
                Turn::Ready(conn, guard) => return Ok((conn, guard)),
                Turn::Wait(mut done) => {
                    // Err is the wake-up: the dialler dropped its sender.
                    let _ = done.changed().await;
                }
                Turn::Dial(turn) => {
                    let conn = self.open(via, &peer.identity).await?;
                    let guard = conn.reserve();
                    peer.add(conn.clone());
                    drop(turn);
                    if let Some(guard) = guard {
                        return Ok((conn, guard));
                    }
                }
            }
        }
    }

    async fn open(
        &self,
        addr: SocketAddr,
        identity: &Identity,
    ) -> Result<Arc<PooledConnection>, HboneError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| HboneError::Timeout { addr })?
            .map_err(|source| HboneError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let config = client_config(self.certs.clone(), identity.clone())?;
        // No SNI is sent; the name only satisfies the API.
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
        let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| HboneError::TlsTimeout { addr })?
            .map_err(|source| HboneError::Tls {
                addr,
                expected: identity.clone(),
                source,
            })?;
        let (sender, mut connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|source| HboneError::H2 { addr, source })?;
        let closed = Arc::new(AtomicBool::new(false));
        let ping = connection.ping_pong();
        {
            let closed = closed.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(%addr, "HBONE upstream connection ended: {e}");
                }
                closed.store(true, Ordering::Release);
            });
        }
        if let Some(ping) = ping {
            let closed = closed.clone();
            tokio::spawn(async move {
                if keepalive(ping).await == KeepaliveEnd::Unanswered {
                    tracing::debug!(%addr, "HBONE upstream connection left a PING unanswered");
                }
                closed.store(true, Ordering::Release);
            });
        }
        Ok(Arc::new(PooledConnection {
            sender,
            streams: Arc::new(AtomicUsize::new(0)),
            closed,
        }))
    }
}

/// Counts a tunnel against its connection's stream budget while it lives.
#[derive(Debug)]
struct StreamGuard(Arc<AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A tunnel from the pool; dropping it frees its slot on the connection.
#[derive(Debug)]
pub struct PooledTunnel {
    tunnel: H2Tunnel,
    _guard: StreamGuard,
}

impl AsyncRead for PooledTunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tunnel).poll_read(cx, buf)
    }
}

impl AsyncWrite for PooledTunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tunnel).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tunnel).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tunnel).poll_shutdown(cx)
    }
}

impl VirtualSocket for PooledTunnel {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        self.tunnel.set_socket_option(opt)
    }
}

/// pingora's custom L4 connector for one ambient endpoint: the peer address is
/// `podIP:targetPort`, reached through a tunnel.
#[derive(Debug)]
pub struct HboneDial {
    /// The pool the tunnel is opened from.
    pub client: Arc<HboneClient>,
    /// The identity the pod must present.
    pub identity: Identity,
}

#[async_trait]
impl L4Connect for HboneDial {
    async fn connect(&self, addr: &PingoraAddr) -> pingora_error::Result<L4Stream> {
        let PingoraAddr::Inet(target) = addr else {
            return Err(Error::explain(
                ErrorType::ConnectError,
                "HBONE needs an IP destination",
            ));
        };
        let tunnel = self
            .client
            .connect(*target, &self.identity)
            .await
            .map_err(|e| {
                let kind = match e {
                    HboneError::Timeout { .. } => ErrorType::ConnectTimedout,
                    HboneError::TlsTimeout { .. } => ErrorType::TLSHandshakeTimedout,
                    HboneError::Connect { .. } => ErrorType::ConnectRefused,
                    HboneError::Tls { .. } | HboneError::Config(_) => {
                        ErrorType::TLSHandshakeFailure
                    }
                    _ => ErrorType::ConnectError,
                };
                Error::because(kind, format!("HBONE to {target}"), e)
            })?;
        Ok(L4Stream::from(VirtualSocketStream::new(Box::new(tunnel))))
    }
}

#[cfg(test)]
mod tests;
