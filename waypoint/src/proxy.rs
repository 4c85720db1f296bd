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
use crate::snapshot::{Destination, NotFound, Snapshot, WorkloadIdentity};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use bytes::Bytes;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::FailToProxy;
use pingora_proxy::{ProxyHttp, Session};
use routing::{BackendTarget, HeaderModifier, RequestView, RouteMatch, ServiceKey};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The header Envoy uses to tell a backend who the client was.
const XFCC: &str = "x-forwarded-client-cert";

/// How long a TCP connect to an endpoint may take before the request fails over to an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
        match decide(
            &snapshot,
            session.req_header(),
            destination.as_ref(),
            rand::random::<u32>(),
            ctx,
        ) {
            Ok(()) => Ok(false),
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
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
        if ctx.upstream_h2c {
            // Plaintext with a minimum version of 2 is h2c with prior knowledge in pingora.
            peer.options.set_http_version(2, 2);
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
            let by = self.hbone.as_ref().map(|c| c.own_identity().to_string());
            let value = match by {
                Some(by) => format!("By={by};URI={}", tunnel.source),
                None => format!("URI={}", tunnel.source),
            };
            upstream.insert_header(XFCC, value)?;
        }
        for m in &ctx.request_modifiers {
            apply_modifier(m, upstream)?;
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        for m in &ctx.response_modifiers {
            apply_modifier(m, response)?;
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
        let m = gateway_match(snapshot, req, listener_port)?;
        let (backend_key, backend_port) = choose_backend(m, random, ctx)?;
        return pick_endpoint(snapshot, backend_key, backend_port, ctx);
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
    let (backend_key, backend_port) = match &port.routes {
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
            choose_backend(m, random, ctx)?
        }
    };
    pick_endpoint(snapshot, backend_key, backend_port, ctx)
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

/// Applies a matched rule: records its filters in `ctx` and picks its backend.
fn choose_backend(
    m: RouteMatch<'_>,
    random: u32,
    ctx: &mut RequestCtx,
) -> Decision<(ServiceKey, u16)> {
    ctx.route = Some(m.route.id.to_string());
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
    match &backend.target {
        BackendTarget::Service { service, port } => Ok((service.clone(), *port)),
        BackendTarget::Invalid { reason } => Err((
            LocalReply::InvalidBackend,
            format!("route {} has an invalid backend: {reason}", m.route.id),
        )),
    }
}

/// Whether a service port speaks HTTP/2 in cleartext, as Kubernetes (`appProtocol`) and Istio
/// (`appProtocol`, or the port name's protocol prefix) declare it.
fn speaks_h2c(port: &crate::snapshot::ServicePort) -> bool {
    let declared = port
        .app_protocol
        .as_deref()
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| {
            let name = port.name.to_ascii_lowercase();
            name.split('-').next().unwrap_or_default().to_string()
        });
    matches!(
        declared.as_str(),
        "kubernetes.io/h2c" | "h2c" | "http2" | "grpc"
    )
}

/// Picks an endpoint of the backend service port and records it in `ctx`.
fn pick_endpoint(
    snapshot: &Snapshot,
    backend_key: ServiceKey,
    backend_port: u16,
    ctx: &mut RequestCtx,
) -> Decision<()> {
    let backend = snapshot
        .service(&backend_key)
        .and_then(|s| s.port(backend_port))
        .ok_or_else(|| {
            (
                LocalReply::InvalidBackend,
                format!(
                    "backend {}/{} port {backend_port} does not exist",
                    backend_key.namespace, backend_key.name
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
                    "no healthy upstream: service {}/{} port {backend_port} has no ready endpoints",
                    backend_key.namespace, backend_key.name
                ),
            )
        })?;
    ctx.upstream = Some(backend.endpoints[idx].addr);
    ctx.upstream_hbone = backend.endpoints[idx].hbone.clone();
    ctx.upstream_h2c = speaks_h2c(backend);
    ctx.backend = Some(backend_key);
    Ok(())
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
