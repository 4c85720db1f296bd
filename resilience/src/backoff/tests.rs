use super::*;
use crate::testing::draws;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn envoy_defaults_25ms_base_and_ten_times_cap() {
    let b = Backoff::default();
    assert_eq!((b.base, b.max), (ms(25), ms(250)));
    assert_eq!(Backoff::with_base(ms(100)).max, ms(1000));
}

#[test]
fn each_retry_doubles_the_jitter_range_up_to_the_cap() {
    let b = Backoff::default();
    // (retry, the range [0, upper) its waits fall in)
    for (retry, upper) in [
        (1, ms(25)),
        (2, ms(75)),
        (3, ms(175)),
        (4, ms(250)),
        (30, ms(250)),
    ] {
        let mut draw = draws(u64::from(retry));
        let waits: Vec<_> = (0..2_000).map(|_| b.delay(retry, draw())).collect();
        let longest = waits.iter().max().copied().unwrap_or_default();
        assert!(longest <= upper, "retry {retry}: {longest:?} > {upper:?}");
        assert!(
            longest >= upper * 9 / 10,
            "retry {retry}: full jitter reaches near {upper:?}"
        );
        assert!(
            waits.iter().any(|w| *w < upper / 10),
            "retry {retry}: and near zero"
        );
    }
}

#[test]
fn a_draw_decides_the_wait_exactly() {
    let b = Backoff::default();
    assert_eq!(b.delay(1, 0), Duration::ZERO);
    assert_eq!(b.delay(1, 24_999), Duration::from_micros(24_999));
    assert_eq!(b.delay(1, 25_000), Duration::ZERO);
    assert_eq!(b.delay(2, 74_999), Duration::from_micros(74_999));
    assert_eq!(
        b.delay(5, 374_999),
        ms(250),
        "the range stops at 375ms, capped at 250ms"
    );
    assert_eq!(b.delay(9, 374_999), ms(250));
    assert_eq!(
        Backoff::with_base(Duration::ZERO).delay(3, 99),
        Duration::ZERO
    );
}
