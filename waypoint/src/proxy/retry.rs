//! The I/O side of retries and timeouts: what an attempt's outcome looks like to
//! `resilience`'s retry policy, where the next attempt goes, and the route's deadline.
//!
//! The decisions are `resilience::RetryState`'s; this file only reads pingora's errors and
//! headers into its terms and moves the request to another endpoint.

use super::admit;
use super::context::RequestCtx;
use super::decide::Action;
use super::reply::is_connect_failure;
use crate::endpoint;
use crate::snapshot::Snapshot;
use pingora_error::{Error, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::Session;
use resilience::{AttemptFailure, ResponseView, RoutePolicy};
use std::time::Duration;
use telemetry::ResponseFlag;

/// Logged when a retry the policy asked for could not happen because the request body did
/// not fit pingora's retry buffer (64 KiB), so it cannot be sent again.
pub const BODY_NOT_REPLAYABLE: &str = "request body larger than the retry buffer";

/// What the retry conditions look at in an attempt's response header.
pub fn response_view(response: &ResponseHeader) -> ResponseView {
    let grpc_status = response
        .headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    ResponseView {
        status: response.status.as_u16(),
        grpc_status,
        rate_limited: response.headers.contains_key("x-envoy-ratelimited"),
    }
}

/// Whether the attempt whose response header is `response` fails for a retry. A request
/// whose body no longer fits the retry buffer cannot be sent again, so its response goes
/// through as it is (as Envoy passes it on) and the log says why it was not retried.
pub fn retries_response(
    session: &Session,
    ctx: &mut RequestCtx,
    response: &ResponseHeader,
) -> bool {
    let policy = ctx.policy_arc();
    let retry_policy = policy.as_ref().and_then(|p| p.retry.as_ref());
    if !ctx
        .attempt
        .retry
        .on_response(retry_policy, &response_view(response))
    {
        return false;
    }
    if session.as_ref().retry_buffer_truncated() {
        ctx.attempt.retry.confirm(false);
        ctx.attempt.not_retried = Some(BODY_NOT_REPLAYABLE);
        return false;
    }
    if !within_budget(ctx) {
        ctx.attempt.retry.confirm(false);
        return false;
    }
    true
}

/// Logged when a retry the policy asked for could not happen because the service's retry
/// budget (DestinationRule `connectionPool.http.maxRetries`) was spent.
pub const RETRY_BUDGET_SPENT: &str = "the service's retry budget (maxRetries) is spent";

/// Takes a place in the service's retry budget for the retry just decided, held until the
/// next retry or the end of the request. When the budget is spent the retry is dropped and the
/// failure goes downstream with UO, as Envoy's retry overflow.
fn within_budget(ctx: &mut RequestCtx) -> bool {
    match admit::try_start_retry(ctx) {
        Some(place) => {
            ctx.attempt.retry_place = Some(place);
            true
        }
        None => {
            ctx.attempt.not_retried = Some(RETRY_BUDGET_SPENT);
            ctx.record.also.push(ResponseFlag::UpstreamOverflow);
            false
        }
    }
}

/// How an attempt that failed before its response header failed, in the retry policy's
/// terms; None for failures no condition retries (the route's own timeout, a local error).
pub fn attempt_failure(e: &Error, request_timed_out: bool) -> Option<AttemptFailure> {
    use ErrorType::*;
    match e.etype() {
        t if is_connect_failure(t) => Some(AttemptFailure::ConnectFailure),
        // The request timeout covers all attempts: when it fired, nothing is retried.
        ReadTimedout | WriteTimedout if request_timed_out => None,
        ReadTimedout | WriteTimedout => Some(AttemptFailure::PerTryTimeout),
        H2Error if refused_stream(e) => Some(AttemptFailure::RefusedStream),
        HTTPStatus(_) | InternalError => None,
        _ => Some(AttemptFailure::Reset),
    }
}

fn refused_stream(e: &Error) -> bool {
    e.root_cause()
        .downcast_ref::<h2::Error>()
        .and_then(h2::Error::reason)
        == Some(h2::Reason::REFUSED_STREAM)
}

/// Decides whether the attempt that just failed with `failure` (None: a response status
/// already decided it, or nothing retries it) is retried, and notes why not when only the
/// request body stood in the way.
pub fn decide(session: &Session, ctx: &mut RequestCtx, failure: Option<AttemptFailure>) -> bool {
    let policy = ctx.policy_arc();
    let retry_policy = policy.as_ref().and_then(|p| p.retry.as_ref());
    // Once anything went downstream, another attempt could only corrupt the response.
    let downstream_untouched = session.response_written().is_none();
    if let (Some(failure), false) = (failure, ctx.attempt.retry.is_pending()) {
        if downstream_untouched {
            ctx.attempt.retry.on_failure(retry_policy, failure);
        }
    }
    let replayable = !session.as_ref().retry_buffer_truncated();
    if ctx.attempt.retry.is_pending() && !replayable {
        ctx.attempt.not_retried = Some(BODY_NOT_REPLAYABLE);
    }
    let possible = replayable && downstream_untouched;
    let allowed = possible && (!ctx.attempt.retry.is_pending() || within_budget(ctx));
    ctx.attempt.retry.confirm(allowed)
}

/// Whether the route's request timeout, which covers all attempts and the response body, has
/// run out.
pub fn request_timed_out(ctx: &RequestCtx) -> bool {
    let limit = ctx.policy().and_then(|p| p.timeouts.request);
    limit.is_some_and(|t| ctx.attempt.elapsed() >= t)
}

/// The error that ends a response whose body outlived the route's request timeout.
///
/// pingora 0.9 bounds each read of the exchange (`read_timeout`, set per attempt to what is
/// left of the request timeout), not the exchange as a whole, so a backend that trickles its
/// body would never time out. Checking the deadline each time a body chunk arrives closes that
/// gap without a timer task per request: a stalled read still ends at the read timeout, and a
/// trickle ends at the first chunk past the deadline. The headers already went downstream, so
/// the stream is cut (UT in the log), as Envoy resets it.
pub fn body_deadline(ctx: &mut RequestCtx) -> pingora_error::Result<()> {
    if !request_timed_out(ctx) {
        return Ok(());
    }
    ctx.record.flag = Some(ResponseFlag::UpstreamRequestTimeout);
    Err(Error::explain(
        ErrorType::ReadTimedout,
        "the route's request timeout expired during the response body",
    )
    .into_up())
}

/// Prepares the next attempt when it is a retry: waits out the backoff (never past the
/// request timeout), then points it at another endpoint.
pub async fn before_attempt(
    req: &RequestHeader,
    ctx: &mut RequestCtx,
    policy: Option<&RoutePolicy>,
) {
    let retry_policy = policy.and_then(|p| p.retry.as_ref());
    let is_retry = ctx.attempt.retry.is_pending();
    if let Some(backoff) = ctx
        .attempt
        .retry
        .before_attempt(retry_policy, rand::random())
    {
        let wait = capped_backoff(backoff, policy, ctx.attempt.elapsed());
        tokio::time::sleep(wait).await;
    }
    if let (true, Some(snapshot)) = (is_retry, ctx.snapshot.clone()) {
        let avoid = retry_policy.is_some_and(|p| p.avoid_previous_hosts);
        next_endpoint(&snapshot, req, ctx, avoid);
    }
}

/// Points a retry at another endpoint of the same backend when there is one (Envoy's
/// `previous_hosts` predicate; any endpoint when the policy allows reuse). A pod addressed
/// directly has only itself; a backend that lost its endpoints keeps the last one, whose
/// failure then ends the request.
pub fn next_endpoint(
    snapshot: &Snapshot,
    req: &RequestHeader,
    ctx: &mut RequestCtx,
    avoid_previous: bool,
) {
    let affinity = admit::affinity(req, &ctx.downstream);
    let mut tried = std::mem::take(&mut ctx.attempt.tried);
    if let Some(Action::Forward(up)) = ctx.routed.as_mut().map(|r| &mut r.action) {
        // Recorded only now, so a request that is never retried allocates nothing for it.
        tried.push(up.addr);
        if let Some(service) = &up.backend {
            let pick = endpoint::Pick {
                service,
                port: up.service_port,
                subset: up.subset.as_deref(),
                avoid: if avoid_previous { &tried } else { &[] },
                affinity: Some(affinity),
            };
            if let Ok(chosen) = endpoint::choose(snapshot, &pick) {
                up.addr = chosen.endpoint.addr;
                up.hbone = chosen.endpoint.hbone.clone();
                up.h2c = chosen.port.h2c;
            }
        }
    }
    ctx.attempt.tried = tried;
}

/// The wait before a retry, never past the route's request timeout: once it runs out the
/// attempt fails at once (504 UT) instead of sleeping for nothing.
pub fn capped_backoff(
    backoff: Duration,
    policy: Option<&RoutePolicy>,
    elapsed: Duration,
) -> Duration {
    match policy.and_then(|p| p.timeouts.request) {
        Some(limit) => backoff.min(limit.saturating_sub(elapsed)),
        None => backoff,
    }
}
