use crate::snapshot::tests::{build_with, docs, ns, svc, GATEWAY};
use crate::snapshot::{PolicyInForce, Report, Snapshot, State};
use routing::{RequestView, ServiceKey};

fn vs(namespace: &str, name: &str, created: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {namespace}, creationTimestamp: '{created}'}}\nspec:\n{spec}"
    )
}

const TO_WEB_A: &str = "  http:\n  - route: [{destination: {host: web-a}}]\n";

/// The mesh every test adds VirtualServices to: `shop/web` and `shop/web-a` served by the
/// waypoint, `plain/elsewhere` not.
fn mesh(extra: &[String]) -> (Snapshot, Report) {
    let mut parts = vec![
        GATEWAY.to_string(),
        ns("shop", "istio.io/use-waypoint: waypoint"),
        ns("plain", ""),
        svc("shop", "web", "10.0.0.1", "", ""),
        svc("shop", "web-a", "10.0.0.2", "", ""),
        svc("plain", "elsewhere", "10.0.0.3", "", ""),
    ];
    parts.extend_from_slice(extra);
    let (snapshot, report) = build_with(&docs(&parts), None);
    (snapshot.expect("snapshot"), report)
}

fn state_of(report: &Report, name: &str) -> State {
    report
        .statuses
        .iter()
        .find(|s| s.object.kind == "VirtualService" && s.object.name == name)
        .map(|s| s.state.clone())
        .expect("the VirtualService has a status")
}

fn in_force(snapshot: &Snapshot, service: &str) -> Vec<PolicyInForce> {
    let key = ServiceKey {
        namespace: "shop".into(),
        name: service.into(),
    };
    snapshot
        .service(&key)
        .expect("service")
        .virtual_services
        .clone()
}

/// Which route `GET /` to `shop/web` port 80 is routed by.
fn route_of_web(snapshot: &Snapshot) -> Option<String> {
    let key = ServiceKey {
        namespace: "shop".into(),
        name: "web".into(),
    };
    let port = snapshot.service(&key)?.port(80)?;
    let headers = http::HeaderMap::new();
    let view = RequestView {
        method: "GET",
        path: "/",
        query: None,
        headers: &headers,
        context: Default::default(),
    };
    port.routes
        .as_ref()?
        .find(&view)
        .map(|m| m.route.id.to_string())
}

#[test]
fn short_names_and_fqdns_attach() {
    for host in [
        "web",
        "web.shop.svc.cluster.local",
        "'*.shop.svc.cluster.local'",
    ] {
        let spec = format!("  hosts: [{host}]\n{TO_WEB_A}");
        let (snapshot, report) = mesh(&[vs("shop", "v", "2024-01-01T00:00:00Z", &spec)]);
        assert_eq!(state_of(&report, "v"), State::Accepted, "{host}");
        assert_eq!(route_of_web(&snapshot).as_deref(), Some("shop/v"), "{host}");
        assert!(in_force(&snapshot, "web")[0].in_force);
    }
}

#[test]
fn a_short_name_resolves_in_the_virtual_services_namespace() {
    // `web` written in namespace plain means web.plain, which does not exist.
    let spec = format!(
        "  hosts: [web]
{TO_WEB_A}"
    )
    .replace("web-a", "web-a.shop.svc.cluster.local");
    let (snapshot, report) = mesh(&[vs("plain", "v", "2024-01-01T00:00:00Z", &spec)]);
    assert!(matches!(state_of(&report, "v"), State::Ignored(_)));
    assert_eq!(route_of_web(&snapshot), None);
}

#[test]
fn an_http_route_wins_over_a_virtual_service() {
    let route = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec:\n  parentRefs: [{group: '', kind: Service, name: web, port: 80}]\n  rules:\n  - backendRefs: [{name: web-a, port: 80}]\n".to_string();
    let spec = format!("  hosts: [web]\n{TO_WEB_A}");
    let (snapshot, report) = mesh(&[route, vs("shop", "v", "2024-01-01T00:00:00Z", &spec)]);
    let State::Ignored(why) = state_of(&report, "v") else {
        panic!("the VirtualService is not in force");
    };
    assert!(why.contains("HTTPRoute shop/r"), "{why}");
    assert_eq!(route_of_web(&snapshot).as_deref(), Some("shop/r"));
    assert!(!in_force(&snapshot, "web")[0].in_force);
}

#[test]
fn the_oldest_virtual_service_wins_and_an_exact_host_beats_a_wildcard() {
    let spec = format!("  hosts: [web]\n{TO_WEB_A}");
    let wildcard = format!("  hosts: ['*']\n{TO_WEB_A}");
    let (snapshot, report) = mesh(&[
        vs("shop", "newer", "2024-06-01T00:00:00Z", &spec),
        vs("shop", "older", "2024-01-01T00:00:00Z", &spec),
        vs("shop", "oldest-wildcard", "2020-01-01T00:00:00Z", &wildcard),
    ]);
    assert_eq!(route_of_web(&snapshot).as_deref(), Some("shop/older"));
    assert_eq!(state_of(&report, "older"), State::Accepted);
    assert!(matches!(state_of(&report, "newer"), State::Ignored(_)));
    // The wildcard is still in force for web-a, which no exact host names.
    assert_eq!(state_of(&report, "oldest-wildcard"), State::Accepted);
    let on_web: Vec<(String, bool)> = in_force(&snapshot, "web")
        .into_iter()
        .map(|p| (p.resource, p.in_force))
        .collect();
    assert_eq!(
        on_web,
        vec![
            ("shop/older".to_string(), true),
            ("shop/newer".to_string(), false),
            ("shop/oldest-wildcard".to_string(), false),
        ]
    );
}

#[test]
fn gateways_export_to_and_binding_decide_whether_it_applies() {
    let cases = [
        ("gw", "  hosts: [web]\n  gateways: [ingress]\n", false),
        (
            "mesh",
            "  hosts: [web]\n  gateways: [mesh, ingress]\n",
            true,
        ),
        ("private", "  hosts: [web]\n  exportTo: ['.']\n", true),
        ("others", "  hosts: [web]\n  exportTo: [plain]\n", false),
        (
            "unbound",
            "  hosts: [elsewhere.plain.svc.cluster.local]\n",
            false,
        ),
    ];
    for (name, head, applies) in cases {
        let (snapshot, report) = mesh(&[vs(
            "shop",
            name,
            "2024-01-01T00:00:00Z",
            &format!("{head}{TO_WEB_A}"),
        )]);
        let state = state_of(&report, name);
        assert_eq!(state == State::Accepted, applies, "{name}: {state:?}");
        assert_eq!(route_of_web(&snapshot).is_some(), applies, "{name}");
        // The service lists it either way, with why it is not in force.
        let listed = in_force(&snapshot, "web");
        if name != "unbound" {
            assert_eq!(listed.len(), 1, "{name}: {listed:?}");
            assert_eq!(listed[0].in_force, applies, "{name}: {listed:?}");
        }
    }
}

#[test]
fn a_virtual_service_with_an_error_names_its_field() {
    let spec = "  hosts: [web]\n  http:\n  - match: [{uri: {regex: '(('}}]\n    route: [{destination: {host: missing}}]\n";
    let (_, report) = mesh(&[vs("shop", "v", "2024-01-01T00:00:00Z", spec)]);
    assert_eq!(state_of(&report, "v"), State::Error);
    let lines = report.error_lines().join("\n");
    assert!(
        lines.contains("VirtualService shop/v: field spec.http[0].match[0].uri.regex"),
        "{lines}"
    );
    assert!(
        lines.contains("field spec.http[0].route[0].destination.host"),
        "{lines}"
    );
}

#[test]
fn a_service_entry_host_attaches_and_can_be_a_destination() {
    let entry = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: shop}\nspec:\n  hosts: [api.example.com]\n  resolution: STATIC\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints: [{address: 127.0.0.9}]\n".to_string();
    let spec = "  hosts: ['*.example.com']\n  http:\n  - route: [{destination: {host: api.example.com}}]\n";
    let (snapshot, report) = mesh(&[entry, vs("shop", "v", "2024-01-01T00:00:00Z", spec)]);
    assert_eq!(state_of(&report, "v"), State::Accepted);
    let on_entry = in_force(&snapshot, "ext");
    assert!(on_entry[0].in_force, "{on_entry:?}");
    assert!(in_force(&snapshot, "web").is_empty());
}
