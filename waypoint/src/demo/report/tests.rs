use super::*;
use crate::demo::security::Denial;
use http::HeaderValue;

#[test]
fn version_split_rounds_to_percent() {
    let mut report = LabelReport::new("x".into());
    assert_eq!(report.version_split(), "-");
    report.versions.insert("v1".into(), 9);
    report.versions.insert("v2".into(), 1);
    assert_eq!(report.version_split(), "v1 90% v2 10%");
}

fn status(code: u16) -> Outcome {
    flagged(code, None)
}

fn flagged(code: u16, flag: Option<ResponseFlag>) -> Outcome {
    Outcome::Status(StatusCode::from_u16(code).expect("a valid status"), flag)
}

fn sample(outcome: Outcome) -> Sample {
    Sample {
        label: 0,
        outcome,
        latency: Duration::from_millis(1),
        version: None,
    }
}

/// A label answered with `outcomes`.
fn label(name: &str, outcomes: Vec<Outcome>) -> LabelReport {
    let mut label = LabelReport::new(name.into());
    for outcome in outcomes {
        label.record(&sample(outcome));
    }
    label
}

/// A report with one label per entry, each answered with the given outcomes.
fn report(labels: Vec<Vec<Outcome>>) -> Report {
    let labels = labels
        .into_iter()
        .enumerate()
        .map(|(i, outcomes)| label(&format!("label-{i}"), outcomes))
        .collect();
    Report::new(labels, Duration::from_secs(1))
}

#[test]
fn only_2xx_and_intended_answers_pass() {
    let broken = || Outcome::Transport("connection reset".into());
    let fi = Some(ResponseFlag::FaultInjected);
    let uo = Some(ResponseFlag::UpstreamOverflow);
    let cases: Vec<(&str, Report, Result<(), Failure>)> = vec![
        ("nothing sent", report(vec![]), Err(Failure::NoTraffic)),
        (
            "a label with no traffic",
            report(vec![vec![]]),
            Err(Failure::NoTraffic),
        ),
        (
            "all 2xx",
            report(vec![vec![status(200), status(204)], vec![status(201)]]),
            Ok(()),
        ),
        (
            "fault aborts and breaker overflows are what the policy asks for",
            report(vec![
                vec![status(200), flagged(503, fi), flagged(500, fi)],
                vec![flagged(503, uo), status(200), flagged(429, fi)],
            ]),
            Ok(()),
        ),
        (
            "a waypoint answering 404 to everything",
            report(vec![vec![status(404), status(404)]]),
            Err(Failure::NotAll2xx {
                failed: 2,
                total: 2,
                kinds: "2 4xx".into(),
                destinations: "label-0 2".into(),
            }),
        ),
        (
            "one redirect among successes",
            report(vec![vec![status(200)], vec![status(200), status(301)]]),
            Err(Failure::NotAll2xx {
                failed: 1,
                total: 3,
                kinds: "1 3xx".into(),
                destinations: "label-1 1".into(),
            }),
        ),
        (
            "a flaky pod's 503 that retries did not hide, among intended answers",
            report(vec![vec![status(503), flagged(503, uo), flagged(503, fi)]]),
            Err(Failure::NotAll2xx {
                failed: 1,
                total: 3,
                kinds: "1 5xx".into(),
                destinations: "label-0 1".into(),
            }),
        ),
        (
            "timeouts and exhausted retries are failures, whatever their flag",
            report(vec![vec![
                flagged(504, Some(ResponseFlag::UpstreamRequestTimeout)),
                flagged(503, Some(ResponseFlag::UpstreamRetryLimitExceeded)),
                flagged(503, Some(ResponseFlag::NoHealthyUpstream)),
            ]]),
            Err(Failure::NotAll2xx {
                failed: 3,
                total: 3,
                kinds: "3 5xx".into(),
                destinations: "label-0 3".into(),
            }),
        ),
        (
            "5xx and broken connections",
            report(vec![
                vec![status(503), broken()],
                vec![status(200), broken()],
            ]),
            Err(Failure::NotAll2xx {
                failed: 3,
                total: 4,
                kinds: "1 5xx, 2 transport errors".into(),
                destinations: "label-0 2, label-1 1".into(),
            }),
        ),
    ];
    for (what, report, expected) in cases {
        assert_eq!(report.verdict(), expected, "{what}");
        let line = report.verdict_line();
        let word = if expected.is_ok() { "PASS" } else { "FAIL" };
        assert!(
            line.starts_with(&format!("verdict: {word}: ")),
            "{what}: {line}"
        );
    }
}

#[test]
fn flags_come_from_the_reason_header_or_envoys_signs() {
    let headers = |pairs: &[(&'static str, &'static str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    };
    let ok = StatusCode::OK;
    let unavailable = StatusCode::SERVICE_UNAVAILABLE;
    /// (what, status, headers, body, the flag read)
    type Case<'a> = (
        &'a str,
        StatusCode,
        HeaderMap,
        &'a [u8],
        Option<ResponseFlag>,
    );
    let cases: &[Case] = &[
        ("a plain answer", ok, headers(&[]), b"{}", None),
        (
            "a backend's own 503",
            unavailable,
            headers(&[("x-demo-pod", "discounts-v1-1")]),
            b"{\"code\":503}",
            None,
        ),
        (
            "the waypoint's reason header",
            unavailable,
            headers(&[(REASON_HEADER, "FI")]),
            b"",
            Some(ResponseFlag::FaultInjected),
        ),
        (
            "a reason header naming an exhausted retry",
            unavailable,
            headers(&[(REASON_HEADER, "URX")]),
            b"",
            Some(ResponseFlag::UpstreamRetryLimitExceeded),
        ),
        (
            "Envoy's overflow header",
            unavailable,
            headers(&[("x-envoy-overloaded", "true")]),
            b"upstream connect error or disconnect/reset before headers. reset reason: overflow",
            Some(ResponseFlag::UpstreamOverflow),
        ),
        (
            "the reason header wins",
            unavailable,
            headers(&[("x-envoy-overloaded", "true"), (REASON_HEADER, "URX")]),
            b"",
            Some(ResponseFlag::UpstreamRetryLimitExceeded),
        ),
        (
            "a timeout",
            StatusCode::GATEWAY_TIMEOUT,
            headers(&[]),
            b"upstream request timeout",
            Some(ResponseFlag::UpstreamRequestTimeout),
        ),
        (
            "Envoy's fault abort",
            unavailable,
            headers(&[]),
            b"fault filter abort",
            Some(ResponseFlag::FaultInjected),
        ),
        (
            "an unknown reason",
            unavailable,
            headers(&[(REASON_HEADER, "XX")]),
            b"",
            None,
        ),
    ];
    for (what, status, headers, body, expected) in cases {
        assert_eq!(flag_of(*status, headers, body), *expected, "{what}");
    }
}

#[test]
fn flags_are_counted_by_kind() {
    let label = label(
        "insurances",
        vec![
            flagged(503, Some(ResponseFlag::FaultInjected)),
            flagged(503, Some(ResponseFlag::FaultInjected)),
            flagged(503, Some(ResponseFlag::UpstreamOverflow)),
            flagged(504, Some(ResponseFlag::UpstreamRequestTimeout)),
            flagged(503, Some(ResponseFlag::UpstreamRetryLimitExceeded)),
            status(200),
        ],
    );
    assert_eq!(
        label.flags,
        FlagCounts {
            overflow: 1,
            timeout: 1,
            fault: 2,
            other: BTreeMap::from([("URX", 1)]),
        }
    );
    assert_eq!(label.statuses.intended, 3);
    assert_eq!(label.statuses.server_error, 2);
    assert_eq!(label.failures(), 5);
    assert_eq!(label.statuses.unexpected(), 2);
}

fn pods(counts: &[(&str, u64)]) -> Vec<(String, u64)> {
    counts.iter().map(|(p, n)| ((*p).to_owned(), *n)).collect()
}

#[test]
fn retries_are_attempts_beyond_the_requests_that_reached_a_pod() {
    let mut discounts = label("discounts", (0..10).map(|_| status(200)).collect());
    assert_eq!(discounts.retries(), None, "pods unknown");
    discounts.pods = pods(&[("discounts-v1-0", 9), ("discounts-v1-1", 5)]);
    assert_eq!(discounts.attempts(), Some(14));
    assert_eq!(discounts.retries(), Some(4));

    // Fault aborts and overflows never reach a pod.
    let mut insurances = label(
        "insurances",
        vec![
            status(200),
            status(200),
            flagged(503, Some(ResponseFlag::FaultInjected)),
            flagged(503, Some(ResponseFlag::UpstreamOverflow)),
        ],
    );
    insurances.pods = pods(&[("insurances-v1-0", 2)]);
    assert_eq!(insurances.retries(), Some(0));
    // Pods count on arrival, the client on completion: never below zero.
    insurances.pods = pods(&[("insurances-v1-0", 1)]);
    assert_eq!(insurances.retries(), Some(0));
}

#[test]
fn a_pod_that_stops_getting_traffic_counts_as_one_ejection() {
    let second = |counts: &[(&str, u64)]| {
        let mut window = LabelReport::new("discounts".into());
        window.pods = pods(counts);
        window
    };
    let seconds = [
        // (the second's counts, idle pods, ejections so far)
        (second(&[("a", 9), ("b", 9)]), Some(vec![]), 0),
        (second(&[("a", 18), ("b", 0)]), Some(vec!["b"]), 1),
        // Still out: the same ejection.
        (second(&[("a", 17), ("b", 0)]), Some(vec!["b"]), 1),
        // Too little traffic to tell: no change.
        (second(&[("a", 2), ("b", 0)]), None, 1),
        (second(&[("a", 9), ("b", 9)]), Some(vec![]), 1),
        // Ejected again.
        (second(&[("a", 0), ("b", 9)]), Some(vec!["a"]), 2),
    ];
    let mut cumulative = LabelReport::new("discounts".into());
    cumulative.pods = pods(&[("a", 0), ("b", 0)]);
    for (i, (window, idle, ejections)) in seconds.iter().enumerate() {
        assert_eq!(window.idle_pods(), *idle, "second {i}");
        for ((_, total), (_, n)) in cumulative.pods.iter_mut().zip(&window.pods) {
            *total += n;
        }
        cumulative.observe_second(window);
        assert_eq!(cumulative.ejections, *ejections, "second {i}");
    }
    // A pod no route sends to is unused, not ejected.
    let mut flights = LabelReport::new("flights".into());
    flights.pods = pods(&[("flights-v1-0", 36), ("flights-v2-0", 0)]);
    let window = flights.clone();
    assert_eq!(window.idle_pods(), Some(vec!["flights-v2-0"]));
    flights.observe_second(&window);
    assert_eq!((flights.ejections, flights.ejected()), (0, &[][..]));

    // A single pod is never judged: all its service's traffic has nowhere else to go.
    assert_eq!(second(&[("only", 0)]).idle_pods(), None);
    assert_eq!(LabelReport::new("x".into()).idle_pods(), None);
}

#[test]
fn tables_show_flags_retries_pods_and_the_verdict() {
    let mut discounts = label(
        "discounts.travel-agency",
        (0..20)
            .map(|_| status(200))
            .chain([flagged(503, Some(ResponseFlag::FaultInjected))])
            .collect(),
    );
    discounts.pods = pods(&[("discounts-v1-0", 20), ("discounts-v1-1", 0)]);
    let window = vec![discounts.clone()];
    let mut cumulative = window.clone();
    cumulative[0].pods = pods(&[("discounts-v1-0", 40), ("discounts-v1-1", 12)]);
    cumulative[0].sent = 22;
    cumulative[0].observe_second(&window[0]);

    let mut out = Vec::new();
    write_second(
        &mut out,
        "t=1s",
        &window,
        &cumulative,
        Duration::from_secs(1),
    )
    .expect("write");
    let text = String::from_utf8(out).expect("utf-8");
    let header = text.lines().nth(1).unwrap_or_default();
    for column in ["UO", "UT", "FI", "401", "403", "retries"] {
        assert!(header.contains(column), "{text}");
    }
    assert!(
        text.contains("discounts-v1-0 20, discounts-v1-1 0; no traffic to discounts-v1-1 (ejected by outlier detection); ejections so far 1"),
        "{text}"
    );

    let report = Report::new(cumulative, Duration::from_secs(1));
    let mut out = Vec::new();
    write_final(&mut out, &report).expect("write");
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.contains("21 requests, 1 without a 2xx (1 intended"),
        "{text}"
    );
    let last = text.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "verdict: PASS: every request got a 2xx but 1 fault-injection aborts (FI), 0 \
         circuit-breaker overflows (UO), 0 401s to bad tokens and 0 403s on denied requests, \
         which the configured policy intends; the waypoint retried 31 times and ejected a pod \
         1 times, keeping upstream failures from the client"
    );
}

/// What a request the security policies must refuse with `denial` came back as.
fn probe(denial: Denial, code: u16, body: &str) -> Outcome {
    let status = StatusCode::from_u16(code).expect("a valid status");
    classify(Some(denial), status, None, body.as_bytes())
}

#[test]
fn the_security_policies_refusals_pass_and_what_they_let_through_fails() {
    let unauthenticated = Denial::Unauthenticated;
    let forbidden = Denial::Forbidden;
    let intended = label(
        "travels",
        vec![
            status(200),
            probe(unauthenticated, 401, "Jwt is expired"),
            probe(unauthenticated, 401, "Jwt verification fails"),
            probe(forbidden, 403, "RBAC: access denied"),
        ],
    );
    assert_eq!(
        intended.denials,
        DenialCounts {
            unauthenticated: 2,
            forbidden: 1
        }
    );
    assert_eq!(intended.statuses.intended, 3);
    let report = Report::new(vec![intended], Duration::from_secs(1));
    assert_eq!(report.verdict(), Ok(()));
    assert!(
        report
            .verdict_line()
            .contains("2 401s to bad tokens and 1 403s on denied requests"),
        "{}",
        report.verdict_line()
    );

    let passed = "1 2xx that the security policies should have refused";
    let valid_refused = classify(
        None,
        StatusCode::UNAUTHORIZED,
        None,
        b"Jwt verification fails",
    );
    let cases: Vec<(&str, Outcome, &str)> = vec![
        (
            "a denied path reached a pod",
            probe(forbidden, 200, "{}"),
            passed,
        ),
        (
            "an expired token passed",
            probe(unauthenticated, 204, ""),
            passed,
        ),
        (
            "another 403",
            probe(forbidden, 403, "Audiences in Jwt are not allowed"),
            "1 4xx",
        ),
        (
            "a 404, not a 401",
            probe(unauthenticated, 404, "no route"),
            "1 4xx",
        ),
        ("a valid token refused", valid_refused, "1 4xx"),
    ];
    for (what, outcome, expected) in cases {
        let report = Report::new(
            vec![label("travels", vec![status(200), outcome])],
            Duration::from_secs(1),
        );
        let Err(Failure::NotAll2xx { kinds, failed, .. }) = report.verdict() else {
            panic!("{what} must fail the run");
        };
        assert_eq!((kinds.as_str(), failed), (expected, 1), "{what}");
    }
}

#[test]
fn refused_requests_are_not_taken_for_retries() {
    let mut travels = label(
        "travels",
        vec![
            status(200),
            status(200),
            probe(Denial::Forbidden, 403, "RBAC: access denied"),
        ],
    );
    travels.pods = pods(&[("travels-v1-0", 2)]);
    travels.sent = 3;
    assert_eq!(travels.retries(), Some(0));
    travels.pods = pods(&[("travels-v1-0", 3)]);
    assert_eq!(travels.retries(), Some(1));
}
