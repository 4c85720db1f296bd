use super::*;
use crate::cases::CaseFile;

/// The shape of the real header's list, including a multi-line bullet, a Secret named after
/// a ConfigMap, "Secrets A (...) and B" and a second namespace in a parenthetical.
const FILE: &str = r#"# title
#
# Generated TLS material. Upstream creates these objects at suite start (they are referenced by manifests but are not in
#   them). Secrets hold tls.crt/tls.key (PEM), ConfigMaps hold ca.crt (PEM).
#   * web/certificate                      Secret, self-signed, DNS SANs ["*"]
#   * infra/serving                        Secret, self-signed, DNS SANs ["*", "*.org",
#       "*.wildcard.org"]; serving cert of every frontend HTTPS listener used here.
#   * web/web-cm                           ConfigMap, a CA
#   * infra/ca-a    ConfigMap CA "A"; Secret
#       client-a = client cert (ExtKeyUsage clientAuth, no SANs) signed by A
#   * infra/ca-c    ConfigMap CA "C"; signed by C: Secret
#       server-c (server cert, SANs abc.example.com, other.example.com; served by the echo), Secret client-c (client cert),
#       Secrets pass-c (here and in app; abc.example.com) and term-c (tls.example.com)
#   * infra/mismatch                       ConfigMap, an unrelated CA
#
# =====
# 2. NEXT SECTION: Secret not-listed
tests:
- name: T
  cases:
  - tls: {serverName: example.org, trust: infra/trusted-root, clientCertificate: infra/offered}
    request: {path: /, clientCert: '{secretCert:infra/from-placeholder}'}
  - request: {path: /}
    expectedRequest: {path: /, clientCert: '{secretCert:other/expected}'}
"#;

fn generated() -> GeneratedSecrets {
    let file = CaseFile::parse(FILE).expect("parses");
    GeneratedSecrets::from_case_file(FILE, &file.tests)
}

fn pairs(list: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn header_list_and_case_refs_make_the_set() {
    assert_eq!(
        generated().0,
        pairs(&[
            ("app", "pass-c"),
            ("infra", "client-a"),
            ("infra", "client-c"),
            ("infra", "from-placeholder"),
            ("infra", "offered"),
            ("infra", "pass-c"),
            ("infra", "server-c"),
            ("infra", "serving"),
            ("infra", "term-c"),
            ("infra", "trusted-root"),
            ("other", "expected"),
            ("web", "certificate"),
        ])
    );
}

#[test]
fn the_real_header_lists_the_frontend_certificate() {
    // The shared case file must yield the Secret every HTTPS listener serves; a missing file
    // fails here rather than passing with nothing checked.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/cases.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} (shared/ beside the clone): {e}", path.display()));
    let set = listed_in_header(&text);
    for (ns, name) in [
        (
            "gateway-conformance-infra",
            "tls-validity-checks-certificate",
        ),
        ("gateway-conformance-web-backend", "certificate"),
        (
            "gateway-conformance-app-backend",
            "tls-passthrough-checks-certificate",
        ),
        (
            "gateway-conformance-infra",
            "tls-terminate-checks-certificate",
        ),
    ] {
        assert!(
            set.contains(&(ns.into(), name.into())),
            "{ns}/{name} in {set:?}"
        );
    }
    assert!(!set.iter().any(|(_, n)| n == "does-not-exist"), "{set:?}");
}

fn docs(yaml: &str) -> Vec<Yaml> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| <Yaml as serde::Deserialize>::deserialize(d).expect("yaml"))
        .collect()
}

const GATEWAY: &str = r#"
kind: Gateway
metadata: {namespace: infra, name: gw}
spec:
  listeners:
  - name: http
    port: 80
  - name: https
    port: 443
    tls:
      certificateRefs:
      - {group: "", kind: Secret, name: serving}
  - name: broken
    port: 8443
    tls:
      certificateRefs:
      - {kind: Secret, name: does-not-exist}
---
kind: ListenerSet
metadata: {namespace: apps, name: ls}
spec:
  listeners:
  - name: web
    port: 443
    tls:
      certificateRefs:
      - {name: certificate, namespace: web}
"#;

fn check(yaml: &str) -> Json {
    let v: Yaml = serde_yaml_ng::from_str(yaml).expect("yaml");
    serde_json::to_value(v).expect("json")
}

fn missing(check_yaml: &str, manifests: &str) -> Option<(String, String)> {
    generated().missing_for_check(&check(check_yaml), &docs(manifests))
}

#[test]
fn listener_checks_on_a_generated_absent_secret_are_skipped() {
    let serving = Some(("infra".to_owned(), "serving".to_owned()));
    assert_eq!(
        missing(
            "{check: routesAccepted, parent: {kind: Gateway, ref: infra/gw}, routes: []}",
            GATEWAY
        ),
        serving
    );
    assert_eq!(
        missing(
            "{check: gatewayCondition, gateway: infra/gw, type: Programmed, status: 'True'}",
            GATEWAY
        ),
        serving
    );
    assert_eq!(
        missing("{check: listenerConditions, parent: {kind: Gateway, ref: infra/gw}, listener: https, conditions: []}", GATEWAY),
        serving
    );
    assert_eq!(
        missing("{check: statusSequence, steps: [{expect: [{check: routesAccepted, parent: {kind: Gateway, ref: infra/gw}}]}]}", GATEWAY),
        serving
    );
    assert_eq!(
        missing(
            "{check: routesAccepted, parent: {kind: ListenerSet, ref: apps/ls}}",
            GATEWAY
        ),
        Some(("web".to_owned(), "certificate".to_owned()))
    );
}

#[test]
fn other_listeners_routes_and_present_or_deliberately_missing_secrets_are_evaluated() {
    // A listener without generated material, even on the same Gateway.
    assert_eq!(missing("{check: listenerStatus, parent: {kind: Gateway, ref: infra/gw}, listeners: [{name: http}]}", GATEWAY), None);
    // A Secret missing on purpose: the check expects it unresolved and must run.
    assert_eq!(missing("{check: listenerConditions, parent: {kind: Gateway, ref: infra/gw}, listener: broken, conditions: []}", GATEWAY), None);
    // A route's conditions do not depend on its parent's certificate.
    assert_eq!(missing("{check: routeCondition, route: infra/r, parent: {kind: Gateway, ref: infra/gw}, type: Accepted}", GATEWAY), None);
    // The manifests ship the Secret themselves.
    let with_secret =
        format!("{GATEWAY}---\nkind: Secret\nmetadata: {{namespace: infra, name: serving}}\n");
    assert_eq!(
        missing(
            "{check: routesAccepted, parent: {kind: Gateway, ref: infra/gw}}",
            &with_secret
        ),
        None
    );
    // An unknown parent is left to the check itself to report.
    assert_eq!(
        missing(
            "{check: routesAccepted, parent: {kind: Gateway, ref: infra/nope}}",
            GATEWAY
        ),
        None
    );
}
