//! Attaching security policies at snapshot build (issue 12): targetRefs, the MeshConfig,
//! PeerAuthentication order, and policies in error loaded fail closed.

use super::tests::{build_with, docs, ns, svc, GATEWAY};
use super::*;
use routing::Severity;
use std::sync::Arc;

/// The waypoint `shop/waypoint` serving `shop/web` and `shop/api`, and `far/away` served by
/// nobody.
fn base() -> Vec<String> {
    vec![
        GATEWAY.to_string(),
        ns("shop", "istio.io/use-waypoint: waypoint"),
        ns("far", ""),
        ns("istio-system", ""),
        svc("shop", "web", "10.0.0.1", "", ""),
        svc("shop", "api", "10.0.0.2", "", ""),
        svc("far", "away", "10.0.0.3", "", ""),
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: shop}\nspec:\n  hosts: [ext.example.com]\n  addresses: [10.0.0.9]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 10.1.0.9}]\n".to_string(),
    ]
}

fn policy(kind: &str, ns: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}")
}

fn ap(ns: &str, name: &str, spec: &str) -> String {
    policy("AuthorizationPolicy", ns, name, spec)
}

fn target(group: &str, kind: &str, name: &str) -> String {
    format!("  targetRefs: [{{group: \"{group}\", kind: {kind}, name: {name}}}]\n")
}

/// An ALLOW policy in `shop` on the served Gateway.
fn on_gateway(name: &str) -> String {
    ap(
        "shop",
        name,
        &target("gateway.networking.k8s.io", "Gateway", "waypoint"),
    )
}

/// An ALLOW policy in `ns` on its Service `service`.
fn on_service(ns: &str, name: &str, service: &str) -> String {
    ap(ns, name, &target("", "Service", service))
}

fn build_security(extra: &[String]) -> (Snapshot, Report) {
    let mut parts = base();
    parts.extend_from_slice(extra);
    let (s, report) = build_with(&docs(&parts), None);
    assert_eq!(
        report.blocking_error_count(),
        0,
        "{:?}",
        report.error_lines()
    );
    (s.expect("snapshot"), report)
}

fn status<'r>(report: &'r Report, kind: &str, name: &str) -> &'r ResourceStatus {
    report
        .statuses
        .iter()
        .find(|s| s.object.kind == kind && s.object.name == name)
        .expect("status")
}

fn key(ns: &str, name: &str) -> routing::ServiceKey {
    routing::ServiceKey {
        namespace: ns.into(),
        name: name.into(),
    }
}

fn authz_names(p: &SecurityPolicies) -> Vec<String> {
    p.authz
        .policies
        .iter()
        .map(|a| a.source.name.clone())
        .collect()
}

#[test]
fn each_target_kind_attaches_where_istio_attaches_it() {
    let (s, report) = build_security(&[
        on_gateway("on-gateway"),
        on_service("shop", "on-web", "web"),
        ap(
            "shop",
            "on-entry",
            &target("networking.istio.io", "ServiceEntry", "ext"),
        ),
        ap(
            "istio-system",
            "on-class",
            &target(
                "gateway.networking.k8s.io",
                "GatewayClass",
                "istio-waypoint",
            ),
        ),
        policy(
            "RequestAuthentication",
            "shop",
            "jwt-web",
            &target("", "Service", "web"),
        ),
    ]);
    let sec = &s.security;
    assert_eq!(authz_names(&sec.waypoint), ["on-class", "on-gateway"]);
    assert_eq!(
        authz_names(sec.policies_for(Some(&key("shop", "web")))),
        ["on-class", "on-gateway", "on-web"]
    );
    assert_eq!(
        authz_names(sec.policies_for(Some(&key("shop", "ext")))),
        ["on-class", "on-entry", "on-gateway"]
    );
    let web = sec.policies_for(Some(&key("shop", "web")));
    assert_eq!(web.authn.sources.len(), 1);
    assert!(sec.waypoint.authn.sources.is_empty());
    // A service with nothing of its own shares the waypoint's compiled policies.
    assert!(Arc::ptr_eq(
        sec.policies_for(Some(&key("shop", "api"))),
        &sec.waypoint
    ));
    // Each AuthorizationPolicy is compiled once and shared.
    let gw_on_web = &web.authz.policies[1];
    assert!(Arc::ptr_eq(gw_on_web, &sec.waypoint.authz.policies[1]));
    for name in ["on-gateway", "on-web", "on-entry", "on-class"] {
        assert_eq!(
            status(&report, "AuthorizationPolicy", name).state,
            State::Accepted,
            "{name}"
        );
    }
}

#[test]
fn targets_that_do_not_apply_here_are_said_so() {
    let (s, report) = build_security(&[
        on_service("far", "theirs", "away"),
        on_service("shop", "ghost", "nope"),
        ap(
            "shop",
            "other-gw",
            &target("gateway.networking.k8s.io", "Gateway", "east"),
        ),
        ap(
            "shop",
            "class-outside-root",
            &target(
                "gateway.networking.k8s.io",
                "GatewayClass",
                "istio-waypoint",
            ),
        ),
    ]);
    assert!(s.security.waypoint.authz.is_empty());
    assert!(s.security.by_service.values().all(|p| p.authz.is_empty()));
    let ignored = |name: &str, needle: &str| {
        let st = status(&report, "AuthorizationPolicy", name);
        assert!(
            matches!(&st.state, State::Ignored(why) if why.contains(needle)),
            "{name}: {:?}",
            st.state
        );
    };
    ignored("theirs", "does not serve");
    ignored("ghost", "no Service shop/nope");
    ignored("other-gw", "not the Gateway this proxy serves");
    ignored("class-outside-root", "root namespace");
    let ghost = status(&report, "AuthorizationPolicy", "ghost");
    assert_eq!(ghost.issues[0].field, "spec.targetRefs[0].name");
    assert_eq!(ghost.issues[0].severity, Severity::Warning);
}

#[test]
fn selector_and_namespace_wide_policies_are_for_ztunnel() {
    let (s, report) = build_security(&[
        ap(
            "shop",
            "by-selector",
            "  selector: {matchLabels: {app: web}}\n  action: DENY\n",
        ),
        ap("shop", "namespace-wide", "  action: DENY\n"),
        ap("istio-system", "mesh-wide", "  action: DENY\n"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: no-spec, namespace: shop}\n".to_string(),
        policy(
            "RequestAuthentication",
            "shop",
            "ns-jwt",
            "  jwtRules: [{issuer: x}]\n",
        ),
    ]);
    assert!(s.security.waypoint.authz.is_empty());
    assert!(s.security.waypoint.authn.sources.is_empty());
    for (kind, name, needle) in [
        ("AuthorizationPolicy", "by-selector", "selects workloads"),
        ("AuthorizationPolicy", "namespace-wide", "namespace-wide"),
        ("AuthorizationPolicy", "mesh-wide", "mesh-wide"),
        ("AuthorizationPolicy", "no-spec", "namespace-wide"),
        ("RequestAuthentication", "ns-jwt", "namespace-wide"),
    ] {
        let st = status(&report, kind, name);
        assert!(
            matches!(&st.state, State::Ignored(why) if why.contains(needle) && why.contains("ztunnel")),
            "{name}: {:?}",
            st.state
        );
        assert_eq!(st.issues[0].severity, Severity::Warning, "{name}");
    }
    assert!(report
        .warning_lines()
        .iter()
        .any(|l| l.contains("by-selector") && l.contains("spec.selector")));
}

#[test]
fn policies_in_error_load_fail_closed_without_rejecting_the_folder() {
    let (s, report) = build_security(&[
        ap(
            "shop",
            "cross-ns",
            "  targetRefs: [{kind: Service, group: \"\", name: away, namespace: far}]\n",
        ),
        ap(
            "shop",
            "bad-kind",
            "  targetRefs: [{kind: Deployment, group: apps, name: web}, {kind: Service, group: \"\", name: web}]\n  action: DENY\n",
        ),
        ap("shop", "unreadable", "  targetRefs: 3\n"),
        ap(
            "shop",
            "both-forms",
            "  targetRef: {kind: Service, group: \"\", name: api}\n  targetRefs: [{kind: Service, group: \"\", name: api}]\n",
        ),
    ]);
    assert_eq!(report.error_count(), 0, "{:?}", report.error_lines());
    assert!(report.error_lines().is_empty());
    let lines = report.fail_closed_lines();
    for needle in [
        "spec.targetRefs[0].namespace",
        "spec.targetRefs[0].kind",
        "AuthorizationPolicy shop/unreadable: field spec:",
        "AuthorizationPolicy shop/both-forms: field spec.targetRef:",
    ] {
        assert!(
            lines.iter().any(|l| l.contains(needle)),
            "{needle}: {lines:?}"
        );
    }
    for name in ["cross-ns", "bad-kind", "unreadable", "both-forms"] {
        assert_eq!(
            status(&report, "AuthorizationPolicy", name).state,
            State::FailClosed
        );
    }
    // The valid target of a policy in error still applies.
    assert_eq!(
        authz_names(s.security.policies_for(Some(&key("shop", "web")))),
        ["bad-kind"]
    );
}

#[test]
fn a_policy_in_error_does_not_stop_the_first_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut parts = base();
    parts.push(ap(
        "shop",
        "cross-ns",
        "  targetRefs: [{kind: Service, group: \"\", name: away, namespace: far}]\n",
    ));
    std::fs::write(dir.path().join("mesh.yaml"), docs(&parts)).expect("write");
    let live = crate::live::LiveConfig::load(dir.path(), None).expect("loads fail closed");
    assert_eq!(live.report().fail_closed_lines().len(), 1);
    let (out, ok) = crate::check::check(dir.path(), None, CLUSTER_DOMAIN).expect("checks");
    assert!(!ok, "check fails on a policy error: {out}");
    assert!(
        out.contains("FailClosed (1 error(s))") && out.contains("spec.targetRefs[0].namespace"),
        "{out}"
    );
}

#[test]
fn mesh_config_sets_trust_root_namespace_and_providers() {
    let mesh = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    trustDomain: new.td\n    trustDomainAliases: [old.td]\n    rootNamespace: mesh-root\n    extensionProviders:\n    - name: ext\n      envoyExtAuthzHttp: {service: authz.shop.svc.cluster.local, port: 8000}\n".to_string();
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: unrelated, namespace: shop}\ndata: {a: b}\n".to_string();
    let (s, report) = build_security(&[
        mesh,
        other,
        ns("mesh-root", ""),
        ap(
            "mesh-root",
            "every-waypoint",
            &target(
                "gateway.networking.k8s.io",
                "GatewayClass",
                "istio-waypoint",
            ),
        ),
    ]);
    let sec = &s.security;
    assert_eq!(sec.trust.domain, "new.td");
    assert_eq!(sec.trust.aliases, ["old.td"]);
    assert!(sec.accepts_trust_domain("old.td") && sec.accepts_trust_domain("new.td"));
    assert!(!sec.accepts_trust_domain(CLUSTER_DOMAIN));
    assert_eq!(sec.mesh.root_namespace, "mesh-root");
    assert_eq!(authz_names(&sec.waypoint), ["every-waypoint"]);
    assert_eq!(status(&report, "ConfigMap", "istio").state, State::Accepted);
    assert_eq!(
        status(&report, "ConfigMap", "unrelated").state,
        State::Accepted
    );

    // Without a MeshConfig: --trust-domain, no aliases.
    let (s, _) = build_security(&[]);
    assert_eq!(s.security.trust.domain, CLUSTER_DOMAIN);
    assert!(s.security.accepts_trust_domain(CLUSTER_DOMAIN));
    assert!(!s.security.accepts_trust_domain("old.td"));
}

#[test]
fn a_bad_mesh_config_is_a_folder_error() {
    let mut parts = base();
    parts.push("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: \"trustDomainAliases: 3\"\n".to_string());
    let (_, report) = build_with(&docs(&parts), None);
    assert_eq!(report.blocking_error_count(), 1);
    assert!(report
        .error_lines()
        .iter()
        .any(|l| l.contains("ConfigMap istio-system/istio")
            && l.contains("data.mesh.trustDomainAliases")));
}

#[test]
fn peer_authentications_are_ordered_most_specific_first() {
    let pa = |ns: &str, name: &str, spec: &str| policy("PeerAuthentication", ns, name, spec);
    let (s, report) = build_security(&[
        pa("istio-system", "mesh", "  mtls: {mode: STRICT}\n"),
        pa("shop", "namespace", "  mtls: {mode: PERMISSIVE}\n"),
        pa(
            "shop",
            "waypoint-pods",
            "  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: waypoint}}\n  mtls: {mode: STRICT}\n",
        ),
        pa("shop", "web-pods", "  selector: {matchLabels: {app: web}}\n  mtls: {mode: STRICT}\n"),
        pa("far", "elsewhere", "  mtls: {mode: STRICT}\n"),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a-newer, namespace: shop, creationTimestamp: \"2030-01-01T00:00:00Z\"}\nspec: {mtls: {mode: DISABLE}}\n".to_string(),
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: z-older, namespace: shop, creationTimestamp: \"2020-01-01T00:00:00Z\"}\nspec: {mtls: {mode: STRICT}}\n".to_string(),
    ]);
    let names: Vec<&str> = s
        .security
        .peer
        .iter()
        .map(|p| p.source.name.as_str())
        .collect();
    assert_eq!(names, ["waypoint-pods", "z-older", "mesh"]);
    for (name, needle) in [
        ("web-pods", "selects other workloads"),
        ("elsewhere", "namespace-wide in far"),
        ("namespace", "z-older"),
        ("a-newer", "z-older"),
    ] {
        let st = status(&report, "PeerAuthentication", name);
        assert!(
            matches!(&st.state, State::Ignored(why) if why.contains(needle)),
            "{name}: {:?}",
            st.state
        );
    }
}

#[test]
fn check_prints_the_policies_in_force_per_service() {
    let (s, report) = build_security(&[
        on_gateway("on-gateway"),
        on_service("shop", "on-web", "web"),
        ap(
            "shop",
            "half-bad",
            "  targetRefs: [{kind: Service, group: \"\", name: web}, {kind: Pod, group: \"\", name: x}]\n",
        ),
    ]);
    let out = crate::check::security_in_force(&s, &report);
    for needle in [
        "Security policies per service (trust domain cluster.local)",
        "waypoint shop/waypoint (every request):\n    AuthorizationPolicy shop/on-gateway ALLOW\n",
        "  shop/web:\n",
        "AuthorizationPolicy shop/half-bad ALLOW FAIL CLOSED",
        "  shop/api: the waypoint's only",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
    let dump = serde_json::to_value(s.security.summary(&report)).expect("json");
    assert_eq!(
        dump["services"]["shop/web"][0]["issues"][0]["field"],
        "spec.targetRefs[1].kind"
    );
    assert_eq!(dump["trust_domain"], "cluster.local");
}

#[test]
fn the_dry_run_annotation_reads_as_istiod_reads_it() {
    let annotated = |name: &str, value: &str| {
        on_service("shop", name, "web").replace(
            "namespace: shop}",
            &format!("namespace: shop, annotations: {{istio.io/dry-run: \"{value}\"}}}}"),
        )
    };
    let (s, report) = build_security(&[
        annotated("shadow", "True"),
        annotated("enforced", "false"),
        annotated("typo", "yes"),
    ]);
    let web = s.security.policies_for(Some(&key("shop", "web")));
    let dry: Vec<(&str, bool)> = web
        .authz
        .policies
        .iter()
        .map(|p| (p.source.name.as_str(), p.dry_run))
        .collect();
    assert_eq!(
        dry,
        [("enforced", false), ("shadow", true), ("typo", false)]
    );
    let typo = status(&report, "AuthorizationPolicy", "typo");
    assert_eq!(typo.state, State::Accepted);
    assert!(typo.issues[0].field.contains("istio.io/dry-run"));
}

#[test]
fn the_gateway_role_takes_policies_by_workload_selection() {
    let edge = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: edge, namespace: shop}\nspec:\n  gatewayClassName: waypoint\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n".to_string();
    let yaml = docs(&[
        edge,
        ns("shop", ""),
        ns("far", ""),
        ap("shop", "namespace-wide", "  action: DENY\n"),
        ap("istio-system", "mesh-wide", "  action: DENY\n"),
        ap(
            "shop",
            "edge-pods",
            "  selector: {matchLabels: {gateway.networking.k8s.io/gateway-name: edge}}\n",
        ),
        ap(
            "shop",
            "web-pods",
            "  selector: {matchLabels: {app: web}}\n",
        ),
        ap("far", "elsewhere", "  action: DENY\n"),
    ]);
    let (s, report) = build_with(&yaml, Some("shop/edge".parse().expect("ref")));
    let s = s.expect("snapshot");
    assert_eq!(
        authz_names(&s.security.waypoint),
        ["mesh-wide", "edge-pods", "namespace-wide"]
    );
    for name in ["web-pods", "elsewhere"] {
        assert!(matches!(
            &status(&report, "AuthorizationPolicy", name).state,
            State::Ignored(why) if why.contains("other workloads")
        ));
    }
}
