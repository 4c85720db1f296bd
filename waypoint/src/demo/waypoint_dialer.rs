//! The demo client's HBONE side, as ztunnel's outbound is for a pod whose destination service
//! uses a waypoint: mTLS HTTP/2 connections to the waypoint with the client's identity, and one
//! CONNECT stream per tunnel whose `:authority` is the service `VIP:port` the client dialled.
//!
//! [`HboneClient`](crate::hbone::client::HboneClient) dials the authority's own IP, which is
//! right for a pod but not for a service VIP that only the waypoint knows; here the TCP
//! connection goes to the waypoint and the VIP only travels in the CONNECT request.

use crate::hbone::client::STREAMS_PER_CONNECTION;
use crate::hbone::server::{CONNECTION_WINDOW, STREAM_WINDOW};
use crate::hbone::tls::client_config;
use crate::hbone::tunnel::H2Tunnel;
use crate::identity::CertStore;
use authz::Identity;
use bytes::Bytes;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("cannot connect to the waypoint's HBONE listener {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "connecting to the waypoint's HBONE listener {addr} timed out after {CONNECT_TIMEOUT:?}"
    )]
    Timeout { addr: SocketAddr },
    #[error("mTLS with {addr} (expecting {expected}): {source}")]
    Tls {
        addr: SocketAddr,
        expected: Identity,
        source: std::io::Error,
    },
    #[error("HTTP/2 with {addr}: {source}")]
    H2 { addr: SocketAddr, source: h2::Error },
    #[error("CONNECT {authority} via {addr} answered {status}")]
    Refused {
        addr: SocketAddr,
        authority: SocketAddr,
        status: StatusCode,
    },
}

/// One mTLS HTTP/2 connection to the waypoint and how many tunnels ride on it.
#[derive(Debug)]
struct Connection {
    sender: SendRequest<Bytes>,
    streams: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
}

/// Opens tunnels through one HBONE peer (the waypoint) over pooled connections.
pub struct WaypointDialer {
    addr: SocketAddr,
    peer: Identity,
    own: Identity,
    tls: tokio_rustls::TlsConnector,
    /// An async lock, held while a connection is opened, so that workers starting together
    /// share one handshake instead of racing to open one each.
    pool: tokio::sync::Mutex<Vec<Arc<Connection>>>,
}

impl std::fmt::Debug for WaypointDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaypointDialer")
            .field("addr", &self.addr)
            .field("peer", &self.peer)
            .field("own", &self.own)
            .finish_non_exhaustive()
    }
}

impl WaypointDialer {
    /// Dials `addr`, presenting the identity in `certs` and requiring the peer to be `peer`.
    pub fn new(
        certs: Arc<CertStore>,
        addr: SocketAddr,
        peer: Identity,
    ) -> Result<Arc<Self>, rustls::Error> {
        let own = certs.current().identity.clone();
        let tls = tokio_rustls::TlsConnector::from(client_config(certs, peer.clone())?);
        Ok(Arc::new(WaypointDialer {
            addr,
            peer,
            own,
            tls,
            pool: tokio::sync::Mutex::new(Vec::new()),
        }))
    }

    /// The identity the client presents.
    pub fn own_identity(&self) -> &Identity {
        &self.own
    }

    /// The identity the peer must present.
    pub fn peer_identity(&self) -> &Identity {
        &self.peer
    }

    /// Opens a tunnel to `authority` (a service `VIP:port`, or a pod `IP:port`) through the
    /// peer. A refusal (any status but 200) is an error carrying the status.
    pub async fn open(&self, authority: SocketAddr) -> Result<Tunnel, DialError> {
        let addr = self.addr;
        let conn = self.checkout().await?;
        let guard = StreamGuard::new(conn.streams.clone());
        let h2_err = |source| DialError::H2 { addr, source };
        let result = async {
            let mut sender = conn.sender.clone().ready().await.map_err(h2_err)?;
            let request = Request::builder()
                .method(Method::CONNECT)
                .uri(authority.to_string())
                .body(())
                .map_err(|e| DialError::Connect {
                    addr,
                    source: std::io::Error::other(e),
                })?;
            let (response, send) = sender.send_request(request, false).map_err(h2_err)?;
            let response = response.await.map_err(h2_err)?;
            if response.status() != StatusCode::OK {
                return Err(DialError::Refused {
                    addr,
                    authority,
                    status: response.status(),
                });
            }
            Ok(H2Tunnel::new(send, response.into_body()))
        }
        .await;
        if let Err(DialError::H2 { .. }) = &result {
            // GOAWAY or a broken connection: never hand it out again.
            conn.closed.store(true, Ordering::Release);
        }
        Ok(Tunnel {
            tunnel: result?,
            _guard: guard,
        })
    }

    /// A pooled connection with room for one more tunnel, opened if there is none.
    async fn checkout(&self) -> Result<Arc<Connection>, DialError> {
        let mut pool = self.pool.lock().await;
        pool.retain(|c| !c.closed.load(Ordering::Acquire));
        if let Some(conn) = pool
            .iter()
            .find(|c| c.streams.load(Ordering::Acquire) < STREAMS_PER_CONNECTION)
        {
            return Ok(conn.clone());
        }
        let conn = Arc::new(self.connect().await?);
        pool.push(conn.clone());
        Ok(conn)
    }

    async fn connect(&self) -> Result<Connection, DialError> {
        let addr = self.addr;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| DialError::Timeout { addr })?
            .map_err(|source| DialError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        // HBONE sends no SNI; the name only satisfies the API.
        let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|source| DialError::Tls {
                addr,
                expected: self.peer.clone(),
                source,
            })?;
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|source| DialError::H2 { addr, source })?;
        let closed = Arc::new(AtomicBool::new(false));
        let ended = closed.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%addr, %error, "demo HBONE connection ended");
            }
            ended.store(true, Ordering::Release);
        });
        Ok(Connection {
            sender,
            streams: Arc::new(AtomicUsize::new(0)),
            closed,
        })
    }
}

/// Counts a tunnel against its connection's stream budget while it lives.
#[derive(Debug)]
struct StreamGuard(Arc<AtomicUsize>);

impl StreamGuard {
    fn new(streams: Arc<AtomicUsize>) -> Self {
        streams.fetch_add(1, Ordering::AcqRel);
        StreamGuard(streams)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An open tunnel; dropping it frees its slot on the connection.
#[derive(Debug)]
pub struct Tunnel {
    tunnel: H2Tunnel,
    _guard: StreamGuard,
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tunnel).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tunnel {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::ca::{DemoCa, TRUST_DOMAIN};
    use crate::demo::hbone_endpoint;
    use std::net::IpAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An HBONE endpoint on an ephemeral loopback port in front of an echo server.
    async fn echo_behind_endpoint(
        ca: &DemoCa,
        pod: &Identity,
    ) -> anyhow::Result<(hbone_endpoint::HboneEndpoint, SocketAddr)> {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let echo_addr = echo.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let endpoint =
            hbone_endpoint::spawn(SocketAddr::new(loopback, 0), ca.cert_store(pod)?, loopback)
                .await?;
        Ok((endpoint, echo_addr))
    }

    #[tokio::test]
    async fn tunnels_share_a_connection_and_carry_bytes() -> anyhow::Result<()> {
        let ca = DemoCa::generate(TRUST_DOMAIN)?;
        let pod = ca.identity("travel-agency", "travels");
        let client = ca.identity("travel-portal", "voyages");
        let (endpoint, echo) = echo_behind_endpoint(&ca, &pod).await?;
        let dialer = WaypointDialer::new(ca.cert_store(&client)?, endpoint.local_addr, pod)?;
        for message in [&b"first"[..], b"second"] {
            let mut tunnel = dialer.open(echo).await?;
            tunnel.write_all(message).await?;
            let mut back = vec![0; message.len()];
            tunnel.read_exact(&mut back).await?;
            assert_eq!(back, message);
        }
        let accepted = endpoint.accepted();
        assert_eq!(accepted.len(), 2);
        assert!(accepted.iter().all(|a| a.connection == 0), "{accepted:?}");
        assert_eq!(accepted[0].source, client.to_string());
        assert_eq!(accepted[0].authority, echo.to_string());
        Ok(())
    }

    #[tokio::test]
    async fn refusals_and_wrong_identities_are_errors() -> anyhow::Result<()> {
        let ca = DemoCa::generate(TRUST_DOMAIN)?;
        let pod = ca.identity("travel-agency", "travels");
        let client = ca.cert_store(&ca.identity("travel-portal", "voyages"))?;
        let (endpoint, _) = echo_behind_endpoint(&ca, &pod).await?;

        // The endpoint forwards only to its own pod's IP.
        let dialer = WaypointDialer::new(client.clone(), endpoint.local_addr, pod)?;
        let elsewhere = SocketAddr::from(([127, 0, 0, 2], 80));
        let refused = dialer.open(elsewhere).await.map(|_| ()).unwrap_err();
        assert!(
            matches!(refused, DialError::Refused { status, .. } if status == StatusCode::BAD_REQUEST),
            "{refused}"
        );

        let impostor = ca.identity("travel-agency", "hotels");
        let dialer = WaypointDialer::new(client, endpoint.local_addr, impostor)?;
        let mismatch = dialer.open(elsewhere).await.map(|_| ()).unwrap_err();
        assert!(matches!(mismatch, DialError::Tls { .. }), "{mismatch}");
        Ok(())
    }
}
