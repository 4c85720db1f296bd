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

fn timeouts(request: Option<&str>, backend: Option<&str>) -> (Timeouts, Vec<PolicyIssue>) {
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

    let (_, issues) = timeouts(Some("1s"), Some("2s"));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].field, "t.backendRequest");
}

#[test]
fn attempt_deadline_is_the_tighter_of_both_timeouts() {
    let s = Duration::from_secs;
    let t = |request, backend_request| Timeouts {
        request,
        backend_request,
    };
    let cases = [
        (t(None, None), s(0), None),
        (t(Some(s(10)), None), s(4), Some(s(6))),
        (t(None, Some(s(2))), s(4), Some(s(2))),
        (t(Some(s(10)), Some(s(2))), s(4), Some(s(2))),
        (t(Some(s(10)), Some(s(8))), s(4), Some(s(6))),
        (t(Some(s(10)), Some(s(2))), s(11), Some(s(0))),
    ];
    for (timeouts, elapsed, expected) in cases {
        assert_eq!(
            timeouts.attempt_deadline(elapsed),
            expected,
            "{timeouts:?} at {elapsed:?}"
        );
    }
}
