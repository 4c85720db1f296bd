//! Every source, operation and condition field, with values, `not` values and wildcards.

use super::*;

fn plaintext() -> Req {
    Req {
        principal: None,
        ..req()
    }
}

#[test]
fn principals_and_plaintext() {
    let table: &[(serde_json::Value, bool, bool)] = &[
        // (source, matches mTLS sleep, matches plaintext)
        (
            json!({"principals": ["cluster.local/ns/foo/sa/sleep"]}),
            true,
            false,
        ),
        (
            json!({"principals": ["cluster.local/ns/foo/sa/other"]}),
            false,
            false,
        ),
        (json!({"principals": ["*"]}), true, false),
        (
            json!({"principals": ["cluster.local/ns/foo/*"]}),
            true,
            false,
        ),
        (json!({"principals": ["*/sa/sleep"]}), true, false),
        (json!({"notPrincipals": ["*"]}), false, true),
        (
            json!({"notPrincipals": ["cluster.local/ns/foo/sa/sleep"]}),
            false,
            true,
        ),
        (
            json!({"notPrincipals": ["cluster.local/ns/bar/sa/x"]}),
            true,
            true,
        ),
        (json!({"namespaces": ["foo"]}), true, false),
        (json!({"namespaces": ["fo*"]}), true, false),
        (json!({"namespaces": ["*"]}), true, false),
        (json!({"namespaces": ["bar"]}), false, false),
        (json!({"notNamespaces": ["foo"]}), false, true),
        (json!({"serviceAccounts": ["foo/sleep"]}), true, false),
        (json!({"serviceAccounts": ["sleep"]}), true, false),
        (json!({"serviceAccounts": ["bar/sleep"]}), false, false),
        (json!({"notServiceAccounts": ["sleep"]}), false, true),
    ];
    for (source, mtls, plain) in table {
        assert_eq!(
            matches(from(source.clone()), &req()),
            *mtls,
            "mTLS {source}"
        );
        assert_eq!(
            matches(from(source.clone()), &plaintext()),
            *plain,
            "plaintext {source}"
        );
    }
    let spiffe = compile_named(
        "p",
        allow_rule(from(
            json!({"principals": ["spiffe://cluster.local/ns/foo/sa/sleep"]}),
        )),
    );
    assert_eq!(
        spiffe.issues[0].field,
        "spec.rules[0].from[0].source.principals[0]"
    );
    assert_eq!(spiffe.issues[0].severity, crate::spec::Severity::Warning);
    // `principals` and `serviceAccounts` together are refused (fail closed).
    let both = from(json!({"principals": ["*"], "serviceAccounts": ["sleep"]}));
    assert!(!matches(both, &req()));
    assert!(!matches(from(json!({"serviceAccounts": ["*"]})), &req()));
    assert!(!matches(
        from(json!({"serviceAccounts": ["a/b/c"]})),
        &req()
    ));
}

#[test]
fn source_conditions_match_like_their_fields() {
    assert!(matches(
        when("source.principal", &["cluster.local/ns/foo/sa/sleep"]),
        &req()
    ));
    assert!(!matches(when("source.principal", &["*"]), &plaintext()));
    assert!(matches(when_not("source.principal", &["*"]), &plaintext()));
    assert!(matches(when("source.namespace", &["foo"]), &req()));
    assert!(matches(
        when("source.serviceAccount", &["foo/sleep"]),
        &req()
    ));
    assert!(!matches(when("source.namespace", &["foo"]), &plaintext()));
}

#[test]
fn trust_domain_aliases_name_the_same_workload() {
    let trust = TrustDomains {
        domain: "new.td".to_string(),
        aliases: vec!["old.td".to_string()],
    };
    let run = |written: &str, peer: &'static str| {
        let p = compile_with(
            "p",
            allow_rule(from(json!({"principals": [written]}))),
            false,
            &trust,
        );
        let set = PolicySet::new(vec![p]);
        let r = Req {
            principal: Some(peer),
            ..req()
        };
        r.with(|a| set.evaluate(a)).allowed
    };
    assert!(run("old.td/ns/foo/sa/sleep", "new.td/ns/foo/sa/sleep"));
    assert!(run("new.td/ns/foo/sa/sleep", "old.td/ns/foo/sa/sleep"));
    // cluster.local points at the local trust domain.
    assert!(run(
        "cluster.local/ns/foo/sa/sleep",
        "new.td/ns/foo/sa/sleep"
    ));
    assert!(!run("other.td/ns/foo/sa/sleep", "new.td/ns/foo/sa/sleep"));
    assert!(!run("new.td/ns/foo/sa/sleep", "other.td/ns/foo/sa/sleep"));
    assert!(run("*/ns/foo/sa/sleep", "other.td/ns/foo/sa/sleep"));
}

#[test]
fn request_principals_and_jwt_conditions() {
    let claims = json!({"aud": ["a1", "a2"], "azp": "web", "groups": ["dev", "ops"], "team": "blue",
        "nested": {"key": "v", "list": ["x"]}, "num": 3});
    let with_jwt = Req {
        auth: Some(jwt("https://issuer.example", "alice", claims)),
        ..req()
    };
    let table: &[(serde_json::Value, bool, bool)] = &[
        // (rule, with the token, without a token)
        (from(json!({"requestPrincipals": ["*"]})), true, false),
        (
            from(json!({"requestPrincipals": ["https://issuer.example/alice"]})),
            true,
            false,
        ),
        (
            from(json!({"requestPrincipals": ["https://issuer.example/*"]})),
            true,
            false,
        ),
        (from(json!({"requestPrincipals": ["*/alice"]})), true, false),
        (
            from(json!({"requestPrincipals": ["*.example/alice"]})),
            true,
            false,
        ),
        (
            from(json!({"requestPrincipals": ["https://issuer.example/bob"]})),
            false,
            false,
        ),
        (from(json!({"notRequestPrincipals": ["*"]})), false, true),
        (
            when("request.auth.principal", &["https://issuer.example/alice"]),
            true,
            false,
        ),
        (when("request.auth.audiences", &["a2"]), true, false),
        (when("request.auth.audiences", &["a3"]), false, false),
        (when("request.auth.presenter", &["web"]), true, false),
        (when("request.auth.claims[groups]", &["ops"]), true, false),
        (when("request.auth.claims[groups]", &["o*"]), true, false),
        (when("request.auth.claims[team]", &["blue"]), true, false),
        (when("request.auth.claims[team]", &["*"]), true, false),
        (
            when("request.auth.claims[nested][key]", &["v"]),
            true,
            false,
        ),
        (
            when("request.auth.claims[nested][list]", &["x"]),
            true,
            false,
        ),
        (
            when("request.auth.claims[nested][missing]", &["v"]),
            false,
            false,
        ),
        (when("request.auth.claims[num]", &["3"]), false, false),
        (
            when_not("request.auth.claims[groups]", &["dev"]),
            false,
            true,
        ),
    ];
    for (rule, jwt, none) in table {
        assert_eq!(matches(rule.clone(), &with_jwt), *jwt, "with token {rule}");
        assert_eq!(matches(rule.clone(), &req()), *none, "without token {rule}");
    }
    for bad in [
        "request.auth.claims",
        "request.auth.claims[]",
        "request.auth.claims[a",
        "request.auth.claimsx",
    ] {
        assert!(!matches(when(bad, &["x"]), &with_jwt), "{bad}");
    }
}

#[test]
fn addresses_v4_and_v6() {
    let v6 = Req {
        source_ip: "2001:db8::5",
        destination_ip: "fd00::1",
        ..req()
    };
    let table: &[(serde_json::Value, bool, bool)] = &[
        (from(json!({"ipBlocks": ["10.0.0.1"]})), true, false),
        (from(json!({"ipBlocks": ["10.0.0.0/8"]})), true, false),
        (from(json!({"ipBlocks": ["0.0.0.0/0"]})), true, false),
        (from(json!({"ipBlocks": ["2001:db8::/32"]})), false, true),
        (from(json!({"notIpBlocks": ["10.0.0.0/24"]})), false, true),
        (when("source.ip", &["10.0.0.0/16"]), true, false),
        (when("destination.ip", &["10.1.0.1"]), true, false),
        (when("destination.ip", &["fd00::/8"]), false, true),
        (from(json!({"remoteIpBlocks": ["10.0.0.1"]})), true, false),
    ];
    for (rule, v4m, v6m) in table {
        assert_eq!(matches(rule.clone(), &req()), *v4m, "v4 {rule}");
        assert_eq!(matches(rule.clone(), &v6), *v6m, "v6 {rule}");
    }
    let proxied = Req {
        xff: Some("1.2.3.4, 192.168.1.7"),
        ..req()
    };
    assert!(matches(
        from(json!({"remoteIpBlocks": ["192.168.0.0/16"]})),
        &proxied
    ));
    assert!(matches(when("remote.ip", &["192.168.1.7"]), &proxied));
    assert!(!matches(
        from(json!({"remoteIpBlocks": ["10.0.0.1"]})),
        &proxied
    ));
    assert!(matches(from(json!({"ipBlocks": ["10.0.0.1"]})), &proxied));
}

#[test]
fn operations() {
    let table: &[(serde_json::Value, bool)] = &[
        (json!({"hosts": ["httpbin.foo.svc.cluster.local"]}), true),
        (json!({"hosts": ["HTTPBIN.foo.svc.cluster.local"]}), true),
        (json!({"hosts": ["*.svc.cluster.local"]}), true),
        (json!({"hosts": ["httpbin*"]}), true),
        (json!({"hosts": ["*"]}), true),
        (json!({"hosts": ["httpbin"]}), false),
        (json!({"notHosts": ["*.cluster.local"]}), false),
        (json!({"ports": ["8080"]}), true),
        (json!({"ports": ["80"]}), false),
        (json!({"notPorts": ["8080"]}), false),
        (json!({"methods": ["GET", "HEAD"]}), true),
        (json!({"methods": ["get"]}), false),
        (json!({"methods": ["*"]}), true),
        (json!({"notMethods": ["GET"]}), false),
        (json!({"paths": ["/get"]}), true),
        (json!({"paths": ["/g*"]}), true),
        (json!({"paths": ["*et"]}), true),
        (json!({"paths": ["*"]}), true),
        (json!({"paths": ["/GET"]}), false),
        (json!({"notPaths": ["/get"]}), false),
        (json!({"methods": ["GET"], "paths": ["/other"]}), false),
    ];
    for (op, expected) in table {
        assert_eq!(matches(to(op.clone()), &req()), *expected, "{op}");
    }
    // A host with a port is compared as sent, as Envoy's :authority matcher does.
    let with_port = Req {
        host: "httpbin.foo.svc.cluster.local:8080",
        ..req()
    };
    assert!(!matches(
        to(json!({"hosts": ["httpbin.foo.svc.cluster.local"]})),
        &with_port
    ));
    assert!(matches(
        to(json!({"hosts": ["httpbin.foo.svc.cluster.local:*"]})),
        &with_port
    ));
    assert!(!matches(to(json!({"ports": ["99999"]})), &req()));
    assert!(matches(when("destination.port", &["8080"]), &req()));
}

#[test]
fn path_templates() {
    let table: &[(&str, &str, bool)] = &[
        ("/foo/{*}", "/foo/bar", true),
        ("/foo/{*}", "/foo/bar/baz", false),
        ("/foo/{*}", "/foo/", false),
        ("/foo/{*}/baz", "/foo/bar/baz", true),
        ("/foo/{*}/baz", "/foo/bar/qux", false),
        ("/foo/{**}", "/foo/bar/baz", true),
        ("/foo/{**}", "/foo/", true),
        ("/foo/{**}", "/foo", false),
        ("/{*}/bar/{**}", "/x/bar/y/z", true),
        ("/{*}", "/a*b", false),
    ];
    for (template, path, expected) in table {
        let r = Req { path, ..req() };
        assert_eq!(
            matches(to(json!({"paths": [template]})), &r),
            *expected,
            "{template} {path}"
        );
    }
    for bad in [
        "/foo/{**}/bar",
        "/foo/{**}/{*}",
        "/foo/x{*}",
        "/foo/{*}/a*",
        "foo/{*}",
    ] {
        let p = compile_named("p", allow_rule(to(json!({"paths": [bad]}))));
        assert!(!p.issues.is_empty(), "{bad}");
        assert!(
            !matches(
                to(json!({"paths": [bad]})),
                &Req {
                    path: "/foo/a/bar",
                    ..req()
                }
            ),
            "{bad}"
        );
    }
}

#[test]
fn headers_and_sni() {
    let r = Req {
        headers: vec![
            ("x-user", "admin"),
            ("x-multi", "a"),
            ("x-multi", "b"),
            ("x-empty", ""),
            ("x-list", "one,two,three"),
        ],
        sni: Some("svc.example"),
        ..req()
    };
    let table: &[(serde_json::Value, bool)] = &[
        (when("request.headers[X-User]", &["admin"]), true),
        (when("request.headers[x-user]", &["adm*"]), true),
        (when("request.headers[x-user]", &["*min"]), true),
        (when("request.headers[x-user]", &["Admin"]), false),
        (when("request.headers[x-empty]", &["*"]), true),
        (when("request.headers[x-absent]", &["*"]), false),
        (when_not("request.headers[x-absent]", &["*"]), true),
        (when("request.headers[x-multi]", &["a,b"]), true),
        (when("request.headers[x-multi]", &["b"]), true),
        (when("request.headers[x-multi]", &["a"]), true),
        (when("request.headers[x-multi]", &["c"]), false),
        (when("request.headers[x-list]", &["two"]), true),
        (when("request.headers[x-list]", &["tw*"]), true),
        (when("request.headers[x-list]", &["*ne"]), true),
        (when("request.headers[x-list]", &["wo"]), false),
        (when("connection.sni", &["*.example"]), true),
        (when("connection.sni", &["other"]), false),
    ];
    for (rule, expected) in table {
        assert_eq!(matches(rule.clone(), &r), *expected, "{rule}");
    }
    assert!(!matches(when("request.headers[bad name]", &["x"]), &r));
}

#[test]
fn rules_or_entries_and_fields_and() {
    let rule = json!({
        "from": [{"source": {"namespaces": ["bar"]}}, {"source": {"ipBlocks": ["10.0.0.1"]}}],
        "to": [{"operation": {"methods": ["POST"]}}, {"operation": {"paths": ["/get"]}}],
        "when": [{"key": "destination.port", "values": ["8080"]}, {"key": "source.ip", "notValues": ["10.9.9.9"]}]
    });
    assert!(matches(rule.clone(), &req()));
    assert!(!matches(
        rule,
        &Req {
            path: "/post",
            ..req()
        }
    ));
    let both = to(json!({"paths": ["/get"], "notPaths": ["/get"]}));
    assert!(!matches(both, &req()));
}

#[test]
fn principal_shaped_matchers_follow_istiods_regexes() {
    use crate::policy::matchers::{namespace_matches, service_account_matches};
    let p = "cluster.local/ns/foo/sa/sleep";
    for (pattern, expected) in [
        ("foo", true),
        ("f*", true),
        ("*o", true),
        ("*", true),
        ("bar", false),
        ("fo", false),
    ] {
        assert_eq!(namespace_matches(pattern, p), expected, "{pattern}");
    }
    assert!(namespace_matches("foo", "ns/foo/sa/x"));
    assert!(!namespace_matches("foo", "cluster.local/ns/foo"));
    for (ns, sa, principal, expected) in [
        ("foo", "sleep", p, true),
        ("foo", "sleep", "td/ns/foo/extra/sa/sleep", true),
        ("foo", "sleep", "td/ns/foo/sa/sleep/more", true),
        ("foo", "sleep", "td/ns/foo/sa/sleeper", false),
        ("foo", "sleep", "td/ns/foo/sa/sleep/", false),
        ("foo", "sleep", "/ns/foo/sa/sleep", false),
        ("foo", "sleep", "td/ns/foobar/sa/sleep", false),
        ("foo", "sleep", "td/ns/bar/sa/sleep", false),
    ] {
        assert_eq!(
            service_account_matches(ns, sa, principal),
            expected,
            "{principal}"
        );
    }
}
