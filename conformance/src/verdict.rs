//! What a test concluded: each unit's outcome, and the test's verdict drawn from them.
//!
//! A test passes only when every one of its units ran and passed: a test with some units
//! skipped is `PARTIAL`, so a table row, a profile line or a report entry never claims more
//! than was checked.

use std::collections::BTreeMap;
use std::fmt;

/// The outcome of one unit: a case, a status check or a bespoke check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The unit ran and its expectation held.
    Pass,
    /// The unit ran (or could not be set up) and its expectation did not hold; why.
    Fail(String),
    /// The unit did not run; why.
    Skip(String),
}

/// One named unit of a test and its outcome.
#[derive(Debug, Clone)]
pub struct Unit {
    /// `case[3] GET /foo`, `status[0] routesAccepted`, `websocket`, ...
    pub name: String,
    /// What the unit concluded.
    pub outcome: Outcome,
}

/// A test's verdict from its units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TestVerdict {
    /// Every unit ran and passed.
    Pass,
    /// Nothing failed and something passed, but some units did not run.
    Partial,
    /// At least one unit failed.
    Fail,
    /// No unit ran.
    Skip,
}

impl TestVerdict {
    /// Every verdict, in the order tables list them.
    pub const ALL: [TestVerdict; 4] = [
        TestVerdict::Pass,
        TestVerdict::Partial,
        TestVerdict::Fail,
        TestVerdict::Skip,
    ];

    /// `PASS`, `PARTIAL`, `FAIL` or `SKIP`.
    pub fn as_str(self) -> &'static str {
        match self {
            TestVerdict::Pass => "PASS",
            TestVerdict::Partial => "PARTIAL",
            TestVerdict::Fail => "FAIL",
            TestVerdict::Skip => "SKIP",
        }
    }
}

impl fmt::Display for TestVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One test's result: its identity in the case file and its units' outcomes.
#[derive(Debug, Clone)]
pub struct TestResult {
    /// The upstream test name.
    pub name: String,
    /// Profile name → `core` | `extended`.
    pub profiles: BTreeMap<String, String>,
    /// The features the test needs.
    pub features: Vec<String>,
    /// Every unit of the test, in case-file order.
    pub units: Vec<Unit>,
}

impl TestResult {
    /// How many units have an outcome `want` accepts.
    pub fn count(&self, want: fn(&Outcome) -> bool) -> usize {
        self.units.iter().filter(|u| want(&u.outcome)).count()
    }

    /// Units that passed.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Pass))
    }

    /// Units that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Fail(_)))
    }

    /// Units that did not run.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skip(_)))
    }

    /// Failed if any unit failed; skipped if nothing passed; partial if some units did not
    /// run; passed only when every unit ran and passed.
    pub fn verdict(&self) -> TestVerdict {
        if self.failed() > 0 {
            TestVerdict::Fail
        } else if self.passed() == 0 {
            TestVerdict::Skip
        } else if self.skipped() > 0 {
            TestVerdict::Partial
        } else {
            TestVerdict::Pass
        }
    }

    /// The skipped units with their reasons, for a `PARTIAL` test's listing.
    pub fn skipped_units(&self) -> impl Iterator<Item = (&str, &str)> {
        self.units.iter().filter_map(|u| match &u.outcome {
            Outcome::Skip(why) => Some((u.name.as_str(), why.as_str())),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(outcomes: &[Outcome]) -> TestResult {
        TestResult {
            name: "T".into(),
            profiles: BTreeMap::new(),
            features: Vec::new(),
            units: outcomes
                .iter()
                .map(|outcome| Unit {
                    name: "u".into(),
                    outcome: outcome.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_test_passes_only_when_every_unit_ran_and_passed() {
        let pass = Outcome::Pass;
        let fail = Outcome::Fail("no".into());
        let skip = Outcome::Skip("cannot".into());
        for (outcomes, want) in [
            (vec![pass.clone()], TestVerdict::Pass),
            (vec![pass.clone(), pass.clone()], TestVerdict::Pass),
            (vec![pass.clone(), skip.clone()], TestVerdict::Partial),
            (
                vec![skip.clone(), pass.clone(), skip.clone()],
                TestVerdict::Partial,
            ),
            (vec![pass.clone(), fail.clone()], TestVerdict::Fail),
            (vec![skip.clone(), fail.clone()], TestVerdict::Fail),
            (vec![fail.clone()], TestVerdict::Fail),
            (vec![skip.clone()], TestVerdict::Skip),
            (vec![], TestVerdict::Skip),
        ] {
            assert_eq!(result(&outcomes).verdict(), want, "{outcomes:?}");
        }
    }

    #[test]
    fn a_partial_test_lists_its_skipped_units() {
        let r = result(&[Outcome::Pass, Outcome::Skip("needs TLS".into())]);
        assert_eq!(r.skipped_units().collect::<Vec<_>>(), [("u", "needs TLS")]);
    }
}
