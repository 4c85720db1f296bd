//! Scenario 3: CUSTOM policies with real HTTP and gRPC ext_authz servers, declared in the
//! MeshConfig ConfigMap `istio-system/istio` and resolved through Services on loopback; the
//! CUSTOM → DENY → ALLOW order; a dead provider with statusOnError and failOpen.

use super::ext_authz::{grpc_server, http_server, GRPC_DENIED, HTTP_DENIED};
use super::mesh::{policy, service_yaml, services_yaml, Svc, World};
use super::probe::{by_provider, rbac, Expect, Peer, Req, RBAC_DENIED};
use super::tokens::dead_addr;
use std::net::SocketAddr;

const X: Peer = Peer::hbone("a", "x", [127, 0, 0, 11]);

const EXT_HTTP: Svc = Svc {
    name: "ext-http",
    octet: 31,
};
const EXT_GRPC: Svc = Svc {
    name: "ext-grpc",
    octet: 32,
};
const EXT_DOWN: Svc = Svc {
    name: "ext-down",
    octet: 33,
};
const EXT_503: Svc = Svc {
    name: "ext-503",
    octet: 34,
};
const EXT_OPEN: Svc = Svc {
    name: "ext-open",
    octet: 35,
};

/// The MeshConfig as istiod reads it, with the providers' Services in namespace `authz`.
fn mesh_config(http: SocketAddr, grpc: SocketAddr, dead: SocketAddr) -> String {
    let mesh: String = [
        "extensionProviders:",
        "- name: http-authz",
        "  envoyExtAuthzHttp:",
        "    service: ext-authz.authz.svc.cluster.local",
        "    port: 8000",
        "    includeRequestHeadersInCheck: [x-ext-authz]",
        "    headersToUpstreamOnAllow: [x-ext-authz-check-result, x-user]",
        "    headersToDownstreamOnDeny: [x-ext-authz-check-result]",
        "- name: grpc-authz",
        "  envoyExtAuthzGrpc: {service: ext-authz-grpc.authz.svc.cluster.local, port: 9000}",
        "- name: down-authz",
        "  envoyExtAuthzHttp: {service: dead.authz.svc.cluster.local, port: 8000}",
        "- name: down-503",
        "  envoyExtAuthzHttp: {service: dead.authz.svc.cluster.local, port: 8000, statusOnError: \"503\"}",
        "- name: down-open",
        "  envoyExtAuthzGrpc: {service: dead.authz.svc.cluster.local, port: 8000, failOpen: true}",
    ]
    .iter()
    .map(|l| format!("    {l}\n"))
    .collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: |-\n{mesh}\
         ---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: authz}}\n{}{}{}",
        service_yaml("authz", "ext-authz", "10.0.2.1", 8000, http),
        service_yaml("authz", "ext-authz-grpc", "10.0.2.2", 9000, grpc),
        service_yaml("authz", "dead", "10.0.2.3", 8000, dead),
    )
}

fn custom(name: &str, target: &str, provider: &str, rules: &str) -> String {
    policy(
        name,
        target,
        &format!("  action: CUSTOM\n  provider: {{name: {provider}}}\n  rules: {rules}\n"),
    )
}

fn policies() -> String {
    [
        custom("custom-http", "ext-http", "http-authz", "[{to: [{operation: {paths: [\"/protected/*\"]}}]}]"),
        policy("deny-too", "ext-http", "  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [\"/protected/deny-too\"]}\n"),
        policy("allow-known", "ext-http", "  rules:\n  - to:\n    - operation: {paths: [\"/protected/*\", \"/public\"]}\n"),
        custom("custom-grpc", "ext-grpc", "grpc-authz", "[{}]"),
        custom("custom-down", "ext-down", "down-authz", "[{}]"),
        custom("custom-503", "ext-503", "down-503", "[{}]"),
        custom("custom-open", "ext-open", "down-open", "[{}]"),
    ]
    .concat()
}

fn header<'a>(r: &'a crate::support::Reply, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The HTTP provider, and the order CUSTOM → DENY → ALLOW.
async fn http_provider(w: &World, checks: &super::ext_authz::Checks) {
    w.check(&X, Req::get(EXT_HTTP, "/public"), Expect::Allowed)
        .await;
    soft!(
        w,
        checks.all().is_empty(),
        "a request no CUSTOM rule matches asked the provider"
    );

    let ok = by_provider("http-authz", 200);
    let r = w
        .check(
            &X,
            Req::get(EXT_HTTP, "/protected/a?x=1").header("x-ext-authz", "allow"),
            ok,
        )
        .await;
    let up = &r.echo()["headers"];
    soft_eq!(
        w,
        up["X-Ext-Authz-Check-Result"][0],
        "allowed",
        "headersToUpstreamOnAllow: {up}"
    );
    soft_eq!(
        w,
        up["X-User"][0],
        "alice",
        "headersToUpstreamOnAllow: {up}"
    );
    soft!(
        w,
        up.get("X-Not-Listed").is_none(),
        "a header not in headersToUpstreamOnAllow reached the backend"
    );
    match checks.all().pop() {
        Some(seen) => {
            soft_eq!(w, seen.path, "/protected/a?x=1", "the check request's path");
            soft_eq!(w, seen.header("x-ext-authz"), Some("allow"));
        }
        None => w.fail("the HTTP provider was never asked".into()),
    }

    let denied = by_provider("http-authz", 403);
    let r = w
        .check(&X, Req::get(EXT_HTTP, "/protected/a"), denied)
        .await;
    soft_eq!(
        w,
        r.body,
        HTTP_DENIED,
        "the provider's body reaches the client"
    );
    soft_eq!(
        w,
        header(&r, "x-ext-authz-check-result"),
        Some("denied"),
        "headersToDownstreamOnDeny"
    );
    soft_eq!(w, header(&r, "x-not-listed"), None);

    // CUSTOM allows, then DENY denies.
    let denied = by_provider("http-authz", 403);
    let r = w
        .check(
            &X,
            Req::get(EXT_HTTP, "/protected/deny-too").header("x-ext-authz", "allow"),
            denied,
        )
        .await;
    soft_eq!(w, r.body, RBAC_DENIED);
    // No CUSTOM or DENY rule matches; no ALLOW either.
    let before = checks.all().len();
    w.check(
        &X,
        Req::get(EXT_HTTP, "/other"),
        rbac("allow-known", None, None),
    )
    .await;
    soft_eq!(
        w,
        checks.all().len(),
        before,
        "CUSTOM asked for a path its rules do not match"
    );
}

/// The gRPC provider.
async fn grpc_provider(w: &World, checks: &super::ext_authz::Checks) {
    let ok = by_provider("grpc-authz", 200);
    let r = w
        .check(
            &X,
            Req::get(EXT_GRPC, "/g").header("x-ext-authz", "allow"),
            ok,
        )
        .await;
    soft_eq!(
        w,
        r.echo()["headers"]["X-Ext-Authz-Check-Result"][0],
        "allowed",
        "ok_response headers"
    );
    match checks.all().pop() {
        Some(seen) => soft_eq!(w, seen.path, "/g"),
        None => w.fail("the gRPC provider was never asked".into()),
    }
    let denied = by_provider("grpc-authz", 403);
    let r = w.check(&X, Req::get(EXT_GRPC, "/g"), denied).await;
    soft_eq!(w, r.body, GRPC_DENIED, "denied_response body");
    soft_eq!(
        w,
        header(&r, "x-ext-authz-check-result"),
        Some("denied"),
        "denied_response headers"
    );
}

/// A provider that does not answer: statusOnError (default 403, empty body) or failOpen.
async fn dead_provider(w: &World) {
    let r = w
        .check(&X, Req::get(EXT_DOWN, "/"), by_provider("down-authz", 403))
        .await;
    soft_eq!(w, r.body, "", "Envoy's ext_authz error reply has no body");
    w.check(&X, Req::get(EXT_503, "/"), by_provider("down-503", 503))
        .await;
    let r = w
        .check(&X, Req::get(EXT_OPEN, "/"), by_provider("down-open", 200))
        .await;
    soft_eq!(w, r.pod(), "web-0", "failOpen forwards to the backend");
}

/// The whole scenario on one waypoint.
pub async fn run() {
    let (http, http_checks) = http_server().await;
    let (grpc, grpc_checks) = grpc_server().await;
    let dead = dead_addr();
    let w = World::start(move |backend| {
        vec![
            (
                "mesh.yaml",
                services_yaml(&[EXT_HTTP, EXT_GRPC, EXT_DOWN, EXT_503, EXT_OPEN], backend),
            ),
            ("meshconfig.yaml", mesh_config(http, grpc, dead)),
            ("policies.yaml", policies()),
        ]
    })
    .await;
    http_provider(&w, &http_checks).await;
    grpc_provider(&w, &grpc_checks).await;
    dead_provider(&w).await;
    w.finish();
}
