//! The routing decision for one request: which destination it addresses, which rule matches,
//! and what to do — forward to an endpoint, redirect, answer a CORS preflight or refuse.
//!
//! Pure apart from the balancers' counters: it reads the snapshot and the request and returns a
//! [`Routed`] value, so it is table-tested without sockets.

use super::mirror;
use super::reply::{PreflightAnswer, Refusal};
use super::Downstream;
use crate::endpoint::{self, NoEndpoint};
use crate::snapshot::{
    Destination, NotFound, ServiceInfo, ServicePort, Snapshot, WorkloadIdentity,
};
use pingora_http::RequestHeader;
use resilience::RoutePolicy;
use routing::{
    Authority, BackendTarget, Cors, HeaderModifier, RedirectInput, RequestContext, RequestView,
    RouteMatch, RouteSource, ServiceKey,
};
use std::net::SocketAddr;
use std::sync::Arc;

/// What the decision made of a request.
#[derive(Debug, Default)]
pub struct Routed {
    /// The service the client addressed (none for a pod addressed directly or the Gateway role).
    pub destination: Option<ServiceKey>,
    /// The matched route, as `namespace/name`.
    pub route: Option<String>,
    /// The Service port (mesh traffic) or Gateway listener port the request arrived on;
    /// redirects that keep the port use it.
    pub listener_port: u16,
    /// What the matched rule asks of the later phases.
    pub filters: RuleFilters,
    /// What to do with the request.
    pub action: Action,
}

/// The parts of a matched rule that act after the decision.
#[derive(Debug, Default)]
pub struct RuleFilters {
    /// Header edits on the request sent upstream (rule, then backend).
    pub request_modifiers: Vec<HeaderModifier>,
    /// Header edits on the response sent downstream (rule, then backend).
    pub response_modifiers: Vec<HeaderModifier>,
    /// URLRewrite: the Host sent upstream instead of the client's.
    pub rewrite_host: Option<String>,
    /// URLRewrite: the path (without query) sent upstream instead of the client's.
    pub rewrite_path: Option<String>,
    /// The rule's CORS policy, for the response headers.
    pub cors: Option<Arc<Cors>>,
    /// Timeouts and retry.
    pub policy: Arc<RoutePolicy>,
}

/// What to do with a request.
#[derive(Debug)]
pub enum Action {
    /// Forward it.
    Forward(Upstream),
    /// Answer with a redirect; nothing is forwarded.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// The Location header.
        location: String,
    },
    /// Answer a CORS preflight; nothing is forwarded.
    Preflight(PreflightAnswer),
    /// Answer with this status and body (VirtualService `directResponse`); nothing is
    /// forwarded.
    Direct {
        /// The status.
        status: u16,
        /// The body, byte for byte.
        body: bytes::Bytes,
        /// The rule's response header edits, which Envoy applies to direct responses too.
        modifiers: Vec<HeaderModifier>,
    },
    /// Refuse it.
    Refuse(Refusal),
}

impl Default for Action {
    fn default() -> Self {
        Action::Refuse(Refusal::no_route("no decision was made"))
    }
}

/// Where a forwarded request goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    /// The service the chosen backend belongs to (differs from the destination for splits);
    /// none for a pod addressed directly.
    pub backend: Option<ServiceKey>,
    /// The backend's service port (0 for a pod addressed directly).
    pub service_port: u16,
    /// The DestinationRule subset the endpoint was chosen from.
    pub subset: Option<String>,
    /// The endpoint.
    pub addr: SocketAddr,
    /// Set when the endpoint is an ambient pod with this identity: it is dialled over HBONE.
    pub hbone: Option<WorkloadIdentity>,
    /// The backend port speaks cleartext HTTP/2 (prior knowledge), not HTTP/1.1.
    pub h2c: bool,
    /// Endpoints that get a copy of the request (RequestMirror), already sampled.
    pub mirrors: Vec<SocketAddr>,
}

/// The decision for `req`, which arrived as `downstream` says. `random` is a uniformly random
/// draw for weighted choices (backends, mirrors).
pub fn decide(
    snapshot: &Snapshot,
    req: &RequestHeader,
    downstream: &Downstream,
    random: u32,
) -> Routed {
    let mut routed = Routed::default();
    let affinity = super::admit::affinity(req, downstream);
    routed.action = match target(snapshot, req, downstream, &mut routed) {
        Ok(Target::Workload { addr, hbone }) => Action::Forward(Upstream {
            backend: None,
            service_port: 0,
            subset: None,
            addr: *addr,
            hbone: hbone.clone(),
            h2c: false,
            mirrors: Vec::new(),
        }),
        Ok(Target::Service(service, port)) => forward(
            snapshot,
            &endpoint::Pick {
                affinity: Some(affinity),
                ..endpoint::Pick::any(&service.key, port.port)
            },
            Vec::new(),
        ),
        Ok(Target::Rule(m)) => apply_rule(
            snapshot,
            req,
            downstream.scheme,
            &m,
            random,
            affinity,
            &mut routed,
        ),
        Err(refusal) => Action::Refuse(refusal),
    };
    routed
}

/// What a request is addressed to, once its destination and routes are resolved.
enum Target<'s> {
    /// A pod addressed directly: the request goes to that address.
    Workload {
        addr: &'s SocketAddr,
        hbone: &'s Option<WorkloadIdentity>,
    },
    /// A service port without routes: its own endpoints serve.
    Service(&'s ServiceInfo, &'s ServicePort),
    /// A matched route rule.
    Rule(RouteMatch<'s>),
}

fn target<'s>(
    snapshot: &'s Snapshot,
    req: &RequestHeader,
    downstream: &'s Downstream,
    routed: &mut Routed,
) -> Result<Target<'s>, Refusal> {
    if let Some(listener_port) = downstream.gateway_port {
        routed.listener_port = listener_port;
        return gateway_match(snapshot, req, downstream, listener_port).map(Target::Rule);
    }
    // In a tunnel the destination is what the client dialled (the CONNECT target), as for
    // Istio's waypoint; on the plain listener it is what the Host header names.
    let (service, port) = match downstream.tunnel.as_ref().map(|t| &t.destination) {
        Some(Destination::Workload { addr, hbone }) => return Ok(Target::Workload { addr, hbone }),
        Some(Destination::Service { service, port }) => snapshot
            .service(service)
            .and_then(|s| s.port(*port).map(|p| (s, p)))
            .ok_or_else(|| {
                Refusal::no_route(format!(
                    "service {}/{} port {port} is no longer in the configuration",
                    service.namespace, service.name
                ))
            })?,
        None => {
            let authority = request_authority(req).ok_or_else(|| {
                Refusal::no_route("the request names no host (Host header or :authority)")
            })?;
            snapshot
                .resolve_authority(authority)
                .map_err(|NotFound(why)| Refusal::no_route(why))?
        }
    };
    routed.destination = Some(service.key.clone());
    // Mesh traffic arrives on the service port; redirects that keep the port use it, and
    // STEP authorize matches it as `destination.port`.
    routed.listener_port = port.port;
    // GAMMA: a client's own namespace's routes for the service (consumer routes) replace the
    // service owner's (producer routes) for that client.
    let consumer = downstream
        .tunnel
        .as_ref()
        .and_then(|t| port.consumer_routes.get(&t.source.namespace));
    let Some(table) = consumer.or(port.routes.as_ref()) else {
        return Ok(Target::Service(service, port));
    };
    let m = table
        .find(&request_view(req, downstream, port.port))
        .ok_or_else(|| {
            Refusal::no_route(format!(
                "no rule of the routes of service {}/{} port {} matches {} {}",
                service.key.namespace,
                service.key.name,
                port.port,
                req.method,
                req.uri.path()
            ))
        })?;
    Ok(Target::Rule(m))
}

/// Gateway role: the rule for a request on `listener_port`, chosen by its Host among the
/// listeners there (most specific hostname first) and then among that listener's routes.
fn gateway_match<'s>(
    snapshot: &'s Snapshot,
    req: &RequestHeader,
    downstream: &Downstream,
    listener_port: u16,
) -> Result<RouteMatch<'s>, Refusal> {
    let port = snapshot.gateway_port(listener_port).ok_or_else(|| {
        Refusal::no_route(format!(
            "listener port {listener_port} is no longer in the configuration"
        ))
    })?;
    let host =
        routing::hostname::host_of(request_authority(req).unwrap_or_default()).to_ascii_lowercase();
    let listener = port.listener(&host).ok_or_else(|| {
        Refusal::no_route(format!(
            "no listener of Gateway {} on port {listener_port} takes host '{host}'",
            snapshot.gateway
        ))
    })?;
    let view = request_view(req, downstream, listener_port);
    listener.find(&host, &view).ok_or_else(|| {
        Refusal::no_route(format!(
            "no route on listener {} of Gateway {} matches {} {}{}",
            listener.name,
            snapshot.gateway,
            req.method,
            host,
            req.uri.path()
        ))
    })
}

/// Applies a matched rule: a rule that cannot be applied refuses; a redirect answers without a
/// backend; a CORS preflight is answered before any backend is chosen; otherwise the rule's
/// filters are recorded and a backend and its endpoint are chosen.
fn apply_rule(
    snapshot: &Snapshot,
    req: &RequestHeader,
    scheme: &'static str,
    m: &RouteMatch<'_>,
    random: u32,
    affinity: endpoint::Affinity<'_>,
    routed: &mut Routed,
) -> Action {
    let rule = m.rule;
    routed.route = Some(m.route.id.to_string());
    if let Some(why) = &rule.unsupported_filter {
        let detail = format!("route {} cannot be applied: {why}", m.route.id);
        return Action::Refuse(Refusal::invalid_backend(detail));
    }
    if let Some(answer) = local_answer(req, scheme, m, routed.listener_port) {
        return answer;
    }
    let path = req.uri.path();
    let filters = &mut routed.filters;
    if let Some(rewrite) = &rule.rewrite {
        filters.rewrite_host = rewrite.hostname.clone();
        filters.rewrite_path = rewrite.rewrite_path(path, &m.request_match.path);
    }
    filters.cors = rule.cors.clone();
    filters.policy = rule.policy.clone();
    // A preflight is answered whatever the backends' state: the request never reaches them.
    if let Some(answer) = preflight_answer(req, filters.cors.as_deref()) {
        return Action::Preflight(answer);
    }
    let Some(backend) = rule.pick_backend(random) else {
        let detail = format!(
            "the matched rule of route {} has no backend with a non-zero weight",
            m.route.id
        );
        return Action::Refuse(Refusal::invalid_backend(detail));
    };
    let modifiers = |a: &Option<HeaderModifier>, b: &Option<HeaderModifier>| {
        a.iter().chain(b).cloned().collect::<Vec<_>>()
    };
    filters.request_modifiers = modifiers(
        &rule.request_header_modifier,
        &backend.request_header_modifier,
    );
    filters.response_modifiers = modifiers(
        &rule.response_header_modifier,
        &backend.response_header_modifier,
    );
    let mirrors = mirror::endpoints(snapshot, rule, random, routed.listener_port);
    to_backend(
        snapshot,
        m,
        &backend.target,
        affinity,
        routed.listener_port,
        mirrors,
    )
}

/// The answer a rule gives without any backend: a redirect or a direct response.
fn local_answer(
    req: &RequestHeader,
    scheme: &'static str,
    m: &RouteMatch<'_>,
    listener_port: u16,
) -> Option<Action> {
    let rule = m.rule;
    if let Some(redirect) = &rule.redirect {
        let authority = request_authority(req).unwrap_or_default();
        let (status, location) = redirect.response(&RedirectInput {
            scheme,
            host: host_without_port(authority),
            listener_port,
            request_port: Authority::parse(authority).ok().and_then(|a| a.port),
            path: req.uri.path(),
            query: req.uri.query(),
            matched: &m.request_match.path,
        });
        return Some(Action::Redirect { status, location });
    }
    rule.direct_response.as_ref().map(|direct| Action::Direct {
        status: direct.status,
        body: direct.body.clone(),
        modifiers: rule.response_header_modifier.iter().cloned().collect(),
    })
}

/// Forwards to the chosen backend of matched rule `m`, or refuses an invalid one: 500 for a
/// Gateway API route, 503 NC for a VirtualService (Envoy has no such cluster).
fn to_backend(
    snapshot: &Snapshot,
    m: &RouteMatch<'_>,
    target: &BackendTarget,
    affinity: endpoint::Affinity<'_>,
    listener_port: u16,
    mirrors: Vec<SocketAddr>,
) -> Action {
    match target {
        BackendTarget::Service {
            service,
            port,
            subset,
        } => forward(
            snapshot,
            &endpoint::Pick {
                subset: subset.as_deref(),
                affinity: Some(affinity),
                // 0: a VirtualService destination without a port on a service with several
                // goes to the port the request arrived on, as Istio routes it.
                ..endpoint::Pick::any(service, backend_port(*port, listener_port))
            },
            mirrors,
        ),
        BackendTarget::Invalid { reason } => {
            let detail = format!("route {} has an invalid backend: {reason}", m.route.id);
            Action::Refuse(match m.route.source {
                RouteSource::GatewayApi => Refusal::invalid_backend(detail),
                RouteSource::VirtualService => Refusal::no_cluster(detail),
            })
        }
    }
}

/// The backend port a rule names, or the request's port when it names 0.
pub fn backend_port(port: u16, request_port: u16) -> u16 {
    if port == 0 {
        request_port
    } else {
        port
    }
}

/// Forwards to an endpoint `pick` allows, or refuses when there is none.
fn forward(snapshot: &Snapshot, pick: &endpoint::Pick<'_>, mirrors: Vec<SocketAddr>) -> Action {
    match endpoint::choose(snapshot, pick) {
        Ok(chosen) => Action::Forward(Upstream {
            backend: Some(pick.service.clone()),
            service_port: pick.port,
            subset: pick.subset.map(str::to_owned),
            addr: chosen.endpoint.addr,
            hbone: chosen.endpoint.hbone.clone(),
            h2c: chosen.port.h2c,
            mirrors,
        }),
        Err(e @ NoEndpoint::UnknownPort { .. }) => {
            Action::Refuse(Refusal::invalid_backend(e.to_string()))
        }
        Err(e @ NoEndpoint::NoneReady { .. }) => {
            Action::Refuse(Refusal::no_healthy_upstream(e.to_string()))
        }
        Err(e @ NoEndpoint::UnknownSubset { .. }) => {
            Action::Refuse(Refusal::no_cluster(e.to_string()))
        }
    }
}

/// What answers a CORS preflight: an OPTIONS request with `Origin` and
/// `Access-Control-Request-Method` on a rule with a CORS filter.
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
            // Istio's default for a VirtualService: the backend answers it.
            None if cors.forwards_unmatched_preflights() => return None,
            // Refused outright, so the browser reports it without sending the real request.
            None => PreflightAnswer {
                status: 403,
                headers: Vec::new(),
            },
        },
    )
}

/// The request's `Origin`, for CORS.
pub fn request_origin(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::ORIGIN)
        .and_then(|o| o.to_str().ok())
}

/// The request's authority as a mesh client sent it: `Host` for HTTP/1.1, `:authority` for h2.
pub fn request_authority(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()))
}

/// `authority` without its port, as written (IPv6 literals keep their brackets); an authority
/// that does not parse is kept whole.
pub fn host_without_port(authority: &str) -> &str {
    Authority::parse(authority).map_or(authority, |a| a.host_as_written)
}

/// What matching reads of `req`, which arrived on `port` as `downstream` says.
fn request_view<'r>(
    req: &'r RequestHeader,
    downstream: &'r Downstream,
    port: u16,
) -> RequestView<'r> {
    RequestView {
        method: req.method.as_str(),
        path: req.uri.path(),
        query: req.uri.query(),
        headers: &req.headers,
        context: RequestContext {
            scheme: downstream.scheme,
            authority: request_authority(req).unwrap_or_default(),
            port,
            source_namespace: downstream
                .tunnel
                .as_ref()
                .map(|t| t.source.namespace.as_str()),
        },
    }
}
