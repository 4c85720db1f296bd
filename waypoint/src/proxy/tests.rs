use super::*;
use crate::config::Loaded;
use crate::snapshot::BuildOptions;

const BASE: &str = r#"apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [127.0.0.2]}, {addresses: [127.0.0.3]}]
---
apiVersion: v1
kind: Service
metadata: {name: v2, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: v2-1, namespace: shop, labels: {kubernetes.io/service-name: v2}}
addressType: IPv4
ports: [{name: http, port: 9090}]
endpoints: [{addresses: [127.0.0.4]}]
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: shop}
spec:
  ports: [{name: http, port: 80}]
"#;

fn snapshot(extra: &str) -> Snapshot {
    let mut loaded = Loaded::default();
    let text = if extra.is_empty() {
        BASE.to_string()
    } else {
        format!("{BASE}---\n{extra}")
    };
    crate::config::files_for_tests::parse(std::path::Path::new("t.yaml"), &text, &mut loaded);
    let opts = BuildOptions {
        gateway_class: crate::snapshot::GATEWAY_CLASS.to_string(),
        version: 1,
        gateway: None,
    };
    let (s, _report) = Snapshot::build(&loaded.documents, loaded.errors, &opts);
    s.expect("snapshot")
}

fn request(host: &str, path: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).expect("request");
    req.insert_header("host", host).expect("host");
    for (k, v) in headers {
        req.append_header(k.to_string(), *v).expect("header");
    }
    req
}

fn ctx() -> RequestCtx {
    RequestCtx::new()
}

#[test]
fn a_service_without_routes_round_robins_its_endpoints() {
    let s = snapshot("");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let mut c = ctx();
        decide(&s, &request("web.shop", "/", &[]), None, 0, &mut c).expect("routes");
        seen.push(c.upstream.expect("endpoint").to_string());
        assert_eq!(c.backend.as_ref().map(|k| k.name.as_str()), Some("web"));
        assert!(c.route.is_none());
    }
    assert_eq!(
        seen,
        vec![
            "127.0.0.2:8080",
            "127.0.0.3:8080",
            "127.0.0.2:8080",
            "127.0.0.3:8080"
        ]
    );
}

#[test]
fn routes_pick_backends_and_collect_header_modifiers() {
    let s = snapshot(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-rule, value: "yes"}]}
    backendRefs:
    - name: v2
      port: 80
      filters:
      - type: ResponseHeaderModifier
        responseHeaderModifier: {add: [{name: x-backend, value: v2}]}
  - matches: [{path: {type: Exact, value: /none}}]
    backendRefs: [{name: web, port: 80, weight: 0}]
  - matches: [{path: {type: Exact, value: /empty}}]
    backendRefs: [{name: empty, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web, port: 80}]
"#,
    );
    let mut c = ctx();
    decide(&s, &request("web", "/v2/x?q=1", &[]), None, 7, &mut c).expect("routes");
    assert_eq!(
        c.upstream.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.4:9090")
    );
    assert_eq!(c.route.as_deref(), Some("shop/web"));
    assert_eq!(c.request_modifiers.len(), 1);
    assert_eq!(c.response_modifiers.len(), 1);

    let mut c = ctx();
    let (reply, why) =
        decide(&s, &request("web", "/none", &[]), None, 0, &mut c).expect_err("no weight");
    assert_eq!(reply, LocalReply::InvalidBackend);
    assert!(why.contains("non-zero weight"), "{why}");

    let mut c = ctx();
    let (reply, why) =
        decide(&s, &request("web", "/empty", &[]), None, 0, &mut c).expect_err("no endpoints");
    assert_eq!((reply.status(), reply.flag()), (503, "UH"));
    assert!(why.contains("shop/empty"), "{why}");
}

#[test]
fn misses_are_404_with_a_reason() {
    let s = snapshot(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: only-api, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web, port: 80}]
  rules: [{matches: [{path: {type: PathPrefix, value: /api}}], backendRefs: [{name: web, port: 80}]}]
"#,
    );
    let cases = [
        (
            request("web", "/other", &[]),
            "no rule of the routes of service shop/web port 80 matches GET /other",
        ),
        (
            request("nope.shop", "/", &[]),
            "no service is known as 'nope.shop'",
        ),
        (request("web:8080", "/api", &[]), "has no port 8080"),
    ];
    for (req, want) in cases {
        let mut c = ctx();
        let (reply, why) = decide(&s, &req, None, 0, &mut c).expect_err("miss");
        assert_eq!((reply.status(), reply.flag()), (404, "NR"));
        assert!(why.contains(want), "{why}");
    }
    let mut no_host = RequestHeader::build("GET", b"/", None).expect("request");
    no_host.remove_header("host");
    let (reply, _) = decide(&s, &no_host, None, 0, &mut ctx()).expect_err("no host");
    assert_eq!(reply, LocalReply::NoRoute);
}

#[test]
fn invalid_backends_answer_500_with_the_reason() {
    let s = snapshot(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: broken, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules: [{backendRefs: [{name: ghost, port: 80}]}]
"#,
    );
    let (reply, why) =
        decide(&s, &request("web", "/", &[]), None, 0, &mut ctx()).expect_err("invalid");
    assert_eq!(reply.status(), 500);
    assert!(why.contains("ghost"), "{why}");
}

#[test]
fn upstream_failures_map_to_envoy_statuses_and_flags() {
    let up = |t: ErrorType| classify_failure(&Error::new_up(t));
    assert_eq!(
        (
            up(ErrorType::ConnectRefused).status,
            up(ErrorType::ConnectRefused).flag
        ),
        (503, Some("UF"))
    );
    assert_eq!(
        (
            up(ErrorType::ConnectTimedout).status,
            up(ErrorType::ConnectTimedout).flag
        ),
        (503, Some("UF"))
    );
    assert_eq!(
        (
            up(ErrorType::ReadTimedout).status,
            up(ErrorType::ReadTimedout).flag
        ),
        (504, Some("UT"))
    );
    assert_eq!(
        (
            up(ErrorType::ConnectionClosed).status,
            up(ErrorType::ConnectionClosed).flag
        ),
        (503, Some("UC"))
    );
    assert_eq!(
        classify_failure(&Error::new_down(ErrorType::ConnectionClosed)).status,
        0
    );
    assert_eq!(
        classify_failure(&Error::new(ErrorType::HTTPStatus(429))).status,
        429
    );
}

#[test]
fn matched_rules_record_their_filters() {
    let s = snapshot(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{group: "", kind: Service, name: web}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /go}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
  - matches: [{path: {type: PathPrefix, value: /old/}}]
    filters:
    - type: URLRewrite
      urlRewrite: {hostname: new.example, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: v2, port: 80}}
    - type: RequestMirror
      requestMirror: {backendRef: {name: v2, port: 80}, percent: 0}
    - type: CORS
      cors: {allowOrigins: ['*']}
    timeouts: {request: 2s, backendRequest: 1s}
    retry: {codes: [503], attempts: 1}
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /ext}}]
    filters:
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: Filter, name: f}
    backendRefs: [{name: web, port: 80}]
"#,
    );
    // A redirect needs no backend; the Service port is the listener port and is kept.
    let mut c = ctx();
    decide(
        &s,
        &request("web.shop:80", "/go/a?b=c", &[]),
        None,
        0,
        &mut c,
    )
    .expect("redirect");
    assert_eq!(c.redirect, Some((302, "http://web.shop/a?b=c".to_owned())));
    assert_eq!(c.upstream, None);
    assert_eq!(c.listener_port, 80);

    let mut c = ctx();
    decide(&s, &request("web", "/old/page", &[]), None, 0, &mut c).expect("rewrite");
    assert_eq!(c.redirect, None);
    assert_eq!(c.rewrite_host.as_deref(), Some("new.example"));
    assert_eq!(c.rewrite_path.as_deref(), Some("/new/page"));
    assert_eq!(
        c.mirrors.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        ["127.0.0.4:9090"],
        "the 0% mirror never samples"
    );
    assert!(c.cors.is_some());
    assert_eq!(c.timeouts.request, Some(Duration::from_secs(2)));
    assert_eq!(c.retry.as_ref().map(|r| r.attempts), Some(1));

    let mut c = ctx();
    let (reply, why) =
        decide(&s, &request("web", "/ext", &[]), None, 0, &mut c).expect_err("fails closed");
    assert_eq!(reply.status(), 500);
    assert!(why.contains("ExtensionRef"), "{why}");
}

#[test]
fn attempt_deadline_is_the_tighter_of_both_timeouts() {
    let s = Duration::from_secs;
    let t = |request, backend_request| Timeouts {
        request,
        backend_request,
    };
    assert_eq!(attempt_deadline(&t(None, None), s(5)), None);
    assert_eq!(attempt_deadline(&t(Some(s(10)), None), s(3)), Some(s(7)));
    assert_eq!(
        attempt_deadline(&t(Some(s(10)), Some(s(2))), s(3)),
        Some(s(2))
    );
    assert_eq!(
        attempt_deadline(&t(Some(s(10)), Some(s(2))), s(9)),
        Some(s(1))
    );
    assert_eq!(
        attempt_deadline(&t(Some(s(1)), None), s(3)),
        Some(Duration::ZERO)
    );
    assert_eq!(attempt_deadline(&t(None, Some(s(2))), s(30)), Some(s(2)));
}

#[test]
fn authority_helpers() {
    assert_eq!(host_without_port("web.shop:80"), "web.shop");
    assert_eq!(host_without_port("web.shop"), "web.shop");
    assert_eq!(host_without_port("[::1]:8080"), "[::1]");
    assert_eq!(host_without_port("[::1]"), "[::1]");
    assert_eq!(shadow_host("web.shop:80"), "web.shop-shadow:80");
    assert_eq!(shadow_host("web"), "web-shadow");
    let uri: http::Uri = "/a/b?x=1".parse().expect("uri");
    assert_eq!(with_path(&uri, "/c").expect("uri").to_string(), "/c?x=1");
    let uri: http::Uri = "http://h/a".parse().expect("uri");
    assert_eq!(
        with_path(&uri, "/c").expect("uri").to_string(),
        "http://h/c"
    );
}
