use super::*;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn annotations_are_read_or_named_in_the_error() {
    let ok: &[(&[(&str, &str)], Misbehaviour)] = &[
        (&[], Misbehaviour::default()),
        (
            &[(FAIL_PERCENT, "50"), ("other/annotation", "x")],
            Misbehaviour {
                fail_percent: 50,
                latency_ms: None,
            },
        ),
        (
            &[(LATENCY_MS, "5-40")],
            Misbehaviour {
                fail_percent: 0,
                latency_ms: Some((5, 40)),
            },
        ),
        (
            &[(LATENCY_MS, " 20 "), (FAIL_PERCENT, "100")],
            Misbehaviour {
                fail_percent: 100,
                latency_ms: Some((20, 20)),
            },
        ),
    ];
    for (pairs, expected) in ok {
        let got = Misbehaviour::from_annotations(&annotations(pairs)).expect("valid");
        assert_eq!(got, *expected, "{pairs:?}");
        assert_eq!(got.is_healthy(), pairs.is_empty());
    }
    let bad: &[(&str, &str)] = &[
        (FAIL_PERCENT, "101"),
        (FAIL_PERCENT, "-1"),
        (FAIL_PERCENT, "half"),
        (LATENCY_MS, "40-5"),
        (LATENCY_MS, "5ms"),
        (LATENCY_MS, ""),
    ];
    for (key, value) in bad {
        let error = Misbehaviour::from_annotations(&annotations(&[(key, value)]))
            .expect_err("invalid annotation");
        let message = format!("{error:#}");
        assert!(message.contains(key), "{message}");
        assert!(message.contains(&format!("{value:?}")), "{message}");
    }
}

#[test]
fn failures_follow_the_percentage_and_come_in_runs() {
    let flaky = Misbehaviour {
        fail_percent: 50,
        latency_ms: None,
    };
    let decisions: Vec<Decision> = (0..10_000).map(|n| flaky.decide(7, n)).collect();
    let failed = decisions.iter().filter(|d| d.fail).count();
    // Binomial(10 000, 0.5): ±3 % is more than six standard deviations.
    assert!((4_700..=5_300).contains(&failed), "{failed} of 10 000");
    // Outlier detection needs consecutive failures; a strict alternation would never give any.
    let longest_run = decisions
        .split(|d| !d.fail)
        .map(<[Decision]>::len)
        .max()
        .unwrap_or(0);
    assert!(longest_run >= 5, "longest run of failures: {longest_run}");
    assert!(decisions.iter().all(|d| d.delay == Duration::ZERO));
    // Reproducible, and different per pod.
    assert_eq!(flaky.decide(7, 42), decisions[42]);
    let other: Vec<bool> = (0..64).map(|n| flaky.decide(8, n).fail).collect();
    let same: Vec<bool> = decisions[..64].iter().map(|d| d.fail).collect();
    assert_ne!(other, same);

    for (percent, expected) in [(0, 0), (100, 1_000)] {
        let m = Misbehaviour {
            fail_percent: percent,
            latency_ms: None,
        };
        let failed = (0..1_000).filter(|n| m.decide(1, *n).fail).count();
        assert_eq!(failed, expected, "{percent}%");
    }
}

#[test]
fn latency_stays_in_its_range_and_covers_it() {
    let slow = Misbehaviour {
        fail_percent: 0,
        latency_ms: Some((5, 40)),
    };
    let delays: Vec<Duration> = (0..2_000).map(|n| slow.decide(3, n).delay).collect();
    let ms = |d: &Duration| d.as_millis();
    assert_eq!(delays.iter().map(ms).min(), Some(5));
    assert_eq!(delays.iter().map(ms).max(), Some(40));
    assert!((0..2_000).all(|n| !slow.decide(3, n).fail));
    let fixed = Misbehaviour {
        fail_percent: 0,
        latency_ms: Some((20, 20)),
    };
    assert_eq!(fixed.decide(3, 9).delay, Duration::from_millis(20));
}
