//! The upstream side of a forwarded request: the peer pingora dials for an attempt, and the
//! edits to the request going up and the response coming back.

use super::context::{Downstream, RequestCtx};
use super::decide::{request_origin, RuleFilters, Upstream};
use super::headers::apply_modifier;
use crate::hbone::client::{HboneClient, HboneDial};
use crate::hbone::settings::CONNECT_TIMEOUT;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use std::sync::Arc;
use std::time::Duration;

/// The header Envoy uses to tell a backend who the client was.
const XFCC: &str = "x-forwarded-client-cert";

/// The peer for the next attempt at `upstream`, with `deadline` (the time the attempt may
/// take, from the route's timeouts) applied; an already expired deadline fails the attempt.
pub fn peer(
    upstream: &Upstream,
    deadline: Option<Duration>,
    hbone: Option<&Arc<HboneClient>>,
) -> Result<Box<HttpPeer>> {
    let mut peer = HttpPeer::new(upstream.addr, false, String::new());
    peer.options.connection_timeout = Some(CONNECT_TIMEOUT);
    if upstream.h2c {
        // Plaintext with a minimum version of 2 is h2c with prior knowledge in pingora.
        peer.options.set_http_version(2, 2);
    }
    if let Some(limit) = deadline {
        if limit.is_zero() {
            return Err(Error::explain(
                ErrorType::ReadTimedout,
                "the route's request timeout expired before the attempt",
            )
            .into_up());
        }
        // pingora bounds each read and write of the exchange, which is what makes a backend
        // that does not answer in time a 504 (ReadTimedout) for the client.
        peer.options.connection_timeout = Some(limit.min(CONNECT_TIMEOUT));
        peer.options.read_timeout = Some(limit);
        peer.options.write_timeout = Some(limit);
    }
    if let (Some(workload), Some(client)) = (&upstream.hbone, hbone) {
        peer.options.custom_l4 = Some(Arc::new(HboneDial {
            client: client.clone(),
            identity: workload.in_trust_domain(&client.trust_domain()),
        }));
        // pingora 0.9 checks a pooled connection's liveness on its file descriptor, which a
        // tunnel does not have, so it can never reuse one; a zero idle timeout closes the
        // tunnel at once instead of parking it until the next request discards it. The mTLS
        // HTTP/2 connection underneath stays pooled by the HBONE client.
        peer.options.idle_timeout = Some(Duration::ZERO);
    }
    Ok(Box::new(peer))
}

/// Edits the request sent upstream: Host for HTTP/1.1 endpoints, the client's identity
/// (XFCC), then the rule's header modifiers and URL rewrite.
pub fn edit_request(
    client_req: &RequestHeader,
    upstream: &mut RequestHeader,
    ctx: &RequestCtx,
    hbone: Option<&Arc<HboneClient>>,
) -> Result<()> {
    // An h2 client sends :authority and no Host; an HTTP/1.1 endpoint needs Host.
    if upstream.headers.get(http::header::HOST).is_none() {
        if let Some(authority) = client_req.uri.authority() {
            let host = authority.as_str().to_string();
            upstream.insert_header(http::header::HOST, host)?;
        }
    }
    set_client_identity(upstream, &ctx.downstream, hbone)?;
    if let Some(filters) = ctx.filters() {
        rewrite(upstream, filters)?;
    }
    Ok(())
}

/// As Istio's inbound proxies do (SANITIZE_SET): a client-supplied XFCC is never trusted; a
/// tunnelled request carries its peer's verified identity to the backend.
fn set_client_identity(
    upstream: &mut RequestHeader,
    downstream: &Downstream,
    hbone: Option<&Arc<HboneClient>>,
) -> Result<()> {
    upstream.remove_header(XFCC);
    let Some(tunnel) = &downstream.tunnel else {
        return Ok(());
    };
    let value = tunnel.xfcc.get_or_init(|| {
        let value = match hbone {
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
    Ok(())
}

fn rewrite(upstream: &mut RequestHeader, filters: &RuleFilters) -> Result<()> {
    for m in &filters.request_modifiers {
        apply_modifier(m, upstream)?;
    }
    if let Some(host) = &filters.rewrite_host {
        // pingora rebuilds an h2 :authority from Host, so this covers both protocols.
        upstream.insert_header(http::header::HOST, host.as_str())?;
    }
    if let Some(path) = &filters.rewrite_path {
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

/// Edits the response sent downstream: the rule's header modifiers, then CORS headers for an
/// allowed origin.
pub fn edit_response(
    client_req: &RequestHeader,
    response: &mut ResponseHeader,
    filters: &RuleFilters,
) -> Result<()> {
    for m in &filters.response_modifiers {
        apply_modifier(m, response)?;
    }
    if let (Some(cors), Some(origin)) = (&filters.cors, request_origin(client_req)) {
        for (name, value) in cors.response_headers(origin) {
            response.insert_header(name, value)?;
        }
    }
    Ok(())
}

/// `uri` with its path replaced and its query kept.
pub fn with_path(uri: &http::Uri, path: &str) -> std::result::Result<http::Uri, http::Error> {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(path_and_query)?);
    Ok(http::Uri::from_parts(parts)?)
}

/// The error that fails an attempt whose response `status` the route retries on: pingora
/// retries an attempt that failed with a retryable error and has sent nothing downstream yet,
/// which is the case in `upstream_response_filter`.
pub fn retry_status_error(status: u16, retry: u32) -> Box<Error> {
    let mut e = Error::explain(
        ErrorType::HTTPStatus(status),
        format!("retrying a {status} response (retry {retry})"),
    )
    .into_up();
    e.set_retry(true);
    e
}
