use super::*;

/// A deterministic stream of draws (splitmix64): seeded randomness for the tests.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        hash::mix(self.0)
    }
}

/// How often each of `n` endpoints is picked over `picks` seeded draws.
fn counts(n: usize, picks: usize, input: impl Fn(u64) -> Option<usize>) -> Vec<usize> {
    let mut seed = Draws(7);
    let mut c = vec![0; n];
    for _ in 0..picks {
        c[input(seed.next()).expect("a pick")] += 1;
    }
    c
}

fn pick(b: &Balancer, n: usize, random: u64, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
    b.pick(
        n,
        &PickInput {
            eligible,
            active: &|_| 0,
            weight: &|_| 1.0,
            hash: None,
            random,
        },
    )
}

fn keys(n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| stable_hash(format!("10.0.0.{i}:80").as_bytes()))
        .collect()
}

#[test]
fn round_robin_cycles_evenly_and_skips_the_ineligible() {
    let b = Balancer::new(&Algorithm::RoundRobin, &[]);
    let c = counts(3, 300, |r| pick(&b, 3, r, &|_| true));
    assert_eq!(c, [100, 100, 100]);
    let c = counts(3, 300, |r| pick(&b, 3, r, &|i| i != 1));
    assert_eq!(c, [150, 0, 150]);
    assert_eq!(pick(&b, 3, 0, &|_| false), None);
    assert_eq!(pick(&b, 0, 0, &|_| true), None);
}

/// Binomial bounds: with p = 1/4 over 10 000 draws, each count is within 5 standard
/// deviations (±217) of 2 500.
#[test]
fn random_is_uniform_within_binomial_bounds() {
    let b = Balancer::new(&Algorithm::Random, &[]);
    let c = counts(4, 10_000, |r| pick(&b, 4, r, &|_| true));
    for n in c {
        assert!((2_283..=2_717).contains(&n), "{n}");
    }
}

#[test]
fn least_request_prefers_the_less_loaded_of_two() {
    let b = Balancer::new(&Algorithm::LeastRequest, &[]);
    let active = |i: usize| if i == 0 { 10 } else { 0 };
    let mut seed = Draws(3);
    let mut c = [0usize; 3];
    for _ in 0..10_000 {
        let input = PickInput {
            eligible: &|_| true,
            active: &active,
            weight: &|_| 1.0,
            hash: None,
            random: seed.next(),
        };
        c[b.pick(3, &input).expect("pick")] += 1;
    }
    // The loaded endpoint only wins when both draws land on it: 1/9 of the time.
    assert!((911..=1_311).contains(&c[0]), "{c:?}");
    assert!(c[1] > 4_000 && c[2] > 4_000, "{c:?}");
}

#[test]
fn consistent_hashes_keep_a_key_on_one_endpoint() {
    for algorithm in [Algorithm::RingHash(1024), Algorithm::Maglev(65537)] {
        let b = Balancer::new(&algorithm, &keys(4));
        let mut seen = std::collections::BTreeSet::new();
        for user in 0..200u64 {
            let hash = stable_hash(format!("user-{user}").as_bytes());
            let picks: Vec<_> = (0..5)
                .map(|r| {
                    b.pick(
                        4,
                        &PickInput {
                            eligible: &|_| true,
                            active: &|_| 0,
                            weight: &|_| 1.0,
                            hash: Some(hash),
                            random: r,
                        },
                    )
                })
                .collect();
            assert!(picks.windows(2).all(|w| w[0] == w[1]), "{algorithm:?}");
            seen.insert(picks[0]);
        }
        assert_eq!(
            seen.len(),
            4,
            "{algorithm:?}: every endpoint gets some keys"
        );
    }
}

#[test]
fn an_ineligible_endpoint_moves_only_its_own_keys() {
    for algorithm in [Algorithm::RingHash(1024), Algorithm::Maglev(1009)] {
        let b = Balancer::new(&algorithm, &keys(4));
        let at = |hash: u64, eligible: &dyn Fn(usize) -> bool| {
            b.pick(
                4,
                &PickInput {
                    eligible,
                    active: &|_| 0,
                    weight: &|_| 1.0,
                    hash: Some(hash),
                    random: 0,
                },
            )
        };
        for user in 0..500u64 {
            let hash = stable_hash(&user.to_le_bytes());
            let before = at(hash, &|_| true).expect("pick");
            let after = at(hash, &|i| i != 2).expect("pick");
            if before != 2 {
                assert_eq!(before, after, "{algorithm:?}");
            } else {
                assert_ne!(after, 2);
            }
        }
    }
}

#[test]
fn maglev_spreads_slots_evenly() {
    let HashTable::Maglev(table) = HashTable::maglev(&keys(3), 1009) else {
        panic!("maglev");
    };
    let mut c = [0usize; 3];
    for e in table {
        c[e as usize] += 1;
    }
    for n in c {
        assert!((330..=343).contains(&n), "{c:?}");
    }
}

#[test]
fn a_ring_has_at_least_its_minimum_size() {
    let HashTable::Ring(ring) = HashTable::ring(&keys(3), 100) else {
        panic!("ring");
    };
    assert_eq!(ring.len(), 102);
}

#[test]
fn warmup_weight_ramps_from_the_minimum_to_full() {
    let w = Warmup {
        window: Duration::from_secs(100),
        min_percent: 10.0,
        aggression: 1.0,
    };
    assert_eq!(w.weight(Duration::ZERO), 0.1);
    assert!((w.weight(Duration::from_secs(50)) - 0.5).abs() < 1e-9);
    assert_eq!(w.weight(Duration::from_secs(100)), 1.0);
    let steep = Warmup {
        aggression: 2.0,
        ..w
    };
    assert!((steep.weight(Duration::from_secs(25)) - 0.5).abs() < 1e-9);
}

#[test]
fn a_warming_endpoint_gets_its_share() {
    let b = Balancer::new(&Algorithm::RoundRobin, &[]);
    let mut seed = Draws(11);
    let mut c = [0usize; 2];
    for _ in 0..10_000 {
        let input = PickInput {
            eligible: &|_| true,
            active: &|_| 0,
            weight: &|i| if i == 1 { 0.25 } else { 1.0 },
            hash: None,
            random: seed.next(),
        };
        c[b.pick(2, &input).expect("pick")] += 1;
    }
    // 0.25 / 1.25 = 20 % for the new endpoint; 5 sd of 10 000 draws is ±200.
    assert!((1_800..=2_200).contains(&c[1]), "{c:?}");
}

#[test]
fn the_affinity_cookie_is_written_as_envoy_writes_it() {
    let cookie = AffinityCookie {
        name: "user".into(),
        path: Some("/".into()),
        ttl: Some(Duration::from_secs(60)),
    };
    let value = affinity_cookie_value("10.0.0.9");
    assert_eq!(value.len(), 16);
    assert_eq!(value, affinity_cookie_value("10.0.0.9"), "stable");
    assert_eq!(
        set_cookie_value(&cookie, "abc"),
        "user=\"abc\"; Max-Age=60; Path=/; HttpOnly"
    );
    let session = AffinityCookie {
        ttl: Some(Duration::ZERO),
        path: None,
        ..cookie
    };
    assert_eq!(set_cookie_value(&session, "abc"), "user=\"abc\"; HttpOnly");
}

#[test]
fn table_sizes_must_be_prime() {
    assert!(table::is_prime(65537) && table::is_prime(1009) && table::is_prime(2));
    assert!(!table::is_prime(1000) && !table::is_prime(1) && !table::is_prime(65536));
}
