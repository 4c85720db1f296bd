//! The test's own servers (JWKS, ext_authz HTTP and gRPC) on 127.0.0.1: one accept loop.

use hyper::body::{Body, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `svc` on an ephemeral loopback port until the test ends (HTTP/1.1 and h2c, or h2c
/// only when `h2_only`, as gRPC is) and returns the address.
pub async fn serve<S, B>(svc: S, h2_only: bool) -> SocketAddr
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a test server");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if h2_only {
                    builder = builder.http2_only();
                }
                let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    addr
}
