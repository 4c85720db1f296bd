//! STEP admit: what a service's DestinationRule asks of each upstream attempt — circuit-breaker
//! admission (a 503 `UO` when over a limit), the endpoint's in-flight count (LEAST_REQUEST),
//! the outcome fed to outlier detection, the connection options, and the affinity cookie.
//!
//! How Envoy's limits map onto pingora's pool: an HTTP/1.1 upstream connection carries one
//! request at a time, so `maxConnections` is a semaphore of request slots (a request holds one
//! from admission until its exchange ends); an HTTP/2 connection carries
//! `maxConcurrentStreams` at once. A request that finds no free slot waits in a pending queue
//! bounded by `http1MaxPendingRequests`; beyond it, or beyond `http2MaxRequests` in flight, it
//! is refused at once. With `maxConnections: 1, http1MaxPendingRequests: 1` the backend thus
//! never sees two requests at once, one more waits, and the rest get 503 `UO` immediately —
//! the pattern of Istio's circuit-breaking task.

use super::context::{Downstream, RequestCtx};
use super::reply::Failure;
use crate::endpoint::cluster::{now, Cluster, ClusterState, EndpointState};
use crate::endpoint::Affinity;
use pingora_core::protocols::l4::ext::TcpKeepalive;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::{RequestHeader, ResponseHeader};
use resilience::{
    set_cookie_value, Admission, Admitted, BreakerGuard, HashKey, Outcome, OutlierPolicy,
    PoolLimits, Transition,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use telemetry::ResponseFlag;

/// The header Envoy sets on a response refused by a circuit breaker.
pub const OVERLOADED_HEADER: &str = "x-envoy-overloaded";
/// Envoy's body for a request refused by a circuit breaker.
const OVERFLOW_BODY: &str =
    "upstream connect error or disconnect/reset before headers. reset reason: overflow";
/// The error type of a refusal by a circuit breaker.
const OVERFLOW: &str = "UpstreamOverflow";

/// The admission of the current attempt: its breaker places and endpoint, released when the
/// next attempt starts or the request ends.
#[derive(Debug, Default)]
pub struct AdmitState {
    attempt: Option<AttemptHold>,
}

#[derive(Debug)]
struct AttemptHold {
    cluster: Arc<ClusterState>,
    endpoint: Arc<EndpointState>,
    outlier: Option<OutlierPolicy>,
    hosts: usize,
    /// The outcome is counted once per attempt.
    recorded: bool,
    slot: Option<Admitted>,
}

impl Drop for AttemptHold {
    fn drop(&mut self) {
        self.endpoint.active.fetch_sub(1, Ordering::AcqRel);
        if self.slot.take().is_some() {
            // A slot was given back: a request waiting in the pending queue may take it.
            self.cluster.slot_freed.notify_one();
        }
    }
}

/// What a request offers a consistent hash: its headers, query and client address.
pub fn affinity<'r>(req: &'r RequestHeader, downstream: &Downstream) -> Affinity<'r> {
    let tunnel = downstream.tunnel.as_ref();
    Affinity {
        headers: &req.headers,
        query: req.uri.query(),
        source_ip: tunnel
            .map(|t| t.client_addr.unwrap_or(t.peer_addr).ip())
            .or(downstream.client_ip),
    }
}

/// The client connection's peer IP (consistent hashing on `useSourceIp`).
pub fn client_ip(session: &pingora_proxy::Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// Admits the attempt about to start at `ctx.upstream()`: gives back the previous attempt's
/// places, then takes a place under the cluster's limits, waiting in the pending queue when
/// that is allowed; fails with the overflow error (503 `UO`) otherwise.
pub async fn admit(ctx: &mut RequestCtx) -> Result<()> {
    ctx.admit.attempt = None;
    let Some(cluster) = cluster_of(ctx) else {
        return Ok(());
    };
    let Some(addr) = ctx.upstream().map(|u| u.addr) else {
        return Ok(());
    };
    let Some(i) = cluster.endpoints.iter().position(|e| e.addr == addr) else {
        return Ok(());
    };
    let endpoint = cluster.endpoints[i].clone();
    let state = cluster.state.clone();
    let limits = cluster.policy.pool.clone();
    let outlier = cluster.policy.outlier.clone();
    let hosts = cluster.members.len();
    let h2 = ctx.upstream().is_some_and(|u| u.h2c);
    let slot = take_slot(&state, &limits, h2).await?;
    endpoint.active.fetch_add(1, Ordering::AcqRel);
    ctx.admit.attempt = Some(AttemptHold {
        cluster: state,
        endpoint,
        outlier,
        hosts,
        recorded: false,
        slot: Some(slot),
    });
    Ok(())
}

async fn take_slot(state: &ClusterState, limits: &PoolLimits, h2: bool) -> Result<Admitted> {
    let (request, pending) = match state.breaker.admit(limits, h2) {
        Admission::Admitted(admitted) => return Ok(admitted),
        Admission::Queued { request, pending } => (request, pending),
        Admission::Overflow(resource) => {
            let mut e = Error::explain(
                ErrorType::Custom(OVERFLOW),
                format!("circuit breaker: over the {resource:?} limit"),
            )
            .into_up();
            e.set_retry(false);
            return Err(e);
        }
    };
    loop {
        // Registered before looking, so a slot given back in between still wakes us.
        let freed = state.slot_freed.notified();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if let Some(slot) = state.breaker.try_slot(limits, h2) {
            drop(pending);
            return Ok(Admitted { request, slot });
        }
        freed.await;
    }
}

/// A place for one retry in the service's retry budget (`maxRetries`): the retry step holds
/// it while the retry runs; `None` means the budget is spent and the request is not retried.
/// A request whose attempt is not admitted to a cluster has no budget to respect.
pub fn try_start_retry(ctx: &RequestCtx) -> Option<RetryPlace> {
    let Some(cluster) = cluster_of(ctx) else {
        return Some(RetryPlace { _place: None });
    };
    let place = cluster
        .state
        .breaker
        .try_start_retry(&cluster.policy.pool)?;
    Some(RetryPlace {
        _place: Some(place),
    })
}

/// A retry's place in the retry budget, given back when dropped.
#[derive(Debug)]
pub struct RetryPlace {
    _place: Option<BreakerGuard>,
}

/// The cluster the attempt at `ctx.upstream()` goes to.
fn cluster_of(ctx: &RequestCtx) -> Option<&Cluster> {
    let snapshot = ctx.snapshot.as_ref()?;
    let up = ctx.upstream()?;
    snapshot
        .service(up.backend.as_ref()?)?
        .port(up.service_port)?
        .traffic
        .cluster(up.subset.as_deref())
}

/// Feeds the attempt's response status to outlier detection.
pub fn on_response(ctx: &mut RequestCtx, status: u16) {
    record(ctx, Outcome::Status(status));
}

/// Feeds a failure to connect to outlier detection.
pub fn on_connect_failure(ctx: &mut RequestCtx) {
    record(ctx, Outcome::ConnectFailed);
}

/// Feeds an attempt's upstream error (a timeout, or a reset before the response) to outlier
/// detection. Client-side errors say nothing about the endpoint, and neither does a pooled
/// connection the endpoint had already closed while idle (`reused`): that is keep-alive
/// housekeeping, which the retry step handles, not a failing endpoint.
pub fn on_error(ctx: &mut RequestCtx, e: &Error, reused: bool) {
    let timed_out = matches!(
        e.etype(),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout
    );
    if e.esource() != &pingora_error::ErrorSource::Upstream || (reused && !timed_out) {
        return;
    }
    let outcome = match e.etype() {
        ErrorType::ReadTimedout | ErrorType::WriteTimedout | ErrorType::ConnectTimedout => {
            Outcome::Timeout
        }
        ErrorType::HTTPStatus(_) | ErrorType::Custom(_) => return,
        _ => Outcome::Reset,
    };
    record(ctx, outcome);
}

fn record(ctx: &mut RequestCtx, outcome: Outcome) {
    let Some(hold) = ctx.admit.attempt.as_mut().filter(|h| !h.recorded) else {
        return;
    };
    hold.recorded = true;
    let Some(policy) = &hold.outlier else {
        return;
    };
    let ep = &hold.endpoint;
    let detector = &hold.cluster.outlier;
    if let Some(Transition::Ejected {
        until,
        count,
        reason,
    }) = detector.record(policy, &ep.health, outcome, hold.hosts, now())
    {
        tracing::warn!(
            endpoint = %ep.addr,
            ejections = count,
            seconds = until.saturating_sub(now()).as_secs_f64(),
            "outlier detection: endpoint ejected ({reason})"
        );
    }
}

/// The overflow refusal's status, flag and body, when `e` is one.
pub fn overflow_failure(e: &Error) -> Option<Failure> {
    (e.etype() == &ErrorType::Custom(OVERFLOW)).then_some(Failure {
        status: 503,
        flag: Some(ResponseFlag::UpstreamOverflow),
        body: OVERFLOW_BODY,
    })
}

/// The headers Envoy adds to a local answer with `flag`: `x-envoy-overloaded` on an overflow.
pub fn failure_headers(flag: Option<ResponseFlag>) -> Vec<(http::HeaderName, http::HeaderValue)> {
    match flag {
        Some(ResponseFlag::UpstreamOverflow) => vec![(
            http::HeaderName::from_static(OVERLOADED_HEADER),
            http::HeaderValue::from_static("true"),
        )],
        _ => Vec::new(),
    }
}

/// Applies the cluster's connection options to the attempt's peer: connect timeout, TCP
/// keepalive, idle timeout, HTTP/2 streams per connection, and no reuse when
/// `maxRequestsPerConnection` is 1.
pub fn peer_options(peer: &mut HttpPeer, ctx: &RequestCtx) {
    if let Some(cluster) = cluster_of(ctx) {
        apply_pool(peer, &cluster.policy.pool);
    }
}

fn apply_pool(peer: &mut HttpPeer, pool: &PoolLimits) {
    let options = &mut peer.options;
    if let Some(connect) = pool.connect_timeout {
        // The route's deadline (the read timeout when set) still bounds the connect.
        options.connection_timeout = Some(options.read_timeout.map_or(connect, |d| d.min(connect)));
    }
    if let Some(k) = pool.tcp_keepalive {
        // Linux's defaults for the parts the rule leaves out.
        options.tcp_keepalive = Some(TcpKeepalive {
            idle: k.time.unwrap_or(Duration::from_secs(7200)),
            interval: k.interval.unwrap_or(Duration::from_secs(75)),
            count: k.probes.map_or(9, |p| p as usize),
            #[cfg(target_os = "linux")]
            user_timeout: Duration::ZERO,
        });
    }
    if let Some(idle) = pool.idle_timeout {
        options.idle_timeout = Some(options.idle_timeout.map_or(idle, |d| d.min(idle)));
    }
    if pool.max_requests_per_connection == Some(1) {
        options.idle_timeout = Some(Duration::ZERO);
    }
    if let Some(streams) = pool.max_concurrent_streams {
        options.max_h2_streams = streams as usize;
    }
}

/// Sets the affinity cookie on the response when the cluster hashes on a cookie with a ttl
/// and the request came without it (Envoy generates it the same way).
pub fn affinity_cookie(
    req: &RequestHeader,
    response: &mut ResponseHeader,
    ctx: &RequestCtx,
) -> Result<()> {
    let Some(cluster) = cluster_of(ctx) else {
        return Ok(());
    };
    let Some(HashKey::Cookie(cookie)) = &cluster.policy.lb.hash_key else {
        return Ok(());
    };
    let affinity = affinity(req, &ctx.downstream);
    if cookie.ttl.is_none() || affinity.cookie(&cookie.name).is_some() {
        return Ok(());
    }
    if let Some(value) = affinity.generated_cookie() {
        response.append_header(http::header::SET_COOKIE, set_cookie_value(cookie, &value))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
