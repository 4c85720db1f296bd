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

pub(crate) fn snapshot(extra: &str) -> Snapshot {
    if extra.is_empty() {
        snapshot_of(BASE)
    } else {
        snapshot_of(&format!("{BASE}---\n{extra}"))
    }
}

/// The snapshot of a folder holding only `text`, built as `run` builds it (the lib tests of
/// other modules use it with their own base objects).
pub(crate) fn snapshot_of(text: &str) -> Snapshot {
    let mut loaded = Loaded::default();
    crate::config::files_for_tests::parse(std::path::Path::new("t.yaml"), text, &mut loaded);
    let opts = BuildOptions {
        gateway_class: crate::snapshot::GATEWAY_CLASS.to_string(),
        version: 1,
        gateway: None,
        trust_domain: crate::snapshot::CLUSTER_DOMAIN.to_string(),
    };
    let (s, _report) = Snapshot::build(&loaded.documents, loaded.errors, &opts);
    s.expect("snapshot")
}

pub(crate) fn request(host: &str, path: &str, headers: &[(&str, &str)]) -> RequestHeader {
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
        Action::Refuse(x) => (
            x.status,
            x.flag.map_or("-", |f| f.as_str()),
            x.detail.as_ref(),
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_service_without_routes_spreads_over_its_endpoints() {
    // Istio's default balancer (no DestinationRule) is LEAST_REQUEST: with nothing in flight,
    // the less loaded of two random endpoints, so both get traffic.
    let s = snapshot("");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let r = route(&s, &request("web.shop", "/", &[]), 0);
        let up = forwarded(&r);
        seen.insert(up.addr.to_string());
        assert_eq!(up.backend.as_ref().map(|k| k.name.as_str()), Some("web"));
        assert!(r.route.is_none());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec!["127.0.0.2:8080", "127.0.0.3:8080"]
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

#[test]
fn rules_get_istios_default_retries_and_unrouted_ports_the_inbound_one() {
    let route_to_web = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
        metadata: {name: web, namespace: shop}\nspec: {parentRefs: [{group: '', kind: Service, \
        name: web}], rules: [{backendRefs: [{name: web, port: 80}]}]}\n";
    let s = snapshot(route_to_web);
    let routed = route(&s, &request("web.shop", "/", &[]), 0);
    assert_eq!(
        routed.filters.policy.retry,
        Some(resilience::RetryPolicy::default())
    );
    let routed = route(&s, &request("v2.shop", "/", &[]), 0);
    assert_eq!(
        routed.filters.policy.retry,
        Some(resilience::RetryPolicy::no_route())
    );
}

#[test]
fn a_retry_moves_to_an_endpoint_not_tried_yet() {
    let s = snapshot("");
    for _ in 0..4 {
        let mut ctx = RequestCtx::new();
        let req = request("web.shop", "/", &[]);
        ctx.routed = Some(route(&s, &req, 0));
        let first = ctx.upstream().map(|u| u.addr).expect("forwarded");
        retry::next_endpoint(&s, &req, &mut ctx, true);
        let second = ctx.upstream().map(|u| u.addr).expect("forwarded");
        assert_ne!(first, second, "the other endpoint");
        assert_eq!(ctx.attempt.tried, [first]);
        retry::next_endpoint(&s, &req, &mut ctx, true);
        assert_eq!(ctx.attempt.tried, [first, second]);
        assert!(ctx.upstream().is_some(), "all tried: any endpoint will do");
    }
    // A single-endpoint service retries the same one.
    let mut ctx = RequestCtx::new();
    let req = request("v2.shop", "/", &[]);
    ctx.routed = Some(route(&s, &req, 0));
    let only = ctx.upstream().map(|u| u.addr).expect("forwarded");
    retry::next_endpoint(&s, &req, &mut ctx, true);
    assert_eq!(ctx.upstream().map(|u| u.addr), Some(only));
}

#[test]
fn attempt_failures_read_as_retry_conditions() {
    use resilience::AttemptFailure as F;
    let up = |t| *Error::new(t).into_up();
    let cases = [
        (
            up(ErrorType::ConnectRefused),
            false,
            Some(F::ConnectFailure),
        ),
        (
            up(ErrorType::ConnectTimedout),
            false,
            Some(F::ConnectFailure),
        ),
        (
            up(ErrorType::TLSHandshakeFailure),
            false,
            Some(F::ConnectFailure),
        ),
        (up(ErrorType::ReadTimedout), false, Some(F::PerTryTimeout)),
        (up(ErrorType::ReadTimedout), true, None),
        (up(ErrorType::ConnectionClosed), false, Some(F::Reset)),
        (up(ErrorType::ReadError), false, Some(F::Reset)),
        (up(ErrorType::H2Error), false, Some(F::Reset)),
        (up(ErrorType::HTTPStatus(503)), false, None),
        (up(ErrorType::InternalError), false, None),
    ];
    for (e, timed_out, want) in cases {
        assert_eq!(retry::attempt_failure(&e, timed_out), want, "{e}");
    }
    let refused = Error::because(
        ErrorType::H2Error,
        "stream refused",
        h2::Error::from(h2::Reason::REFUSED_STREAM),
    );
    assert_eq!(
        retry::attempt_failure(&refused, false),
        Some(F::RefusedStream)
    );
}

#[test]
fn response_headers_read_as_the_retry_conditions_see_them() {
    let mut resp = ResponseHeader::build(200, None).expect("response");
    resp.insert_header("grpc-status", "14").expect("header");
    let view = retry::response_view(&resp);
    assert_eq!(
        (view.status, view.grpc_status, view.rate_limited),
        (200, Some(14), false)
    );
    let mut resp = ResponseHeader::build(429, None).expect("response");
    resp.insert_header("x-envoy-ratelimited", "true")
        .expect("header");
    let view = retry::response_view(&resp);
    assert_eq!(
        (view.status, view.grpc_status, view.rate_limited),
        (429, None, true)
    );
}

#[test]
fn flags_print_as_envoy_lists_them() {
    let record = |flag, also: &[ResponseFlag]| Record {
        flag,
        also: also.to_vec(),
    };
    use ResponseFlag::*;
    assert_eq!(record(None, &[]).flags(), None);
    assert_eq!(
        record(
            Some(UpstreamConnectionFailure),
            &[UpstreamRetryLimitExceeded]
        )
        .flags(),
        Some("URX,UF".to_owned())
    );
    assert_eq!(
        record(Some(FaultInjected), &[DelayInjected]).flags(),
        Some("DI,FI".to_owned())
    );
    assert_eq!(
        record(Some(UpstreamRequestTimeout), &[UpstreamRetryLimitExceeded]).flags(),
        Some("URX,UT".to_owned())
    );
}

#[test]
fn the_backoff_never_outlasts_the_request_timeout() {
    let ms = Duration::from_millis;
    let policy = &resilience::RoutePolicy {
        timeouts: resilience::Timeouts {
            request: Some(ms(100)),
            backend_request: None,
        },
        ..resilience::RoutePolicy::default()
    };
    assert_eq!(retry::capped_backoff(ms(50), Some(policy), ms(80)), ms(20));
    assert_eq!(retry::capped_backoff(ms(50), Some(policy), ms(10)), ms(50));
    assert_eq!(retry::capped_backoff(ms(50), Some(policy), ms(200)), ms(0));
    assert_eq!(retry::capped_backoff(ms(50), None, ms(200)), ms(50));
}

fn faulty(fault: &str) -> Routed {
    let spec: resilience::HttpFaultInjection = serde_json::from_str(fault).expect("fault");
    let mut issues = Vec::new();
    let policy = resilience::RoutePolicy::from_istio(None, None, Some(&spec), "f", &mut issues);
    let s = snapshot("");
    let mut routed = route(&s, &request("web.shop", "/", &[]), 0);
    routed.filters.policy = Arc::new(policy);
    routed
}

#[tokio::test]
async fn faults_delay_then_abort_before_any_upstream_work() {
    let mut routed = faulty(
        r#"{"delay": {"fixedDelay": "20ms", "percentage": {"value": 100}},
            "abort": {"httpStatus": 418, "percentage": {"value": 100}}}"#,
    );
    let mut record = Record::default();
    let start = std::time::Instant::now();
    fault::inject(&request("web.shop", "/", &[]), &mut routed, &mut record).await;
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(refused(&routed), (418, "FI", "fault filter abort"));
    assert_eq!(record.also, [ResponseFlag::DelayInjected]);

    let grpc = r#"{"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}}"#;
    let mut routed = faulty(grpc);
    let req = request("web.shop", "/", &[("content-type", "application/grpc")]);
    fault::inject(&req, &mut routed, &mut Record::default()).await;
    match &routed.action {
        Action::Refuse(r) => assert_eq!((r.status, r.grpc_status), (200, Some(14))),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut routed = faulty(grpc);
    fault::inject(
        &request("web.shop", "/", &[]),
        &mut routed,
        &mut Record::default(),
    )
    .await;
    assert_eq!(
        refused(&routed),
        (200, "FI", "fault filter abort"),
        "not a gRPC client"
    );

    let mut routed = faulty(r#"{"abort": {"httpStatus": 503, "percentage": {"value": 0}}}"#);
    fault::inject(
        &request("web.shop", "/", &[]),
        &mut routed,
        &mut Record::default(),
    )
    .await;
    forwarded(&routed);
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
