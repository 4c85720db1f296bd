use super::*;
use crate::cases::{CaseFile, Request};
use crate::manifests::{plan, Plan};

fn plan_with_pod() -> Plan {
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: be, namespace: ns}\nspec:\n  template:\n    metadata: {labels: {app: be}}\n    spec: {containers: [{name: c, image: echo-basic}]}\n",
    )
    .expect("yaml");
    plan(vec![doc], false, 0)
}

#[test]
fn tests_with_unsupported_features_are_skipped_with_the_names() {
    let file = CaseFile::parse(
        "tests:\n- name: T\n  features: [Gateway, HTTPRoute, BackendTLSPolicy, GRPCRoute]\n",
    )
    .expect("parses");
    let reason = FeatureSet::default().unsupported(&file.tests[0]);
    assert_eq!(
        reason.as_deref(),
        Some("unsupported feature(s): BackendTLSPolicy, GRPCRoute")
    );
    assert_eq!(FeatureSet::All.unsupported(&file.tests[0]), None);
    let only: FeatureSet = FeatureSet::Listed(["Gateway".to_string()].into());
    assert!(only.unsupported(&file.tests[0]).is_some());
}

#[test]
fn a_test_is_declared_runnable_when_some_unit_needs_no_runtime_data() {
    let file = CaseFile::parse(
        r#"tests:
- name: Plain
  features: [Gateway, HTTPRoute]
  cases: [{request: {path: /}}]
- name: Unsupported
  features: [Gateway, BackendTLSPolicy]
  cases: [{request: {path: /}}]
- name: OnlyRuntimeData
  features: [Gateway]
  cases: [{request: {path: /}, runtimeDependent: pod IPs}]
- name: OnlyApiServer
  features: [Gateway]
  statusChecks: [{check: observedGenerationBump}, {check: statusSequence, steps: [{change: patch, expect: []}]}]
- name: StatusOnly
  features: [Gateway]
  statusChecks: [{check: gatewayCondition, gateway: ns/gw, type: Accepted}]
"#,
    )
    .expect("parses");
    let runnable: Vec<&str> = file
        .tests
        .iter()
        .filter(|t| FeatureSet::default().declared_runnable(t))
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(runnable, ["Plain", "StatusOnly"]);
}

#[test]
fn pod_ip_placeholders_are_filled() {
    let plan = plan_with_pod();
    let (text, filled) = fill_pod_ips("{podIP:ns/app=be}:8080", &plan).expect("fills");
    assert_eq!(text, "127.80.1.1:8080");
    assert!(filled);
    let (text, filled) = fill_pod_ips("/retry?uuid={uuid}", &plan).expect("keeps");
    assert_eq!(text, "/retry?uuid={uuid}");
    assert!(!filled);
    assert!(fill_pod_ips("{podIP:ns/app=none}", &plan).is_err());
    assert!(fill_pod_ips("{secretCert:ns/c}", &plan).is_err());
}

#[test]
fn runtime_dependent_cases_run_only_when_the_runner_can_fill_them() {
    let plan = plan_with_pod();
    let mut case = Case {
        request: Request {
            host: Some("{podIP:ns/app=be}:8080".into()),
            ..Request::default()
        },
        runtime_dependent: Some("pod IPs".into()),
        ..Case::default()
    };
    let prepared = prepare(&case, &plan).expect("fillable");
    assert_eq!(prepared.request.host.as_deref(), Some("127.80.1.1:8080"));
    case.request.host = None;
    assert_eq!(prepare(&case, &plan).err().as_deref(), Some("pod IPs"));
    case.runtime_dependent = None;
    case.tls = Some(serde_yaml_ng::Value::Null);
    assert!(prepare(&case, &plan).is_err());
}

#[test]
fn uuids_look_like_uuids() {
    let u = uuid();
    assert_eq!(u.len(), 36);
    assert_eq!(u.chars().filter(|c| *c == '-').count(), 4);
    assert_ne!(u, uuid());
}
