use super::*;
use crate::testing::{draws, fields};

fn compile(json: &str) -> (Option<FaultPolicy>, Vec<PolicyIssue>) {
    let spec: HttpFaultInjection = serde_json::from_str(json).expect("HTTPFaultInjection");
    let mut issues = Vec::new();
    let policy = FaultPolicy::compile(&spec, "spec.http[0].fault", &mut issues);
    (policy, issues)
}

#[test]
fn delay_and_abort_compile_as_istiod_translates_them() {
    let (p, issues) = compile(
        r#"{"delay": {"fixedDelay": "1.5s", "percentage": {"value": 12.5}},
            "abort": {"httpStatus": 503, "percentage": {"value": 0.1}}}"#,
    );
    assert!(issues.is_empty(), "{issues:?}");
    let p = p.expect("policy");
    assert_eq!(
        p.delay,
        Some(DelayFault {
            delay: Duration::from_millis(1500),
            per_million: 125_000
        })
    );
    assert_eq!(
        p.abort,
        Some(AbortFault {
            answer: AbortAnswer::Http(503),
            per_million: 1_000
        })
    );

    let (p, issues) = compile(
        r#"{"delay": {"fixedDelay": "5s", "percent": 40}, "abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}}"#,
    );
    assert!(issues.is_empty(), "{issues:?}");
    let p = p.expect("policy");
    assert_eq!(
        p.delay.map(|d| d.per_million),
        Some(400_000),
        "the deprecated percent"
    );
    assert_eq!(p.abort.map(|a| a.answer), Some(AbortAnswer::Grpc(14)));
}

#[test]
fn a_missing_percentage_injects_nothing_and_says_so() {
    let (p, issues) = compile(r#"{"delay": {"fixedDelay": "1s"}, "abort": {"httpStatus": 418}}"#);
    let p = p.expect("policy");
    assert_eq!(p.delay.map(|d| d.per_million), Some(0));
    assert_eq!(p.abort.map(|a| a.per_million), Some(0));
    assert_eq!(
        fields(&issues),
        [
            ("spec.http[0].fault.delay.percentage", true),
            ("spec.http[0].fault.abort.percentage", true)
        ]
    );
    let mut draw = draws(1);
    assert!((0..1_000).all(|_| p.decide(&mut draw) == FaultDecision::default()));
}

#[test]
fn invalid_values_are_named_and_left_out() {
    let table = [
        (
            r#"{"delay": {"percentage": {"value": 10}}}"#,
            "spec.http[0].fault.delay.fixedDelay",
        ),
        (
            r#"{"delay": {"fixedDelay": "soon", "percent": 10}}"#,
            "spec.http[0].fault.delay.fixedDelay",
        ),
        (
            r#"{"delay": {"fixedDelay": "100us", "percent": 10}}"#,
            "spec.http[0].fault.delay.fixedDelay",
        ),
        (
            r#"{"delay": {"fixedDelay": "1s", "percent": 140}}"#,
            "spec.http[0].fault.delay.percent",
        ),
        (
            r#"{"delay": {"fixedDelay": "1s", "percentage": {"value": -1}}}"#,
            "spec.http[0].fault.delay.percentage",
        ),
        (
            r#"{"abort": {"httpStatus": 99, "percentage": {"value": 10}}}"#,
            "spec.http[0].fault.abort.httpStatus",
        ),
        (
            r#"{"abort": {"httpStatus": 600, "percentage": {"value": 10}}}"#,
            "spec.http[0].fault.abort.httpStatus",
        ),
        (
            r#"{"abort": {"grpcStatus": "BROKEN", "percentage": {"value": 10}}}"#,
            "spec.http[0].fault.abort.grpcStatus",
        ),
        (
            r#"{"abort": {"http2Error": "REFUSED_STREAM", "percentage": {"value": 10}}}"#,
            "spec.http[0].fault.abort.http2Error",
        ),
        (
            r#"{"abort": {"percentage": {"value": 10}}}"#,
            "spec.http[0].fault.abort",
        ),
        (
            r#"{"abort": {"httpStatus": 503, "percentage": {"value": 100.5}}}"#,
            "spec.http[0].fault.abort.percentage",
        ),
    ];
    for (json, field) in table {
        let (p, issues) = compile(json);
        assert_eq!(p, None, "{json}");
        assert_eq!(issues.len(), 1, "{json}: {issues:?}");
        assert_eq!(issues[0].field, field, "{json}");
        assert!(!issues[0].warning, "{json}");
    }
}

/// Whether `hits` out of `n` draws is within five standard deviations of `p`.
fn within_binomial_bounds(hits: usize, n: usize, p: f64) -> bool {
    let (n, hits) = (n as f64, hits as f64);
    let sd = (n * p * (1.0 - p)).sqrt();
    (hits - n * p).abs() <= 5.0 * sd + 1.0
}

#[test]
fn percentages_hold_over_many_seeded_draws() {
    const N: usize = 20_000;
    for (value, seed) in [
        (30.0, 1),
        (0.5, 2),
        (99.9, 3),
        (50.0, 4),
        (0.0, 5),
        (100.0, 6),
    ] {
        let (p, _) = compile(&format!(
            r#"{{"delay": {{"fixedDelay": "10ms", "percentage": {{"value": {value}}}}},
                "abort": {{"httpStatus": 500, "percentage": {{"value": {value}}}}}}}"#
        ));
        let p = p.expect("policy");
        let mut draw = draws(seed);
        let decisions: Vec<_> = (0..N).map(|_| p.decide(&mut draw)).collect();
        let delayed = decisions.iter().filter(|d| d.delay.is_some()).count();
        let aborted = decisions.iter().filter(|d| d.abort.is_some()).count();
        let both = decisions
            .iter()
            .filter(|d| d.delay.is_some() && d.abort.is_some())
            .count();
        let share = value / 100.0;
        assert!(
            within_binomial_bounds(delayed, N, share),
            "{value}%: {delayed} delayed"
        );
        assert!(
            within_binomial_bounds(aborted, N, share),
            "{value}%: {aborted} aborted"
        );
        assert!(
            within_binomial_bounds(both, N, share * share),
            "{value}%: delay and abort are drawn independently ({both})"
        );
    }
}

#[test]
fn a_decision_delays_first_then_aborts() {
    let (p, _) = compile(
        r#"{"delay": {"fixedDelay": "2s", "percentage": {"value": 100}},
            "abort": {"httpStatus": 429, "percentage": {"value": 100}}}"#,
    );
    let p = p.expect("policy");
    let mut calls = Vec::new();
    let decision = p.decide(|| {
        calls.push(calls.len());
        0
    });
    assert_eq!(
        decision,
        FaultDecision {
            delay: Some(Duration::from_secs(2)),
            abort: Some(AbortAnswer::Http(429))
        }
    );
    assert_eq!(calls, [0, 1], "one draw per part");
}
