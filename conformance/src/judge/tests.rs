use super::*;
use crate::cases::{ExpectedResponse, Redirect, Request};

fn echo_body(path: &str, pod: &str, ns: &str, headers: &[(&str, &str)]) -> Observed {
    let headers: BTreeMap<String, Vec<String>> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
        .collect();
    let body = serde_json::json!({
        "path": path, "host": "example.com", "method": "GET", "proto": "HTTP/1.1",
        "headers": headers, "namespace": ns, "ingress": "", "service": "", "pod": pod, "httpPort": "3000",
    });
    Observed {
        status: 200,
        protocol: "HTTP/1.1".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(body.to_string()),
    }
}

fn case(path: &str, codes: &[u16]) -> Case {
    Case {
        request: Request {
            path: Some(path.into()),
            ..Request::default()
        },
        response: ExpectedResponse {
            status_codes: codes.to_vec(),
            ..ExpectedResponse::default()
        },
        namespace: Some("ns".into()),
        backend: Some("be-v1".into()),
        ..Case::default()
    }
}

/// A 200 case whose backend must see `path`, the `header` and not the `absent` header.
fn case_expecting(path: &str, header: (&str, &str), absent: &str) -> Case {
    Case {
        expected_request: Some(ExpectedRequest {
            path: Some(path.into()),
            headers: [(header.0.to_owned(), header.1.to_owned())].into(),
            absent_headers: vec![absent.into()],
            ..ExpectedRequest::default()
        }),
        ..case(path, &[200])
    }
}

#[test]
fn a_status_408_and_504_stand_in_for_each_other() {
    let c = case("/", &[504]);
    let resp = Observed {
        status: 408,
        ..Observed::default()
    };
    assert_eq!(judge_gateway(&c, "http", &resp), Ok(()));
    let resp = Observed {
        status: 503,
        ..Observed::default()
    };
    assert!(judge_gateway(&c, "http", &resp).is_err());
}

#[test]
fn a_protocol_must_match_when_set() {
    let mut c = case("/", &[200]);
    c.response.protocol = Some("HTTP/2.0".into());
    let mut resp = echo_body("/", "be-v1-abc-def", "ns", &[]);
    assert!(judge_gateway(&c, "http", &resp).is_err());
    resp.protocol = "HTTP/2.0".into();
    assert_eq!(judge_gateway(&c, "http", &resp), Ok(()));
}

#[test]
fn b_echo_fields_are_compared() {
    let c = case("/x?y=1", &[200]);
    assert_eq!(
        judge_gateway(&c, "http", &echo_body("/x?y=1", "be-v1-abc-def", "ns", &[])),
        Ok(())
    );
    // path must match exactly, query included
    assert!(judge_gateway(&c, "http", &echo_body("/x", "be-v1-abc-def", "ns", &[])).is_err());
    // backend prefix
    assert!(judge_gateway(&c, "http", &echo_body("/x?y=1", "be-v2-abc-def", "ns", &[])).is_err());
    // namespace equality
    assert!(judge_gateway(
        &c,
        "http",
        &echo_body("/x?y=1", "be-v1-abc-def", "other", &[])
    )
    .is_err());
}

#[test]
fn b_expected_headers_are_case_insensitive_and_joined() {
    let c = case_expecting("/", ("x-header-add", "a,b"), "X-Gone");
    let mut resp = echo_body("/", "be-v1-a-b", "ns", &[]);
    let mut body: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
    body["headers"]["X-Header-Add"] = serde_json::json!(["a", "b"]);
    resp.body = Bytes::from(body.to_string());
    assert_eq!(judge_gateway(&c, "http", &resp), Ok(()));
    body["headers"]["X-Gone"] = serde_json::json!(["1"]);
    resp.body = Bytes::from(body.to_string());
    assert!(judge_gateway(&c, "http", &resp).is_err());
}

#[test]
fn b_non_json_replies_have_empty_echo_fields() {
    // A gateway-made reply (CORS preflight): path "" expected, namespace "".
    let mut c = case("/", &[200]);
    c.namespace = None;
    c.backend = None;
    c.expected_request = Some(ExpectedRequest {
        path: Some(String::new()),
        ..ExpectedRequest::default()
    });
    c.response.headers = [("Access-Control-Allow-Origin".to_string(), "*".to_string())].into();
    let resp = Observed {
        status: 200,
        headers: vec![("access-control-allow-origin".into(), "*".into())],
        ..Observed::default()
    };
    assert_eq!(judge_gateway(&c, "http", &resp), Ok(()));
}

#[test]
fn b_response_headers_with_whitespace_ignored() {
    let mut c = case("/", &[200]);
    c.response.ignore_whitespace = true;
    c.response.valid_header_values =
        [("X-Methods".to_string(), vec!["GET, POST".to_string()])].into();
    let mut resp = echo_body("/", "be-v1-a-b", "ns", &[]);
    resp.headers.push(("x-methods".into(), "GET,POST".into()));
    assert_eq!(judge_gateway(&c, "http", &resp), Ok(()));
}

fn redirect(scheme: &str, host: &str, port: &str, path: &str) -> Redirect {
    Redirect {
        scheme: scheme.into(),
        host: host.into(),
        port: port.into(),
        path: path.into(),
    }
}

#[test]
fn c_redirect_defaults() {
    let loc = |s: &str| Location::parse(s).expect("parses");
    // Empty expected path = the request path without its query.
    let want = redirect("", "example.org", "", "");
    assert_eq!(
        judge_redirect(&want, "http", "/a?b=c", &loc("http://example.org/a")),
        Ok(())
    );
    // Empty expected port accepts the scheme default, explicit or not.
    assert_eq!(
        judge_redirect(&want, "http", "/a", &loc("http://example.org:80/a")),
        Ok(())
    );
    assert!(judge_redirect(&want, "http", "/a", &loc("http://example.org:8080/a")).is_err());
    // Expected scheme defaults to the request's.
    assert!(judge_redirect(&want, "http", "/a", &loc("https://example.org/a")).is_err());
    let https = redirect("https", "", "", "/a");
    assert_eq!(
        judge_redirect(&https, "http", "/a", &loc("https://x:443/a")),
        Ok(())
    );
    let port = redirect("", "", "8083", "");
    assert_eq!(
        judge_redirect(&port, "http", "/p", &loc("http://h:8083/p")),
        Ok(())
    );
    assert!(judge_redirect(&port, "http", "/p", &loc("http://h/p")).is_err());
}

#[test]
fn c_a_redirect_without_location_fails() {
    let mut c = case("/", &[302]);
    c.redirect = Some(redirect("", "", "", "/x"));
    let resp = Observed {
        status: 302,
        ..Observed::default()
    };
    assert!(judge_gateway(&c, "http", &resp).is_err());
    c.redirect = None;
    assert_eq!(judge_gateway(&c, "http", &resp), Ok(()));
}

#[test]
fn location_parsing() {
    let l = Location::parse("https://example.org:8443/p/q?x=1#f").expect("parses");
    assert_eq!(
        (
            l.scheme.as_str(),
            l.host.as_str(),
            l.port.as_str(),
            l.path.as_str(),
            l.query.as_str()
        ),
        ("https", "example.org", "8443", "/p/q", "x=1")
    );
    let l = Location::parse("/relative?z").expect("parses");
    assert_eq!(
        (l.scheme.as_str(), l.host.as_str(), l.path.as_str()),
        ("", "", "/relative")
    );
    let l = Location::parse("http://[::1]:81").expect("parses");
    assert_eq!(
        (l.host.as_str(), l.port.as_str(), l.path.as_str()),
        ("::1", "81", "")
    );
    assert_eq!(Location::parse(""), None);
}

#[test]
fn host_defaulting() {
    assert_eq!(
        default_host(Some("foo.com"), "http", "127.81.1.1", 8080),
        "foo.com"
    );
    assert_eq!(default_host(None, "http", "127.81.1.1", 80), "127.81.1.1");
    assert_eq!(
        default_host(Some(""), "http", "127.81.1.1", 8080),
        "127.81.1.1:8080"
    );
    assert_eq!(default_host(None, "https", "10.0.0.5", 443), "10.0.0.5");
    assert_eq!(default_host(None, "http", "::1", 81), "[::1]:81");
}

#[test]
fn mesh_compares_headers_status_and_pod_only() {
    let mut c = case("/v2", &[200]);
    c.request.headers = [("Version".to_string(), "two".to_string())].into();
    // Mesh never compares path or namespace.
    let resp = echo_body(
        "/somewhere-else",
        "be-v1-a-b",
        "other-ns",
        &[("Version", "two")],
    );
    assert_eq!(judge_mesh(&c, &resp), Ok(()));
    c.response.headers = [("X-A".to_string(), "1".to_string())].into();
    let mut resp2 = resp.clone();
    resp2.headers.push(("x-a".into(), "1".into()));
    resp2.headers.push(("x-a".into(), "2".into()));
    assert_eq!(judge_mesh(&c, &resp2), Ok(()), "first value only");
    assert!(judge_mesh(&c, &resp).is_err());
    let resp3 = Observed {
        status: 503,
        ..resp
    };
    assert!(judge_mesh(&c, &resp3).is_err());
}

/// The mutation check: one response that satisfies a full case, and the same case with one
/// expectation made wrong at a time. Each wrong expectation must be reported as a failure,
/// naming what differs, or the judge could pass a proxy that gets it wrong.
#[test]
fn every_wrong_expectation_fails() {
    let mut good = case_expecting("/app?v=1", ("X-Added", "yes"), "X-Removed");
    good.response.headers = [("X-Reply".to_string(), "ok".to_string())].into();
    good.response.absent_headers = vec!["X-Secret".into()];
    let mut resp = echo_body("/app?v=1", "be-v1-abc-def", "ns", &[("X-Added", "yes")]);
    resp.headers.push(("x-reply".into(), "ok".into()));
    assert_eq!(judge_gateway(&good, "http", &resp), Ok(()));

    fn expected(c: &mut Case) -> &mut ExpectedRequest {
        c.expected_request
            .get_or_insert_with(ExpectedRequest::default)
    }
    type Mutation = fn(&mut Case);
    let rows: [(&str, Mutation, &str); 7] = [
        (
            "path",
            |c| expected(c).path = Some("/app?v=2".into()),
            "/app?v=2",
        ),
        (
            "status",
            |c| c.response.status_codes = vec![404],
            "status 200",
        ),
        (
            "request header",
            |c| {
                expected(c).headers.insert("X-Added".into(), "no".into());
            },
            "X-Added",
        ),
        (
            "absent request header",
            |c| expected(c).absent_headers.push("X-Added".into()),
            "X-Added",
        ),
        (
            "response header",
            |c| {
                c.response.headers.insert("X-Reply".into(), "other".into());
            },
            "X-Reply",
        ),
        (
            "absent response header",
            |c| c.response.absent_headers.push("X-Reply".into()),
            "X-Reply",
        ),
        ("backend", |c| c.backend = Some("be-v2".into()), "be-v2"),
    ];
    for (what, mutate, mentions) in rows {
        let mut c = good.clone();
        mutate(&mut c);
        match judge_gateway(&c, "http", &resp) {
            Err(why) => assert!(why.contains(mentions), "{what}: {why}"),
            Ok(()) => panic!("a wrong expected {what} passed"),
        }
    }
}
