//! `waypoint check` on broken folders: a non-zero exit and every problem named with its file
//! and field.

mod support;

use support::child::check;
use support::{mesh_config, write};

#[test]
fn the_travel_example_is_valid() {
    let (code, text) = check(&support::examples_travel());
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("HTTPRoute travel-agency/travels-canary"),
        "{text}"
    );
    assert!(text.contains("OK:"), "{text}");
}

#[test]
fn a_broken_route_names_each_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = "127.0.0.1:9".parse().expect("addr");
    write(dir.path(), "mesh.yaml", &mesh_config(&[("a", addr)]));
    write(
        dir.path(),
        "broken-route.yaml",
        r#"# three problems in one route
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules:
  - matches:
    - path: {type: RegularExpression, value: "/api/(v1"}
    backendRefs:
    - name: web-missing
      port: 80
  - backendRefs:
    - group: example.com
      kind: Bucket
      name: photos
"#,
    );
    let (code, text) = check(dir.path());
    assert_ne!(code, 0, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    let problem = |field: &str, words: &str| {
        assert!(
            lines.iter().any(|l| l.contains("broken-route.yaml")
                && l.contains("HTTPRoute shop/broken")
                && l.contains(field)
                && l.contains(words)),
            "no line names {field} ({words}):\n{text}"
        );
    };
    problem("spec.rules[0].matches[0].path.value", "regular expression");
    problem("spec.rules[0].backendRefs[0]", "web-missing");
    problem("spec.rules[1].backendRefs[0]", "Bucket");
    assert!(
        text.contains("Service shop/web"),
        "per-resource table lists the others:\n{text}"
    );
}

#[test]
fn syntax_and_type_errors_name_file_document_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "mesh.yaml", &mesh_config(&[]));
    write(
        dir.path(),
        "bad.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: ok, namespace: shop}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: typo, namespace: shop}\nspec:\n  ports:\n  - port: eighty\n",
    );
    write(dir.path(), "unknown.yaml", "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: deny, namespace: shop}\n");
    let (code, text) = check(dir.path());
    assert_ne!(code, 0, "{text}");
    assert!(
        text.lines().any(|l| l.contains("bad.yaml document 1")
            && l.contains("Service shop/typo")
            && l.contains("spec.ports[0].port")),
        "{text}"
    );
    assert!(
        text.contains("Telemetry shop/deny") && text.contains("not yet supported"),
        "{text}"
    );
}

#[test]
fn a_broken_virtual_service_names_each_problem_and_what_is_in_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = "127.0.0.1:9".parse().expect("addr");
    write(dir.path(), "mesh.yaml", &mesh_config(&[("a", addr)]));
    write(
        dir.path(),
        "vs.yaml",
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: shop, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [web]
  http:
  - match: [{uri: {regex: "/api/(v1"}}]
    route: [{destination: {host: web-a}}]
  - timeout: 1x
    route:
    - {destination: {host: web-missing}, weight: 50}
    - {destination: {host: web-a}, weight: 50}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: later, namespace: shop, creationTimestamp: "2025-01-01T00:00:00Z"}
spec:
  hosts: [web.shop.svc.cluster.local]
  http:
  - route: [{destination: {host: web-a}}]
"#,
    );
    let (code, text) = check(dir.path());
    assert_ne!(code, 0, "{text}");
    let problem = |field: &str, words: &str| {
        assert!(
            text.lines().any(|l| l.contains("vs.yaml")
                && l.contains("VirtualService shop/broken")
                && l.contains(field)
                && l.contains(words)),
            "no line names {field} ({words}):\n{text}"
        );
    };
    problem("spec.http[0].match[0].uri.regex", "regular expression");
    problem("spec.http[1].timeout", "unit");
    problem("spec.http[1].route[0].destination.host", "web-missing");
    assert!(
        text.contains("VirtualService shop/broken in force")
            && text.contains("VirtualService shop/later not in force"),
        "{text}"
    );
}
