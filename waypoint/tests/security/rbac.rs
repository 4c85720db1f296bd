//! Scenario 1: AuthorizationPolicies on Services of one waypoint, from two identities and three
//! source addresses, as Istio's ztunnel delivers them over HBONE.

use super::mesh::{policy, services_yaml, Svc, World};
use super::probe::{rbac, Expect, Peer, Req};
use std::net::SocketAddr;

/// `spiffe://cluster.local/ns/a/sa/x` from 127.0.0.11.
const X: Peer = Peer::hbone("a", "x", [127, 0, 0, 11]);
/// The same identity from 127.0.0.13.
const X13: Peer = Peer::hbone("a", "x", [127, 0, 0, 13]);
/// `spiffe://old.local/ns/a/sa/x` from 127.0.0.14: a trust-domain alias of x.
const OLD_X: Peer = Peer::hbone_in("old.local", "a", "x", [127, 0, 0, 14]);
/// `spiffe://cluster.local/ns/b/sa/y` from 127.0.0.12.
const Y: Peer = Peer::hbone("b", "y", [127, 0, 0, 12]);

const PRINCIPALS: Svc = Svc {
    name: "principals",
    octet: 1,
};
const NAMESPACES: Svc = Svc {
    name: "namespaces",
    octet: 2,
};
const ACCOUNTS: Svc = Svc {
    name: "accounts",
    octet: 3,
};
const PATHS: Svc = Svc {
    name: "paths",
    octet: 4,
};
const IPS: Svc = Svc {
    name: "ips",
    octet: 5,
};
const HEADERS: Svc = Svc {
    name: "headers",
    octet: 6,
};
const NOT_PRINCIPALS: Svc = Svc {
    name: "not-principals",
    octet: 7,
};
const OPERATIONS: Svc = Svc {
    name: "operations",
    octet: 8,
};
const ORDER: Svc = Svc {
    name: "order",
    octet: 9,
};
const DENY_ALL: Svc = Svc {
    name: "deny-all",
    octet: 10,
};
const ALLOW_ALL: Svc = Svc {
    name: "allow-all",
    octet: 11,
};
const BAD_CIDR: Svc = Svc {
    name: "bad-cidr",
    octet: 12,
};
const BAD_WHEN: Svc = Svc {
    name: "bad-when",
    octet: 13,
};
const REMOTE: Svc = Svc {
    name: "remote",
    octet: 14,
};
const LIVE: Svc = Svc {
    name: "live",
    octet: 15,
};
const OPEN: Svc = Svc {
    name: "open",
    octet: 16,
};

const CONDITIONS: Svc = Svc {
    name: "conditions",
    octet: 17,
};

const ALL: [Svc; 17] = [
    PRINCIPALS,
    NAMESPACES,
    ACCOUNTS,
    PATHS,
    IPS,
    HEADERS,
    NOT_PRINCIPALS,
    OPERATIONS,
    ORDER,
    DENY_ALL,
    ALLOW_ALL,
    BAD_CIDR,
    BAD_WHEN,
    REMOTE,
    LIVE,
    OPEN,
    CONDITIONS,
];

fn policies() -> String {
    [
        policy("allow-x", "principals", "  action: ALLOW\n  rules:\n  - from:\n    - source: {principals: [\"cluster.local/ns/a/sa/x\"]}\n"),
        policy("allow-ns-b", "namespaces", "  rules:\n  - from:\n    - source: {namespaces: [\"b\"]}\n"),
        policy("allow-sa-y", "accounts", "  rules:\n  - from:\n    - source: {serviceAccounts: [\"b/y\"]}\n"),
        policy(
            "deny-paths",
            "paths",
            "  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [\"/admin/*\"]}\n  - to:\n    - operation: {paths: [\"/files/{*}/secret\"]}\n  - to:\n    - operation: {paths: [\"/deep/{**}\"]}\n  - to:\n    - operation: {paths: [\"*.key\"]}\n",
        ),
        policy("allow-ip13", "ips", "  rules:\n  - from:\n    - source: {ipBlocks: [\"127.0.0.13\", \"10.0.0.0/8\"]}\n"),
        policy(
            "allow-header",
            "headers",
            "  rules:\n  - when:\n    - key: request.headers[x-token]\n      values: [\"abc\", \"def*\"]\n",
        ),
        policy(
            "deny-not-x",
            "not-principals",
            "  action: DENY\n  rules:\n  - from:\n    - source: {notPrincipals: [\"cluster.local/ns/a/sa/x\"]}\n",
        ),
        policy(
            "allow-get-ops",
            "operations",
            "  rules:\n  - to:\n    - operation:\n        hosts: [\"operations.shop.svc.cluster.local\"]\n        methods: [\"GET\", \"HEAD\"]\n        ports: [\"80\"]\n",
        ),
        policy("order-allow-all", "order", "  action: ALLOW\n  rules: [{}]\n"),
        policy(
            "order-deny-blocked",
            "order",
            "  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [\"/blocked\"]}\n",
        ),
        policy("order-audit", "order", "  action: AUDIT\n  rules:\n  - to:\n    - operation: {paths: [\"/ok\"]}\n"),
        policy(
            "order-dry-run",
            "order",
            "  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [\"/dry\"]}\n",
        )
        .replace(
            "metadata: {name: order-dry-run, namespace: shop}",
            "metadata:\n  name: order-dry-run\n  namespace: shop\n  annotations: {istio.io/dry-run: \"true\"}",
        ),
        // The empty spec (targetRefs only) denies everything.
        policy("deny-all", "deny-all", ""),
        policy("allow-all", "allow-all", "  rules: [{}]\n"),
        // A DENY without rules never matches.
        policy("deny-no-rules", "allow-all", "  action: DENY\n"),
        policy(
            "allow-conditions",
            "conditions",
            "  rules:\n  - when:\n    - {key: source.principal, values: [\"cluster.local/ns/a/sa/x\"]}\n    - {key: source.namespace, values: [\"a\"]}\n    - {key: source.ip, values: [\"127.0.0.0/24\"], notValues: [\"127.0.0.13\"]}\n    - {key: destination.port, values: [\"80\"]}\n    - {key: destination.ip, values: [\"10.0.1.17\"]}\n",
        ),
        policy(
            "allow-bad-cidr",
            "bad-cidr",
            "  rules:\n  - from:\n    - source: {ipBlocks: [\"300.1.2.3/8\"]}\n",
        ),
        policy(
            "deny-bad-when",
            "bad-when",
            "  action: DENY\n  rules:\n  - when:\n    - key: request.no_such_attribute\n      values: [\"x\"]\n",
        ),
        policy(
            "allow-remote",
            "remote",
            "  rules:\n  - from:\n    - source: {remoteIpBlocks: [\"10.9.9.0/24\"]}\n",
        ),
    ]
    .concat()
}

/// Policies not attached to one Service: on the waypoint's Gateway, on GatewayClass
/// istio-waypoint from the root namespace (every waypoint), and two that do not apply at a
/// waypoint (a selector; namespace-wide), plus the MeshConfig's trust-domain alias.
fn mesh_wide() -> String {
    let deny = |name: &str, ns: &str, attach: &str, path: &str| {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{attach}  action: DENY\n  rules:\n  - to:\n    - operation: {{paths: [\"{path}\"]}}\n"
        )
    };
    [
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |-\n    trustDomainAliases: [old.local]\n".to_string(),
        deny("deny-on-gateway", "shop", "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]\n", "/gateway-denied"),
        deny("deny-on-class", "istio-system", "  targetRefs: [{kind: GatewayClass, group: gateway.networking.k8s.io, name: istio-waypoint}]\n", "/class-denied"),
        deny("selector-deny", "shop", "  selector: {matchLabels: {app: open}}\n", "/*"),
        deny("namespace-deny", "shop", "", "/*"),
    ]
    .concat()
}

fn files(backend: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("mesh-wide.yaml", mesh_wide()),
        ("mesh.yaml", services_yaml(&ALL, backend)),
        ("policies.yaml", policies()),
        ("live.yaml", policy("live", "live", "  rules: [{}]\n")),
    ]
}

/// Principals, namespaces, serviceAccounts, notPrincipals, ipBlocks, remoteIpBlocks.
async fn sources(w: &World) {
    w.check(&X, Req::get(PRINCIPALS, "/"), Expect::Allowed)
        .await;
    w.check(&Y, Req::get(PRINCIPALS, "/"), rbac("allow-x", None, None))
        .await;
    w.check(&Y, Req::get(NAMESPACES, "/"), Expect::Allowed)
        .await;
    w.check(
        &X,
        Req::get(NAMESPACES, "/"),
        rbac("allow-ns-b", None, None),
    )
    .await;
    w.check(&Y, Req::get(ACCOUNTS, "/"), Expect::Allowed).await;
    w.check(&X, Req::get(ACCOUNTS, "/"), rbac("allow-sa-y", None, None))
        .await;
    w.check(&X, Req::get(NOT_PRINCIPALS, "/"), Expect::Allowed)
        .await;
    w.check(
        &Y,
        Req::get(NOT_PRINCIPALS, "/"),
        rbac("deny-not-x", Some(0), Some("notPrincipals")),
    )
    .await;
    // source.ip is the HBONE connection's peer address.
    w.check(&X13, Req::get(IPS, "/"), Expect::Allowed).await;
    w.check(&X, Req::get(IPS, "/"), rbac("allow-ip13", None, None))
        .await;
    // remote.ip: the rightmost X-Forwarded-For entry (use_remote_address: false), else source.ip.
    w.check(
        &X,
        Req::get(REMOTE, "/").header("x-forwarded-for", "10.9.9.9"),
        Expect::Allowed,
    )
    .await;
    w.check(
        &X,
        Req::get(REMOTE, "/").header("x-forwarded-for", "10.9.9.9, 192.168.1.1"),
        rbac("allow-remote", None, None),
    )
    .await;
    w.check(&X, Req::get(REMOTE, "/"), rbac("allow-remote", None, None))
        .await;
    // `when` on the connection's facts.
    w.check(&X, Req::get(CONDITIONS, "/"), Expect::Allowed)
        .await;
    w.check(
        &X13,
        Req::get(CONDITIONS, "/"),
        rbac("allow-conditions", None, None),
    )
    .await;
    w.check(
        &Y,
        Req::get(CONDITIONS, "/"),
        rbac("allow-conditions", None, None),
    )
    .await;
}

/// Gateway and GatewayClass attachment, policies a waypoint ignores, trust-domain aliases.
async fn attachment(w: &World) {
    w.check(
        &Y,
        Req::get(OPEN, "/gateway-denied"),
        rbac("deny-on-gateway", Some(0), Some("paths")),
    )
    .await;
    w.check(
        &Y,
        Req::get(PRINCIPALS, "/class-denied"),
        rbac("deny-on-class", Some(0), Some("paths")),
    )
    .await;
    // selector-deny and namespace-deny would deny everything if they applied here.
    w.check(&Y, Req::get(OPEN, "/anything"), Expect::Allowed)
        .await;
    let (_, text) = crate::support::child::check(w.dir());
    for ignored in ["selector-deny", "namespace-deny"] {
        soft!(
            w,
            text.contains(ignored),
            "waypoint check does not report {ignored} as not applying:\n{text}"
        );
    }
    // Istio's trust-domain migration: an alias's identity is the mesh's, in the handshake and
    // in principals.
    w.check(&OLD_X, Req::get(PRINCIPALS, "/"), Expect::Allowed)
        .await;
    w.check(
        &OLD_X,
        Req::get(NAMESPACES, "/"),
        rbac("allow-ns-b", None, None),
    )
    .await;
}

/// Paths (prefix, `{*}` template) after Istio's BASE normalization, which the backend also gets.
async fn paths(w: &World) {
    let deny = |rule| rbac("deny-paths", Some(rule), Some("paths"));
    w.check(&X, Req::get(PATHS, "/admin/users"), deny(0)).await;
    // `{**}` spans segments; a leading `*` is a suffix match.
    w.check(&X, Req::get(PATHS, "/deep/a/b"), deny(2)).await;
    w.check(&X, Req::get(PATHS, "/deeper/a"), Expect::Allowed)
        .await;
    w.check(&X, Req::get(PATHS, "/a/b/c.key"), deny(3)).await;
    w.check(&X, Req::get(PATHS, "/a/b/c.key/d"), Expect::Allowed)
        .await;
    w.check(&X, Req::get(PATHS, "/public/../admin/users"), deny(0))
        .await;
    w.check(&X, Req::get(PATHS, "/public/%2E%2E/admin/users"), deny(0))
        .await;
    w.check(
        &X,
        Req::get(PATHS, "/public/%2e%2e/%2e/admin/x?q=1"),
        deny(0),
    )
    .await;
    w.check(&X, Req::get(PATHS, "/files/a/secret"), deny(1))
        .await;
    // `{*}` is exactly one segment.
    let two = w
        .check(&X, Req::get(PATHS, "/files/a/b/secret"), Expect::Allowed)
        .await;
    soft_eq!(w, two.echo()["path"], "/files/a/b/secret");
    let normalized = w
        .check(
            &X,
            Req::get(PATHS, "/public/./a/../page?x=1"),
            Expect::Allowed,
        )
        .await;
    soft_eq!(
        w,
        normalized.echo()["path"],
        "/public/page?x=1",
        "the backend gets the normalized path"
    );
    // `%2F` is not decoded, `//` is kept: not `/admin/`.
    let slash = w
        .check(&X, Req::get(PATHS, "/admin%2Fusers"), Expect::Allowed)
        .await;
    soft_eq!(w, slash.echo()["path"], "/admin%2Fusers");
    w.check(&X, Req::get(PATHS, "//admin/users"), Expect::Allowed)
        .await;
}

/// when request.headers, hosts/methods/ports.
async fn operations(w: &World) {
    w.check(
        &X,
        Req::get(HEADERS, "/").header("x-token", "abc"),
        Expect::Allowed,
    )
    .await;
    w.check(
        &X,
        Req::get(HEADERS, "/").header("x-token", "defg"),
        Expect::Allowed,
    )
    .await;
    w.check(
        &X,
        Req::get(HEADERS, "/").header("x-token", "nope"),
        rbac("allow-header", None, None),
    )
    .await;
    w.check(&X, Req::get(HEADERS, "/"), rbac("allow-header", None, None))
        .await;
    w.check(&Y, Req::get(OPERATIONS, "/any"), Expect::Allowed)
        .await;
    w.check(
        &Y,
        Req::new(OPERATIONS, "DELETE", "/any"),
        rbac("allow-get-ops", None, None),
    )
    .await;
}

/// DENY before ALLOW, AUDIT and dry-run do not enforce, empty spec, `rules: [{}]`.
async fn order(w: &World) {
    w.check(&X, Req::get(ORDER, "/ok"), Expect::Allowed).await;
    w.check(
        &X,
        Req::get(ORDER, "/blocked"),
        rbac("order-deny-blocked", Some(0), Some("paths")),
    )
    .await;
    w.check(&X, Req::get(ORDER, "/dry"), Expect::Allowed).await;
    w.check(&X, Req::get(DENY_ALL, "/"), rbac("deny-all", None, None))
        .await;
    w.check(&Y, Req::get(DENY_ALL, "/x"), rbac("deny-all", None, None))
        .await;
    w.check(&Y, Req::get(ALLOW_ALL, "/x"), Expect::Allowed)
        .await;
    w.check(&Y, Req::get(OPEN, "/x"), Expect::Allowed).await;
    // The dry-run DENY is logged as a shadow decision, never enforced.
    soft!(
        w,
        w.wp.wait_for_log(&["order-dry-run"], std::time::Duration::from_secs(5))
            .await,
        "the dry-run policy's shadow decision is not logged"
    );
}

/// Invalid policies are loaded fail closed; the rest of the folder works; check reports them.
async fn fail_closed(w: &World) {
    w.check(
        &X,
        Req::get(BAD_CIDR, "/"),
        rbac("allow-bad-cidr", None, None),
    )
    .await;
    w.check(
        &X13,
        Req::get(BAD_CIDR, "/"),
        rbac("allow-bad-cidr", None, None),
    )
    .await;
    w.check(
        &X,
        Req::get(BAD_WHEN, "/"),
        rbac("deny-bad-when", Some(0), None),
    )
    .await;
    let (_, text) = crate::support::child::check(w.dir());
    for needle in [
        "allow-bad-cidr",
        "ipBlocks",
        "300.1.2.3/8",
        "deny-bad-when",
        "request.no_such_attribute",
    ] {
        soft!(
            w,
            text.contains(needle),
            "waypoint check does not report {needle}:\n{text}"
        );
    }
    soft!(
        w,
        w.wp.log_contains(&["allow-bad-cidr"]),
        "the waypoint's log does not name the invalid policy"
    );
}

/// A policy change applies to the next request on an existing tunnel.
async fn live_change(w: &World) {
    let mut tunnel = w.tunnel(&X, LIVE).await.expect("tunnel to live");
    w.check_on(&mut tunnel, &X, Req::get(LIVE, "/x"), Expect::Allowed)
        .await;
    w.rewrite(
        "live.yaml",
        &policy(
            "live",
            "live",
            "  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [\"/x\"]}\n",
        ),
    )
    .await;
    w.check_on(
        &mut tunnel,
        &X,
        Req::get(LIVE, "/x"),
        rbac("live", Some(0), Some("paths")),
    )
    .await;
    w.check_on(&mut tunnel, &X, Req::get(LIVE, "/y"), Expect::Allowed)
        .await;
}

/// The whole scenario on one waypoint.
pub async fn run() {
    let w = World::start(files).await;
    sources(&w).await;
    attachment(&w).await;
    paths(&w).await;
    operations(&w).await;
    order(&w).await;
    fail_closed(&w).await;
    live_change(&w).await;
    w.finish();
}
