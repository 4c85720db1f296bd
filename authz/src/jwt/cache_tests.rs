//! The verified-signature cache: a repeated token skips the signature check, a forged one
//! reusing a cached signature does not, and the time checks still run on every request.

use super::tests::{claims, mint, rsa_key, with_bearer, ISS, NOW, RSA_JWKS, RSA_KID};
use super::*;
use jsonwebtoken::Algorithm;
use serde_json::json;

fn authn() -> Authenticator {
    let spec = json!({ "jwtRules": [{"issuer": ISS, "jwks": RSA_JWKS}] });
    let (authn, issues) = Authenticator::compile(&[(PolicyRef::default(), &spec)]);
    assert!(issues.is_empty(), "{issues:?}");
    authn
}

#[test]
fn a_cached_signature_vouches_only_for_its_own_bytes() {
    let authn = authn();
    let key = rsa_key();
    let token = mint(Algorithm::RS256, Some(RSA_KID), &key.encoding, claims());
    assert_eq!(with_bearer(&authn, &token), "authenticated");
    assert_eq!(with_bearer(&authn, &token), "authenticated", "cached");
    // Same signature, other payload (another subject): must not ride on the cache.
    let other = mint(
        Algorithm::RS256,
        Some(RSA_KID),
        &key.encoding,
        json!({"iss": ISS, "sub": "admin", "exp": NOW + 3600}),
    );
    let parts: Vec<&str> = token.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    assert_eq!(with_bearer(&authn, &forged), "Jwt verification fails");
}

#[test]
fn a_cached_token_still_expires() {
    let authn = authn();
    let key = rsa_key();
    let token = mint(Algorithm::RS256, Some(RSA_KID), &key.encoding, claims());
    assert_eq!(with_bearer(&authn, &token), "authenticated");
    let mut headers = http::HeaderMap::new();
    let bearer = format!("Bearer {token}");
    headers.insert(http::header::AUTHORIZATION, bearer.parse().expect("value"));
    let req = JwtRequest {
        original_uri: "http://svc/",
        path_and_query: "/",
        headers: &headers,
    };
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW + 3600 + 61);
    let keys = std::collections::HashMap::new();
    let judged = authn.authenticate(&req, &keys, later);
    assert_eq!(super::tests::body(&judged.outcome), "Jwt is expired");
}
