//! The pingora `ProxyHttp` that ties the decisions together: find the destination service,
//! match its routes, pick a backend and an endpoint, then forward.
//!
//! Every listener (the plain HTTP one now, HBONE CONNECT streams next) feeds the same
//! `HttpProxy<WaypointProxy>`, so a request is handled identically whichever way it came in.
//! Each phase reads the one snapshot loaded in `request_filter`, so a config swap mid-request
//! never mixes two versions.

use crate::hbone::client::{HboneClient, HboneDial};
use crate::hbone::context::{TunnelContext, TunnelRegistry};
use crate::live::LiveConfig;
use crate::snapshot::{Destination, Endpoint, NotFound, Snapshot, WorkloadIdentity};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::FailToProxy;
use pingora_proxy::{ProxyHttp, Session};
use routing::{
    BackendTarget, Cors, HeaderModifier, RedirectInput, RequestView, Retry, RouteMatch, ServiceKey,
    Timeouts,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The header Envoy uses to tell a backend who the client was.
const XFCC: &str = "x-forwarded-client-cert";

/// How long a TCP connect to an endpoint may take before the request fails over to an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most tries (first attempt included) a request gets, whatever a route's `retry.attempts`
/// asks: pingora's default, which bounds the work one request can cause.
pub const MAX_TRIES: usize = 16;

/// How long a mirrored request may run before it is dropped, so slow mirror backends cannot
/// pile up tasks.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(10);

pub struct WaypointProxy {
    live: Arc<LiveConfig>,
    tunnels: Arc<TunnelRegistry>,
    /// Set when the waypoint has a workload identity: ambient endpoints are reached over HBONE.
    hbone: Option<Arc<HboneClient>>,
    /// Gateway role: the listener port each bound local address serves.
    gateway_ports: Arc<ArcSwap<HashMap<SocketAddr, u16>>>,
}

impl WaypointProxy {
    pub fn new(
        live: Arc<LiveConfig>,
        tunnels: Arc<TunnelRegistry>,
        hbone: Option<Arc<HboneClient>>,
        gateway_ports: Arc<ArcSwap<HashMap<SocketAddr, u16>>>,
    ) -> Self {
        WaypointProxy {
            live,
            tunnels,
            hbone,
            gateway_ports,
        }
    }
}

/// Why the waypoint answered a request itself instead of forwarding it. The flag names follow
/// Envoy's response flags, which Istio's access logs and metrics report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalReply {
    /// NR: no service or route for the request.
    NoRoute,
    /// UH: the backend has no endpoint to send to.
    NoHealthyUpstream,
    /// A rule whose backend cannot be used (unknown service, no backends): 500 per Gateway API.
    InvalidBackend,
}

impl LocalReply {
    pub fn status(self) -> u16 {
        match self {
            LocalReply::NoRoute => 404,
            LocalReply::NoHealthyUpstream => 503,
            LocalReply::InvalidBackend => 500,
        }
    }

    pub fn flag(self) -> &'static str {
        match self {
            LocalReply::NoRoute => "NR",
            LocalReply::NoHealthyUpstream => "UH",
            LocalReply::InvalidBackend => "NR",
        }
    }
}

/// Per-request state shared by the phases.
pub struct RequestCtx {
    start: Instant,
    snapshot_version: u64,
    /// The service the client addressed.
    destination: Option<ServiceKey>,
    /// The service the chosen backend belongs to (differs from `destination` for splits).
    backend: Option<ServiceKey>,
    route: Option<String>,
    upstream: Option<SocketAddr>,
    request_modifiers: Vec<HeaderModifier>,
    response_modifiers: Vec<HeaderModifier>,
    local_reply: Option<LocalReply>,
    /// Envoy-style response flag of a failed upstream exchange (UF, UC, UT).
    upstream_flag: Option<&'static str>,
    /// The HBONE tunnel the request arrived in: source identity, CONNECT target, baggage.
    pub tunnel: Option<Arc<TunnelContext>>,
    /// The chosen endpoint is an ambient pod with this identity: dial it over HBONE.
    upstream_hbone: Option<WorkloadIdentity>,
    /// Gateway role: the listener port the request arrived on.
    pub gateway_port: Option<u16>,
    /// The backend port speaks cleartext HTTP/2 (prior knowledge), not HTTP/1.1.
    upstream_h2c: bool,
    /// The Service port (mesh traffic) or Gateway listener port the request arrived on;
    /// redirects that keep the port use it.
    pub listener_port: u16,
    /// "https" when the client's connection was TLS: redirects keep the request's scheme.
    scheme: &'static str,
    /// The matched rule redirects: (status, Location); nothing is forwarded.
    redirect: Option<(u16, String)>,
    /// URLRewrite: the Host and path (without query) sent upstream instead of the client's.
    rewrite_host: Option<String>,
    rewrite_path: Option<String>,
    cors: Option<Cors>,
    /// Endpoints that get a copy of the request (RequestMirror), already sampled.
    mirrors: Vec<SocketAddr>,
    timeouts: Timeouts,
    retry: Option<Retry>,
    /// Attempts retried so far on a retryable response status.
    retries_done: u32,
    /// Set by `upstream_response_filter` when it fails an attempt to have it retried.
    retrying_status: Option<u16>,
}

impl RequestCtx {
    fn new() -> Self {
        RequestCtx {
            start: Instant::now(),
            snapshot_version: 0,
            destination: None,
            backend: None,
            route: None,
            upstream: None,
            request_modifiers: Vec::new(),
            response_modifiers: Vec::new(),
            local_reply: None,
            upstream_flag: None,
            tunnel: None,
            upstream_hbone: None,
            gateway_port: None,
            upstream_h2c: false,
            listener_port: 0,
            scheme: "http",
            redirect: None,
            rewrite_host: None,
            rewrite_path: None,
            cors: None,
            mirrors: Vec::new(),
            timeouts: Timeouts::default(),
            retry: None,
            retries_done: 0,
            retrying_status: None,
        }
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
        ctx.tunnel = session
            .digest()
            .and_then(|d| d.socket_digest.as_ref())
            .and_then(|d| self.tunnels.lookup(d));
        if ctx.tunnel.is_none() {
            ctx.gateway_port = session
                .server_addr()
                .and_then(|a| a.as_inet())
                .and_then(|a| self.gateway_ports.load().get(a).copied());
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let snapshot = self.live.snapshot();
        ctx.snapshot_version = snapshot.version;
        let destination = ctx.tunnel.as_ref().map(|t| t.destination.clone());
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        ctx.scheme = if tls { "https" } else { "http" };
        let decided = decide(
            &snapshot,
            session.req_header(),
            destination.as_ref(),
            rand::random::<u32>(),
            ctx,
        );
        // A redirect or a CORS preflight is answered here whatever the backends' state: the
        // request never reaches them.
        if let Some((status, location)) = &ctx.redirect {
            send_redirect(session, *status, location).await?;
            return Ok(true);
        }
        if let Some(answer) = preflight_answer(session.req_header(), ctx.cors.as_ref()) {
            send_preflight(session, answer).await?;
            return Ok(true);
        }
        match decided {
            Ok(()) => {
                send_mirrors(session.req_header(), ctx);
                Ok(false)
            }
            Err((reply, reason)) => {
                ctx.local_reply = Some(reply);
                send_local_reply(session, reply, &reason).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let addr = ctx.upstream.ok_or_else(|| {
            Error::explain(
                ErrorType::InternalError,
                "no endpoint chosen for the request",
            )
        })?;
        let backoff = ctx
            .retrying_status
            .take()
            .and(ctx.retry.as_ref().and_then(|r| r.backoff));
        if let Some(backoff) = backoff {
            tokio::time::sleep(backoff).await;
        }
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        if ctx.upstream_h2c {
            // Plaintext with a minimum version of 2 is h2c with prior knowledge in pingora.
            peer.options.set_http_version(2, 2);
        }
        if let Some(limit) = attempt_deadline(&ctx.timeouts, ctx.start.elapsed()) {
            if limit.is_zero() {
                return Err(Error::explain(
                    ErrorType::ReadTimedout,
                    "the route's request timeout expired before the attempt",
                )
                .into_up());
            }
            // pingora bounds each read and write of the exchange, which is what makes a
            // backend that does not answer in time a 504 (ReadTimedout) for the client.
            peer.options.connection_timeout = Some(limit.min(CONNECT_TIMEOUT));
            peer.options.read_timeout = Some(limit);
            peer.options.write_timeout = Some(limit);
        }
        if let (Some(workload), Some(client)) = (&ctx.upstream_hbone, &self.hbone) {
            peer.options.custom_l4 = Some(Arc::new(HboneDial {
                client: client.clone(),
                identity: workload.in_trust_domain(&client.trust_domain()),
            }));
            // pingora 0.9 checks a pooled connection's liveness on its file descriptor, which a
            // tunnel does not have, so it can never reuse one; a zero idle timeout closes the
            // tunnel at once instead of parking it until the next request discards it. The
            // mTLS HTTP/2 connection underneath stays pooled by the HBONE client.
            peer.options.idle_timeout = Some(Duration::ZERO);
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // An h2 client sends :authority and no Host; an HTTP/1.1 endpoint needs Host.
        if upstream.headers.get(http::header::HOST).is_none() {
            if let Some(authority) = session.req_header().uri.authority() {
                let host = authority.as_str().to_string();
                upstream.insert_header(http::header::HOST, host)?;
            }
        }
        // As Istio's inbound proxies do (SANITIZE_SET): a client-supplied XFCC is never
        // trusted; a tunnelled request carries its peer's verified identity to the backend.
        upstream.remove_header(XFCC);
        if let Some(tunnel) = &ctx.tunnel {
            let value = tunnel.xfcc.get_or_init(|| {
                let value = match &self.hbone {
                    Some(c) => format!("By={};URI={}", c.own_identity(), tunnel.source),
                    None => format!("URI={}", tunnel.source),
                };
                http::HeaderValue::try_from(value).ok()
            });
            let value = value.clone().ok_or_else(|| {
                Error::explain(
                    ErrorType::InternalError,
                    "the tunnel's identities do not make a valid x-forwarded-client-cert value",
                )
            })?;
            upstream.insert_header(http::HeaderName::from_static(XFCC), value)?;
        }
        for m in &ctx.request_modifiers {
            apply_modifier(m, upstream)?;
        }
        if let Some(host) = &ctx.rewrite_host {
            // pingora rebuilds an h2 :authority from Host, so this covers both protocols.
            upstream.insert_header(http::header::HOST, host.as_str())?;
        }
        if let Some(path) = &ctx.rewrite_path {
            let uri = with_path(&upstream.uri, path).map_err(|e| {
                Error::because(
                    ErrorType::InternalError,
                    "rewritten path is not a valid URI",
                    e,
                )
            })?;
            upstream.set_uri(uri);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let status = upstream_response.status.as_u16();
        let Some(retry) = &ctx.retry else {
            return Ok(());
        };
        if !retry.should_retry(status, ctx.retries_done) {
            return Ok(());
        }
        // pingora retries an attempt that failed with a retryable error and has not sent
        // anything downstream yet, which is the case here: failing the attempt on its status
        // is how a response code becomes a retry. The last attempt's response goes through.
        ctx.retries_done += 1;
        ctx.retrying_status = Some(status);
        let mut e = Error::explain(
            ErrorType::HTTPStatus(status),
            format!("retrying a {status} response (retry {})", ctx.retries_done),
        )
        .into_up();
        e.set_retry(true);
        Err(e)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let truncated = session.as_ref().retry_buffer_truncated();
        if ctx.retrying_status.is_some() && !truncated {
            // A status the route retries on: Gateway API retries whatever the method, as
            // long as the request body can be sent again.
            return e;
        }
        // Only the route's retry policy retries; any other failure is final, as it was before
        // routes could ask for retries.
        ctx.retrying_status = None;
        e.set_retry(false);
        e
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        _ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // A failed connect is reported (503 UF), not retried: route retries are on status.
        e.set_retry(false);
        e
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        for m in &ctx.response_modifiers {
            apply_modifier(m, response)?;
        }
        if let (Some(cors), Some(origin)) = (&ctx.cors, request_origin(session.req_header())) {
            for (name, value) in cors.response_headers(origin) {
                response.insert_header(name, value)?;
            }
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let failure = classify_failure(e);
        ctx.upstream_flag = failure.flag;
        // Once the response header went out, the only honest signal left is closing the stream.
        // pingora closes the client connection after an upstream failure; make the response
        // say `Connection: close`, or an HTTP/1.1 client races the close with its next request.
        session.set_keepalive(None);
        if failure.status > 0 && session.response_written().is_none() {
            let body = Bytes::from(format!("{}\n", failure.body));
            let written = async {
                let mut resp = ResponseHeader::build(failure.status, Some(3))?;
                resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
                resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
                if let Some(flag) = failure.flag {
                    resp.insert_header("x-waypoint-reason", flag)?;
                }

                session.write_response_header(Box::new(resp), false).await?;
                session.write_response_body(Some(body), true).await
            };
            if let Err(err) = written.await {
                tracing::debug!("cannot send the error response downstream: {err}");
            }
        }
        FailToProxy {
            error_code: failure.status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let req = session.req_header();
        tracing::debug!(
            target: "access",
            method = %req.method,
            path = %req.uri.path(),
            status,
            destination = ctx.destination.as_ref().map(|k| format!("{}/{}", k.namespace, k.name)),
            backend = ctx.backend.as_ref().map(|k| format!("{}/{}", k.namespace, k.name)),
            route = ctx.route.as_deref(),
            source = ctx.tunnel.as_ref().map(|t| t.source.to_string()),
            upstream = ?ctx.upstream,
            flag = ctx.local_reply.map(LocalReply::flag).or(ctx.upstream_flag),
            config_version = ctx.snapshot_version,
            duration_ms = ctx.start.elapsed().as_secs_f64() * 1000.0,
            error = e.map(|e| e.to_string()),
        );
    }
}

/// The request's authority as a mesh client sent it: `Host` for HTTP/1.1, `:authority` for h2.
fn request_authority(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// The routing decision for one request: fills `ctx` with the endpoint and filters, or says
/// which local reply to send and why. Pure apart from the round-robin counter, so it is tested
/// without sockets.
fn decide(
    snapshot: &Snapshot,
    req: &RequestHeader,
    destination: Option<&Destination>,
    random: u32,
    ctx: &mut RequestCtx,
) -> std::result::Result<(), (LocalReply, String)> {
    if let Some(listener_port) = ctx.gateway_port {
        ctx.listener_port = listener_port;
        let m = gateway_match(snapshot, req, listener_port)?;
        return match choose_backend(snapshot, req, m, random, ctx)? {
            Some((key, port)) => set_upstream(snapshot, key, port, ctx),
            None => Ok(()),
        };
    }
    // In a tunnel the destination is what the client dialled (the CONNECT target), as for
    // Istio's waypoint; on the plain listener it is what the Host header names.
    let (service, port) = match destination {
        Some(Destination::Workload { addr, hbone }) => {
            ctx.upstream = Some(*addr);
            ctx.upstream_hbone = hbone.clone();
            return Ok(());
        }
        Some(Destination::Service { service, port }) => snapshot
            .service(service)
            .and_then(|s| s.port(*port).map(|p| (s, p)))
            .ok_or_else(|| {
                (
                    LocalReply::NoRoute,
                    format!(
                        "service {}/{} port {port} is no longer in the configuration",
                        service.namespace, service.name
                    ),
                )
            })?,
        None => {
            let authority = request_authority(req).ok_or_else(|| {
                (
                    LocalReply::NoRoute,
                    "the request names no host (Host header or :authority)".to_string(),
                )
            })?;
            snapshot
                .resolve_authority(authority)
                .map_err(|NotFound(why)| (LocalReply::NoRoute, why))?
        }
    };
    ctx.destination = Some(service.key.clone());
    // GAMMA: a client's own namespace's routes for the service (consumer routes) replace the
    // service owner's (producer routes) for that client.
    let consumer = ctx
        .tunnel
        .as_ref()
        .and_then(|t| port.consumer_routes.get(&t.source.namespace));
    let (backend_key, backend_port) = match consumer.or(port.routes.as_ref()) {
        None => (service.key.clone(), port.port),
        Some(table) => {
            let view = request_view(req);
            let m = table.find(&view).ok_or_else(|| {
                (
                    LocalReply::NoRoute,
                    format!(
                        "no rule of the routes of service {}/{} port {} matches {} {}",
                        service.key.namespace,
                        service.key.name,
                        port.port,
                        req.method,
                        req.uri.path()
                    ),
                )
            })?;
            // Mesh traffic arrives on the service port; redirects that keep the port use it.
            ctx.listener_port = port.port;
            match choose_backend(snapshot, req, m, random, ctx)? {
                Some(backend) => backend,
                None => return Ok(()),
            }
        }
    };
    set_upstream(snapshot, backend_key, backend_port, ctx)
}

type Decision<T> = std::result::Result<T, (LocalReply, String)>;
fn request_view(req: &RequestHeader) -> RequestView<'_> {
    RequestView {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        headers: &req.headers,
    }
}

/// Gateway role: the rule for a request on `listener_port`, chosen by its Host among the
/// listeners there (most specific hostname first) and then among that listener's routes.
fn gateway_match<'s>(
    snapshot: &'s Snapshot,
    req: &RequestHeader,
    listener_port: u16,
) -> Decision<RouteMatch<'s>> {
    let port = snapshot.gateway_port(listener_port).ok_or_else(|| {
        (
            LocalReply::NoRoute,
            format!("listener port {listener_port} is no longer in the configuration"),
        )
    })?;
    let host =
        routing::hostname::host_of(request_authority(req).unwrap_or_default()).to_ascii_lowercase();
    let listener = port.listener(&host).ok_or_else(|| {
        (
            LocalReply::NoRoute,
            format!(
                "no listener of Gateway {} on port {listener_port} takes host '{host}'",
                snapshot.gateway
            ),
        )
    })?;
    listener.find(&host, &request_view(req)).ok_or_else(|| {
        (
            LocalReply::NoRoute,
            format!(
                "no route on listener {} of Gateway {} matches {} {}{}",
                listener.name,
                snapshot.gateway,
                req.method,
                host,
                req.uri.path()
            ),
        )
    })
}

/// Applies a matched rule: records its filters in `ctx` and picks its backend; None when the
/// rule answers itself (a redirect).
fn choose_backend(
    snapshot: &Snapshot,
    req: &RequestHeader,
    m: RouteMatch<'_>,
    random: u32,
    ctx: &mut RequestCtx,
) -> Decision<Option<(ServiceKey, u16)>> {
    ctx.route = Some(m.route.id.to_string());
    record_rule(&m, req, ctx)?;
    if ctx.redirect.is_some() {
        return Ok(None);
    }
    let backend = m.rule.pick_backend(random).ok_or_else(|| {
        (
            LocalReply::InvalidBackend,
            format!(
                "the matched rule of route {} has no backend with a non-zero weight",
                m.route.id
            ),
        )
    })?;
    ctx.request_modifiers
        .extend(m.rule.request_header_modifier.iter().cloned());
    ctx.request_modifiers
        .extend(backend.request_header_modifier.iter().cloned());
    ctx.response_modifiers
        .extend(m.rule.response_header_modifier.iter().cloned());
    ctx.response_modifiers
        .extend(backend.response_header_modifier.iter().cloned());
    ctx.mirrors = mirror_endpoints(snapshot, &m, random);
    match &backend.target {
        BackendTarget::Service { service, port } => Ok(Some((service.clone(), *port))),
        BackendTarget::Invalid { reason } => Err((
            LocalReply::InvalidBackend,
            format!("route {} has an invalid backend: {reason}", m.route.id),
        )),
    }
}

/// Records the endpoint of the backend service port the request goes to, and how to speak to it.
fn set_upstream(
    snapshot: &Snapshot,
    backend_key: ServiceKey,
    backend_port: u16,
    ctx: &mut RequestCtx,
) -> Decision<()> {
    let endpoint = pick_endpoint(snapshot, &backend_key, backend_port)?;
    ctx.upstream = Some(endpoint.addr);
    ctx.upstream_hbone = endpoint.hbone.clone();
    ctx.upstream_h2c = snapshot
        .service(&backend_key)
        .and_then(|s| s.port(backend_port))
        .is_some_and(|p| p.h2c);
    ctx.backend = Some(backend_key);
    Ok(())
}

/// One ready endpoint of `key`:`port`, round-robin, or the local reply for why there is none.
fn pick_endpoint<'a>(
    snapshot: &'a Snapshot,
    key: &ServiceKey,
    port: u16,
) -> std::result::Result<&'a Endpoint, (LocalReply, String)> {
    let backend = snapshot
        .service(key)
        .and_then(|s| s.port(port))
        .ok_or_else(|| {
            (
                LocalReply::InvalidBackend,
                format!(
                    "backend {}/{} port {port} does not exist",
                    key.namespace, key.name
                ),
            )
        })?;
    let idx = backend
        .balancer
        .pick(backend.endpoints.len())
        .ok_or_else(|| {
            (
                LocalReply::NoHealthyUpstream,
                format!(
                    "no healthy upstream: service {}/{} port {port} has no ready endpoints",
                    key.namespace, key.name
                ),
            )
        })?;
    Ok(&backend.endpoints[idx])
}

/// Copies what the matched rule asks of the later phases into `ctx`: redirect (computed here,
/// so it is tested with the rest of the decision), rewrite, CORS, timeouts and retry.
fn record_rule(
    m: &RouteMatch<'_>,
    req: &RequestHeader,
    ctx: &mut RequestCtx,
) -> std::result::Result<(), (LocalReply, String)> {
    let rule = m.rule;
    if let Some(why) = &rule.unsupported_filter {
        return Err((
            LocalReply::InvalidBackend,
            format!("route {} cannot be applied: {why}", m.route.id),
        ));
    }
    let path = req.uri.path();
    if let Some(redirect) = &rule.redirect {
        let authority = request_authority(req).unwrap_or_default();
        ctx.redirect = Some(redirect.response(&RedirectInput {
            scheme: ctx.scheme,
            host: host_without_port(authority),
            listener_port: ctx.listener_port,
            path,
            query: req.uri.query(),
            matched: &m.request_match.path,
        }));
    }
    if let Some(rewrite) = &rule.rewrite {
        ctx.rewrite_host = rewrite.hostname.clone();
        ctx.rewrite_path = rewrite.rewrite_path(path, &m.request_match.path);
    }
    ctx.cors = rule.cors.clone();
    ctx.timeouts = rule.timeouts;
    ctx.retry = rule.retry.clone();
    Ok(())
}

/// The endpoints that get a copy of this request: each mirror of the rule samples it with its
/// own share, and a mirror that cannot be reached is skipped, as a mirror must never affect
/// the request itself.
fn mirror_endpoints(snapshot: &Snapshot, m: &RouteMatch<'_>, random: u32) -> Vec<SocketAddr> {
    let mut endpoints = Vec::new();
    for (i, mirror) in m.rule.mirrors.iter().enumerate() {
        // Each mirror samples from its own draw, unrelated to the backend choice.
        let draw = mix(random, u32::try_from(i).unwrap_or(u32::MAX));
        if !mirror.samples(draw) {
            continue;
        }
        let BackendTarget::Service { service, port } = &mirror.target else {
            continue;
        };
        match pick_endpoint(snapshot, service, *port) {
            Ok(endpoint) if endpoint.hbone.is_none() => endpoints.push(endpoint.addr),
            Ok(endpoint) => tracing::debug!(
                "not mirroring to {}: the endpoint is only reachable over HBONE",
                endpoint.addr
            ),
            Err((_, why)) => tracing::debug!("not mirroring: {why}"),
        }
    }
    endpoints
}

/// A new uniformly distributed u32 from `random` and `salt` (a murmur3-style finaliser).
fn mix(random: u32, salt: u32) -> u32 {
    let mut x = random ^ salt.wrapping_add(1).wrapping_mul(0x9e37_79b9);
    x ^= x >> 16;
    x = x.wrapping_mul(0x85eb_ca6b);
    x ^= x >> 13;
    x = x.wrapping_mul(0xc2b2_ae35);
    x ^ (x >> 16)
}

/// How long the next upstream attempt may take: the per-attempt timeout, capped by what is
/// left of the request timeout. None when the route sets neither.
fn attempt_deadline(timeouts: &Timeouts, elapsed: Duration) -> Option<Duration> {
    let remaining = timeouts.request.map(|t| t.saturating_sub(elapsed));
    match (remaining, timeouts.backend_request) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `authority` without its port; IPv6 literals keep their brackets.
fn host_without_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => &authority[..i],
        _ => authority,
    }
}

/// `uri` with its path replaced and its query kept.
fn with_path(uri: &http::Uri, path: &str) -> std::result::Result<http::Uri, http::Error> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(path_and_query)?);
    Ok(http::Uri::from_parts(parts)?)
}

fn request_origin(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
}

/// What answers a CORS preflight: an OPTIONS request with `Origin` and
/// `Access-Control-Request-Method` on a rule with a CORS filter. The headers are empty when
/// the origin is not allowed.
struct PreflightAnswer {
    status: u16,
    headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

fn preflight_answer(req: &RequestHeader, cors: Option<&Cors>) -> Option<PreflightAnswer> {
    let cors = cors?;
    if req.method != http::Method::OPTIONS {
        return None;
    }
    let origin = request_origin(req)?;
    let header = |name| {
        req.headers
            .get(name)
            .and_then(|v: &http::HeaderValue| v.to_str().ok())
    };
    let method = header(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
    let requested_headers = header(http::header::ACCESS_CONTROL_REQUEST_HEADERS);
    Some(
        match cors.preflight_response(origin, Some(method), requested_headers) {
            Some(headers) => PreflightAnswer {
                status: 200,
                headers,
            },
            // Refused outright, so the browser reports it without sending the real request.
            None => PreflightAnswer {
                status: 403,
                headers: Vec::new(),
            },
        },
    )
}

async fn send_preflight(session: &mut Session, answer: PreflightAnswer) -> Result<()> {
    let mut resp = ResponseHeader::build(answer.status, Some(answer.headers.len() + 1))?;
    for (name, value) in answer.headers {
        resp.insert_header(name, value)?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
    session.write_response_header(Box::new(resp), true).await
}

async fn send_redirect(session: &mut Session, status: u16, location: &str) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(2))?;
    resp.insert_header(http::header::LOCATION, location)?;
    resp.insert_header(http::header::CONTENT_LENGTH, "0")?;
    session.write_response_header(Box::new(resp), true).await
}

/// Fires a copy of the request's headers at every mirror endpoint and forgets it. The copy has
/// the rule's header changes applied and, as Envoy and Istio do, a Host suffixed "-shadow" so
/// the mirror backend can tell it apart. Only headers are mirrored: a body is not buffered for
/// the mirror, so a request with one is mirrored without it.
fn send_mirrors(req: &RequestHeader, ctx: &RequestCtx) {
    if ctx.mirrors.is_empty() {
        return;
    }
    let mut headers = req.headers.clone();
    for m in &ctx.request_modifiers {
        m.apply(&mut headers);
    }
    for hop in [
        http::header::CONNECTION,
        http::header::TRANSFER_ENCODING,
        http::header::CONTENT_LENGTH,
        http::header::UPGRADE,
        http::header::TE,
    ] {
        headers.remove(hop);
    }
    let authority = request_authority(req).unwrap_or_default();
    let shadow = shadow_host(authority);
    match http::HeaderValue::from_str(&shadow) {
        Ok(host) => {
            headers.insert(http::header::HOST, host);
        }
        Err(_) => return,
    }
    let target = req
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| "/".to_owned());
    for addr in &ctx.mirrors {
        let mirror = MirrorRequest {
            addr: *addr,
            method: req.method.clone(),
            target: target.clone(),
            headers: headers.clone(),
        };
        tokio::spawn(async move {
            let addr = mirror.addr;
            match tokio::time::timeout(MIRROR_TIMEOUT, mirror.send()).await {
                Ok(Ok(status)) => tracing::debug!("mirrored to {addr}: {status}"),
                Ok(Err(e)) => tracing::debug!("mirroring to {addr} failed: {e}"),
                Err(_) => tracing::debug!("mirroring to {addr} timed out"),
            }
        });
    }
}

/// `host[:port]` with "-shadow" after the host, before any port.
fn shadow_host(authority: &str) -> String {
    let host = host_without_port(authority);
    format!("{host}-shadow{}", &authority[host.len()..])
}

struct MirrorRequest {
    addr: SocketAddr,
    method: http::Method,
    target: String,
    headers: http::HeaderMap,
}

impl MirrorRequest {
    async fn send(
        self,
    ) -> std::result::Result<http::StatusCode, Box<dyn std::error::Error + Send + Sync>> {
        use http_body_util::BodyExt;
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut request = http::Request::builder()
            .method(self.method)
            .uri(self.target)
            .body(http_body_util::Empty::<Bytes>::new())?;
        *request.headers_mut() = self.headers;
        let response = sender.send_request(request).await?;
        let status = response.status();
        // Read the answer to the end so the backend sees a normal exchange; it is discarded.
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// How a failed exchange is reported to the client: the status and flag Envoy (and so Istio's
/// waypoint) uses for the same failure.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    /// 0 when the client is gone and nothing can be sent.
    status: u16,
    flag: Option<&'static str>,
    body: &'static str,
}

fn classify_failure(e: &Error) -> Failure {
    use ErrorType::*;
    let failure = |status, flag, body| Failure { status, flag, body };
    if let HTTPStatus(code) = e.etype() {
        return failure(*code, None, "request failed");
    }
    match e.esource() {
        ErrorSource::Upstream => match e.etype() {
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | BindError | SocketError
            | ConnectProxyFailure | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert
            | HandshakeError => failure(
                503,
                Some("UF"),
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            ),
            ReadTimedout | WriteTimedout => failure(504, Some("UT"), "upstream request timeout"),
            _ => failure(
                503,
                Some("UC"),
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            ),
        },
        ErrorSource::Downstream => match e.etype() {
            WriteError | ReadError | ConnectionClosed => failure(0, Some("DC"), ""),
            _ => failure(400, None, "bad request"),
        },
        ErrorSource::Internal | ErrorSource::Unset => failure(500, None, "internal error in the waypoint"),
    }
}

async fn send_local_reply(session: &mut Session, reply: LocalReply, reason: &str) -> Result<()> {
    let body = Bytes::from(format!("{reason}\n"));
    let mut resp = ResponseHeader::build(reply.status(), Some(3))?;
    resp.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header("x-waypoint-reason", reply.flag())?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// Applies a Gateway API header modifier through pingora's header API, which keeps the
/// original header-name casing for HTTP/1.1 in step with the map.
fn apply_modifier<H: EditHeaders>(m: &HeaderModifier, h: &mut H) -> Result<()> {
    for (name, value) in &m.set {
        h.set(name, value)?;
    }
    for (name, value) in &m.add {
        h.add(name, value)?;
    }
    for name in &m.remove {
        h.remove(name);
    }
    Ok(())
}

/// The header edits pingora offers on both request and response headers, which share no trait.
trait EditHeaders {
    fn set(&mut self, name: &http::HeaderName, value: &http::HeaderValue) -> Result<()>;
    fn add(&mut self, name: &http::HeaderName, value: &http::HeaderValue) -> Result<()>;
    fn remove(&mut self, name: &http::HeaderName);
}

macro_rules! edit_headers_for {
    ($t:ty) => {
        impl EditHeaders for $t {
            fn set(&mut self, name: &http::HeaderName, value: &http::HeaderValue) -> Result<()> {
                self.insert_header(name.clone(), value.clone()).map(|_| ())
            }
            fn add(&mut self, name: &http::HeaderName, value: &http::HeaderValue) -> Result<()> {
                self.append_header(name.clone(), value.clone()).map(|_| ())
            }
            fn remove(&mut self, name: &http::HeaderName) {
                self.remove_header(name);
            }
        }
    };
}

edit_headers_for!(RequestHeader);
edit_headers_for!(ResponseHeader);

#[cfg(test)]
mod tests;
