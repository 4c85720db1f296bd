//! Test support shared by the crate's table tests: seeded randomness and issue summaries.

use crate::policy::PolicyIssue;

/// A seeded generator (splitmix64), so the draws are the same on every run.
pub fn draws(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Each issue's field and whether it is a warning, in order.
pub fn fields(issues: &[PolicyIssue]) -> Vec<(&str, bool)> {
    issues
        .iter()
        .map(|i| (i.field.as_str(), i.warning))
        .collect()
}
