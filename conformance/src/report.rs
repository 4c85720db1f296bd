//! What a run prints (failure details, a table per test and per profile, the final count
//! line) and the Gateway API `ConformanceReport` it writes.

use crate::features::FeatureSet;
use crate::verdict::{Outcome, TestResult, TestVerdict};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

pub const GATEWAY_API_VERSION: &str = "v1.6.1";

/// The human-readable summary; its last line is `conformance: N passed, N failed, N skipped`.
pub fn render(results: &[TestResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nunit = one traffic case, one statusChecks entry, or one bespoke check (weightedDistribution, mirrorDistribution, headerMatchesBackend, websocket)"
    );
    let failures: Vec<_> = results
        .iter()
        .flat_map(|t| t.units.iter().map(move |u| (t, u)))
        .filter(|(_, u)| matches!(u.outcome, Outcome::Fail(_)))
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nFAILURES");
        for (t, u) in &failures {
            if let Outcome::Fail(why) = &u.outcome {
                let _ = writeln!(out, "  {} / {}: {why}", t.name, u.name);
            }
        }
    }
    render_partials(&mut out, results);
    render_skips(&mut out, results);
    render_tests(&mut out, results);
    render_profiles(&mut out, results);
    let by_verdict = TestVerdict::ALL
        .iter()
        .map(|v| format!("{} {v}", count_verdict(results.iter(), *v)))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "\ntests: {by_verdict}");
    let passed: usize = results.iter().map(TestResult::passed).sum();
    let failed: usize = results.iter().map(TestResult::failed).sum();
    let skipped: usize = results.iter().map(TestResult::skipped).sum();
    let _ = write!(
        out,
        "conformance: {passed} passed, {failed} failed, {skipped} skipped"
    );
    out
}

fn count_verdict<'r>(tests: impl Iterator<Item = &'r TestResult>, v: TestVerdict) -> usize {
    tests.filter(|t| t.verdict() == v).count()
}

/// Each PARTIAL test with the units it did not run and why, so that a reader sees what its
/// "nothing failed" does not cover.
fn render_partials(out: &mut String, results: &[TestResult]) {
    let partial: Vec<&TestResult> = results
        .iter()
        .filter(|t| t.verdict() == TestVerdict::Partial)
        .collect();
    if partial.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nPARTIAL (nothing failed, but these units did not run)"
    );
    for t in partial {
        let _ = writeln!(
            out,
            "  {}: {} of {} unit(s) ran",
            t.name,
            t.passed(),
            t.units.len()
        );
        for (unit, why) in t.skipped_units() {
            let _ = writeln!(out, "      {unit}: {why}");
        }
    }
}

fn render_skips(out: &mut String, results: &[TestResult]) {
    let mut skips: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in results {
        for u in &t.units {
            if let Outcome::Skip(why) = &u.outcome {
                skips
                    .entry(why.clone())
                    .or_default()
                    .push(format!("{} / {}", t.name, u.name));
            }
        }
    }
    if skips.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nSKIPPED (by reason)");
    for (why, units) in &skips {
        let tests: BTreeSet<&str> = units.iter().filter_map(|u| u.split(" / ").next()).collect();
        let _ = writeln!(out, "  {} unit(s): {why}", units.len());
        let _ = writeln!(
            out,
            "      in {}",
            tests.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
}

fn render_tests(out: &mut String, results: &[TestResult]) {
    let width = results
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "\n{:width$}  {:32}  {:>6} {:>6} {:>7}  result",
        "test", "profiles", "passed", "failed", "skipped"
    );
    for t in results {
        let profiles: Vec<String> = t.profiles.iter().map(|(p, l)| format!("{p}:{l}")).collect();
        let _ = writeln!(
            out,
            "{:width$}  {:32}  {:>6} {:>6} {:>7}  {}",
            t.name,
            if profiles.is_empty() {
                "-".to_owned()
            } else {
                profiles.join(",")
            },
            t.passed(),
            t.failed(),
            t.skipped(),
            t.verdict()
        );
    }
}

/// Tests per profile and level by verdict: a PARTIAL test is not a passed one.
fn render_profiles(out: &mut String, results: &[TestResult]) {
    let _ = writeln!(
        out,
        "\n{:14} {:9} {:>6} {:>7} {:>6} {:>6}   (tests)",
        "profile", "level", "PASS", "PARTIAL", "FAIL", "SKIP"
    );
    for (profile, levels) in profile_tests(results) {
        for (level, tests) in levels {
            let n = |v| count_verdict(tests.iter().copied(), v);
            let _ = writeln!(
                out,
                "{:14} {:9} {:>6} {:>7} {:>6} {:>6}",
                profile,
                level,
                n(TestVerdict::Pass),
                n(TestVerdict::Partial),
                n(TestVerdict::Fail),
                n(TestVerdict::Skip)
            );
        }
    }
}

/// Why a run must not count as a success although no unit failed: nothing passed, or fewer
/// tests ran (any verdict but SKIP) than the `declared` runnable ones. `None` for a clean run.
pub fn shortfall(results: &[TestResult], declared: usize) -> Option<String> {
    let failed: usize = results.iter().map(TestResult::failed).sum();
    let passed: usize = results.iter().map(TestResult::passed).sum();
    let ran = results
        .iter()
        .filter(|t| t.verdict() != TestVerdict::Skip)
        .count();
    if failed > 0 {
        Some(format!("{failed} unit(s) failed"))
    } else if passed == 0 {
        Some("no unit passed: nothing was checked".into())
    } else if ran < declared {
        Some(format!(
            "only {ran} test(s) ran, but the case file declares {declared} runnable with these features"
        ))
    } else {
        None
    }
}

/// Profile → level (core/extended) → the tests that count toward it.
fn profile_tests(results: &[TestResult]) -> BTreeMap<String, BTreeMap<String, Vec<&TestResult>>> {
    let mut map: BTreeMap<String, BTreeMap<String, Vec<&TestResult>>> = BTreeMap::new();
    for t in results {
        for (profile, level) in &t.profiles {
            map.entry(profile.clone())
                .or_default()
                .entry(level.clone())
                .or_default()
                .push(t);
        }
    }
    map
}

#[derive(Debug, Clone)]
pub struct Implementation {
    pub version: String,
}

/// The Gateway API ConformanceReport (apis/v1 ConformanceReport shape) as YAML.
pub fn conformance_report(
    results: &[TestResult],
    features: &FeatureSet,
    implementation: &Implementation,
    date: &str,
) -> String {
    let mut profiles = Vec::new();
    for (profile, levels) in profile_tests(results) {
        let mut entry = serde_json::Map::new();
        entry.insert("name".into(), profile.clone().into());
        for level in ["core", "extended"] {
            let tests = levels.get(level).cloned().unwrap_or_default();
            let names = |want: &dyn Fn(TestVerdict) -> bool| -> Vec<String> {
                tests
                    .iter()
                    .filter(|t| want(t.verdict()))
                    .map(|t| t.name.clone())
                    .collect()
            };
            // The report has no "partial test": one with units left unrun was not passed,
            // so it is listed (and counted) as skipped, as upstream's suite would.
            let passed = names(&|v| v == TestVerdict::Pass);
            let failed = names(&|v| v == TestVerdict::Fail);
            let skipped = names(&|v| matches!(v, TestVerdict::Partial | TestVerdict::Skip));
            let result = if !failed.is_empty() {
                "failure"
            } else if passed.is_empty() {
                "skipped"
            } else if skipped.is_empty() {
                "success"
            } else {
                "partial"
            };
            let mut body = serde_json::json!({
                "result": result,
                "statistics": {"Passed": passed.len(), "Failed": failed.len(), "Skipped": skipped.len()},
                "skippedTests": skipped,
                "failedTests": failed,
            });
            if level == "extended" {
                let all: BTreeSet<&str> = tests
                    .iter()
                    .flat_map(|t| t.features.iter().map(String::as_str))
                    .collect();
                let (supported, unsupported): (Vec<&str>, Vec<&str>) =
                    all.into_iter().partition(|f| features.supports(f));
                body["supportedFeatures"] = supported.into();
                body["unsupportedFeatures"] = unsupported.into();
            }
            entry.insert(level.into(), body);
        }
        profiles.push(serde_json::Value::Object(entry));
    }
    let report = serde_json::json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "ConformanceReport",
        "implementation": {
            "organization": "waypoint",
            "project": "waypoint",
            "url": "https://github.com/waypoint/waypoint",
            "version": implementation.version,
            "contact": ["@waypoint/maintainers"],
        },
        "date": date,
        "gatewayAPIVersion": GATEWAY_API_VERSION,
        "gatewayAPIChannel": "experimental",
        "mode": "default",
        "profiles": profiles,
    });
    serde_yaml_ng::to_string(&report).unwrap_or_default()
}

/// RFC 3339 UTC timestamp of `secs` since the epoch (civil-from-days, no date crate needed).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::Unit;

    fn result(name: &str, outcomes: Vec<Outcome>) -> TestResult {
        TestResult {
            name: name.into(),
            profiles: [("MESH-HTTP".to_string(), "core".to_string())].into(),
            features: vec!["Mesh".into()],
            units: outcomes
                .into_iter()
                .map(|outcome| Unit {
                    name: "u".into(),
                    outcome,
                })
                .collect(),
        }
    }

    #[test]
    fn last_line_counts_units() {
        let text = render(&[
            result("A", vec![Outcome::Pass, Outcome::Skip("x".into())]),
            result("B", vec![Outcome::Fail("boom".into())]),
        ]);
        assert_eq!(
            text.lines().last(),
            Some("conformance: 1 passed, 1 failed, 1 skipped")
        );
        assert!(
            text.contains("tests: 0 PASS, 1 PARTIAL, 1 FAIL, 0 SKIP"),
            "{text}"
        );
        assert!(text.contains("B / u: boom"));
    }

    #[test]
    fn report_has_profiles() {
        let yaml = conformance_report(
            &[result("A", vec![Outcome::Pass])],
            &FeatureSet::default(),
            &Implementation {
                version: "0.1.0".into(),
            },
            "2025-01-01T00:00:00Z",
        );
        assert!(yaml.contains("kind: ConformanceReport"), "{yaml}");
        assert!(yaml.contains("name: MESH-HTTP"), "{yaml}");
        assert!(yaml.contains("result: success"), "{yaml}");
        assert_eq!(report_of(&[result("A", vec![Outcome::Pass])]), yaml);
    }

    fn report_of(results: &[TestResult]) -> String {
        conformance_report(
            results,
            &FeatureSet::default(),
            &Implementation {
                version: "0.1.0".into(),
            },
            "2025-01-01T00:00:00Z",
        )
    }

    #[test]
    fn a_partial_test_is_not_counted_as_passed() {
        let results = [
            result("Whole", vec![Outcome::Pass, Outcome::Pass]),
            result(
                "Half",
                vec![Outcome::Pass, Outcome::Skip("needs a TLS Secret".into())],
            ),
        ];
        let text = render(&results);
        assert!(text.contains("PARTIAL (nothing failed"), "{text}");
        assert!(text.contains("Half: 1 of 2 unit(s) ran"), "{text}");
        assert!(text.contains("      u: needs a TLS Secret"), "{text}");
        let row = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .map(|l| l.split_whitespace().last())
        };
        assert_eq!(row("Whole "), Some(Some("PASS")), "{text}");
        assert_eq!(row("Half "), Some(Some("PARTIAL")), "{text}");
        // Profile line: PASS PARTIAL FAIL SKIP.
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>()
                    == ["MESH-HTTP", "core", "1", "1", "0", "0"]),
            "{text}"
        );
        assert!(
            text.contains("tests: 1 PASS, 1 PARTIAL, 0 FAIL, 0 SKIP"),
            "{text}"
        );
        let yaml = report_of(&results);
        assert!(yaml.contains("result: partial"), "{yaml}");
        assert!(!yaml.contains("result: success"), "{yaml}");
        assert!(yaml.contains("- Half"), "{yaml}");
    }

    #[test]
    fn a_run_that_checked_nothing_or_too_little_is_not_clean() {
        let pass = result("A", vec![Outcome::Pass]);
        let skip = result("B", vec![Outcome::Skip("x".into())]);
        let fail = result("C", vec![Outcome::Fail("x".into())]);
        assert_eq!(shortfall(&[pass.clone(), skip.clone()], 1), None);
        assert!(
            shortfall(std::slice::from_ref(&skip), 0).is_some_and(|w| w.contains("no unit passed"))
        );
        assert!(
            shortfall(&[pass.clone(), skip], 2).is_some_and(|w| w.contains("only 1 test(s) ran"))
        );
        assert!(shortfall(&[pass, fail], 2).is_some_and(|w| w.contains("1 unit(s) failed")));
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
