use super::*;

const S: fn(u64) -> Duration = Duration::from_secs;

fn policy(consecutive_5xx: u32, max_ejection_percent: u32) -> OutlierPolicy {
    OutlierPolicy {
        consecutive_5xx,
        interval: S(1),
        base_ejection: S(2),
        max_ejection_percent,
        ..OutlierPolicy::default()
    }
}

#[test]
fn consecutive_5xx_eject_at_once_and_the_endpoint_returns_after_its_time() {
    let p = policy(3, 100);
    let d = OutlierDetector::new();
    let ep = EndpointHealth::new();
    let t0 = S(100);
    assert_eq!(d.record(&p, &ep, Outcome::Status(503), 3, t0), None);
    assert_eq!(d.record(&p, &ep, Outcome::Status(500), 3, t0), None);
    let ejected = d.record(&p, &ep, Outcome::Status(503), 3, t0);
    assert!(matches!(
        ejected,
        Some(Transition::Ejected { count: 1, .. })
    ));
    assert_eq!(d.ejected_count(), 1);
    assert_eq!(
        d.available(&ep, t0 + Duration::from_millis(1999)),
        (false, None)
    );
    assert_eq!(
        d.available(&ep, t0 + S(2)),
        (true, Some(Transition::Returned))
    );
    assert_eq!(
        d.available(&ep, t0 + S(2)),
        (true, None),
        "the return is told once"
    );
    assert_eq!(d.ejected_count(), 0);
}

#[test]
fn a_success_resets_the_count() {
    let p = policy(2, 100);
    let d = OutlierDetector::new();
    let ep = EndpointHealth::new();
    for status in [503, 200, 503, 404, 503] {
        assert_eq!(d.record(&p, &ep, Outcome::Status(status), 3, S(1)), None);
    }
    assert!(d.record(&p, &ep, Outcome::Status(502), 3, S(1)).is_some());
}

#[test]
fn zero_disables_and_gateway_errors_count_only_502_to_504() {
    let d = OutlierDetector::new();
    let off = policy(0, 100);
    let ep = EndpointHealth::new();
    for _ in 0..50 {
        assert_eq!(d.record(&off, &ep, Outcome::Status(500), 3, S(1)), None);
    }
    let gateway = OutlierPolicy {
        consecutive_gateway: 2,
        ..policy(0, 100)
    };
    let ep = EndpointHealth::new();
    assert_eq!(d.record(&gateway, &ep, Outcome::Status(500), 3, S(1)), None);
    assert_eq!(d.record(&gateway, &ep, Outcome::Status(504), 3, S(1)), None);
    assert!(matches!(
        d.record(&gateway, &ep, Outcome::Status(502), 3, S(1)),
        Some(Transition::Ejected {
            reason: "consecutive gateway errors",
            ..
        })
    ));
}

#[test]
fn local_origin_failures_count_as_5xx_unless_split() {
    let d = OutlierDetector::new();
    let p = policy(2, 100);
    let ep = EndpointHealth::new();
    assert_eq!(d.record(&p, &ep, Outcome::ConnectFailed, 3, S(1)), None);
    assert!(d.record(&p, &ep, Outcome::Timeout, 3, S(1)).is_some());
    let split = OutlierPolicy {
        split_local_origin: true,
        consecutive_local_origin: 2,
        ..policy(5, 100)
    };
    let ep = EndpointHealth::new();
    assert_eq!(d.record(&split, &ep, Outcome::Reset, 3, S(1)), None);
    assert_eq!(d.record(&split, &ep, Outcome::Status(200), 3, S(1)), None);
    assert_eq!(d.record(&split, &ep, Outcome::Reset, 3, S(1)), None);
    assert!(matches!(
        d.record(&split, &ep, Outcome::ConnectFailed, 3, S(1)),
        Some(Transition::Ejected {
            reason: "consecutive local-origin failures",
            ..
        })
    ));
}

#[test]
fn max_ejection_percent_caps_ejections_but_one_is_always_allowed() {
    let d = OutlierDetector::new();
    // 10 % of 3 endpoints is less than one: Envoy still ejects one, not two.
    let p = policy(1, 10);
    let eps: Vec<_> = (0..3).map(|_| EndpointHealth::new()).collect();
    assert!(d
        .record(&p, &eps[0], Outcome::Status(503), 3, S(1))
        .is_some());
    assert_eq!(d.record(&p, &eps[1], Outcome::Status(503), 3, S(1)), None);
    let d = OutlierDetector::new();
    let p = policy(1, 50);
    let eps: Vec<_> = (0..4).map(|_| EndpointHealth::new()).collect();
    let ejected = eps
        .iter()
        .filter(|e| d.record(&p, e, Outcome::Status(503), 4, S(1)).is_some())
        .count();
    assert_eq!(ejected, 2);
}

#[test]
fn ejection_time_grows_with_ejections_in_a_row_and_decays_when_healthy() {
    let d = OutlierDetector::new();
    let p = policy(1, 100);
    let ep = EndpointHealth::new();
    let eject = |at| match d.record(&p, &ep, Outcome::Status(503), 3, at) {
        Some(Transition::Ejected { until, count, .. }) => (until - at, count),
        other => panic!("expected an ejection, got {other:?}"),
    };
    assert_eq!(eject(S(10)), (S(2), 1));
    assert!(d.available(&ep, S(12)).0);
    // Failing again at once: the second ejection in a row lasts twice the base.
    assert_eq!(eject(S(12)), (S(4), 2));
    assert!(d.available(&ep, S(16)).0);
    // Healthy for five intervals: the multiplier has decayed back to the start.
    assert_eq!(eject(S(21)), (S(2), 1));
}

#[test]
fn ejection_time_is_capped_at_envoys_maximum() {
    let p = OutlierPolicy {
        base_ejection: S(200),
        ..OutlierPolicy::default()
    };
    assert_eq!(p.ejection_time(1), S(200));
    assert_eq!(p.ejection_time(2), S(300));
    assert_eq!(p.ejection_time(9), S(300));
}

#[test]
fn panic_below_min_health_percent() {
    let d = OutlierDetector::new();
    let p = OutlierPolicy {
        min_health_percent: 50,
        ..OutlierPolicy::default()
    };
    assert!(!d.panic(&p, 2, 4));
    assert!(d.panic(&p, 1, 4));
    assert!(!d.panic(&OutlierPolicy::default(), 0, 4), "0 never panics");
}

#[test]
fn an_endpoint_leaving_while_ejected_frees_its_place() {
    let d = OutlierDetector::new();
    let p = policy(1, 10);
    let ep = EndpointHealth::new();
    assert!(d.record(&p, &ep, Outcome::Status(503), 3, S(1)).is_some());
    d.forget(&ep);
    assert_eq!(d.ejected_count(), 0);
    let other = EndpointHealth::new();
    assert!(d
        .record(&p, &other, Outcome::Status(503), 3, S(1))
        .is_some());
}
