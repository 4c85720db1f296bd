use super::*;

#[test]
fn durations_parse_per_gep_2257() {
    let ms = |n| Ok(Some(Duration::from_millis(n)));
    let cases: Vec<(&str, Result<Option<Duration>, ()>)> = vec![
        ("1h", ms(3_600_000)),
        ("500ms", ms(500)),
        ("10s", ms(10_000)),
        ("1m30s", ms(90_000)),
        ("1h2m3s4ms", ms(3_723_004)),
        ("0s", Ok(None)),
        ("0ms", Ok(None)),
        ("", Err(())),
        ("10", Err(())),
        ("1.5s", Err(())),
        ("-1s", Err(())),
        ("1d", Err(())),
        ("100000s", Err(())),
        ("1us", Err(())),
        ("1h1m1s1ms1h", Err(())),
    ];
    for (input, expected) in cases {
        assert_eq!(parse_duration(input).map_err(|_| ()), expected, "{input:?}");
    }
}

fn timeouts(request: Option<&str>, backend: Option<&str>) -> (Timeouts, Vec<Issue>) {
    let spec = HttpRouteRulesTimeouts {
        request: request.map(str::to_owned),
        backend_request: backend.map(str::to_owned),
    };
    let mut issues = Vec::new();
    (Timeouts::compile(&spec, "t", &mut issues), issues)
}

#[test]
fn timeouts_compile_with_field_named_issues() {
    let (t, issues) = timeouts(Some("10s"), Some("2s"));
    assert!(issues.is_empty());
    assert_eq!(t.request, Some(Duration::from_secs(10)));
    assert_eq!(t.backend_request, Some(Duration::from_secs(2)));

    let (t, issues) = timeouts(Some("0s"), None);
    assert!(issues.is_empty());
    assert_eq!(t, Timeouts::default());

    let (t, issues) = timeouts(Some("soon"), Some("1s"));
    assert_eq!(t.request, None);
    assert_eq!(t.backend_request, Some(Duration::from_secs(1)));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].field, "t.request");
    assert_eq!(issues[0].reason, IssueReason::Invalid);

    let (_, issues) = timeouts(Some("1s"), Some("2s"));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].field, "t.backendRequest");
}

#[test]
fn retry_compiles_and_decides() {
    let spec = HttpRouteRulesRetry {
        attempts: Some(2),
        backoff: Some("100ms".to_owned()),
        codes: Some(vec![500, 503, 503, 200, 700]),
    };
    let mut issues = Vec::new();
    let retry = Retry::compile(&spec, "r", &mut issues);
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
    let default = Retry::compile(&HttpRouteRulesRetry::default(), "r", &mut issues);
    assert_eq!(default.attempts, DEFAULT_RETRY_ATTEMPTS);
    assert!(default.codes.is_empty());
    assert!(issues.is_empty());
}
