//! The L4 path: a tunnel whose destination port carries TCP is joined byte for byte to an
//! endpoint (over HBONE for ambient pods), with half-close in both directions and an idle
//! timeout.

use super::client::HboneClient;
use super::context::TunnelContext;
use super::settings::CONNECT_TIMEOUT;
use crate::endpoint;
use crate::snapshot::{Destination, Snapshot, WorkloadIdentity};
use routing::BackendTarget;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use telemetry::ResponseFlag;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Envoy's tcp_proxy default: a connection idle for an hour is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// A byte stream the forwarder can join: a tunnel, a TCP socket, a TLS stream.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Joins TCP tunnels to endpoints; one per process.
#[derive(Debug)]
pub struct TcpForwarder {
    /// Dials ambient endpoints over HBONE; without it (no identity) every endpoint is dialled
    /// in plain TCP.
    pub hbone: Option<Arc<HboneClient>>,
    /// How long a connection may carry no bytes either way before it is closed
    /// ([`DEFAULT_IDLE_TIMEOUT`]; no flag).
    pub idle_timeout: Duration,
}

impl TcpForwarder {
    /// Chooses the tunnel's endpoint, dials it and copies bytes both ways until both sides
    /// close or the connection goes idle. Failures end the tunnel and are logged with their
    /// response flag; there is no one to answer.
    pub async fn forward<S: Io>(
        &self,
        downstream: S,
        ctx: Arc<TunnelContext>,
        snapshot: &Snapshot,
    ) {
        let Some((addr, hbone)) = pick_endpoint(&ctx.destination, snapshot) else {
            tracing::info!(
                source = %ctx.source,
                authority = %ctx.authority,
                response_flag = ResponseFlag::NoHealthyUpstream.as_str(),
                "TCP tunnel closed: no healthy upstream"
            );
            return;
        };
        let upstream: Box<dyn Io> = match self.dial(addr, hbone.as_ref()).await {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(
                    source = %ctx.source,
                    %addr,
                    response_flag = ResponseFlag::UpstreamConnectionFailure.as_str(),
                    "TCP tunnel closed: upstream connect failed: {e}"
                );
                return;
            }
        };
        match copy_until_idle(downstream, upstream, self.idle_timeout).await {
            Ok((sent, received)) => {
                tracing::debug!(target: "access", source = %ctx.source, %addr, sent, received, "TCP tunnel done")
            }
            Err(e) => tracing::debug!(source = %ctx.source, %addr, "TCP tunnel ended: {e}"),
        }
    }

    async fn dial(
        &self,
        addr: SocketAddr,
        hbone: Option<&WorkloadIdentity>,
    ) -> std::io::Result<Box<dyn Io>> {
        match (hbone, &self.hbone) {
            (Some(id), Some(client)) => {
                let identity = id.in_trust_domain(&client.trust_domain());
                let tunnel = client
                    .connect(addr, &identity)
                    .await
                    .map_err(std::io::Error::other)?;
                Ok(Box::new(tunnel))
            }
            _ => {
                let tcp =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
                        .await
                        .map_err(|_| {
                            std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                        })??;
                let _ = tcp.set_nodelay(true);
                Ok(Box::new(tcp))
            }
        }
    }
}

/// The endpoint for a tunnel: the pod itself, or the endpoint chosen for the service port (or
/// for the backend its TCPRoute picks by weight), as the HTTP path chooses.
fn pick_endpoint(
    d: &Destination,
    snapshot: &Snapshot,
) -> Option<(SocketAddr, Option<WorkloadIdentity>)> {
    match d {
        Destination::Workload { addr, hbone } => Some((*addr, hbone.clone())),
        Destination::Service { service, port } => {
            let sp = snapshot.service(service)?.port(*port)?;
            // A TCPRoute picks the backend service by weight; without one the service's own
            // endpoints serve.
            let (service, port) = match &sp.tcp_route {
                None => (service, *port),
                Some(route) => match &route.pick_backend(rand::random::<u32>())?.target {
                    BackendTarget::Service {
                        service,
                        port,
                        subset: _,
                    } => (service, *port),
                    BackendTarget::Invalid { reason } => {
                        tracing::info!(route = %route.id, "TCP tunnel refused: invalid backend: {reason}");
                        return None;
                    }
                },
            };
            match endpoint::choose(snapshot, &endpoint::Pick::any(service, port)) {
                Ok(chosen) => Some((chosen.endpoint.addr, chosen.endpoint.hbone.clone())),
                Err(why) => {
                    tracing::debug!("TCP tunnel refused: {why}");
                    None
                }
            }
        }
    }
}

/// Copies both ways until both sides are done (each EOF is passed on as a half-close), or
/// until nothing moved for `idle`. Returns the bytes sent upstream and received from it.
pub async fn copy_until_idle<A: Io, B: Io>(
    a: A,
    b: B,
    idle: Duration,
) -> std::io::Result<(u64, u64)> {
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut a = Watched {
        inner: a,
        start,
        last: last.clone(),
    };
    let mut b = Watched {
        inner: b,
        start,
        last: last.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        let deadline = start + since + idle;
        tokio::select! {
            r = &mut copy => return r,
            _ = tokio::time::sleep_until(deadline.into()) => {
                if Duration::from_millis(last.load(Ordering::Relaxed)) == since {
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("idle for {idle:?}")));
                }
            }
        }
    }
}

/// Records when bytes last moved, for the idle timeout.
struct Watched<T> {
    inner: T,
    start: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn touch(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_with_half_close() {
        let (client, proxy_down) = tokio::io::duplex(1024);
        let (proxy_up, server) = tokio::io::duplex(1024);
        let copy = tokio::spawn(copy_until_idle(
            proxy_down,
            proxy_up,
            Duration::from_secs(5),
        ));
        let (mut client_r, mut client_w) = tokio::io::split(client);
        let (mut server_r, mut server_w) = tokio::io::split(server);
        client_w.write_all(b"ping").await.expect("write");
        client_w.shutdown().await.expect("half-close");
        let mut got = Vec::new();
        server_r
            .read_to_end(&mut got)
            .await
            .expect("server reads to EOF");
        assert_eq!(got, b"ping");
        // The other direction still works after the client's half-close.
        server_w.write_all(b"pong").await.expect("write back");
        server_w.shutdown().await.expect("close");
        let mut back = Vec::new();
        client_r.read_to_end(&mut back).await.expect("client reads");
        assert_eq!(back, b"pong");
        assert_eq!(copy.await.expect("task").expect("copy"), (4, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_are_closed() {
        let (_client, proxy_down) = tokio::io::duplex(64);
        let (proxy_up, _server) = tokio::io::duplex(64);
        let r = copy_until_idle(proxy_down, proxy_up, Duration::from_secs(30)).await;
        assert_eq!(r.map_err(|e| e.kind()), Err(std::io::ErrorKind::TimedOut));
    }
}
