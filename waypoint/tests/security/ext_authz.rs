//! Real ext_authz servers started by the test, shaped like Istio's sample `ext-authz` server:
//! a request carrying `x-ext-authz: allow` is allowed (with `x-ext-authz-check-result:
//! allowed` and `x-user: alice` for the upstream), any other is denied with 403, a body saying
//! why and `x-ext-authz-check-result: denied`. Each server records what it was asked.

use super::serve::serve;
use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc::Status;
use http_body_util::Full;
use hyper::service::service_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The HTTP server's denial body.
pub const HTTP_DENIED: &str =
    "denied by ext_authz for not found header `x-ext-authz: allow` in the request";
/// The gRPC server's denial body.
pub const GRPC_DENIED: &str = "denied by ext_authz grpc: no `x-ext-authz: allow`";

/// One check as the server saw it: the path and the request headers it was sent.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The value of header `name`, if the server got it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a server was asked so far.
#[derive(Clone, Default)]
pub struct Checks(Arc<Mutex<Vec<Seen>>>);

impl Checks {
    fn push(&self, seen: Seen) {
        self.0.lock().expect("lock").push(seen);
    }

    /// Every check so far.
    pub fn all(&self) -> Vec<Seen> {
        self.0.lock().expect("lock").clone()
    }
}

/// The HTTP ext_authz server (Envoy's `http_service`): answers every check request.
pub async fn http_server() -> (SocketAddr, Checks) {
    let checks = Checks::default();
    let record = checks.clone();
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let reply = http_check(&req, &record);
        async move { Ok::<_, std::convert::Infallible>(reply) }
    });
    (serve(svc, false).await, checks)
}

fn http_check(
    req: &http::Request<hyper::body::Incoming>,
    record: &Checks,
) -> http::Response<Full<Bytes>> {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let seen = Seen {
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers,
    };
    let allow = seen.header("x-ext-authz") == Some("allow");
    record.push(seen);
    let b = http::Response::builder();
    let resp = if allow {
        b.status(200)
            .header("x-ext-authz-check-result", "allowed")
            .header("x-user", "alice")
            .header("x-not-listed", "dropped")
            .body(Full::new(Bytes::new()))
    } else {
        b.status(403)
            .header("x-ext-authz-check-result", "denied")
            .header("x-not-listed", "dropped")
            .body(Full::new(Bytes::from(HTTP_DENIED)))
    };
    resp.unwrap_or_default()
}

/// The gRPC server (`envoy.service.auth.v3.Authorization/Check`).
#[derive(Clone, Default)]
struct GrpcAuthz(Checks);

fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: value.to_string(),
            ..HeaderValue::default()
        }),
        ..HeaderValueOption::default()
    }
}

#[tonic::async_trait]
impl Authorization for GrpcAuthz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let http = request
            .into_inner()
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .unwrap_or_default();
        let seen = Seen {
            path: http.path.clone(),
            headers: http.headers.into_iter().collect(),
        };
        let allow = seen.header("x-ext-authz") == Some("allow");
        self.0.push(seen);
        let resp = if allow {
            CheckResponse {
                status: Some(Status::default()),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![header("x-ext-authz-check-result", "allowed")],
                    ..OkHttpResponse::default()
                })),
                ..CheckResponse::default()
            }
        } else {
            CheckResponse {
                // google.rpc.Code PERMISSION_DENIED
                status: Some(Status {
                    code: 7,
                    ..Status::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: StatusCode::Forbidden as i32,
                    }),
                    headers: vec![header("x-ext-authz-check-result", "denied")],
                    body: GRPC_DENIED.to_string(),
                })),
                ..CheckResponse::default()
            }
        };
        Ok(tonic::Response::new(resp))
    }
}

/// The gRPC ext_authz server on 127.0.0.1.
pub async fn grpc_server() -> (SocketAddr, Checks) {
    let svc = GrpcAuthz::default();
    let checks = svc.0.clone();
    // Served by hyper directly: tonic's router is not built here.
    let server = hyper_util::service::TowerToHyperService::new(AuthorizationServer::new(svc));
    (serve(server, true).await, checks)
}
