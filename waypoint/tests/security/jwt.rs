//! Scenario 2: RequestAuthentication with a real JWKS HTTP server (jwksUri on 127.0.0.1) on the
//! waypoint's Gateway, Istio's sample tokens with inline `jwks` on one Service, and
//! AuthorizationPolicies on requestPrincipals and claims.

use super::mesh::{policy, services_yaml, Svc, World, NS};
use super::probe::{jwt_denied, rbac, Expect, Peer, Req};
use super::tokens::{dead_addr, now, payload, sample, JwksServer, Key};
use serde_json::json;
use std::time::Duration;

const X: Peer = Peer::hbone("a", "x", [127, 0, 0, 11]);

const OPEN: Svc = Svc {
    name: "jwt",
    octet: 21,
};
const REQUIRED: Svc = Svc {
    name: "jwt-required",
    octet: 22,
};
const CLAIMS: Svc = Svc {
    name: "jwt-claims",
    octet: 23,
};
const SAMPLES: Svc = Svc {
    name: "samples",
    octet: 24,
};

const SCOPE: Svc = Svc {
    name: "jwt-scope",
    octet: 25,
};

const ISS: &str = "https://jwks.test/a";
const ISS_AUD: &str = "https://jwks.test/aud";
const ISS_DOWN: &str = "https://jwks.test/down";
const ISS_HEADER: &str = "https://jwks.test/header";

const EXPIRED: &str = "Jwt is expired";
const NOT_YET: &str = "Jwt not yet valid";
const BAD_SIG: &str = "Jwt verification fails";
const UNKNOWN_ISS: &str = "Jwt issuer is not configured";
const MALFORMED: &str =
    "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections";
const BAD_AUD: &str = "Audiences in Jwt are not allowed";
const NO_KID: &str = "Jwks doesn't have key to match kid or alg from Jwt";

fn gateway_ra(jwks: &JwksServer, down: std::net::SocketAddr) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt-gateway, namespace: {NS}}}\nspec:\n\
         \x20 targetRefs: [{{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}}]\n  jwtRules:\n\
         \x20 - issuer: {ISS}\n    jwksUri: {uri}\n    outputPayloadToHeader: x-jwt-payload\n    outputClaimToHeaders: [{{header: x-jwt-foo, claim: foo}}]\n\
         \x20 - issuer: {ISS_AUD}\n    jwksUri: {uri}\n    audiences: [web-aud]\n    forwardOriginalToken: true\n\
         \x20 - issuer: {ISS_DOWN}\n    jwksUri: http://{down}/jwks\n\
         \x20 - issuer: {ISS_HEADER}\n    jwksUri: {uri}\n    fromHeaders: [{{name: x-jwt-assertion, prefix: \"Token \"}}]\n",
        uri = jwks.uri()
    )
}

/// A second RequestAuthentication, on Service `samples`, with Istio's sample key sets inline.
fn samples_ra() -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt-samples, namespace: {NS}}}\nspec:\n\
         \x20 targetRefs: [{{kind: Service, group: \"\", name: samples}}]\n  jwtRules:\n\
         \x20 - issuer: testing@secure.istio.io\n    jwks: '{}'\n\
         \x20 - issuer: test-issuer-1@istio.io\n    jwks: '{}'\n",
        sample("jwks.json"),
        sample("istio-test-jwks.json")
    )
}

fn policies() -> String {
    [
        policy("require-jwt", "jwt-required", "  rules:\n  - from:\n    - source: {requestPrincipals: [\"*\"]}\n"),
        policy(
            "alice-dev",
            "jwt-claims",
            &format!("  rules:\n  - from:\n    - source: {{requestPrincipals: [\"{ISS}/alice\"]}}\n    when:\n    - key: request.auth.claims[groups]\n      values: [\"dev\"]\n"),
        ),
        policy(
            "scope-write",
            "jwt-scope",
            "  rules:\n  - when:\n    - key: request.auth.claims[scope]\n      values: [\"write\"]\n",
        ),
        policy(
            "samples",
            "samples",
            "  rules:\n  - from:\n    - source: {requestPrincipals: [\"testing@secure.istio.io/testing@secure.istio.io\"]}\n\
             \x20 - from:\n    - source: {requestPrincipals: [\"test-issuer-1@istio.io/*\"]}\n    when:\n    - key: request.auth.claims[nested][key1]\n      values: [\"valueA\"]\n\
             \x20 - when:\n    - {key: request.auth.presenter, values: [web-client]}\n    - {key: request.auth.audiences, values: [other-aud]}\n\
             \x20   - {key: \"request.auth.claims[org][team][name]\", values: [payments]}\n    - {key: request.auth.principal, values: [\"testing@secure.istio.io/alice\"]}\n",
        ),
    ]
    .concat()
}

/// The `www-authenticate` Envoy's jwt_authn puts on its 401/403.
fn assert_challenge(w: &World, reply: &crate::support::Reply, svc: Svc, path: &str) {
    let want = format!(
        "Bearer realm=\"http://{}{path}\", error=\"invalid_token\"",
        svc.host()
    );
    soft_eq!(
        w,
        reply
            .headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(want.as_str()),
        "www-authenticate of {} {path}",
        svc.host()
    );
}

/// Tokens from the JWKS server's key: success, forwarded headers and every failure.
async fn verification(w: &World, key: &Key) {
    let alice = key.mint(json!({"iss": ISS, "sub": "alice", "exp": now() + 3600, "foo": "bar", "groups": ["dev", "ops"]}));
    let ok = w
        .check(&X, Req::get(OPEN, "/headers").jwt(&alice), Expect::Allowed)
        .await;
    let headers = &ok.echo()["headers"];
    soft_eq!(
        w,
        headers["X-Jwt-Payload"][0],
        payload(&alice),
        "outputPayloadToHeader"
    );
    soft_eq!(w, headers["X-Jwt-Foo"][0], "bar", "outputClaimToHeaders");
    soft!(
        w,
        headers.get("Authorization").is_none(),
        "the token is removed without forwardOriginalToken: {headers}"
    );
    // No token passes authentication.
    w.check(&X, Req::get(OPEN, "/headers"), Expect::Allowed)
        .await;
    // Within the 60 s clock skew.
    let just_expired = key.mint(json!({"iss": ISS, "sub": "alice", "exp": now() - 20}));
    w.check(
        &X,
        Req::get(OPEN, "/headers").jwt(&just_expired),
        Expect::Allowed,
    )
    .await;

    let failures = [
        (
            key.mint(json!({"iss": ISS, "sub": "alice", "exp": now() - 3600})),
            401,
            EXPIRED,
        ),
        (
            key.mint(json!({"iss": ISS, "sub": "alice", "nbf": now() + 3600, "exp": now() + 7200})),
            401,
            NOT_YET,
        ),
        (tamper(&alice), 401, BAD_SIG),
        ("invalidToken".to_string(), 401, MALFORMED),
        (
            key.mint(json!({"iss": "https://jwks.test/unknown", "sub": "alice"})),
            401,
            UNKNOWN_ISS,
        ),
        (
            key.mint(json!({"iss": ISS_AUD, "sub": "alice", "aud": ["other"]})),
            403,
            BAD_AUD,
        ),
    ];
    for (token, status, body) in failures {
        let r = w
            .check(
                &X,
                Req::get(OPEN, "/headers").jwt(&token),
                jwt_denied(status, body),
            )
            .await;
        assert_challenge(w, &r, OPEN, "/headers");
    }
    // The right audience, and forwardOriginalToken keeps the token.
    let aud = key.mint(json!({"iss": ISS_AUD, "sub": "bob", "aud": "web-aud"}));
    let r = w
        .check(&X, Req::get(OPEN, "/headers").jwt(&aud), Expect::Allowed)
        .await;
    soft_eq!(
        w,
        r.echo()["headers"]["Authorization"][0],
        format!("Bearer {aud}")
    );
    // Envoy's default locations include the `access_token` query parameter.
    let q = format!(
        "/q?access_token={}",
        key.mint(json!({"iss": ISS, "sub": "alice", "exp": now() - 3600}))
    );
    w.check(&X, Req::get(OPEN, &q), jwt_denied(401, EXPIRED))
        .await;
}

/// requestPrincipals and claims in AuthorizationPolicies.
async fn authorization(w: &World, key: &Key) {
    let alice = key.mint(json!({"iss": ISS, "sub": "alice", "groups": ["dev", "ops"]}));
    let alice_ops = key.mint(json!({"iss": ISS, "sub": "alice", "groups": ["ops"]}));
    let bob = key.mint(json!({"iss": ISS, "sub": "bob", "groups": ["dev"]}));
    w.check(&X, Req::get(REQUIRED, "/"), rbac("require-jwt", None, None))
        .await;
    w.check(&X, Req::get(REQUIRED, "/").jwt(&bob), Expect::Allowed)
        .await;
    w.check(&X, Req::get(CLAIMS, "/").jwt(&alice), Expect::Allowed)
        .await;
    w.check(
        &X,
        Req::get(CLAIMS, "/").jwt(&alice_ops),
        rbac("alice-dev", None, None),
    )
    .await;
    w.check(
        &X,
        Req::get(CLAIMS, "/").jwt(&bob),
        rbac("alice-dev", None, None),
    )
    .await;
    w.check(&X, Req::get(CLAIMS, "/"), rbac("alice-dev", None, None))
        .await;
    // `scope` is split on spaces (Istio's default spaceDelimitedClaims).
    let rw = key.mint(json!({"iss": ISS, "sub": "erin", "scope": "read write"}));
    let r = key.mint(json!({"iss": ISS, "sub": "erin", "scope": "read"}));
    w.check(&X, Req::get(SCOPE, "/").jwt(&rw), Expect::Allowed)
        .await;
    w.check(
        &X,
        Req::get(SCOPE, "/").jwt(&r),
        rbac("scope-write", None, None),
    )
    .await;
}

/// fromHeaders with a prefix, and a token at a location its issuer is not configured for.
async fn locations(w: &World, key: &Key) {
    let token = key.mint(json!({"iss": ISS_HEADER, "sub": "frank"}));
    let ok = w
        .check(
            &X,
            Req::get(OPEN, "/h").header("x-jwt-assertion", &format!("Token {token}")),
            Expect::Allowed,
        )
        .await;
    soft!(
        w,
        ok.echo()["headers"].get("X-Jwt-Assertion").is_none(),
        "the token header is removed without forwardOriginalToken"
    );
    w.check(
        &X,
        Req::get(OPEN, "/h").jwt(&token),
        jwt_denied(401, UNKNOWN_ISS),
    )
    .await;
    // A CORS preflight skips authentication, even with a bad token.
    let expired = key.mint(json!({"iss": ISS, "sub": "alice", "exp": now() - 3600}));
    let preflight = Req::new(OPEN, "OPTIONS", "/h")
        .header("origin", "http://example.com")
        .header("access-control-request-method", "GET")
        .jwt(&expired);
    w.check(&X, preflight, Expect::Allowed).await;
}

/// Istio's own sample and test tokens against inline key sets (two RequestAuthentications
/// merged on Service `samples`).
async fn istio_samples(w: &World) {
    // The last one through presenter (azp), audiences, a nested claim and the principal.
    for ok in [
        "demo.jwt",
        "groups-scope.jwt",
        "issuer1-nested-1.jwt",
        "demo-aud-azp.jwt",
    ] {
        w.check(&X, Req::get(SAMPLES, "/").jwt(&sample(ok)), Expect::Allowed)
            .await;
    }
    for (file, body) in [
        ("expired.jwt", EXPIRED),
        ("issuer1-expired.jwt", EXPIRED),
        ("not-yet-valid.jwt", NOT_YET),
        ("invalid-signature.jwt", BAD_SIG),
        ("other-issuer.jwt", UNKNOWN_ISS),
        ("malformed.jwt", MALFORMED),
    ] {
        let r = w
            .check(
                &X,
                Req::get(SAMPLES, "/p").jwt(&sample(file)),
                jwt_denied(401, body),
            )
            .await;
        assert_challenge(w, &r, SAMPLES, "/p");
    }
    for denied in ["issuer1.jwt", "issuer1-nested-2.jwt", "url-issuer.jwt"] {
        let expect = if denied == "url-issuer.jwt" {
            jwt_denied(401, UNKNOWN_ISS)
        } else {
            rbac("samples", None, None)
        };
        w.check(&X, Req::get(SAMPLES, "/").jwt(&sample(denied)), expect)
            .await;
    }
    w.check(&X, Req::get(SAMPLES, "/"), rbac("samples", None, None))
        .await;
}

/// A JWKS URI that never answered: its tokens get 401, the log says why, others still pass.
async fn jwks_down(w: &World, key: &Key, down: std::net::SocketAddr) {
    let token = key.mint(json!({"iss": ISS_DOWN, "sub": "carol"}));
    let r = w
        .check(
            &X,
            Req::get(OPEN, "/d").jwt(&token),
            Expect::Refused { status: 401 },
        )
        .await;
    assert_challenge(w, &r, OPEN, "/d");
    soft!(
        w,
        w.wp.wait_for_log(&[&down.to_string()], Duration::from_secs(5))
            .await,
        "no log line names the JWKS URI that cannot be fetched"
    );
    // The admin's /config_dump shows the URI's state to an operator.
    let dump = crate::support::HttpClient::new()
        .get(w.wp.addr("admin"), "admin", "/config_dump", &[])
        .await
        .expect("config_dump");
    let dump: serde_json::Value = serde_json::from_str(&dump.body).expect("JSON");
    let failing = dump["jwks"].as_array().into_iter().flatten().any(|s| {
        s["uri"]
            .as_str()
            .is_some_and(|u| u.contains(&down.to_string()))
            && !s["last_error"].is_null()
    });
    soft!(
        w,
        failing,
        "/config_dump's jwks does not show {down} failing: {}",
        dump["jwks"]
    );
    w.check(&X, Req::get(OPEN, "/d"), Expect::Allowed).await;
}

/// The server switches to a new key (new kid): its tokens are accepted without a restart.
async fn rotation(w: &World, jwks: &JwksServer) {
    let new = Key::istio_test();
    let token = new.mint(json!({"iss": ISS, "sub": "dave"}));
    w.check(
        &X,
        Req::get(OPEN, "/r").jwt(&token),
        jwt_denied(401, NO_KID),
    )
    .await;
    let before = jwks.fetches();
    jwks.set(&new.jwks);
    // The cache refetches on an unknown kid at a bounded rate: wait for it, then check.
    let start = std::time::Instant::now();
    loop {
        let mut t = w.tunnel(&X, OPEN).await.expect("tunnel");
        let r = t
            .send(&Req::get(OPEN, "/r").jwt(&token))
            .await
            .expect("answer");
        if r.status == 200 {
            break;
        }
        if start.elapsed() > Duration::from_secs(10) {
            w.fail(format!(
                "rotation not picked up in 10 s: {} {}",
                r.status, r.body
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    w.check(&X, Req::get(OPEN, "/r").jwt(&token), Expect::Allowed)
        .await;
    soft!(
        w,
        jwks.fetches() > before,
        "the new key set was never fetched"
    );
}

/// A token with the payload changed after signing.
fn tamper(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let forged = Key::sample().mint(json!({"iss": ISS, "sub": "mallory"}));
    format!("{}.{}.{}", parts[0], payload(&forged), parts[2])
}

/// The whole scenario on one waypoint.
pub async fn run() {
    let key = Key::sample();
    let jwks = JwksServer::start(&key.jwks).await;
    let down = dead_addr();
    let (ra, samples) = (gateway_ra(&jwks, down), samples_ra());
    let w = World::start(move |backend| {
        vec![
            (
                "mesh.yaml",
                services_yaml(&[OPEN, REQUIRED, CLAIMS, SAMPLES, SCOPE], backend),
            ),
            ("jwt.yaml", ra + &samples),
            ("policies.yaml", policies()),
        ]
    })
    .await;
    verification(&w, &key).await;
    authorization(&w, &key).await;
    locations(&w, &key).await;
    istio_samples(&w).await;
    jwks_down(&w, &key, down).await;
    rotation(&w, &jwks).await;
    w.finish();
}
