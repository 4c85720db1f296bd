use super::*;

/// The CORS filters of the upstream HTTPRouteCORS conformance test, by path prefix.
const MULTIPLE: &str = "{allowOrigins: ['https://www.foo.com', 'https://*.bar.com'], \
    allowMethods: [GET, OPTIONS], allowHeaders: [x-header-1, x-header-2], \
    exposeHeaders: [x-header-3, x-header-4], allowCredentials: true, maxAge: 3600}";
const WILDCARD_METHODS: &str = "{allowOrigins: ['https://www.foo.com'], allowMethods: ['*']}";
const WILDCARD_ORIGIN: &str = "{allowOrigins: ['*'], allowMethods: [PUT], allowCredentials: false}";
const WILDCARD_ALL_CREDENTIALS: &str = "{allowOrigins: ['*'], allowMethods: ['*'], \
    allowHeaders: ['*'], allowCredentials: true}";
const WILDCARD_ALL: &str = "{allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'], \
    allowCredentials: false}";

fn cors(yaml: &str) -> Cors {
    let spec: HttpRouteRulesFiltersCors = serde_yaml_ng::from_str(yaml).expect("cors fixture");
    let mut issues = Vec::new();
    let cors = Cors::compile(&spec, "cors", &mut issues);
    assert!(issues.is_empty(), "{issues:?}");
    cors
}

struct Case {
    name: &'static str,
    filter: &'static str,
    preflight: bool,
    origin: &'static str,
    method: Option<&'static str>,
    headers: Option<&'static str>,
    /// Header name and the values the conformance test accepts (compared without spaces).
    expect: &'static [(&'static str, &'static [&'static str])],
    absent: &'static [&'static str],
}

/// What the proxy sends back: a preflight is answered by the waypoint with these headers (or
/// none), any other request gets them added to the backend's response.
fn answer(cors: &Cors, case: &Case) -> Vec<(HeaderName, HeaderValue)> {
    if case.preflight {
        cors.preflight_response(case.origin, case.method, case.headers)
            .unwrap_or_default()
    } else {
        cors.response_headers(case.origin)
    }
}

const CREDENTIALED_PREFLIGHT: &[(&str, &[&str])] = &[
    (
        "access-control-allow-methods",
        &["GET, OPTIONS", "OPTIONS, GET"],
    ),
    (
        "access-control-allow-headers",
        &["x-header-1, x-header-2", "x-header-2, x-header-1"],
    ),
    (
        "access-control-expose-headers",
        &["x-header-3, x-header-4", "x-header-4, x-header-3"],
    ),
    ("access-control-max-age", &["3600"]),
    ("access-control-allow-credentials", &["true"]),
];

#[test]
fn conformance_cases() {
    let none: &[&str] = &[];
    let cases = [
        Case {
            name: "preflight from an exact matching origin",
            filter: MULTIPLE,
            preflight: true,
            origin: "https://www.foo.com",
            method: Some("GET"),
            headers: Some("x-header-1, x-header-2"),
            expect: &[("access-control-allow-origin", &["https://www.foo.com"])],
            absent: none,
        },
        Case {
            name: "preflight from a wildcard matching origin",
            filter: MULTIPLE,
            preflight: true,
            origin: "https://www.bar.com",
            method: Some("GET"),
            headers: Some("x-header-1, x-header-2"),
            expect: &[("access-control-allow-origin", &["https://www.bar.com"])],
            absent: none,
        },
        Case {
            name: "preflight from a wildcard matching several labels",
            filter: MULTIPLE,
            preflight: true,
            origin: "https://xpto.www.bar.com",
            method: Some("GET"),
            headers: Some("x-header-1, x-header-2"),
            expect: &[("access-control-allow-origin", &["https://xpto.www.bar.com"])],
            absent: none,
        },
        Case {
            name: "preflight from a non-matching origin",
            filter: MULTIPLE,
            preflight: true,
            origin: "https://foobar.com",
            method: Some("GET"),
            headers: None,
            expect: &[],
            absent: &["access-control-allow-origin"],
        },
        Case {
            name: "simple request from an exact matching origin",
            filter: MULTIPLE,
            preflight: false,
            origin: "https://www.foo.com",
            method: None,
            headers: None,
            expect: &[("access-control-allow-origin", &["https://www.foo.com"])],
            absent: none,
        },
        Case {
            name: "simple request from a wildcard matching origin",
            filter: MULTIPLE,
            preflight: false,
            origin: "https://www.bar.com",
            method: None,
            headers: None,
            expect: &[("access-control-allow-origin", &["https://www.bar.com"])],
            absent: none,
        },
        Case {
            name: "simple request from a non-matching origin",
            filter: MULTIPLE,
            preflight: false,
            origin: "https://foobar.com",
            method: None,
            headers: None,
            expect: &[],
            absent: &["access-control-allow-origin"],
        },
        Case {
            name: "preflight with POST allowed by allowMethods *",
            filter: WILDCARD_METHODS,
            preflight: true,
            origin: "https://www.foo.com",
            method: Some("POST"),
            headers: None,
            expect: &[
                ("access-control-allow-origin", &["https://www.foo.com"]),
                ("access-control-allow-methods", &["POST", "*"]),
            ],
            absent: &["access-control-allow-credentials"],
        },
        Case {
            name: "preflight from a wildcard origin",
            filter: WILDCARD_ORIGIN,
            preflight: true,
            origin: "https://foobar.com",
            method: Some("PUT"),
            headers: None,
            expect: &[
                ("access-control-allow-origin", &["https://foobar.com", "*"]),
                ("access-control-allow-methods", &["PUT"]),
            ],
            absent: &["access-control-allow-credentials"],
        },
        Case {
            name: "preflight from a wildcard origin with a port",
            filter: WILDCARD_ORIGIN,
            preflight: true,
            origin: "https://foobar.com:12345",
            method: Some("PUT"),
            headers: None,
            expect: &[
                (
                    "access-control-allow-origin",
                    &["https://foobar.com:12345", "*"],
                ),
                ("access-control-allow-methods", &["PUT"]),
            ],
            absent: &["access-control-allow-credentials"],
        },
        Case {
            name: "request from a wildcard origin with a port",
            filter: WILDCARD_ORIGIN,
            preflight: false,
            origin: "https://foobar.com:12345",
            method: None,
            headers: None,
            expect: &[(
                "access-control-allow-origin",
                &["https://foobar.com:12345", "*"],
            )],
            absent: none,
        },
        Case {
            name: "simple request from a wildcard origin",
            filter: WILDCARD_ORIGIN,
            preflight: false,
            origin: "https://foobar.com",
            method: None,
            headers: None,
            expect: &[("access-control-allow-origin", &["https://foobar.com", "*"])],
            absent: &["access-control-allow-credentials"],
        },
        Case {
            name: "credentialed wildcard preflight echoes origin, method and headers",
            filter: WILDCARD_ALL_CREDENTIALS,
            preflight: true,
            origin: "https://other.foo.com",
            method: Some("PUT"),
            headers: Some("x-header-1, x-header-2"),
            expect: &[
                ("access-control-allow-origin", &["https://other.foo.com"]),
                ("access-control-allow-methods", &["PUT"]),
                (
                    "access-control-allow-headers",
                    &["x-header-1, x-header-2", "x-header-2, x-header-1"],
                ),
                ("access-control-allow-credentials", &["true"]),
            ],
            absent: none,
        },
        Case {
            name: "uncredentialed wildcard preflight",
            filter: WILDCARD_ALL,
            preflight: true,
            origin: "https://other.foo.com",
            method: Some("PUT"),
            headers: Some("x-header-1, x-header-2"),
            expect: &[
                (
                    "access-control-allow-origin",
                    &["https://other.foo.com", "*"],
                ),
                ("access-control-allow-methods", &["PUT", "*"]),
                (
                    "access-control-allow-headers",
                    &["x-header-1, x-header-2", "x-header-2, x-header-1", "*"],
                ),
            ],
            absent: &["access-control-allow-credentials"],
        },
        Case {
            name: "credentialed request gets allow-credentials",
            filter: WILDCARD_ALL_CREDENTIALS,
            preflight: false,
            origin: "https://other.foo.com",
            method: None,
            headers: None,
            expect: &[
                ("access-control-allow-origin", &["https://other.foo.com"]),
                ("access-control-allow-credentials", &["true"]),
            ],
            absent: none,
        },
        Case {
            name: "uncredentialed request gets no allow-credentials",
            filter: WILDCARD_ALL,
            preflight: false,
            origin: "https://other.foo.com",
            method: None,
            headers: None,
            expect: &[(
                "access-control-allow-origin",
                &["https://other.foo.com", "*"],
            )],
            absent: &["access-control-allow-credentials"],
        },
    ];
    let no_spaces = |s: &str| s.replace(' ', "");
    let check = |case: &Case, expect: &[(&str, &[&str])]| {
        let got = answer(&cors(case.filter), case);
        for (name, valid) in expect {
            let values: Vec<_> = got.iter().filter(|(n, _)| n == name).collect();
            assert_eq!(values.len(), 1, "{}: one {name} in {got:?}", case.name);
            let value = no_spaces(values[0].1.to_str().expect("ascii"));
            assert!(
                valid.iter().any(|v| no_spaces(v) == value),
                "{}: {name} = {value:?}, want one of {valid:?}",
                case.name
            );
        }
        for name in case.absent {
            assert!(
                got.iter().all(|(n, _)| n != name),
                "{}: {name} must be absent from {got:?}",
                case.name
            );
        }
    };
    for case in &cases {
        check(case, case.expect);
        if case.preflight && case.filter == MULTIPLE && !case.expect.is_empty() {
            check(case, CREDENTIALED_PREFLIGHT);
        }
    }
}

#[test]
fn origins_compare_scheme_host_and_default_port() {
    let c =
        cors("{allowOrigins: ['https://www.foo.com', 'http://*.bar.com:8080', 'http://*:9000']}");
    let allowed = |o: &str| !c.response_headers(o).is_empty();
    assert!(allowed("https://www.foo.com"));
    assert!(allowed("https://www.foo.com:443"), "443 is https's default");
    assert!(
        allowed("HTTPS://WWW.FOO.COM"),
        "scheme and host are case-insensitive"
    );
    assert!(!allowed("http://www.foo.com"), "scheme must match");
    assert!(!allowed("https://www.foo.com:8443"), "port must match");
    assert!(allowed("http://a.b.bar.com:8080"));
    assert!(
        !allowed("http://bar.com:8080"),
        "*. needs at least one label"
    );
    assert!(!allowed("http://a.bar.com"), "port 80 is not 8080");
    assert!(
        allowed("http://anything.example:9000"),
        "a bare * host matches any host"
    );
    assert!(!allowed("https://anything.example:9000"));
    assert!(!allowed("null"), "opaque origins match only *");
    assert!(c.preflight_response("null", Some("GET"), None).is_none());
}

#[test]
fn defaults_and_invalid_entries() {
    let c = cors("{allowOrigins: ['*']}");
    let got = c
        .preflight_response("https://a.example", Some("GET"), None)
        .expect("allowed");
    let max_age = got.iter().find(|(n, _)| n == ACCESS_CONTROL_MAX_AGE);
    assert_eq!(max_age.map(|(_, v)| v.to_str().ok()), Some(Some("5")));
    assert!(got.iter().all(|(n, _)| n != ACCESS_CONTROL_ALLOW_METHODS));

    let spec: HttpRouteRulesFiltersCors = serde_yaml_ng::from_str(
        "{allowOrigins: ['ftp://x', 'https://a*.b', 'https://ok.example'], \
          allowMethods: ['GE T'], maxAge: -1}",
    )
    .expect("fixture");
    let mut issues = Vec::new();
    Cors::compile(&spec, "cors", &mut issues);
    let fields: Vec<_> = issues.iter().map(|i| i.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "cors.allowOrigins[0]",
            "cors.allowOrigins[1]",
            "cors.maxAge",
            "cors.allowMethods[0]"
        ]
    );
}
