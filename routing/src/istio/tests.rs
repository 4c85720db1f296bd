use super::*;
use crate::fixtures::{FakeLookup, TestRequest};
use crate::{
    BackendTarget, CompiledRoute, Issue, IssueReason, RedirectInput, RequestContext, RouteId,
    RouteTable, ServiceKey, Severity,
};
use std::sync::Arc;

/// Services: travel-agency/flights (8080, 9090), travel-agency/hotels (8080), granted/cars
/// (8080); FQDNs `name.ns.svc.cluster.local`.
impl DestinationLookup for FakeLookup {
    fn resolve(
        &self,
        host: &str,
        namespace: &str,
        port: Option<u16>,
    ) -> Result<(ServiceKey, u16), String> {
        let (name, ns) = match host.split_once('.') {
            None => (host, namespace),
            Some((name, rest)) => (name, rest.split('.').next().unwrap_or_default()),
        };
        let key = ServiceKey {
            namespace: ns.to_owned(),
            name: name.to_owned(),
        };
        let ports: &[u16] = match (ns, name) {
            ("travel-agency", "flights") => &[8080, 9090],
            ("travel-agency", "hotels") | ("granted", "cars") => &[8080],
            _ => return Err(format!("no service is named {host}")),
        };
        let port = destination_port(&key, ports, port)?;
        Ok((key, port))
    }
}

fn compile(spec_yaml: &str) -> (CompiledRoute, Vec<Issue>) {
    let spec: VirtualServiceSpec =
        serde_yaml_ng::from_str(spec_yaml).expect("test fixture is a valid VirtualService spec");
    compile_virtual_service(
        RouteId::from_metadata(Some("travel-agency"), Some("vs")),
        None,
        &spec,
        &FakeLookup::default(),
    )
}

fn compile_clean(spec_yaml: &str) -> CompiledRoute {
    let (route, issues) = compile(spec_yaml);
    assert!(issues.is_empty(), "{issues:#?}");
    route
}

fn table(route: CompiledRoute) -> RouteTable {
    RouteTable::in_written_order(vec![Arc::new(route)])
}

/// The index of the rule `req` selects, if any.
fn rule_for(table: &RouteTable, req: &TestRequest, context: RequestContext<'_>) -> Option<usize> {
    let mut view = req.view();
    view.context = context;
    table.find(&view).map(|m| m.rule.index)
}

fn get(target: &str, headers: &[(&str, &str)]) -> TestRequest {
    TestRequest::new("GET", target, headers)
}

fn fields(issues: &[Issue]) -> Vec<(&str, Severity)> {
    issues
        .iter()
        .map(|i| (i.field.as_str(), i.severity))
        .collect()
}

const ROUTE: &str = "route: [{destination: {host: hotels}}]";

#[test]
fn uri_matches_follow_envoy() {
    let t = table(compile_clean(&format!(
        "http:
- match: [{{uri: {{exact: /exact}}}}]
  {ROUTE}
- match: [{{uri: {{prefix: /pre}}}}]
  {ROUTE}
- match: [{{uri: {{regex: '/re/[0-9]+'}}}}]
  {ROUTE}
- match: [{{uri: {{exact: /Case}}, ignoreUriCase: true}}, {{uri: {{prefix: /UP}}, ignoreUriCase: true}}]
  {ROUTE}"
    )));
    let ctx = RequestContext::default();
    for (path, want) in [
        ("/exact", Some(0)),
        ("/exact/more", None),
        // Envoy's prefix is a string prefix, not a path-element prefix.
        ("/prefix", Some(1)),
        ("/pre", Some(1)),
        ("/re/42", Some(2)),
        ("/re/42/x", None),
        ("/CASE", Some(3)),
        ("/case", Some(3)),
        ("/upper", Some(3)),
        ("/other", None),
    ] {
        assert_eq!(rule_for(&t, &get(path, &[]), ctx), want, "{path}");
    }
}

#[test]
fn the_first_rule_that_matches_wins_in_written_order() {
    // A catch-all first shadows the more specific rule after it, as in Istio.
    let t = table(compile_clean(&format!(
        "http:
- match: [{{uri: {{prefix: /}}}}]
  {ROUTE}
- match: [{{uri: {{exact: /specific}}}}]
  {ROUTE}"
    )));
    assert_eq!(
        rule_for(&t, &get("/specific", &[]), RequestContext::default()),
        Some(0)
    );
    let t = table(compile_clean(&format!(
        "http:
- match: [{{uri: {{exact: /specific}}}}]
  {ROUTE}
- {ROUTE}"
    )));
    assert_eq!(
        rule_for(&t, &get("/specific", &[]), RequestContext::default()),
        Some(0)
    );
    assert_eq!(
        rule_for(&t, &get("/else", &[]), RequestContext::default()),
        Some(1)
    );
}

#[test]
fn method_authority_scheme_port_and_namespace() {
    let t = table(compile_clean(&format!(
        "http:
- match: [{{method: {{exact: POST}}}}]
  {ROUTE}
- match: [{{authority: {{prefix: hotels.}}}}]
  {ROUTE}
- match: [{{scheme: {{exact: https}}}}]
  {ROUTE}
- match: [{{port: 9090}}]
  {ROUTE}
- match: [{{sourceNamespace: frontend}}]
  {ROUTE}"
    )));
    let ctx = |authority, scheme, port, ns| RequestContext {
        scheme,
        authority,
        port,
        source_namespace: ns,
    };
    let plain = ctx("hotels", "http", 8080, None);
    let post = TestRequest::new("POST", "/", &[]);
    assert_eq!(rule_for(&t, &post, plain), Some(0));
    let req = get("/", &[]);
    assert_eq!(rule_for(&t, &req, plain), None);
    let by_authority = ctx("hotels.travel-agency:8080", "http", 8080, None);
    assert_eq!(rule_for(&t, &req, by_authority), Some(1));
    assert_eq!(rule_for(&t, &req, ctx("x", "https", 8080, None)), Some(2));
    assert_eq!(rule_for(&t, &req, ctx("x", "http", 9090, None)), Some(3));
    let from_frontend = ctx("x", "http", 8080, Some("frontend"));
    assert_eq!(rule_for(&t, &req, from_frontend), Some(4));
}

#[test]
fn header_and_query_conditions() {
    let t = table(compile_clean(&format!(
        "http:
- match: [{{headers: {{end-user: {{exact: jason}}}}}}]
  {ROUTE}
- match: [{{headers: {{x-canary: {{}}}}}}]
  {ROUTE}
- match: [{{headers: {{x-ver: {{prefix: v2}}}}, withoutHeaders: {{x-block: {{}}}}}}]
  {ROUTE}
- match: [{{headers: {{x-id: {{regex: '[a-f]+'}}}}}}]
  {ROUTE}
- match: [{{queryParams: {{debug: {{exact: 'on'}}, v: {{regex: '[0-9]'}}}}}}]
  {ROUTE}
- match: [{{queryParams: {{flag: {{}}}}}}]
  {ROUTE}"
    )));
    let ctx = RequestContext::default();
    for (target, headers, want) in [
        ("/", vec![("end-user", "jason")], Some(0)),
        ("/", vec![("end-user", "jasonx")], None),
        ("/", vec![("x-canary", "")], Some(1)),
        ("/", vec![("x-ver", "v2.1")], Some(2)),
        ("/", vec![("x-ver", "v2.1"), ("x-block", "1")], None),
        ("/", vec![("x-id", "beef")], Some(3)),
        ("/", vec![("x-id", "beefz")], None),
        ("/?debug=on&v=3", vec![], Some(4)),
        ("/?debug=on", vec![], None),
        ("/?flag", vec![], Some(5)),
        ("/?flag=1", vec![], Some(5)),
    ] {
        assert_eq!(
            rule_for(&t, &get(target, &headers), ctx),
            want,
            "{target} {headers:?}"
        );
    }
}

#[test]
fn matches_that_cannot_apply_at_a_waypoint_never_match() {
    let (route, issues) = compile(&format!(
        "http:
- match: [{{sourceLabels: {{app: reviews}}}}]
  {ROUTE}
- match: [{{gateways: [ingress]}}]
  {ROUTE}"
    ));
    assert_eq!(
        fields(&issues),
        vec![
            ("spec.http[0].match[0].sourceLabels", Severity::Warning),
            ("spec.http[1].match[0].gateways", Severity::Warning),
        ]
    );
    let t = table(route);
    assert_eq!(
        rule_for(&t, &get("/", &[]), RequestContext::default()),
        None
    );
}

#[test]
fn invalid_matches_fail_closed_and_name_their_field() {
    let (route, issues) = compile(&format!(
        "http:
- match: [{{uri: {{regex: '/(('}}}}, {{headers: {{x: {{exact: a, prefix: b}}}}}}]
  {ROUTE}"
    ));
    assert_eq!(
        fields(&issues),
        vec![
            ("spec.http[0].match[0].uri.regex", Severity::Error),
            ("spec.http[0].match[1].headers.x", Severity::Error),
        ]
    );
    assert!(route.rules[0].matches.is_empty());
}

#[test]
fn destinations_and_weights() {
    let route = compile_clean(
        "http:
- route: [{destination: {host: hotels}, weight: 20}]
- route:
  - {destination: {host: flights, subset: v1, port: {number: 9090}}, weight: 75}
  - {destination: {host: cars.granted.svc.cluster.local}, weight: 25}
- route: [{destination: {host: flights}}]",
    );
    let targets = |rule: usize| -> Vec<(BackendTarget, u32)> {
        route.rules[rule]
            .backends
            .iter()
            .map(|b| (b.target.clone(), b.weight))
            .collect()
    };
    let svc = |ns: &str, name: &str, port, subset: Option<&str>| BackendTarget::Service {
        service: ServiceKey {
            namespace: ns.into(),
            name: name.into(),
        },
        port,
        subset: subset.map(str::to_owned),
    };
    // A lone destination takes all the traffic whatever its weight.
    assert_eq!(
        targets(0),
        vec![(svc("travel-agency", "hotels", 8080, None), 100)]
    );
    assert_eq!(
        targets(1),
        vec![
            (svc("travel-agency", "flights", 9090, Some("v1")), 75),
            (svc("granted", "cars", 8080, None), 25),
        ]
    );
    // Several ports and none named: the request's port (0).
    assert_eq!(
        targets(2),
        vec![(svc("travel-agency", "flights", 0, None), 100)]
    );
}

#[test]
fn bad_destinations_and_weights_are_reported() {
    let (route, issues) = compile(
        "http:
- route:
  - {destination: {host: nowhere}, weight: 50}
  - {destination: {host: hotels, port: {number: 1}}, weight: 50}
- route:
  - {destination: {host: hotels}}
  - {destination: {host: flights}}
- route:
  - {destination: {host: hotels}, weight: -5}
  - {destination: {host: flights}, weight: 60}",
    );
    let got: Vec<(&str, IssueReason)> = issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .map(|i| (i.field.as_str(), i.reason))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "spec.http[0].route[0].destination.host",
                IssueReason::BackendNotFound
            ),
            (
                "spec.http[0].route[1].destination.host",
                IssueReason::BackendNotFound
            ),
            ("spec.http[1].route", IssueReason::Invalid),
            ("spec.http[2].route[0].weight", IssueReason::Invalid),
        ]
    );
    assert!(matches!(
        route.rules[0].backends[0].target,
        BackendTarget::Invalid { .. }
    ));
    assert!(route.rules[1].pick_backend(7).is_none());
}

#[test]
fn rewrite_replaces_what_the_match_selected() {
    let route = compile_clean(&format!(
        "http:
- match: [{{uri: {{prefix: /api}}}}]
  rewrite: {{uri: /v2, authority: backend.example}}
  {ROUTE}
- match: [{{uri: {{exact: /old}}}}]
  rewrite: {{uri: /new}}
  {ROUTE}
- match: [{{uri: {{prefix: /svc}}}}]
  rewrite: {{uriRegexRewrite: {{match: '^/svc/([^/]+)(/.*)$', rewrite: '\\2/instance/\\1'}}}}
  {ROUTE}
- rewrite: {{uri: /v3}}
  {ROUTE}"
    ));
    let t = table(route);
    let ctx = RequestContext::default();
    for (path, want, host) in [
        ("/api/users", "/v2/users", Some("backend.example")),
        ("/apiary", "/v2ary", Some("backend.example")),
        ("/old", "/new", None),
        ("/svc/a/b/c", "/b/c/instance/a", None),
        // No match: Istio's catch-all is the prefix "/", which the rewrite replaces.
        ("/x", "/v3x", None),
    ] {
        let req = get(path, &[]);
        let mut view = req.view();
        view.context = ctx;
        let m = t.find(&view).expect("a rule matches");
        let rewrite = m.rule.rewrite.as_ref().expect("rewrite");
        assert_eq!(
            rewrite.rewrite_path(path, &m.request_match.path).as_deref(),
            Some(want),
            "{path}"
        );
        assert_eq!(rewrite.hostname.as_deref(), host);
    }
}

#[test]
fn redirects_default_to_301_and_keep_the_request_port() {
    let route = compile_clean(
        "http:
- redirect: {uri: /moved}
- redirect: {authority: other.example, scheme: https, redirectCode: 308}
- redirect: {port: 8443}
- redirect: {derivePort: FROM_REQUEST_PORT}
- redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}
- redirect: {scheme: https}",
    );
    let any = crate::PathMatch::StringPrefix {
        prefix: "/".into(),
        ignore_case: false,
    };
    let input = RedirectInput {
        scheme: "http",
        host: "hotels",
        listener_port: 8080,
        request_port: Some(8080),
        path: "/p",
        query: Some("q=1"),
        matched: &any,
    };
    let location = |rule: usize| {
        let r = route.rules[rule].redirect.as_ref().expect("redirect");
        r.response(&input)
    };
    assert_eq!(location(0), (301, "http://hotels:8080/moved?q=1".into()));
    // Envoy's host_redirect carries no port.
    assert_eq!(location(1), (308, "https://other.example/p?q=1".into()));
    assert_eq!(location(2), (301, "http://hotels:8443/p?q=1".into()));
    assert_eq!(location(3), (301, "http://hotels:8080/p?q=1".into()));
    // FROM_PROTOCOL_DEFAULT is Envoy's default: the request's port stays unless it was the
    // old scheme's own.
    assert_eq!(location(4), (301, "https://hotels:8080/p?q=1".into()));
    let on_80 = RedirectInput {
        request_port: Some(80),
        ..input
    };
    let r = route.rules[5].redirect.as_ref().expect("redirect");
    assert_eq!(r.response(&on_80), (301, "https://hotels/p?q=1".into()));
}

#[test]
fn conflicting_actions_are_errors() {
    let (route, issues) = compile(&format!(
        "http:
- redirect: {{uri: /x}}
  {ROUTE}
- redirect: {{uri: /x, redirectCode: 200}}
  rewrite: {{uri: /y}}
- directResponse: {{status: 200}}
  redirect: {{uri: /x}}
- match: [{{uri: {{prefix: /}}}}]
- delegate: {{name: other}}"
    ));
    assert_eq!(
        fields(&issues),
        vec![
            ("spec.http[0].route", Severity::Error),
            ("spec.http[1].redirect.redirectCode", Severity::Error),
            ("spec.http[1].rewrite", Severity::Error),
            ("spec.http[2].directResponse", Severity::Error),
            ("spec.http[3].route", Severity::Error),
            ("spec.http[4].delegate", Severity::Error),
        ]
    );
    assert!(route.rules[0].backends.is_empty());
    assert!(route.rules[4].unsupported_filter.is_some());
}

#[test]
fn direct_responses() {
    let (route, issues) = compile(
        "http:
- directResponse: {status: 503, body: {string: unavailable}}
- directResponse: {status: 200, body: {bytes: aGVsbG8=}}
- directResponse: {status: 99}",
    );
    assert_eq!(
        fields(&issues),
        vec![("spec.http[2].directResponse.status", Severity::Error)]
    );
    let direct = |i: usize| route.rules[i].direct_response.clone().expect("direct");
    assert_eq!(direct(0).status, 503);
    assert_eq!(direct(0).body, &b"unavailable"[..]);
    assert_eq!(direct(1).body, &b"hello"[..]);
    assert_eq!(direct(2).status, 500);
}

#[test]
fn header_edits_per_rule_and_destination() {
    let route = compile_clean(
        "http:
- headers:
    request: {set: {x-a: '1'}, add: {x-b: '2'}, remove: [x-c]}
    response: {set: {x-d: '3'}}
  route:
  - destination: {host: hotels}
    headers: {request: {set: {x-e: '4'}}, response: {remove: [server]}}",
    );
    let rule = &route.rules[0];
    let req = rule
        .request_header_modifier
        .as_ref()
        .expect("request edits");
    assert_eq!((req.set.len(), req.add.len(), req.remove.len()), (1, 1, 1));
    assert!(rule.response_header_modifier.is_some());
    let backend = &rule.backends[0];
    assert_eq!(
        backend
            .request_header_modifier
            .as_ref()
            .map(|m| m.set[0].0.as_str()),
        Some("x-e")
    );
    assert!(backend.response_header_modifier.is_some());
}

#[test]
fn mirrors_and_their_shares() {
    let (route, issues) = compile(&format!(
        "http:
- mirror: {{host: flights, port: {{number: 8080}}}}
  mirrorPercentage: {{value: 25.5}}
  {ROUTE}
- mirrors:
  - {{destination: {{host: hotels}}}}
  - {{destination: {{host: hotels}}, percentage: {{value: 150}}}}
  {ROUTE}"
    ));
    assert_eq!(
        fields(&issues),
        vec![("spec.http[1].mirrors[1].value", Severity::Error)]
    );
    assert_eq!(route.rules[0].mirrors.len(), 1);
    assert_eq!(route.rules[0].mirrors[0].percent, 25.5);
    let shares: Vec<f64> = route.rules[1].mirrors.iter().map(|m| m.percent).collect();
    assert_eq!(shares, vec![100.0, 100.0]);
}

#[test]
fn cors_policy_allows_exact_and_prefix_origins() {
    let route = compile_clean(&format!(
        "http:
- corsPolicy:
    allowOrigins: [{{exact: 'https://a.example'}}, {{prefix: 'https://b.'}}]
    allowMethods: [GET, POST]
    allowCredentials: true
    maxAge: 24h
  {ROUTE}"
    ));
    let cors = route.rules[0].cors.as_ref().expect("cors");
    assert!(!cors.response_headers("https://a.example").is_empty());
    assert!(!cors.response_headers("https://b.example").is_empty());
    assert!(cors.response_headers("https://c.example").is_empty());
    let preflight = cors
        .preflight_response("https://a.example", Some("POST"), None)
        .expect("allowed");
    assert!(preflight
        .iter()
        .any(|(n, v)| n == "access-control-max-age" && v == "86400"));
    // Istio's default: a preflight from another origin goes to the backend.
    assert!(cors.forwards_unmatched_preflights());
    // Without maxAge, Envoy sends no max age.
    let route = compile_clean(&format!(
        "http:\n- corsPolicy: {{allowOrigins: [{{exact: '*'}}], unmatchedPreflights: IGNORE}}\n  {ROUTE}"
    ));
    let cors = route.rules[0].cors.as_ref().expect("cors");
    let preflight = cors
        .preflight_response("https://x.example", Some("GET"), None)
        .expect("allowed");
    assert!(!preflight.iter().any(|(n, _)| n == "access-control-max-age"));
}

#[test]
fn policy_fields_are_compiled_by_resilience_and_reported_here() {
    let (route, issues) = compile(&format!(
        "http:
- timeout: 2s
  {ROUTE}
- timeout: soon
  {ROUTE}"
    ));
    assert_eq!(
        fields(&issues),
        vec![("spec.http[1].timeout", Severity::Error)]
    );
    assert_eq!(
        route.rules[0].policy.timeouts.request,
        Some(std::time::Duration::from_secs(2))
    );
}

#[test]
fn tcp_and_tls_rules_are_reported_not_applied() {
    let (route, issues) = compile("tcp: [{route: []}]\ntls: [{route: []}]");
    assert!(route.rules.is_empty());
    assert_eq!(
        fields(&issues),
        vec![
            ("spec.tcp", Severity::Warning),
            ("spec.tls", Severity::Warning)
        ]
    );
}
