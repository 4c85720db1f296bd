//! The admin listener (`/config_dump`, localhost only by default) and the readiness listener
//! (`/healthz/ready`, which kubelet probes on 15021 as for Istio's proxies).

use crate::live::LiveConfig;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the admin handlers read.
pub struct AdminState {
    /// The configuration `/config_dump` shows.
    pub live: Arc<LiveConfig>,
    /// False until the first snapshot is in force, and again once draining starts.
    pub ready: AtomicBool,
    /// The `jwksUri` keys in use: `/config_dump` shows each URI's state (fetched, failing
    /// since, last error), the "clear state when the URI fails" an operator looks for.
    pub jwks: Arc<crate::security::jwks::JwksCache>,
}

/// What a listener of this module answers: the admin routes or the readiness route.
pub type Handler = fn(&AdminState, &Request<Incoming>) -> Response<Full<Bytes>>;

/// The admin listener's routes (GET only): `/config_dump` (snapshot, per-resource status and
/// reload record as JSON) and `/healthz/ready`.
pub fn admin_routes(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here\n");
    }
    match req.uri().path() {
        "/config_dump" => config_dump(state),
        "/healthz/ready" => ready_routes(state, req),
        "/" => text(
            StatusCode::OK,
            "waypoint admin: /config_dump /healthz/ready\n",
        ),
        other => text(
            StatusCode::NOT_FOUND,
            &format!("{other}: not found; try /config_dump\n"),
        ),
    }
}

/// The readiness listener's one route, `/healthz/ready`: 200 while ready, 503 otherwise.
pub fn ready_routes(state: &AdminState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz/ready" if state.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
        "/healthz/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        other => text(
            StatusCode::NOT_FOUND,
            &format!("{other}: not found; try /healthz/ready\n"),
        ),
    }
}

fn config_dump(state: &AdminState) -> Response<Full<Bytes>> {
    let snapshot = state.live.snapshot();
    let report = state.live.report();
    let dump = serde_json::json!({
        "version": snapshot.version,
        "config_dir": state.live.dir(),
        "gateway": snapshot.gateway,
        "services": snapshot.services,
        // Policies per target with their issues, trust domains, ext_authz providers; and the
        // state of every jwksUri.
        "security": snapshot.security.summary(&report),
        "jwks": state.jwks.status(),
        "resources": report.statuses,
        "reloads": *state.live.reload_record(),
    });
    match serde_json::to_vec_pretty(&dump) {
        Ok(body) => Response::builder()
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response build failed\n")),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot serialize config: {e}\n"),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// Serves `handler` on `listener` (HTTP/1.1 and h2c) until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    handler: Handler,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::listener::stopped(&mut shutdown) => break,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let resp = handler(&state, &req);
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder.serve_connection(TokioIo::new(tcp), svc).await {
                tracing::debug!("admin connection: {e}");
            }
        });
    }
}
