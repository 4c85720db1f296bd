//! The HBONE listener (port 15008): mTLS, HTTP/2, one CONNECT stream per tunnelled
//! connection. Each accepted tunnel is resolved to its destination and handed to the same
//! pingora proxy as the plain listener (HTTP) or to the TCP forwarder.

use super::context::{tunnel_digest, TunnelContext, TunnelRegistry};
use super::keepalive::{keepalive, KeepaliveEnd};
use super::settings::{CONNECTION_WINDOW, PING_TIMEOUT, STREAM_WINDOW, TLS_HANDSHAKE_TIMEOUT};
use super::tcp::TcpForwarder;
use super::tunnel::H2Tunnel;
use crate::coalesce::Coalesced;
use crate::identity::{spiffe_identity, CertStore};
use crate::listener::{stopped, Proxy};
use crate::live::LiveConfig;
use crate::snapshot::{Destination, Protocol, Snapshot};
use bytes::{Bytes, BytesMut};
use h2::server::SendResponse;
use http::{Method, Request, Response, StatusCode};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::l4::stream::Stream as L4Stream;
use pingora_core::protocols::l4::virt::VirtualSocketStream;
use pingora_core::protocols::{GetSocketDigest, Stream};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use telemetry::{ResponseFlag, REASON_HEADER};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// Streams one client connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 1000;
/// CONNECT requests carry a handful of headers; anything larger is not an HBONE client.
pub const MAX_HEADER_LIST: u32 = 16 * 1024;
/// How long to wait for the first bytes of a tunnel to tell HTTP/2 from HTTP/1.1.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(5);
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Everything an accepted HBONE connection needs; built once by `app::start` and shared by
/// every connection.
pub struct HboneServer {
    /// The configuration each CONNECT is resolved against (one snapshot per tunnel).
    pub live: Arc<LiveConfig>,
    /// The waypoint's workload certificate, the store `tls` resolves through.
    pub certs: Arc<CertStore>,
    /// Where each tunnel's context is registered for the proxy to find.
    pub registry: Arc<TunnelRegistry>,
    /// The shared proxy, HTTP/1.1 inside tunnels.
    pub proxy_h1: Arc<Proxy>,
    /// The same proxy for tunnels that start with the HTTP/2 preface.
    pub proxy_h2: Arc<Proxy>,
    /// Carries tunnels whose destination port is TCP.
    pub tcp: Arc<TcpForwarder>,
    /// The listener's mTLS config ([`super::tls::server_config`]).
    pub tls: Arc<rustls::ServerConfig>,
    /// What TCP tunnels are authorized with (ext_authz connections for CUSTOM).
    pub security: crate::security::Clients,
}

/// Accepts HBONE connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    server: Arc<HboneServer>,
    mut shutdown: watch::Receiver<bool>,
    tracker: TaskTracker,
) {
    let local = listener.local_addr().ok();
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("HBONE accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let _ = tcp.set_nodelay(true);
        let server = server.clone();
        let shutdown = shutdown.clone();
        let tracker2 = tracker.clone();
        let local = local.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 15008)));
        tracker.spawn(async move {
            match server
                .connection(tcp, peer, local, shutdown, tracker2)
                .await
            {
                Ok(()) => {}
                // A peer closing its connection is ordinary; a refused handshake is worth
                // an operator's eye (a ztunnel with the wrong certificate, say).
                Err(ConnectionError::H2(e)) if e.is_io() || e.is_go_away() => {
                    tracing::debug!(%peer, "HBONE connection closed: {e}")
                }
                Err(e) => tracing::info!(%peer, "HBONE connection ended: {e}"),
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("TLS handshake timed out after {TLS_HANDSHAKE_TIMEOUT:?}")]
    TlsTimeout,
    #[error("peer certificate: {0}")]
    Identity(String),
    #[error("HTTP/2: {0}")]
    H2(#[from] h2::Error),
    #[error("no PING answer within {PING_TIMEOUT:?}; closing")]
    PingTimeout,
}

impl HboneServer {
    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
        tracker: TaskTracker,
    ) -> Result<(), ConnectionError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| ConnectionError::TlsTimeout)?
            .map_err(ConnectionError::Tls)?;
        let source = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .ok_or_else(|| ConnectionError::Identity("none presented".into()))
            .and_then(|c| spiffe_identity(c).map_err(ConnectionError::Identity))?;
        let mut conn = h2::server::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_HEADER_LIST)
            .handshake::<_, Bytes>(tls)
            .await?;
        let (ping_failed_tx, mut ping_failed) = tokio::sync::oneshot::channel::<()>();
        if let Some(ping) = conn.ping_pong() {
            tokio::spawn(async move {
                if keepalive(ping).await == KeepaliveEnd::Unanswered {
                    let _ = ping_failed_tx.send(());
                }
            });
        }
        let mut draining = false;
        loop {
            tokio::select! {
                next = conn.accept() => match next {
                    Some(Ok((req, respond))) => {
                        let this = self.clone();
                        let source = source.clone();
                        let shutdown = shutdown.clone();
                        tracker.spawn(async move {
                            this.stream(req, respond, source, peer, local, shutdown).await;
                        });
                    }
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                },
                _ = &mut ping_failed => return Err(ConnectionError::PingTimeout),
                _ = stopped(&mut shutdown), if !draining => {
                    // GOAWAY: open tunnels finish, no new ones start.
                    draining = true;
                    conn.graceful_shutdown();
                }
            }
        }
    }

    /// One CONNECT stream: check it, resolve its target, answer, then carry the tunnel.
    async fn stream(
        &self,
        req: Request<h2::RecvStream>,
        respond: SendResponse<Bytes>,
        source: authz::Identity,
        peer: SocketAddr,
        local: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) {
        let snapshot = self.live.snapshot();
        let Some((mut tunnel, context)) = accept(req, respond, source, peer, &snapshot) else {
            return;
        };
        let declared = match &context.destination {
            Destination::Service { service, port } => snapshot
                .service(service)
                .and_then(|s| s.port(*port))
                .map(|p| p.protocol)
                .unwrap_or(Protocol::Sniff),
            Destination::Workload { .. } => Protocol::Sniff,
        };
        let protocol = match tunnel_protocol(declared, &mut tunnel).await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(%peer, "HBONE tunnel ended before any request: {e}");
                return;
            }
        };
        if protocol == Protocol::Tcp {
            // STEP authorize (security), L4: a denied tunnel is closed after its CONNECT 200,
            // as Envoy's RBAC network filter closes the connection.
            // Boxed: the check's future (JWT, ext_authz calls) is several KiB, and inline it
            // would be part of every stream's task for the stream's whole life.
            let allowed = Box::pin(crate::security::check_tunnel(
                &snapshot,
                &context,
                &self.security,
            ))
            .await;
            if !allowed {
                return;
            }
            return self.tcp.forward(tunnel, context, &snapshot).await;
        }
        let client = context.client_addr.unwrap_or(peer);
        let original_dst = original_dst(&context.destination, &snapshot).unwrap_or(local);
        let mut stream = L4Stream::from(VirtualSocketStream::new(Box::new(tunnel)));
        stream.set_socket_digest(tunnel_digest(client, local, original_dst));
        let Some(digest) = stream.get_socket_digest() else {
            return;
        };
        let _registration = self.registry.register(&digest, context);
        if protocol == Protocol::Http2 {
            self.proxy_h2.process_new(Box::new(stream), &shutdown).await;
        } else {
            // One DATA frame per response instead of one per write (see `coalesce`); h2 inside
            // the tunnel buffers its own frames.
            let stream: Stream = Box::new(Coalesced::new(stream));
            let mut next = Some(stream);
            while let Some(s) = next.take() {
                next = self.proxy_h1.process_new(s, &shutdown).await;
            }
        }
    }
}

/// Checks a CONNECT stream and answers it: 200 and the tunnel with its facts, or the refusal
/// (and None).
fn accept(
    req: Request<h2::RecvStream>,
    mut respond: SendResponse<Bytes>,
    source: authz::Identity,
    peer: SocketAddr,
    snapshot: &Snapshot,
) -> Option<(H2Tunnel, Arc<TunnelContext>)> {
    let (destination, authority) = match check_connect(&req, snapshot) {
        Ok(d) => d,
        Err(refusal) => {
            // The prose stays in the log: it names pods and services, which the peer's client
            // has no business learning; the answer carries the flag only.
            tracing::info!(
                %peer,
                %source,
                status = refusal.status.as_u16(),
                response_flag = refusal.flag.as_str(),
                "HBONE CONNECT refused: {}",
                refusal.why
            );
            refuse(&mut respond, &refusal);
            return None;
        }
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let context = Arc::new(TunnelContext {
        source,
        peer_addr: peer,
        client_addr: header("forwarded").as_deref().and_then(forwarded_for),
        authority,
        baggage: header("baggage"),
        traceparent: header("traceparent"),
        destination,
        xfcc: OnceLock::new(),
    });
    match respond.send_response(ok_response(), false) {
        Ok(send) => Some((H2Tunnel::new(send, req.into_body()), context)),
        Err(e) => {
            tracing::debug!(%peer, "HBONE stream reset before it was answered: {e}");
            None
        }
    }
}

/// What a tunnel carries: the port's declared protocol, or what its first bytes show. A port
/// declared HTTP may still carry h2 with prior knowledge; anything else on it is HTTP/1.1 (and
/// gets a 400 from the HTTP parser if it is not).
async fn tunnel_protocol(declared: Protocol, tunnel: &mut H2Tunnel) -> std::io::Result<Protocol> {
    Ok(match declared {
        Protocol::Http => match sniff(tunnel).await? {
            Protocol::Http2 => Protocol::Http2,
            _ => Protocol::Http,
        },
        Protocol::Sniff => sniff(tunnel).await?,
        other => other,
    })
}

/// Reads the first bytes of a tunnel (and puts them back) to tell HTTP/2's preface from
/// HTTP/1.1 or other TCP. A tunnel whose client waits for the server to speak first is TCP.
async fn sniff(tunnel: &mut H2Tunnel) -> std::io::Result<Protocol> {
    let mut buf = BytesMut::with_capacity(H2_PREFACE.len());
    let result = tokio::time::timeout(SNIFF_TIMEOUT, async {
        while buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&buf) {
            let mut chunk = [0u8; 24];
            let want = H2_PREFACE.len() - buf.len();
            let n = tunnel.read(&mut chunk[..want]).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    let protocol = match result {
        Ok(Err(e)) => return Err(e),
        Err(_) => Protocol::Tcp,
        Ok(Ok(())) if buf.is_empty() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no bytes",
            ))
        }
        Ok(Ok(())) if buf[..] == *H2_PREFACE => Protocol::Http2,
        Ok(Ok(())) if looks_like_http1(&buf) => Protocol::Http,
        Ok(Ok(())) => Protocol::Tcp,
    };
    tunnel.unread(buf.freeze());
    Ok(protocol)
}

fn looks_like_http1(buf: &[u8]) -> bool {
    const METHODS: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"PATCH ",
        b"TRACE ",
        b"CONNECT ",
    ];
    METHODS
        .iter()
        .any(|m| buf.starts_with(m) || (buf.len() < m.len() && m.starts_with(buf)))
}

/// Why a CONNECT is not accepted: the status and response flag Istio would answer with, and
/// the operator's explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    flag: ResponseFlag,
    why: String,
}

impl Refusal {
    /// A request that is not a well-formed HBONE CONNECT: Envoy's downstream protocol error.
    fn malformed(why: String) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            flag: ResponseFlag::DownstreamProtocolError,
            why,
        }
    }
}

/// Checks a CONNECT request and resolves its target, or says why Istio would refuse it.
fn check_connect<B>(
    req: &Request<B>,
    snapshot: &Snapshot,
) -> Result<(Destination, String), Refusal> {
    if req.method() != Method::CONNECT {
        return Err(Refusal::malformed(format!(
            "{} is not CONNECT; HBONE carries CONNECT only",
            req.method()
        )));
    }
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .ok_or_else(|| Refusal::malformed("CONNECT without :authority".to_string()))?;
    if crate::snapshot::split_authority(&authority).is_none() || !authority.contains(':') {
        return Err(Refusal::malformed(format!(
            "malformed CONNECT authority '{authority}': want ip:port"
        )));
    }
    // A destination the waypoint does not serve is what Envoy calls "no route" (no filter
    // chain matches it); 503 is what ztunnel and Envoy answer the CONNECT with.
    let destination = snapshot.resolve_connect(&authority).map_err(|e| Refusal {
        status: StatusCode::SERVICE_UNAVAILABLE,
        flag: ResponseFlag::NoRouteFound,
        why: e.0,
    })?;
    Ok((destination, authority))
}

/// The address a tunnel was originally sent to, as a socket digest's original destination.
fn original_dst(d: &Destination, snapshot: &Snapshot) -> Option<SocketAddr> {
    match d {
        Destination::Workload { addr, .. } => Some(*addr),
        Destination::Service { service, port } => snapshot
            .service(service)
            .and_then(|s| s.vips.first())
            .map(|ip| SocketAddr::new(*ip, *port)),
    }
}

/// The client address in a `forwarded: for="1.2.3.4:5678"` value (RFC 7239), as ztunnel
/// sends it; port 0 when `for` has no port, none when there is no `for` with an IP.
pub fn forwarded_for(value: &str) -> Option<SocketAddr> {
    value.split([';', ',']).find_map(|part| {
        let (k, v) = part.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        v.parse::<SocketAddr>().ok().or_else(|| {
            v.trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 0))
        })
    })
}

fn ok_response() -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::OK;
    r
}

/// Answers a refused CONNECT with its status and, in the reason header, its response flag.
fn refuse(respond: &mut SendResponse<Bytes>, refusal: &Refusal) {
    let mut r = Response::new(());
    *r.status_mut() = refusal.status;
    r.headers_mut().insert(
        REASON_HEADER,
        http::HeaderValue::from_static(refusal.flag.as_str()),
    );
    let _ = respond.send_response(r, true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_values() {
        assert_eq!(
            forwarded_for("for=\"10.0.0.1:4000\""),
            "10.0.0.1:4000".parse().ok()
        );
        assert_eq!(
            forwarded_for("proto=http;for=\"[fd00::1]:80\""),
            "[fd00::1]:80".parse().ok()
        );
        assert_eq!(forwarded_for("for=10.0.0.2"), "10.0.0.2:0".parse().ok());
        assert_eq!(forwarded_for("by=x"), None);
    }

    #[test]
    fn connect_refusals_carry_istio_status_and_flag() {
        let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n";
        let mut loaded = crate::config::Loaded::default();
        crate::config::files_for_tests::parse(std::path::Path::new("t.yaml"), yaml, &mut loaded);
        let (snapshot, _) = Snapshot::build(
            &loaded.documents,
            Vec::new(),
            &crate::snapshot::BuildOptions {
                gateway_class: crate::snapshot::GATEWAY_CLASS.to_string(),
                version: 1,
                gateway: None,
                trust_domain: crate::snapshot::CLUSTER_DOMAIN.to_string(),
            },
        );
        let snapshot = snapshot.expect("snapshot");
        let cases = [
            (
                Method::GET,
                "10.0.0.10:80",
                400,
                ResponseFlag::DownstreamProtocolError,
            ),
            (
                Method::CONNECT,
                "10.0.0.10",
                400,
                ResponseFlag::DownstreamProtocolError,
            ),
            (
                Method::CONNECT,
                "10.9.9.9:80",
                503,
                ResponseFlag::NoRouteFound,
            ),
            (
                Method::CONNECT,
                "nosuch.shop:80",
                503,
                ResponseFlag::NoRouteFound,
            ),
        ];
        for (method, authority, status, flag) in cases {
            let req = Request::builder()
                .method(method.clone())
                .uri(authority)
                .body(())
                .expect("request");
            let refusal = check_connect(&req, &snapshot).expect_err(authority);
            assert_eq!(
                (refusal.status.as_u16(), refusal.flag),
                (status, flag),
                "{method} {authority}: {}",
                refusal.why
            );
        }
    }

    #[test]
    fn http1_detection_accepts_prefixes() {
        assert!(looks_like_http1(b"GET / HTTP/1.1"));
        assert!(looks_like_http1(b"PO"));
        assert!(!looks_like_http1(b"\x16\x03\x01"));
    }
}
