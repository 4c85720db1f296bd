//! The request pipeline: the pingora `ProxyHttp` whose phases apply, in a fixed order, the
//! decisions of `routing` and `resilience` (and next `authz` and `telemetry`).
//!
//! Every listener (the plain HTTP one, HBONE CONNECT streams, Gateway listeners) feeds the same
//! `HttpProxy<WaypointProxy>`, so a request is handled identically whichever way it came in.
//! Each phase is a short list of named steps; the files beside this one hold them:
//! `context` (per-request state), `decide` (route decision), `authorize` (path normalization
//! and security), `fault` (fault injection),
//! `upstream` (peer and header edits), `retry` (retries and the route's deadline), `reply`
//! (every local answer), `mirror`, `headers`, `record` (access log). The places where
//! authorization, fault injection, breaker admission and metrics plug in are marked `STEP`.

pub mod admit;
mod authorize;
mod context;
mod decide;
mod fault;
mod headers;
mod mirror;
mod record;
mod reply;
mod retry;
mod upstream;

pub use authorize::{apply_edits, authorize, connection_attrs, normalize_path};
pub use context::{Attempt, Auth, Downstream, Record, RequestCtx};
pub use decide::{decide, request_authority, Action, Routed, RuleFilters, Upstream};
pub use reply::{classify_failure, Failure, PreflightAnswer, Refusal};

use crate::hbone::client::HboneClient;
use crate::hbone::context::TunnelRegistry;
use crate::live::LiveConfig;
use crate::security::Clients;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use telemetry::ResponseFlag;

/// The waypoint's `ProxyHttp`: shared by every request, holding only what outlives one.
pub struct WaypointProxy {
    live: Arc<LiveConfig>,
    tunnels: Arc<TunnelRegistry>,
    /// Set when the waypoint has a workload identity: ambient endpoints are reached over HBONE.
    hbone: Option<Arc<HboneClient>>,
    /// Gateway role: the listener port each bound local address serves.
    gateway_ports: Arc<ArcSwap<HashMap<SocketAddr, u16>>>,
    /// The JWKS cache and ext_authz connections STEP authorize uses.
    security: Clients,
}

impl WaypointProxy {
    /// A proxy reading config from `live`, tunnel facts from `tunnels`, dialling ambient
    /// endpoints with `hbone`, mapping Gateway listener addresses with `gateway_ports`, and
    /// checking security with `security`'s JWKS cache and ext_authz client.
    pub fn new(
        live: Arc<LiveConfig>,
        tunnels: Arc<TunnelRegistry>,
        hbone: Option<Arc<HboneClient>>,
        gateway_ports: Arc<ArcSwap<HashMap<SocketAddr, u16>>>,
        security: Clients,
    ) -> Self {
        WaypointProxy {
            live,
            tunnels,
            hbone,
            gateway_ports,
            security,
        }
    }

    /// Records where the request came from: its tunnel (identity, CONNECT target) or Gateway
    /// listener, and whether the client spoke TLS.
    fn note_downstream(&self, session: &Session, downstream: &mut Downstream) {
        downstream.tunnel = session
            .digest()
            .and_then(|d| d.socket_digest.as_ref())
            .and_then(|d| self.tunnels.lookup(d));
        if downstream.tunnel.is_none() {
            downstream.gateway_port = session
                .server_addr()
                .and_then(|a| a.as_inet())
                .and_then(|a| self.gateway_ports.load().get(a).copied());
        }
        downstream.client_ip = admit::client_ip(session);
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        downstream.scheme = if tls { "https" } else { "http" };
    }
}

#[async_trait]
impl ProxyHttp for WaypointProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // STEP trace context (telemetry): extract traceparent/B3 and start the span here.
        self.note_downstream(session, &mut ctx.downstream);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.live.snapshot();
        // STEP normalize (security): Istio's path normalization, before routing as Envoy's
        // connection manager does; the backend receives the normalized path.
        let mut routed = match authorize::normalize_path(session.req_header_mut()) {
            Ok(()) => {
                let mut routed = decide(
                    &snapshot,
                    session.req_header(),
                    &ctx.downstream,
                    rand::random(),
                );
                // STEP authorize (security): RequestAuthentication, then AuthorizationPolicy
                // (CUSTOM, DENY, ALLOW) for `routed.destination`; a denial is a `Refusal`
                // answered below, before any redirect, direct response or upstream work (a
                // route's CORS preflight answer comes first, as Envoy's CORS filter does).
                let local = session.server_addr().and_then(|a| a.as_inet()).copied();
                let (downstream, port) = (&ctx.downstream, routed.listener_port);
                authorize::authorize(
                    session.req_header_mut(),
                    &snapshot,
                    || authorize::connection_attrs(downstream, local, port),
                    &mut routed,
                    &mut ctx.auth,
                    &self.security,
                )
                .await;
                routed
            }
            Err(bad) => authorize::refused(bad),
        };
        ctx.snapshot = Some(snapshot);
        // STEP fault (resilience): the rule's delay, then its abort as a `Refusal`.
        fault::inject(session.req_header(), &mut routed, &mut ctx.record).await;
        // The route's request timeout starts once the request is routed and delayed.
        ctx.attempt.timer_start = Some(std::time::Instant::now());
        if let Action::Refuse(refusal) = &routed.action {
            ctx.record.flag = refusal.flag;
        }
        if let Action::Forward(up) = &routed.action {
            mirror::send(
                session.req_header(),
                &up.mirrors,
                &routed.filters.request_modifiers,
            );
        }
        // Kept in the context, not in this phase's future, which the answer below awaits.
        let routed = ctx.routed.insert(routed);
        reply::answer(session, &routed.action).await
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let policy = ctx.policy_arc();
        // STEP retry (resilience): a retry waits out its backoff, then moves to an endpoint
        // not tried yet.
        retry::before_attempt(session.req_header(), ctx, policy.as_deref()).await;
        // STEP admit (resilience): circuit-breaker admission for this attempt (503 UO).
        admit::admit(ctx).await?;
        let deadline = policy.and_then(|p| p.timeouts.attempt_deadline(ctx.attempt.elapsed()));
        let up = ctx.upstream().ok_or_else(|| {
            Error::explain(
                ErrorType::InternalError,
                "no endpoint chosen for the request",
            )
        })?;
        let mut peer = upstream::peer(up, deadline, self.hbone.as_ref())?;
        admit::peer_options(&mut peer, ctx);
        Ok(peer)
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        upstream::edit_request(session.req_header(), upstream, ctx, self.hbone.as_ref())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        admit::on_response(ctx, status);
        if retry::retries_response(session, ctx, upstream_response) {
            return Err(upstream::retry_status_error(
                status,
                ctx.attempt.retry.retries_done(),
            ));
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        _body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        retry::body_deadline(ctx)?;
        Ok(None)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        admit::on_error(ctx, &e, client_reused);
        let mut e = e.more_context(format!("Peer: {peer}"));
        // A reused connection the endpoint closed after taking the request is a reset like any
        // other, retried only as the route's policy says (Envoy answers 503 UC without one).
        let failure = retry::attempt_failure(&e, retry::request_timed_out(ctx));
        e.set_retry(retry::decide(session, ctx, failure));
        e
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        admit::on_connect_failure(ctx);
        let failure = retry::attempt_failure(&e, retry::request_timed_out(ctx));
        e.set_retry(retry::decide(session, ctx, failure));
        e
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        admit::affinity_cookie(session.req_header(), response, ctx)?;
        authorize::edit_response(response, &ctx.auth);
        match ctx.filters() {
            Some(filters) => upstream::edit_response(session.req_header(), response, filters),
            None => Ok(()),
        }
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let retried = ctx.attempt.retry.retries_done() > 0;
        let (fail, flag) = reply::upstream_failure(session, e, retried).await;
        ctx.record.flag = flag;
        fail
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if ctx.attempt.retry.limit_exceeded() {
            ctx.record
                .also
                .push(ResponseFlag::UpstreamRetryLimitExceeded);
        }
        // STEP record (telemetry): Istio standard metrics and the span end join the access log.
        record::access_log(session, e, ctx);
    }
}

#[cfg(test)]
pub(crate) mod tests;
