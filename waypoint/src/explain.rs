//! `waypoint explain`: what the waypoint would do with one request, and why — the route that
//! matched, each security policy evaluated in order with the rule and field that decided, and
//! the verdict. It loads the folder as `run` does and runs the proxy's own steps
//! (`normalize_path`, `decide`, `authorize` → `security::check_request`); nothing is
//! reimplemented here, only printed.
//!
//! The last line is always `verdict: ...`. Exit codes: 0 the request is forwarded (or answered
//! by its route: redirect, direct response, CORS preflight); 1 it is refused (a security denial
//! or a routing refusal); 2 bad input (folder, flags, unknown destination); 3 the answer
//! depends on an ext_authz server, which explain does not call: a CUSTOM policy matched, and
//! the verdict line says what happens should the provider allow.

use crate::hbone::context::TunnelContext;
use crate::live::{ConfigError, LiveConfig};
use crate::proxy::{self, Action, Auth, Downstream, Routed};
use crate::security::{Checked, Clients, Outcome};
use crate::snapshot::{GatewayRef, Snapshot};
use authz::Identity;
use pingora_http::RequestHeader;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// Exit code: forwarded, or answered by the route.
pub const EXIT_ALLOWED: i32 = 0;
/// Exit code: refused.
pub const EXIT_DENIED: i32 = 1;
/// Exit code: bad input.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: an ext_authz provider decides.
pub const EXIT_EXT_AUTHZ: i32 = 3;

/// One request to explain (the `explain` subcommand's flags).
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `--config`: the folder, read as `run` reads it.
    pub config: PathBuf,
    /// `--gateway NS/NAME`, as for `run`.
    pub gateway: Option<GatewayRef>,
    /// `--to SERVICE[:PORT]`: a service name (`name`, `name.ns`, FQDN, ServiceEntry host) or
    /// address, as a mesh client dials it (port 80 by default); in the Gateway role, the Host
    /// and listener port.
    pub to: String,
    /// `--from SPIFFE-ID`: the HBONE peer's identity; without it the request is plaintext on
    /// the plain listener (no principal).
    pub from: Option<String>,
    /// `--source-ip`: `source.ip` (the HBONE peer, or the TCP peer); 127.0.0.1 by default.
    pub source_ip: Option<IpAddr>,
    /// `--method`.
    pub method: String,
    /// `--path`, with its query.
    pub path: String,
    /// `--header k=v`, in order.
    pub headers: Vec<(String, String)>,
    /// `--jwt FILE`: a token sent as `authorization: Bearer <token>`.
    pub jwt: Option<String>,
}

/// What explain found: the report to print and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The lines printed, the last one `verdict: ...`.
    pub text: String,
    /// One of the `EXIT_*` codes.
    pub exit: i32,
}

/// Why a request cannot be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The folder does not load.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A flag's value is not usable.
    #[error("{0}")]
    Input(String),
}

impl ExplainError {
    /// The explanation printed for the error: its message as the verdict, exit code 2.
    pub fn into_explanation(self) -> Explanation {
        Explanation {
            text: format!("verdict: bad input: {self}\n"),
            exit: EXIT_BAD_INPUT,
        }
    }
}

/// Explains `request` against the folder's configuration, fetching `jwksUri` keys with the
/// same cache the proxy uses and calling no ext_authz server.
pub async fn explain(request: &Request) -> Result<Explanation, ExplainError> {
    let (config, gateway) = (request.config.clone(), request.gateway.clone());
    let live = tokio::task::spawn_blocking(move || LiveConfig::load(&config, gateway))
        .await
        .map_err(|e| ExplainError::Input(format!("config load task failed: {e}")))??;
    let snapshot = live.snapshot();
    let clients = Clients {
        ext_authz: None,
        ..Clients::new()
    };
    clients
        .jwks
        .ensure(crate::security::authenticators(&snapshot));
    explain_with(&snapshot, request, &clients).await
}

/// Explains `request` against `snapshot`, as the proxy would handle it.
pub async fn explain_with(
    snapshot: &Snapshot,
    request: &Request,
    clients: &Clients,
) -> Result<Explanation, ExplainError> {
    let (mut req, downstream) = build_request(snapshot, request)?;
    let mut out = String::new();
    let _ = writeln!(out, "request: {} {}", request.method, request.path);
    let _ = writeln!(out, "  {}", describe_source(&downstream));
    let mut routed = match proxy::normalize_path(&mut req) {
        Ok(()) => proxy::decide(snapshot, &req, &downstream, rand::random()),
        Err(bad) => {
            let _ = writeln!(out, "path: rejected by Istio's normalization");
            let routed = Routed {
                action: Action::Refuse(bad),
                ..Routed::default()
            };
            return Ok(finish(out, &routed, None));
        }
    };
    if req.uri.path() != request.path.split('?').next().unwrap_or_default() {
        let _ = writeln!(out, "path: normalized to {}", req.uri.path());
    }
    describe_route(&mut out, &routed);
    let local = downstream.tunnel.is_none().then(|| {
        // The plain listener's address is not known offline: the destination is loopback.
        SocketAddr::from(([127, 0, 0, 1], routed.listener_port))
    });
    let port = routed.listener_port;
    let checked = proxy::authorize(
        &mut req,
        snapshot,
        || proxy::connection_attrs(&downstream, local, port),
        &mut routed,
        &mut Auth::default(),
        clients,
        true,
    )
    .await;
    describe_security(&mut out, checked.as_ref());
    Ok(finish(out, &routed, checked.as_ref()))
}

/// The request as the proxy would see it, and where it came from: an HBONE tunnel with the
/// `--from` identity to the `--to` destination, or the plain listener.
fn build_request(
    snapshot: &Snapshot,
    request: &Request,
) -> Result<(RequestHeader, Downstream), ExplainError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| ExplainError::Input(format!("{what}: {e}"));
    let method = if request.method.is_empty() {
        "GET"
    } else {
        request.method.as_str()
    };
    let mut req = RequestHeader::build(method, request.path.as_bytes(), None)
        .map_err(|e| bad("--method/--path", &e))?;
    // A client leaves the default port out of Host (curl, browsers, gRPC): `--to svc:80`
    // sends `Host: svc`, so that policies' `hosts` see what the proxy would.
    let host = request.to.strip_suffix(":80").unwrap_or(&request.to);
    req.insert_header(http::header::HOST, host)
        .map_err(|e| bad("--to", &e))?;
    for (name, value) in &request.headers {
        // `--header host=…` is the Host the client sends, replacing the one from `--to`.
        let edit = if name.eq_ignore_ascii_case("host") {
            req.insert_header(name.clone(), value.as_str())
        } else {
            req.append_header(name.clone(), value.as_str()).map(|_| ())
        };
        edit.map_err(|e| bad(&format!("--header {name}"), &e))?;
    }
    if let Some(token) = &request.jwt {
        req.insert_header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()),
        )
        .map_err(|e| bad("--jwt", &e))?;
    }
    let source_ip = request.source_ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let mut downstream = Downstream {
        client_ip: Some(source_ip),
        ..Downstream::default()
    };
    if !snapshot.listeners.is_empty() {
        let port = crate::snapshot::split_authority(&request.to).map_or(80, |(_, p)| p);
        downstream.gateway_port = Some(port);
        return Ok((req, downstream));
    }
    if let Some(from) = &request.from {
        let source: Identity = from.parse().map_err(|e| bad("--from", &e))?;
        downstream.tunnel = Some(tunnel(snapshot, &request.to, source, source_ip)?);
    }
    Ok((req, downstream))
}

/// The tunnel a mesh client with `source` opens to `to` (a service name is resolved to the
/// service's address, as the client's ztunnel dials it).
fn tunnel(
    snapshot: &Snapshot,
    to: &str,
    source: Identity,
    source_ip: IpAddr,
) -> Result<Arc<TunnelContext>, ExplainError> {
    let not_found = |e: crate::snapshot::NotFound| ExplainError::Input(format!("--to: {}", e.0));
    // A service is dialled at its address; anything else (a pod's `ip:port`) as written.
    let authority = match snapshot.resolve_authority(to) {
        Ok((service, port)) => match service.vips.first() {
            Some(ip) => SocketAddr::new(*ip, port.port).to_string(),
            None => {
                let host = crate::snapshot::split_authority(to).map_or(to, |(h, _)| h);
                format!("{host}:{}", port.port)
            }
        },
        Err(_) => to.to_string(),
    };
    let destination = snapshot.resolve_connect(&authority).map_err(not_found)?;
    Ok(Arc::new(TunnelContext {
        source,
        peer_addr: SocketAddr::new(source_ip, 0),
        client_addr: None,
        authority,
        baggage: None,
        traceparent: None,
        destination,
        xfcc: OnceLock::new(),
    }))
}

fn describe_source(downstream: &Downstream) -> String {
    let ip = downstream
        .client_ip
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    match &downstream.tunnel {
        Some(t) => format!(
            "from {} (HBONE, source.ip {}) to {}",
            t.source,
            t.peer_addr.ip(),
            t.authority
        ),
        None => format!("from {ip} (plaintext, no principal)"),
    }
}

fn describe_route(out: &mut String, routed: &Routed) {
    let destination = routed
        .destination
        .as_ref()
        .map_or("none (no service)".to_string(), |d| d.to_string());
    let _ = writeln!(out, "destination: {destination}");
    let route = routed
        .route
        .as_deref()
        .unwrap_or("none (the service's own endpoints)");
    let _ = writeln!(out, "route: {route}");
    let decision = match &routed.action {
        Action::Forward(up) => format!("forward to {}", backend(up)),
        Action::Redirect { status, location } => format!("redirect {status} to {location}"),
        Action::Preflight(p) => format!("CORS preflight answered {}", p.status),
        Action::Direct { status, .. } => format!("direct response {status}"),
        Action::Refuse(r) => format!("refuse {} {}", r.status, r.detail),
    };
    let _ = writeln!(out, "routing: {decision}");
}

fn describe_security(out: &mut String, checked: Option<&Checked>) {
    let Some(checked) = checked else {
        let _ = writeln!(out, "security: no policy applies");
        return;
    };
    let _ = writeln!(out, "security:");
    for line in &checked.trace {
        let _ = writeln!(out, "  {line}");
    }
    if let Some(d) = &checked.decided_by {
        let rule = d
            .rule
            .map_or("no rule matched".to_string(), |r| format!("rules[{r}]"));
        let _ = writeln!(out, "decided by: {} ({rule}): {}", d.policy, d.detail);
    }
    if let Outcome::Deny(denial) = &checked.outcome {
        let _ = writeln!(out, "reason: {}", denial.details);
    }
}

fn backend(up: &proxy::Upstream) -> String {
    match &up.backend {
        Some(b) => format!("{b}:{} ({})", up.service_port, up.addr),
        None => up.addr.to_string(),
    }
}

/// The verdict line and the exit code of the final action.
fn finish(mut out: String, routed: &Routed, checked: Option<&Checked>) -> Explanation {
    let would_ask = checked.and_then(|c| c.would_ask.as_deref());
    let (verdict, exit) = match &routed.action {
        Action::Refuse(r) => {
            let grpc = r
                .grpc_status
                .map(|g| format!(" (grpc-status {g})"))
                .unwrap_or_default();
            (format!("{} {}{grpc}", r.status, r.detail), EXIT_DENIED)
        }
        Action::Forward(up) => (format!("allowed → {}", backend(up)), EXIT_ALLOWED),
        Action::Redirect { status, .. } => (format!("{status} redirect"), EXIT_ALLOWED),
        Action::Preflight(p) => (format!("{} CORS preflight", p.status), EXIT_ALLOWED),
        Action::Direct { status, .. } => (format!("{status} direct response"), EXIT_ALLOWED),
    };
    let (verdict, exit) = match would_ask {
        Some(provider) if exit == EXIT_ALLOWED => (
            format!("ext_authz provider {provider} decides; if it allows: {verdict}"),
            EXIT_EXT_AUTHZ,
        ),
        _ => (verdict, exit),
    };
    let _ = writeln!(out, "verdict: {verdict}");
    Explanation { text: out, exit }
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
