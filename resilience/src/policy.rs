//! What a route rule asks of the request's resilience, as plain data compiled once with the
//! route: routing finds the rule and carries this along without interpreting it.

use gateway_api::experimental::httproutes::{HttpRouteRulesRetry, HttpRouteRulesTimeouts};

use crate::fault::FaultPolicy;
use crate::istio::{parse_istio_duration, HttpFaultInjection, HttpRetry};
use crate::retry::RetryPolicy;
use crate::timeouts::Timeouts;

/// A rule's timeouts, retry policy and fault injection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutePolicy {
    /// The request and per-attempt timeouts.
    pub timeouts: Timeouts,
    /// Set when the rule retries.
    pub retry: Option<RetryPolicy>,
    /// Set when the rule injects faults.
    pub fault: Option<FaultPolicy>,
}

impl Default for RoutePolicy {
    /// The policy of a service port no route governs. istiod gives such a port on a waypoint
    /// its inbound default route: no timeout, and 2 retries of a request reset before it
    /// reached the endpoint.
    fn default() -> Self {
        RoutePolicy {
            timeouts: Timeouts::default(),
            retry: Some(RetryPolicy::no_route()),
            fault: None,
        }
    }
}

impl RoutePolicy {
    /// Compiles a Gateway API rule's `timeouts` and `retry` fields as istiod converts them:
    /// no `retry` is Istio's default retry policy; with a `retry`, `backendRequest` is its
    /// per-try timeout. `field` is the rule's path in its resource (`spec.rules[2]`), for the
    /// issues.
    pub fn from_gateway_rule(
        timeouts: Option<&HttpRouteRulesTimeouts>,
        retry: Option<&HttpRouteRulesRetry>,
        field: &str,
        issues: &mut Vec<PolicyIssue>,
    ) -> Self {
        RoutePolicy {
            timeouts: timeouts
                .map(|t| Timeouts::compile(t, &format!("{field}.timeouts"), issues))
                .unwrap_or_default(),
            retry: match retry {
                None => Some(RetryPolicy::default()),
                Some(r) => RetryPolicy::compile(r, &format!("{field}.retry"), issues),
            },
            fault: None,
        }
    }

    /// Compiles a VirtualService `http[]` rule's `timeout`, `retries` and `fault` as istiod
    /// translates them; `field` is the rule's path (`spec.http[1]`), for the issues.
    pub fn from_istio(
        timeout: Option<&str>,
        retries: Option<&HttpRetry>,
        fault: Option<&HttpFaultInjection>,
        field: &str,
        issues: &mut Vec<PolicyIssue>,
    ) -> Self {
        // Istio's VirtualService has no timeout by default, and 0 disables it.
        let request = timeout.and_then(|t| match parse_istio_duration(t) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(e) => {
                issues.push(PolicyIssue::new(
                    format!("{field}.timeout"),
                    format!("{e}; the route has no timeout"),
                ));
                None
            }
        });
        let (retry, per_try) =
            RetryPolicy::from_istio(retries, &format!("{field}.retries"), issues);
        RoutePolicy {
            timeouts: Timeouts {
                request,
                backend_request: per_try,
            },
            retry,
            fault: fault.and_then(|f| FaultPolicy::compile(f, &format!("{field}.fault"), issues)),
        }
    }
}

/// A value of a policy field that cannot be honoured as written: the part it concerns is left
/// out (or, for a warning, honoured as far as the waypoint can), and the resource's status
/// reports it against `field`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyIssue {
    /// The field's path in the resource, e.g. `spec.rules[0].retry.codes[1]`.
    pub field: String,
    /// What is wrong and what the proxy does instead.
    pub message: String,
    /// The value is valid but not (fully) applied, e.g. `retryRemoteLocalities` on a proxy
    /// without localities; an error otherwise.
    pub warning: bool,
}

impl PolicyIssue {
    /// An error with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyIssue {
            field: field.into(),
            message: message.into(),
            warning: false,
        }
    }

    /// A warning about `field`.
    pub fn warning(field: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyIssue {
            warning: true,
            ..PolicyIssue::new(field, message)
        }
    }
}

#[cfg(test)]
mod tests;
