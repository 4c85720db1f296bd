//! RequestAuthentication with Istio's own sample keys and tokens (`tests/data/jwt/`), through
//! the public API only: the answers Istio's Envoy waypoint gives for them.

use authz::jwt::{Authenticator, AuthnOutcome, Jwks, JwtRequest};
use authz::{HeaderEdit, PolicyRef};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const SAMPLE_ISSUER: &str = "testing@secure.istio.io";
const DEMO_PAYLOAD: &str = "eyJleHAiOjQ2ODU5ODk3MDAsImZvbyI6ImJhciIsImlhdCI6MTUzMjM4OTcwMCwiaXNzIjoidGVzdGluZ0BzZWN1cmUuaXN0aW8uaW8iLCJzdWIiOiJ0ZXN0aW5nQHNlY3VyZS5pc3Rpby5pbyJ9";

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/jwt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .expect("sample file")
        .trim()
        .to_string()
}

fn now() -> SystemTime {
    // 2026-12-07: the sample tokens are valid until after 2082.
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_600_000)
}

fn policy(name: &str) -> PolicyRef {
    PolicyRef {
        kind: "RequestAuthentication".into(),
        namespace: "ns1".into(),
        name: name.into(),
    }
}

fn compile(specs: &[Value]) -> Authenticator {
    let refs: Vec<(PolicyRef, &Value)> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| (policy(&format!("ra{i}")), s))
        .collect();
    let (authn, issues) = Authenticator::compile(&refs);
    assert!(issues.is_empty(), "{issues:?}");
    authn
}

fn sample_rule(extra: Value) -> Value {
    let mut rule = json!({"issuer": SAMPLE_ISSUER, "jwks": data("jwks.json")});
    if let (Some(rule), Value::Object(extra)) = (rule.as_object_mut(), extra) {
        rule.extend(extra);
    }
    json!({"jwtRules": [rule]})
}

fn istio_test_rule(issuer: &str, extra: Value) -> Value {
    let mut rule = json!({"issuer": issuer, "jwks": data("istio-test-jwks.json")});
    if let (Some(rule), Value::Object(extra)) = (rule.as_object_mut(), extra) {
        rule.extend(extra);
    }
    rule
}

fn run(authn: &Authenticator, headers: &[(&str, String)], path: &str) -> AuthnOutcome {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    let uri = format!("http://httpbin.ns1:8000{path}");
    let req = JwtRequest {
        original_uri: &uri,
        path_and_query: path,
        headers: &map,
    };
    let none: HashMap<String, Arc<Jwks>> = HashMap::new();
    authn.authenticate(&req, &none, now()).outcome
}

fn bearer(file: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {}", data(file)))]
}

fn rejected(outcome: &AuthnOutcome) -> (u16, &str, &str) {
    match outcome {
        AuthnOutcome::Rejected(reply) => (
            reply.status,
            reply.body.as_str(),
            reply.headers[0].1.as_str(),
        ),
        other => panic!("not rejected: {other:?}"),
    }
}

#[test]
fn sample_tokens_get_envoys_answers() {
    let authn = compile(&[sample_rule(json!({}))]);
    let realm = r#"Bearer realm="http://httpbin.ns1:8000/headers?a=1", error="invalid_token""#;
    let cases = [
        ("expired.jwt", 401, "Jwt is expired"),
        ("not-yet-valid.jwt", 401, "Jwt not yet valid"),
        ("other-issuer.jwt", 401, "Jwt issuer is not configured"),
        ("invalid-signature.jwt", 401, "Jwt verification fails"),
        (
            "malformed.jwt",
            401,
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        // Signed by another key: its kid is not in the sample JWKS.
        ("issuer1.jwt", 401, "Jwt issuer is not configured"),
    ];
    for (file, status, body) in cases {
        let outcome = run(&authn, &bearer(file), "/headers?a=1");
        assert_eq!(rejected(&outcome), (status, body, realm), "{file}");
    }
}

#[test]
fn demo_token_authenticates_and_is_not_forwarded() {
    let authn = compile(&[sample_rule(
        json!({"outputPayloadToHeader": "x-jwt-payload"}),
    )]);
    let AuthnOutcome::Authenticated { auth, edits } = run(&authn, &bearer("demo.jwt"), "/") else {
        panic!("demo.jwt must verify");
    };
    assert_eq!(
        auth.principal,
        "testing@secure.istio.io/testing@secure.istio.io"
    );
    assert_eq!(auth.claims["foo"], "bar");
    assert_eq!(
        edits,
        vec![
            HeaderEdit::Remove("x-jwt-payload".into()),
            HeaderEdit::Set("x-jwt-payload".into(), DEMO_PAYLOAD.into()),
            HeaderEdit::Remove("authorization".into()),
        ]
    );
}

#[test]
fn no_token_is_anonymous_and_preflight_is_not_special_here() {
    let authn = compile(&[sample_rule(json!({}))]);
    assert_eq!(run(&authn, &[], "/"), AuthnOutcome::Anonymous);
    let elsewhere = vec![("x-jwt", data("demo.jwt"))];
    assert_eq!(run(&authn, &elsewhere, "/"), AuthnOutcome::Anonymous);
    let basic = vec![("authorization", "Basic dXNlcjpwYXNz".to_string())];
    assert_eq!(run(&authn, &basic, "/"), AuthnOutcome::Anonymous);
}

#[test]
fn audiences_presenter_and_claims_of_the_demo_token() {
    let rule = sample_rule(json!({
        "audiences": ["https://target.ns1.svc.cluster.local/"],
        "outputClaimToHeaders": [
            {"header": "x-role", "claim": "role"},
            {"header": "x-level", "claim": "level"},
            {"header": "x-verified", "claim": "verified"},
            {"header": "x-team", "claim": "org.team.name"},
            {"header": "x-groups", "claim": "groups"},
            {"header": "x-missing", "claim": "nope"},
        ],
        "forwardOriginalToken": true,
    }));
    let authn = compile(&[rule]);
    let AuthnOutcome::Authenticated { auth, edits } = run(&authn, &bearer("demo-aud-azp.jwt"), "/")
    else {
        panic!("demo-aud-azp.jwt must verify");
    };
    assert_eq!(auth.principal, "testing@secure.istio.io/alice");
    assert_eq!(
        auth.audiences,
        vec!["target.ns1.svc.cluster.local", "other-aud"]
    );
    assert_eq!(auth.presenter.as_deref(), Some("web-client"));
    assert_eq!(auth.claims["scope"], json!(["read", "write"]));
    let sets: Vec<_> = edits
        .iter()
        .filter_map(|e| match e {
            HeaderEdit::Set(h, v) => Some((h.as_str(), v.as_str())),
            HeaderEdit::Remove(_) => None,
        })
        .collect();
    assert_eq!(
        sets,
        vec![
            ("x-role", "admin"),
            ("x-level", "3"),
            ("x-verified", "true"),
            ("x-team", "payments"),
            ("x-groups", "WyJkZXYiLCJvcHMiXQ=="),
        ]
    );
    assert!(!edits.contains(&HeaderEdit::Remove("authorization".into())));

    let other_aud = compile(&[sample_rule(json!({"audiences": ["bookinfo"]}))]);
    let outcome = run(&other_aud, &bearer("demo-aud-azp.jwt"), "/p");
    assert_eq!(
        rejected(&outcome),
        (
            403,
            "Audiences in Jwt are not allowed",
            r#"Bearer realm="http://httpbin.ns1:8000/p", error="invalid_token""#
        )
    );
}

#[test]
fn istio_test_tokens_with_two_merged_policies() {
    let ra1 = json!({"jwtRules": [istio_test_rule("test-issuer-1@istio.io", json!({"audiences": ["foo"]}))]});
    let ra2 = json!({"jwtRules": [istio_test_rule(
        "test-issuer-2@istio.io",
        json!({"spaceDelimitedClaims": ["custom_scope"], "fromHeaders": [{"name": "x-jwt"}]}),
    )]});
    let authn = compile(&[ra1, ra2]);
    assert_eq!(authn.sources.len(), 2);

    let ok = run(&authn, &bearer("issuer1-aud-foo.jwt"), "/");
    assert!(
        matches!(ok, AuthnOutcome::Authenticated { ref auth, .. } if auth.principal == "test-issuer-1@istio.io/sub-1")
    );
    let ok = run(&authn, &bearer("issuer1-aud-foo-buzz.jwt"), "/");
    assert!(matches!(ok, AuthnOutcome::Authenticated { .. }));
    // issuer1.jwt has no audience: the rule asks for "foo".
    assert_eq!(rejected(&run(&authn, &bearer("issuer1.jwt"), "/")).0, 403);
    // Issuer 2 only reads x-jwt: in Authorization its token has no rule.
    let outcome = run(&authn, &bearer("issuer2.jwt"), "/");
    assert_eq!(rejected(&outcome).1, "Jwt issuer is not configured");
    let custom = vec![("x-jwt", data("issuer2-custom-scope.jwt"))];
    let AuthnOutcome::Authenticated { auth, .. } = run(&authn, &custom, "/") else {
        panic!("issuer2-custom-scope.jwt must verify from x-jwt");
    };
    assert_eq!(auth.claims["custom_scope"], json!(["admin", "user"]));
    let scope = vec![("x-jwt", data("issuer2-scope.jwt"))];
    let AuthnOutcome::Authenticated { auth, .. } = run(&authn, &scope, "/") else {
        panic!("issuer2-scope.jwt must verify from x-jwt");
    };
    assert!(auth.claims["scope"].is_array());
    let expired = bearer("issuer1-expired.jwt");
    assert_eq!(rejected(&run(&authn, &expired, "/")).1, "Jwt is expired");
}

#[test]
fn query_parameter_token_stays_in_the_query() {
    let authn = compile(&[sample_rule(json!({}))]);
    let path = format!("/get?access_token={}", data("demo.jwt"));
    let AuthnOutcome::Authenticated { edits, .. } = run(&authn, &[], &path) else {
        panic!("access_token must be read");
    };
    assert!(edits.is_empty(), "{edits:?}");
}

#[test]
fn nested_claims_and_list_claims_are_kept() {
    let ra = json!({"jwtRules": [istio_test_rule("test-issuer-1@istio.io", json!({}))]});
    let authn = compile(&[ra]);
    let AuthnOutcome::Authenticated { auth, .. } =
        run(&authn, &bearer("issuer1-nested-1.jwt"), "/")
    else {
        panic!("nested token must verify");
    };
    assert_eq!(
        auth.claims["nested"]["nested-2"]["key1"],
        json!(["valueA", "valueB"])
    );
    let groups = compile(&[sample_rule(json!({}))]);
    let AuthnOutcome::Authenticated { auth, .. } = run(&groups, &bearer("groups-scope.jwt"), "/")
    else {
        panic!("groups-scope.jwt must verify");
    };
    assert_eq!(auth.claims["scope"], json!(["scope1", "scope2"]));
    assert_eq!(auth.claims["groups"], json!(["group1", "group2"]));
}
