//! Expectations collected rather than asserted one by one: a scenario checks everything it
//! observed and then fails once, listing every expectation that did not hold, so a run tells
//! which features are missing, not only the first.

use std::fmt::{Debug, Display};

/// The failed expectations of one side of one scenario.
pub struct Verdict {
    who: &'static str,
    failures: Vec<String>,
}

impl Verdict {
    /// Runs `checks` for `who` (`envoy` or `waypoint`) and panics listing what failed.
    pub fn judge(who: &'static str, checks: impl FnOnce(&mut Verdict)) {
        let mut verdict = Verdict {
            who,
            failures: Vec::new(),
        };
        checks(&mut verdict);
        if !verdict.failures.is_empty() {
            panic!(
                "{who}: {} expectation(s) failed:\n- {}",
                verdict.failures.len(),
                verdict.failures.join("\n- ")
            );
        }
    }

    /// Which side is judged.
    pub fn who(&self) -> &'static str {
        self.who
    }

    /// Expects `ok`; `what` says what was expected and what was seen.
    pub fn check(&mut self, ok: bool, what: impl Display) {
        if !ok {
            self.failures.push(what.to_string());
        }
    }

    /// Expects `got == want`.
    pub fn equal<T: PartialEq + Debug>(&mut self, got: T, want: T, what: impl Display) {
        if got != want {
            self.failures
                .push(format!("{what}: got {got:?}, expected {want:?}"));
        }
    }
}
