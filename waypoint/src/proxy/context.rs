//! The per-request state the pingora phases share, grouped by the step that fills it.
//!
//! Each part is written by one step and read by the later ones: `downstream` by
//! `early_request_filter`, `snapshot` and `routed` by `request_filter` (the decision), `attempt`
//! by the upstream phases, `auth` by STEP authorize, `record` by whichever step ends the
//! request.

use super::decide::{Action, Routed, RuleFilters, Upstream};
use crate::hbone::context::TunnelContext;
use crate::snapshot::Snapshot;
use resilience::{RetryState, RoutePolicy};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use telemetry::ResponseFlag;

/// Everything the phases of one request share.
#[derive(Debug)]
pub struct RequestCtx {
    /// Where the request came from.
    pub downstream: Downstream,
    /// The configuration this request reads from start to end, so a swap mid-request never
    /// mixes two versions; phases borrow it instead of loading their own.
    pub snapshot: Option<Arc<Snapshot>>,
    /// What the routing decision made of the request.
    pub routed: Option<Routed>,
    /// What STEP authorize made of it: the verified JWT, or why it was refused.
    pub auth: Auth,
    /// The upstream attempts so far.
    pub attempt: Attempt,
    /// The current attempt's circuit-breaker places and endpoint (STEP admit).
    pub admit: super::admit::AdmitState,
    /// What the request's telemetry reports beyond what the session itself knows.
    pub record: Record,
}

/// The client side of the request.
#[derive(Debug)]
pub struct Downstream {
    /// When the request started, for the request timeout and the recorded duration.
    pub start: Instant,
    /// The HBONE tunnel the request arrived in: source identity, CONNECT target, baggage.
    pub tunnel: Option<Arc<TunnelContext>>,
    /// Gateway role: the listener port the request arrived on.
    pub gateway_port: Option<u16>,
    /// "https" when the client's connection was TLS: redirects keep the request's scheme.
    pub scheme: &'static str,
    /// The client connection's peer address (consistent hashing on the source IP).
    pub client_ip: Option<std::net::IpAddr>,
}

impl Default for Downstream {
    fn default() -> Self {
        Downstream {
            start: Instant::now(),
            tunnel: None,
            gateway_port: None,
            scheme: "http",
            client_ip: None,
        }
    }
}

/// The security outcome of a request, for telemetry.
#[derive(Debug, Default)]
pub struct Auth {
    /// The verified JWT (`request.auth.principal` and claims), when the request carried one.
    pub request: Option<authz::RequestAuth>,
    /// Why a security step refused the request: Envoy's response code details
    /// (`rbac_access_denied_matched_policy[...]`, `jwt_authn_access_denied{...}`,
    /// `ext_authz_denied`).
    pub denied: Option<String>,
    /// Headers an allowing ext_authz server adds to the response.
    pub response_headers: Vec<(String, String)>,
}

/// The state of the upstream attempts: which ones failed, and whether the next is a retry.
#[derive(Debug, Default)]
pub struct Attempt {
    /// The route's retry decisions for this request; `retry.retries_done()` counts retries.
    pub retry: RetryState,
    /// The endpoints of the attempts before the current one, first attempt first: a retry
    /// avoids them and the current one.
    pub tried: Vec<SocketAddr>,
    /// When the route's request timeout started: once the request is routed and any injected
    /// delay is over (Envoy's router starts it there, after the fault filter).
    pub timer_start: Option<Instant>,
    /// Why a retry the policy asked for did not happen, for the access log.
    pub not_retried: Option<&'static str>,
    /// The current retry's place in the service's retry budget (`maxRetries`).
    pub retry_place: Option<super::admit::RetryPlace>,
}

impl Attempt {
    /// How long the request has been running against its route timeout.
    pub fn elapsed(&self) -> Duration {
        self.timer_start.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

/// Telemetry facts no other part holds.
#[derive(Debug, Default)]
pub struct Record {
    /// Why the request ended as it did, when the waypoint knows better than the status.
    pub flag: Option<ResponseFlag>,
    /// Flags that accompany it, as Envoy reports several: DI (a delay was injected), URX (the
    /// retries ran out).
    pub also: Vec<ResponseFlag>,
}

impl Record {
    /// The flags as Envoy's `%RESPONSE_FLAGS%` prints them (`URX,UF`), in Envoy's order; None
    /// when there is none.
    pub fn flags(&self) -> Option<String> {
        let mut flags: Vec<_> = self.flag.iter().chain(&self.also).copied().collect();
        if flags.is_empty() {
            return None;
        }
        flags.sort_by_key(|f| envoy_rank(*f));
        flags.dedup();
        let names: Vec<_> = flags.iter().map(|f| f.as_str()).collect();
        Some(names.join(","))
    }
}

/// Where a flag sits in Envoy's list, which is the order the request met them (Envoy 1.40
/// prints `URX,UF` for connect failures past the retry limit): an injected delay, then the
/// abort, then the retry limit, which is hit before the last attempt's failure is reported.
fn envoy_rank(flag: ResponseFlag) -> u8 {
    match flag {
        ResponseFlag::DelayInjected => 0,
        ResponseFlag::FaultInjected => 1,
        ResponseFlag::UpstreamRetryLimitExceeded => 2,
        _ => 3,
    }
}

impl RequestCtx {
    /// A context for a request that has just arrived.
    pub fn new() -> Self {
        RequestCtx {
            downstream: Downstream::default(),
            snapshot: None,
            routed: None,
            auth: Auth::default(),
            attempt: Attempt::default(),
            admit: Default::default(),
            record: Record::default(),
        }
    }

    /// The matched rule's filters; none before the decision or when no rule matched.
    pub fn filters(&self) -> Option<&RuleFilters> {
        self.routed.as_ref().map(|r| &r.filters)
    }

    /// The matched rule's timeouts and retry policy.
    pub fn policy(&self) -> Option<&RoutePolicy> {
        self.filters().map(|f| &*f.policy)
    }

    /// The matched rule's policy, shared, for a phase that also changes the context.
    pub fn policy_arc(&self) -> Option<Arc<RoutePolicy>> {
        self.filters().map(|f| f.policy.clone())
    }

    /// Where the request is forwarded to, once decided.
    pub fn upstream(&self) -> Option<&Upstream> {
        match &self.routed.as_ref()?.action {
            Action::Forward(upstream) => Some(upstream),
            _ => None,
        }
    }
}

impl Default for RequestCtx {
    fn default() -> Self {
        RequestCtx::new()
    }
}
