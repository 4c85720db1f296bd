//! An HBONE endpoint in front of a workload, as ztunnel's inbound side is in a mesh: mTLS with
//! the pod's identity, CONNECT streams whose `:authority` is the pod's `ip:port`, bytes copied
//! to that address. The demo puts one in front of each backend, and tests use it as an
//! ambient pod; it records who connected, so a test can check the principal the pod saw.

use crate::hbone::tcp::{copy_until_idle, DEFAULT_IDLE_TIMEOUT};
use crate::hbone::tls::server_config;
use crate::hbone::tunnel::H2Tunnel;
use crate::identity::{spiffe_identity, CertStore};
use http::{Method, Response, StatusCode};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One accepted tunnel: the peer's identity and the authority it asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The peer's SPIFFE identity (empty if its certificate had none).
    pub source: String,
    /// The CONNECT `:authority`, the pod's `ip:port`.
    pub authority: String,
    /// Which HBONE connection (in accept order) carried the tunnel.
    pub connection: usize,
}

/// A running HBONE endpoint; dropping it stops it.
pub struct HboneEndpoint {
    /// Where it listens.
    pub local_addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    task: JoinHandle<()>,
}

impl HboneEndpoint {
    /// Tunnels accepted so far.
    pub fn accepted(&self) -> Vec<Accepted> {
        self.accepted.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl Drop for HboneEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens on `addr` with `certs` as the pod's identity; tunnels may only target `pod_ip`
/// (ztunnel refuses to forward anywhere but its own pods).
pub async fn spawn(
    addr: SocketAddr,
    certs: Arc<CertStore>,
    pod_ip: IpAddr,
) -> anyhow::Result<HboneEndpoint> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("HBONE endpoint for {pod_ip}: cannot listen on {addr}: {e}")
    })?;
    let local_addr = listener.local_addr()?;
    let tls = tokio_rustls::TlsAcceptor::from(server_config(certs)?);
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let log = accepted.clone();
    let task = tokio::spawn(async move {
        let mut connections = 0usize;
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let connection = connections;
            connections += 1;
            let tls = tls.clone();
            let log = log.clone();
            tokio::spawn(serve_connection(tls, tcp, pod_ip, connection, log));
        }
    });
    Ok(HboneEndpoint {
        local_addr,
        accepted,
        task,
    })
}

/// One HBONE connection to the endpoint (the `connection`-th accepted): mTLS, then each CONNECT
/// stream to an address of `pod_ip` is logged and its bytes copied to that address.
async fn serve_connection(
    tls: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    pod_ip: IpAddr,
    connection: usize,
    log: Arc<Mutex<Vec<Accepted>>>,
) {
    let Ok(stream) = tls.accept(tcp).await else {
        return;
    };
    let source = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| spiffe_identity(c).ok())
        .map(|i| i.to_string())
        .unwrap_or_default();
    let Ok(mut conn) = h2::server::handshake(stream).await else {
        return;
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        let authority = req
            .uri()
            .authority()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let target = authority
            .parse::<SocketAddr>()
            .ok()
            .filter(|t| t.ip() == pod_ip);
        let (Some(target), true) = (target, req.method() == Method::CONNECT) else {
            let mut r = Response::new(());
            *r.status_mut() = StatusCode::BAD_REQUEST;
            let _ = respond.send_response(r, true);
            continue;
        };
        if let Ok(mut l) = log.lock() {
            l.push(Accepted {
                source: source.clone(),
                authority: authority.clone(),
                connection,
            });
        }
        tokio::spawn(async move {
            let Ok(upstream) = tokio::net::TcpStream::connect(target).await else {
                let mut r = Response::new(());
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                let _ = respond.send_response(r, true);
                return;
            };
            let Ok(send) = respond.send_response(Response::new(()), false) else {
                return;
            };
            let tunnel = H2Tunnel::new(send, req.into_body());
            let _ = copy_until_idle(tunnel, upstream, DEFAULT_IDLE_TIMEOUT).await;
        });
    }
}
