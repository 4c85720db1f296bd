//! End to end: the runner replays a two-test case file against the real waypoint binary, one
//! test right and one with wrong expectations, and must say so in its table and exit status.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One upstream test (cross-namespace attachment) in the case file's format; `expect` is the
/// status check's ResolvedRefs reason and the case's backend, so a wrong value can be planted.
fn test_entry(name: &str, reason: &str, backend: &str) -> String {
    format!(
        r#"- name: {name}
  features: [Gateway, HTTPRoute]
  profiles: {{GATEWAY-HTTP: core}}
  manifests: [base/manifests.yaml, tests/httproute-cross-namespace.yaml]
  driver: gateway
  gateway: {{namespace: gateway-conformance-infra, name: backend-namespaces, port: 80}}
  statusChecks:
  - check: routeCondition
    route: gateway-conformance-web-backend/cross-namespace
    parent: {{kind: Gateway, ref: gateway-conformance-infra/backend-namespaces}}
    type: ResolvedRefs
    status: 'True'
    reason: {reason}
  cases:
  - request: {{path: /}}
    response: {{statusCodes: [200]}}
    backend: {backend}
    namespace: gateway-conformance-web-backend
"#
    )
}

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/gateway-api")
}

#[test]
fn a_wrong_expectation_fails_the_run_and_a_right_one_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("cases.yaml");
    let file = format!(
        "tests:\n{}{}",
        test_entry("Right", "ResolvedRefs", "web-backend"),
        test_entry("Wrong", "BackendNotFound", "infra-backend-v1")
    );
    std::fs::write(&cases, file).expect("write the case file");
    assert!(
        shared().join("base").is_dir(),
        "{} must hold the upstream manifests (shared/ beside the clone)",
        shared().display()
    );
    let runner = Path::new(env!("CARGO_BIN_EXE_conformance"));
    let mut command = Command::new(runner);
    // `cargo test --workspace` builds the waypoint binary beside the runner (its own
    // integration tests need it); when it is not there, the runner builds it with cargo.
    let waypoint = runner.with_file_name("waypoint");
    if waypoint.is_file() {
        command.arg("--waypoint").arg(waypoint);
    }
    let out = command
        .arg("--cases")
        .arg(&cases)
        .arg("--manifests")
        .arg(shared())
        .arg("--report")
        .arg(dir.path().join("report.yaml"))
        .output()
        .expect("run the conformance runner");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A table row: test, profiles, passed, failed, skipped, result.
    let row = |name: &str| {
        stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.len() == 6 && cols[0] == name)
            .map(|cols| cols[5].to_owned())
    };
    assert_eq!(row("Right").as_deref(), Some("PASS"), "{stdout}\n{stderr}");
    assert_eq!(row("Wrong").as_deref(), Some("FAIL"), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("Wrong / status[0] routeCondition") && stdout.contains("BackendNotFound"),
        "the wrong route condition is reported: {stdout}"
    );
    assert!(
        stdout.contains("Wrong / case[0]") && stdout.contains("infra-backend-v1"),
        "the wrong backend is reported: {stdout}"
    );
    assert!(
        stdout.ends_with("conformance: 2 passed, 2 failed, 0 skipped\n"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}
