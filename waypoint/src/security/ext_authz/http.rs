//! The HTTP ext_authz call: the check request `authz` describes, sent over one pooled
//! keep-alive hyper client, and the server's answer read back for `authz` to interpret.

use authz::ext_authz::{Allowed, CheckBody, ExtAuthzProvider};
use authz::LocalReply;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pingora_http::RequestHeader;
use std::net::SocketAddr;

/// The largest answer body read from a server; a denial's body is for a client to read, so
/// anything larger is a broken server.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Pooled HTTP/1.1 connections to every HTTP ext_authz server.
#[derive(Debug, Clone)]
pub struct HttpChecker {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpChecker {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        HttpChecker {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl HttpChecker {
    /// Sends the check for `req` to `addr` and interprets the answer; `Err` is a failed check.
    pub async fn check(
        &self,
        provider: &ExtAuthzProvider,
        addr: SocketAddr,
        req: &RequestHeader,
        authority: &str,
        body: Option<CheckBody<'_>>,
    ) -> Result<Result<Allowed, LocalReply>, String> {
        let path = req.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let check = provider.http_check(req.method.as_str(), authority, path, &req.headers, body);
        let mut builder = http::Request::builder()
            .method(check.method.as_str())
            .uri(format!("http://{addr}{}", check.path));
        for (name, value) in &check.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(
                body.map_or(&[][..], |b| b.bytes),
            )))
            .map_err(|e| format!("cannot build the check request: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("HTTP check to {addr} failed: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the answer of {addr} failed: {e}"))?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        provider.http_answer(parts.status.as_u16(), &parts.headers, body)
    }
}
