//! The CUSTOM action: checking a request with an ext_authz server over HTTP or gRPC
//! (`envoy.service.auth.v3.Authorization/Check`), as Envoy's `ext_authz` filter configured by
//! istiod does.
//!
//! `check` resolves the provider's server ([`resolve`]), calls it within the provider's
//! `timeout` ([`http`], [`grpc`]) and turns the answer into a [`CustomOutcome`]; what the
//! answer means is decided in `authz::ext_authz`. A failed check (no endpoint, connection
//! refused, timeout, 5xx, RPC error) is `statusOnError` unless `failOpen`, never a wait past
//! the timeout.

mod grpc;
mod http;
mod resolve;

pub use resolve::{resolve, Target};

use crate::snapshot::Snapshot;
use authz::ext_authz::{Allowed, ExtAuthzProtocol, ExtAuthzProvider};
use authz::{ConnectionAttrs, HeaderEdit, LocalReply, RequestAttrs};
use pingora_http::RequestHeader;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What the ext_authz server (or its failure policy) decided.
///
/// A denial is logged with Envoy's response flag `UAEX`
/// (`telemetry::ResponseFlag::UnauthorizedExternalService`), whether the server denied or the
/// check failed without `failOpen`.
#[derive(Debug, Clone, PartialEq)]
pub enum CustomOutcome {
    /// Allowed: what to change before forwarding.
    Allow {
        /// Edits to the upstream request, applied in order: `headersToUpstreamOnAllow` (HTTP),
        /// the ok_response's headers (gRPC; an appended header is set to all its values), then
        /// removals (`x-envoy-auth-headers-to-remove`, `headers_to_remove`).
        edits: Vec<HeaderEdit>,
        /// The upstream request's new path and query, when a gRPC server changed query
        /// parameters.
        path: Option<String>,
        /// Headers added to the response to the client: `headersToDownstreamOnAllow` (HTTP),
        /// the ok_response's `response_headers_to_add` (gRPC).
        response_headers: Vec<(String, String)>,
    },
    /// Denied: the answer to the client (the server's status, body and
    /// `headersToDownstreamOnDeny`, or `statusOnError` with no body).
    Deny(LocalReply),
}

impl From<Result<Allowed, LocalReply>> for CustomOutcome {
    fn from(answer: Result<Allowed, LocalReply>) -> Self {
        match answer {
            Ok(a) => CustomOutcome::Allow {
                edits: a.upstream,
                path: a.path,
                response_headers: a.downstream,
            },
            Err(reply) => CustomOutcome::Deny(reply),
        }
    }
}

/// Connections to ext_authz servers, shared by all requests: one pooled HTTP client, one gRPC
/// channel per endpoint.
#[derive(Debug, Default)]
pub struct ExtAuthzClient {
    http: http::HttpChecker,
    grpc: grpc::GrpcChecker,
    /// Spreads checks over a service's endpoints.
    next: AtomicUsize,
}

impl ExtAuthzClient {
    /// A client with no connections yet.
    pub fn new() -> Arc<Self> {
        Arc::new(ExtAuthzClient::default())
    }

    /// Checks `req` with `provider`, whose `service` is resolved through `snapshot`. Returns
    /// within the provider's `timeout`. A provider with `includeRequestBodyInCheck` sees an
    /// empty body: use [`ExtAuthzClient::check_with_body`] with the buffered body.
    pub async fn check(
        &self,
        snapshot: &Snapshot,
        provider: &ExtAuthzProvider,
        req: &RequestHeader,
        attrs: &RequestAttrs<'_>,
    ) -> CustomOutcome {
        self.check_with_body(snapshot, provider, req, attrs, &[])
            .await
    }

    /// [`ExtAuthzClient::check`] with the client's (buffered) body, of which the check carries
    /// what `includeRequestBodyInCheck` asks (a body too long without `allowPartialMessage`
    /// is answered 413, as Envoy does).
    pub async fn check_with_body(
        &self,
        snapshot: &Snapshot,
        provider: &ExtAuthzProvider,
        req: &RequestHeader,
        attrs: &RequestAttrs<'_>,
        body: &[u8],
    ) -> CustomOutcome {
        // One check; `Err` when it failed.
        let ask = async {
            let body = match provider.check_body(body) {
                Ok(body) => body,
                Err(too_long) => return Ok::<_, String>(Err(too_long)),
            };
            let target = resolve(snapshot, provider)
                .map_err(|e| format!("service '{}': {e}", provider.service))?;
            let (addr, grpc_authority) = self.pick(&target).await?;
            // HTTP/1 carries the authority in Host, HTTP/2 in the URI.
            let authority = req
                .headers
                .get(::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri.authority().map(|a| a.as_str()))
                .unwrap_or_default();
            match provider.protocol {
                ExtAuthzProtocol::Http => {
                    self.http.check(provider, addr, req, authority, body).await
                }
                ExtAuthzProtocol::Grpc => {
                    let request = grpc::check_request(req, authority, attrs, body);
                    let response = self
                        .grpc
                        .check(addr, &grpc_authority, request, provider.timeout)
                        .await?;
                    Ok(grpc::answer(response, req))
                }
            }
        };
        let failure = match tokio::time::timeout(provider.timeout, ask).await {
            Ok(Ok(answer)) => {
                if let Err(reply) = &answer {
                    tracing::debug!(provider = %provider.name, status = reply.status, "ext_authz denied");
                }
                return answer.into();
            }
            Ok(Err(why)) => why,
            Err(_) => format!("no answer within {:?}", provider.timeout),
        };
        tracing::warn!(
            provider = %provider.name,
            fail_open = provider.fail_open,
            "ext_authz check failed: {failure}"
        );
        provider.on_failure().into()
    }

    /// Checks a TCP connection with `provider`, as Envoy's network ext_authz filter does for
    /// L4 traffic: true when allowed. istiod generates that filter for gRPC providers only and
    /// ignores CUSTOM policies with an HTTP provider on TCP, so those allow. A failed check
    /// allows only with `failOpen`.
    pub async fn check_connection(
        &self,
        snapshot: &Snapshot,
        provider: &ExtAuthzProvider,
        conn: &ConnectionAttrs,
    ) -> bool {
        if provider.protocol == ExtAuthzProtocol::Http {
            return true;
        }
        let ask = async {
            let target = resolve(snapshot, provider)?;
            let (addr, authority) = self.pick(&target).await?;
            let request = grpc::connection_request(conn);
            self.grpc
                .check(addr, &authority, request, provider.timeout)
                .await
        };
        match tokio::time::timeout(provider.timeout, ask).await {
            Ok(Ok(response)) => grpc::allows(&response),
            Ok(Err(why)) => {
                tracing::warn!(provider = %provider.name, "ext_authz connection check failed: {why}");
                provider.fail_open
            }
            Err(_) => {
                tracing::warn!(provider = %provider.name, "ext_authz connection check timed out");
                provider.fail_open
            }
        }
    }

    /// One address of `target` (endpoints taken in turn), and the authority of gRPC calls.
    async fn pick(&self, target: &Target) -> Result<(SocketAddr, String), String> {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        match target {
            Target::Endpoints { addrs, authority } => {
                let addr = addrs.get(turn % addrs.len().max(1)).ok_or("no endpoint")?;
                Ok((*addr, authority.clone()))
            }
            Target::Addr(addr) => Ok((*addr, String::new())),
            Target::Dns { host, port } => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|e| format!("cannot resolve '{host}': {e}"))?
                    .collect();
                let addr = addrs
                    .get(turn % addrs.len().max(1))
                    .ok_or_else(|| format!("'{host}' resolves to no address"))?;
                Ok((*addr, format!("{host}:{port}")))
            }
        }
    }
}

#[cfg(test)]
mod tests;
