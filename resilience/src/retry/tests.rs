use super::*;

#[test]
fn retry_compiles_and_decides() {
    let spec = HttpRouteRulesRetry {
        attempts: Some(2),
        backoff: Some("100ms".to_owned()),
        codes: Some(vec![500, 503, 503, 200, 700]),
    };
    let mut issues = Vec::new();
    let retry = RetryPolicy::compile(&spec, "r", &mut issues);
    assert_eq!(retry.codes, vec![500, 503]);
    assert_eq!(retry.attempts, 2);
    assert_eq!(retry.backoff, Some(Duration::from_millis(100)));
    let fields: Vec<_> = issues.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(fields, ["r.codes[3]", "r.codes[4]"]);

    assert!(retry.should_retry(500, 0));
    assert!(retry.should_retry(503, 1));
    assert!(
        !retry.should_retry(503, 2),
        "attempts are retries after the first try"
    );
    assert!(!retry.should_retry(502, 0), "only the listed codes");

    let mut issues = Vec::new();
    let default = RetryPolicy::compile(&HttpRouteRulesRetry::default(), "r", &mut issues);
    assert_eq!(default.attempts, DEFAULT_RETRY_ATTEMPTS);
    assert!(default.codes.is_empty());
    assert!(issues.is_empty());
}

fn policy(codes: &[u16], attempts: u32, backoff_ms: Option<u64>) -> RetryPolicy {
    RetryPolicy {
        codes: codes.to_vec(),
        attempts,
        backoff: backoff_ms.map(Duration::from_millis),
    }
}

#[test]
fn a_retried_status_fails_the_attempt_and_backs_off_before_the_next() {
    let p = policy(&[503], 2, Some(25));
    let mut s = RetryState::default();
    assert_eq!(
        s.before_attempt(Some(&p)),
        None,
        "the first attempt does not wait"
    );
    assert!(s.on_response(Some(&p), 503));
    assert!(s.on_attempt_error(true));
    assert_eq!(s.before_attempt(Some(&p)), Some(Duration::from_millis(25)));
    assert!(s.on_response(Some(&p), 503));
    assert!(s.on_attempt_error(true));
    assert_eq!(s.before_attempt(Some(&p)), Some(Duration::from_millis(25)));
    assert!(
        !s.on_response(Some(&p), 503),
        "two retries used: the third answer goes through"
    );
    assert_eq!(s.retries_done(), 2);
}

#[test]
fn only_listed_statuses_and_replayable_bodies_are_retried() {
    let p = policy(&[500], 3, None);
    let mut s = RetryState::default();
    assert!(!s.on_response(Some(&p), 502));
    assert!(!s.on_response(None, 500), "no policy, no retry");
    assert!(s.on_response(Some(&p), 500));
    assert!(
        !s.on_attempt_error(false),
        "a body that cannot be replayed ends it"
    );
    assert_eq!(s.before_attempt(Some(&p)), None);
}

#[test]
fn other_failures_are_final() {
    let p = policy(&[503], 3, Some(10));
    let mut s = RetryState::default();
    assert!(
        !s.on_attempt_error(true),
        "a failure without a retried status"
    );
    assert!(s.on_response(Some(&p), 503));
    assert!(
        !s.on_connect_failure(),
        "connect failures are reported, not retried"
    );
    assert_eq!(s.before_attempt(Some(&p)), None);
}
