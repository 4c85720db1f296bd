//! Real ext_authz servers on 127.0.0.1, HTTP (hyper) and gRPC (tonic), driven by the
//! request's `x-ext-authz` header as Istio's sample server is: `allow`, `deny`, `slow`, `fail`.

use super::*;
use crate::config::Loaded;
use crate::snapshot::BuildOptions;
use authz::ConnectionAttrs;
use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption, QueryParameter};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

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
    let mut loaded = Loaded::default();
    let text = format!("{BASE}---\n{extra}");
    crate::config::files_for_tests::parse(std::path::Path::new("t.yaml"), &text, &mut loaded);
    let opts = BuildOptions {
        gateway_class: crate::snapshot::GATEWAY_CLASS.to_string(),
        version: 1,
        gateway: None,
    };
    let (s, _report) = Snapshot::build(&loaded.documents, loaded.errors, &opts);
    s.expect("snapshot")
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

/// The gRPC server: allows when `x-ext-authz: allow` (setting, appending and removing headers,
/// changing the query), denies with 401 and a body otherwise; `slow` waits 5 s. A connection
/// check (no HTTP request) is allowed for the service account `client` only.
#[derive(Clone, Default)]
struct GrpcAuthz {
    seen: Arc<Mutex<Vec<CheckRequest>>>,
}

fn header(key: &str, value: &str, append: Option<bool>) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.into(),
            value: value.into(),
            ..HeaderValue::default()
        }),
        append: append.map(|value| BoolValue { value }),
        ..HeaderValueOption::default()
    }
}

#[tonic::async_trait]
impl Authorization for GrpcAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let request = request.into_inner();
        self.seen.lock().expect("lock").push(request.clone());
        let verdict = request
            .attributes
            .as_ref()
            .and_then(|a| {
                a.request
                    .as_ref()?
                    .http
                    .as_ref()?
                    .headers
                    .get("x-ext-authz")
                    .cloned()
            })
            .unwrap_or_default();
        let l4_peer = request
            .attributes
            .as_ref()
            .filter(|a| a.request.is_none())
            .and_then(|a| a.source.as_ref())
            .map(|p| p.principal.clone());
        if let Some(principal) = l4_peer {
            let code = if principal.ends_with("/sa/client") {
                0
            } else {
                7
            };
            return Ok(tonic::Response::new(CheckResponse {
                status: Some(RpcStatus {
                    code,
                    ..RpcStatus::default()
                }),
                ..CheckResponse::default()
            }));
        }
        if verdict == "slow" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let response = if verdict == "allow" {
            CheckResponse {
                status: Some(RpcStatus::default()),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![
                        header("x-ext-authz-user", "alice", None),
                        header("x-tag", "b", Some(true)),
                    ],
                    headers_to_remove: vec!["x-secret".into(), ":path".into()],
                    response_headers_to_add: vec![header("x-seen", "yes", None)],
                    query_parameters_to_set: vec![QueryParameter {
                        key: "user".into(),
                        value: "alice".into(),
                    }],
                    query_parameters_to_remove: vec!["token".into()],
                    ..OkHttpResponse::default()
                })),
                ..CheckResponse::default()
            }
        } else {
            CheckResponse {
                status: Some(RpcStatus {
                    code: 7,
                    ..RpcStatus::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus { code: 401 }),
                    headers: vec![header("x-ext-authz-check-result", "denied", None)],
                    body: "denied by grpc".into(),
                })),
                ..CheckResponse::default()
            }
        };
        Ok(tonic::Response::new(response))
    }
}

async fn grpc_server(authz: GrpcAuthz) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        // The generated server is itself the one service to serve (no router needed).
        tonic::transport::Server::builder().serve_with_incoming(
            AuthorizationServer::new(authz),
            tonic::transport::server::TcpIncoming::from(listener),
        ),
    );
    addr
}

#[tokio::test]
async fn grpc_checks_carry_the_attributes_and_apply_the_answer() {
    let authz = GrpcAuthz::default();
    let addr = grpc_server(authz.clone()).await;
    let s = snapshot(&authz_service("auth", addr));
    let p = provider(
        "envoyExtAuthzGrpc",
        json!({"service": "authz.auth.svc.cluster.local", "port": 8000, "timeout": "300ms"}),
    );
    let client = ExtAuthzClient::default();
    let req = request(
        "/api?token=x&a=1",
        &[
            ("x-ext-authz", "allow"),
            ("x-tag", "a"),
            ("x-request-id", "r-1"),
        ],
    );
    assert_eq!(
        check(&client, &s, &p, &req).await,
        CustomOutcome::Allow {
            edits: vec![
                HeaderEdit::Set("x-ext-authz-user".into(), "alice".into()),
                HeaderEdit::Set("x-tag".into(), "a,b".into()),
                HeaderEdit::Remove("x-secret".into()),
            ],
            path: Some("/api?a=1&user=alice".into()),
            response_headers: vec![("x-seen".into(), "yes".into())],
        }
    );
    let denied = check(&client, &s, &p, &request("/", &[])).await;
    assert_eq!(
        denied,
        CustomOutcome::Deny(LocalReply {
            status: 401,
            body: "denied by grpc".into(),
            headers: vec![("x-ext-authz-check-result".into(), "denied".into())]
        })
    );
    let start = Instant::now();
    let slow = check(&client, &s, &p, &request("/", &[("x-ext-authz", "slow")])).await;
    assert!(matches!(slow, CustomOutcome::Deny(r) if r.status == 403));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the timeout bounds the check"
    );

    let seen = authz.seen.lock().expect("lock");
    let attrs = seen[0].attributes.as_ref().expect("attributes");
    let source = attrs.source.as_ref().expect("source");
    assert_eq!(source.principal, "spiffe://cluster.local/ns/shop/sa/client");
    let http = attrs
        .request
        .as_ref()
        .and_then(|r| r.http.as_ref())
        .expect("http");
    assert_eq!(http.method, "POST");
    assert_eq!(http.path, "/api?token=x&a=1");
    assert_eq!(http.host, "web.shop");
    assert_eq!(http.id, "r-1");
    assert_eq!(http.protocol, "HTTP/1.1");
    assert_eq!(http.headers[":authority"], "web.shop");
    assert_eq!(http.headers[":path"], "/api?token=x&a=1");
    assert_eq!(http.headers["x-tag"], "a");
}

#[tokio::test]
async fn a_dead_grpc_server_fails_promptly() {
    let dead = dead_addr().await;
    let s = snapshot("");
    let p = provider(
        "envoyExtAuthzGrpc",
        json!({"service": "127.0.0.1", "port": dead.port(), "statusOnError": "500"}),
    );
    let start = Instant::now();
    let outcome = check(&ExtAuthzClient::default(), &s, &p, &request("/", &[])).await;
    assert_eq!(outcome, on_error(500));
    assert!(start.elapsed() < Duration::from_secs(2));
    let mut open = p.clone();
    open.fail_open = true;
    assert!(matches!(
        check(&ExtAuthzClient::default(), &s, &open, &request("/", &[])).await,
        CustomOutcome::Allow { .. }
    ));
}

#[tokio::test]
async fn tcp_connections_are_checked_by_grpc_providers_only() {
    let addr = grpc_server(GrpcAuthz::default()).await;
    let s = snapshot("");
    let grpc = provider(
        "envoyExtAuthzGrpc",
        json!({"service": "127.0.0.1", "port": addr.port()}),
    );
    let client = ExtAuthzClient::default();
    let mut conn = ConnectionAttrs {
        source_principal: Some("cluster.local/ns/shop/sa/client".into()),
        ..ConnectionAttrs::default()
    };
    assert!(client.check_connection(&s, &grpc, &conn).await);
    conn.source_principal = Some("cluster.local/ns/shop/sa/intruder".into());
    assert!(!client.check_connection(&s, &grpc, &conn).await);
    let http = provider(
        "envoyExtAuthzHttp",
        json!({"service": "127.0.0.1", "port": addr.port()}),
    );
    assert!(
        client.check_connection(&s, &http, &conn).await,
        "istiod ignores CUSTOM with an HTTP provider on TCP"
    );
    let dead = provider(
        "envoyExtAuthzGrpc",
        json!({"service": "127.0.0.1", "port": dead_addr().await.port()}),
    );
    assert!(!client.check_connection(&s, &dead, &conn).await);
}

#[tokio::test]
async fn bodies_go_in_checks_as_include_request_body_in_check_says() {
    let authz = GrpcAuthz::default();
    let addr = grpc_server(authz.clone()).await;
    let s = snapshot("");
    let p = provider(
        "envoyExtAuthzGrpc",
        json!({"service": "127.0.0.1", "port": addr.port(),
            "includeRequestBodyInCheck": {"maxRequestBytes": 4, "allowPartialMessage": true}}),
    );
    let conn = ConnectionAttrs::default();
    let attrs = RequestAttrs {
        conn: &conn,
        http: None,
    };
    let client = ExtAuthzClient::default();
    let req = request("/", &[("x-ext-authz", "allow")]);
    let outcome = client.check_with_body(&s, &p, &req, &attrs, b"hello").await;
    assert!(
        matches!(outcome, CustomOutcome::Allow { .. }),
        "{outcome:?}"
    );
    let seen = authz.seen.lock().expect("lock").clone();
    let http = seen[0]
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref()?.http.clone())
        .expect("http");
    assert_eq!(http.body, "hell");
    assert_eq!(http.headers["x-envoy-auth-partial-body"], "true");
    let mut strict = p.clone();
    if let Some(b) = strict.include_body.as_mut() {
        b.allow_partial_message = false;
    }
    let outcome = client
        .check_with_body(&s, &strict, &req, &attrs, b"hello")
        .await;
    assert!(matches!(outcome, CustomOutcome::Deny(r) if r.status == 413));
}
