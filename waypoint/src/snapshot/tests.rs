use super::*;
use crate::config::Loaded;
use routing::RouteTable;

pub(super) const GATEWAY: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: waypoint, namespace: shop}\nspec:\n  gatewayClassName: istio-waypoint\n  listeners: [{name: mesh, port: 15008, protocol: HBONE}]\n";

pub(super) fn build_with(yaml: &str, gateway: Option<GatewayRef>) -> (Option<Snapshot>, Report) {
    let mut loaded = Loaded::default();
    crate::config::files_for_tests::parse(std::path::Path::new("t.yaml"), yaml, &mut loaded);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    Snapshot::build(
        &loaded.documents,
        Vec::new(),
        &BuildOptions {
            gateway_class: crate::snapshot::GATEWAY_CLASS.to_string(),
            version: 7,
            gateway,
            trust_domain: CLUSTER_DOMAIN.to_string(),
        },
    )
}

fn build(yaml: &str) -> Snapshot {
    let (s, report) = build_with(yaml, None);
    assert_eq!(report.error_count(), 0, "{:?}", report.error_lines());
    s.expect("snapshot")
}

pub(super) fn ns(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n")
}

pub(super) fn svc(ns: &str, name: &str, vip: &str, labels: &str, extra: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\nspec:\n  clusterIP: {vip}\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n{extra}")
}

pub(super) fn docs(parts: &[String]) -> String {
    parts.join("---\n")
}

#[test]
fn authorities_default_to_port_80() {
    // The parser's own table is in routing::authority.
    assert_eq!(split_authority("web"), Some(("web", 80)));
    assert_eq!(split_authority("[fd00::1]:8080"), Some(("fd00::1", 8080)));
    assert_eq!(split_authority("web:http"), None);
}

#[test]
fn binding_follows_istio_labels() {
    let yaml = docs(&[
        GATEWAY.to_string(),
        ns("shop", "istio.io/use-waypoint: waypoint"),
        ns(
            "other",
            "istio.io/use-waypoint: waypoint, istio.io/use-waypoint-namespace: shop",
        ),
        ns("plain", ""),
        svc("shop", "by-namespace", "10.0.0.1", "", ""),
        svc(
            "shop",
            "opted-out",
            "10.0.0.2",
            "istio.io/use-waypoint: none",
            "",
        ),
        svc(
            "shop",
            "elsewhere",
            "10.0.0.3",
            "istio.io/use-waypoint: another",
            "",
        ),
        svc(
            "plain",
            "by-service",
            "10.0.0.4",
            "istio.io/use-waypoint: waypoint, istio.io/use-waypoint-namespace: shop",
            "",
        ),
        svc("other", "not-allowed", "10.0.0.5", "", ""),
        svc("plain", "unlabelled", "10.0.0.6", "", ""),
    ]);
    let s = build(&yaml);
    let bound = |ns: &str, name: &str| {
        s.service(&ServiceKey {
            namespace: ns.into(),
            name: name.into(),
        })
        .map(|x| x.binding.clone())
        .expect("service exists")
    };
    assert_eq!(bound("shop", "by-namespace"), Binding::Bound);
    assert!(matches!(bound("shop", "opted-out"), Binding::NotBound(w) if w.contains("=none")));
    assert!(
        matches!(bound("shop", "elsewhere"), Binding::NotBound(w) if w.contains("shop/another"))
    );
    // Cross-namespace use needs the Gateway's allowedRoutes; the default is Same.
    assert!(
        matches!(bound("plain", "by-service"), Binding::NotBound(w) if w.contains("allowedRoutes"))
    );
    assert!(
        matches!(bound("other", "not-allowed"), Binding::NotBound(w) if w.contains("allowedRoutes"))
    );
    assert!(
        matches!(bound("plain", "unlabelled"), Binding::NotBound(w) if w.contains("no istio.io/use-waypoint"))
    );

    let all = yaml.replace(
        "listeners: [{name: mesh, port: 15008, protocol: HBONE}]",
        "listeners: [{name: mesh, port: 15008, protocol: HBONE, allowedRoutes: {namespaces: {from: All}}}]",
    );
    let s = build(&all);
    let key = ServiceKey {
        namespace: "plain".into(),
        name: "by-service".into(),
    };
    assert_eq!(
        s.service(&key).map(|x| x.binding.clone()),
        Some(Binding::Bound)
    );

    let selector = yaml.replace(
        "listeners: [{name: mesh, port: 15008, protocol: HBONE}]",
        "listeners: [{name: mesh, port: 15008, protocol: HBONE, allowedRoutes: {namespaces: {from: Selector, selector: {matchExpressions: [{key: istio.io/use-waypoint-namespace, operator: Exists}]}}}}]",
    );
    let s = build(&selector);
    let key = ServiceKey {
        namespace: "other".into(),
        name: "not-allowed".into(),
    };
    assert_eq!(
        s.service(&key).map(|x| x.binding.clone()),
        Some(Binding::Bound)
    );
    let key = ServiceKey {
        namespace: "plain".into(),
        name: "by-service".into(),
    };
    assert!(matches!(
        s.service(&key).map(|x| x.binding.clone()),
        Some(Binding::NotBound(_))
    ));
}

#[test]
fn endpoints_from_slices_and_from_selected_pods() {
    let yaml = docs(&[
        GATEWAY.to_string(),
        ns("shop", "istio.io/use-waypoint: waypoint"),
        svc("shop", "sliced", "10.0.0.1", "", ""),
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: sliced-1, namespace: shop, labels: {kubernetes.io/service-name: sliced}}\naddressType: IPv4\nports: [{name: http, port: 9000}, {name: other, port: 9001}]\nendpoints:\n- addresses: [127.0.0.2]\n- addresses: [127.0.0.3]\n  conditions: {ready: false}\n- addresses: [127.0.0.4]\n  conditions: {ready: true}\n  targetRef: {kind: Pod, name: p4}\n".to_string(),
        svc("shop", "selected", "10.0.0.2", "", "  selector: {app: sel}\n").replace("targetPort: 8080", "targetPort: web"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: sel-0, namespace: shop, labels: {app: sel}}\nspec:\n  containers: [{name: c, ports: [{name: web, containerPort: 7000}]}]\nstatus: {podIP: 127.0.0.7}\n".to_string(),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: sel-unscheduled, namespace: shop, labels: {app: sel}}\nspec:\n  containers: [{name: c}]\n".to_string(),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: other-0, namespace: shop, labels: {app: other}}\nspec:\n  containers: [{name: c}]\nstatus: {podIP: 127.0.0.8}\n".to_string(),
    ]);
    let s = build(&yaml);
    let (svc, port) = s.resolve_authority("sliced.shop").expect("resolves");
    assert_eq!(svc.key.name, "sliced");
    let addrs: Vec<String> = port.endpoints.iter().map(|e| e.addr.to_string()).collect();
    assert_eq!(
        addrs,
        vec!["127.0.0.2:9000", "127.0.0.4:9000"],
        "not-ready endpoints are left out"
    );
    assert_eq!(port.endpoints[1].pod.as_deref(), Some("p4"));
    let (_, port) = s
        .resolve_authority("selected.shop.svc.cluster.local:80")
        .expect("resolves");
    let addrs: Vec<String> = port.endpoints.iter().map(|e| e.addr.to_string()).collect();
    assert_eq!(
        addrs,
        vec!["127.0.0.7:7000"],
        "named targetPort resolves through container ports"
    );
}

#[test]
fn short_names_prefer_the_waypoint_namespace_and_report_ambiguity() {
    let yaml = docs(&[
        GATEWAY.to_string(),
        ns("shop", "istio.io/use-waypoint: waypoint"),
        ns("a", "istio.io/use-waypoint: waypoint, istio.io/use-waypoint-namespace: shop"),
        ns("b", "istio.io/use-waypoint: waypoint, istio.io/use-waypoint-namespace: shop"),
        svc("shop", "web", "10.0.0.1", "", ""),
        svc("a", "web", "10.0.0.2", "", ""),
        svc("a", "api", "10.0.0.3", "", ""),
        svc("b", "api", "10.0.0.4", "", ""),
    ])
    .replace(
        "listeners: [{name: mesh, port: 15008, protocol: HBONE}]",
        "listeners: [{name: mesh, port: 15008, protocol: HBONE, allowedRoutes: {namespaces: {from: All}}}]",
    );
    let s = build(&yaml);
    assert_eq!(
        s.resolve_authority("web")
            .map(|(x, _)| x.key.namespace.clone()),
        Ok("shop".into())
    );
    assert_eq!(
        s.resolve_authority("web.a")
            .map(|(x, _)| x.key.namespace.clone()),
        Ok("a".into())
    );
    assert_eq!(
        s.resolve_authority("10.0.0.4")
            .map(|(x, _)| x.key.namespace.clone()),
        Ok("b".into())
    );
    let err = s
        .resolve_authority("api")
        .map(|_| ())
        .expect_err("ambiguous");
    assert!(
        err.0.contains("ambiguous") && err.0.contains("a/api") && err.0.contains("b/api"),
        "{}",
        err.0
    );
    let err = s
        .resolve_authority("web:81")
        .map(|_| ())
        .expect_err("no such port");
    assert!(err.0.contains("has no port 81"), "{}", err.0);
    let err = s
        .resolve_authority("10.9.9.9")
        .map(|_| ())
        .expect_err("unknown vip");
    assert!(err.0.contains("no service has the address"), "{}", err.0);
}

#[test]
fn service_entries_are_destinations() {
    let yaml = docs(&[
        GATEWAY.to_string(),
        ns("shop", "istio.io/use-waypoint: waypoint"),
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: shop}\nspec:\n  hosts: [API.example.com]\n  addresses: [240.0.0.1]\n  resolution: STATIC\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints: [{address: 127.0.0.9, ports: {http: 8080}}, {address: 127.0.0.10}]\n".to_string(),
    ]);
    let s = build(&yaml);
    let (svc, port) = s
        .resolve_authority("api.example.com")
        .expect("resolves by host");
    assert_eq!(svc.source, ServiceSource::ServiceEntry);
    let addrs: Vec<String> = port.endpoints.iter().map(|e| e.addr.to_string()).collect();
    assert_eq!(addrs, vec!["127.0.0.9:8080", "127.0.0.10:80"]);
    assert!(s.resolve_authority("240.0.0.1:80").is_ok());
}

#[test]
fn gateway_selection() {
    let (s, report) = build_with(&ns("shop", ""), None);
    assert!(s.is_none());
    assert!(
        report.global_errors[0].contains("no Gateway of class istio-waypoint"),
        "{:?}",
        report.global_errors
    );

    let two = docs(&[
        GATEWAY.to_string(),
        GATEWAY.replace("name: waypoint", "name: second"),
    ]);
    let (s, report) = build_with(&two, None);
    assert!(s.is_none());
    assert!(
        report.global_errors[0].contains("--gateway"),
        "{:?}",
        report.global_errors
    );
    let (s, report) = build_with(&two, Some("shop/second".parse().expect("ref")));
    assert_eq!(report.error_count(), 0, "{:?}", report.error_lines());
    assert_eq!(s.expect("snapshot").gateway.name, "second");
    let (_, report) = build_with(&two, Some("shop/third".parse().expect("ref")));
    assert!(
        report.global_errors[0].contains("shop/third"),
        "{:?}",
        report.global_errors
    );

    let other_class = GATEWAY.replace("istio-waypoint", "istio");
    let (_, report) = build_with(
        &docs(&[
            GATEWAY.to_string(),
            other_class.replace("name: waypoint", "name: ingress"),
        ]),
        None,
    );
    assert!(report
        .statuses
        .iter()
        .any(|s| matches!(&s.state, State::Ignored(w) if w.contains("gatewayClassName istio"))));

    let no_hbone = GATEWAY.replace("protocol: HBONE", "protocol: HTTP");
    let (_, report) = build_with(&no_hbone, None);
    assert!(
        report
            .error_lines()
            .iter()
            .any(|l| l.contains("spec.listeners") && l.contains("HBONE")),
        "{:?}",
        report.error_lines()
    );
}

#[test]
fn duplicates_and_route_parents_are_reported() {
    let yaml = docs(&[
        GATEWAY.to_string(),
        ns("shop", "istio.io/use-waypoint: waypoint"),
        ns("far", ""),
        svc("shop", "web", "10.0.0.1", "", ""),
        svc("shop", "web", "10.0.0.2", "", ""),
        svc("far", "away", "10.0.0.3", "", ""),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: ghost}, {group: \"\", kind: Service, name: web, port: 81}]\n  rules: [{backendRefs: [{name: web, port: 80}]}]\n".to_string(),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: theirs, namespace: far}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: away}]\n  rules: [{backendRefs: [{name: away, port: 80}]}]\n".to_string(),
    ]);
    let (_, report) = build_with(&yaml, None);
    let lines = report.error_lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("Service shop/web")
                && l.contains("also defined in t.yaml (document 3)")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("spec.parentRefs[0]") && l.contains("shop/ghost not found")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("spec.parentRefs[1].port") && l.contains("no port 81")),
        "{lines:?}"
    );
    let theirs = report
        .statuses
        .iter()
        .find(|s| s.object.name == "theirs")
        .expect("status");
    assert!(
        matches!(&theirs.state, State::Ignored(w) if w.contains("not served by this waypoint") || w.contains("no parent")),
        "{:?}",
        theirs.state
    );
}

#[test]
fn connect_targets_resolve_to_services_or_to_pods_of_a_workload_waypoint() {
    let pods = |gateway: &str| {
        docs(&[
            gateway.to_string(),
            ns("shop", "istio.io/use-waypoint: waypoint, istio.io/dataplane-mode: ambient"),
            svc("shop", "web", "10.0.0.1", "", "  selector: {app: web}\n"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web-0, namespace: shop, labels: {app: web}}\nspec:\n  serviceAccountName: web-sa\n  containers: [{name: c}]\nstatus: {podIP: 127.0.0.7}\n".to_string(),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: legacy, namespace: shop, labels: {app: other, istio.io/dataplane-mode: none}}\nspec:\n  containers: [{name: c}]\nstatus: {podIP: 127.0.0.8}\n".to_string(),
        ])
    };
    let s = build(&pods(GATEWAY));
    let web = ServiceKey {
        namespace: "shop".into(),
        name: "web".into(),
    };
    assert_eq!(
        s.resolve_connect("10.0.0.1:80"),
        Ok(Destination::Service {
            service: web.clone(),
            port: 80
        })
    );
    assert_eq!(
        s.resolve_connect("web.shop.svc.cluster.local:80"),
        Ok(Destination::Service {
            service: web.clone(),
            port: 80
        })
    );
    // A waypoint for services (the default) does not take pod-addressed traffic.
    let err = s
        .resolve_connect("127.0.0.7:8080")
        .expect_err("service waypoint");
    assert!(err.0.contains("istio.io/waypoint-for"), "{}", err.0);
    assert!(s.resolve_connect("10.0.0.1").is_err(), "a port is required");
    assert!(s.resolve_connect("10.9.9.9:80").is_err());
    // Ambient endpoints carry the pod's identity; a pod opted out has none.
    let (_, port) = s.resolve_authority("web.shop").expect("web");
    assert_eq!(
        port.endpoints[0].hbone,
        Some(WorkloadIdentity {
            namespace: "shop".into(),
            service_account: "web-sa".into()
        })
    );
    assert!(!s.workloads[&"127.0.0.8".parse::<IpAddr>().expect("ip")].ambient);

    let for_all = GATEWAY.replace(
        "metadata: {name: waypoint, namespace: shop}",
        "metadata: {name: waypoint, namespace: shop, labels: {istio.io/waypoint-for: all}}",
    );
    let s = build(&pods(&for_all));
    assert_eq!(
        s.resolve_connect("127.0.0.7:8080"),
        Ok(Destination::Workload {
            addr: "127.0.0.7:8080".parse().expect("addr"),
            hbone: Some(WorkloadIdentity {
                namespace: "shop".into(),
                service_account: "web-sa".into()
            }),
        })
    );
    assert_eq!(
        s.resolve_connect("127.0.0.8:9000"),
        Ok(Destination::Workload {
            addr: "127.0.0.8:9000".parse().expect("addr"),
            hbone: None
        })
    );
}

#[test]
fn routes_from_another_namespace_are_consumer_routes() {
    let route = |ns: &str, name: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{{group: '', kind: Service, name: web, namespace: shop}}]\n  rules:\n  - backendRefs: [{{name: web, namespace: shop, port: 80}}]\n"
        )
    };
    let s = build(&docs(&[
        ns("shop", "istio.io/use-waypoint: waypoint"),
        ns("client", ""),
        GATEWAY.to_string(),
        svc("shop", "web", "10.0.0.1", "", ""),
        route("shop", "producer"),
        // Its backendRef crosses namespaces without a ReferenceGrant: allowed, since it is
        // the very Service the route is attached to.
        route("client", "consumer"),
    ]));
    let key = ServiceKey {
        namespace: "shop".into(),
        name: "web".into(),
    };
    let port = s.service(&key).and_then(|svc| svc.port(80)).expect("port");
    let names =
        |t: &RouteTable| -> Vec<String> { t.routes().iter().map(|r| r.id.to_string()).collect() };
    assert_eq!(
        names(port.routes.as_ref().expect("producer")),
        ["shop/producer"]
    );
    let consumer = port.consumer_routes.get("client").expect("consumer table");
    assert_eq!(names(consumer), ["client/consumer"]);
    assert!(matches!(
        consumer.routes()[0].rules[0].backends[0].target,
        routing::BackendTarget::Service { .. }
    ));
}

#[test]
fn h2c_ports_are_decided_at_build() {
    let s = build(&docs(&[
        ns("shop", "istio.io/use-waypoint: waypoint"),
        GATEWAY.to_string(),
        "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec:\n  clusterIP: 10.0.0.1\n  ports:\n  - {name: http, port: 80}\n  - {name: h2, port: 81, appProtocol: kubernetes.io/h2c}\n  - {name: grpc-api, port: 82}\n  - {name: grpc-web, port: 83, appProtocol: http}\n".to_string(),
    ]));
    let key = ServiceKey {
        namespace: "shop".into(),
        name: "web".into(),
    };
    let svc = s.service(&key).expect("service");
    let h2c: Vec<(u16, bool)> = svc.ports.iter().map(|p| (p.port, p.h2c)).collect();
    // appProtocol wins over the port name's prefix.
    assert_eq!(h2c, [(80, false), (81, true), (82, true), (83, false)]);
    let protocols: Vec<Protocol> = svc.ports.iter().map(|p| p.protocol).collect();
    assert_eq!(
        protocols,
        [
            Protocol::Http,
            Protocol::Http2,
            Protocol::Http2,
            Protocol::Http
        ]
    );
}
