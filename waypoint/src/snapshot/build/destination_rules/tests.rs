//! Attachment of DestinationRules to services and the clusters built from them.

use crate::endpoint::{self, NoEndpoint, Pick};
use crate::snapshot::{Report, ServicePort, Snapshot, State};
use resilience::{Algorithm, Outcome, OutlierPolicy};
use routing::ServiceKey;
use std::sync::Arc;

const BASE: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {istio.io/use-waypoint: waypoint}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n";

/// A Service `name` in `shop` selecting pods `app: name`, with pods at 10.1.0.1.. labelled
/// `version: v1`, `v2`, ...
fn service(name: &str, pods: usize) -> String {
    let mut out = format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  clusterIP: 10.0.0.9\n  selector: {{app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n");
    for i in 1..=pods {
        out.push_str(&format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}-{i}, namespace: shop, labels: {{app: {name}, version: v{i}}}}}\nstatus: {{podIP: 10.1.0.{i}}}\n"));
    }
    out
}

fn dr(ns: &str, name: &str, created: &str, spec: &str) -> String {
    format!("---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: \"{created}\"}}\nspec:\n{spec}")
}

fn build(yaml: &str) -> (Option<Snapshot>, Report) {
    crate::snapshot::tests::build_with(yaml, None)
}

/// Port 80 of service `name` in `shop`.
fn port<'s>(s: &'s Snapshot, name: &str) -> &'s ServicePort {
    s.service(&key(name))
        .and_then(|s| s.port(80))
        .expect("port 80")
}

fn key(name: &str) -> ServiceKey {
    ServiceKey {
        namespace: "shop".into(),
        name: name.into(),
    }
}

/// Asserts that DestinationRule `name` is ignored, the reason saying `why`.
fn assert_ignored(report: &Report, name: &str, why: &str) {
    match state_of(report, name) {
        State::Ignored(reason) => assert!(reason.contains(why), "{name}: {reason}"),
        other => panic!("{name} should be ignored ({why}), is {other:?}"),
    }
}

fn state_of<'r>(report: &'r Report, name: &str) -> &'r State {
    &report
        .statuses
        .iter()
        .find(|s| s.object.kind == "DestinationRule" && s.object.name == name)
        .expect("a status")
        .state
}

#[test]
fn without_a_rule_a_port_gets_istios_defaults() {
    let (s, _) = build(&format!("{BASE}{}", service("plain", 2)));
    let s = s.expect("snapshot");
    let port = port(&s, "plain");
    assert_eq!(port.traffic.destination_rule, None);
    let own = port.traffic.cluster(None).expect("own cluster");
    assert_eq!(own.policy.lb.algorithm, Algorithm::LeastRequest);
    assert_eq!(own.members, [0, 1]);
    assert!(own.policy.outlier.is_none());
}

#[test]
fn the_most_specific_host_wins_then_the_oldest_then_the_name() {
    let yaml = format!(
        "{BASE}{}{}{}{}{}",
        service("att-a", 1),
        dr(
            "shop",
            "wild",
            "2020-01-01T00:00:00Z",
            "  host: '*.shop.svc.cluster.local'\n"
        ),
        dr("shop", "young", "2024-01-01T00:00:00Z", "  host: att-a\n"),
        dr(
            "shop",
            "old",
            "2021-01-01T00:00:00Z",
            "  host: att-a.shop.svc.cluster.local\n"
        ),
        dr(
            "shop",
            "none",
            "2021-01-01T00:00:00Z",
            "  host: nothing.example.com\n"
        ),
    );
    let (s, report) = build(&yaml);
    let s = s.expect("snapshot");
    let svc = s.service(&key("att-a")).expect("service");
    let listed: Vec<_> = svc
        .destination_rules
        .iter()
        .map(|p| (p.resource.as_str(), p.in_force))
        .collect();
    assert_eq!(
        listed,
        [
            ("shop/old", true),
            ("shop/young", false),
            ("shop/wild", false)
        ]
    );
    assert!(svc.destination_rules[1]
        .reason
        .contains("shop/old is in force"));
    assert_eq!(state_of(&report, "old"), &State::Accepted);
    assert_ignored(&report, "young", "shop/old is in force");
    assert_ignored(&report, "none", "names no known service");
}

#[test]
fn export_to_and_workload_selectors_are_respected() {
    let yaml = format!(
        "{BASE}{}{}{}",
        service("att-b", 1),
        dr(
            "other",
            "private",
            "2020-01-01T00:00:00Z",
            "  host: att-b.shop.svc.cluster.local\n  exportTo: ['.']\n"
        ),
        dr(
            "shop",
            "sidecar",
            "2020-01-01T00:00:00Z",
            "  host: att-b\n  workloadSelector: {matchLabels: {app: x}}\n"
        ),
    );
    let (s, report) = build(&yaml);
    let s = s.expect("snapshot");
    assert_eq!(port(&s, "att-b").traffic.destination_rule, None);
    assert_ignored(&report, "private", "exportTo");
    assert_ignored(&report, "sidecar", "workloadSelector");
}

#[test]
fn subsets_select_endpoints_by_pod_labels() {
    let spec = "  host: sub\n  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n  subsets:\n  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}\n  - {name: gone, labels: {version: v9}}\n";
    let yaml = format!(
        "{BASE}{}{}",
        service("sub", 3),
        dr("shop", "sub", "2020-01-01T00:00:00Z", spec)
    );
    let (s, report) = build(&yaml);
    let s = s.expect("snapshot");
    let sub = key("sub");
    let port = port(&s, "sub");
    let v2 = port.traffic.cluster(Some("v2")).expect("v2");
    assert_eq!(v2.policy.lb.algorithm, Algorithm::Random);
    assert_eq!(
        port.traffic.cluster(None).expect("own").policy.lb.algorithm,
        Algorithm::RoundRobin
    );
    let pick = Pick {
        subset: Some("v2"),
        ..Pick::any(&sub, 80)
    };
    for _ in 0..10 {
        let chosen = endpoint::choose(&s, &pick).expect("an endpoint");
        assert_eq!(chosen.endpoint.addr.to_string(), "10.1.0.2:8080");
    }
    let gone = Pick {
        subset: Some("gone"),
        ..Pick::any(&sub, 80)
    };
    assert!(matches!(
        endpoint::choose(&s, &gone),
        Err(NoEndpoint::NoneReady { .. })
    ));
    let unknown = Pick {
        subset: Some("v7"),
        ..Pick::any(&sub, 80)
    };
    assert!(matches!(
        endpoint::choose(&s, &unknown),
        Err(NoEndpoint::UnknownSubset { .. })
    ));
    let warnings = report.warning_lines();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("spec.subsets[1].labels") && w.contains("selects no pod")),
        "{warnings:?}"
    );
}

#[test]
fn an_invalid_rule_is_an_error_naming_file_resource_and_field() {
    let spec = "  host: bad\n  trafficPolicy:\n    connectionPool: {tcp: {maxConnections: -1}}\n    loadBalancer: {simple: LEAST_REQUEST, consistentHash: {useSourceIp: true}}\n";
    let yaml = format!(
        "{BASE}{}{}",
        service("bad", 1),
        dr("shop", "bad", "2020-01-01T00:00:00Z", spec)
    );
    let (s, report) = build(&yaml);
    assert_eq!(state_of(&report, "bad"), &State::Error);
    let errors = report.error_lines();
    for field in [
        "spec.trafficPolicy.connectionPool.tcp.maxConnections",
        "spec.trafficPolicy.loadBalancer",
    ] {
        assert!(
            errors.iter().any(|e| e.contains("t.yaml")
                && e.contains("DestinationRule shop/bad")
                && e.contains(field)),
            "{field}: {errors:?}"
        );
    }
    let s = s.expect("snapshot");
    assert_eq!(port(&s, "bad").traffic.destination_rule, None);
}

#[test]
fn state_survives_a_rebuild_and_ejected_endpoints_are_not_chosen() {
    let spec = "  host: keep\n  trafficPolicy: {outlierDetection: {consecutive5xxErrors: 1, maxEjectionPercent: 100}}\n";
    let yaml = format!(
        "{BASE}{}{}",
        service("keep", 2),
        dr("shop", "keep", "2020-01-01T00:00:00Z", spec)
    );
    let (first, _) = build(&yaml);
    let first = first.expect("snapshot");
    let (second, _) = build(&yaml);
    let second = second.expect("snapshot");
    let cluster = |s: &Snapshot| {
        let port = port(s, "keep");
        (
            port.traffic.cluster(None).expect("own").endpoints.clone(),
            port.traffic.cluster(None).expect("own").state.clone(),
        )
    };
    let (eps1, state1) = cluster(&first);
    let (eps2, state2) = cluster(&second);
    assert!(Arc::ptr_eq(&state1, &state2));
    assert!(eps1.iter().zip(&eps2).all(|(a, b)| Arc::ptr_eq(a, b)));
    // Eject the first endpoint through the shared state: the new snapshot avoids it.
    let policy = OutlierPolicy {
        consecutive_5xx: 1,
        max_ejection_percent: 100,
        ..OutlierPolicy::default()
    };
    let now = crate::endpoint::cluster::now();
    assert!(state2
        .outlier
        .record(&policy, &eps2[0].health, Outcome::Status(503), 2, now)
        .is_some());
    for _ in 0..20 {
        let chosen = endpoint::choose(&second, &Pick::any(&key("keep"), 80)).expect("an endpoint");
        assert_eq!(chosen.endpoint.addr, eps2[1].addr);
    }
    // Both ejected: no healthy upstream (panic is off by default).
    assert!(state2
        .outlier
        .record(&policy, &eps2[1].health, Outcome::Status(503), 2, now)
        .is_some());
    assert!(matches!(
        endpoint::choose(&second, &Pick::any(&key("keep"), 80)),
        Err(NoEndpoint::NoneReady { .. })
    ));
}

#[test]
fn service_entry_subsets_select_by_endpoint_labels() {
    let entry = "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: shop}\nspec:\n  hosts: [ext.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints:\n  - {address: 10.2.0.1, labels: {zone: a}}\n  - {address: 10.2.0.2, labels: {zone: b}}\n";
    let spec = "  host: ext.example.com\n  subsets: [{name: b, labels: {zone: b}}]\n";
    let yaml = format!(
        "{BASE}{entry}{}",
        dr("shop", "ext", "2020-01-01T00:00:00Z", spec)
    );
    let (s, report) = build(&yaml);
    assert_eq!(report.error_count(), 0, "{:?}", report.error_lines());
    let s = s.expect("snapshot");
    let port = port(&s, "ext");
    assert_eq!(port.traffic.destination_rule.as_deref(), Some("shop/ext"));
    let b = port.traffic.cluster(Some("b")).expect("subset b");
    assert_eq!(b.members.len(), 1);
    assert_eq!(port.endpoints[b.members[0]].addr.to_string(), "10.2.0.2:80");
}
