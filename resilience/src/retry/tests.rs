use super::*;
use crate::retry_on::RetryOn::*;
use crate::testing::fields;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn status(status: u16) -> ResponseView {
    ResponseView {
        status,
        ..ResponseView::default()
    }
}

fn grpc(code: u32) -> ResponseView {
    ResponseView {
        status: 200,
        grpc_status: Some(code),
        rate_limited: false,
    }
}

fn istio(yaml: &str) -> (Option<RetryPolicy>, Option<Duration>, Vec<PolicyIssue>) {
    let spec: HttpRetry = serde_json::from_str(yaml).expect("HTTPRetry");
    let mut issues = Vec::new();
    let (policy, per_try) =
        RetryPolicy::from_istio(Some(&spec), "spec.http[0].retries", &mut issues);
    (policy, per_try, issues)
}

#[test]
fn istio_default_policy_when_nothing_is_set() {
    let mut issues = Vec::new();
    let (policy, per_try) = RetryPolicy::from_istio(None, "r", &mut issues);
    let policy = policy.expect("the default policy");
    assert_eq!(policy.attempts, 2);
    assert_eq!(
        policy.retry_on.to_string(),
        "connect-failure,refused-stream,retriable-status-codes,cancelled,unavailable"
    );
    assert_eq!(policy.codes, [503]);
    assert!(policy.avoid_previous_hosts);
    assert_eq!(policy.backoff, Backoff::with_base(ms(25)));
    assert_eq!(policy.backoff.max, ms(250));
    assert_eq!(per_try, None);
    assert!(issues.is_empty());
    assert!(policy.retries_response(&status(503)));
    assert!(!policy.retries_response(&status(500)));
    assert!(policy.retries_response(&grpc(14)));
    assert!(policy.retries_response(&grpc(1)));
    assert!(!policy.retries_response(&grpc(13)));
    assert!(policy.retries_failure(AttemptFailure::ConnectFailure));
    assert!(policy.retries_failure(AttemptFailure::RefusedStream));
    assert!(!policy.retries_failure(AttemptFailure::Reset));
    assert!(!policy.retries_failure(AttemptFailure::PerTryTimeout));
}

#[test]
fn istio_fields_override_the_default_as_convert_policy_does() {
    let (p, per_try, issues) = istio(
        r#"{"attempts": 3, "perTryTimeout": "2s", "retryOn": "gateway-error, 409,connect-failure,425",
            "backoff": "100ms", "retryIgnorePreviousHosts": false}"#,
    );
    let p = p.expect("policy");
    assert_eq!(p.attempts, 3);
    assert_eq!(per_try, Some(ms(2000)));
    assert_eq!(p.codes, [409, 425]);
    assert!(
        p.retry_on.contains(RetriableStatusCodes),
        "added for the numbers"
    );
    assert!(p.retry_on.contains(GatewayError) && p.retry_on.contains(ConnectFailure));
    assert!(
        !p.retry_on.contains(Unavailable),
        "retryOn replaces the default conditions"
    );
    assert_eq!(
        p.backoff,
        Backoff {
            base: ms(100),
            max: ms(1000)
        }
    );
    assert!(!p.avoid_previous_hosts);
    assert!(issues.is_empty(), "{issues:?}");

    let (p, _, _) = istio(r#"{"attempts": 4}"#);
    let p = p.expect("policy");
    assert_eq!(p.attempts, 4);
    assert_eq!(p.codes, [503], "no retryOn keeps the default conditions");
    assert!(p.avoid_previous_hosts);
}

#[test]
fn zero_or_missing_attempts_turn_retries_off() {
    for (yaml, warned) in [
        (r#"{"attempts": 0, "retryOn": "5xx"}"#, false),
        (r#"{"retryOn": "5xx"}"#, true),
        ("{}", false),
    ] {
        let (p, per_try, issues) = istio(yaml);
        assert_eq!((p, per_try), (None, None), "{yaml}");
        let want: &[_] = if warned {
            &[("spec.http[0].retries.attempts", true)]
        } else {
            &[]
        };
        assert_eq!(fields(&issues), want, "{yaml}");
    }
    let (p, _, issues) = istio(r#"{"attempts": -1}"#);
    assert_eq!(p, None);
    assert_eq!(issues[0].field, "spec.http[0].retries.attempts");
    assert!(!issues[0].warning);
}

#[test]
fn bad_istio_values_are_named_issues() {
    let (p, per_try, issues) = istio(
        r#"{"attempts": 40, "retryOn": "5xx,sometimes,999", "perTryTimeout": "2 s",
            "backoff": "x", "retryRemoteLocalities": true}"#,
    );
    let p = p.expect("policy");
    assert_eq!(p.attempts, 15, "capped at what pingora's loop allows");
    assert_eq!(per_try, None);
    assert_eq!(p.backoff, Backoff::default());
    assert_eq!(
        fields(&issues),
        [
            ("spec.http[0].retries.attempts", true),
            ("spec.http[0].retries.retryOn", false),
            ("spec.http[0].retries.retryOn", false),
            ("spec.http[0].retries.retryRemoteLocalities", true),
            ("spec.http[0].retries.backoff", false),
            ("spec.http[0].retries.perTryTimeout", false),
        ]
    );
}

/// retryOn, the responses it retries, those it does not, the failures it retries.
type Row<'a> = (
    &'a str,
    &'a [ResponseView],
    &'a [ResponseView],
    &'a [AttemptFailure],
);

#[test]
fn every_condition_decides_as_envoy_does() {
    use AttemptFailure as F;
    // (retryOn, responses retried, responses not retried, failures retried)
    let table: [Row<'_>; 12] = [
        (
            "5xx",
            &[status(500), status(503), status(599)],
            &[status(409), status(200)],
            &[
                F::ConnectFailure,
                F::RefusedStream,
                F::Reset,
                F::PerTryTimeout,
            ],
        ),
        (
            "gateway-error",
            &[status(502), status(503), status(504)],
            &[status(500), status(501)],
            &[
                F::ConnectFailure,
                F::RefusedStream,
                F::Reset,
                F::PerTryTimeout,
            ],
        ),
        (
            "reset",
            &[],
            &[status(503)],
            &[
                F::ConnectFailure,
                F::RefusedStream,
                F::Reset,
                F::PerTryTimeout,
            ],
        ),
        (
            "reset-before-request",
            &[],
            &[status(503)],
            &[F::ConnectFailure, F::RefusedStream],
        ),
        ("connect-failure", &[], &[status(503)], &[F::ConnectFailure]),
        ("refused-stream", &[], &[status(503)], &[F::RefusedStream]),
        (
            "retriable-4xx",
            &[status(409)],
            &[status(400), status(429)],
            &[],
        ),
        (
            "retriable-status-codes,429",
            &[status(429)],
            &[status(503)],
            &[],
        ),
        (
            "cancelled,deadline-exceeded",
            &[grpc(1), grpc(4)],
            &[grpc(14), status(503)],
            &[],
        ),
        (
            "resource-exhausted,internal,unavailable",
            &[grpc(8), grpc(13), grpc(14)],
            &[grpc(2)],
            &[],
        ),
        (
            "envoy-ratelimited",
            &[ResponseView {
                status: 429,
                grpc_status: None,
                rate_limited: true,
            }],
            &[status(429)],
            &[],
        ),
        ("retriable-headers", &[], &[status(503)], &[]),
    ];
    let all = [
        F::ConnectFailure,
        F::RefusedStream,
        F::Reset,
        F::PerTryTimeout,
    ];
    for (retry_on, yes, no, failures) in table {
        let (p, _, issues) = istio(&format!(r#"{{"attempts": 1, "retryOn": "{retry_on}"}}"#));
        assert!(issues.iter().all(|i| i.warning), "{retry_on}: {issues:?}");
        let p = p.expect("policy");
        for r in yes {
            assert!(p.retries_response(r), "{retry_on} retries {r:?}");
        }
        for r in no {
            assert!(!p.retries_response(r), "{retry_on} does not retry {r:?}");
        }
        for f in all {
            assert_eq!(
                p.retries_failure(f),
                failures.contains(&f),
                "{retry_on} on {f:?}"
            );
        }
    }
}

#[test]
fn gateway_retry_compiles_as_istiod_converts_it() {
    let spec = HttpRouteRulesRetry {
        attempts: Some(3),
        backoff: Some("100ms".to_owned()),
        codes: Some(vec![500, 503, 503, 200, 700]),
    };
    let mut issues = Vec::new();
    let retry = RetryPolicy::compile(&spec, "r", &mut issues).expect("policy");
    assert_eq!(retry.codes, vec![500, 503]);
    assert_eq!(retry.attempts, 3);
    assert_eq!(retry.backoff, Backoff::with_base(ms(100)));
    assert_eq!(
        retry.retry_on.to_string(),
        "connect-failure,refused-stream,retriable-status-codes,cancelled,unavailable"
    );
    let fields: Vec<_> = issues.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(fields, ["r.codes[3]", "r.codes[4]"]);

    let mut issues = Vec::new();
    let default =
        RetryPolicy::compile(&HttpRouteRulesRetry::default(), "r", &mut issues).expect("policy");
    assert_eq!(default.attempts, DEFAULT_RETRY_ATTEMPTS);
    assert!(
        default.codes.is_empty(),
        "no codes: statuses are not retried"
    );
    assert!(!default.retry_on.contains(RetriableStatusCodes));
    assert!(issues.is_empty());

    let off = HttpRouteRulesRetry {
        attempts: Some(0),
        ..HttpRouteRulesRetry::default()
    };
    assert_eq!(RetryPolicy::compile(&off, "r", &mut issues), None);
}

#[test]
fn a_service_without_routes_retries_resets_before_the_request() {
    let p = RetryPolicy::no_route();
    assert_eq!(p.attempts, 2);
    assert!(!p.avoid_previous_hosts);
    assert!(p.retries_failure(AttemptFailure::ConnectFailure));
    assert!(!p.retries_failure(AttemptFailure::Reset));
    assert!(!p.retries_response(&status(503)));
}

#[test]
fn retries_are_counted_and_the_last_failure_marks_the_limit() {
    let p = RetryPolicy::default();
    let mut s = RetryState::default();
    assert_eq!(
        s.before_attempt(Some(&p), 7),
        None,
        "the first attempt does not wait"
    );
    assert!(s.on_response(Some(&p), &status(503)));
    assert!(s.confirm(true));
    assert_eq!(
        s.before_attempt(Some(&p), 7_000),
        Some(ms(7)),
        "retry 1 waits draw % 25ms"
    );
    assert!(s.on_failure(Some(&p), AttemptFailure::ConnectFailure));
    assert!(s.confirm(true));
    assert_eq!(
        s.before_attempt(Some(&p), 60_000),
        Some(ms(60)),
        "retry 2: draw % 75ms"
    );
    assert!(!s.limit_exceeded());
    assert!(!s.on_response(Some(&p), &status(503)), "two retries used");
    assert!(s.limit_exceeded(), "URX");
    assert_eq!(s.retries_done(), 2);
}

#[test]
fn unretried_outcomes_and_unreplayable_bodies_end_the_request() {
    let p = RetryPolicy::default();
    let mut s = RetryState::default();
    assert!(!s.on_response(Some(&p), &status(500)));
    assert!(!s.on_failure(Some(&p), AttemptFailure::Reset));
    assert!(!s.on_response(None, &status(503)), "no policy, no retry");
    assert!(!s.confirm(true), "nothing pending");
    assert!(s.on_response(Some(&p), &status(503)));
    assert!(!s.confirm(false), "a body that cannot be replayed ends it");
    assert_eq!(s.retries_done(), 0);
    assert!(!s.limit_exceeded(), "not a retry limit");
    assert_eq!(s.before_attempt(Some(&p), 1), None);
}
