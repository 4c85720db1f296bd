//! Request-time authentication: what the waypoint adds to `authz`'s decision.

use super::*;
use serde_json::json;

/// One of the sample files in `authz/tests/data/jwt/`.
pub(crate) fn sample(name: &str) -> String {
    let path = format!(
        "{}/../authz/tests/data/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path)
        .expect("sample file")
        .trim()
        .to_string()
}

fn authenticator() -> Authenticator {
    let spec =
        json!({"jwtRules": [{"issuer": "testing@secure.istio.io", "jwks": sample("jwks.json")}]});
    Authenticator::compile(&[(authz::PolicyRef::default(), &spec)]).0
}

fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
    request_to(method, "/status/200?x=1", headers)
}

fn request_to(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut req = RequestHeader::build(method, path.as_bytes(), None).expect("request");
    for (k, v) in headers {
        req.insert_header(k.to_string(), v.to_string())
            .expect("header");
    }
    req
}

async fn run(authn: &Authenticator, req: &RequestHeader) -> AuthnOutcome {
    authenticate(authn, req, &JwksCache::new(), SystemTime::now()).await
}

#[tokio::test]
async fn cors_preflight_skips_authentication() {
    let authn = authenticator();
    let expired = format!("Bearer {}", sample("expired.jwt"));
    let preflight = [
        ("origin", "https://web.example"),
        ("access-control-request-method", "GET"),
        ("authorization", expired.as_str()),
    ];
    let out = run(&authn, &request("OPTIONS", &preflight)).await;
    assert_eq!(out, AuthnOutcome::Anonymous);
    // Without Access-Control-Request-Method it is a plain OPTIONS: authenticated.
    let plain = [
        ("origin", "https://web.example"),
        ("authorization", expired.as_str()),
    ];
    let out = run(&authn, &request("OPTIONS", &plain)).await;
    assert!(matches!(out, AuthnOutcome::Rejected(_)));
}

#[tokio::test]
async fn the_realm_is_the_original_uri() {
    let authn = authenticator();
    let expired = format!("Bearer {}", sample("expired.jwt"));
    let cases = [
        (
            vec![("host", "httpbin.ns1:8000")],
            "http://httpbin.ns1:8000/status/200?x=1",
        ),
        (
            vec![("host", "httpbin.ns1"), ("x-forwarded-proto", "https")],
            "https://httpbin.ns1/status/200?x=1",
        ),
    ];
    for (mut headers, realm) in cases {
        headers.push(("authorization", expired.as_str()));
        let out = run(&authn, &request("GET", &headers)).await;
        let AuthnOutcome::Rejected(reply) = out else {
            panic!("expired token must be refused");
        };
        assert_eq!(reply.body, "Jwt is expired");
        assert_eq!(
            reply.headers,
            vec![(
                "www-authenticate".to_string(),
                format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")
            )]
        );
    }
}

#[tokio::test]
async fn the_realm_path_is_cut_at_256_bytes() {
    let authn = authenticator();
    let expired = format!("Bearer {}", sample("expired.jwt"));
    let path = format!("/{}", "a".repeat(300));
    let headers = [("host", "h"), ("authorization", expired.as_str())];
    let out = run(&authn, &request_to("GET", &path, &headers)).await;
    let AuthnOutcome::Rejected(reply) = out else {
        panic!("expired token must be refused");
    };
    let realm = format!(
        "Bearer realm=\"http://h{}\", error=\"invalid_token\"",
        &path[..256]
    );
    assert_eq!(reply.headers[0].1, realm);
}
