use super::*;

fn service(name: &str, weight: u32) -> WeightedBackend {
    WeightedBackend {
        target: BackendTarget::Service {
            service: ServiceKey {
                namespace: "ns".to_owned(),
                name: name.to_owned(),
            },
            port: 8080,
            subset: None,
        },
        weight,
        request_header_modifier: None,
        response_header_modifier: None,
    }
}

fn invalid(weight: u32) -> WeightedBackend {
    WeightedBackend {
        target: BackendTarget::Invalid {
            reason: "service ns/gone not found".to_owned(),
        },
        weight,
        request_header_modifier: None,
        response_header_modifier: None,
    }
}

const SAMPLES: u64 = 1_000_000;

/// How often each backend is picked when `random` sweeps the whole u32 range evenly.
fn sweep(backends: &[WeightedBackend]) -> Vec<u64> {
    let mut counts = vec![0u64; backends.len()];
    for i in 0..SAMPLES {
        let random = u32::try_from((i << 32) / SAMPLES).expect("below 2^32");
        let picked = pick(backends, random).expect("some backend has weight");
        let position = backends
            .iter()
            .position(|b| std::ptr::eq(b, picked))
            .expect("picked from the slice");
        counts[position] += 1;
    }
    counts
}

fn share(count: u64) -> f64 {
    count as f64 / SAMPLES as f64
}

#[test]
fn ninety_ten() {
    let counts = sweep(&[service("a", 90), service("b", 10)]);
    assert!((share(counts[0]) - 0.9).abs() < 0.005, "{counts:?}");
    assert!((share(counts[1]) - 0.1).abs() < 0.005, "{counts:?}");
}

#[test]
fn zero_weights_are_never_picked() {
    let backends = [
        service("a", 0),
        service("b", 5),
        service("c", 0),
        service("d", 5),
    ];
    let counts = sweep(&backends);
    assert_eq!((counts[0], counts[2]), (0, 0), "{counts:?}");
    for random in [0, 1, u32::MAX / 2, u32::MAX - 1, u32::MAX] {
        let picked = pick(&backends, random).expect("weights are not all 0");
        assert_ne!(picked.weight, 0, "random {random}");
    }
    assert!(std::ptr::eq(
        pick(&backends, u32::MAX).unwrap(),
        &backends[3]
    ));
    assert!(std::ptr::eq(pick(&backends, 0).unwrap(), &backends[1]));
}

#[test]
fn invalid_backends_keep_their_share() {
    let counts = sweep(&[service("a", 1), invalid(3)]);
    assert!((share(counts[0]) - 0.25).abs() < 0.005, "{counts:?}");
    assert!((share(counts[1]) - 0.75).abs() < 0.005, "{counts:?}");
}

#[test]
fn nothing_to_pick() {
    assert!(pick(&[], 7).is_none());
    assert!(pick(&[service("a", 0), invalid(0)], 7).is_none());
}

#[test]
fn large_weights_do_not_overflow() {
    let backends: Vec<_> = (0..10_000).map(|_| service("a", 1_000_000)).collect();
    assert!(std::ptr::eq(
        pick(&backends, u32::MAX).unwrap(),
        &backends[9_999]
    ));
    assert!(std::ptr::eq(pick(&backends, 0).unwrap(), &backends[0]));
}
