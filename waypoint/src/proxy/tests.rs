use super::decide::host_without_port;
use super::mirror::shadow_host;
use super::upstream::with_path;
use super::*;
use crate::config::Loaded;
use crate::snapshot::BuildOptions;
use crate::snapshot::Snapshot;
use pingora_error::ErrorType;
use std::time::Duration;
use telemetry::ResponseFlag;

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

/// The decision for a request on the plain listener (no tunnel, no Gateway listener).
fn route(s: &Snapshot, req: &RequestHeader, random: u32) -> Routed {
    decide(s, req, &Downstream::default(), random)
}

fn forwarded(r: &Routed) -> &Upstream {
    match &r.action {
        Action::Forward(up) => up,
        other => panic!("expected a forward, got {other:?}"),
    }
}

fn refused(r: &Routed) -> (u16, &'static str, &str) {
    match &r.action {
        Action::Refuse(x) => (x.status, x.flag.as_str(), x.detail.as_ref()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_service_without_routes_round_robins_its_endpoints() {
    let s = snapshot("");
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = route(&s, &request("web.shop", "/", &[]), 0);
        let up = forwarded(&r);
        seen.push(up.addr.to_string());
        assert_eq!(up.backend.as_ref().map(|k| k.name.as_str()), Some("web"));
        assert!(r.route.is_none());
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
    let r = route(&s, &request("web", "/v2/x?q=1", &[]), 7);
    assert_eq!(forwarded(&r).addr.to_string(), "127.0.0.4:9090");
    assert_eq!(r.route.as_deref(), Some("shop/web"));
    assert_eq!(r.filters.request_modifiers.len(), 1);
    assert_eq!(r.filters.response_modifiers.len(), 1);

    let r = route(&s, &request("web", "/none", &[]), 0);
    let (status, flag, why) = refused(&r);
    assert_eq!((status, flag), (500, "NR"));
    assert!(why.contains("non-zero weight"), "{why}");

    let r = route(&s, &request("web", "/empty", &[]), 0);
    let (status, flag, why) = refused(&r);
    assert_eq!((status, flag), (503, "UH"));
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
        let r = route(&s, &req, 0);
        let (status, flag, why) = refused(&r);
        assert_eq!((status, flag), (404, "NR"));
        assert!(why.contains(want), "{why}");
    }
    let mut no_host = RequestHeader::build("GET", b"/", None).expect("request");
    no_host.remove_header("host");
    let r = route(&s, &no_host, 0);
    assert_eq!(refused(&r).0, 404);
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
    let r = route(&s, &request("web", "/", &[]), 0);
    let (status, _, why) = refused(&r);
    assert_eq!(status, 500);
    assert!(why.contains("ghost"), "{why}");
}

#[test]
fn upstream_failures_map_to_envoy_statuses_and_flags() {
    use ErrorType::*;
    use ResponseFlag::*;
    let (up, down) = (Error::new_up, Error::new_down);
    let cases = [
        (up(ConnectRefused), 503, Some(UpstreamConnectionFailure)),
        (up(ConnectTimedout), 503, Some(UpstreamConnectionFailure)),
        (
            up(TLSHandshakeFailure),
            503,
            Some(UpstreamConnectionFailure),
        ),
        (up(ReadTimedout), 504, Some(UpstreamRequestTimeout)),
        (up(WriteTimedout), 504, Some(UpstreamRequestTimeout)),
        (
            up(ConnectionClosed),
            503,
            Some(UpstreamConnectionTermination),
        ),
        (
            down(ConnectionClosed),
            0,
            Some(DownstreamConnectionTermination),
        ),
        (down(InvalidHTTPHeader), 400, None),
        (Error::new(HTTPStatus(429)), 429, None),
        (Error::new(InternalError), 500, None),
    ];
    for (e, status, flag) in cases {
        let failure = classify_failure(&e);
        assert_eq!((failure.status, failure.flag), (status, flag), "{e}");
    }
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
    let r = route(&s, &request("web.shop:80", "/go/a?b=c", &[]), 0);
    match &r.action {
        Action::Redirect { status, location } => {
            assert_eq!((*status, location.as_str()), (302, "http://web.shop/a?b=c"))
        }
        other => panic!("expected a redirect, got {other:?}"),
    }
    assert_eq!(r.listener_port, 80);

    let r = route(&s, &request("web", "/old/page", &[]), 0);
    let up = forwarded(&r);
    assert_eq!(r.filters.rewrite_host.as_deref(), Some("new.example"));
    assert_eq!(r.filters.rewrite_path.as_deref(), Some("/new/page"));
    assert_eq!(
        up.mirrors.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        ["127.0.0.4:9090"],
        "the 0% mirror never samples"
    );
    assert!(r.filters.cors.is_some());
    assert_eq!(
        r.filters.policy.timeouts.request,
        Some(Duration::from_secs(2))
    );
    assert_eq!(r.filters.policy.retry.as_ref().map(|r| r.attempts), Some(1));

    let mut preflight = request(
        "web",
        "/old/page",
        &[
            ("origin", "https://a.example"),
            ("access-control-request-method", "GET"),
        ],
    );
    preflight.set_method(http::Method::OPTIONS);
    let r = route(&s, &preflight, 0);
    assert!(
        matches!(&r.action, Action::Preflight(a) if a.status == 200),
        "a CORS rule answers the preflight itself: {:?}",
        r.action
    );

    let r = route(&s, &request("web", "/ext", &[]), 0);
    let (status, _, why) = refused(&r);
    assert_eq!(status, 500);
    assert!(why.contains("ExtensionRef"), "{why}");
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

/// A request to `shop/web` port 80 through a tunnel from a client in `namespace`.
fn tunnelled(namespace: &str) -> Downstream {
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 40_000));
    Downstream {
        tunnel: Some(std::sync::Arc::new(crate::hbone::context::TunnelContext {
            source: authz::Identity::new("cluster.local", namespace, "default"),
            peer_addr: peer,
            client_addr: None,
            authority: "10.0.0.1:80".into(),
            baggage: None,
            traceparent: None,
            destination: crate::snapshot::Destination::Service {
                service: routing::ServiceKey {
                    namespace: "shop".into(),
                    name: "web".into(),
                },
                port: 80,
            },
            xfcc: std::sync::OnceLock::new(),
        })),
        ..Downstream::default()
    }
}

#[test]
fn a_virtual_service_routes_by_client_namespace_and_answers_directly() {
    let s = snapshot(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - match: [{sourceNamespace: canary}]
    route: [{destination: {host: v2}}]
  - match: [{uri: {exact: /down}}]
    directResponse: {status: 503, body: {string: down}}
  - route: [{destination: {host: web}}]
",
    );
    let req = request("web.shop", "/", &[]);
    let from_canary = decide(&s, &req, &tunnelled("canary"), 0);
    assert_eq!(forwarded(&from_canary).addr.to_string(), "127.0.0.4:9090");
    assert_eq!(from_canary.route.as_deref(), Some("shop/web"));
    let from_prod = decide(&s, &req, &tunnelled("prod"), 0);
    assert_eq!(
        forwarded(&from_prod)
            .backend
            .as_ref()
            .map(|k| k.name.as_str()),
        Some("web")
    );
    let down = route(&s, &request("web.shop", "/down", &[]), 0);
    assert!(
        matches!(&down.action, Action::Direct { status: 503, body, .. } if body.as_ref() == b"down"),
        "{:?}",
        down.action
    );
}
