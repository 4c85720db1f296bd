use super::*;
use crate::fault::AbortAnswer;
use std::time::Duration;

fn from_istio(
    timeout: Option<&str>,
    retries: Option<&str>,
    fault: Option<&str>,
) -> (RoutePolicy, Vec<PolicyIssue>) {
    let retries: Option<HttpRetry> = retries.map(|r| serde_json::from_str(r).expect("retries"));
    let fault: Option<HttpFaultInjection> = fault.map(|f| serde_json::from_str(f).expect("fault"));
    let mut issues = Vec::new();
    let policy = RoutePolicy::from_istio(
        timeout,
        retries.as_ref(),
        fault.as_ref(),
        "spec.http[1]",
        &mut issues,
    );
    (policy, issues)
}

#[test]
fn a_bare_virtual_service_rule_gets_istios_defaults() {
    let (p, issues) = from_istio(None, None, None);
    assert_eq!(p.timeouts, Timeouts::default(), "no timeout");
    assert_eq!(p.retry, Some(RetryPolicy::default()));
    assert_eq!(p.fault, None);
    assert!(issues.is_empty());
}

#[test]
fn virtual_service_timeout_retries_and_fault_compile_together() {
    let (p, issues) = from_istio(
        Some("3s"),
        Some(r#"{"attempts": 3, "perTryTimeout": "500ms", "retryOn": "5xx"}"#),
        Some(r#"{"abort": {"httpStatus": 500, "percentage": {"value": 30}}}"#),
    );
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(p.timeouts.request, Some(Duration::from_secs(3)));
    assert_eq!(p.timeouts.backend_request, Some(Duration::from_millis(500)));
    assert_eq!(p.retry.as_ref().map(|r| r.attempts), Some(3));
    let abort = p.fault.and_then(|f| f.abort).expect("abort");
    assert_eq!(
        (abort.answer, abort.per_million),
        (AbortAnswer::Http(500), 300_000)
    );
}

#[test]
fn disabled_retries_drop_the_per_try_timeout_and_zero_timeout_is_none() {
    let (p, issues) = from_istio(
        Some("0s"),
        Some(r#"{"attempts": 0, "perTryTimeout": "1s"}"#),
        None,
    );
    assert!(issues.is_empty());
    assert_eq!(p.timeouts, Timeouts::default());
    assert_eq!(p.retry, None);
}

#[test]
fn bad_virtual_service_values_name_their_field() {
    let (p, issues) = from_istio(
        Some("soon"),
        Some(r#"{"attempts": 2, "retryOn": "sometimes"}"#),
        Some(r#"{"abort": {"httpStatus": 1000, "percentage": {"value": 1}}}"#),
    );
    assert_eq!(p.timeouts.request, None);
    assert_eq!(p.fault, None);
    let fields: Vec<_> = issues.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "spec.http[1].timeout",
            "spec.http[1].retries.retryOn",
            "spec.http[1].fault.abort.httpStatus",
        ]
    );
}

#[test]
fn gateway_rules_retry_by_istios_default_unless_told_otherwise() {
    let mut issues = Vec::new();
    let p = RoutePolicy::from_gateway_rule(None, None, "spec.rules[0]", &mut issues);
    assert_eq!(p.retry, Some(RetryPolicy::default()));
    let off = HttpRouteRulesRetry {
        attempts: Some(0),
        ..HttpRouteRulesRetry::default()
    };
    let p = RoutePolicy::from_gateway_rule(None, Some(&off), "spec.rules[0]", &mut issues);
    assert_eq!(p.retry, None);
    assert!(issues.is_empty());
}

#[test]
fn a_port_without_routes_gets_the_inbound_default() {
    let p = RoutePolicy::default();
    assert_eq!(p.retry, Some(RetryPolicy::no_route()));
    assert_eq!(p.timeouts, Timeouts::default());
    assert_eq!(p.fault, None);
}
