use super::*;
use crate::fixtures::TestRequest;
use crate::Severity;

fn compile_one(yaml: &str) -> (Option<RequestMatch>, Vec<Issue>) {
    let spec: HttpRouteRulesMatches = serde_yaml_ng::from_str(yaml).expect("valid match YAML");
    let mut issues = Vec::new();
    let compiled = RequestMatch::compile(&spec, "m", &mut issues);
    (compiled, issues)
}

fn matches(yaml: &str, req: &TestRequest) -> bool {
    let (compiled, issues) = compile_one(yaml);
    assert!(
        issues.iter().all(|i| i.severity == Severity::Warning),
        "{yaml}: {issues:?}"
    );
    compiled.expect("valid match").matches(&req.view())
}

#[test]
fn path_kinds_and_edges() {
    let cases: &[(&str, &str, &str, bool)] = &[
        // (type, value, request path, matches)
        ("Exact", "/foo", "/foo", true),
        ("Exact", "/foo", "/foo/", false),
        ("Exact", "/foo", "/FOO", false),
        ("Exact", "/foo", "/foo/bar", false),
        ("Exact", "/", "/", true),
        ("Exact", "/", "/a", false),
        ("PathPrefix", "/foo", "/foo", true),
        ("PathPrefix", "/foo", "/foo/", true),
        ("PathPrefix", "/foo", "/foo/bar", true),
        ("PathPrefix", "/foo", "/foobar", false),
        ("PathPrefix", "/foo", "/fo", false),
        ("PathPrefix", "/foo", "/", false),
        ("PathPrefix", "/foo", "/Foo", false),
        ("PathPrefix", "/foo/", "/foo", true),
        ("PathPrefix", "/foo/", "/foo/", true),
        ("PathPrefix", "/foo/", "/foo/bar", true),
        ("PathPrefix", "/foo/", "/foobar", false),
        ("PathPrefix", "/foo/bar", "/foo/bar/baz", true),
        ("PathPrefix", "/foo/bar", "/foo/barbaz", false),
        ("PathPrefix", "/foo/bar", "/foo", false),
        ("PathPrefix", "/", "/", true),
        ("PathPrefix", "/", "/anything/at/all", true),
        ("RegularExpression", "/foo/[0-9]+", "/foo/123", true),
        ("RegularExpression", "/foo/[0-9]+", "/foo/123/x", false),
        ("RegularExpression", "/foo/[0-9]+", "/x/foo/123", false),
        ("RegularExpression", "/foo/[0-9]+", "/foo/", false),
        // Alternation stays inside the anchors.
        ("RegularExpression", "/a|/b", "/a", true),
        ("RegularExpression", "/a|/b", "/b", true),
        ("RegularExpression", "/a|/b", "/ab", false),
        ("RegularExpression", "/a|/b", "/b/x", false),
        ("RegularExpression", "/a|/b", "/x/a", false),
        ("RegularExpression", ".*", "/whatever", true),
        // A multi-line mode `$` must not end the match at a newline.
        ("RegularExpression", "(?m)/a$", "/a\n/b", false),
    ];
    for (kind, value, path, expected) in cases {
        let yaml = format!("path: {{type: {kind}, value: {value:?}}}");
        let got = matches(&yaml, &TestRequest::get(path));
        assert_eq!(got, *expected, "{kind} {value:?} vs {path:?}");
    }
}

#[test]
fn missing_path_is_prefix_slash() {
    assert!(matches("method: GET", &TestRequest::get("/any/path")));
    assert!(matches("path: {type: PathPrefix}", &TestRequest::get("/x")));
    assert!(matches("path: {value: /x}", &TestRequest::get("/x/y")));
}

#[test]
fn method_is_exact() {
    let cases: &[(&str, bool)] = &[("GET", true), ("POST", false), ("get", false)];
    for (method, expected) in cases {
        let req = TestRequest::new(method, "/", &[]);
        assert_eq!(matches("method: GET", &req), *expected, "{method}");
    }
}

/// (headers of the match, request headers, matches).
type HeaderCase = (&'static str, &'static [(&'static str, &'static str)], bool);

#[test]
fn header_matching() {
    let cases: &[HeaderCase] = &[
        // Names are case-insensitive, values are not.
        ("[{name: Version, value: v1}]", &[("version", "v1")], true),
        ("[{name: version, value: v1}]", &[("VERSION", "v1")], true),
        ("[{name: version, value: v1}]", &[("version", "V1")], false),
        ("[{name: version, value: v1}]", &[], false),
        ("[{name: version, value: ''}]", &[("version", "")], true),
        ("[{name: version, value: ''}]", &[], false),
        // Every header must match.
        (
            "[{name: a, value: '1'}, {name: b, value: '2'}]",
            &[("a", "1"), ("b", "2")],
            true,
        ),
        (
            "[{name: a, value: '1'}, {name: b, value: '2'}]",
            &[("a", "1")],
            false,
        ),
        // Regular expressions match the whole value.
        (
            "[{name: v, type: RegularExpression, value: 'v[0-9]'}]",
            &[("v", "v1")],
            true,
        ),
        (
            "[{name: v, type: RegularExpression, value: 'v[0-9]'}]",
            &[("v", "xv1")],
            false,
        ),
        (
            "[{name: v, type: RegularExpression, value: 'v[0-9]'}]",
            &[("v", "v12")],
            false,
        ),
        // Repeated headers are compared as one comma-joined value.
        ("[{name: x, value: 'a,b'}]", &[("x", "a"), ("x", "b")], true),
        ("[{name: x, value: a}]", &[("x", "a"), ("x", "b")], false),
        (
            "[{name: x, value: 'a, b'}]",
            &[("x", "a"), ("x", "b")],
            false,
        ),
        ("[{name: x, value: 'a,'}]", &[("x", "a"), ("x", "")], true),
        (
            "[{name: x, type: RegularExpression, value: 'a,.*'}]",
            &[("x", "a"), ("x", "b")],
            true,
        ),
        (
            "[{name: x, type: RegularExpression, value: b}]",
            &[("x", "a"), ("x", "b")],
            false,
        ),
        // Split cookies are rejoined with "; ".
        (
            "[{name: cookie, value: 'a=1; b=2'}]",
            &[("cookie", "a=1"), ("cookie", "b=2")],
            true,
        ),
        (
            "[{name: cookie, type: RegularExpression, value: '.*b=2.*'}]",
            &[("cookie", "a=1"), ("cookie", "b=2")],
            true,
        ),
        // Only the first entry for a name counts.
        (
            "[{name: x, value: a}, {name: X, value: b}]",
            &[("x", "a")],
            true,
        ),
        (
            "[{name: x, value: a}, {name: X, value: b}]",
            &[("x", "b")],
            false,
        ),
    ];
    for (headers, request_headers, expected) in cases {
        let yaml = format!("headers: {headers}");
        let req = TestRequest::new("GET", "/", request_headers);
        assert_eq!(
            matches(&yaml, &req),
            *expected,
            "{headers} vs {request_headers:?}"
        );
    }
}

#[test]
fn duplicate_header_name_is_a_warning() {
    let (compiled, issues) = compile_one("headers: [{name: x, value: a}, {name: X, value: b}]");
    assert_eq!(compiled.map(|c| c.headers.len()), Some(1));
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].severity, Severity::Warning);
    assert_eq!(issues[0].field, "m.headers[1].name");
}

#[test]
fn query_param_matching() {
    let cases: &[(&str, &str, bool)] = &[
        ("[{name: a, value: '1'}]", "/?a=1&b=2", true),
        ("[{name: a, value: '1'}]", "/?b=2&a=1", true),
        ("[{name: a, value: '1'}]", "/?a=2", false),
        ("[{name: a, value: '1'}]", "/", false),
        ("[{name: a, value: '1'}]", "/?", false),
        // Names are case-sensitive.
        ("[{name: a, value: '1'}]", "/?A=1", false),
        // The first of repeated parameters is the one matched.
        ("[{name: a, value: '1'}]", "/?a=1&a=2", true),
        ("[{name: a, value: '2'}]", "/?a=1&a=2", false),
        // Values are compared raw, without percent-decoding.
        ("[{name: q, value: 'a%20b'}]", "/?q=a%20b", true),
        ("[{name: q, value: 'a b'}]", "/?q=a%20b", false),
        // A parameter without '=' has an empty value.
        ("[{name: flag, value: ''}]", "/?flag", true),
        ("[{name: flag, value: ''}]", "/?x=1&&flag&y", true),
        ("[{name: a, value: '1=2'}]", "/?a=1=2", true),
        (
            "[{name: a, type: RegularExpression, value: '[0-9]+'}]",
            "/?a=123",
            true,
        ),
        (
            "[{name: a, type: RegularExpression, value: '[0-9]+'}]",
            "/?a=12x",
            false,
        ),
        (
            "[{name: a, value: '1'}, {name: b, value: '2'}]",
            "/?b=2&a=1",
            true,
        ),
        (
            "[{name: a, value: '1'}, {name: b, value: '2'}]",
            "/?a=1",
            false,
        ),
    ];
    for (params, target, expected) in cases {
        let yaml = format!("queryParams: {params}");
        assert_eq!(
            matches(&yaml, &TestRequest::get(target)),
            *expected,
            "{params} vs {target}"
        );
    }
}

#[test]
fn path_method_headers_and_query_are_anded() {
    let yaml = "{path: {value: /api}, method: POST, headers: [{name: h, value: v}], \
                queryParams: [{name: q, value: x}]}";
    let all = TestRequest::new("POST", "/api/x?q=x", &[("h", "v")]);
    assert!(matches(yaml, &all));
    for req in [
        TestRequest::new("GET", "/api/x?q=x", &[("h", "v")]),
        TestRequest::new("POST", "/other?q=x", &[("h", "v")]),
        TestRequest::new("POST", "/api/x?q=y", &[("h", "v")]),
        TestRequest::new("POST", "/api/x?q=x", &[("h", "w")]),
    ] {
        assert!(!matches(yaml, &req), "{} {}", req.method, req.path);
    }
}

#[test]
fn invalid_matches_are_reported_and_dropped() {
    let cases: &[(&str, &str, &str)] = &[
        // (match YAML, field, message start)
        (
            "path: {type: RegularExpression, value: '/foo/('}",
            "m.path.value",
            "invalid regular expression",
        ),
        (
            "path: {type: RegularExpression, value: 'a)|(b'}",
            "m.path.value",
            "invalid regular expression",
        ),
        (
            "path: {type: Exact, value: foo}",
            "m.path.value",
            "path must start with '/'",
        ),
        (
            "path: {type: PathPrefix, value: ''}",
            "m.path.value",
            "path must start with '/'",
        ),
        (
            "path: {type: PathPrefix, value: /a//b}",
            "m.path.value",
            "path must not contain \"//\"",
        ),
        (
            "path: {type: PathPrefix, value: /a/..}",
            "m.path.value",
            "path must not end with \"/..\"",
        ),
        (
            "path: {type: Exact, value: '/a%2Fb'}",
            "m.path.value",
            "path must not contain \"%2F\"",
        ),
        (
            "headers: [{name: 'bad name', value: x}]",
            "m.headers[0].name",
            "invalid header name",
        ),
        (
            "headers: [{name: ':authority', value: x}]",
            "m.headers[0].name",
            "invalid header name",
        ),
        (
            "headers: [{name: x, type: RegularExpression, value: '('}]",
            "m.headers[0].value",
            "invalid regular expression",
        ),
        (
            "queryParams: [{name: a, type: RegularExpression, value: '['}]",
            "m.queryParams[0].value",
            "invalid regular expression",
        ),
        (
            "queryParams: [{name: '', value: x}]",
            "m.queryParams[0].name",
            "query parameter name is empty",
        ),
    ];
    for (yaml, field, message) in cases {
        let (compiled, issues) = compile_one(yaml);
        assert!(compiled.is_none(), "{yaml} should not compile");
        assert_eq!(issues.len(), 1, "{yaml}: {issues:?}");
        let issue = &issues[0];
        assert_eq!(
            (issue.severity, issue.reason, issue.field.as_str()),
            (Severity::Error, IssueReason::Invalid, *field),
            "{yaml}"
        );
        assert!(
            issue.message.starts_with(message),
            "{yaml}: {}",
            issue.message
        );
    }
}
