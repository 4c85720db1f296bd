//! HTTPRoute rule features through the real in-process waypoint: redirect, rewrite, request
//! timeout, retry on status, mirror and CORS preflight, against real backends.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::{local_options, mesh_config, write, HttpClient};

/// What a scripted backend saw: (Host, path and query) per request.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A backend that answers its first `failures` requests with 503 and the rest with 200, and
/// records every request.
async fn scripted_backend(failures: u32) -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let count = Arc::new(AtomicU32::new(0));
    let recorded = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = recorded.clone();
            let count = count.clone();
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let host = req
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let target = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_default();
                seen.lock().expect("lock").push((host, target));
                let n = count.fetch_add(1, Ordering::SeqCst);
                let status = if n < failures { 503 } else { 200 };
                async move {
                    let mut resp = http::Response::new(Full::new(Bytes::from(format!("try {n}"))));
                    *resp.status_mut() = http::StatusCode::from_u16(status).expect("status");
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

const ROUTE: &str = "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: features, namespace: shop}
spec:
  parentRefs: [{group: '', kind: Service, name: web, port: 80}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /redirect}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        statusCode: 301
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /moved}
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: rewritten.example
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
    backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 300ms}
    backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /flaky}}]
    retry: {codes: [503], attempts: 2}
    backendRefs: [{name: web-flaky, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /hopeless}}]
    retry: {codes: [503], attempts: 1}
    backendRefs: [{name: web-hopeless, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /mirror}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: web-mirror, port: 80}}
    backendRefs: [{name: web-v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /cors}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ['https://*.example.com']
        allowMethods: [GET, PUT]
        allowHeaders: [x-token]
        allowCredentials: true
        maxAge: 60
    backendRefs: [{name: web-v1, port: 80}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_features_apply_end_to_end() {
    let echo = conformance::echo::spawn_echo_on_free_port(conformance::EchoIdentity {
        namespace: "shop".into(),
        service: "web-v1".into(),
        pod: "web-v1-0".into(),
    })
    .await
    .expect("echo");
    let (flaky, flaky_seen) = scripted_backend(2).await;
    let (hopeless, hopeless_seen) = scripted_backend(u32::MAX).await;
    let (mirror, mirror_seen) = scripted_backend(0).await;
    let config = tempfile::tempdir().expect("tempdir");
    let mesh = mesh_config(&[
        ("v1", echo.local_addr),
        ("flaky", flaky),
        ("hopeless", hopeless),
        ("mirror", mirror),
    ]);
    write(config.path(), "mesh.yaml", &format!("{mesh}{ROUTE}"));
    let wp = waypoint::app::start(local_options(config.path()))
        .await
        .expect("waypoint starts");
    let addr = wp.http_addr.expect("http listener");
    let client = HttpClient::new();
    let host = "web.shop";

    // Redirect: answered by the waypoint, prefix replaced, query kept, port 443 left out.
    let r = client
        .get(addr, "web.shop:80", "/redirect/a/b?x=1", &[])
        .await
        .expect("redirect");
    assert_eq!(r.status, 301, "{}", r.body);
    assert_eq!(
        r.headers.get("location").and_then(|l| l.to_str().ok()),
        Some("https://web.shop/moved/a/b?x=1")
    );

    // Rewrite: the backend sees the new host and path, with the query.
    let r = client
        .get(addr, host, "/old/page?q=2", &[])
        .await
        .expect("rewrite");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echo()["path"], "/new/page?q=2", "{}", r.body);
    assert_eq!(r.echo()["host"], "rewritten.example", "{}", r.body);

    // Request timeout: a backend slower than the route allows is a 504, not a reset.
    let r = client
        .get(addr, host, "/slow?delay=2s", &[])
        .await
        .expect("timeout reply");
    assert_eq!(r.status, 504, "{}", r.body);
    let r = client
        .get(addr, host, "/slow?delay=10ms", &[])
        .await
        .expect("fast enough");
    assert_eq!(r.status, 200, "{}", r.body);

    // Retry: two 503s then success, within two retries.
    let r = client.get(addr, host, "/flaky", &[]).await.expect("retry");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(flaky_seen.lock().expect("lock").len(), 3);
    // Out of retries: the backend's own last answer goes to the client.
    let r = client
        .get(addr, host, "/hopeless", &[])
        .await
        .expect("no retry left");
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(hopeless_seen.lock().expect("lock").len(), 2);

    // Mirror: the primary answers; the mirror gets a copy with a -shadow host.
    let r = client
        .get(addr, host, "/mirror/x?id=7", &[])
        .await
        .expect("mirror");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.pod(), "web-v1-0");
    let mut mirrored = Vec::new();
    for _ in 0..100 {
        mirrored = mirror_seen.lock().expect("lock").clone();
        if !mirrored.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        mirrored,
        vec![("web.shop-shadow".to_owned(), "/mirror/x?id=7".to_owned())]
    );

    // CORS: an allowed preflight is answered by the waypoint; a refused one is 403.
    let preflight = [
        ("origin", "https://app.example.com"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-token"),
    ];
    let r = client
        .send_method(addr, "OPTIONS", host, "/cors", &preflight)
        .await
        .expect("preflight");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.echo().is_null(), "answered by the waypoint: {}", r.body);
    let header = |name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    assert_eq!(
        header("access-control-allow-methods").as_deref(),
        Some("GET, PUT")
    );
    assert_eq!(
        header("access-control-allow-headers").as_deref(),
        Some("x-token")
    );
    assert_eq!(header("access-control-max-age").as_deref(), Some("60"));
    assert_eq!(
        header("access-control-allow-credentials").as_deref(),
        Some("true")
    );
    let r = client
        .send_method(
            addr,
            "OPTIONS",
            host,
            "/cors",
            &[
                ("origin", "https://evil.test"),
                ("access-control-request-method", "PUT"),
            ],
        )
        .await
        .expect("refused preflight");
    assert_eq!(r.status, 403);
    assert!(r.headers.get("access-control-allow-origin").is_none());
    // The actual request: forwarded, with the CORS headers added to the backend's response.
    let r = client
        .get(
            addr,
            host,
            "/cors",
            &[("origin", "https://app.example.com")],
        )
        .await
        .expect("cors request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.pod(), "web-v1-0");
    assert_eq!(
        r.headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example.com")
    );

    wp.shutdown().await;
}
