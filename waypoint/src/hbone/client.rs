//! The HBONE client: tunnels to ambient pods over pooled, multiplexed mTLS HTTP/2
//! connections, as ztunnel does. A connection is keyed by destination address and the
//! identity it must present, carries up to [`STREAMS_PER_CONNECTION`] tunnels, is kept alive
//! with PING and dropped from the pool on GOAWAY or error.

use super::keepalive::{keepalive, KeepaliveEnd};
use super::settings::{CONNECTION_WINDOW, CONNECT_TIMEOUT, STREAM_WINDOW};
use super::tls::client_config;
use super::tunnel::H2Tunnel;
use crate::identity::CertStore;
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
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// ztunnel's pool packs about this many streams on one connection before opening another.
pub const STREAMS_PER_CONNECTION: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum HboneError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("connect to {addr} timed out after {CONNECT_TIMEOUT:?}")]
    Timeout { addr: SocketAddr },
    #[error("TLS with {addr} (expecting {expected}): {source}")]
    Tls {
        addr: SocketAddr,
        expected: Identity,
        source: std::io::Error,
    },
    #[error("TLS config: {0}")]
    Config(#[from] rustls::Error),
    #[error("HTTP/2 with {addr}: {source}")]
    H2 { addr: SocketAddr, source: h2::Error },
    #[error("CONNECT {authority} via {addr} answered {status}")]
    Refused {
        addr: SocketAddr,
        authority: SocketAddr,
        status: StatusCode,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: SocketAddr,
    identity: Identity,
}

#[derive(Debug)]
struct PooledConnection {
    sender: SendRequest<Bytes>,
    streams: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
}

/// The connections to one peer. The async lock is held while a connection is opened, so
/// requests that arrive together share one handshake instead of each opening their own.
type PeerPool = Arc<tokio::sync::Mutex<Vec<Arc<PooledConnection>>>>;

#[derive(Debug)]
pub struct HboneClient {
    certs: Arc<CertStore>,
    /// The HBONE port of destination pods (15008; tests override it).
    port: u16,
    pool: Mutex<HashMap<PoolKey, PeerPool>>,
}

impl HboneClient {
    pub fn new(certs: Arc<CertStore>, port: u16) -> Arc<Self> {
        Arc::new(HboneClient {
            certs,
            port,
            pool: Mutex::new(HashMap::new()),
        })
    }

    /// The identity this waypoint presents.
    pub fn own_identity(&self) -> Identity {
        self.certs.current().identity.clone()
    }

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
        let key = PoolKey {
            addr: via,
            identity: identity.clone(),
        };
        let conn = self.checkout(&key).await?;
        conn.streams.fetch_add(1, Ordering::AcqRel);
        let guard = StreamGuard(conn.streams.clone());
        let mut sender = conn.sender.clone();
        let h2_err = |source| HboneError::H2 {
            addr: key.addr,
            source,
        };
        let result = async {
            sender = sender.ready().await.map_err(h2_err)?;
            let req = Request::builder()
                .method(Method::CONNECT)
                .uri(target.to_string())
                .body(())
                .map_err(|e| HboneError::Connect {
                    addr: key.addr,
                    source: std::io::Error::other(e),
                })?;
            let (response, send) = sender.send_request(req, false).map_err(h2_err)?;
            let response = response.await.map_err(h2_err)?;
            if response.status() != StatusCode::OK {
                return Err(HboneError::Refused {
                    addr: key.addr,
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

    /// A pooled connection with room for one more stream, opened if there is none.
    async fn checkout(&self, key: &PoolKey) -> Result<Arc<PooledConnection>, HboneError> {
        let peer = {
            let mut pool = self
                .pool
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            pool.entry(key.clone()).or_default().clone()
        };
        let mut conns = peer.lock().await;
        conns.retain(|c| !c.closed.load(Ordering::Acquire));
        if let Some(c) = conns
            .iter()
            .find(|c| c.streams.load(Ordering::Acquire) < STREAMS_PER_CONNECTION)
        {
            return Ok(c.clone());
        }
        let conn = self.open(key).await?;
        conns.push(conn.clone());
        Ok(conn)
    }

    async fn open(&self, key: &PoolKey) -> Result<Arc<PooledConnection>, HboneError> {
        let addr = key.addr;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| HboneError::Timeout { addr })?
            .map_err(|source| HboneError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let config = client_config(self.certs.clone(), key.identity.clone())?;
        // No SNI is sent; the name only satisfies the API.
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|source| HboneError::Tls {
                addr,
                expected: key.identity.clone(),
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
    pub client: Arc<HboneClient>,
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
