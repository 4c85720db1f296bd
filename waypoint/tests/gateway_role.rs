//! The Gateway role in process: a Gateway of class `waypoint` served on its HTTP listeners,
//! routed by Host with listener isolation, ReferenceGrants, invalid backends answering 500,
//! and a GRPCRoute forwarded over h2c.

mod support;

use std::net::SocketAddr;
use support::{echo, write, HttpClient};

fn endpoints(ns: &str, svc: &str, port_name: &str, addr: SocketAddr) -> String {
    format!(
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {svc}-1\n  namespace: {ns}\n  labels: {{kubernetes.io/service-name: {svc}}}\n\
         addressType: IPv4\nports: [{{name: {port_name}, port: {port}}}]\nendpoints: [{{addresses: [\"{ip}\"]}}]\n",
        port = addr.port(),
        ip = addr.ip(),
    )
}

fn service(ns: &str, name: &str, ip: u8, app_protocol: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  clusterIP: 10.0.1.{ip}\n  ports: [{{name: http, port: 8080{app_protocol}}}]\n"
    )
}

const GATEWAY_AND_ROUTES: &str = "---
apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: infra}
spec:
  gatewayClassName: waypoint
  listeners:
  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - {name: foo, port: 80, protocol: HTTP, hostname: foo.example.com}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: any-host, namespace: infra}
spec:
  parentRefs: [{name: edge, sectionName: http}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /cross}}]
    backendRefs: [{name: v2, namespace: apps, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /locked}}]
    backendRefs: [{name: v3, namespace: locked, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: foo-only, namespace: infra}
spec:
  parentRefs: [{name: edge}]
  hostnames: [foo.example.com]
  rules:
  - backendRefs: [{name: v1b, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: from-infra, namespace: apps}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}]
  to: [{group: '', kind: Service}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: echo-grpc, namespace: infra}
spec:
  parentRefs: [{name: edge, sectionName: http}]
  hostnames: [grpc.example.com]
  rules:
  - matches: [{method: {service: pkg.Echo}}]
    backendRefs: [{name: grpc, port: 8080}]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_listeners_route_by_host() {
    let any = support::any_port();
    let v1 = echo("v1-a-b", any).await;
    let v1b = echo("v1b-a-b", any).await;
    let v2 = echo("v2-a-b", any).await;
    let v3 = echo("v3-a-b", any).await;
    let grpc = echo("grpc-a-b", any).await;
    let mut config = GATEWAY_AND_ROUTES.to_string();
    for (ns, name, ip, proto, addr) in [
        ("infra", "v1", 1, "", v1.local_addr),
        ("infra", "v1b", 2, "", v1b.local_addr),
        ("apps", "v2", 3, "", v2.local_addr),
        ("locked", "v3", 4, "", v3.local_addr),
        (
            "infra",
            "grpc",
            5,
            ", appProtocol: kubernetes.io/h2c",
            grpc.local_addr,
        ),
    ] {
        config.push_str(&service(ns, name, ip, proto));
        config.push_str(&endpoints(ns, name, "http", addr));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "gateway.yaml", &config);

    // Listener port 80 is served on a free port: the offset maps one onto the other.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let running = waypoint::app::start(waypoint::app::Options {
        gateway: Some("infra/edge".parse().expect("gateway ref")),
        gateway_address: "127.0.0.1".parse().expect("ip"),
        gateway_port_offset: free - 80,
        ..support::local_options(dir.path())
    })
    .await
    .expect("waypoint starts");
    assert_eq!(
        running.gateway_addrs.len(),
        1,
        "{:?}",
        running.gateway_addrs
    );
    let (port, addr) = running.gateway_addrs[0];
    assert_eq!((port, addr.port()), (80, free));

    let client = HttpClient::new();
    let get = |host: &'static str, path: &'static str| {
        let client = &client;
        async move { client.get(addr, host, path, &[]).await.expect("request") }
    };
    let r = get("x.example.com", "/v1").await;
    assert_eq!((r.status, r.pod()), (200, "v1-a-b".into()), "{}", r.body);
    // Listener isolation: foo.example.com belongs to the `foo` listener, which only has the
    // foo-only route, even though any-host's /v1 rule would match the path.
    let r = get("foo.example.com", "/v1").await;
    assert_eq!((r.status, r.pod()), (200, "v1b-a-b".into()), "{}", r.body);
    let r = get("x.example.com", "/cross").await;
    assert_eq!((r.status, r.pod()), (200, "v2-a-b".into()), "{}", r.body);
    // No ReferenceGrant in `locked`: that backend's share of traffic gets 500.
    let r = get("x.example.com", "/locked").await;
    assert_eq!(r.status, 500, "{}", r.body);
    let r = get("x.example.com", "/elsewhere").await;
    assert_eq!(r.status, 404, "{}", r.body);

    // The GRPCRoute's method match is a path match; its backend port declares h2c.
    let r = client
        .get_h2(addr, "grpc.example.com", "/pkg.Echo/Say")
        .await
        .expect("h2 request");
    assert_eq!((r.status, r.pod()), (200, "grpc-a-b".into()), "{}", r.body);
    assert_eq!(r.echo()["proto"], "HTTP/2.0", "{}", r.body);
    let r = client
        .get_h2(addr, "grpc.example.com", "/other.Svc/Say")
        .await
        .expect("h2 request");
    assert_eq!(r.status, 404, "{}", r.body);

    running.shutdown().await;
}

#[test]
fn check_status_reports_route_conditions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = GATEWAY_AND_ROUTES.to_string();
    for (ns, name, ip) in [("infra", "v1", 1), ("infra", "v1b", 2), ("apps", "v2", 3)] {
        config.push_str(&service(ns, name, ip, ""));
    }
    write(dir.path(), "gateway.yaml", &config);
    let json = waypoint::check::status_json(dir.path(), "waypoint").expect("status");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    let item = |kind: &str, name: &str| {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["kind"] == kind && i["metadata"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {name} in {json}"))
    };
    let cond = |obj: &serde_json::Value, ty: &str| {
        obj["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == ty)
            .map(|c| (c["status"].clone(), c["reason"].clone()))
            .expect("condition")
    };
    let any_host = item("HTTPRoute", "any-host");
    let parent = &any_host["status"]["parents"][0];
    assert_eq!(parent["parentRef"]["sectionName"], "http");
    assert_eq!(cond(parent, "Accepted"), ("True".into(), "Accepted".into()));
    // v3 in `locked` is refused (no ReferenceGrant) before it is looked up.
    assert_eq!(
        cond(parent, "ResolvedRefs"),
        ("False".into(), "RefNotPermitted".into())
    );
    let gw = item("Gateway", "edge");
    let listeners = gw["status"]["listeners"].as_array().expect("listeners");
    let attached: Vec<(String, u64)> = listeners
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap_or_default().to_string(),
                l["attachedRoutes"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    // http: any-host, foo-only (its hostname intersects a listener without one), echo-grpc;
    // foo: foo-only.
    assert_eq!(attached, [("http".into(), 3), ("foo".into(), 1)]);
    let grpc = item("GRPCRoute", "echo-grpc");
    assert_eq!(
        cond(&grpc["status"]["parents"][0], "ResolvedRefs"),
        ("False".into(), "BackendNotFound".into())
    );
}
