use super::*;
use crate::attrs::HeaderEdit;
use http::{HeaderMap, HeaderValue};
use serde_json::json;

fn parse(v: Value) -> Result<Option<ExtAuthzProvider>, String> {
    ExtAuthzProvider::parse(&v)
}

fn http(spec: Value) -> ExtAuthzProvider {
    parse(json!({"name": "ext", "envoyExtAuthzHttp": spec}))
        .expect("valid")
        .expect("ext_authz")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

#[test]
fn reads_every_field_of_an_http_provider() {
    let p = http(json!({
        "service": "foo/ext-authz.foo.svc.cluster.local",
        "port": "8000",
        "timeout": "1.5s",
        "pathPrefix": "/check",
        "failOpen": true,
        "statusOnError": "500",
        "includeRequestHeadersInCheck": ["X-Ext-Authz", "x-b3-*", "*-token"],
        "includeAdditionalHeadersInCheck": {"x-z": "1", "X-A": "%REQ(:path)%"},
        "includeRequestBodyInCheck": {"maxRequestBytes": 100, "allowPartialMessage": true, "packAsBytes": true},
        "headersToUpstreamOnAllow": ["x-ext-authz-*"],
        "headersToDownstreamOnAllow": ["x-allow"],
        "headersToDownstreamOnDeny": ["x-deny"],
    }));
    assert_eq!(p.name, "ext");
    assert_eq!(p.protocol, ExtAuthzProtocol::Http);
    assert_eq!(
        p.service_parts(),
        (Some("foo"), "ext-authz.foo.svc.cluster.local")
    );
    assert_eq!(p.port, 8000);
    assert_eq!(p.timeout, Duration::from_millis(1500));
    assert_eq!(p.path_prefix, "/check");
    assert!(p.fail_open);
    assert_eq!(p.status_on_error, 500);
    assert_eq!(
        p.include_request_headers.0,
        vec![
            HeaderPattern::Exact("x-ext-authz".into()),
            HeaderPattern::Prefix("x-b3-".into()),
            HeaderPattern::Suffix("-token".into()),
        ]
    );
    assert_eq!(
        p.additional_headers,
        vec![
            ("x-a".to_string(), "%REQ(:path)%".to_string()),
            ("x-z".to_string(), "1".to_string())
        ],
        "sorted by name, as istiod writes them"
    );
    assert_eq!(
        p.include_body,
        Some(BodyInCheck {
            max_request_bytes: 100,
            allow_partial_message: true,
            pack_as_bytes: true
        })
    );
    assert!(p.headers_to_upstream_on_allow.matches("x-ext-authz-check"));
    assert!(p.headers_to_downstream_on_allow.matches("x-allow"));
    assert!(p.headers_to_downstream_on_deny.matches("x-deny"));
}

#[test]
fn defaults_are_istios() {
    let p = http(json!({"service": "authz.ns.svc.cluster.local", "port": 9000}));
    assert_eq!(p, {
        ExtAuthzProvider::new(
            "ext",
            "authz.ns.svc.cluster.local",
            9000,
            ExtAuthzProtocol::Http,
        )
    });
    assert_eq!(p.timeout, Duration::from_secs(600));
    assert_eq!(p.status_on_error, 403);
    assert!(!p.fail_open);
    assert_eq!(p.service_parts(), (None, "authz.ns.svc.cluster.local"));
}

#[test]
fn grpc_providers_and_other_providers() {
    let p = parse(json!({"name": "g", "envoyExtAuthzGrpc": {
        "service": "127.0.0.1", "port": 9000, "timeout": "250ms", "fail_open": true,
        "statusOnError": "503"}}))
    .expect("valid")
    .expect("ext_authz");
    assert_eq!(p.protocol, ExtAuthzProtocol::Grpc);
    assert_eq!(p.timeout, Duration::from_millis(250));
    assert!(
        p.fail_open,
        "snake_case names are accepted, as protojson does"
    );
    assert_eq!(p.status_on_error, 503);
    assert_eq!(
        parse(json!({"name": "otel", "opentelemetry": {"service": "x", "port": 4317}})),
        Ok(None)
    );
}

#[test]
fn the_deprecated_header_list_is_read_only_without_the_new_one() {
    let p = http(json!({"service": "a", "port": 1, "includeHeadersInCheck": ["x-old"]}));
    assert!(p.include_request_headers.matches("x-old"));
    let p = http(
        json!({"service": "a", "port": 1, "includeHeadersInCheck": ["x-old"],
        "includeRequestHeadersInCheck": ["x-new"]}),
    );
    assert!(!p.include_request_headers.matches("x-old"));
    assert!(p.include_request_headers.matches("x-new"));
}

#[test]
fn bad_values_name_the_field() {
    // Each case: one field of an otherwise valid provider, and the field the error names.
    let cases = [
        ("service", json!(null), "service"),
        ("service", json!("a b"), "service"),
        ("port", json!(null), "port"),
        ("port", json!(0), "port"),
        ("port", json!(70000), "port"),
        ("timeout", json!("soon"), "timeout"),
        ("timeout", json!(3), "timeout"),
        ("statusOnError", json!("999"), "statusOnError"),
        ("statusOnError", json!("0"), "statusOnError"),
        ("statusOnError", json!("abc"), "statusOnError"),
        ("failOpen", json!("yes"), "failOpen"),
        ("pathPrefix", json!("check"), "pathPrefix"),
        ("pathPrefix", json!("/a b"), "pathPrefix"),
        (
            "headersToUpstreamOnAllow",
            json!(["x", "*"]),
            "headersToUpstreamOnAllow[1]",
        ),
        (
            "headersToDownstreamOnDeny",
            json!("x"),
            "headersToDownstreamOnDeny",
        ),
        (
            "includeAdditionalHeadersInCheck",
            json!({"x": 1}),
            "includeAdditionalHeadersInCheck.x",
        ),
        (
            "includeAdditionalHeadersInCheck",
            json!({"bad name": "1"}),
            "includeAdditionalHeadersInCheck.bad name",
        ),
        (
            "includeRequestBodyInCheck",
            json!({"maxRequestBytes": -1}),
            "includeRequestBodyInCheck.maxRequestBytes",
        ),
    ];
    for (key, value, field) in cases {
        let mut spec = json!({"service": "a", "port": 1});
        spec[key] = value;
        let err = parse(json!({"name": "ext", "envoyExtAuthzHttp": spec.clone()}))
            .expect_err(&format!("{spec} is invalid"));
        assert!(
            err.starts_with(&format!("envoyExtAuthzHttp.{field}:")),
            "{spec}: {err}"
        );
    }
    let err = parse(json!({"envoyExtAuthzGrpc": {"service": "a", "port": 1}})).expect_err("name");
    assert!(err.starts_with("name:"), "{err}");
    let err = parse(json!({"name": "g", "envoyExtAuthzGrpc": {"service": "a", "port": 1, "statusOnError": "42"}}))
        .expect_err("status");
    assert!(err.starts_with("envoyExtAuthzGrpc.statusOnError:"), "{err}");
}

#[test]
fn header_patterns_match_case_insensitively() {
    let table = [
        ("x-ext-authz", "x-ext-authz", true),
        ("X-Ext-Authz", "x-ext-authz", true),
        ("x-ext-authz", "x-ext-authz-2", false),
        ("x-ext-*", "x-ext-authz", true),
        ("x-ext-*", "x-ext-", true),
        ("x-ext-*", "x-other", false),
        ("*-Token", "x-token", true),
        ("*-token", "token", false),
        ("*", "anything", false),
    ];
    for (pattern, name, want) in table {
        let got = HeaderPattern::parse(pattern).is_ok_and(|p| p.matches(name));
        assert_eq!(got, want, "{pattern} vs {name}");
    }
}

#[test]
fn the_http_check_carries_what_envoy_sends() {
    let p = http(json!({"service": "a", "port": 1, "pathPrefix": "/verify",
        "includeRequestHeadersInCheck": ["x-ext-authz", "x-multi"],
        "includeAdditionalHeadersInCheck": {"x-ext-authz": "fixed", "x-orig": "%REQ(:method)% %REQ(:path)% %REQ(x-multi)% %REQ(x-none)%|"}}));
    let req = headers(&[
        ("host", "web.shop"),
        ("authorization", "Bearer t"),
        ("x-ext-authz", "allow"),
        ("x-multi", "1"),
        ("x-multi", "2"),
        ("x-other", "no"),
        ("content-length", "12"),
        ("connection", "keep-alive"),
    ]);
    let check = p.http_check("POST", "web.shop:8080", "/a/b?q=1", &req, None);
    assert_eq!(check.method, "POST");
    assert_eq!(check.path, "/verify/a/b?q=1");
    let got: Vec<(&str, &str)> = check
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("host", "web.shop:8080"),
            ("content-length", "0"),
            ("authorization", "Bearer t"),
            ("x-multi", "1,2"),
            ("x-ext-authz", "fixed"),
            ("x-orig", "POST /a/b?q=1 1,2 |"),
            ("x-envoy-internal", "true"),
            ("x-envoy-expected-rq-timeout-ms", "600000"),
        ]
    );
    let bare = http(json!({"service": "a", "port": 1}));
    let check = bare.http_check("GET", "h", "/", &req, None);
    let names: Vec<&str> = check.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "host",
            "content-length",
            "authorization",
            "x-envoy-internal",
            "x-envoy-expected-rq-timeout-ms"
        ]
    );
}

#[test]
fn only_200_allows_and_5xx_is_a_failure() {
    let p = http(json!({"service": "a", "port": 1,
        "headersToUpstreamOnAllow": ["x-user", "x-auth-*"],
        "headersToDownstreamOnAllow": ["x-seen"]}));
    let answer = headers(&[
        ("x-user", "alice"),
        ("x-user", "bob"),
        ("x-auth-level", "2"),
        ("x-seen", "yes"),
        ("x-private", "no"),
        (
            "x-envoy-auth-headers-to-remove",
            "authorization, x-drop, host, :path",
        ),
    ]);
    let allowed = p
        .http_answer(200, &answer, String::new())
        .expect("not a failure")
        .expect("allowed");
    assert_eq!(
        allowed.upstream,
        vec![
            HeaderEdit::Set("x-user".into(), "bob".into()),
            HeaderEdit::Set("x-auth-level".into(), "2".into()),
            HeaderEdit::Remove("authorization".into()),
            HeaderEdit::Remove("x-drop".into()),
        ],
        "the last value of a repeated header wins; Host and pseudo headers are never removed"
    );
    assert_eq!(
        allowed.downstream,
        vec![("x-seen".to_string(), "yes".to_string())]
    );
    assert!(p.http_answer(503, &answer, "x".into()).is_err());
    assert!(p
        .http_answer(500, &HeaderMap::new(), String::new())
        .is_err());
    let bare = http(json!({"service": "a", "port": 1}));
    let allowed = bare
        .http_answer(200, &answer, String::new())
        .expect("ok")
        .expect("allowed");
    assert_eq!(
        allowed.upstream,
        vec![
            HeaderEdit::Remove("authorization".into()),
            HeaderEdit::Remove("x-drop".into())
        ],
        "without headersToUpstreamOnAllow no header of the server goes upstream"
    );
}

#[test]
fn denials_pass_the_status_body_and_the_chosen_headers() {
    let answer = headers(&[
        ("x-ext-authz-check-result", "denied"),
        ("x-other", "1"),
        ("www-authenticate", "Bearer"),
        ("content-type", "text/plain"),
        ("content-length", "6"),
        ("host", "authz"),
        ("date", "today"),
    ]);
    let all = http(json!({"service": "a", "port": 1, "headersToUpstreamOnAllow": ["x-up"]}));
    let reply = all
        .http_answer(401, &answer, "denied".into())
        .expect("not a failure")
        .expect_err("denied");
    assert_eq!(reply.status, 401);
    assert_eq!(reply.body, "denied");
    let names: Vec<&str> = reply.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "x-ext-authz-check-result",
            "x-other",
            "www-authenticate",
            "content-type"
        ],
        "an empty headersToDownstreamOnDeny passes everything but Host"
    );
    let some =
        http(json!({"service": "a", "port": 1, "headersToDownstreamOnDeny": ["x-ext-authz-*"]}));
    let reply = some
        .http_answer(302, &answer, String::new())
        .expect("not a failure")
        .expect_err("denied");
    assert_eq!(reply.status, 302);
    let names: Vec<&str> = reply.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, vec!["x-ext-authz-check-result", "www-authenticate"]);
}

#[test]
fn failures_follow_fail_open_and_status_on_error() {
    let closed = http(json!({"service": "a", "port": 1}));
    assert_eq!(
        closed.on_failure(),
        Err(LocalReply {
            status: 403,
            body: String::new(),
            headers: Vec::new()
        })
    );
    let status = http(json!({"service": "a", "port": 1, "statusOnError": "503"}));
    assert_eq!(status.on_failure().map_err(|r| r.status), Err(503));
    let open = http(json!({"service": "a", "port": 1, "failOpen": true, "statusOnError": "503"}));
    assert_eq!(open.on_failure(), Ok(Allowed::default()));
}

#[test]
fn bodies_in_checks_follow_the_buffer_settings() {
    let none = http(json!({"service": "a", "port": 1}));
    assert_eq!(none.check_body(b"hello"), Ok(None));
    let cut = http(json!({"service": "a", "port": 1,
        "includeRequestBodyInCheck": {"maxRequestBytes": 4, "allowPartialMessage": true}}));
    let body = cut.check_body(b"hello").expect("cut").expect("a body");
    assert_eq!((body.bytes, body.partial), (&b"hell"[..], true));
    let check = cut.http_check("POST", "h", "/", &HeaderMap::new(), Some(body));
    assert!(check
        .headers
        .contains(&("content-length".into(), "4".into())));
    assert!(check
        .headers
        .contains(&(PARTIAL_BODY_HEADER.into(), "true".into())));
    let whole = cut.check_body(b"hi").expect("fits").expect("a body");
    assert_eq!((whole.bytes, whole.partial), (&b"hi"[..], false));
    let strict = http(json!({"service": "a", "port": 1,
        "includeRequestBodyInCheck": {"maxRequestBytes": 4}}));
    assert_eq!(strict.check_body(b"hello").map_err(|r| r.status), Err(413));
}
