//! STEP authorize: the request's security, in Istio's order at its Envoy waypoint. The path is
//! normalized before routing (Envoy's connection manager does it before any filter); after the
//! routing decision, `security::check_request` runs RequestAuthentication, CUSTOM, DENY and
//! ALLOW for the destination's policies. A denial replaces the action with a refusal carrying
//! the security step's answer; an allowed request gets the step's header edits.

use super::context::{Auth, Downstream};
use super::decide::{Action, Routed};
use super::reply::Refusal;
use crate::security::{self, CheckInput, Checked, Clients, Outcome, Traffic};
use crate::snapshot::Snapshot;
use authz::{ConnectionAttrs, HeaderEdit};
use pingora_http::{RequestHeader, ResponseHeader};
use std::net::SocketAddr;
use std::time::SystemTime;

/// Istio's default path normalization (BASE), written into the request so that routing,
/// policies and the backend all see the normalized path. A path it rejects is a 400.
pub fn normalize_path(req: &mut RequestHeader) -> Result<(), Refusal> {
    let Some(original) = req.uri.path_and_query() else {
        return Ok(());
    };
    if authz::policy::is_normalized(original.as_str()) {
        return Ok(());
    }
    let normalized = authz::policy::normalize_path(original.as_str()).map_err(|bad| {
        tracing::debug!("path normalization failed: {}", bad.0);
        Refusal::bad_path()
    })?;
    if normalized == original.as_str() {
        return Ok(());
    }
    with_path_and_query(&req.uri, normalized)
        .map(|uri| req.set_uri(uri))
        .ok_or_else(Refusal::bad_path)
}

/// `uri` with its path and query replaced; None when the result is not a URI.
fn with_path_and_query(uri: &http::Uri, path_and_query: String) -> Option<http::Uri> {
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(path_and_query).ok()?);
    http::Uri::from_parts(parts).ok()
}

/// Sets the path and query an ext_authz server asked for; one that is not a valid URI is
/// skipped and logged.
fn set_path_and_query(req: &mut RequestHeader, path: &str) {
    match with_path_and_query(&req.uri, path.to_string()) {
        Some(uri) => req.set_uri(uri),
        None => tracing::info!(%path, "ext_authz path change skipped: not a valid path"),
    }
}

/// Adds the headers the security steps asked for to the response to the client.
pub fn edit_response(response: &mut ResponseHeader, auth: &Auth) {
    for (name, value) in &auth.response_headers {
        if let Err(e) = response.append_header(name.clone(), value.as_str()) {
            tracing::info!(header = %name, "security response header skipped: {e}");
        }
    }
}

/// The routing decision of a request whose path Istio's normalization rejects.
pub fn refused(refusal: Refusal) -> Routed {
    Routed {
        action: Action::Refuse(refusal),
        ..Routed::default()
    }
}

/// Runs the security sequence for `req` (routed as `routed`) and applies its outcome: a denial
/// becomes the request's refusal, an allowed request gets its header edits and keeps its JWT
/// in `auth`. A CORS preflight answered by the route is never checked (Envoy's CORS filter
/// runs first), and a destination without policies costs nothing: `None`, nothing checked.
/// Otherwise the check, with its per-policy trace when `trace` asks for it (`waypoint
/// explain`) or the `authz` debug log is on.
pub async fn authorize(
    req: &mut RequestHeader,
    snapshot: &Snapshot,
    conn: impl FnOnce() -> ConnectionAttrs,
    routed: &mut Routed,
    auth: &mut Auth,
    clients: &Clients,
    trace: bool,
) -> Option<Checked> {
    if matches!(routed.action, Action::Preflight(_)) {
        return None;
    }
    let policies = snapshot.security.policies_for(routed.destination.as_ref());
    if policies.authn.is_empty() && policies.authz.is_empty() {
        return None;
    }
    let conn = conn();
    let input = CheckInput {
        snapshot,
        policies,
        conn: &conn,
        traffic: Traffic::Http(req),
        trace: trace || tracing::enabled!(target: "authz", tracing::Level::DEBUG),
    };
    // Boxed, and only for a destination with policies: the check's future (JWT, ext_authz
    // calls) is several KiB, which would otherwise enlarge every request's phase future.
    let checked = Box::pin(security::check_request(&input, clients, SystemTime::now())).await;
    tracing::debug!(target: "authz", trace = ?checked.trace, "security checked");
    match &checked.outcome {
        Outcome::Allow(granted) => {
            apply_edits(req, &granted.edits);
            if let Some(path) = &granted.path {
                set_path_and_query(req, path);
            }
            auth.request = granted.auth.clone();
            auth.response_headers = granted.response_headers.clone();
        }
        Outcome::Deny(denial) => {
            let grpc = super::fault::is_grpc(req);
            routed.action = Action::Refuse(Refusal::security(&denial.reply, denial.flag, grpc));
            auth.denied = Some(denial.details.clone());
        }
    }
    Some(checked)
}

/// Applies a security step's edits to the request the backend (and any mirror) receives, as
/// Envoy's filters edit the request before its router; an edit that is not a valid header is
/// skipped and logged.
pub fn apply_edits(req: &mut RequestHeader, edits: &[HeaderEdit]) {
    for edit in edits {
        match edit {
            HeaderEdit::Remove(name) => {
                req.remove_header(name.as_str());
            }
            HeaderEdit::Set(name, value) => {
                if let Err(e) = req.insert_header(name.clone(), value.as_str()) {
                    tracing::info!(header = %name, "security header edit skipped: {e}");
                }
            }
        }
    }
}

/// The connection facts of a request that arrived as `downstream` says on local address
/// `local`: in a tunnel, the peer's principal, the HBONE connection's peer address and the
/// CONNECT target; on the plain listener (and in the Gateway role), no principal, the TCP peer,
/// and the local address's IP with the addressed service (or listener) port.
pub fn connection_attrs(
    downstream: &Downstream,
    local: Option<SocketAddr>,
    listener_port: u16,
) -> ConnectionAttrs {
    if let Some(tunnel) = &downstream.tunnel {
        return security::tunnel_attrs(tunnel, listener_port);
    }
    let port = match listener_port {
        0 => local.map_or(0, |l| l.port()),
        port => port,
    };
    ConnectionAttrs {
        source_principal: None,
        source_ip: downstream.client_ip,
        destination_ip: local.map(|l| l.ip()),
        destination_port: port,
        // pingora's TLS digest does not keep the client's server name.
        sni: None,
    }
}

#[cfg(test)]
#[path = "authorize_tests.rs"]
mod tests;
