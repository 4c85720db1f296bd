//! The gRPC ext_authz server (tonic, `envoy.service.auth.v3.Authorization`) and the checks
//! against it: HTTP requests and TCP connections.

use super::*;
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
        let Some(attributes) = request.attributes else {
            return Err(tonic::Status::invalid_argument("no attributes"));
        };
        let Some(http) = attributes.request.and_then(|r| r.http) else {
            let principal = attributes.source.map(|p| p.principal).unwrap_or_default();
            let code = if principal.ends_with("/sa/client") {
                0
            } else {
                7
            };
            return Ok(tonic::Response::new(status(code)));
        };
        let verdict = http.headers.get("x-ext-authz").cloned().unwrap_or_default();
        if verdict == "slow" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let mut response = status(if verdict == "allow" { 0 } else { 7 });
        response.http_response = Some(if verdict == "allow" {
            HttpResponse::OkResponse(OkHttpResponse {
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
            })
        } else {
            HttpResponse::DeniedResponse(DeniedHttpResponse {
                status: Some(HttpStatus { code: 401 }),
                headers: vec![header("x-ext-authz-check-result", "denied", None)],
                body: "denied by grpc".into(),
            })
        });
        Ok(tonic::Response::new(response))
    }
}

/// A CheckResponse with only a gRPC status (0 OK, 7 PERMISSION_DENIED).
fn status(code: i32) -> CheckResponse {
    CheckResponse {
        status: Some(RpcStatus {
            code,
            ..RpcStatus::default()
        }),
        ..CheckResponse::default()
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
