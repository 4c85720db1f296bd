use super::*;
use crate::config::load_dir;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};

fn example() -> (std::path::PathBuf, Vec<Document>) {
    let dir = super::super::default_config();
    let loaded = load_dir(&dir).expect("the example loads");
    (dir, loaded.documents)
}

/// The inline JWKS of the example's RequestAuthentication on travels.
fn example_jwks(documents: &[Document]) -> JwkSet {
    let jwks = documents
        .iter()
        .find_map(|d| match &d.resource {
            Resource::RequestAuthentication(ra) => ra.spec["jwtRules"][0]["jwks"].as_str(),
            _ => None,
        })
        .expect("a RequestAuthentication with an inline JWKS");
    serde_json::from_str(jwks).expect("a JWKS")
}

/// Verifies `token` as the waypoint would: the example's key, issuer and audience.
fn verify(jwks: &JwkSet, token: &str) -> Result<Value, ErrorKind> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.into_kind())?;
    let kid = header.kid.expect("the demo's tokens name their key");
    let jwk = jwks.find(&kid).expect("the token's kid is in the JWKS");
    let key = DecodingKey::from_jwk(jwk).expect("an RSA key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&["https://auth.travel-portal.example"]);
    validation.set_audience(&["travels.travel-agency"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|t| t.claims)
        .map_err(|e| e.into_kind())
}

#[test]
fn the_example_gets_tokens_for_travels_and_requests_to_refuse() {
    let (dir, documents) = example();
    let jwks = example_jwks(&documents);
    let security =
        for_service(&dir, &documents, "travel-agency", "travels").expect("the key is usable");

    let valid = security.bearer.as_deref().expect("a token for travels");
    let claims = verify(&jwks, valid).expect("the committed key matches the example's JWKS");
    assert_eq!(claims["sub"], "travel-portal/voyages");

    let denials: Vec<(Denial, &str)> = security
        .refusals
        .iter()
        .map(|r| (r.denial, r.path.as_str()))
        .collect();
    assert_eq!(
        denials,
        [
            (Denial::Unauthenticated, "/travels"),
            (Denial::Unauthenticated, "/travels"),
            (Denial::Forbidden, "/travels/admin"),
        ]
    );
    let token = |i: usize| security.refusals[i].bearer.as_deref().expect("a token");
    assert_eq!(verify(&jwks, token(0)), Err(ErrorKind::ExpiredSignature));
    assert_eq!(verify(&jwks, token(1)), Err(ErrorKind::InvalidSignature));
    // The denied path is refused whoever asks: with the valid token, so that it is the
    // AuthorizationPolicy that refuses it, not authentication.
    assert_eq!(security.refusals[2].bearer.as_deref(), Some(valid));

    // Services without policies get nothing.
    let flights = for_service(&dir, &documents, "travel-agency", "flights").expect("no key read");
    assert_eq!(flights, FlowSecurity::default());
}

#[test]
fn without_the_key_no_token_is_sent_but_denied_paths_are_still_tried() {
    let (_, documents) = example();
    let elsewhere = tempfile::tempdir().expect("a temp dir");
    let security = for_service(elsewhere.path(), &documents, "travel-agency", "travels")
        .expect("a missing key is not an error");
    assert_eq!(security.bearer, None);
    assert_eq!(
        security.refusals,
        [Refusal {
            path: "/travels/admin".into(),
            bearer: None,
            denial: Denial::Forbidden,
        }]
    );
}

#[test]
fn an_unusable_key_is_an_error_naming_the_file() {
    let (_, documents) = example();
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::create_dir(dir.path().join("jwt")).expect("mkdir");
    std::fs::write(dir.path().join(SIGNING_KEY), "not a key").expect("write");
    let error = for_service(dir.path(), &documents, "travel-agency", "travels")
        .expect_err("garbage is not a key");
    assert!(
        format!("{error:#}").contains("signing-key.pem"),
        "{error:#}"
    );
}

#[test]
fn denials_are_told_by_status_and_body() {
    let unauthenticated = Denial::Unauthenticated;
    assert!(unauthenticated.is(StatusCode::UNAUTHORIZED, b"Jwt is expired"));
    assert!(unauthenticated.is(StatusCode::UNAUTHORIZED, b"Jwt verification fails"));
    assert!(!unauthenticated.is(StatusCode::UNAUTHORIZED, b"no route"));
    assert!(!unauthenticated.is(StatusCode::FORBIDDEN, b"Jwt is expired"));
    let forbidden = Denial::Forbidden;
    assert!(forbidden.is(StatusCode::FORBIDDEN, b"RBAC: access denied"));
    assert!(!forbidden.is(StatusCode::FORBIDDEN, b"Audiences in Jwt are not allowed"));
}

#[test]
fn a_tampered_token_differs_in_one_signature_character() {
    let token = "aaa.bbb.ABCDEFGH";
    let tampered = tamper(token);
    assert_eq!(tampered.len(), token.len());
    assert!(tampered.starts_with("aaa.bbb."));
    let changed = token
        .chars()
        .zip(tampered.chars())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 1, "{tampered}");
}
