//! What a route rule asks of the request's resilience, as plain data compiled once with the
//! route: routing finds the rule and carries this along without interpreting it.

use gateway_api::experimental::httproutes::{HttpRouteRulesRetry, HttpRouteRulesTimeouts};

use crate::istio::{parse_istio_duration, HttpFaultInjection, HttpRetry};
use crate::retry::RetryPolicy;
use crate::timeouts::Timeouts;

/// A rule's timeouts and retry policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// The request and per-attempt timeouts.
    pub timeouts: Timeouts,
    /// Set when the rule retries.
    pub retry: Option<RetryPolicy>,
}

impl RoutePolicy {
    /// Compiles a Gateway API rule's `timeouts` and `retry` fields; `field` is the rule's path
    /// in its resource (`spec.rules[2]`), for the issues.
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
            retry: retry.map(|r| RetryPolicy::compile(r, &format!("{field}.retry"), issues)),
        }
    }
}

impl RoutePolicy {
    /// Compiles a VirtualService `http[]` rule's `timeout`, `retries` and `fault`; `field` is
    /// the rule's path (`spec.http[1]`), for the issues.
    ///
    /// Only `timeout` is compiled so far; the retry and fault compilers replace this body.
    pub fn from_istio(
        timeout: Option<&str>,
        _retries: Option<&HttpRetry>,
        _fault: Option<&HttpFaultInjection>,
        field: &str,
        issues: &mut Vec<PolicyIssue>,
    ) -> Self {
        let request = timeout.and_then(|t| match parse_istio_duration(t) {
            Ok(d) if d.is_zero() => None,
            Ok(d) => Some(d),
            Err(e) => {
                issues.push(PolicyIssue::new(format!("{field}.timeout"), e));
                None
            }
        });
        RoutePolicy {
            timeouts: Timeouts {
                request,
                backend_request: None,
            },
            retry: None,
        }
    }
}

/// A value of a policy field that cannot be honoured as written: the part it concerns is left
/// out, and the route's status reports it (an `Invalid` error against `field`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyIssue {
    /// The field's path in the resource, e.g. `spec.rules[0].retry.codes[1]`.
    pub field: String,
    /// What is wrong and what the proxy does instead.
    pub message: String,
}

impl PolicyIssue {
    /// An issue with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyIssue {
            field: field.into(),
            message: message.into(),
        }
    }
}
