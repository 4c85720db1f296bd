//! Accept loops that hand connections to the shared pingora `HttpProxy`, and their drain.
//!
//! We run our own accept loop instead of pingora's `Server` so that the same proxy can serve
//! plain TCP connections here and HBONE CONNECT streams (`hbone::server`), inside one tokio
//! runtime that tests and the demo can also use.

use pingora_core::apps::{HttpServerApp, ServerApp};
use pingora_core::protocols::l4::stream::Stream as TcpStream;
use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream};
use pingora_proxy::HttpProxy;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::coalesce::Coalesced;
use crate::live::LiveConfig;
use crate::proxy::WaypointProxy;

/// The pingora HTTP proxy every listener and tunnel hands its streams to.
pub type Proxy = HttpProxy<WaypointProxy>;

/// Serves HTTP/1.1 and h2c (prior knowledge) connections from `listener` until `shutdown`
/// turns true. Connections are spawned on `tracker` so the drain can wait for them. With
/// `peer_auth` (the plain listener), the PeerAuthentication in force decides whether plaintext
/// is accepted at all: a STRICT port closes the connection unanswered.
pub async fn serve_http(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    mut shutdown: watch::Receiver<bool>,
    tracker: TaskTracker,
    peer_auth: Option<Arc<LiveConfig>>,
) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut shutdown) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Running out of file descriptors is the usual cause; back off instead of
                // spinning, and keep serving the connections we have.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Some(live) = &peer_auth {
            if crate::security::plaintext_refused(&live.snapshot(), port) {
                tracing::debug!(%peer, "plaintext connection closed: PeerAuthentication STRICT");
                continue;
            }
        }
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, "set_nodelay: {e}");
        }
        let proxy = proxy.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            // The digest gives phases the connection's local address, which tells the Gateway
            // role which listener a request came in on (pingora's own listeners set it too).
            let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
            let mut stream = TcpStream::from(tcp);
            stream.set_socket_digest(digest);
            // Gather each response's header and body into one write (see `coalesce`).
            let mut next: Option<Stream> = Some(Box::new(Coalesced::new(stream)));
            // pingora returns the stream after each HTTP/1.1 keep-alive request.
            while let Some(stream) = next.take() {
                next = proxy.process_new(stream, &shutdown).await;
            }
        });
    }
}

/// Stops the listeners and waits up to `deadline` for in-flight requests to finish. Idle
/// keep-alive connections are woken so they close now instead of at their next request. The
/// accept loops run on `tracker` too, so when this returns no listener socket is open.
pub async fn drain(
    proxy: &Proxy,
    shutdown: &watch::Sender<bool>,
    tracker: &TaskTracker,
    deadline: Duration,
) -> bool {
    let _ = shutdown.send(true);
    proxy.http_cleanup().await;
    tracker.close();
    tokio::time::timeout(deadline, tracker.wait()).await.is_ok()
}

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
