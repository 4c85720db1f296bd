//! Table tests with tokens minted here from generated (EC, Ed25519) and sample (RSA) keys.

use super::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::collections::HashMap;

pub(super) const ISS: &str = "https://issuer.example.com";
pub(super) const NOW: u64 = 1_796_600_000;
const RSA_PEM: &str = include_str!("../../tests/data/jwt/key.pem");
pub(super) const RSA_JWKS: &str = include_str!("../../tests/data/jwt/jwks.json");
pub(super) const RSA_KID: &str = "DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ";

/// A signing key and its public JWK.
pub(super) struct TestKey {
    pub(super) encoding: EncodingKey,
    pub(super) jwk: Value,
}

fn b64url(bytes: &[u8]) -> String {
    token::B64URL.encode(bytes)
}

pub(super) fn rsa_key() -> TestKey {
    let body: String = RSA_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(body).expect("sample PEM");
    let jwks: Value = serde_json::from_str(RSA_JWKS).expect("sample JWKS");
    TestKey {
        encoding: EncodingKey::from_rsa_der(&der),
        jwk: jwks["keys"][0].clone(),
    }
}

fn generated(alg: &'static rcgen::SignatureAlgorithm, kid: &str) -> TestKey {
    let pair = rcgen::KeyPair::generate_for(alg).expect("key generation");
    let raw = pair.public_key_raw();
    let (encoding, jwk) = if alg == &rcgen::PKCS_ED25519 {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(raw), "kid": kid});
        (EncodingKey::from_ed_der(&pair.serialize_der()), jwk)
    } else {
        let half = (raw.len() - 1) / 2;
        let crv = if half == 32 { "P-256" } else { "P-384" };
        let jwk = json!({"kty": "EC", "crv": crv, "x": b64url(&raw[1..=half]),
                         "y": b64url(&raw[half + 1..]), "kid": kid});
        (EncodingKey::from_ec_der(&pair.serialize_der()), jwk)
    };
    TestKey { encoding, jwk }
}

pub(super) fn mint(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

pub(super) fn claims() -> Value {
    json!({"iss": ISS, "sub": "user-1", "exp": NOW + 3600})
}

fn jwks_of(keys: &[&Value]) -> String {
    json!({ "keys": keys }).to_string()
}

pub(super) fn compile_one(rule: Value) -> (Authenticator, Vec<(PolicyRef, PolicyIssue)>) {
    let spec = json!({ "jwtRules": [rule] });
    Authenticator::compile(&[(PolicyRef::default(), &spec)])
}

fn rule_with(jwks: String, extra: Value) -> Authenticator {
    let mut rule = json!({"issuer": ISS, "jwks": jwks});
    if let (Some(r), Value::Object(extra)) = (rule.as_object_mut(), extra) {
        r.extend(extra);
    }
    let (authn, issues) = compile_one(rule);
    assert!(issues.is_empty(), "{issues:?}");
    authn
}

pub(super) fn judge(
    authn: &Authenticator,
    headers: &[(&str, &str)],
    path: &str,
    keys: &HashMap<String, Arc<Jwks>>,
) -> Judgement {
    let mut map = http::HeaderMap::new();
    for (k, v) in headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("value"),
        );
    }
    let uri = format!("http://svc{path}");
    let req = JwtRequest {
        original_uri: &uri,
        path_and_query: path,
        headers: &map,
    };
    authn.authenticate(
        &req,
        keys,
        SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
    )
}

fn outcome(authn: &Authenticator, headers: &[(&str, &str)]) -> AuthnOutcome {
    judge(authn, headers, "/", &HashMap::new()).outcome
}

pub(super) fn body(outcome: &AuthnOutcome) -> &str {
    match outcome {
        AuthnOutcome::Rejected(reply) => &reply.body,
        AuthnOutcome::Authenticated { .. } => "authenticated",
        AuthnOutcome::Anonymous => "anonymous",
    }
}

pub(super) fn with_bearer(authn: &Authenticator, token: &str) -> String {
    body(&outcome(
        authn,
        &[("authorization", &format!("Bearer {token}"))],
    ))
    .to_string()
}

#[test]
fn every_supported_algorithm_verifies_with_a_fitting_key() {
    let rsa = rsa_key();
    let p256 = generated(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
    let p384 = generated(&rcgen::PKCS_ECDSA_P384_SHA384, "p384");
    let ed = generated(&rcgen::PKCS_ED25519, "ed");
    let authn = rule_with(
        jwks_of(&[&rsa.jwk, &p256.jwk, &p384.jwk, &ed.jwk]),
        json!({}),
    );
    let cases = [
        (Algorithm::RS256, &rsa, RSA_KID),
        (Algorithm::RS384, &rsa, RSA_KID),
        (Algorithm::RS512, &rsa, RSA_KID),
        (Algorithm::PS256, &rsa, RSA_KID),
        (Algorithm::PS384, &rsa, RSA_KID),
        (Algorithm::PS512, &rsa, RSA_KID),
        (Algorithm::ES256, &p256, "p256"),
        (Algorithm::ES384, &p384, "p384"),
        (Algorithm::EdDSA, &ed, "ed"),
    ];
    for (alg, key, kid) in cases {
        let token = mint(alg, Some(kid), &key.encoding, claims());
        assert_eq!(
            with_bearer(&authn, &token),
            "authenticated",
            "{alg:?} with kid"
        );
        let token = mint(alg, None, &key.encoding, claims());
        assert_eq!(
            with_bearer(&authn, &token),
            "authenticated",
            "{alg:?} without kid"
        );
    }
}

#[test]
fn keys_must_fit_the_tokens_kid_alg_and_curve() {
    let rsa = rsa_key();
    let p256 = generated(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
    let p384 = generated(&rcgen::PKCS_ECDSA_P384_SHA384, "p384");
    let mismatch = "Jwks doesn't have key to match kid or alg from Jwt";
    // ES256 token, only a P-384 key (same kid): Envoy tries the EC key and fails.
    let authn = rule_with(jwks_of(&[&p384.jwk]), json!({}));
    let token = mint(Algorithm::ES256, Some("p384"), &p256.encoding, claims());
    assert_eq!(with_bearer(&authn, &token), "Jwt verification fails");
    // ES256 token, only RSA keys: no key of its family.
    let authn = rule_with(jwks_of(&[&rsa.jwk]), json!({}));
    let token = mint(Algorithm::ES256, None, &p256.encoding, claims());
    assert_eq!(with_bearer(&authn, &token), mismatch);
    // Unknown kid.
    let authn = rule_with(jwks_of(&[&rsa.jwk]), json!({}));
    let token = mint(Algorithm::RS256, Some("rotated"), &rsa.encoding, claims());
    assert_eq!(with_bearer(&authn, &token), mismatch);
    // A key whose `alg` differs from the token's is skipped.
    let mut rs384_only = rsa.jwk.clone();
    rs384_only["alg"] = json!("RS384");
    let authn = rule_with(jwks_of(&[&rs384_only]), json!({}));
    let token = mint(Algorithm::RS256, Some(RSA_KID), &rsa.encoding, claims());
    assert_eq!(with_bearer(&authn, &token), mismatch);
    // No kid: every compatible key is tried, the right one last.
    let authn = rule_with(jwks_of(&[&p256.jwk, &other_rsa_jwk(), &rsa.jwk]), json!({}));
    let token = mint(Algorithm::RS256, None, &rsa.encoding, claims());
    assert_eq!(with_bearer(&authn, &token), "authenticated");
    // A fitting key that does not verify.
    let authn = rule_with(jwks_of(&[&other_rsa_jwk()]), json!({}));
    assert_eq!(with_bearer(&authn, &token), "Jwt verification fails");
}

/// Another RSA public key (Istio's test JWKS), which verifies none of the sample key's tokens.
fn other_rsa_jwk() -> Value {
    let jwks: Value =
        serde_json::from_str(include_str!("../../tests/data/jwt/istio-test-jwks.json"))
            .expect("JWKS");
    let mut key = jwks["keys"][0].clone();
    key.as_object_mut().map(|k| k.remove("kid"));
    key
}

#[test]
fn hmac_and_none_are_refused() {
    let secret = b"a-shared-secret-of-32-bytes-long";
    let oct = json!({"kty": "oct", "k": b64url(secret), "kid": "hs"});
    let rsa = rsa_key();
    let authn = rule_with(jwks_of(&[&oct, &rsa.jwk]), json!({}));
    let hs = mint(
        Algorithm::HS256,
        Some("hs"),
        &EncodingKey::from_secret(secret),
        claims(),
    );
    assert_eq!(
        with_bearer(&authn, &hs),
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
    // HS256 "signed" with the RSA public key's text: the classic confusion.
    let public = EncodingKey::from_secret(RSA_JWKS.as_bytes());
    let confused = mint(Algorithm::HS256, Some(RSA_KID), &public, claims());
    assert_eq!(
        with_bearer(&authn, &confused),
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
    let payload = b64url(claims().to_string().as_bytes());
    let none = format!("{}.{payload}.", b64url(br#"{"alg":"none"}"#));
    assert_eq!(
        with_bearer(&authn, &none),
        "Jwt header [alg] is not supported"
    );
    // A JWKS of only HMAC keys is no JWKS.
    let (_, issues) = compile_one(json!({"issuer": ISS, "jwks": jwks_of(&[&oct])}));
    assert_eq!(issues[0].1.field, "spec.jwtRules[0].jwks");
}

#[test]
fn malformed_tokens_get_envoys_parse_messages() {
    let rsa = rsa_key();
    let authn = rule_with(
        jwks_of(&[&rsa.jwk]),
        json!({"fromHeaders": [{"name": "x-t"}]}),
    );
    let head = b64url(br#"{"alg":"RS256"}"#);
    let body_ = b64url(claims().to_string().as_bytes());
    let cases = [
        (
            "a.b".to_string(),
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (
            "a.b.c.d".to_string(),
            "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
        ),
        (
            format!("%%.{body_}.c2ln"),
            "Jwt header is an invalid Base64url encoded",
        ),
        (
            format!("{}.{body_}.c2ln", b64url(b"[1]")),
            "Jwt header is an invalid JSON",
        ),
        (
            format!("{}.{body_}.c2ln", b64url(br#"{"kid":"x"}"#)),
            "Jwt header [alg] field is required and must be a string",
        ),
        (
            format!("{}.{body_}.c2ln", b64url(br#"{"alg":"RS256","kid":1}"#)),
            "Jwt header [kid] field is not a string",
        ),
        (
            format!("{head}.{}.c2ln", b64url(b"nope")),
            "Jwt payload is an invalid JSON",
        ),
        (
            format!("{head}.{}.c2ln", b64url(br#"{"iss":1}"#)),
            "Jwt payload [iss] field is not a string",
        ),
        (
            format!("{head}.{}.c2ln", b64url(br#"{"iss":"x","exp":"soon"}"#)),
            "Jwt payload [exp] field is not an integer",
        ),
        (
            format!("{head}.{}.c2ln", b64url(br#"{"iss":"x","nbf":-1}"#)),
            "Jwt payload [nbf] field is not a positive 64 bit integer",
        ),
        (
            format!("{head}.{}.c2ln", b64url(br#"{"aud":[1]}"#)),
            "Jwt payload [aud] field is not a string or string list",
        ),
        (
            format!("{head}.{body_}.%%"),
            "Jwt signature is an invalid Base64url encoded",
        ),
    ];
    for (token, want) in cases {
        assert_eq!(body(&outcome(&authn, &[("x-t", &token)])), want, "{token}");
    }
    // In Authorization, Envoy takes the run of token characters after "Bearer ".
    let bearer = format!("Bearer {head}.{body_}.c2ln!trailing");
    let default = rule_with(jwks_of(&[&rsa.jwk]), json!({}));
    assert_eq!(
        body(&outcome(&default, &[("authorization", &bearer)])),
        "Jwt verification fails"
    );
}

#[test]
fn time_checks_allow_sixty_seconds_of_skew() {
    let rsa = rsa_key();
    let authn = rule_with(jwks_of(&[&rsa.jwk]), json!({}));
    let cases = [
        (json!({"exp": NOW - 30}), "authenticated"),
        (json!({"exp": NOW - 61}), "Jwt is expired"),
        (json!({"nbf": NOW + 30}), "authenticated"),
        (json!({"nbf": NOW + 61}), "Jwt not yet valid"),
        (json!({"exp": null}), "authenticated"),
    ];
    for (times, want) in cases {
        let mut c = claims();
        if let (Some(c), Value::Object(t)) = (c.as_object_mut(), times.clone()) {
            c.extend(t.into_iter().filter(|(_, v)| !v.is_null()));
            if times["exp"].is_null() {
                c.remove("exp");
            }
        }
        let token = mint(Algorithm::RS256, Some(RSA_KID), &rsa.encoding, c);
        assert_eq!(with_bearer(&authn, &token), want, "{times}");
    }
}

/// Headers, path, expected outcome, header removed from the upstream request.
type LocationCase<'a> = (Vec<(&'a str, &'a str)>, String, &'a str, Option<&'a str>);

#[test]
fn locations_headers_prefixes_params_and_cookies() {
    let rsa = rsa_key();
    let token = mint(Algorithm::RS256, Some(RSA_KID), &rsa.encoding, claims());
    let spec = json!({
        "fromHeaders": [{"name": "X-Token", "prefix": "Token "}, {"name": "x-raw"}],
        "fromParams": ["jwt"],
        "fromCookies": ["session"],
    });
    let authn = rule_with(jwks_of(&[&rsa.jwk]), spec);
    let prefixed = format!("Token {token}");
    let cookie = format!("a=b; session={token}; c=d");
    let bearer = format!("Bearer {token}");
    let cases: [LocationCase; 7] = [
        (
            vec![("x-token", &prefixed)],
            "/".into(),
            "authenticated",
            Some("x-token"),
        ),
        (vec![("x-token", &token)], "/".into(), "anonymous", None),
        (
            vec![("x-raw", &token)],
            "/".into(),
            "authenticated",
            Some("x-raw"),
        ),
        (vec![], format!("/p?a=1&jwt={token}"), "authenticated", None),
        (vec![("cookie", &cookie)], "/".into(), "authenticated", None),
        // Default locations are not read once a location is configured.
        (
            vec![("authorization", &bearer)],
            "/".into(),
            "anonymous",
            None,
        ),
        (
            vec![],
            format!("/p?access_token={token}"),
            "anonymous",
            None,
        ),
    ];
    for (headers, path, want, removed) in cases {
        let out = judge(&authn, &headers, &path, &HashMap::new()).outcome;
        assert_eq!(body(&out), want, "{headers:?} {path}");
        if let AuthnOutcome::Authenticated { edits, .. } = out {
            let removes: Vec<_> = edits
                .iter()
                .filter(|e| matches!(e, HeaderEdit::Remove(_)))
                .collect();
            assert_eq!(
                removes,
                removed
                    .map(|h| HeaderEdit::Remove(h.into()))
                    .iter()
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn remote_keys_come_from_the_source_and_missing_kids_ask_for_a_refetch() {
    let rsa = rsa_key();
    let uri = "https://issuer.example.com/jwks";
    let (authn, issues) = compile_one(json!({"issuer": ISS, "jwksUri": uri, "timeout": "2s"}));
    assert!(issues.is_empty());
    assert_eq!(
        authn.jwks_fetches(),
        vec![(uri.to_string(), Duration::from_secs(2))]
    );
    let token = mint(Algorithm::RS256, Some(RSA_KID), &rsa.encoding, claims());
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str())];
    // Never fetched: istiod's placeholder JWKS answers, and the URI is worth fetching.
    let never = judge(&authn, &headers, "/", &HashMap::new());
    assert_eq!(
        body(&never.outcome),
        "Jwks doesn't have key to match kid or alg from Jwt"
    );
    assert_eq!(never.refetch, vec![uri.to_string()]);
    let no_kid = mint(Algorithm::RS256, None, &rsa.encoding, claims());
    let no_kid = judge(
        &authn,
        &[("authorization", &format!("Bearer {no_kid}"))],
        "/",
        &HashMap::new(),
    );
    assert_eq!(body(&no_kid.outcome), "Jwt verification fails");
    // Fetched with the key.
    let mut keys = HashMap::new();
    keys.insert(
        uri.to_string(),
        Arc::new(Jwks::parse(RSA_JWKS).expect("jwks")),
    );
    let fetched = judge(&authn, &headers, "/", &keys);
    assert_eq!(body(&fetched.outcome), "authenticated");
    assert!(fetched.refetch.is_empty());
    // Fetched before a rotation: the new kid is missing.
    let rotated = mint(Algorithm::RS256, Some("next"), &rsa.encoding, claims());
    let stale = judge(
        &authn,
        &[("authorization", &format!("Bearer {rotated}"))],
        "/",
        &keys,
    );
    assert_eq!(stale.refetch, vec![uri.to_string()]);
}

#[test]
fn several_tokens_and_rules_follow_envoys_requires_any() {
    let rsa = rsa_key();
    let p256 = generated(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
    let iss2 = "https://second.example.com";
    let spec = json!({"jwtRules": [
        {"issuer": ISS, "jwks": jwks_of(&[&rsa.jwk])},
        {"issuer": iss2, "jwks": jwks_of(&[&p256.jwk]), "fromHeaders": [{"name": "x-second"}]},
    ]});
    let (authn, _) = Authenticator::compile(&[(PolicyRef::default(), &spec)]);
    let good1 = format!(
        "Bearer {}",
        mint(Algorithm::RS256, Some(RSA_KID), &rsa.encoding, claims())
    );
    let mut c2 = claims();
    c2["iss"] = json!(iss2);
    let good2 = mint(Algorithm::ES256, Some("p256"), &p256.encoding, c2.clone());
    c2["exp"] = json!(NOW - 3600);
    let expired2 = mint(Algorithm::ES256, Some("p256"), &p256.encoding, c2);
    // A good token for rule 1 passes even when rule 2's header holds an expired one.
    let out = outcome(
        &authn,
        &[("authorization", &good1), ("x-second", &expired2)],
    );
    assert_eq!(body(&out), "authenticated");
    // Two good tokens: request.auth comes from the issuer that sorts first.
    let AuthnOutcome::Authenticated { auth, .. } =
        outcome(&authn, &[("authorization", &good1), ("x-second", &good2)])
    else {
        panic!("two good tokens");
    };
    assert_eq!(auth.issuer, ISS);
    // Only a bad token: its own error, not rule 1's "missing".
    let out = outcome(&authn, &[("x-second", &expired2)]);
    assert_eq!(body(&out), "Jwt is expired");
    // Rule 2's issuer in rule 1's location.
    let out = outcome(&authn, &[("authorization", &format!("Bearer {good2}"))]);
    assert_eq!(body(&out), "Jwt issuer is not configured");
}

#[test]
fn claims_to_headers_format_values_as_envoy() {
    let payload = json!({"i": 3, "f": 2.5, "w": 4.0, "small": 0.000123, "b": false,
                         "s": "", "n": null, "o": {"k": "v"}, "a": [1, "x"]});
    let Value::Object(payload) = payload else {
        unreachable!()
    };
    let get = |c: &str| output::claim_value(&payload, c);
    assert_eq!(get("i").as_deref(), Some("3"));
    assert_eq!(get("f").as_deref(), Some("2.5"));
    assert_eq!(get("w").as_deref(), Some("4"));
    assert_eq!(get("small").as_deref(), Some("0.000123"));
    assert_eq!(get("b").as_deref(), Some("false"));
    assert_eq!(get("s"), None);
    assert_eq!(get("n"), None);
    assert_eq!(get("o.k").as_deref(), Some("v"));
    assert_eq!(
        get("o").as_deref(),
        Some(STANDARD.encode(r#"{"k":"v"}"#).as_str())
    );
    assert_eq!(
        get("a").as_deref(),
        Some(STANDARD.encode(r#"[1,"x"]"#).as_str())
    );
    assert_eq!(get("o.missing"), None);
}

#[test]
fn sanitize_edits_cover_every_output_header() {
    let rsa = rsa_key();
    let authn = rule_with(
        jwks_of(&[&rsa.jwk]),
        json!({"outputPayloadToHeader": "X-Payload",
               "outputClaimToHeaders": [{"header": "x-sub", "claim": "sub"}, {"header": "x-payload", "claim": "iss"}]}),
    );
    assert_eq!(
        authn.sanitize_edits(),
        vec![
            HeaderEdit::Remove("x-payload".into()),
            HeaderEdit::Remove("x-sub".into())
        ]
    );
}

#[test]
fn repeated_headers_join_and_a_prefix_without_token_keeps_the_value() {
    let rsa = rsa_key();
    let authn = rule_with(jwks_of(&[&rsa.jwk]), json!({}));
    let token = mint(Algorithm::RS256, Some(RSA_KID), &rsa.encoding, claims());
    let bearer = format!("Bearer {token}");
    // Joined as "Basic x,Bearer <token>": the prefix is found after the first value.
    let two = [
        ("authorization", "Basic x"),
        ("authorization", bearer.as_str()),
    ];
    assert_eq!(body(&outcome(&authn, &two)), "authenticated");
    let nothing = [("authorization", "Bearer !!")];
    assert_eq!(
        body(&outcome(&authn, &nothing)),
        "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"
    );
}

#[test]
fn with_allow_missing_the_first_token_found_decides() {
    let rsa = rsa_key();
    let authn = rule_with(jwks_of(&[&rsa.jwk]), json!({}));
    let good = mint(Algorithm::RS256, Some(RSA_KID), &rsa.encoding, claims());
    let mut old = claims();
    old["exp"] = json!(NOW - 3600);
    let expired = mint(Algorithm::RS256, Some(RSA_KID), &rsa.encoding, old);
    // Envoy judges tokens last-found first; the Authorization header is found first, so its
    // token is judged last and decides for the "allow missing" requirement.
    let header_good = [("authorization", format!("Bearer {good}"))];
    let header_good: Vec<(&str, &str)> =
        header_good.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = judge(
        &authn,
        &header_good,
        &format!("/?access_token={expired}"),
        &HashMap::new(),
    );
    assert_eq!(body(&out.outcome), "authenticated");
    let bearer_expired = format!("Bearer {expired}");
    let header_bad = [("authorization", bearer_expired.as_str())];
    let out = judge(
        &authn,
        &header_bad,
        &format!("/?access_token={good}"),
        &HashMap::new(),
    );
    assert_eq!(body(&out.outcome), "Jwt is expired");
}
