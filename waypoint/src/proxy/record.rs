//! What a finished request reports: today the access log line; the telemetry issue adds the
//! Istio standard metrics and the span here, from the same context, once per request.

use super::context::RequestCtx;
use pingora_error::Error;
use pingora_proxy::Session;

/// Emits the access log line for a finished request.
pub fn access_log(session: &Session, e: Option<&Error>, ctx: &RequestCtx) {
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .unwrap_or(0);
    let req = session.req_header();
    let routed = ctx.routed.as_ref();
    tracing::debug!(
        target: "access",
        method = %req.method,
        path = %req.uri.path(),
        status,
        destination = routed.and_then(|r| r.destination.as_ref()).map(|k| k.to_string()),
        backend = ctx.upstream().and_then(|u| u.backend.as_ref()).map(|k| k.to_string()),
        route = routed.and_then(|r| r.route.as_deref()),
        source = ctx.downstream.tunnel.as_ref().map(|t| t.source.to_string()),
        upstream = ?ctx.upstream().map(|u| u.addr),
        flag = ctx.record.flags(),
        // Envoy's response code details of a security refusal (RBAC and JWT have no flag).
        reason = ctx.auth.denied.as_deref(),
        request_principal = ctx.auth.request.as_ref().map(|a| a.principal.as_str()),
        retries = ctx.attempt.retry.retries_done(),
        not_retried = ctx.attempt.not_retried,
        config_version = ctx.snapshot.as_ref().map(|s| s.version),
        duration_ms = ctx.downstream.start.elapsed().as_secs_f64() * 1000.0,
        error = e.map(|e| e.to_string()),
    );
}
