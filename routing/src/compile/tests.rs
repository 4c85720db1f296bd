use super::*;
use crate::fixtures::{route, FakeLookup, TestRequest};
use crate::{BackendTarget, RouteTable, ServiceKey, Severity};

/// A route in travel-agency whose spec is `spec` (YAML, indented by two spaces).
fn travel_route(spec: &str) -> HttpRoute {
    route(&format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: flights
  namespace: travel-agency
  creationTimestamp: 2024-01-01T00:00:00Z
spec:
  parentRefs:
  - {{group: '', kind: Service, name: flights, port: 8080}}
{spec}"
    ))
}

fn compile(route: &HttpRoute) -> (CompiledRoute, Vec<Issue>) {
    compile_http_route(route, &FakeLookup::default())
}

fn hotels(port: u16) -> BackendTarget {
    BackendTarget::Service {
        service: ServiceKey {
            namespace: "travel-agency".to_owned(),
            name: "hotels".to_owned(),
        },
        port,
        subset: None,
    }
}

fn flights(port: u16) -> BackendTarget {
    BackendTarget::Service {
        service: ServiceKey {
            namespace: "travel-agency".to_owned(),
            name: "flights".to_owned(),
        },
        port,
        subset: None,
    }
}

#[test]
fn valid_route_compiles_cleanly() {
    let route = travel_route(
        "  rules:
  - name: canary
    matches:
    - path: {type: PathPrefix, value: /api}
      method: GET
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: X-Route, value: canary}]
        remove: [X-Debug]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: X-Served-By, value: waypoint}]
    backendRefs:
    - name: flights
      port: 8080
      weight: 90
    - name: flights
      port: 9090
      weight: 10
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{name: X-Version, value: v2}]
  - backendRefs:
    - {name: hotels, port: 8080}
",
    );
    let (compiled, issues) = compile(&route);
    assert!(issues.is_empty(), "{issues:?}");
    assert_eq!(compiled.id.to_string(), "travel-agency/flights");
    assert_eq!(compiled.created_at_nanos, Some(1_704_067_200_000_000_000));
    assert_eq!(compiled.rules.len(), 2);

    let canary = &compiled.rules[0];
    assert_eq!((canary.index, canary.name.as_deref()), (0, Some("canary")));
    assert_eq!(canary.matches.len(), 1);
    let backends: Vec<_> = canary
        .backends
        .iter()
        .map(|b| (b.target.clone(), b.weight))
        .collect();
    assert_eq!(backends, [(flights(8080), 90), (flights(9090), 10)]);
    assert!(canary.backends[0].request_header_modifier.is_none());
    let backend_modifier = canary.backends[1].request_header_modifier.as_ref();
    assert_eq!(backend_modifier.map(|m| m.set.len()), Some(1));

    let mut request = http::HeaderMap::new();
    request.insert("x-debug", http::HeaderValue::from_static("1"));
    canary
        .request_header_modifier
        .as_ref()
        .expect("rule request modifier")
        .apply(&mut request);
    assert_eq!(
        request.get("x-route").map(|v| v.as_bytes()),
        Some(&b"canary"[..])
    );
    assert!(!request.contains_key("x-debug"));
    let response = canary
        .response_header_modifier
        .as_ref()
        .expect("response modifier");
    assert_eq!(response.add[0].0.as_str(), "x-served-by");

    // A rule without matches matches every path, with weight 1 by default.
    let fallback = &compiled.rules[1];
    assert_eq!(fallback.index, 1);
    assert_eq!(fallback.backends[0].weight, 1);
    let table = RouteTable::new(vec![std::sync::Arc::new(compiled.clone())]);
    let get = TestRequest::get("/api/flights");
    let post = TestRequest::new("POST", "/api/flights", &[]);
    assert_eq!(table.find(&get.view()).map(|m| m.rule.index), Some(0));
    assert_eq!(table.find(&post.view()).map(|m| m.rule.index), Some(1));
}

/// (what, spec YAML, expected (severity, reason, field) for every issue, in order).
type Case = (
    &'static str,
    &'static str,
    Vec<(Severity, IssueReason, &'static str)>,
);

#[test]
fn issues_have_exact_fields_and_reasons() {
    use IssueReason::*;
    use Severity::*;
    let cases: Vec<Case> = vec![
        (
            "bad regex",
            "  rules:
  - backendRefs: [{name: flights, port: 8080}]
  - matches:
    - path: {type: RegularExpression, value: '/flights/(['}
    backendRefs: [{name: flights, port: 8080}]
",
            vec![(Error, Invalid, "spec.rules[1].matches[0].path.value")],
        ),
        (
            "unknown backend and unknown port",
            "  rules:
  - backendRefs:
    - {name: flightz, port: 8080}
    - {name: flights, port: 7070}
",
            vec![
                (Error, BackendNotFound, "spec.rules[0].backendRefs[0]"),
                (Error, BackendNotFound, "spec.rules[0].backendRefs[1]"),
            ],
        ),
        (
            "wrong backend kind",
            "  rules:
  - backendRefs:
    - {group: multicluster.x-k8s.io, kind: ServiceImport, name: flights, port: 8080}
    - {kind: Pod, name: flights, port: 8080}
    - {group: core, kind: Service, name: flights, port: 8080}
",
            vec![
                (Error, InvalidKind, "spec.rules[0].backendRefs[0].group"),
                (Error, InvalidKind, "spec.rules[0].backendRefs[1].kind"),
            ],
        ),
        (
            "missing and out-of-range backend port",
            "  rules:
  - backendRefs:
    - {name: flights}
    - {name: flights, port: 70000}
",
            vec![
                (Error, Invalid, "spec.rules[0].backendRefs[0].port"),
                (Error, Invalid, "spec.rules[0].backendRefs[1].port"),
            ],
        ),
        (
            "cross-namespace backend",
            "  rules:
  - backendRefs:
    - {name: flights, namespace: other, port: 8080}
    - {name: flights, namespace: travel-agency, port: 8080}
",
            vec![(
                Error,
                RefNotPermitted,
                "spec.rules[0].backendRefs[0].namespace",
            )],
        ),
        (
            "weight out of range",
            "  rules:
  - backendRefs:
    - {name: flights, port: 8080, weight: 1000001}
    - {name: flights, port: 8080, weight: -1}
",
            vec![
                (Error, Invalid, "spec.rules[0].backendRefs[0].weight"),
                (Error, Invalid, "spec.rules[0].backendRefs[1].weight"),
            ],
        ),
        (
            "filter problems, rule and backend level",
            "  rules:
  - filters:
    - type: RequestRedirect
      requestRedirect: {statusCode: 301}
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: a, value: b}]}
    - type: URLRewrite
      urlRewrite: {hostname: example.com}
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: Filter, name: f}
    - type: RequestRedirect
      requestRedirect: {statusCode: 200, port: 0, hostname: 'a b'}
    backendRefs:
    - name: flights
      port: 8080
      filters:
      - type: CORS
        cors: {allowOrigins: ['*']}
      - type: RequestMirror
        requestMirror: {backendRef: {name: hotels, port: 8080}}
      - type: ExternalAuth
        externalAuth: {protocol: HTTP, backendRef: {name: auth}}
",
            vec![
                (Error, Unsupported, "spec.rules[0].filters[3].type"),
                (
                    Error,
                    Invalid,
                    "spec.rules[0].filters[4].requestRedirect.statusCode",
                ),
                (
                    Error,
                    Invalid,
                    "spec.rules[0].filters[4].requestRedirect.port",
                ),
                (
                    Error,
                    Invalid,
                    "spec.rules[0].filters[4].requestRedirect.hostname",
                ),
                (Error, Invalid, "spec.rules[0].filters[4].type"),
                (Error, Invalid, "spec.rules[0].filters"),
                (
                    Error,
                    Unsupported,
                    "spec.rules[0].backendRefs[0].filters[0].type",
                ),
                (
                    Error,
                    Unsupported,
                    "spec.rules[0].backendRefs[0].filters[1].type",
                ),
                (
                    Error,
                    Unsupported,
                    "spec.rules[0].backendRefs[0].filters[2].type",
                ),
            ],
        ),
        (
            "header modifier problems",
            "  rules:
  - filters:
    - type: RequestHeaderModifier
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: 'bad name', value: x}]
        add: [{name: ok, value: x}]
    - type: ResponseHeaderModifier
      responseHeaderModifier: {remove: [x]}
",
            vec![
                (
                    Error,
                    Invalid,
                    "spec.rules[0].filters[0].requestHeaderModifier",
                ),
                (
                    Error,
                    Invalid,
                    "spec.rules[0].filters[1].responseHeaderModifier.set[0].name",
                ),
                (Error, Invalid, "spec.rules[0].filters[2].type"),
            ],
        ),
        (
            "timeouts, retry and session persistence",
            "  rules:
  - timeouts: {request: 10s}
    retry: {attempts: 3}
    sessionPersistence: {sessionName: s}
    backendRefs: [{name: flights, port: 8080}]
",
            vec![(Error, Unsupported, "spec.rules[0].sessionPersistence")],
        ),
        (
            "hostnames",
            "  hostnames: [flights.example.com]
  rules:
  - backendRefs: [{name: flights, port: 8080}]
",
            vec![(Warning, Unsupported, "spec.hostnames")],
        ),
        (
            "every problem is reported, not just the first",
            "  rules:
  - matches:
    - path: {type: Exact, value: no-slash}
    - headers: [{name: x, type: RegularExpression, value: '('}]
    - queryParams: [{name: q, type: RegularExpression, value: '+'}]
    backendRefs: [{name: nope, port: 1}]
",
            vec![
                (Error, Invalid, "spec.rules[0].matches[0].path.value"),
                (Error, Invalid, "spec.rules[0].matches[1].headers[0].value"),
                (
                    Error,
                    Invalid,
                    "spec.rules[0].matches[2].queryParams[0].value",
                ),
                (Error, BackendNotFound, "spec.rules[0].backendRefs[0]"),
            ],
        ),
    ];
    for (what, spec, expected) in cases {
        let (_, issues) = compile(&travel_route(spec));
        let got: Vec<_> = issues
            .iter()
            .map(|i| (i.severity, i.reason, i.field.as_str()))
            .collect();
        assert_eq!(got, expected, "{what}: {issues:#?}");
    }
}

#[test]
fn issue_messages() {
    let cases: &[(&str, &str)] = &[
        (
            "  rules:\n  - backendRefs: [{name: flightz, port: 8080}]\n",
            "service travel-agency/flightz not found",
        ),
        (
            "  rules:\n  - backendRefs: [{name: flights, port: 7070}]\n",
            "service travel-agency/flights has no port 7070",
        ),
        (
            "  rules:\n  - backendRefs: [{name: flights, namespace: x, port: 8080}]\n",
            "backendRef to Service x/flights crosses namespaces and no ReferenceGrant in namespace x allows it; add one (from this route's kind and namespace travel-agency, to kind Service)",
        ),
        (
            "  rules:\n  - filters: [{type: ExtensionRef, extensionRef: {group: g, kind: K, name: n}}]\n",
            "filter ExtensionRef is not supported, so requests matching this rule are answered \
             with 500; this waypoint has no extension filters: remove the filter, or use a \
             built-in one (header modifiers, redirect, rewrite, mirror, CORS)",
        ),
        (
            "  rules:\n  - backendRefs: [{name: flights, port: 8080, filters: [{type: URLRewrite, urlRewrite: {hostname: h}}]}]\n",
            "filter URLRewrite is not supported on a backendRef; move it to the rule's filters, \
             where it applies to every backend of the rule",
        ),
        (
            "  hostnames: [a.example]\n",
            "hostnames are ignored for Service parentRefs (GAMMA)",
        ),
        (
            "  rules:\n  - timeouts: {request: 1x}\n",
            "\"1x\" is not a Gateway API duration (Invalid duration format); write e.g. 10s, \
             500ms or 1m30s; it is ignored",
        ),
    ];
    for (spec, message) in cases {
        let (_, issues) = compile(&travel_route(spec));
        let messages: Vec<_> = issues.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(messages, [*message], "{spec}");
    }
    let (_, issues) = compile(&travel_route(
        "  rules:\n  - matches: [{path: {type: RegularExpression, value: '(['}}]\n",
    ));
    assert!(
        issues[0]
            .message
            .starts_with("invalid regular expression: "),
        "{}",
        issues[0].message
    );
}

#[test]
fn invalid_backends_keep_their_place_and_reason() {
    let (compiled, _) = compile(&travel_route(
        "  rules:
  - backendRefs:
    - {name: flights, port: 8080, weight: 3}
    - {name: flightz, port: 8080, weight: 1}
    - {kind: Pod, name: p, port: 8080}
    - {name: flights}
",
    ));
    let targets: Vec<_> = compiled.rules[0]
        .backends
        .iter()
        .map(|b| (b.target.clone(), b.weight))
        .collect();
    let invalid = |reason: &str| BackendTarget::Invalid {
        reason: reason.to_owned(),
    };
    assert_eq!(
        targets,
        [
            (flights(8080), 3),
            (invalid("service travel-agency/flightz not found"), 1),
            (
                invalid("backendRef kind Pod is not supported; forward to a core Service"),
                1
            ),
            (
                invalid("port is required when the backendRef is a Service"),
                1
            ),
        ]
    );
}

#[test]
fn unsupported_filters_fail_closed_and_supported_ones_apply() {
    let (compiled, _) = compile(&travel_route(
        "  rules:
  - filters:
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: Filter, name: f}
    - type: RequestHeaderModifier
      requestHeaderModifier: {add: [{name: x, value: y}]}
    backendRefs: [{name: flights, port: 8080}]
",
    ));
    let rule = &compiled.rules[0];
    assert_eq!(rule.backends.len(), 1);
    assert_eq!(
        rule.request_header_modifier.as_ref().map(|m| m.add.len()),
        Some(1)
    );
    assert!(rule.response_header_modifier.is_none());
    assert_eq!(
        rule.unsupported_filter.as_deref(),
        Some("filter ExtensionRef at spec.rules[0].filters[0] is not supported")
    );
}

#[test]
fn rule_features_compile() {
    let (compiled, issues) = compile(&travel_route(
        "  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: New.Example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new/}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: hotels, port: 8080}, percent: 20}
    - type: RequestMirror
      requestMirror: {backendRef: {name: flights, port: 9090}, fraction: {numerator: 1, denominator: 8}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: nope, port: 1}}
    - type: CORS
      cors: {allowOrigins: ['*']}
    timeouts: {request: 10s, backendRequest: 1500ms}
    retry: {codes: [503], attempts: 3, backoff: 10ms}
    backendRefs: [{name: flights, port: 8080}]
  - matches: [{path: {type: Exact, value: /go}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https, statusCode: 308, path: {type: ReplaceFullPath, replaceFullPath: /gone}}
",
    ));
    let fields: Vec<_> = issues.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.rules[0].filters[3].requestMirror.backendRef"],
        "{issues:#?}"
    );
    let rule = &compiled.rules[0];
    assert_eq!(
        rule.rewrite,
        Some(crate::UrlRewrite {
            hostname: Some("new.example".to_owned()),
            path: Some(crate::PathModifier::ReplacePrefixMatch("/new".to_owned())),
        })
    );
    let mirrors: Vec<_> = rule
        .mirrors
        .iter()
        .map(|m| (m.target.clone(), m.percent))
        .collect();
    assert_eq!(mirrors[0], (hotels(8080), 20.0));
    assert_eq!(mirrors[1], (flights(9090), 12.5));
    assert!(matches!(mirrors[2].0, BackendTarget::Invalid { .. }));
    assert_eq!(mirrors[2].1, 100.0);
    assert!(rule.cors.is_some());
    assert_eq!(
        rule.policy.timeouts.request,
        Some(std::time::Duration::from_secs(10))
    );
    assert_eq!(
        rule.policy.timeouts.backend_request,
        Some(std::time::Duration::from_millis(1500))
    );
    assert_eq!(
        rule.policy.retry,
        Some(resilience::RetryPolicy {
            codes: vec![503],
            attempts: 3,
            backoff: resilience::Backoff::with_base(std::time::Duration::from_millis(10)),
            ..resilience::RetryPolicy::default()
        })
    );
    let redirect = compiled.rules[1].redirect.as_ref().expect("redirect");
    assert_eq!(redirect.scheme, Some("https"));
    assert_eq!(redirect.status, 308);
    assert_eq!(
        redirect.path,
        Some(crate::PathModifier::ReplaceFullPath("/gone".to_owned()))
    );
}

#[test]
fn sparse_routes_do_not_panic() {
    let routes = [
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {}\nspec: {}\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{}]\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\nspec:\n  rules: [{matches: [{}], backendRefs: [{name: ''}]}]\n",
    ];
    for yaml in routes {
        let (compiled, _) = compile(&route(yaml));
        let table = RouteTable::new(vec![std::sync::Arc::new(compiled)]);
        let matched = table.find(&TestRequest::get("/x").view());
        assert!(matched.is_some(), "{yaml}");
    }
    let (compiled, issues) = compile(&route(routes[0]));
    assert_eq!(compiled.id.to_string(), "default/");
    assert_eq!(issues[0].field, "metadata.name");
    assert!(compiled.rules[0].pick_backend(0).is_none());
}
