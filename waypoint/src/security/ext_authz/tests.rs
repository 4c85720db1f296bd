//! Real ext_authz servers on 127.0.0.1, HTTP (hyper, here) and gRPC (tonic, [`grpc`]), driven
//! by the request's `x-ext-authz` header as Istio's sample server is: `allow`, `deny`, `slow`,
//! `fail`.

use super::*;
use authz::ConnectionAttrs;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

mod grpc;

/// What the HTTP server saw: method, path and headers of each check.
type Seen = Arc<Mutex<Vec<(String, String, ::http::HeaderMap)>>>;

const BASE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
"#;

fn snapshot(extra: &str) -> Snapshot {
    crate::proxy::tests::snapshot_of(&format!("{BASE}---\n{extra}"))
}

/// A Service `authz` in `ns` (port 8000) whose EndpointSlice points at `addr`.
fn authz_service(ns: &str, addr: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: authz, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: 8000}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: authz-1, namespace: {ns}, labels: {{kubernetes.io/service-name: authz}}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"{}\"]}}]\n",
        addr.port(),
        addr.ip()
    )
}

fn provider(kind: &str, spec: serde_json::Value) -> ExtAuthzProvider {
    ExtAuthzProvider::parse(&json!({"name": "ext", kind: spec}))
        .expect("valid")
        .expect("ext_authz")
}

fn request(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("POST", path.as_bytes(), None).expect("request");
    req.insert_header("host", "web.shop").expect("host");
    for (k, v) in headers {
        req.append_header(k.to_string(), *v).expect("header");
    }
    req
}

async fn check(
    client: &ExtAuthzClient,
    s: &Snapshot,
    p: &ExtAuthzProvider,
    req: &RequestHeader,
) -> CustomOutcome {
    let conn = ConnectionAttrs {
        source_principal: Some("cluster.local/ns/shop/sa/client".into()),
        source_ip: Some("127.0.0.9".parse().expect("ip")),
        destination_ip: Some("10.0.0.5".parse().expect("ip")),
        destination_port: 80,
        sni: None,
    };
    let attrs = RequestAttrs {
        conn: &conn,
        http: None,
    };
    client.check(s, p, req, &attrs).await
}

/// The HTTP server: `allow` → 200 with result headers, `deny` → 403 with a body, `slow` →
/// waits 5 s, `fail` → 500.
async fn http_server(seen: Seen) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            let service = service_fn(move |req: ::http::Request<hyper::body::Incoming>| {
                let seen = seen.clone();
                async move {
                    let verdict = req
                        .headers()
                        .get("x-ext-authz")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.lock().expect("lock").push((
                        req.method().to_string(),
                        req.uri().to_string(),
                        req.headers().clone(),
                    ));
                    let answer = ::http::Response::builder();
                    let (answer, body) = match verdict.as_str() {
                        "allow" => (
                            answer
                                .status(200)
                                .header("x-ext-authz-check-result", "allowed")
                                .header("x-ext-authz-user", "alice")
                                .header("x-envoy-auth-headers-to-remove", "x-secret"),
                            "",
                        ),
                        "slow" => {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            (answer.status(200), "")
                        }
                        "fail" => (answer.status(500), "broken"),
                        _ => (
                            answer
                                .status(403)
                                .header("x-ext-authz-check-result", "denied")
                                .header("x-internal", "hidden"),
                            "denied by ext_authz for not found header `x-ext-authz: allow` in the request",
                        ),
                    };
                    answer.body(Full::new(Bytes::from(body)))
                }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The answer to a failed check: `statusOnError` with no body.
fn on_error(status: u16) -> CustomOutcome {
    CustomOutcome::Deny(LocalReply {
        status,
        body: String::new(),
        headers: vec![],
    })
}

/// An address nothing listens on.
async fn dead_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr")
}

#[tokio::test]
async fn http_allow_sends_envoys_check_and_forwards_the_chosen_headers() {
    let seen: Seen = Arc::default();
    let addr = http_server(seen.clone()).await;
    let s = snapshot(&authz_service("auth", addr));
    let p = provider(
        "envoyExtAuthzHttp",
        json!({"service": "authz.auth.svc.cluster.local", "port": 8000, "pathPrefix": "/check",
            "includeRequestHeadersInCheck": ["x-ext-authz"],
            "headersToUpstreamOnAllow": ["x-ext-authz-*"],
            "headersToDownstreamOnAllow": ["x-ext-authz-check-result"]}),
    );
    let client = ExtAuthzClient::new();
    let req = request(
        "/api/items?id=1",
        &[
            ("x-ext-authz", "allow"),
            ("x-other", "1"),
            ("authorization", "Bearer t"),
        ],
    );
    let outcome = check(&client, &s, &p, &req).await;
    assert_eq!(
        outcome,
        CustomOutcome::Allow {
            edits: vec![
                HeaderEdit::Set("x-ext-authz-check-result".into(), "allowed".into()),
                HeaderEdit::Set("x-ext-authz-user".into(), "alice".into()),
                HeaderEdit::Remove("x-secret".into()),
            ],
            path: None,
            response_headers: vec![("x-ext-authz-check-result".into(), "allowed".into())],
        }
    );
    let seen = seen.lock().expect("lock");
    let (method, path, headers) = &seen[0];
    assert_eq!(method, "POST", "the check has the request's method");
    assert_eq!(path, "/check/api/items?id=1", "pathPrefix + path + query");
    assert_eq!(headers["host"], "web.shop");
    assert_eq!(headers["content-length"], "0");
    assert_eq!(headers["authorization"], "Bearer t");
    assert_eq!(headers["x-ext-authz"], "allow");
    assert!(
        !headers.contains_key("x-other"),
        "not in includeRequestHeadersInCheck"
    );
}

#[tokio::test]
async fn http_deny_passes_status_body_and_headers() {
    let addr = http_server(Arc::default()).await;
    let s = snapshot(&authz_service("auth", addr));
    let p = provider(
        "envoyExtAuthzHttp",
        json!({"service": "auth/authz.auth.svc.cluster.local", "port": 8000,
            "headersToDownstreamOnDeny": ["x-ext-authz-check-result"]}),
    );
    let outcome = check(&ExtAuthzClient::default(), &s, &p, &request("/", &[])).await;
    let CustomOutcome::Deny(reply) = outcome else {
        panic!("denied expected, got {outcome:?}");
    };
    assert_eq!(reply.status, 403);
    assert!(
        reply.body.starts_with("denied by ext_authz"),
        "{}",
        reply.body
    );
    assert_eq!(
        reply.headers,
        vec![("x-ext-authz-check-result".to_string(), "denied".to_string())]
    );
}

#[tokio::test]
async fn failures_answer_status_on_error_or_fail_open_promptly() {
    let live = http_server(Arc::default()).await;
    let dead = dead_addr().await;
    let s = snapshot(&authz_service("auth", dead));
    let client = ExtAuthzClient::default();
    let by_service =
        json!({"service": "authz.auth.svc.cluster.local", "port": 8000, "statusOnError": "503"});
    let denied = check(
        &client,
        &s,
        &provider("envoyExtAuthzHttp", by_service.clone()),
        &request("/", &[]),
    )
    .await;
    assert_eq!(denied, on_error(503));
    let mut open = by_service.clone();
    open["failOpen"] = json!(true);
    let allowed = check(
        &client,
        &s,
        &provider("envoyExtAuthzHttp", open),
        &request("/", &[]),
    )
    .await;
    assert_eq!(
        allowed,
        CustomOutcome::Allow {
            edits: vec![],
            path: None,
            response_headers: vec![]
        }
    );

    let by_ip = |timeout: &str| {
        provider(
            "envoyExtAuthzHttp",
            json!({"service": "127.0.0.1", "port": live.port(), "timeout": timeout,
                "includeRequestHeadersInCheck": ["x-ext-authz"]}),
        )
    };
    let start = Instant::now();
    let slow = check(
        &client,
        &s,
        &by_ip("200ms"),
        &request("/", &[("x-ext-authz", "slow")]),
    )
    .await;
    assert_eq!(slow, on_error(403));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the timeout bounds the check"
    );
    let failed = check(
        &client,
        &s,
        &by_ip("2s"),
        &request("/", &[("x-ext-authz", "fail")]),
    )
    .await;
    assert_eq!(failed, on_error(403), "a 5xx is a failure, not a denial");
    let missing = provider(
        "envoyExtAuthzGrpc",
        json!({"service": "authz.auth.svc.cluster.local", "port": 9999}),
    );
    assert!(
        matches!(check(&client, &s, &missing, &request("/", &[])).await, CustomOutcome::Deny(r) if r.status == 403)
    );
}

#[test]
fn services_resolve_by_hostname_namespace_ip_or_dns() {
    let a: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
    let b: SocketAddr = "127.0.0.2:7002".parse().expect("addr");
    let se = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: auth}\nspec:\n  hosts: [ext-authz.example.com]\n  ports: [{number: 9000, name: grpc, protocol: GRPC}]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.3}]\n";
    let s = snapshot(
        &[
            authz_service("auth", a),
            authz_service("other", b),
            se.to_string(),
        ]
        .join("---\n"),
    );
    let target = |service: &str, port: u16| {
        resolve(
            &s,
            &ExtAuthzProvider::new("p", service, port, ExtAuthzProtocol::Grpc),
        )
    };
    assert_eq!(
        target("authz.auth.svc.cluster.local", 8000),
        Ok(Target::Endpoints {
            addrs: vec![a],
            authority: "outbound_.8000_._.authz.auth.svc.cluster.local".into()
        })
    );
    assert_eq!(
        target("other/authz.other.svc.cluster.local", 8000)
            .map(|t| matches!(t, Target::Endpoints { addrs, .. } if addrs == vec![b])),
        Ok(true)
    );
    assert!(
        target("authz.auth", 8000).is_ok(),
        "Kubernetes short names resolve too"
    );
    assert!(target("authz.auth.svc.cluster.local", 81)
        .expect_err("no port")
        .contains("no port 81"));
    assert_eq!(
        target("ext-authz.example.com", 9000)
            .map(|t| matches!(t, Target::Endpoints { addrs, .. } if addrs[0].port() == 9000)),
        Ok(true)
    );
    assert!(target("wrong/authz.auth.svc.cluster.local", 8000)
        .is_ok_and(|t| matches!(t, Target::Dns { .. })));
    assert_eq!(
        target("127.0.0.5", 1234),
        Ok(Target::Addr("127.0.0.5:1234".parse().expect("addr")))
    );
    assert_eq!(
        target("[::1]", 1234),
        Ok(Target::Addr("[::1]:1234".parse().expect("addr")))
    );
    assert_eq!(
        target("localhost", 80),
        Ok(Target::Dns {
            host: "localhost".into(),
            port: 80
        })
    );
}
