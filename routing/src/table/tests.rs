use super::*;
use crate::compile_http_route;
use crate::fixtures::{route, FakeLookup, TestRequest};

/// A route `namespace/name` created at `created` (RFC 3339, or None) with `rules` in YAML flow style.
struct R {
    id: &'static str,
    created: Option<&'static str>,
    rules: &'static str,
}

const T1: Option<&str> = Some("2024-01-01T00:00:00Z");
const T2: Option<&str> = Some("2024-06-01T00:00:00Z");

fn r(id: &'static str, created: Option<&'static str>, rules: &'static str) -> R {
    R { id, created, rules }
}

fn table(routes: &[R]) -> RouteTable {
    let compiled = routes
        .iter()
        .map(|r| {
            let (namespace, name) = r.id.split_once('/').expect("id is ns/name");
            let created = r
                .created
                .map(|t| format!("\n  creationTimestamp: {t}"))
                .unwrap_or_default();
            let yaml = format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
                 metadata:\n  name: {name}\n  namespace: {namespace}{created}\n\
                 spec:\n  parentRefs: [{{group: '', kind: Service, name: svc}}]\n  rules: {}\n",
                r.rules
            );
            let (compiled, _) = compile_http_route(&route(&yaml), &FakeLookup::default());
            Arc::new(compiled)
        })
        .collect();
    RouteTable::new(compiled)
}

const EXACT_FOO: &str = "[{matches: [{path: {type: Exact, value: /foo}}]}]";
const PREFIX_FOO: &str = "[{matches: [{path: {type: PathPrefix, value: /foo}}]}]";
const PREFIX_ROOT: &str = "[{matches: [{path: {type: PathPrefix, value: /}}]}]";

/// (what, routes, request, expected ("ns/name", rule index)).
type PrecedenceCase = (
    &'static str,
    Vec<R>,
    TestRequest,
    Option<(&'static str, usize)>,
);

#[test]
fn precedence() {
    let cases: Vec<PrecedenceCase> = vec![
        (
            "exact beats a longer prefix",
            vec![
                r("ns/a", T1, "[{matches: [{path: {type: PathPrefix, value: /foo/bar/baz}}]}]"),
                r("ns/b", T2, "[{matches: [{path: {type: Exact, value: /foo/bar/baz}}]}]"),
            ],
            TestRequest::get("/foo/bar/baz"),
            Some(("ns/b", 0)),
        ),
        (
            "exact beats regex",
            vec![
                r("ns/a", T1, "[{matches: [{path: {type: RegularExpression, value: /foo}}]}]"),
                r("ns/b", T2, EXACT_FOO),
            ],
            TestRequest::get("/foo"),
            Some(("ns/b", 0)),
        ),
        (
            "regex beats prefix",
            vec![
                r("ns/a", T1, "[{matches: [{path: {type: PathPrefix, value: /foo/bar}}]}]"),
                r("ns/b", T2, "[{matches: [{path: {type: RegularExpression, value: '/foo/.*'}}]}]"),
            ],
            TestRequest::get("/foo/bar/x"),
            Some(("ns/b", 0)),
        ),
        (
            "longer prefix wins",
            vec![
                r("ns/a", T1, PREFIX_FOO),
                r("ns/b", T2, "[{matches: [{path: {type: PathPrefix, value: /foo/bar}}]}]"),
            ],
            TestRequest::get("/foo/bar/x"),
            Some(("ns/b", 0)),
        ),
        (
            "longer prefix that does not match falls through",
            vec![
                r("ns/a", T1, PREFIX_FOO),
                r("ns/b", T2, "[{matches: [{path: {type: PathPrefix, value: /foo/bar}}]}]"),
            ],
            TestRequest::get("/foo/baz"),
            Some(("ns/a", 0)),
        ),
        (
            "prefix length counts the characters written, trailing slash included",
            vec![
                r("ns/a", T1, PREFIX_FOO),
                r("ns/b", T2, "[{matches: [{path: {type: PathPrefix, value: /foo/}}]}]"),
            ],
            TestRequest::get("/foo"),
            Some(("ns/b", 0)),
        ),
        (
            "path beats method",
            vec![
                r("ns/a", T1, "[{matches: [{path: {value: /foo}, method: GET}]}]"),
                r("ns/b", T2, "[{matches: [{path: {value: /foo/bar}}]}]"),
            ],
            TestRequest::get("/foo/bar"),
            Some(("ns/b", 0)),
        ),
        (
            "method beats headers",
            vec![
                r(
                    "ns/a",
                    T1,
                    "[{matches: [{path: {value: /foo}, headers: [{name: a, value: '1'}, {name: b, value: '2'}]}]}]",
                ),
                r("ns/b", T2, "[{matches: [{path: {value: /foo}, method: GET}]}]"),
            ],
            TestRequest::new("GET", "/foo", &[("a", "1"), ("b", "2")]),
            Some(("ns/b", 0)),
        ),
        (
            "more headers win",
            vec![
                r("ns/a", T1, "[{matches: [{headers: [{name: a, value: '1'}]}]}]"),
                r(
                    "ns/b",
                    T2,
                    "[{matches: [{headers: [{name: a, value: '1'}, {name: b, value: '2'}]}]}]",
                ),
            ],
            TestRequest::new("GET", "/", &[("a", "1"), ("b", "2")]),
            Some(("ns/b", 0)),
        ),
        (
            "headers beat query params",
            vec![
                r(
                    "ns/a",
                    T1,
                    "[{matches: [{queryParams: [{name: x, value: '1'}, {name: y, value: '2'}]}]}]",
                ),
                r("ns/b", T2, "[{matches: [{headers: [{name: a, value: '1'}]}]}]"),
            ],
            TestRequest::new("GET", "/?x=1&y=2", &[("a", "1")]),
            Some(("ns/b", 0)),
        ),
        (
            "more query params win",
            vec![
                r("ns/a", T1, "[{matches: [{queryParams: [{name: x, value: '1'}]}]}]"),
                r(
                    "ns/b",
                    T2,
                    "[{matches: [{queryParams: [{name: x, value: '1'}, {name: y, value: '2'}]}]}]",
                ),
            ],
            TestRequest::get("/?x=1&y=2"),
            Some(("ns/b", 0)),
        ),
        (
            "older route wins a tie, whatever its name",
            vec![r("ns/a", T2, PREFIX_FOO), r("ns/b", T1, PREFIX_FOO)],
            TestRequest::get("/foo"),
            Some(("ns/b", 0)),
        ),
        (
            "a route without a timestamp sorts after one with",
            vec![r("ns/a", None, PREFIX_FOO), r("ns/b", T2, PREFIX_FOO)],
            TestRequest::get("/foo"),
            Some(("ns/b", 0)),
        ),
        (
            "same timestamp: alphabetical by namespace/name",
            vec![r("ns/b", T1, PREFIX_FOO), r("ns/a", T1, PREFIX_FOO)],
            TestRequest::get("/foo"),
            Some(("ns/a", 0)),
        ),
        (
            "no timestamps: alphabetical by namespace/name",
            vec![r("ns/b", None, PREFIX_FOO), r("ns/a", None, PREFIX_FOO)],
            TestRequest::get("/foo"),
            Some(("ns/a", 0)),
        ),
        (
            "namespace/name compares as one string ('-' sorts before '/')",
            vec![r("a/x", None, PREFIX_FOO), r("a-b/x", None, PREFIX_FOO)],
            TestRequest::get("/foo"),
            Some(("a-b/x", 0)),
        ),
        (
            "same route: the first rule wins a tie",
            vec![r(
                "ns/a",
                T1,
                "[{matches: [{path: {value: /foo}}]}, {matches: [{path: {value: /foo}}]}]",
            )],
            TestRequest::get("/foo"),
            Some(("ns/a", 0)),
        ),
        (
            "same route: a later, more specific rule beats an earlier one",
            vec![r(
                "ns/a",
                T1,
                "[{matches: [{path: {value: /}}]}, {matches: [{path: {type: Exact, value: /foo}}]}]",
            )],
            TestRequest::get("/foo"),
            Some(("ns/a", 1)),
        ),
        (
            "match specificity beats route age",
            vec![r("ns/a", T1, PREFIX_ROOT), r("ns/b", T2, EXACT_FOO)],
            TestRequest::get("/foo"),
            Some(("ns/b", 0)),
        ),
        (
            "route age beats rule order",
            vec![
                r("ns/a", T2, PREFIX_FOO),
                r("ns/b", T1, "[{matches: [{path: {value: /x}}]}, {matches: [{path: {value: /foo}}]}]"),
            ],
            TestRequest::get("/foo"),
            Some(("ns/b", 1)),
        ),
        (
            "matches within a rule are ORed",
            vec![r(
                "ns/a",
                T1,
                "[{matches: [{path: {value: /x}}, {path: {value: /foo}}]}, {matches: [{path: {value: /}}]}]",
            )],
            TestRequest::get("/foo"),
            Some(("ns/a", 0)),
        ),
        (
            "a rule without matches matches everything",
            vec![r("ns/a", T1, "[{backendRefs: []}]")],
            TestRequest::get("/any"),
            Some(("ns/a", 0)),
        ),
        (
            "a route without rules matches everything",
            vec![r("ns/a", T1, "null")],
            TestRequest::get("/any"),
            Some(("ns/a", 0)),
        ),
        (
            "an invalid match never matches, even a catch-all request",
            vec![
                r("ns/a", T1, "[{matches: [{path: {type: RegularExpression, value: '('}}]}]"),
                r("ns/b", T2, "[{matches: [{path: {value: /nope}}]}]"),
            ],
            TestRequest::get("/"),
            None,
        ),
        (
            "a higher-precedence match that fails falls through",
            vec![
                r("ns/a", T1, "[{matches: [{path: {type: Exact, value: /foo}, headers: [{name: a, value: '1'}]}]}]"),
                r("ns/b", T2, PREFIX_FOO),
            ],
            TestRequest::get("/foo"),
            Some(("ns/b", 0)),
        ),
        (
            "nothing matches",
            vec![r("ns/a", T1, EXACT_FOO)],
            TestRequest::get("/bar"),
            None,
        ),
        ("empty table", vec![], TestRequest::get("/"), None),
    ];
    for (name, routes, req, expected) in cases {
        let table = table(&routes);
        let got = table
            .find(&req.view())
            .map(|m| (m.route.id.to_string(), m.rule.index));
        let expected = expected.map(|(id, rule)| (id.to_owned(), rule));
        assert_eq!(got, expected, "{name}");
        // Input order must not matter.
        let reversed: Vec<R> = routes.into_iter().rev().collect();
        let got = self::table(&reversed)
            .find(&req.view())
            .map(|m| (m.route.id.to_string(), m.rule.index));
        assert_eq!(got, expected, "{name} (routes reversed)");
    }
}

#[test]
fn is_empty() {
    assert!(RouteTable::new(Vec::new()).is_empty());
    assert!(RouteTable::default().is_empty());
    assert!(!table(&[r("ns/a", T1, EXACT_FOO)]).is_empty());
}

#[test]
fn the_match_that_selected_the_rule_is_returned() {
    let t = table(&[r(
        "ns/a",
        T1,
        "[{matches: [{path: {type: Exact, value: /x}}, {path: {type: PathPrefix, value: /foo/}}]}]",
    )]);
    let req = TestRequest::get("/foo/bar");
    let m = t.find(&req.view()).expect("matches");
    assert!(
        matches!(&m.request_match.path, PathMatch::Prefix { trimmed, .. } if trimmed == "/foo")
    );
}

#[test]
fn index_handles_path_edges() {
    // (request path, expected route)
    let routes = [
        r("ns/root", T1, PREFIX_ROOT),
        r("ns/foo", T1, PREFIX_FOO),
        r(
            "ns/exact",
            T1,
            "[{matches: [{path: {type: Exact, value: /foo/}}]}]",
        ),
        r(
            "ns/deep",
            T1,
            "[{matches: [{path: {type: PathPrefix, value: /foo/bar/}}]}]",
        ),
        r(
            "ns/re",
            T1,
            "[{matches: [{path: {type: RegularExpression, value: '/re/[0-9]+'}}]}]",
        ),
    ];
    let t = table(&routes);
    for (path, expected) in [
        ("/", "ns/root"),
        ("/foobar", "ns/root"),
        ("/foo", "ns/foo"),
        ("/foo/", "ns/exact"),
        ("/foo//", "ns/foo"),
        ("/foo/bar", "ns/deep"),
        ("/foo/bar/", "ns/deep"),
        ("/foo/barn", "ns/foo"),
        ("/re/12", "ns/re"),
        ("/re/12/x", "ns/root"),
        ("", "ns/root"),
    ] {
        let req = TestRequest::get(path);
        let got = t.find(&req.view()).map(|m| m.route.id.to_string());
        assert_eq!(got.as_deref(), Some(expected), "{path:?}");
    }
}

/// A small deterministic generator, so the comparison below is reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % 1_000_003).unwrap_or_default()
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.next() % from.len()]
    }
}

#[test]
fn index_finds_what_the_linear_walk_finds() {
    const SEGMENTS: &[&str] = &["a", "b", "ab", "c"];
    const METHODS: &[&str] = &["GET", "POST"];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let random_path = |rng: &mut XorShift| -> String {
        let depth = rng.next() % 4;
        let mut path: String = (0..depth)
            .map(|_| format!("/{}", rng.pick(SEGMENTS)))
            .collect();
        if path.is_empty() || rng.next().is_multiple_of(5) {
            path.push('/');
        }
        path
    };
    for round in 0..40 {
        let mut routes = Vec::new();
        for i in 0..30 {
            let path = random_path(&mut rng);
            let path_match = match rng.next() % 4 {
                0 => format!("{{type: Exact, value: '{path}'}}"),
                1 => format!("{{type: RegularExpression, value: '{path}.*'}}"),
                _ => format!("{{type: PathPrefix, value: '{path}'}}"),
            };
            let method = match rng.next() % 3 {
                0 => format!(", method: {}", rng.pick(METHODS)),
                _ => String::new(),
            };
            let headers = match rng.next() % 3 {
                0 => format!(", headers: [{{name: h, value: '{}'}}]", rng.next() % 2),
                _ => String::new(),
            };
            let created = [T1, T2, None][rng.next() % 3];
            let rules: &'static str = Box::leak(
                format!("[{{matches: [{{path: {path_match}{method}{headers}}}]}}]")
                    .into_boxed_str(),
            );
            let id: &'static str = Box::leak(format!("ns/r{}", i % 20).into_boxed_str());
            routes.push(r(id, created, rules));
        }
        let t = table(&routes);
        for _ in 0..50 {
            let path = random_path(&mut rng);
            let method = rng.pick(METHODS);
            let header = (rng.next() % 2).to_string();
            let req = TestRequest::new(method, &path, &[("h", header.as_str())]);
            let key = |m: RouteMatch<'_>| {
                (
                    m.route.id.to_string(),
                    m.rule.index,
                    std::ptr::from_ref(m.request_match),
                )
            };
            assert_eq!(
                t.find(&req.view()).map(key),
                t.find_linear(&req.view()).map(key),
                "round {round}: {method} {path} h={header}"
            );
        }
    }
}
