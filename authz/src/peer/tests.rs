//! PeerAuthentication modes and Istio's inheritance.

use super::*;
use serde_json::json;

fn pa(spec: serde_json::Value) -> PeerAuthentication {
    PeerAuthentication::compile(PolicyRef::default(), &spec)
}

#[test]
fn modes_and_port_levels() {
    assert_eq!(pa(json!({})).mode, MtlsMode::Unset);
    assert_eq!(pa(json!({"mtls": {}})).mode, MtlsMode::Unset);
    assert_eq!(
        pa(json!({"mtls": {"mode": "STRICT"}})).mode,
        MtlsMode::Strict
    );
    assert_eq!(
        pa(json!({"mtls": {"mode": "PERMISSIVE"}})).mode,
        MtlsMode::Permissive
    );
    assert_eq!(
        pa(json!({"mtls": {"mode": "DISABLE"}})).mode,
        MtlsMode::Disable
    );
    assert_eq!(pa(json!({"mtls": {"mode": "UNSET"}})).mode, MtlsMode::Unset);
    let p = pa(
        json!({"mtls": {"mode": "STRICT"}, "portLevelMtls": {"8080": {"mode": "DISABLE"}, " 9090": {"mode": "PERMISSIVE"}}}),
    );
    assert_eq!(
        p.ports,
        vec![(8080, MtlsMode::Disable), (9090, MtlsMode::Permissive)]
    );
    assert!(p.issues.is_empty());
}

#[test]
fn bad_modes_fail_closed_to_strict() {
    for spec in [
        json!({"mtls": {"mode": "strict-ish"}}),
        json!({"mtls": {"mode": 3}}),
        json!({"mtls": "STRICT"}),
        json!({"portLevelMtls": []}),
        json!("nonsense"),
    ] {
        let p = pa(spec.clone());
        assert!(!p.issues.is_empty(), "{spec}");
        assert_eq!(effective_mode(&[&p], 80), MtlsMode::Strict, "{spec}");
    }
    let p = pa(json!({"portLevelMtls": {"http": {"mode": "DISABLE"}}}));
    assert_eq!(p.issues[0].field, "spec.portLevelMtls[http]");
    let p = pa(json!({"portLevelMtls": {"80": {"mode": "BAD"}}}));
    assert_eq!(effective_mode(&[&p], 80), MtlsMode::Strict);
    assert_eq!(effective_mode(&[&p], 81), MtlsMode::Permissive);
}

#[test]
fn inheritance_workload_namespace_mesh() {
    let mesh = pa(json!({"mtls": {"mode": "STRICT"}}));
    let ns_unset = pa(json!({"mtls": {"mode": "UNSET"}}));
    let ns_permissive = pa(json!({"mtls": {"mode": "PERMISSIVE"}}));
    let workload =
        pa(json!({"portLevelMtls": {"8080": {"mode": "DISABLE"}, "9090": {"mode": "UNSET"}}}));
    assert_eq!(effective_mode(&[], 80), MtlsMode::Permissive);
    assert_eq!(effective_mode(&[&mesh], 80), MtlsMode::Strict);
    assert_eq!(effective_mode(&[&ns_unset, &mesh], 80), MtlsMode::Strict);
    assert_eq!(
        effective_mode(&[&ns_permissive, &mesh], 80),
        MtlsMode::Permissive
    );
    assert_eq!(
        effective_mode(&[&workload, &ns_unset, &mesh], 8080),
        MtlsMode::Disable
    );
    assert_eq!(
        effective_mode(&[&workload, &ns_unset, &mesh], 9090),
        MtlsMode::Strict
    );
    assert_eq!(
        effective_mode(&[&workload, &ns_permissive, &mesh], 80),
        MtlsMode::Permissive
    );
}
