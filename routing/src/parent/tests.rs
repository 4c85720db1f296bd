use super::*;
use crate::fixtures::route;
use crate::Severity;

fn parents(parent_refs: &str) -> (Vec<ParentService>, Vec<Issue>) {
    parent_services(&route(&format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: travel-agency}}
spec:
  parentRefs: {parent_refs}
"
    )))
}

fn service(namespace: &str, name: &str, port: Option<u16>) -> ParentService {
    ParentService {
        service: ServiceKey {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        },
        port,
    }
}

#[test]
fn service_parents() {
    let cases: Vec<(&str, Vec<ParentService>)> = vec![
        (
            "[{group: '', kind: Service, name: flights}]",
            vec![service("travel-agency", "flights", None)],
        ),
        (
            "[{group: core, kind: Service, name: flights, port: 8080}]",
            vec![service("travel-agency", "flights", Some(8080))],
        ),
        (
            "[{group: '', kind: Service, name: flights, namespace: other}]",
            vec![service("other", "flights", None)],
        ),
        (
            "[{group: '', kind: Service, name: a}, {group: '', kind: Service, name: a}, \
             {group: '', kind: Service, name: a, port: 1}]",
            vec![
                service("travel-agency", "a", None),
                service("travel-agency", "a", Some(1)),
            ],
        ),
    ];
    for (refs, expected) in cases {
        let (got, issues) = parents(refs);
        assert!(issues.is_empty(), "{refs}: {issues:?}");
        assert_eq!(got, expected, "{refs}");
    }
}

#[test]
fn other_parents_are_reported() {
    use IssueReason::*;
    let cases: &[(&str, IssueReason, &str)] = &[
        (
            "[{group: networking.istio.io, kind: ServiceEntry, name: se}]",
            Invalid,
            "spec.parentRefs[0].kind",
        ),
        (
            "[{group: '', kind: Pod, name: p}]",
            Invalid,
            "spec.parentRefs[0].kind",
        ),
        (
            "[{group: example.com, kind: Service, name: s}]",
            Invalid,
            "spec.parentRefs[0].group",
        ),
        (
            "[{group: '', kind: Service, name: s, port: 0}]",
            Invalid,
            "spec.parentRefs[0].port",
        ),
        (
            "[{group: '', kind: Service, name: s, sectionName: http}]",
            Unsupported,
            "spec.parentRefs[0].sectionName",
        ),
        ("[]", Invalid, "spec.parentRefs"),
        ("null", Invalid, "spec.parentRefs"),
    ];
    for (refs, reason, field) in cases {
        let (got, issues) = parents(refs);
        assert!(got.is_empty(), "{refs}: {got:?}");
        assert_eq!(issues.len(), 1, "{refs}: {issues:?}");
        assert_eq!(
            (
                issues[0].severity,
                issues[0].reason,
                issues[0].field.as_str()
            ),
            (Severity::Error, *reason, *field),
            "{refs}"
        );
    }
}

#[test]
fn gateway_parents_are_left_to_the_gateway_role() {
    let r = route(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs:
  - {name: gw}
  - {group: '', kind: Service, name: flights}
  - {kind: Gateway, name: other, namespace: edge, sectionName: http, port: 8080}
",
    );
    let (services, issues) = parent_services(&r);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(services, [service("infra", "flights", None)]);
    let key = |ns: &str, name: &str| ServiceKey {
        namespace: ns.into(),
        name: name.into(),
    };
    assert_eq!(
        gateway_parents(&r),
        [
            ParentGateway {
                index: 0,
                kind: ParentKind::Gateway,
                gateway: key("infra", "gw"),
                section_name: None,
                port: None
            },
            ParentGateway {
                index: 2,
                kind: ParentKind::Gateway,
                gateway: key("edge", "other"),
                section_name: Some("http".into()),
                port: Some(8080)
            },
        ]
    );
}

#[test]
fn a_bad_parent_does_not_hide_good_ones() {
    let (got, issues) =
        parents("[{group: '', kind: Pod, name: p}, {group: '', kind: Service, name: flights}]");
    assert_eq!(got, [service("travel-agency", "flights", None)]);
    assert_eq!(issues[0].field, "spec.parentRefs[0].kind");
}
