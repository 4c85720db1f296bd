//! What a run prints (failure details, a table per test and per profile, the final count
//! line) and the Gateway API `ConformanceReport` it writes.

use crate::features::FeatureSet;
use crate::run::{Outcome, TestResult};
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
    if !skips.is_empty() {
        let _ = writeln!(out, "\nSKIPPED (by reason)");
        for (why, units) in &skips {
            let tests: BTreeSet<&str> =
                units.iter().filter_map(|u| u.split(" / ").next()).collect();
            let _ = writeln!(out, "  {} unit(s): {why}", units.len());
            let _ = writeln!(
                out,
                "      in {}",
                tests.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
    }

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

    let _ = writeln!(
        out,
        "\n{:14} {:9} {:>6} {:>6} {:>7}   (tests)",
        "profile", "level", "passed", "failed", "skipped"
    );
    for (profile, levels) in profile_tests(results) {
        for (level, tests) in levels {
            let count = |v: &str| tests.iter().filter(|t| t.verdict() == v).count();
            let _ = writeln!(
                out,
                "{:14} {:9} {:>6} {:>6} {:>7}",
                profile,
                level,
                count("PASS"),
                count("FAIL"),
                count("SKIP")
            );
        }
    }
    let passed: usize = results.iter().map(TestResult::passed).sum();
    let failed: usize = results.iter().map(TestResult::failed).sum();
    let skipped: usize = results.iter().map(TestResult::skipped).sum();
    let _ = write!(
        out,
        "\nconformance: {passed} passed, {failed} failed, {skipped} skipped"
    );
    out
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
            let names = |v: &str| -> Vec<String> {
                tests
                    .iter()
                    .filter(|t| t.verdict() == v)
                    .map(|t| t.name.clone())
                    .collect()
            };
            let (passed, failed, skipped) = (names("PASS"), names("FAIL"), names("SKIP"));
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
    use crate::run::Unit;

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
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
